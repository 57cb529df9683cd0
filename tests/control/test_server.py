"""The control server on real Unix sockets: dispatch, errors, limits and timeouts."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from raidd.control import ControlClient, RemoteError
from raidd.control.client import ControlConnectionError
from raidd.control.protocol import (
    CONNECTION_LOST,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LINE_TOO_LONG,
    METHOD_NOT_FOUND,
    OPERATION_FAILED,
    PARSE_ERROR,
    TIMED_OUT,
    TOO_MANY_CONNECTIONS,
)
from tests.control.conftest import ServerFactory


class RawClient:
    """A bare socket client that reads one JSON line at a time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def read(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed after {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def at_eof(self) -> bool:
        return self.buffer == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_ping_round_trip(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        result = client.call("ping", {"payload": "hello"})
    assert result["pong"] == "hello"
    assert result["uid"] == 0


def test_many_calls_on_one_connection(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        for index in range(50):
            assert client.call("ping", {"payload": str(index)})["pong"] == str(index)


def test_pipelined_requests_answered_in_order(make_server: ServerFactory) -> None:
    server = make_server()
    sock = RawClient(server.path)
    lines = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": index, "method": "ping"}).encode() + b"\n"
        for index in range(20)
    )
    sock.send(lines)
    ids = [sock.read()["id"] for _ in range(20)]
    sock.close()
    assert ids == list(range(20))


def test_methods_lists_read_and_admin(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        methods = {entry["name"]: entry for entry in client.call("methods")}
    assert methods["ping"]["access"] == "read"
    assert methods["fail"]["access"] == "admin"
    assert methods["fail"]["summary"] == "Mark a member failed (root only)."


def test_unknown_method_error(make_server: ServerFactory) -> None:
    server = make_server()
    with (
        ControlClient(server.path) as client,
        pytest.raises(RemoteError, match="not found") as raised,
    ):
        client.call("no.such.method")
    assert raised.value.code == METHOD_NOT_FOUND


def test_wrong_params_error(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        with pytest.raises(RemoteError, match="'count' must be an integer") as raised:
            client.call("typed", {"name": "n", "count": "x"})
        assert raised.value.code == INVALID_PARAMS
        assert client.call("typed", {"name": "n", "count": 3})["count"] == 3


def test_raidd_error_carries_exit_code(make_server: ServerFactory) -> None:
    server = make_server()
    with (
        ControlClient(server.path) as client,
        pytest.raises(RemoteError, match="stripe 7") as raised,
    ):
        client.call("lost")
    assert raised.value.code == OPERATION_FAILED
    assert raised.value.exit_code == 3
    assert raised.value.data == {"error": "IntegrityError", "exit_code": 3}


def test_crash_is_internal_error(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        with pytest.raises(RemoteError, match="internal error") as raised:
            client.call("crash")
        assert raised.value.code == INTERNAL_ERROR
        with pytest.raises(RemoteError, match="internal error"):
            client.call("unserializable")
        assert client.call("ping")["pong"] == ""


def test_oversized_result_replaced(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        with pytest.raises(RemoteError, match="'huge' is over 4194304 bytes") as raised:
            client.call("huge")
        assert raised.value.code == INTERNAL_ERROR
        assert client.call("ping")["pong"] == ""


def test_frame_with_reserved_key(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client, pytest.raises(RemoteError) as raised:
        client.call("bad_frame")
    assert raised.value.code == INTERNAL_ERROR


def test_notification_gets_no_response(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        client.notify("ping")
        client.notify("no.such.method")
        assert client.call("ping", {"payload": "after"})["pong"] == "after"


def test_invalid_json_keeps_connection(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        client.send_line(b"{not json\n")
        reply = client.read_message()
        assert reply["id"] is None
        assert reply["error"]["code"] == PARSE_ERROR
        assert client.call("ping", {"payload": "still"})["pong"] == "still"


def test_long_line_skipped_then_served(make_server: ServerFactory) -> None:
    server = make_server(max_line=1024)
    with ControlClient(server.path) as client:
        client.send_line(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"payload":"')
        client.send_line(b"x" * 5000 + b'"}}\n')
        reply = client.read_message()
        assert reply["error"]["code"] == LINE_TOO_LONG
        assert "1024 bytes" in reply["error"]["message"]
        assert client.call("ping", {"payload": "short"})["pong"] == "short"


def test_long_line_in_one_piece(make_server: ServerFactory) -> None:
    """A long line that arrives with its newline and a valid request behind it."""
    server = make_server(max_line=1024)
    sock = RawClient(server.path)
    sock.send(b"y" * 3000 + b'\n{"jsonrpc":"2.0","id":5,"method":"ping"}\n')
    first = sock.read()
    second = sock.read()
    sock.close()
    assert first["error"]["code"] == LINE_TOO_LONG
    assert second["id"] == 5
    assert second["result"]["pong"] == ""


def test_idle_client_timed_out(make_server: ServerFactory) -> None:
    server = make_server(idle_timeout=0.2)
    sock = RawClient(server.path)
    reply = sock.read()
    assert reply["error"]["code"] == TIMED_OUT
    assert "no request within 0.2 s" in reply["error"]["message"]
    assert sock.at_eof()
    sock.close()


def test_slow_line_timed_out(make_server: ServerFactory) -> None:
    """A client that starts a line and never ends it is cut off by the line timeout."""
    server = make_server(idle_timeout=60, line_timeout=0.3)
    sock = RawClient(server.path)
    sock.send(b'{"jsonrpc":"2.0",')
    reply = sock.read()
    assert reply["error"]["code"] == TIMED_OUT
    assert "not completed within 0.3 s" in reply["error"]["message"]
    assert sock.at_eof()
    sock.close()


def test_too_many_connections(make_server: ServerFactory) -> None:
    server = make_server(max_connections=2, root_reserve=0)
    first = ControlClient(server.path).connect()
    second = ControlClient(server.path).connect()
    assert first.call("ping")["pong"] == ""
    assert second.call("ping")["pong"] == ""
    third = RawClient(server.path)
    reply = third.read()
    assert reply["error"]["code"] == TOO_MANY_CONNECTIONS
    assert "2 connections are open already" in reply["error"]["message"]
    assert third.at_eof()
    third.close()
    assert first.call("ping", {"payload": "1"})["pong"] == "1"
    first.close()
    assert wait_until(lambda: server.connection_count == 1)
    with ControlClient(server.path) as fourth:
        assert fourth.call("ping", {"payload": "4"})["pong"] == "4"
    second.close()


def test_stalled_reader_dropped(make_server: ServerFactory) -> None:
    """A client that requests a large stream and never reads it is dropped."""
    server = make_server(write_timeout=0.3)
    stalled = RawClient(server.path)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = {"jsonrpc": "2.0", "id": 1, "method": "blob", "params": {"size": 20_000_000}}
    stalled.send(json.dumps(request).encode() + b"\n")
    with ControlClient(server.path) as other:
        assert other.call("ping", {"payload": "served"})["pong"] == "served"
    assert wait_until(lambda: server.connection_count == 0)
    stalled.close()


def test_half_closed_client_gets_stream(make_server: ServerFactory) -> None:
    """A client that shuts down its writing side after the request still reads it all."""
    server = make_server()
    sock = RawClient(server.path)
    request = {"jsonrpc": "2.0", "id": 1, "method": "blob", "params": {"size": 300_000}}
    sock.send(json.dumps(request).encode() + b"\n")
    sock.sock.shutdown(socket.SHUT_WR)
    kinds = []
    while True:
        message = sock.read()
        if "id" in message:
            break
        kinds.append(message["params"]["kind"])
    assert message["result"] == {"files": 1, "bytes": 300_000}
    assert kinds[0] == "file"
    assert kinds[-1] == "file_end"
    assert kinds.count("data") == 7
    assert sock.at_eof()
    sock.close()


def test_client_disconnect_mid_stream(make_server: ServerFactory) -> None:
    server = make_server()
    seen: list[tuple[str, int | None]] = []
    server.on_request = lambda call, error: seen.append(
        (call.method.name, None if error is None else error.code)
    )
    sock = RawClient(server.path)
    request = {"jsonrpc": "2.0", "id": 1, "method": "blob", "params": {"size": 20_000_000}}
    sock.send(json.dumps(request).encode() + b"\n")
    sock.sock.recv(1000)
    sock.close()
    assert wait_until(lambda: server.connection_count == 0)
    assert seen == [("blob", CONNECTION_LOST)]
    with ControlClient(server.path) as client:
        assert client.call("ping")["pong"] == ""


def test_close_with_idle_connections(make_server: ServerFactory) -> None:
    server = make_server()
    clients = [ControlClient(server.path).connect() for _ in range(5)]
    for client in clients:
        client.call("ping")
    server.close()
    assert server.connection_count == 0
    assert not server.path.exists()
    for client in clients:
        with pytest.raises(ControlConnectionError):
            client.call("ping")
        client.close()


def test_concurrent_clients(make_server: ServerFactory) -> None:
    server = make_server()
    failures: list[str] = []

    def worker(number: int) -> None:
        with ControlClient(server.path) as client:
            for index in range(100):
                payload = f"{number}-{index}"
                result = client.call("ping", {"payload": payload})
                if result["pong"] != payload:
                    failures.append(f"{payload} returned {result}")

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_observer_sees_each_request(make_server: ServerFactory) -> None:
    server = make_server()
    seen: list[tuple[str, int | None]] = []
    server.on_request = lambda call, error: seen.append(
        (call.method.name, None if error is None else error.code)
    )
    with ControlClient(server.path) as client:
        client.call("ping")
        with pytest.raises(RemoteError):
            client.call("typed", {"name": 1, "count": 1})
    assert seen == [("ping", None), ("typed", INVALID_PARAMS)]


def test_connect_to_missing_socket(tmp_path: Path) -> None:
    client = ControlClient(tmp_path / "absent.sock")
    with pytest.raises(ControlConnectionError, match="is raidd running"):
        client.connect()
