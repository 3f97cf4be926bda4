"""The canary: every private name of a dependency that h2proxy uses, each checked
against the installed dependency, and the table checked against the source.

A private name can disappear or change in any release. When one of these tests
fails after an upgrade, its message names the dependency's name and the h2proxy
module that uses it: that module is the one place to change (for the HTTP/2
libraries, L{h2proxy.frontend.http2.codec.internals}).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from dataclasses import dataclass
from types import ModuleType

import pytest

from tests.privatescan import Use, scan

CODEC = "h2proxy.frontend.http2.codec.internals"
BATCHING = "h2proxy.tls.batching"
TRANSPORT = "h2proxy.upstream.transport"
SERVER = "h2proxy.worker.server"

H2_CONNECTION = "h2.connection.H2Connection"
TLS_PROTOCOL = "twisted.protocols.tls.TLSMemoryBIOProtocol"


@dataclass(frozen=True)
class PrivateName:
    """C{name}, private to C{owner} (a dotted module or class path), used by C{usedBy}."""

    name: str
    owner: str
    usedBy: str

    def __str__(self) -> str:
        return f"{self.owner}.{self.name} (used by {self.usedBy})"


PRIVATE_NAMES = [
    # h2: the server state machine's hooks and state (codec/internals.py).
    PrivateName("_decode_headers", "h2.connection", CODEC),
    PrivateName("_data_to_send", H2_CONNECTION, CODEC),
    PrivateName("_inbound_flow_control_window_manager", H2_CONNECTION, CODEC),
    PrivateName("_prepare_for_sending", H2_CONNECTION, CODEC),
    PrivateName("_frame_dispatch_table", H2_CONNECTION, CODEC),
    PrivateName("_closed_streams", H2_CONNECTION, CODEC),
    PrivateName("_stream_closed_by", H2_CONNECTION, CODEC),
    PrivateName("_get_or_create_stream", H2_CONNECTION, CODEC),
    PrivateName("_open_streams", H2_CONNECTION, CODEC),
    PrivateName("_begin_new_stream", H2_CONNECTION, CODEC),
    PrivateName("_receive_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_headers_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_data_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_priority_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_rst_stream_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_window_update_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_goaway_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_push_promise_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_settings_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_ping_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_naked_continuation", H2_CONNECTION, CODEC),
    PrivateName("_receive_alt_svc_frame", H2_CONNECTION, CODEC),
    PrivateName("_receive_unknown_frame", H2_CONNECTION, CODEC),
    PrivateName("_handle_data_on_closed_stream", H2_CONNECTION, CODEC),
    PrivateName("_terminate_connection", H2_CONNECTION, CODEC),
    PrivateName("_local_settings_acked", H2_CONNECTION, CODEC),
    PrivateName("_events", "h2.exceptions.StreamClosedError", CODEC),
    PrivateName("_transitions", "h2.stream", CODEC),
    PrivateName("_inbound_window_manager", "h2.stream.H2Stream", CODEC),
    PrivateName("_track_content_length", "h2.stream.H2Stream", CODEC),
    PrivateName("_data", "h2.frame_buffer.FrameBuffer", CODEC),
    PrivateName("_headers_buffer", "h2.frame_buffer.FrameBuffer", CODEC),
    PrivateName("_update_header_buffer", "h2.frame_buffer.FrameBuffer", CODEC),
    PrivateName("_settings", "h2.settings.Settings", CODEC),
    # hpack, priority, heapq (codec/internals.py).
    PrivateName("_encode_table_size_change", "hpack.Encoder", CODEC),
    PrivateName("_streams", "priority.PriorityTree", CODEC),
    PrivateName("_maximum_streams", "priority.PriorityTree", CODEC),
    PrivateName("_siftup", "heapq", CODEC),
    PrivateName("_siftdown", "heapq", CODEC),
    # pyOpenSSL: SSL_read into a reused buffer (tls/batching.py).
    PrivateName("_util", "OpenSSL", BATCHING),
    PrivateName("_ssl", "OpenSSL.SSL.Connection", BATCHING),
    PrivateName("_raise_ssl_error", "OpenSSL.SSL.Connection", BATCHING),
    # pyOpenSSL and Twisted's TCP transport: the send BIO read into a reused buffer
    # and sent from it while the transport holds nothing unsent (tls/batching.py).
    PrivateName("_from_ssl", "OpenSSL.SSL.Connection", BATCHING),
    PrivateName("_tempDataLen", "twisted.internet.abstract.FileDescriptor", BATCHING),
    PrivateName("_writeDisconnected", "twisted.internet.abstract.FileDescriptor", BATCHING),
    # Twisted's TLS protocol: the batched write and close paths (tls/batching.py).
    PrivateName("_aborted", TLS_PROTOCOL, BATCHING),
    PrivateName("_appSendBuffer", TLS_PROTOCOL, BATCHING),
    PrivateName("_bufferedWrite", TLS_PROTOCOL, BATCHING),
    PrivateName("_flushReceiveBIO", TLS_PROTOCOL, BATCHING),
    PrivateName("_flushSendBIO", TLS_PROTOCOL, BATCHING),
    PrivateName("_handshakeDone", TLS_PROTOCOL, BATCHING),
    PrivateName("_lostTLSConnection", TLS_PROTOCOL, BATCHING),
    PrivateName("_producer", TLS_PROTOCOL, BATCHING),
    PrivateName("_shutdownTLS", TLS_PROTOCOL, BATCHING),
    PrivateName("_tlsConnection", TLS_PROTOCOL, BATCHING),
    PrivateName("_tlsShutdownFinished", TLS_PROTOCOL, BATCHING),
    PrivateName("_write", TLS_PROTOCOL, BATCHING),
    # Twisted's TLS protocol: the handshake's end and TLS's own failure, offered to
    # subclasses as handshakeEnded() and tlsFailure (tls/batching.py).
    PrivateName("_checkHandshakeStatus", TLS_PROTOCOL, BATCHING),
    PrivateName("_reason", TLS_PROTOCOL, BATCHING),
    # Twisted's TCP connector: the hook that builds the backend transport, overridden to
    # build the immediate-write client (upstream/transport.py; its behaviour is also
    # checked by tests/upstream/test_transport_canary.py).
    PrivateName("_makeTransport", "twisted.internet.tcp.Connector", TRANSPORT),
    # Twisted's PROXY protocol wrapper, whose package exports no factory (worker/server.py).
    PrivateName("_wrapper", "twisted.protocols.haproxy", SERVER),
]


def _resolve(path: str) -> object:
    """The module or class a dotted path names."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute)
        return found
    raise ImportError(path)


