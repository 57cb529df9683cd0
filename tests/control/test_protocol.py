"""Request parsing and message encoding."""

from __future__ import annotations

import json

import pytest

from raidd.control.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    OPERATION_FAILED,
    PARSE_ERROR,
    RpcError,
    encode,
    error_from_exception,
    parse_request,
)
from raidd.errors import IntegrityError


def test_parse_valid_request() -> None:
    request = parse_request(b'{"jsonrpc":"2.0","id":7,"method":"status","params":{"a":1}}')
    assert request.method == "status"
    assert request.id == 7
    assert request.params == {"a": 1}
    assert not request.is_notification


def test_parse_notification_and_defaults() -> None:
    request = parse_request(b'{"jsonrpc":"2.0","method":"ping"}')
    assert request.is_notification
    assert request.params == {}
    assert request.id is None


def test_parse_string_and_null_ids() -> None:
    assert parse_request(b'{"jsonrpc":"2.0","id":"a","method":"m"}').id == "a"
    null_id = parse_request(b'{"jsonrpc":"2.0","id":null,"method":"m"}')
    assert null_id.id is None
    assert not null_id.is_notification


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        (b"", PARSE_ERROR, "invalid JSON"),
        (b"{", PARSE_ERROR, "invalid JSON"),
        (b"\xff\xfe", PARSE_ERROR, "invalid JSON"),
        (b"[" * 100_000, PARSE_ERROR, "invalid JSON"),
        (b'{"jsonrpc":"2.0","id":' + b"1" * 5000 + b',"method":"m"}', PARSE_ERROR, "4300"),
        (b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":NaN}}', PARSE_ERROR, "NaN"),
        (b"[]", INVALID_REQUEST, "batch requests are not supported"),
        (b'"ping"', INVALID_REQUEST, "not a string"),
        (b"42", INVALID_REQUEST, "not a number"),
        (b"null", INVALID_REQUEST, "not null"),
        (b'{"jsonrpc":"1.0","id":1,"method":"m"}', INVALID_REQUEST, "jsonrpc must be"),
        (b'{"id":1,"method":"m"}', INVALID_REQUEST, "jsonrpc must be"),
        (b'{"jsonrpc":"2.0","id":1,"method":3}', INVALID_REQUEST, "method must be"),
        (b'{"jsonrpc":"2.0","id":1,"method":""}', INVALID_REQUEST, "method must be"),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"m"}', INVALID_REQUEST, "id must be"),
        (b'{"jsonrpc":"2.0","id":true,"method":"m"}', INVALID_REQUEST, "id must be"),
        (b'{"jsonrpc":"2.0","id":{},"method":"m"}', INVALID_REQUEST, "id must be"),
        (b'{"jsonrpc":"2.0","id":1,"method":"m","x":1}', INVALID_REQUEST, "unknown request"),
        (b'{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}', INVALID_PARAMS, "an array"),
        (b'{"jsonrpc":"2.0","id":1,"method":"m","params":"p"}', INVALID_PARAMS, "a string"),
    ],
)
def test_parse_rejects(line: bytes, code: int, message: str) -> None:
    with pytest.raises(RpcError, match=message) as raised:
        parse_request(line)
    assert raised.value.code == code


def test_parse_error_keeps_request_id() -> None:
    with pytest.raises(RpcError) as raised:
        parse_request(b'{"jsonrpc":"2.0","id":9,"method":"m","params":[]}')
    assert raised.value.request_id == 9


def test_encode_is_one_ascii_line() -> None:
    line = encode({"text": "zwei\nZeilen, ä", "n": 1})
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line.isascii()
    assert json.loads(line) == {"text": "zwei\nZeilen, ä", "n": 1}


def test_encode_rejects_nan() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode({"value": float("nan")})


def test_error_from_raidd_error() -> None:
    error = error_from_exception(IntegrityError("stripe 7 lost"))
    assert error.code == OPERATION_FAILED
    assert error.to_json() == {
        "code": OPERATION_FAILED,
        "message": "stripe 7 lost",
        "data": {"error": "IntegrityError", "exit_code": 3},
    }
