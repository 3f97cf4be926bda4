# -*- test-case-name: tests.upstream.test_tlsclient -*-
"""TLS to https:// backends: the connection creators, and what a failed handshake means.

Verification is Twisted's: L{optionsForClientTLS} checks the chain against the CA
bundle (or the system's trust store) and the name with C{service_identity}, and
sends SNI for a DNS name. What it cannot do is say *why* a handshake failed: OpenSSL
only reports "certificate verify failed", and a name mismatch names the expected name
but not the certificate's. An operator needs both, so after a failure
L{BackendTLS.explain} re-checks the chain the server presented (still held by the
TLS transport when the connection is lost) against the same trust anchors with
C{X509StoreContext}, and names what did not match: the certificate's names against
the expected one, its validity dates against now, its issuer against the CA file.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl as stdlib_ssl

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.config.upstreams import ServerConfig, UpstreamTlsConfig
from h2proxy.errors import BackendCertificateError, BackendTLSError, ConfigError, ConfigProblem

#: Most certificates read from one CA bundle (a bundle is not a database).
MAX_CA_CERTIFICATES = 1000

#: Most names of a certificate quoted in an error message.
MAX_NAMES_QUOTED = 8


class BackendTLS:
    """The TLS settings of one upstream's https:// servers, loaded once.

    @ivar config: the upstream's C{tls} section.
    @ivar upstream: the upstream's name, for messages.
    """

    def __init__(self, config: UpstreamTlsConfig, upstream: str) -> None:
        self.config = config
        self.upstream = upstream
        self._trustRoot = _load_trust_root(config.ca_file, upstream) if config.ca_file else None
        self._clientCertificate = _load_client_certificate(config, upstream)

    def expectedName(self, server: ServerConfig) -> str:
        """The name the certificate must carry (and SNI sends, when it is a DNS name)."""
        return self.config.server_name or server.host.strip("[]")

    def creatorFor(self, server: ServerConfig) -> IOpenSSLClientConnectionCreator:
        """The connection creator for C{server}: verifying unless C{verify: false}."""
        name = self.expectedName(server)
        if not self.config.verify:
            return _UnverifiedCreator(self._certificateOptions(verify=False), name)
        return optionsForClientTLS(name, trustRoot=self._trustRoot, extraCertificateOptions=self._identity())

    def explain(self, failure: Failure, handle: object, server: ServerConfig) -> BackendTLSError:
        """The typed error for a handshake with C{server} that failed with C{failure};
        C{handle} is the transport's OpenSSL connection (for the peer's chain)."""
        where = f"upstream {self.upstream} server {server.host}:{server.port}"
        chain = _peer_chain(handle)
        if failure.check(VerificationError):
            return BackendCertificateError(
                f"{where}: certificate is not valid for the name {self.expectedName(server)!r}: "
                f"it names {_names(chain[0]) if chain else 'nothing we could read'} "
                "(set tls.server_name to the name the backend's certificate carries, or fix the certificate)"
            )
        detail = _ssl_reason(failure)
        if "certificate verify failed" in detail and chain:
            problem = _verify_chain(chain, self.config.ca_file)
            if problem is not None:
                return BackendCertificateError(f"{where}: certificate rejected: {problem}")
        return BackendTLSError(f"{where}: TLS handshake failed: {detail}")

    def _certificateOptions(self, verify: bool) -> CertificateOptions:
        return CertificateOptions(verify=verify, **self._identity())

    def _identity(self) -> dict[str, object]:
        """The client certificate as C{CertificateOptions} arguments (none without one)."""
        identity = self._clientCertificate
        return {} if identity is None else {"privateKey": identity.key, "certificate": identity.certificate}


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate and its key, as C{cryptography} objects: OpenSSL contexts take
    them as they are (Twisted's C{PrivateCertificate} would pass pyOpenSSL's deprecated
    X509/PKey objects)."""

    certificate: x509.Certificate
    key: PrivateKeyTypes


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedCreator:
    """C{verify: false}: TLS without checking the chain or the name (tests only), SNI
    still sent for a DNS name."""

    def __init__(self, options: CertificateOptions, name: str) -> None:
        self._context = options.getContext()
        self._sni = None if _is_ip(name) else name.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        return connection


# -- loading --------------------------------------------------------------------


