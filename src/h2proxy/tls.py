"""TLS for listeners: pyOpenSSL server contexts with ALPN and SNI.

One context per certificate; the first certificate is the default, and the SNI
callback switches to the context whose certificate names the requested host. ALPN
prefers ``h2`` and falls back to ``http/1.1`` when the listener offers it; a client
that offers neither still completes the handshake without ALPN and is then told
plainly that the listener speaks HTTP/2 (see h2proxy.server).
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from h2proxy.config.model import CertificateConfig, TlsConfig
from h2proxy.config.tlscheck import dns_names

_MIN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


def _name_matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def _select_alpn(offered: tuple[bytes, ...]):
    def select(connection: SSL.Connection, protocols: list[bytes]) -> bytes:
        for protocol in offered:
            if protocol in protocols:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


class ServerTLS:
    """Builds the SSL contexts of one listener from its L{TlsConfig}."""

    def __init__(self, config: TlsConfig) -> None:
        self.alpn = tuple(p.encode("ascii") for p in config.alpn)
        ciphers = config.ciphers
        self._byName: list[tuple[str, SSL.Context]] = []
        contexts = [
            self._context(cert, config.min_version, ciphers) for cert in config.certificates
        ]
        self.default = contexts[0]
        self.default.set_tlsext_servername_callback(self._switchContext)

    def _context(self, cert: CertificateConfig, min_version: str, ciphers: str) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(_MIN_VERSIONS.get(min_version, SSL.TLS1_2_VERSION))
        context.set_options(
            SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
        )
        context.set_cipher_list(ciphers.encode("ascii"))
        context.use_certificate_chain_file(cert.cert)
        context.use_privatekey_file(cert.key)
        context.check_privatekey()
        context.set_alpn_select_callback(_select_alpn(self.alpn))
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        for name in dns_names(cert.cert):
            self._byName.append((name, context))
        return context

    def _switchContext(self, connection: SSL.Connection) -> None:
        server_name = connection.get_servername()
        if not server_name:
            return
        host = server_name.decode("ascii", "replace").lower()
        for pattern, context in self._byName:
            if _name_matches(pattern, host):
                if context is not self.default:
                    connection.set_context(context)
                return


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """What C{TLSMemoryBIOFactory} needs: a fresh SSL.Connection per client."""

    def __init__(self, tls: ServerTLS) -> None:
        self._tls = tls

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return SSL.Connection(self._tls.default, None)
