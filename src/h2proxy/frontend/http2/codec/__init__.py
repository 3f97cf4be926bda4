"""The HTTP/2 codec: the one package that touches h2, hpack, hyperframe and priority.

The rest of the front end (the connection, its streams, the negotiation of the
protocol) imports what it needs of the HTTP/2 libraries from here: the server
state machine and the priority tree, the events the state machine reports, the
error and setting codes, the exceptions it raises, and the few frames the front
end writes on its own. What this module exports is the surface the front end may
rely on; everything below it may change with a library release.

Importing the codec checks the libraries' installed versions against those it is
tested on (L{versions}) and reads the short-path switch (L{shortpaths}). Private
names of the libraries are used in L{internals} only.
"""

from __future__ import annotations

from h2proxy.frontend.http2.codec.versions import UnsupportedDependencyVersion, requireSupported

requireSupported()

from h2.errors import ErrorCodes  # noqa: E402 - after the version check
from h2.events import (  # noqa: E402
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
from h2.exceptions import ProtocolError  # noqa: E402
from h2.settings import SettingCodes  # noqa: E402
from priority import PriorityError  # noqa: E402

from h2proxy.frontend.http2.codec.framebuffer import MAX_DATA_RUN, MAX_FRAMES_PER_TURN  # noqa: E402
from h2proxy.frontend.http2.codec.machine import ServerConnection  # noqa: E402
from h2proxy.frontend.http2.codec.prioritytree import PriorityTree  # noqa: E402
from h2proxy.frontend.http2.codec.shortpaths import InvalidShortPathSetting  # noqa: E402
from h2proxy.frontend.http2.codec.wire import goAwayFrame, settingsFrame  # noqa: E402

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "ErrorCodes",
    "InvalidShortPathSetting",
    "MAX_DATA_RUN",
    "MAX_FRAMES_PER_TURN",
    "PingAckReceived",
    "PingReceived",
    "PriorityError",
    "PriorityTree",
    "PriorityUpdated",
    "ProtocolError",
    "RemoteSettingsChanged",
    "RequestReceived",
    "ServerConnection",
    "SettingCodes",
    "SettingsAcknowledged",
    "StreamEnded",
    "StreamReset",
    "TrailersReceived",
    "UnknownFrameReceived",
    "UnsupportedDependencyVersion",
    "WindowUpdated",
    "goAwayFrame",
    "settingsFrame",
]
