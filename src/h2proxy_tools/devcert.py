"""Make a self-signed development certificate for localhost (demo and tests only).

``python -m h2proxy_tools.devcert DIR`` writes DIR/cert.pem and DIR/key.pem (key
mode 0600) unless both exist already. Browsers and curl will not trust it: use
``curl -k`` or pass ``--cacert DIR/cert.pem``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificate(
    directory: str,
    hostnames: tuple[str, ...] = ("localhost",),
    addresses: tuple[str, ...] = ("127.0.0.1", "::1"),
    days: int = 365,
    name: str = "",
) -> tuple[str, str]:
    """Write a self-signed ECDSA P-256 certificate and key; return their paths."""
    os.makedirs(directory, exist_ok=True)
    cert_path = os.path.join(directory, f"{name}cert.pem")
    key_path = os.path.join(directory, f"{name}key.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names = [x509.DNSName(h) for h in hostnames]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def main(argv: list[str]) -> int:
    directory = argv[0] if argv else "conf/dev"
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        print(f"development certificate already present: {cert}")
        return 0
    make_certificate(directory)
    print(f"wrote development certificate {cert} and key {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
