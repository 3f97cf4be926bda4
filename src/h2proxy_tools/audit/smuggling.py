"""Smuggling on the HTTP/2 to HTTP/1.1 downgrade: requests whose fields an HTTP/1.1
backend could read two ways, each of which the server must refuse."""

from __future__ import annotations

import time
from dataclasses import replace

from h2proxy_tools.audit.client import ERROR_NAMES, Outcome, RawConnection, Target, connect
from h2proxy_tools.audit.verdicts import describeEnd


#: name -> the fields of a request that an HTTP/1.1 backend could read two ways.
#: Pseudo-headers given here replace the normal ones.
SMUGGLING_VECTORS: dict[str, list[tuple[bytes, bytes]]] = {
    "CR in a value": [(b"x-test", b"a\rb")],
    "LF in a value": [(b"x-test", b"a\nx-injected: 1")],
    "NUL in a value": [(b"x-test", b"a\x00b")],
    "CRLF in a name": [(b"x-a\r\nx-injected", b"1")],
    "colon in a name": [(b"x-a:b", b"1")],
    "space in a name": [(b"x a", b"1")],
    "uppercase name": [(b"X-Upper", b"1")],
    "empty name": [(b"", b"1")],
    "transfer-encoding": [(b"transfer-encoding", b"chunked")],
    "connection": [(b"connection", b"close")],
    "keep-alive": [(b"keep-alive", b"timeout=5")],
    "proxy-connection": [(b"proxy-connection", b"keep-alive")],
    "upgrade": [(b"upgrade", b"websocket")],
    "te other than trailers": [(b"te", b"gzip")],
    "content-length not a number": [(b"content-length", b"1x")],
    "content-length negative": [(b"content-length", b"-1")],
    "content-length twice, different": [(b"content-length", b"1"), (b"content-length", b"2")],
    "content-length on a bodiless request": [(b"content-length", b"10")],
    "CR in :path": [(b":path", b"/a\r\nx: y")],
    "space in :path": [(b":path", b"/a b HTTP/1.1")],
    ":path without /": [(b":path", b"a")],
    ":path * for GET": [(b":path", b"*")],
    "space in :method": [(b":method", b"GET /x")],
    "duplicated :path": [(b":path", b"/"), (b":path", b"/other")],
    "duplicated :method": [(b":method", b"GET"), (b":method", b"POST")],
    "missing :path": [(b":path", None)],  # type: ignore[list-item]
    "missing :method": [(b":method", None)],  # type: ignore[list-item]
    "unknown pseudo-header": [(b":protocol", b"websocket")],
    "pseudo-header after a field": [(b"x-first", b"1"), (b":foo", b"bar")],
    ":authority with userinfo": [(b":authority", b"user@host")],
    "host conflicting with :authority": [(b"host", b"other.example")],
}


def smuggling(target: Target, vectors: dict[str, list] | None = None) -> Outcome:
    """Every smuggling vector on its own stream: each must be refused (RST_STREAM
    or 400), never answered as a request the backend saw."""
    outcome = Outcome("smuggling", "(always on)")
    started = time.monotonic()
    vectors = vectors if vectors is not None else SMUGGLING_VECTORS
    connection = connect(target)
    results: dict[str, str] = {}
    accepted: list[str] = []
    for name, fields in vectors.items():
        if connection.closed or connection.goaway is not None:
            connection.close()
            connection = connect(target)
        streamID = connection.streamID()
        connection.send(connection.headers(streamID, smugglingFields(connection, fields)))
        connection.waitFor(lambda: connection.finished(streamID), target.timeout)
        status = connection.statuses.get(streamID)
        if streamID in connection.resets:
            results[name] = f"RST_STREAM {ERROR_NAMES.get(connection.resets[streamID])}"
        elif status == 400:
            results[name] = "400"
        elif connection.goaway is not None:
            results[name] = describeEnd(replace(outcome, goaway=connection.goaway.error_code))
        else:
            results[name] = f"status {status}"
            accepted.append(name)
        outcome.sent += 1
    connection.close()
    outcome.elapsed = time.monotonic() - started
    outcome.passed = not accepted
    outcome.observed = (
        f"all {len(vectors)} vectors refused" if not accepted else "accepted: " + ", ".join(accepted)
    )
    outcome.details = results
    return outcome


def smugglingFields(connection: RawConnection, vector: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes]]:
    """A normal request with the vector's fields: pseudo-headers replace (or, with
    C{None}, remove) the normal ones, the first time they are named; others are added."""
    base = connection.requestFields(extra=[(b"x-audit", b"smuggling")])
    pseudo = [(n, v) for n, v in base if n.startswith(b":")]
    regular = [(n, v) for n, v in base if not n.startswith(b":")]
    replaced: set[bytes] = set()
    extraPseudo: list[tuple[bytes, bytes]] = []
    trailing: list[tuple[bytes, bytes]] = []
    seenRegular = False
    for name, value in vector:
        if name.startswith(b":") and not seenRegular:
            if name in dict(pseudo) and name not in replaced:
                replaced.add(name)
                pseudo = [(n, v) for n, v in pseudo if n != name] + ([(name, value)] if value is not None else [])
            elif value is not None:
                extraPseudo.append((name, value))
        else:
            seenRegular = seenRegular or not name.startswith(b":")
            trailing.append((name, value))  # type: ignore[arg-type]
    return [*pseudo, *extraPseudo, *regular, *trailing]
