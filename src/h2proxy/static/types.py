"""The Content-Type of a file, from its extension: a fixed table of the common web
types, so that what a client gets does not depend on the host's /etc/mime.types."""

from __future__ import annotations

#: What a file with an unknown extension is sent as.
DEFAULT_TYPE = b"application/octet-stream"

_TEXT = "; charset=utf-8"

#: Extension (lowercase, without the dot) -> media type.
MEDIA_TYPES: dict[bytes, bytes] = {
    ext.encode("ascii"): kind.encode("ascii")
    for ext, kind in {
        "html": "text/html" + _TEXT,
        "htm": "text/html" + _TEXT,
        "css": "text/css" + _TEXT,
        "js": "text/javascript" + _TEXT,
        "mjs": "text/javascript" + _TEXT,
        "json": "application/json",
        "map": "application/json",
        "svg": "image/svg+xml",
        "png": "image/png",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "gif": "image/gif",
        "webp": "image/webp",
        "avif": "image/avif",
        "ico": "image/vnd.microsoft.icon",
        "woff": "font/woff",
        "woff2": "font/woff2",
        "ttf": "font/ttf",
        "txt": "text/plain" + _TEXT,
        "xml": "text/xml" + _TEXT,
        "wasm": "application/wasm",
        "pdf": "application/pdf",
        "mp4": "video/mp4",
        "webm": "video/webm",
    }.items()
}


def content_type(name: bytes) -> bytes:
    """The media type of the file called C{name} (a path or a base name), by its
    last extension, case-insensitively; L{DEFAULT_TYPE} when unknown."""
    base = name.rpartition(b"/")[2]
    dot = base.rfind(b".")
    if dot <= 0:
        return DEFAULT_TYPE
    return MEDIA_TYPES.get(base[dot + 1 :].lower(), DEFAULT_TYPE)
