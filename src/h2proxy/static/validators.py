"""Validators of a file and the conditional requests that use them (RFC 9110
section 13): ETag and Last-Modified, If-Match, If-Unmodified-Since, If-None-Match,
If-Modified-Since, If-Range.

The ETag is strong and made of the file's modification time and size in hex, as
nginx makes it (``"5f3a1b2c-1a4"``): cheap (one fstat) and different whenever a
deploy replaces the file.
"""

from __future__ import annotations

import datetime
import email.utils
from dataclasses import dataclass

from h2proxy.fields import entity_tags, field_values
from h2proxy.message import Headers


@dataclass(frozen=True, slots=True)
class Validators:
    """The validators of one representation.

    @ivar etag: the strong entity tag, quotes included.
    @ivar mtime: the modification time in whole seconds (what Last-Modified says),
        never later than the response's time.
    @ivar strongDate: Last-Modified is a strong validator: at least a second before
        the response's time (RFC 9110 section 8.8.2.2), so the file cannot have
        changed again within the second it names.
    """

    etag: bytes
    mtime: int
    strongDate: bool = True

    @classmethod
    def of(cls, size: int, mtime: float, coding: str | None = None, now: float | None = None) -> "Validators":
        """The validators of a file of C{size} bytes changed at C{mtime}; a
        precompressed sibling's tag names its C{coding} too, so that it can never
        equal the tag of another variant. A C{mtime} after C{now} (the response's
        time) is dated C{now}: RFC 9110 section 8.8.2.1 forbids a Last-Modified in
        the future, and a year past 9999 has no HTTP date at all. The tag keeps
        the file's own time, so that it still changes with the file."""
        seconds = int(mtime)
        suffix = b"-" + coding.encode("ascii") if coding else b""
        dated = seconds if now is None else min(seconds, int(now))
        strong = now is None or seconds < int(now)
        return cls(etag=b'"%x-%x%s"' % (seconds, size, suffix), mtime=dated, strongDate=strong)

    @property
    def last_modified(self) -> bytes:
        return email.utils.formatdate(self.mtime, usegmt=True).encode("ascii")


def _http_date(value: bytes) -> int | None:
    """Seconds since the epoch of an HTTP date in any of its three formats; C{None}
    when it is not one. An HTTP date is always GMT, so one without a zone (asctime,
    or ``-0000``) is read as UTC."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):  # OverflowError: numbers past a C int
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp())


def _weak_match(values: list[bytes], etag: bytes) -> bool:
    """True when a list of entity tags (If-None-Match) matches C{etag} by weak
    comparison (``W/`` prefixes ignored), or is ``*``."""
    opaque = etag.removeprefix(b"W/")
    return any(tag == b"*" or tag.removeprefix(b"W/") == opaque for tag in entity_tags(values))


def precondition_failed(headers: Headers, validators: Validators) -> bool:
    """Whether the request gets 412 (RFC 9110 section 13.2.2, steps 1 and 2): If-Match
    when present (strong comparison, or ``*``), else If-Unmodified-Since (the file
    changed after it). An origin server must evaluate them, so that a client that
    asks for a representation it already knows gets nothing else."""
    tags = field_values(headers, b"if-match")
    if tags:
        return not any(tag in (b"*", validators.etag) for tag in entity_tags(tags))
    dates = field_values(headers, b"if-unmodified-since")
    if len(dates) != 1:
        return False
    since = _http_date(dates[0])
    return since is not None and validators.mtime > since


def not_modified(headers: Headers, validators: Validators) -> bool:
    """Whether a GET or HEAD gets 304: If-None-Match when present (weak comparison),
    else If-Modified-Since (not after the file changed). Unparseable dates are ignored."""
    tags = field_values(headers, b"if-none-match")
    if tags:
        return _weak_match(tags, validators.etag)
    dates = field_values(headers, b"if-modified-since")
    if len(dates) != 1:
        return False
    since = _http_date(dates[0])
    return since is not None and validators.mtime <= since


def range_applies(headers: Headers, validators: Validators) -> bool:
    """Whether a Range field may be honoured: yes without If-Range; with it, only
    when it names the current representation by its strong ETag or by its exact
    Last-Modified date, when that date is a strong validator (otherwise the whole,
    maybe changed, file is sent: RFC 9110 section 13.1.5)."""
    conditions = field_values(headers, b"if-range")
    if not conditions:
        return True
    if len(conditions) != 1:
        return False
    condition = conditions[0].strip()
    if condition.startswith(b'"'):
        return condition == validators.etag
    if condition.startswith(b"W/"):
        return False
    return validators.strongDate and _http_date(condition) == validators.mtime
