"""The registry of control methods and the validation of their parameters.

A method is a function `handler(call, **params)`: its first argument is the
`Call` of the request, and its keyword-only parameters are the request's
params, checked against their annotations before the handler runs. The
types a parameter may have are the JSON ones: `str`, `int`, `float`,
`bool`, `list`, `list[str]` (or of another of these), `dict`, `Any`, and
any of them `| None`. A parameter without a default is required.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raidd.control.peer import Access
from raidd.control.protocol import INVALID_PARAMS, METHOD_NOT_FOUND, RpcError

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a method."""

    name: str
    annotation: Any
    required: bool


@dataclass(frozen=True)
class Method:
    """A registered method: its name, handler, required access and parameters."""

    name: str
    handler: Handler
    access: Access
    params: tuple[Param, ...]
    summary: str

    def bind(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check request params against the handler's parameters.

        Raises:
            RpcError: `INVALID_PARAMS` naming the unknown, missing or
                mistyped parameter.
        """
        known = {param.name: param for param in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise RpcError(
                INVALID_PARAMS,
                f"{self.name}: unknown parameter {unknown[0]!r} (parameters: {allowed})",
            )
        for param in self.params:
            if param.name not in params:
                if param.required:
                    raise RpcError(
                        INVALID_PARAMS, f"{self.name}: missing parameter {param.name!r}"
                    )
                continue
            value = params[param.name]
            if not matches(value, param.annotation):
                raise RpcError(
                    INVALID_PARAMS,
                    f"{self.name}: parameter {param.name!r} must be "
                    f"{describe(param.annotation)}, not {type_name(value)}",
                )
        return params


def matches(value: Any, annotation: Any) -> bool:
    """Tell whether a JSON value fits a parameter annotation."""
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, option) for option in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(matches(element, item) for element in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return type(value) is int
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation in (str, list, dict):
        return isinstance(value, annotation)
    raise TypeError(f"parameter type {annotation!r} is not a JSON type")


def describe(annotation: Any) -> str:
    """Name a parameter type in words for an error message."""
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(option) for option in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return f"an array of {describe(item)}" if item is not Any else "an array"
    words = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "an object",
    }
    return words.get(origin or annotation, "any value")


def type_name(value: Any) -> str:
    """Name a JSON value's type in words for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    words: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return words.get(type(value), type(value).__name__)


def _params_of(handler: Handler) -> tuple[Param, ...]:
    signature = inspect.signature(handler)
    positional = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) != 1:
        raise TypeError(
            f"{handler.__qualname__} must take the call as its only positional argument"
        )
    params = []
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD or parameter.kind is parameter.VAR_POSITIONAL:
            raise TypeError(
                f"{handler.__qualname__} must name every parameter (no *args/**kwargs)"
            )
        if parameter.kind is not parameter.KEYWORD_ONLY:
            continue
        annotation = _resolve(handler, parameter.annotation)
        matches(None, annotation)  # raises TypeError early for a non-JSON type
        params.append(
            Param(parameter.name, annotation, required=parameter.default is parameter.empty)
        )
    return tuple(params)


def _resolve(handler: Handler, annotation: Any) -> Any:
    """Evaluate one annotation, which `from __future__ import annotations` leaves a string.

    Only the keyword parameters' annotations are evaluated, because the
    call's annotation names a class that handler modules import for type
    checking only.
    """
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        namespace = {"Any": Any, **getattr(handler, "__globals__", {})}
        return eval(annotation, namespace)
    return annotation


class Registry:
    """The methods a control server dispatches to, by name."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(self, name: str, handler: Handler, access: Access = Access.ADMIN) -> Method:
        """Register a handler under `name`; access defaults to root only.

        Raises:
            ValueError: `name` is registered already.
            TypeError: the handler's signature does not fit the contract in
                the module docstring.
        """
        if name in self._methods:
            raise ValueError(f"control method {name!r} is registered already")
        summary = (inspect.getdoc(handler) or "").split("\n", 1)[0]
        method = Method(name, handler, access, _params_of(handler), summary)
        self._methods[name] = method
        return method

    def method(self, name: str, access: Access = Access.ADMIN) -> Callable[[Handler], Handler]:
        """Register the decorated function as the method `name`."""

        def register(handler: Handler) -> Handler:
            self.add(name, handler, access)
            return handler

        return register

    def get(self, name: str) -> Method:
        """Look a method up.

        Raises:
            RpcError: `METHOD_NOT_FOUND` naming the method.
        """
        method = self._methods.get(name)
        if method is None:
            raise RpcError(
                METHOD_NOT_FOUND, f"method {name!r} not found; call 'methods' for the list"
            )
        return method

    def names(self, access: Access | None = None) -> list[str]:
        """List the registered method names, only those at `access` when given."""
        return sorted(
            name for name, method in self._methods.items() if access in (None, method.access)
        )

    def __contains__(self, name: object) -> bool:
        return name in self._methods
