"""The libraries parity/ and crypto/ must not import raidd/ (imports point down)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_THIRD_PARTY = {"parity": {"numpy"}, "crypto": {"Crypto"}}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED_THIRD_PARTY))
def test_library_does_not_import_raidd(package: str) -> None:
    sources = sorted((ROOT / package).rglob("*.py"))
    assert sources, f"no sources found under {package}/"
    for source in sources:
        assert "raidd" not in imported_top_levels(source), f"{source} imports raidd"


@pytest.mark.parametrize("package", sorted(ALLOWED_THIRD_PARTY))
def test_library_third_party_imports(package: str) -> None:
    """Each library depends on one third-party package only (plus the stdlib)."""
    import sys

    allowed = ALLOWED_THIRD_PARTY[package] | {package} | set(sys.stdlib_module_names)
    for source in sorted((ROOT / package).rglob("*.py")):
        extra = imported_top_levels(source) - allowed
        assert not extra, f"{source} imports {sorted(extra)}"
