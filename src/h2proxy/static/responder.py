"""Answering one request on a static route: method, path, file, validators,
conditionals, range, then the head and a L{FileSender} for the body.

The bridge hands the request over after routing, access control and the rate
limit; its own error and redirect responses are used for 404, 403, 500 and 301
(L{Answers}), so every proxy-made response looks alike. Everything that touches the
file system (resolving the path, the precompressed siblings, opening) is one
blocking call run through the L{BlockingIO}; reading the body is the sender's.
"""

from __future__ import annotations

import enum
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.compression.negotiate import negotiate
from h2proxy.config.static import StaticConfig
from h2proxy.fields import field_values
from h2proxy.frontend.handler import ClientStream, ResetReason
from h2proxy.httpdate import DateField
from h2proxy.message import Headers, RequestHead, ResponseHead
from h2proxy.observability.accesslog import RequestRecord
from h2proxy.static import paths
from h2proxy.static.ranges import ByteRange, Unsatisfiable, parse_range
from h2proxy.static.reader import BlockingIO, FileSender, OpenFile, OpenFiles
from h2proxy.static.types import content_type
from h2proxy.static.validators import Validators, not_modified, precondition_failed, range_applies

log = Logger()

#: The methods a static route answers; others get 405.
METHODS = (b"GET", b"HEAD")
ALLOW = b"GET, HEAD"

#: The RFC 9209 error type of a path that names nothing to serve.
NOT_FOUND = "destination_not_found"
#: ... of a file the daemon may not read (403), and of any other file system failure (500).
FORBIDDEN = "http_request_denied"
INTERNAL = "proxy_internal_error"
#: Errors of a worker out of file descriptors: its own limit, or the system's.
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


@dataclass(frozen=True, slots=True)
class StaticSite:
    """A static route, compiled: its prefix, its L{StaticConfig}, and the file
    system settings the blocking lookups take."""

    prefix: str
    config: StaticConfig
    site: paths.Site

    @classmethod
    def fromConfig(cls, prefix: str, config: StaticConfig) -> "StaticSite":
        site = paths.Site(
            root=os.fsencode(config.root), index=os.fsencode(config.index), follow_symlinks=config.follow_symlinks
        )
        return cls(prefix=prefix, config=config, site=site)


@dataclass(frozen=True, slots=True)
class Answers:
    """How the bridge answers for the responder, and learns that it is done.

    @ivar fail: an error response C{(status, reason)}; ends the request.
    @ivar redirect: a redirect C{(status, location)}; ends the request.
    @ivar done: the response was sent (or reset); ends the request.
    """

    fail: Callable[[int, str], None]
    redirect: Callable[[int, bytes], None]
    done: Callable[[], None]


@dataclass(frozen=True, slots=True)
class Prepared:
    """The file chosen for a request, opened: the original or a precompressed sibling.

    @ivar opened: the open file.
    @ivar name: the name the type is taken from: the path the client asked for (a
        symbolic link's own name, not its target's, as nginx does), or the index
        file's for a directory.
    @ivar coding: the sibling's content coding, or C{None} for the original.
    @ivar vary: a sibling exists, so the response depends on Accept-Encoding.
    """

    opened: OpenFile
    name: bytes
    coding: str | None
    vary: bool


def prepare(site: paths.Site, wanted: paths.Requested, accepted: list[bytes] | None, files: OpenFiles) -> Prepared:
    """Find and open the file for a request (blocking). C{accepted} is the request's
    Accept-Encoding values when a precompressed sibling may be sent, else C{None}."""
    real = paths.locate(site, wanted)
    available = paths.siblings(site, real) if accepted is not None else {}
    coding = negotiate(accepted, tuple(available)) if accepted else None
    opened = files.open(available[coding] if coding in available else real)
    name = real if wanted.directory else wanted.relative
    return Prepared(opened=opened, name=name, coding=coding if coding in available else None, vary=bool(available))


class ResponderState(enum.Enum):
    """Finding the file (a blocking call in flight), answering (the head is out,
    the body may follow), or over."""

    PREPARING = "preparing"
    SENDING = "sending"
    OVER = "over"