def _exists(owner: object, name: str) -> bool:
    """C{name} on C{owner}: an attribute, a submodule of a module, or an instance
    attribute that a class in the owner's MRO assigns (C{self.name = ...})."""
    if hasattr(owner, name):
        return True
    if isinstance(owner, ModuleType):
        return importlib.util.find_spec(f"{owner.__name__}.{name}") is not None
    assignment = re.compile(rf"self\.{re.escape(name)}\s*(:[^=]*)?=")
    return any(
        assignment.search(inspect.getsource(cls)) for cls in owner.__mro__ if cls is not object  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("private", PRIVATE_NAMES, ids=str)
def test_private_name_still_exists(private: PrivateName) -> None:
    """When the installed dependency is imported, the private name h2proxy uses is
    still there."""
    owner = _resolve(private.owner)
    assert _exists(owner, private.name), (
        f"{private.owner}.{private.name} no longer exists in the installed dependency; "
        f"{private.usedBy} uses it and must change"
    )


def test_table_lists_every_private_name_in_use() -> None:
    """When the source is scanned, every private name of a dependency that a module
    uses is in PRIVATE_NAMES with that module."""
    listed = {Use(private.name, private.usedBy) for private in PRIVATE_NAMES}
    missing = sorted(scan() - listed)
    assert not missing, "private names used but not in PRIVATE_NAMES: " + ", ".join(
        f"{use.name} in {use.module}" for use in missing
    )


def test_table_lists_nothing_no_longer_used() -> None:
    """When the source is scanned, every entry of PRIVATE_NAMES is still used by its module."""
    listed = {Use(private.name, private.usedBy) for private in PRIVATE_NAMES}
    stale = sorted(listed - scan())
    assert not stale, "PRIVATE_NAMES entries no longer used: " + ", ".join(f"{use.name} in {use.module}" for use in stale)


def test_codec_private_names_are_fenced() -> None:
    """When the source is scanned, no module but the codec's internals uses a
    private name of h2, hpack, hyperframe, priority or heapq."""
    libraries = ("h2.", "hpack", "hyperframe", "priority", "heapq")
    outside = [private for private in PRIVATE_NAMES if private.owner.startswith(libraries) and private.usedBy != CODEC]
    assert not outside
