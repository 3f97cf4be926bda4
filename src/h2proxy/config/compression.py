"""A route's ``compress`` section: which responses are compressed, and how hard.

Written ``compress: true`` for the defaults, or as a mapping to change them; the
section's kind (L{h2proxy.config.spec.Section} with C{switch}) reads both. Kept
apart from model.py, which holds the rest of the route; plain data like the rest of
the config package. h2proxy.compression.policy applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from h2proxy.config.spec import Choice, Integer, ListOf, Pattern, Size, option

#: The content codings a route may offer, in the default order of preference.
CODINGS = ("br", "zstd", "gzip")

#: Media types compressed when a route names none (nginx's text types, scripts,
#: JSON, XML feeds and SVG).
DEFAULT_TYPES = (
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "application/rss+xml",
    "image/svg+xml",
)

#: Most media types one route may list.
MAX_TYPES = 256

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
MEDIA_TYPE = Pattern(rf"{_TOKEN}/{_TOKEN}", "a media type like text/html, without parameters", lower=True)


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """Response compression: a final 200 of a listed media type, not already encoded
    and not marked no-transform, is encoded in the best coding the client's
    Accept-Encoding accepts, and flushed as the backend sends it."""

    types: tuple[str, ...] = option(
        ListOf(MEDIA_TYPE, 1, MAX_TYPES, unique=True),
        "Media types compressed (Content-Type without parameters, case-insensitive).",
        default=DEFAULT_TYPES,
    )
    min_length: int = option(
        Size(0, 1024**3),
        "A response whose Content-Length is below this is sent as it is (unknown lengths are compressed).",
        default=1024,
    )
    level: int = option(
        Integer(1, 9),
        "gzip's compression level; br uses quality 4 (window 256KiB) and zstd level 3 (window 256KiB) whatever it is.",
        default=6,
    )
    codings: tuple[str, ...] = option(
        ListOf(Choice(CODINGS), 1, len(CODINGS), unique=True),
        "Codings offered, in the server's order of preference (ties in the client's weights go to the first).",
        default=CODINGS,
    )
