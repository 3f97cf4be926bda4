"""Header translation between the HTTP/2 front end and HTTP/1.1 backends. Pure.

The front end has already refused malformed requests (RFC 9113 8.1.1), so what
arrives here is well-formed; this module decides what the backend and the client
see. The request to the backend is re-serialised from validated fields only.
"""

from __future__ import annotations

from h2proxy.message import Headers, RequestHead, ResponseHead, UpstreamRequest

#: Connection-specific fields (RFC 9110 7.6.1, RFC 9113 8.2.2) never forwarded either way.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"http2-settings",
    }
)

#: Fields the proxy sets itself, so a client's copy is dropped rather than trusted.
PROXY_OWNED = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto", b"expect"})

#: Response fields that HTTP/2 forbids (connection-specific) plus our own framing.
RESPONSE_DROPPED = HOP_BY_HOP


def to_upstream(
    head: RequestHead, client_address: str, secure: bool, body_length: int | None
) -> UpstreamRequest:
    """Build the HTTP/1.1 request for C{head}.

    ``:authority`` becomes ``Host``; split ``cookie`` fields are joined with ``; ``
    (RFC 9113 8.2.3); ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are replaced
    with what this proxy saw, since a client may not be trusted to set them.
    """
    headers: list[tuple[bytes, bytes]] = [(b"host", head.authority)]
    cookies: list[bytes] = []
    for name, value in head.headers:
        if name in HOP_BY_HOP or name in PROXY_OWNED:
            continue
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"content-length":
            continue
        headers.append((name, value))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    headers.append((b"x-forwarded-for", client_address.encode("ascii")))
    headers.append((b"x-forwarded-proto", b"https" if secure else b"http"))
    return UpstreamRequest(
        method=head.method,
        target=head.path or b"/",
        headers=tuple(headers),
        body_length=body_length,
    )


def request_body_length(head: RequestHead) -> int | None:
    """How the backend is told the body's length: 0, a Content-Length, or chunked."""
    if head.end_stream:
        return 0
    return head.content_length


def to_client(head: ResponseHead) -> ResponseHead:
    """Drop connection-specific response fields that HTTP/2 forbids."""
    kept = tuple((n, v) for n, v in head.headers if n not in RESPONSE_DROPPED)
    if len(kept) == len(head.headers):
        return head
    return ResponseHead(status=head.status, headers=kept)


def trailers_to_client(trailers: Headers) -> Headers:
    """Trailer fields safe to send in HTTP/2 (no pseudo or connection-specific ones)."""
    return tuple((n, v) for n, v in trailers if n not in HOP_BY_HOP and not n.startswith(b":"))
