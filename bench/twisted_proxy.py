"""The reference Python peer: Twisted's built-in HTTP/2 serving a ReverseProxyResource.

This is the nearest existing Python system to h2proxy, set up the way its
documentation suggests: a ``Site`` whose resource is
``twisted.web.proxy.ReverseProxyResource``, listening with TLS and ALPN ``h2`` so
that ``twisted.web.http`` hands the connection to its private ``H2Connection``.
Nothing is tuned. Note what it does on the way to the origin, because it shapes the
figures: ``ProxyClient`` speaks HTTP/1.0 with ``Connection: close`` (one origin
connection per request, no keep-alive) and the request body is read whole into
``request.content`` before it is forwarded.

Run: ``python bench/twisted_proxy.py --port P --cert C --key K --origin 127.0.0.1:O
[--route /drip=127.0.0.1:D]``. Prints ``listening on 127.0.0.1:P`` once bound.
"""

from __future__ import annotations

import argparse
import sys

from OpenSSL import crypto
from twisted.internet import reactor, ssl
from twisted.web import proxy, resource, server


class Routes(resource.Resource):
    """Longest-prefix routing of the first path segment to one ReverseProxyResource each."""

    def __init__(self, default: proxy.ReverseProxyResource, prefixes: dict[bytes, proxy.ReverseProxyResource]):
        super().__init__()
        self.default = default
        self.prefixes = prefixes

    def getChildWithDefault(self, path: bytes, request) -> resource.IResource:
        chosen = self.prefixes.get(path)
        if chosen is not None:
            request.postpath.insert(0, path)
            request.prepath.pop()
            return chosen
        request.postpath.insert(0, path)
        request.prepath.pop()
        return self.default


def reverse_proxy(address: str) -> proxy.ReverseProxyResource:
    host, _, port = address.rpartition(":")
    return proxy.ReverseProxyResource(host, int(port), b"")


def tls_options(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    with open(cert_path, "rb") as handle:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, handle.read())
    with open(key_path, "rb") as handle:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, handle.read())
    return ssl.CertificateOptions(privateKey=key, certificate=cert, acceptableProtocols=[b"h2", b"http/1.1"])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--origin", required=True, help="HOST:PORT of the default origin")
    parser.add_argument("--route", action="append", default=[], help="/PREFIX=HOST:PORT")
    args = parser.parse_args(argv)
    prefixes = {}
    for route in args.route:
        prefix, _, address = route.partition("=")
        prefixes[prefix.strip("/").encode()] = reverse_proxy(address)
    site = server.Site(Routes(reverse_proxy(args.origin), prefixes))
    site.log = lambda request: None  # no access log, like the other peers
    port = reactor.listenSSL(args.port, site, tls_options(args.cert, args.key), backlog=4096,
                             interface="127.0.0.1")
    print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