class StaticResponder:
    """Answers one request from a static route's files."""

    def __init__(
        self,
        *,
        stream: ClientStream,
        head: RequestHead,
        site: StaticSite,
        io: BlockingIO,
        answers: Answers,
        record: RequestRecord,
        requestId: bytes,
        dates: DateField,
    ) -> None:
        self.state = ResponderState.PREPARING
        self._dates = dates
        self._stream = stream
        self._head = head
        self._site = site
        self._io = io
        self._answers = answers
        self._record = record
        self._requestId = requestId
        self._sender: FileSender | None = None

    def start(self) -> None:
        head = self._head
        if head.method not in METHODS:
            self._respond(405, ((b"allow", ALLOW), (b"content-length", b"0")), endStream=True)
            self._over()
            return
        try:
            wanted = paths.requested(head.path, self._site.prefix)
        except paths.Refused:
            self._refuse(404, NOT_FOUND)
            return
        ranged = bool(field_values(head.headers, b"range")) and head.method == b"GET"
        accepted = None
        if self._site.config.precompressed:
            accepted = [] if ranged else field_values(head.headers, b"accept-encoding")
        preparing = self._io.call(prepare, self._site.site, wanted, accepted, self._io.files)
        preparing.addCallbacks(self._prepared, self._notPrepared)

    def stop(self) -> None:
        """The request is over for the bridge (the client went away, or it is done):
        stop reading; every file this responder opened is closed."""
        sender, self._sender = self._sender, None
        self.state = ResponderState.OVER
        if sender is not None:
            sender.stopProducing()

    # -- internals -----------------------------------------------------------

    def _prepared(self, prepared: Prepared) -> None:
        """The file is open: answer it. Should deciding the answer fail (a bug),
        the failure is contained: one error line, the file closed, and the client
        answered 500, or reset once the head is out; never a stream left hanging."""
        if self.state is ResponderState.OVER:
            prepared.opened.close()
            return
        try:
            self._answer(prepared)
        except Exception:
            log.failure("request {id}: cannot answer with a static file", id=self._requestId)
            self._contain(prepared.opened)

    def _contain(self, opened: OpenFile) -> None:
        """End a response whose answer failed half-way (see L{_prepared})."""
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.stopProducing()
        opened.close()
        if self.state is ResponderState.PREPARING:
            self._refuse(500, INTERNAL)
        elif self.state is ResponderState.SENDING:
            if not self._record.error:
                self._record.error, self._record.reset = INTERNAL, True
            self._stream.unregisterProducer()
            self._stream.reset(ResetReason.INTERNAL_ERROR)
            self._over()

    def _answer(self, prepared: Prepared) -> None:
        """Answer 412, 304, 416, or the head and then the body."""
        opened = prepared.opened
        validators = Validators.of(opened.size, opened.mtime, prepared.coding, now=time.time())
        common = self._validatorFields(validators, prepared.vary)
        if precondition_failed(self._head.headers, validators):
            self._bodiless(opened, 412, (*common, (b"content-length", b"0")))
            return
        if not_modified(self._head.headers, validators):
            self._bodiless(opened, 304, common)
            return
        try:
            chosen = self._range(validators, opened.size)
        except Unsatisfiable as unsatisfiable:
            self._bodiless(opened, 416, (*common, (b"content-range", unsatisfiable.content_range()),
                                         (b"content-length", b"0")))
            return
        fields = (
            (b"content-type", content_type(prepared.name)),
            *(((b"content-encoding", prepared.coding.encode("ascii")),) if prepared.coding else ()),
            (b"accept-ranges", b"bytes"),
            *common,
        )
        first, length = (0, opened.size) if chosen is None else (chosen.first, chosen.length)
        fields = (*fields, (b"content-length", b"%d" % length))
        if chosen is not None:
            fields = (*fields, (b"content-range", chosen.content_range()))
        status = 200 if chosen is None else 206
        if self._head.method == b"HEAD" or length == 0:
            self._bodiless(opened, status, fields)
            return
        self._respond(status, fields)
        self._send(opened, first, length)

    def _bodiless(self, opened: OpenFile, status: int, fields: Headers) -> None:
        """Answer with a head alone (412, 304, 416, HEAD, an empty file); the file is not needed."""
        opened.close()
        self._respond(status, fields, endStream=True)
        self._over()

    def _notPrepared(self, reason: Failure) -> None:
        if self.state is ResponderState.OVER:
            return
        if reason.check(paths.Refused):
            self._refuse(404, NOT_FOUND)
        elif reason.check(paths.IsDirectory):
            self.state = ResponderState.OVER
            self._answers.redirect(301, _with_slash(self._head.path))
        elif reason.check(PermissionError):
            log.info("request {id}: static file not readable: {error}", id=self._requestId, error=reason.value)
            self._refuse(403, FORBIDDEN)
        elif reason.check(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            self._refuse(404, NOT_FOUND)
        elif reason.check(OSError) and reason.value.errno in _OUT_OF_DESCRIPTORS:
            log.warn("request {id}: cannot open a static file: {error}; raise the worker's open-file limit "
                     "(LimitNOFILE in the systemd unit) or lower limits.max_connections",
                     id=self._requestId, error=reason.value.strerror)
            self._refuse(503, INTERNAL)
        else:
            log.failure("request {id}: cannot open a static file", reason, id=self._requestId)
            self._refuse(500, INTERNAL)

    def _range(self, validators: Validators, size: int) -> ByteRange | None:
        """The one byte range to send, or C{None} for the whole file."""
        head = self._head
        values = field_values(head.headers, b"range")
        if head.method != b"GET" or len(values) != 1 or not range_applies(head.headers, validators):
            return None
        return parse_range(values[0], size)

    def _validatorFields(self, validators: Validators, vary: bool) -> Headers:
        maxAge = self._site.config.max_age
        return (
            (b"etag", validators.etag),
            (b"last-modified", validators.last_modified),
            *(((b"cache-control", b"max-age=%d" % int(maxAge)),) if maxAge is not None else ()),
            *(((b"vary", b"accept-encoding"),) if vary else ()),
        )

    def _respond(self, status: int, fields: Headers, endStream: bool = False) -> None:
        """Send the head. The route is the origin server here, so it adds Date (RFC
        9110 section 6.6.1), which clients compare with Last-Modified."""
        self.state = ResponderState.SENDING
        self._record.status = status  # no backend: no first-byte time to record
        date = self._dates.value()
        self._stream.writeHeaders(
            ResponseHead(status=status, headers=(*fields, (b"date", date), (b"x-request-id", self._requestId))),
            endStream=endStream,
        )

    def _send(self, opened: OpenFile, offset: int, length: int) -> None:
        self.state = ResponderState.SENDING
        self._sender = FileSender(
            io=self._io, opened=opened, offset=offset, length=length,
            consumer=_Counting(self._stream, self._record), ended=self._sent, failed=self._broken,
        )
        self._stream.registerProducer(self._sender, True)
        self._sender.start()

    def _sent(self) -> None:
        self._sender = None
        self._stream.unregisterProducer()
        self._stream.finish()
        self._over()

    def _broken(self, reason: Failure) -> None:
        """The file could not be read whole after the head went out: reset the
        stream, since a shorter body than announced would be taken as complete."""
        self._sender = None
        log.warn("request {id}: static file read failed after the response started: {error}",
                 id=self._requestId, error=reason.getErrorMessage())
        if not self._record.error:
            self._record.error, self._record.reset = INTERNAL, True
        self._stream.unregisterProducer()
        self._stream.reset(ResetReason.INTERNAL_ERROR)
        self._over()

    def _refuse(self, status: int, reason: str) -> None:
        self.state = ResponderState.OVER
        self._answers.fail(status, reason)

    def _over(self) -> None:
        self.state = ResponderState.OVER
        self._answers.done()


def _with_slash(target: bytes) -> bytes:
    """The request target C{target} with a slash after its path (query kept). Its
    leading slashes become one: ``//host/dir`` as a Location is another host's URL
    to a browser, an open redirect for any directory named like a host."""
    path, question, query = target.partition(b"?")
    return b"/" + path.lstrip(b"/") + b"/" + question + query


class _Counting:
    """The stream as the sender's consumer, counting the body bytes for the access log."""

    def __init__(self, stream: ClientStream, record: RequestRecord) -> None:
        self._stream = stream
        self._record = record

    def write(self, data: bytes) -> None:
        self._record.responseBytes += len(data)
        self._stream.write(data)
