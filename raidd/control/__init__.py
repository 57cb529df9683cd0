"""The control socket: JSON-RPC 2.0 over a Unix stream socket, one message a line.

Nouns:

- request / response: a JSON-RPC message from the client, and the one reply
  with the same id. A notification is a request without an id.
- method: a named handler in the `Registry`, with the access it requires
  (`Access.READ` for members of the control group, `Access.ADMIN` for root).
- caller (`Peer`): the pid, uid, gid and groups a client connected with.
- frame: a `stream` notification the server sends before a long reply's
  final response (entries of a restore, progress of a followed job).
- entry: one directory, symbolic link, file or hard link of a restore
  stream; `EntryReader` turns frames back into entries.
- job: a long operation that runs after its request returned its id.
"""

from raidd.control.client import ControlClient, RemoteError, default_socket_path
from raidd.control.connection import ConnectionClosedError, Limits
from raidd.control.jobs import Job, JobCancelledError, JobRegistry, JobState
from raidd.control.listener import DEFAULT_SOCKET, resolve_group
from raidd.control.peer import Access, Peer, Policy, peer_credentials
from raidd.control.protocol import PROTOCOL_VERSION, RpcError
from raidd.control.registry import Registry
from raidd.control.server import Call, ControlServer
from raidd.control.stream import EntryReader, FileContent, FileLostError, Frame, StreamError

__all__ = [
    "DEFAULT_SOCKET",
    "PROTOCOL_VERSION",
    "Access",
    "Call",
    "ConnectionClosedError",
    "ControlClient",
    "ControlServer",
    "EntryReader",
    "FileContent",
    "FileLostError",
    "Frame",
    "Job",
    "JobCancelledError",
    "JobRegistry",
    "JobState",
    "Limits",
    "Peer",
    "Policy",
    "Registry",
    "RemoteError",
    "RpcError",
    "StreamError",
    "default_socket_path",
    "peer_credentials",
    "resolve_group",
]
