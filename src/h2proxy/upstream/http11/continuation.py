# -*- test-case-name: tests.upstream.test_continue -*-
"""A request body held back until the backend's ``100 Continue`` (RFC 9110 10.1.1):
the request said ``expect: 100-continue``, so its body waits for the backend's
go-ahead, or for L{CONTINUE_TIMEOUT}, whichever comes first. Bounded, so a producer
that ignores its pause cannot grow it without limit."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime

from h2proxy.errors import UpstreamError
from h2proxy.message import Headers

#: Longest wait for a backend's C{100 Continue} to a request sent with
#: ``expect: 100-continue`` before its body is sent anyway (RFC 9110 10.1.1: a
#: client need not wait forever; curl waits 1 s too).
CONTINUE_TIMEOUT = 1.0
#: Most request-body bytes held while waiting for that 100: what the exchange kept
#: before the connection was ready (its MAX_EARLY_BODY, 1 MiB) plus what a producer
#: writes before its pause takes effect; more fails the exchange.
MAX_HELD_BODY = 2 * 1024 * 1024


class HeldBody:
    """The body bytes (and its end, once given) written while waiting for the 100,
    and the timer that sends them anyway.

    @ivar chunks: the body bytes, in order.
    @ivar end: the trailers ending the body, once the body was finished.
    """

    def __init__(self, reactor: IReactorTime, timeout: float, sendAnyway: Callable[[], None]) -> None:
        self.chunks: list[bytes] = []
        self.end: Headers | None = None
        self._size = 0
        self._sendAnyway = sendAnyway
        self._timer: DelayedCall | None = reactor.callLater(timeout, self._timedOut)

    def keep(self, data: bytes) -> None:
        """Hold C{data}; raises L{UpstreamError} past L{MAX_HELD_BODY}."""
        self._size += len(data)
        if self._size > MAX_HELD_BODY:
            raise UpstreamError(f"request body producer wrote over {MAX_HELD_BODY} bytes while waiting for 100 Continue")
        self.chunks.append(data)

    def cancel(self) -> None:
        """Stop waiting: the timer will not fire."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timedOut(self) -> None:
        self._timer = None
        self._sendAnyway()
