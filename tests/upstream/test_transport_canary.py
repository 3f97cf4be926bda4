"""Canary for the one private Twisted name the upstream side uses:
C{twisted.internet.tcp.Connector._makeTransport}, which
L{h2proxy.upstream.transport.ImmediateWriteConnector} overrides so that backend
connections are made as L{ImmediateWriteClient}. If Twisted renames it, changes its
signature or stops calling it from C{connect}, backend connections would silently
fall back to the plain queued transport; these tests say so instead."""

from __future__ import annotations

import inspect

from twisted.internet import base, tcp
from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import MemoryReactorClock

from h2proxy.upstream.transport import ImmediateWriteClient, ImmediateWriteConnector

FIX = (
    "h2proxy/upstream/transport.py: ImmediateWriteConnector overrides "
    "twisted.internet.tcp.Connector._makeTransport to build ImmediateWriteClient; "
    "find where this Twisted version builds a connector's transport and override that instead"
)


def test_tcp_connector_still_has_make_transport_taking_only_self():
    """When Twisted is upgraded, tcp.Connector still builds its transport in _makeTransport(self)."""
    method = getattr(tcp.Connector, "_makeTransport", None)
    assert method is not None, f"Twisted's tcp.Connector has no _makeTransport any more. {FIX}"
    parameters = list(inspect.signature(method).parameters)
    assert parameters == ["self"], f"tcp.Connector._makeTransport now takes {parameters}. {FIX}"


def test_connect_still_builds_the_transport_through_make_transport():
    """When a connector connects, the transport it holds is the one _makeTransport built."""
    assert "_makeTransport" in inspect.getsource(base.BaseConnector.connect), (
        f"BaseConnector.connect no longer calls _makeTransport. {FIX}"
    )
    connector = ImmediateWriteConnector("127.0.0.1", 9, ClientFactory(), 30, None, MemoryReactorClock())
    connector.connect()
    try:
        assert type(connector.transport) is ImmediateWriteClient, f"the override was not used. {FIX}"
    finally:
        connector.stopConnecting()


def test_plain_connector_still_makes_the_client_we_subclass():
    """When Twisted is upgraded, the plain connector still makes a tcp.Client, the class ImmediateWriteClient extends."""
    connector = tcp.Connector("127.0.0.1", 9, ClientFactory(), 30, None, MemoryReactorClock())
    transport = connector._makeTransport()
    try:
        assert type(transport) is tcp.Client, f"tcp.Connector now makes {type(transport)!r}. {FIX}"
    finally:
        transport.socket.close()
