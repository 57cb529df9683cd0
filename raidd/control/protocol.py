"""JSON-RPC 2.0 framing of the control socket: one JSON message per line.

docs/PROTOCOL.md is the reference for clients; this module is its code.
Every message is a JSON object encoded in ASCII (non-ASCII characters as
`\\u` escapes) and ended by one `\\n`, so a line never contains a raw
newline. Requests take their parameters by name (an object); batches are
not supported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from raidd.errors import EXIT_USAGE, RaiddError, RequestError

PROTOCOL_VERSION = 3
JSONRPC = "2.0"

# Maximum length of a request line the server reads, newline included.
MAX_REQUEST_LINE = 1024 * 1024
# Maximum length of a line the server sends and the client reads. The server
# replaces a longer result with an error, so large results must be streamed.
MAX_RESPONSE_LINE = 4 * 1024 * 1024

# Codes fixed by the JSON-RPC 2.0 specification.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application codes, in the range the specification leaves to servers
# (-32000 to -32099).
ACCESS_DENIED = -32001
LINE_TOO_LONG = -32002
TIMED_OUT = -32003
TOO_MANY_CONNECTIONS = -32004
JOB_NOT_FOUND = -32005
JOB_CANCELLED = -32006
SHUTTING_DOWN = -32007
# Never sent: the outcome passed to a request observer when the client left.
CONNECTION_LOST = -32008
# A RaiddError raised by a method: `data` carries its class name and exit code.
OPERATION_FAILED = -32010

ERROR_NAMES = {
    PARSE_ERROR: "parse error",
    INVALID_REQUEST: "invalid request",
    METHOD_NOT_FOUND: "method not found",
    INVALID_PARAMS: "invalid params",
    INTERNAL_ERROR: "internal error",
    ACCESS_DENIED: "access denied",
    LINE_TOO_LONG: "line too long",
    TIMED_OUT: "timed out",
    TOO_MANY_CONNECTIONS: "too many connections",
    JOB_NOT_FOUND: "job not found",
    JOB_CANCELLED: "job cancelled",
    SHUTTING_DOWN: "shutting down",
    CONNECTION_LOST: "connection lost",
    OPERATION_FAILED: "operation failed",
}

RequestId = str | int | None


class RpcError(RequestError):
    """An error that becomes one JSON-RPC error response.

    Attributes:
        code: the JSON-RPC error code (one of this module's constants).
        data: extra JSON-serializable detail for the client, or None.
        request_id: the id of the request it replies to, when one could be read.
    """

    def __init__(
        self, code: int, message: str, data: Any = None, request_id: RequestId = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.request_id = request_id

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_from_exception(error: RaiddError) -> RpcError:
    """Translate a RaiddError raised by a method into an `OPERATION_FAILED` error."""
    if isinstance(error, RpcError):
        return error
    data = {"error": type(error).__name__, "exit_code": getattr(error, "exit_code", EXIT_USAGE)}
    return RpcError(OPERATION_FAILED, str(error), data)


@dataclass(frozen=True)
class Request:
    """One parsed request: `id` is absent (`is_notification`) for notifications."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    id: RequestId = None
    is_notification: bool = False


def encode(message: dict[str, Any]) -> bytes:
    """Encode one message as a line of ASCII JSON ended by a newline.

    Raises:
        ValueError: the message contains NaN or an infinity, which JSON lacks.
        TypeError: the message contains a value JSON cannot represent.
    """
    text = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.encode("ascii") + b"\n"


def parse_request(line: bytes) -> Request:
    """Parse and validate one request line (without its newline).

    Raises:
        RpcError: `PARSE_ERROR` for bytes that are not UTF-8 JSON,
            `INVALID_REQUEST` for JSON that is not a request object, and
            `INVALID_PARAMS` for params that are not an object. The error's
            `request_id` is the request's id when one could be read.
    """
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        # ValueError covers UnicodeDecodeError, JSONDecodeError and integers
        # longer than Python's limit of 4300 digits.
        raise RpcError(PARSE_ERROR, f"invalid JSON: {error}") from None
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "batch requests are not supported; send one per line")
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, f"a request must be a JSON object, not {_kind(message)}")
    request_id = message.get("id")
    has_id = "id" in message
    if has_id and not _valid_id(request_id):
        raise RpcError(INVALID_REQUEST, "id must be a string, an integer or null")
    known_id = request_id if has_id else None
    if message.get("jsonrpc") != JSONRPC:
        raise RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"', None, known_id)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, "method must be a non-empty string", None, known_id)
    unknown = sorted(set(message) - {"jsonrpc", "method", "params", "id"})
    if unknown:
        raise RpcError(
            INVALID_REQUEST, f"unknown request members: {', '.join(unknown)}", None, known_id
        )
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise RpcError(
            INVALID_PARAMS,
            f"params must be an object (by name), not {_kind(params)}",
            None,
            known_id,
        )
    return Request(method, params, request_id, is_notification=not has_id)


def _reject_constant(name: str) -> Any:
    """Reject NaN and Infinity, which Python's json accepts and JSON does not."""
    raise ValueError(f"{name} is not a JSON value")


def _valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or type(value) is int


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def result_message(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": request_id, "result": result}


def error_message(request_id: RequestId, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": request_id, "error": error.to_json()}


def notification_message(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "method": method, "params": params}
