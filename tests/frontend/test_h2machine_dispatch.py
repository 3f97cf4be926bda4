"""ServerConnection's frame dispatch table covers every frame h2 dispatches."""

from __future__ import annotations

import h2.config
import h2.connection

from h2proxy.frontend.http2.connection import _EVENT_HANDLERS, H2Connection
from h2proxy.frontend.http2.codec.machine import FRAME_HANDLERS, ServerConnection


def test_every_frame_h2_receives_has_a_handler():
    """When h2 knows how to receive a frame type, ServerConnection's table has a
    receiver for it, and the per-connection table of bound methods is gone."""
    reference = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    assert set(reference._frame_dispatch_table) <= set(FRAME_HANDLERS)
    assert all(callable(handler) for handler in FRAME_HANDLERS.values())
    assert not hasattr(ServerConnection(local_settings={}, header_list_hard_limit=65536), "_frame_dispatch_table")


def test_every_event_handler_exists():
    """When an h2 event type is dispatched by H2Connection, the method it names exists."""
    assert all(callable(getattr(H2Connection, name)) for name in _EVENT_HANDLERS.values())
