"""h2proxy-audit: attack your own HTTP/2 server and see what holds.

Runs the HTTP/2 denial-of-service patterns and the HTTP/2-to-HTTP/1.1 smuggling
vectors that h2proxy defends against (docs/security.md) against a server at a
given address, and prints one line per attack: PASS when the server defended
itself as documented (closed the abusive connection, refused the stream, timed the
slow client out) and still served a normal request on a new connection right
after, FAIL otherwise, with the h2proxy option that governs the defence::

    python -m h2proxy_tools.audit https://127.0.0.1:8443
    h2proxy-audit http://[::1]:8080 --large-path /big.iso --only rapid-reset,ping-flood

Only point it at servers you run: the attacks are real (bounded in count and
time, but real). Addresses other than loopback need ``--i-own-this-server``.

Every attack speaks raw frames on a blocking socket (hyperframe and hpack, which
come with h2), so it can do what a well-behaved client library refuses to. The
same functions drive h2proxy's own end-to-end attack tests, which add what only
the test can see: the worker's memory and the backend's request log.

The package: L{client} (the raw connection), L{verdicts} (how an outcome is judged),
L{attacks} (floods and slow clients), L{smuggling} (the downgrade vectors), L{cli}
(the command). The names below are what the tests and other tools import.
"""

from h2proxy_tools.audit.attacks import (
    connectionFlood,
    continuationFlood,
    dataDribble,
    emptyFrames,
    headerBlockSize,
    hpackBomb,
    pingFlood,
    priorityChurn,
    rapidReset,
    resetFlood,
    settingsFlood,
    slowBody,
    slowHandshake,
    slowHeaders,
    windowNoRead,
    zeroLengthHeaders,
)
from h2proxy_tools.audit.cli import ATTACKS, Attack, formatRow, main, runAudit
from h2proxy_tools.audit.client import (
    ENHANCE_YOUR_CALM,
    ERROR_NAMES,
    PREFACE,
    PROTOCOL_ERROR,
    Outcome,
    RawConnection,
    Target,
    blockFrames,
    connect,
)
from h2proxy_tools.audit.smuggling import SMUGGLING_VECTORS, smuggling, smugglingFields
from h2proxy_tools.audit.verdicts import healthCheck

__all__ = [
    "ATTACKS", "Attack", "ENHANCE_YOUR_CALM", "ERROR_NAMES", "Outcome", "PREFACE", "PROTOCOL_ERROR",
    "RawConnection", "SMUGGLING_VECTORS", "Target", "blockFrames", "connect", "connectionFlood",
    "continuationFlood", "dataDribble", "emptyFrames", "formatRow", "headerBlockSize", "healthCheck",
    "hpackBomb", "main", "pingFlood", "priorityChurn", "rapidReset", "resetFlood", "runAudit",
    "settingsFlood", "slowBody", "slowHandshake", "slowHeaders", "smuggling", "smugglingFields",
    "windowNoRead", "zeroLengthHeaders",
]
