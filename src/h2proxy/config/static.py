"""The ``static`` section of a route: serving files from a directory, as a web
server in front of an application does.

Its own module so that the schema (model.py) only names it; the files are read by
L{h2proxy.static}, in the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from h2proxy.config.spec import Boolean, Context, DirectoryPath, Duration, Kind, OptionError, option

#: The longest ``max_age``: a year, as RFC 9111 suggests for "never expires".
MAX_AGE_LIMIT = 365 * 24 * 3600.0

#: A file name without a directory part (no slash, not ``.`` or ``..``).
_PLAIN_NAME = re.compile(r"[^/\\\0]+")


@dataclass(frozen=True, slots=True)
class FileName(Kind):
    """A plain file name: no directory part, not ``.`` or ``..``."""

    what = "file name"

    def convert(self, value: object, context: Context) -> str:
        if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or value in (".", ".."):
            raise OptionError("expected a plain file name, without / or \\ (like index.html)")
        return value

    def bounds(self) -> str:
        return "a file name"


@dataclass(frozen=True, slots=True)
class StaticConfig:
    """Serve matching requests from files under a directory instead of an upstream:
    GET and HEAD, with validators, conditional requests and single byte ranges. The
    route's path prefix is removed from the request path to find the file."""

    root: str = option(
        DirectoryPath(),
        "Directory the files are served from (relative to the config file): "
        "with path /static, /static/css/a.css is ROOT/css/a.css.",
    )
    index: str = option(
        FileName(), "File served for a request to a directory (its path ending in /); never a listing.",
        default="index.html",
    )
    follow_symlinks: bool = option(
        Boolean(),
        "Follow symbolic links wherever they point; false: a path that resolves outside root is refused (404).",
        default=False,
    )
    precompressed: bool = option(
        Boolean(),
        "Send FILE.br or FILE.gz, when it exists and the client accepts that coding, instead of FILE.",
        default=True,
    )
    max_age: float | None = option(
        Duration(0.0, MAX_AGE_LIMIT),
        "Add Cache-Control: max-age with this many seconds; not set: no Cache-Control.",
        default=None,
    )
