"""Checks of certificates, keys and cipher strings, made when the config is read.

A certificate that does not match its key, or a cipher string OpenSSL rejects,
would otherwise surface only when a worker builds its TLS context, after a reload
was already accepted. Here they become config errors with the file's line; an
expired or soon-expiring certificate becomes a warning (the daemon can still run).
Uses ``cryptography`` and pyOpenSSL only; no Twisted.
"""

from __future__ import annotations

import datetime
import os
import stat
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

#: A certificate expiring within this many days gets a warning.
EXPIRY_WARNING_DAYS = 30

#: Largest certificate or key file read (a chain of a few certificates is ~10 KiB).
MAX_PEM_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to tell the operator about a certificate pair.

    @ivar field: ``cert`` or ``key``: which of the two options it is about.
    """

    field: str
    message: str
    warning: bool = False


def check_pair(cert_path: str, key_path: str, now: datetime.datetime) -> list[Finding]:
    """Parse both files, check that they belong together and the certificate's dates."""
    findings: list[Finding] = []
    leaf = _load_leaf(cert_path, findings)
    key = _load_key(key_path, findings)
    if leaf is not None and key is not None and _spki(leaf.public_key()) != _spki(key.public_key()):
        findings.append(Finding("key", f"does not match the certificate {cert_path} (different public key)"))
    if leaf is not None:
        findings.extend(_dates(leaf, now))
    findings.extend(_key_mode(key_path))
    return findings


def dns_names(cert_path: str) -> list[str]:
    """DNS names of a certificate as SNI sees them: subjectAltName, else the CN."""
    with open(cert_path, "rb") as handle:
        leaf = x509.load_pem_x509_certificates(handle.read(MAX_PEM_BYTES))[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value).lower() for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return names


def client_ca_problem(path: str) -> str | None:
    """Why C{path} cannot be the trust store for client certificates, or None when it
    holds at least one CA certificate (basicConstraints CA:TRUE)."""
    try:
        with open(path, "rb") as handle:
            certificates = x509.load_pem_x509_certificates(handle.read(MAX_PEM_BYTES))
    except ValueError:
        return f"not a PEM certificate bundle: {path}"
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    if not any(_is_ca(certificate) for certificate in certificates):
        return f"no CA certificate in {path} (none has basicConstraints CA:TRUE)"
    return None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def cipher_problem(ciphers: str) -> str | None:
    """Why OpenSSL refuses C{ciphers}, or None when it selects at least one suite."""
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        return f"OpenSSL selects no cipher from '{ciphers}' (see `openssl ciphers -v '{ciphers}'`)"
    return None


def _load_leaf(path: str, findings: list[Finding]) -> x509.Certificate | None:
    try:
        with open(path, "rb") as handle:
            return x509.load_pem_x509_certificates(handle.read(MAX_PEM_BYTES))[0]
    except (ValueError, IndexError):
        findings.append(Finding("cert", f"not a PEM certificate: {path}"))
    except OSError as error:
        findings.append(Finding("cert", f"cannot read {path}: {error.strerror}"))
    return None


def _load_key(path: str, findings: list[Finding]):
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_BYTES)
    except OSError as error:
        findings.append(Finding("key", f"cannot read {path}: {error.strerror}"))
        return None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        findings.append(Finding("key", f"the key is encrypted; h2proxy needs it unencrypted (mode 0600): {path}"))
    except (ValueError, UnsupportedAlgorithm):
        findings.append(Finding("key", f"not a PEM private key: {path}"))
    return None


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _dates(leaf: x509.Certificate, now: datetime.datetime) -> list[Finding]:
    after, before = leaf.not_valid_after_utc, leaf.not_valid_before_utc
    if after <= now:
        return [Finding("cert", f"certificate expired on {after:%Y-%m-%d} ({(now - after).days} days ago)", True)]
    if before > now:
        return [Finding("cert", f"certificate is not valid before {before:%Y-%m-%d %H:%M} UTC", True)]
    left = after - now
    if left < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        return [Finding("cert", f"certificate expires in {left.days} days, on {after:%Y-%m-%d}", True)]
    return []


def _key_mode(path: str) -> list[Finding]:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return []
    if mode & stat.S_IROTH:
        return [Finding("key", f"private key is readable by every user (mode {stat.S_IMODE(mode):04o}); chmod 600 {path}", True)]
    return []
