"""The TLS policy as a client sees it on the real daemon: TLS 1.3 by preference, h2 by
ALPN, no compression, nothing older than TLS 1.2, and session tickets that resume."""

from __future__ import annotations

import socket
import ssl

import pytest

from h2proxy_tools.audit import PREFACE
from tests.hardening.daemon import Attacked, start_attacked


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    attacked = start_attacked(workdir / "tls-policy", origin, certificate)
    yield attacked
    attacked.proxy.stop()


def client_context(minimum=None, maximum=None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if maximum is not None:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = minimum
        context.maximum_version = maximum
    return context


def handshake(daemon: Attacked, context: ssl.SSLContext, session=None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", daemon.proxy.ports["tls"]), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost", session=session)


def test_a_modern_client_gets_tls13_h2_and_no_compression(daemon: Attacked):
    """When a current client connects, it gets TLS 1.3, h2 by ALPN, an AEAD suite and no compression."""
    with handshake(daemon, client_context()) as sock:
        assert sock.version() == "TLSv1.3"
        assert sock.selected_alpn_protocol() == "h2"
        assert sock.compression() is None
        assert sock.cipher()[0].startswith(("TLS_AES_", "TLS_CHACHA20_"))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls12_is_accepted_and_tls11_is_not(daemon: Attacked):
    """When a client speaks at most TLS 1.2 it is served with an ECDHE AEAD suite; at most TLS 1.1, its handshake fails."""
    with handshake(daemon, client_context(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)) as sock:
        assert sock.version() == "TLSv1.2"
        assert sock.cipher()[0].startswith("ECDHE-")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(daemon, client_context(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_returning_client_resumes_its_session(daemon: Attacked, version):
    """When a client comes back with the session ticket it was given (one worker here), the handshake is resumed."""
    context = client_context(version, version)
    with handshake(daemon, context) as first:
        first.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # preface and an empty SETTINGS
        first.recv(65536)  # the server's SETTINGS; with TLS 1.3 the tickets come with them
        session = first.session
    with handshake(daemon, context, session) as second:
        assert second.session_reused


def test_a_key_readable_by_others_is_a_startup_warning(tmp_path, origin, certificate):
    """When the private key file is readable by every user, the daemon says so when it starts (and serves anyway)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(open(certificate[0], "rb").read())
    key.write_bytes(open(certificate[1], "rb").read())
    key.chmod(0o644)
    daemon = start_attacked(tmp_path / "daemon", origin, (str(cert), str(key)))
    try:
        daemon.proxy.wait_for(r"warning: .*private key is readable by every user", timeout=5)
    finally:
        daemon.proxy.stop()
