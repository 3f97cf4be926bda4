"""The one switch for the codec's short paths: the places where it does what h2,
hpack or priority would do, but without their slower general path.

The short paths are: whole unpadded DATA and HEADERS frames parsed without
hyperframe, and runs of DATA frames joined into one event (L{framebuffer}); request
field blocks of indexed fields decoded by table lookup (L{fieldcodec}); response
heads, DATA frames, END_STREAM and WINDOW_UPDATE frames written directly, and the
open-stream count kept instead of scanned (L{machine}); stream transitions looked
up by integer (L{streams}); and the flat round-robin priority tree with its cheap
removal (L{prioritytree}). Each is checked against the library's path by a
property test.

C{H2PROXY_CODEC_SHORT_PATHS} is read once, when the codec is imported: C{on} (the
default) or C{off}, which sends everything through the libraries' own paths, to
tell whether a problem lies in a short path. The codec's classes take the value
as their default, so a test can build one of each kind side by side.
"""

from __future__ import annotations

import os
from typing import Mapping

from h2proxy.errors import H2ProxyError

#: The environment variable holding the switch.
VARIABLE = "H2PROXY_CODEC_SHORT_PATHS"

_VALUES = {"on": True, "off": False}


class InvalidShortPathSetting(H2ProxyError):
    """H2PROXY_CODEC_SHORT_PATHS holds something other than on or off."""


def fromEnvironment(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the short paths are on, as the environment says (unset means on)."""
    value = environ.get(VARIABLE, "on")
    try:
        return _VALUES[value]
    except KeyError:
        raise InvalidShortPathSetting(
            f"{VARIABLE}={value!r}: expected 'on' (the default) or 'off' (the HTTP/2 libraries' own paths only)"
        ) from None


#: Whether the codec's short paths are on in this process.
ENABLED: bool = fromEnvironment()
