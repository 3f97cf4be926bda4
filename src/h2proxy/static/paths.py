"""Where a request path leads under a static route's root: pure checks of the path
(L{requested}), then the file system's answer (L{locate}, L{siblings}), which blocks
and so runs off the reactor thread.

The rules, in order: the route's prefix is removed and the query dropped; the rest
is percent-decoded once; a path whose raw form has an encoded slash, or whose
decoded form has a NUL, a backslash or a ``.`` or ``..`` segment, is refused; the
file's real path (every symbolic link resolved) must then lie under the root's
real path, unless the route follows symbolic links. Hidden files are served.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

#: What the file system answers for a path that names nothing it can reach: a name
#: too long, or a loop of symbolic links. About the request, not the daemon: 404.
UNREACHABLE = (errno.ENAMETOOLONG, errno.ELOOP)

#: Precompressed siblings tried, by content coding, and their file name suffix.
SIBLINGS = (("br", b".br"), ("gzip", b".gz"))


class Refused(Exception):
    """The path names nothing that may be served: answered 404, whatever the reason
    (a client learns nothing of what exists outside the root)."""


class IsDirectory(Exception):
    """The path names a directory without a trailing slash: answered 301 to the same
    path with one, so that relative links in its index resolve under it."""


@dataclass(frozen=True, slots=True)
class Requested:
    """A request path, checked and decoded.

    @ivar relative: the decoded path under the root, empty or starting with ``/``.
    @ivar directory: the path ended with ``/`` (a directory's index is wanted).
    """

    relative: bytes
    directory: bool


@dataclass(frozen=True, slots=True)
class Site:
    """A static route's file system settings, as the blocking functions need them."""

    root: bytes
    index: bytes
    follow_symlinks: bool


def requested(path: bytes, prefix: str) -> Requested:
    """The part of the request path C{path} under the route's C{prefix}, decoded.
    Raises L{Refused} for anything that could name a file outside the root by its
    spelling alone."""
    path = path.partition(b"?")[0]
    rest = path[len(prefix.rstrip("/")) :]
    if b"%2f" in rest.lower():
        raise Refused("an encoded slash")
    decoded = unquote_to_bytes(rest)
    if b"\0" in decoded or b"\\" in decoded:
        raise Refused("a NUL or a backslash")
    if any(segment in (b".", b"..") for segment in decoded.split(b"/")):
        raise Refused("a dot segment")
    if decoded and not decoded.startswith(b"/"):
        raise Refused("no slash after the route's prefix")
    return Requested(relative=decoded, directory=decoded.endswith(b"/"))


def inside(real: bytes, root: bytes) -> bool:
    """Whether the real path C{real} is C{root} or under it."""
    return real == root or real.startswith(root.rstrip(b"/") + b"/")


def _regular_under(path: bytes, root: bytes, site: Site) -> bytes | None:
    """The real path of C{path} when it is a regular file the route may serve."""
    real = os.path.realpath(path)
    if not site.follow_symlinks and not inside(real, root):
        return None
    try:
        return real if stat.S_ISREG(os.stat(real).st_mode) else None
    except OSError:
        return None


def locate(site: Site, wanted: Requested) -> bytes:
    """The real path of the regular file to serve for C{wanted}. Blocking. Raises
    L{Refused} (404) or L{IsDirectory} (301); a permission error on the way is an
    C{OSError} for the caller to answer."""
    root = os.path.realpath(site.root)
    real = os.path.realpath(root + wanted.relative)
    if not site.follow_symlinks and not inside(real, root):
        raise Refused("outside the root")
    try:
        mode = os.stat(real).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise Refused("no such file") from None
    except OSError as error:
        if error.errno in UNREACHABLE:
            raise Refused("a name too long or a loop of symbolic links") from None
        raise
    if stat.S_ISDIR(mode):
        if not wanted.directory:
            raise IsDirectory(real)
        index = _regular_under(os.path.join(real, site.index), root, site)
        if index is None:
            raise Refused("a directory without its index")
        return index
    if not stat.S_ISREG(mode) or wanted.directory:
        raise Refused("not a regular file")
    return real


def siblings(site: Site, real: bytes) -> dict[str, bytes]:
    """The precompressed siblings of the file C{real} that exist as regular files the
    route may serve: content coding -> real path. Blocking."""
    root = os.path.realpath(site.root)
    found = {}
    for coding, suffix in SIBLINGS:
        sibling = _regular_under(real + suffix, root, site)
        if sibling is not None:
            found[coding] = sibling
    return found
