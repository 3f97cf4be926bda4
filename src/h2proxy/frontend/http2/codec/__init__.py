"""The HTTP/2 codec: the one package that touches h2, hpack, hyperframe and priority.

The rest of the front end (the connection, its streams, the negotiation of the
protocol) imports what it needs of the HTTP/2 libraries from here: the events
the state machine reports, the error and setting codes, and the exceptions it
raises. Everything below this package may change with a library release; what
this module exports is the surface the front end may rely on.
"""

from __future__ import annotations

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from priority import PriorityError

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "ErrorCodes",
    "PingAckReceived",
    "PingReceived",
    "PriorityError",
    "PriorityUpdated",
    "ProtocolError",
    "RemoteSettingsChanged",
    "RequestReceived",
    "SettingCodes",
    "SettingsAcknowledged",
    "StreamEnded",
    "StreamReset",
    "TrailersReceived",
    "UnknownFrameReceived",
    "WindowUpdated",
]
