"""h2's per-stream objects as a server uses them: a state machine whose state
changes are counted by its connection, and a stream without h2's own request
validation (L{machine}'s docstring says why)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Protocol

from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import ProtocolError
from h2.stream import H2Stream, H2StreamStateMachine, StreamInputs, StreamState

from h2proxy.frontend.http2.codec import internals, shortpaths
from h2proxy.frontend.http2.codec.errors import StreamError

if TYPE_CHECKING:
    from h2.config import H2Configuration

#: Stream states in which a DATA frame may go out without changing the stream's state.
DATA_SENDING_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE})

#: Stream states in which a DATA frame from the client is body (h2's RECV_DATA is valid).
DATA_RECEIVING_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL})

#: Stream states in which a HEADERS frame from the client is a trailer block.
TRAILERS_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL})

#: Stream states that count against SETTINGS_MAX_CONCURRENT_STREAMS (h2's C{STREAM_OPEN}).
OPEN_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL, StreamState.HALF_CLOSED_REMOTE})


def _integerTransitions() -> dict[tuple[int, int], tuple[Any, Any]]:
    """h2's stream transitions keyed by the (state, input) members' integer values;
    empty with the short paths off, so that every input takes h2's own method."""
    if not shortpaths.ENABLED:
        return {}
    return {(state._value_, input_._value_): entry for (state, input_), entry in internals.STREAM_TRANSITIONS.items()}


_TRANSITIONS = _integerTransitions()


class StateListener(Protocol):
    """What a stream's state machine reports its state changes to (the connection)."""

    def streamStateChanged(self, stream_id: int, before: StreamState, after: StreamState) -> None: ...


class CountingStateMachine(H2StreamStateMachine):
    """h2's stream state machine, reporting to the connection when its stream starts
    or stops counting as open and when it closes, so that the connection keeps a
    count instead of scanning every stream for each new one (h2's C{_open_streams})."""

    def __init__(self, stream_id: int, listener: StateListener) -> None:
        super().__init__(stream_id)
        # Weak: a strong reference made every connection a reference cycle (connection
        # -> streams -> state machine -> connection) that only the cyclic collector
        # could free, and closed connections piled up between its rare full passes.
        self.listener = weakref.ref(listener)

    def process_input(self, input_: StreamInputs) -> list[Event]:
        """h2's transition, looked up by the members' integer values: h2's table is
        keyed by (state, input) enum pairs, and each lookup hashed both through
        C{Enum.__hash__} in Python (four transitions per request). Inputs h2 does
        not know from this state go through h2's own method, for its error."""
        before = self.state
        transition = _TRANSITIONS.get((before._value_, input_._value_)) if type(input_) is StreamInputs else None
        try:
            if transition is None:
                return super().process_input(input_)
            function, self.state = transition
            if function is None:
                return []
            try:
                return function(self, before)
            except ProtocolError:
                self.state = StreamState.CLOSED
                raise
            except AssertionError as e:  # pragma: no cover - h2's own guard
                self.state = StreamState.CLOSED
                raise ProtocolError(e) from e
        finally:
            if self.state is not before:
                listener = self.listener()
                if listener is not None:
                    listener.streamStateChanged(self.stream_id, before, self.state)


@internals.streamHooks
class ServerStream(H2Stream):
    """h2's stream without its own request validation, whose state changes are
    counted by its connection.

    @ivar inboundWindow: h2's manager of the stream's receive window (the one h2
        keeps), for the connection's WINDOW_UPDATE short path.
    """

    def __init__(
        self,
        stream_id: int,
        *,
        listener: StateListener,
        config: H2Configuration,
        inbound_window_size: int,
        outbound_window_size: int,
    ) -> None:
        super().__init__(
            stream_id, config=config, inbound_window_size=inbound_window_size, outbound_window_size=outbound_window_size
        )
        self.state_machine = CountingStateMachine(stream_id, listener)
        self.inboundWindow = internals.streamWindowManager(self)

    def receive_headers(self, headers, end_stream, header_encoding):  # type: ignore[no-untyped-def, override]
        """A request or trailer block; a server never receives 1xx heads, so h2's
        informational branch (a connection error for a stray ``:status``) is
        skipped and validation.py reports such a request as malformed."""
        if not end_stream and self.state_machine.state in TRAILERS_STATES:
            raise StreamError(self.stream_id, ErrorCodes.PROTOCOL_ERROR, "trailers without END_STREAM")
        events = self.state_machine.process_input(StreamInputs.RECV_HEADERS)
        if end_stream:
            ended = self.state_machine.process_input(StreamInputs.RECV_END_STREAM)
            events[0].stream_ended = ended[0]  # type: ignore[attr-defined]
            events += ended
        events[0].headers = list(headers)  # type: ignore[attr-defined]
        return [], events

    def trackContentLength(self, length: int, end_stream: bool) -> None:
        """Content-length is checked by the front end's stream, as a stream error
        (installed as h2's C{_track_content_length})."""
