"""The client certificate of a TLS connection, as the facts the bridge forwards.

Read once per connection (when the chosen protocol starts, after the handshake),
not per request: the SHA-256 of the leaf's DER and its RFC 4514 subject. OpenSSL
has already verified the chain against the listener's CAs (h2proxy.tls.server), so
a certificate present here is one the listener trusts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.interfaces import ISSLTransport, ITransport


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A verified client certificate.

    @ivar sha256: lowercase hex SHA-256 of the leaf certificate's DER encoding.
    @ivar subject: the leaf's subject as an RFC 4514 string (``CN=billing,O=Example``).
    """

    sha256: str
    subject: str


def client_certificate(transport: ITransport | None) -> ClientCertificate | None:
    """The certificate the client presented on C{transport}, or None on a cleartext
    connection or when the client sent none."""
    if transport is None or not ISSLTransport.providedBy(transport):
        return None
    peer = transport.getPeerCertificate()
    if peer is None:
        return None
    leaf = peer.to_cryptography()
    return ClientCertificate(
        sha256=hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(),
        subject=leaf.subject.rfc4514_string(),
    )
