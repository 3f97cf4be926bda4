"""TLS for listeners: pyOpenSSL server contexts with ALPN and SNI.

One context per certificate; the first certificate is the default, and the SNI
callback switches to the context whose certificate names the requested host. ALPN
prefers ``h2`` and falls back to ``http/1.1`` when the listener offers it; a client
that offers neither still completes the handshake without ALPN and is then told
plainly that the listener speaks HTTP/2 (see h2proxy.frontend.negotiation).

Policy (docs/security.md): TLS 1.2 at least (``tls.min_version``), TLS 1.3
whenever the client has it (OpenSSL negotiates the highest version both sides
speak), AEAD suites with forward secrecy for TLS 1.2 (``tls.ciphers``) chosen by
the server's order, no compression (CRIME), no renegotiation (a client-initiated
renegotiation is a cheap way to make the server do handshakes).

Session tickets: OpenSSL encrypts tickets with a key it draws at random for each
context; pyOpenSSL (and the ``cryptography`` bindings under it) offer no way to
set that key, so a key cannot be shared between workers, and a ticket issued by
one worker is not accepted by another: that client simply does a full handshake.
The key is rotated by building fresh contexts from the certificates kept in
memory once ``tls.ticket_key_rotation`` has passed (lazily, at the next
connection: no timer), so a stolen key exposes at most that much traffic.
``tls.session_tickets: false`` turns tickets off. The server-side session cache is
off either way: it is per process too, and a cache an attacker can fill is memory
the proxy does not need.

Client certificates (``tls.client_auth``): every context of the listener asks for
one, trusts only the configured CAs (also sent as the acceptable issuers in the
CertificateRequest), bounds the chain's depth, and, when ``required``, refuses a
handshake without one. OpenSSL checks signatures and dates. A session id context
is set because OpenSSL refuses to resume a session on a verifying server without
one.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IReactorTime
from zope.interface import implementer

from h2proxy.config.model import CertificateConfig, TlsConfig
from h2proxy.config.tlscheck import MAX_PEM_BYTES, dns_names
from h2proxy.config.tlsclientauth import ClientAuthConfig

#: OpenSSL's SSL_MODE_ENABLE_PARTIAL_WRITE (ssl.h), which pyOpenSSL does not export.
SSL_MODE_ENABLE_PARTIAL_WRITE = 0x1

_MIN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}

#: Options of every server context (see the module docstring).
_OPTIONS = SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE

#: Longest client certificate chain accepted above the leaf (intermediates and root).
CLIENT_VERIFY_DEPTH = 4

#: Session id context of listeners that verify clients (resumption needs one).
_SESSION_ID_CONTEXT = b"h2proxy-client-auth"


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


class _Material:
    """One certificate chain and key, read once (the worker may lose the right to
    read the files later) and kept for building contexts again."""

    def __init__(self, config: CertificateConfig) -> None:
        with open(config.cert, "rb") as handle:
            chain = x509.load_pem_x509_certificates(handle.read(MAX_PEM_BYTES))
        with open(config.key, "rb") as handle:
            keyData = handle.read(MAX_PEM_BYTES)
        try:
            self.key = serialization.load_pem_private_key(keyData, password=None)
        except (TypeError, UnsupportedAlgorithm) as error:
            raise ValueError(f"cannot use the private key {config.key}: {error}") from None
        self.leaf, self.extra = chain[0], chain[1:]
        self.names = dns_names(config.cert)


class _ClientTrust:
    """The CAs of C{tls.client_auth}, read once, and how each context uses them."""

    def __init__(self, config: ClientAuthConfig) -> None:
        with open(config.ca_file, "rb") as handle:
            authorities = x509.load_pem_x509_certificates(handle.read(MAX_PEM_BYTES))
        # The store takes only pyOpenSSL's X509; the CA list takes cryptography's.
        self.authorities = authorities
        self.trusted = [crypto.X509.from_cryptography(authority) for authority in authorities]
        self.mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if config.required else 0)

    def apply(self, context: SSL.Context) -> None:
        """Ask for a client certificate and trust only these CAs to sign it."""
        store = context.get_cert_store()
        for trusted in self.trusted:
            store.add_cert(trusted)
        for authority in self.authorities:
            context.add_client_ca(authority)
        context.set_verify(self.mode)
        context.set_verify_depth(CLIENT_VERIFY_DEPTH)
        context.set_session_id(_SESSION_ID_CONTEXT)


class ServerTLS:
    """Builds the SSL contexts of one listener from its L{TlsConfig}.

    @ivar default: the context a new connection starts with (the first
        certificate's); SNI may switch it.
    @ivar generation: how many times the contexts were built (1 at first; one more
        per ticket key rotation).
    """

    def __init__(self, config: TlsConfig, clock: IReactorTime | None = None) -> None:
        self.alpn = tuple(p.encode("ascii") for p in config.alpn)
        self._config = config
        self._clock = clock
        self._material = [_Material(cert) for cert in config.certificates]
        self._clientTrust = None if config.client_auth is None else _ClientTrust(config.client_auth)
        self.generation = 0
        self._builtAt = 0.0
        self._build()

    def currentContext(self) -> SSL.Context:
        """The default context, rebuilt first when its ticket key is due for rotation."""
        if self._clock is not None and self._config.session_tickets:
            if self._clock.seconds() - self._builtAt >= self._config.ticket_key_rotation:
                self._build()
        return self.default

    def _build(self) -> None:
        """Fresh contexts (and so fresh ticket keys) for every certificate."""
        byName: list[tuple[str, SSL.Context]] = []
        contexts = []
        for material in self._material:
            context = self._context(material)
            contexts.append(context)
            byName.extend((name, context) for name in material.names)
        contexts[0].set_tlsext_servername_callback(self._switchContext)
        self._byName = byName
        self.default = contexts[0]
        self.generation += 1
        if self._clock is not None:
            self._builtAt = self._clock.seconds()

    def _context(self, material: _Material) -> SSL.Context:
        config = self._config
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(_MIN_VERSIONS.get(config.min_version, SSL.TLS1_2_VERSION))
        context.set_options(_OPTIONS if config.session_tickets else _OPTIONS | SSL.OP_NO_TICKET)
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        context.set_cipher_list(config.ciphers.encode("ascii"))
        context.use_certificate(material.leaf)
        for certificate in material.extra:
            context.add_extra_chain_cert(certificate)
        context.use_privatekey(material.key)
        context.check_privatekey()
        context.set_alpn_select_callback(_select_alpn(self.alpn))
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        # pyOpenSSL turns partial writes on: each SSL_write then returns after one
        # 16 KiB record, and a bulk write costs a Python call per record. Off, one
        # SSL_write makes all the records of a write into the memory BIO (which
        # never refuses bytes); the records on the wire are the same.
        context.clear_mode(SSL_MODE_ENABLE_PARTIAL_WRITE)
        if self._clientTrust is not None:
            self._clientTrust.apply(context)
        return context

    def _switchContext(self, connection: SSL.Connection) -> None:
        server_name = connection.get_servername()
        if not server_name:
            return
        host = server_name.decode("ascii", "replace").lower()
        for pattern, context in self._byName:
            if _name_matches(pattern, host):
                if context is not connection.get_context():
                    connection.set_context(context)
                return


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """What C{TLSMemoryBIOFactory} needs: a fresh SSL.Connection per client."""

    def __init__(self, tls: ServerTLS) -> None:
        self._tls = tls

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return SSL.Connection(self._tls.currentContext(), None)