def _load_trust_root(path: str, upstream: str) -> object:
    try:
        with open(path, "rb") as handle:
            certificates = x509.load_pem_x509_certificates(handle.read())
    except (OSError, ValueError) as error:
        raise _problem(path, f"upstreams.{upstream}.tls.ca_file", f"cannot read a PEM CA bundle: {error}")
    if len(certificates) > MAX_CA_CERTIFICATES:
        raise _problem(path, f"upstreams.{upstream}.tls.ca_file", f"more than {MAX_CA_CERTIFICATES} certificates")
    return trustRootFromCertificates([Certificate(crypto.X509.from_cryptography(c)) for c in certificates])


def _load_client_certificate(config: UpstreamTlsConfig, upstream: str) -> ClientIdentity | None:
    pair = config.client_certificate
    if pair is None:
        return None
    where = f"upstreams.{upstream}.tls.client_certificate"
    try:
        with open(pair.cert, "rb") as cert, open(pair.key, "rb") as key:
            identity = ClientIdentity(x509.load_pem_x509_certificate(cert.read()),
                                      serialization.load_pem_private_key(key.read(), password=None))
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise _problem(pair.cert, where, f"cannot load the certificate and key: {error}")
    if _public_der(identity.certificate.public_key()) != _public_der(identity.key.public_key()):
        raise _problem(pair.key, where, f"the key does not match the certificate {pair.cert}")
    return identity


def _public_der(key: PublicKeyTypes) -> bytes:
    """A public key in one comparable form (SubjectPublicKeyInfo, DER)."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _problem(path: str, key: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path, None, None, key, message)])


# -- explaining -----------------------------------------------------------------


def _peer_chain(handle: object) -> list[crypto.X509]:
    getChain = getattr(handle, "get_peer_cert_chain", None)
    chain = getChain() if getChain is not None else None
    return list(chain or [])


def _ssl_reason(failure: Failure) -> str:
    """OpenSSL's reason strings from an C{SSL.Error}, else the failure's message."""
    if failure.check(SSL.Error):
        reasons = [entry[-1] for entry in failure.value.args[0] if isinstance(entry, tuple) and entry]
        if reasons:
            return "; ".join(str(r) for r in reasons)
    return f"{failure.type.__name__}: {failure.getErrorMessage()}"


def _verify_chain(chain: list[crypto.X509], ca_file: str | None) -> str | None:
    """Why OpenSSL rejects C{chain} against the trust anchors, in words; None if it
    does not (then the handshake failed for another reason)."""
    store = crypto.X509Store()
    if ca_file:
        store.load_locations(ca_file)
        anchors = f"the CAs in {ca_file}"
    else:
        paths = stdlib_ssl.get_default_verify_paths()
        store.load_locations(paths.cafile, paths.capath)
        anchors = "the system's trust store (tls.ca_file is not set)"
    try:
        crypto.X509StoreContext(store, chain[0], chain[1:]).verify_certificate()
    except crypto.X509StoreContextError as error:
        code, depth, message = error.errors
        which = "the server's certificate" if depth == 0 else f"certificate {depth} of the chain"
        return (
            f"{message} (OpenSSL error {code}) for {which}: {_describe(error.certificate)}; "
            f"checked against {anchors}"
        )
    return None


def _describe(certificate: crypto.X509) -> str:
    cert = certificate.to_cryptography()
    return (
        f"subject {_common_name(cert.subject)}, issuer {_common_name(cert.issuer)}, "
        f"valid from {_when(cert.not_valid_before_utc)} to {_when(cert.not_valid_after_utc)}, "
        f"names {_names(certificate)}"
    )


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={values[0].value}" if values else name.rfc4514_string() or "(empty)"


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _names(certificate: crypto.X509) -> str:
    """The certificate's DNS and IP names (subjectAltName), as C{DNS:a, IP:b}."""
    try:
        alt = certificate.to_cryptography().extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subjectAltName"
    names = [f"DNS:{n}" for n in alt.get_values_for_type(x509.DNSName)]
    names += [f"IP:{n}" for n in alt.get_values_for_type(x509.IPAddress)]
    if not names:
        return "no DNS or IP name"
    more = len(names) - MAX_NAMES_QUOTED
    return ", ".join(names[:MAX_NAMES_QUOTED]) + (f" and {more} more" if more > 0 else "")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
