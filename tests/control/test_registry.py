"""Method registration and parameter validation."""

from __future__ import annotations

from typing import Any

import pytest

from raidd.control import Access, Registry
from raidd.control.jobs import JobRegistry
from raidd.control.protocol import INVALID_PARAMS, METHOD_NOT_FOUND, RpcError
from tests.control.conftest import build_registry


@pytest.fixture
def registry() -> Registry:
    return build_registry(JobRegistry())


def test_access_defaults_to_admin() -> None:
    registry = Registry()

    def change(call: Any) -> None:
        """Change something."""

    method = registry.add("change", change)
    assert method.access is Access.ADMIN
    assert method.summary == "Change something."


def test_decorator_registers() -> None:
    registry = Registry()

    @registry.method("status", Access.READ)
    def status(call: Any, *, verbose: bool = False) -> dict[str, bool]:
        return {"verbose": verbose}

    assert "status" in registry
    assert registry.names(Access.READ) == ["status"]
    assert registry.names(Access.ADMIN) == []


def test_duplicate_name_rejected(registry: Registry) -> None:
    with pytest.raises(ValueError, match="registered already"):
        registry.add("ping", lambda call: None)


def test_signature_contract_enforced() -> None:
    registry = Registry()

    def two_positional(call: Any, other: int) -> None: ...

    def var_keywords(call: Any, **params: Any) -> None: ...

    def bad_type(call: Any, *, when: complex) -> None: ...

    with pytest.raises(TypeError, match="only positional argument"):
        registry.add("a", two_positional)
    with pytest.raises(TypeError, match="must name every parameter"):
        registry.add("b", var_keywords)
    with pytest.raises(TypeError, match="not a JSON type"):
        registry.add("c", bad_type)


def test_unknown_method(registry: Registry) -> None:
    with pytest.raises(RpcError, match="method 'nope' not found") as raised:
        registry.get("nope")
    assert raised.value.code == METHOD_NOT_FOUND


def test_valid_params_bind(registry: Registry) -> None:
    params = {
        "name": "n",
        "count": 2,
        "ratio": 1,
        "flag": True,
        "paths": ["a", "b"],
        "extra": None,
    }
    assert registry.get("typed").bind(params) == params


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"count": 1}, "missing parameter 'name'"),
        ({"name": "n", "count": 1, "colour": "red"}, "unknown parameter 'colour'"),
        ({"name": 1, "count": 1}, "'name' must be a string, not an integer"),
        ({"name": "n", "count": "1"}, "'count' must be an integer, not a string"),
        ({"name": "n", "count": True}, "'count' must be an integer, not a boolean"),
        ({"name": "n", "count": 1.0}, "'count' must be an integer, not a number"),
        ({"name": "n", "count": 1, "ratio": "x"}, "'ratio' must be a number"),
        ({"name": "n", "count": 1, "flag": 1}, "'flag' must be a boolean"),
        ({"name": "n", "count": 1, "paths": "a"}, "'paths' must be an array of a string or null"),
        ({"name": "n", "count": 1, "paths": ["a", 2]}, "'paths' must be an array"),
        ({"name": "n", "count": 1, "extra": []}, "'extra' must be an object or null"),
        ({"name": None, "count": 1}, "'name' must be a string, not null"),
    ],
)
def test_invalid_params_rejected(registry: Registry, params: dict[str, Any], message: str) -> None:
    with pytest.raises(RpcError, match=message) as raised:
        registry.get("typed").bind(params)
    assert raised.value.code == INVALID_PARAMS


def test_method_without_params_rejects_any(registry: Registry) -> None:
    with pytest.raises(RpcError, match=r"unknown parameter 'x' \(parameters: none\)"):
        registry.get("status").bind({"x": 1})
