"""Certificates made at test time (never committed), for any test that needs one.

    from tests.config.certs import make_self_signed
    cert, key = make_self_signed(tmp_path, ["example.org", "www.example.org"])

and L{server_options}, a Twisted TLS server on such a pair.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import ssl


def make_self_signed(
    directory: str | os.PathLike,
    hostnames: list[str] | tuple[str, ...] = ("localhost",),
    days: int = 365,
    key_type: str = "ec",
    *,
    name: str | None = None,
    valid_from_days_ago: int = 1,
    key_mode: int = 0o600,
) -> tuple[str, str]:
    """Write ``NAME.pem`` and ``NAME.key`` into C{directory}; return their paths.

    @param hostnames: DNS names (or IP literals) in subjectAltName; the first is the CN.
    @param days: validity from now; 0 or less makes a certificate that has expired.
    @param key_type: ``ec`` (P-256, fast) or ``rsa`` (2048 bits).
    @param name: file name stem; defaults to the first host name.
    @param valid_from_days_ago: start of validity; negative makes it not yet valid.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = name or hostnames[0].replace("*", "wildcard")
    key = ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(65537, 2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=valid_from_days_ago)
    end = now + datetime.timedelta(days=days)
    if end <= start:
        start = end - datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hostnames]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(key_mode)
    return str(cert_path), str(key_path)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def server_options(cert: str, key: str, client_ca: str | None = None) -> ssl.CertificateOptions:
    """Twisted's server options for a PEM certificate and key, asking for a client
    certificate signed by C{client_ca} when given.

    The certificate and key are C{cryptography} objects, which
    C{SSL.Context.use_certificate}/C{use_privatekey} take as they are (Twisted's
    C{PrivateCertificate.options()} would hand them pyOpenSSL's deprecated X509/PKey).
    The CA stays an X509: C{X509Store.add_cert} takes nothing else.
    """
    with open(cert, "rb") as handle:
        certificate = x509.load_pem_x509_certificate(handle.read())
    with open(key, "rb") as handle:
        private_key = serialization.load_pem_private_key(handle.read(), password=None)
    if client_ca is None:
        return ssl.CertificateOptions(privateKey=private_key, certificate=certificate)
    with open(client_ca, "rb") as handle:
        authority = crypto.X509.from_cryptography(x509.load_pem_x509_certificate(handle.read()))
    return ssl.CertificateOptions(privateKey=private_key, certificate=certificate, verify=True,
                                  caCerts=[authority], requireCertificate=True)
