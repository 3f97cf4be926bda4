"""Header translation h2 -> h1 and back."""

from h2proxy.bridge.headers import to_client, to_upstream, request_body_length
from h2proxy.message import RequestHead, ResponseHead


def head(**kw) -> RequestHead:
    base = dict(method=b"GET", scheme=b"https", authority=b"example.org", path=b"/p?q=1")
    base.update(kw)
    return RequestHead(**base)


def test_request_translation():
    """When a request is forwarded, Host comes from :authority, cookies are joined, hop-by-hop
    and client-set forwarding fields are dropped, and X-Forwarded-* are ours."""
    request = to_upstream(
        head(headers=((b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2"),
                      (b"te", b"trailers"), (b"x-forwarded-for", b"6.6.6.6"), (b"host", b"evil"),
                      (b"content-length", b"5"))),
        client_address="10.0.0.1",
        secure=True,
        body_length=5,
    )
    assert request.method == b"GET" and request.target == b"/p?q=1" and request.body_length == 5
    assert request.headers == (
        (b"host", b"example.org"),
        (b"accept", b"*/*"),
        (b"cookie", b"a=1; b=2"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-forwarded-proto", b"https"),
    )


def test_body_length_choice():
    """When the request has no body, a declared length, or neither, the framing follows."""
    assert request_body_length(head(end_stream=True)) == 0
    assert request_body_length(head(content_length=12)) == 12
    assert request_body_length(head()) is None


def test_response_drops_connection_specific_fields():
    """When a backend response carries connection-specific fields, HTTP/2 never sees them."""
    response = ResponseHead(200, ((b"connection", b"close"), (b"x-a", b"1"), (b"keep-alive", b"5")))
    assert to_client(response).headers == ((b"x-a", b"1"),)
