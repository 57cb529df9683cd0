# Every target builds .venv first, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test soak lint format bench bench-backup demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

soak: $(STAMP)
	$(BIN)/pytest -m soak

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/parity.py

# Backup and restore beside restic and borg; installs them with apt-get when root.
bench-backup: $(STAMP)
	$(BIN)/python bench/backup.py

# The whole product on image files in ./demo-run (recreated each run); needs root.
demo: $(STAMP)
	$(BIN)/python demo/run.py --dir demo-run

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .ruff_cache .hypothesis
