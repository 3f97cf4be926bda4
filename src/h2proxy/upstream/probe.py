# -*- test-case-name: tests.upstream.test_probe -*-
"""Active health checks: a GET to one server every C{interval}, on a connection of its
own (opened like any other, TLS included, and closed after), judged by its status.

One L{HealthProbe} per server; it reports each verdict to a callback and leaves the
bookkeeping (rise/fall counts, what is available) to L{ServerHealth}. At most one
check per server is under way at a time, and each ends within C{timeout}: a check
that cannot connect, gets no complete response in time, or gets a status outside the
expected range, fails.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from h2proxy.config.upstreams import HealthCheckConfig
from h2proxy.errors import UpstreamError
from h2proxy.message import Headers, ResponseHead, UpstreamRequest
from h2proxy.upstream.connector import Connector
from h2proxy.upstream.http11 import HTTP11ClientProtocol, serialize_request_head

#: The User-Agent of health checks, so backends can tell them from real traffic.
USER_AGENT = b"h2proxy-health-check"

Verdict = Callable[[bool, str], None]


class HealthProbe:
    """Checks one server at an interval and reports C{(passed, detail)}.

    @ivar checks: checks started so far.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        connector: Connector,
        check: HealthCheckConfig,
        host: bytes,
        report: Verdict,
    ) -> None:
        self.checks = 0
        self._reactor = reactor
        self._connector = connector
        self._check = check
        self._report = report
        self._request = UpstreamRequest(
            method=b"GET",
            target=check.path.encode("ascii"),
            headers=((b"host", host), (b"user-agent", USER_AGENT)),
        )
        self._head = serialize_request_head(self._request)
        self._next: DelayedCall | None = None
        self._deadline: DelayedCall | None = None
        self._attempt: defer.Deferred[HTTP11ClientProtocol] | None = None
        self._connection: HTTP11ClientProtocol | None = None
        self._status = 0
        self._running = False

    def start(self) -> None:
        """Check now, then every C{interval}."""
        self._running = True
        self._schedule(0)

    def stop(self) -> None:
        """No more checks; a check under way is abandoned without a verdict."""
        self._running = False
        self._cancel(self._next)
        self._next = None
        self._endCheck()

    # -- one check -------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._running:
            self._next = self._reactor.callLater(delay, self._run)

    def _run(self) -> None:
        self._next = None
        self.checks += 1
        self._status = 0
        self._deadline = self._reactor.callLater(self._check.timeout, self._timedOut)
        protocol = HTTP11ClientProtocol(reactor=self._reactor, responseTimeout=0)
        attempt = self._connector.connect(protocol, 0)
        self._attempt = attempt
        attempt.addCallbacks(self._connected, self._connectFailed)

    def _connected(self, protocol: HTTP11ClientProtocol) -> None:
        self._attempt = None
        self._connection = protocol
        protocol.sendRequest(self._request, self._head, self)

    def _connectFailed(self, failure: Failure) -> None:
        self._attempt = None
        if failure.check(defer.CancelledError):
            return
        self._verdict(False, failure.getErrorMessage())

    def _timedOut(self) -> None:
        self._deadline = None
        self._verdict(False, f"no complete answer within {self._check.timeout:g}s")

    def _verdict(self, passed: bool, detail: str) -> None:
        self._endCheck()
        self._report(passed, detail)
        self._schedule(self._check.interval)

    def _endCheck(self) -> None:
        """Cancel the timer, the connect attempt and the connection of this check."""
        self._cancel(self._deadline)
        self._deadline = None
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abandon()

    @staticmethod
    def _cancel(call: DelayedCall | None) -> None:
        if call is not None and call.active():
            call.cancel()

    # -- the check's response (ExchangeListener) -------------------------------

    def responseInformational(self, head: ResponseHead) -> None:
        """1xx: wait for the final response."""

    def responseHeadReceived(self, head: ResponseHead) -> None:
        self._status = head.status

    def responseDataReceived(self, data: bytes) -> None:
        """The body is read and dropped; the deadline bounds how long that may take."""

    def responseEnded(self, trailers: Headers) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        low, high = self._check.status_range
        passed = low <= self._status <= high
        self._verdict(passed, f"status {self._status}" + ("" if passed else f", expected {low}-{high}"))

    def responseFailed(self, error: UpstreamError) -> None:
        self._connection = None
        self._verdict(False, str(error) or type(error).__name__)

    def pauseRequestBody(self) -> None:
        """A check has no body."""

    def resumeRequestBody(self) -> None:
        """A check has no body."""
