"""Certificate checks made while loading: dates, key files, SNI coverage, key types."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509

from h2proxy.config.load import load_config
from tests.config.certs import make_self_signed

def write_config(directory: Path, certificates: list[tuple[str, str]]) -> str:
    """A config with one TLS listener serving C{certificates}; returns its path."""
    entries = "".join(f"        - cert: {cert}\n          key: {key}\n" for cert, key in certificates)
    path = directory / "conf.yaml"
    path.write_text(
        "listeners:\n"
        "  - name: main\n"
        "    address: 127.0.0.1\n"
        "    port: 8443\n"
        "    tls:\n"
        "      certificates:\n"
        f"{entries}"
        "upstreams:\n"
        "  app:\n"
        "    servers:\n"
        "      - address: 127.0.0.1:8000\n"
        "routes:\n"
        "  - upstream: app\n"
    )
    return str(path)


def warnings_for(tmp_path: Path, later: datetime.timedelta = datetime.timedelta(0), **cert_options) -> list[str]:
    """Warnings for a certificate made with C{cert_options}, checked C{later} than now."""
    cert, key = make_self_signed(tmp_path / "tls", ["example.org"], **cert_options)
    now = datetime.datetime.now(datetime.timezone.utc) + later
    config = load_config(write_config(tmp_path, [(cert, key)]), now=now)
    return [w.replace(str(tmp_path), "{dir}") for w in config.warnings]


def expiry_of(tmp_path: Path) -> str:
    pem = (tmp_path / "tls" / "example.org.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc.strftime("%Y-%m-%d")


def test_a_valid_certificate_gives_no_warning(tmp_path: Path):
    """When the certificate is valid for a year and its key is private, nothing is said."""
    assert warnings_for(tmp_path) == []


def test_an_expired_certificate_is_a_warning(tmp_path: Path):
    """When the certificate has expired, the config still loads, with a warning giving the date."""
    warnings = warnings_for(tmp_path, later=datetime.timedelta(days=40, hours=12), days=30)
    assert warnings == [
        f"{{dir}}/conf.yaml:7:17: warning: listeners[0].tls.certificates[0].cert: "
        f"certificate expired on {expiry_of(tmp_path)} (10 days ago)"
    ]


def test_a_soon_expiring_certificate_is_a_warning(tmp_path: Path):
    """When the certificate expires within 30 days, a warning gives the days left."""
    warnings = warnings_for(tmp_path, later=datetime.timedelta(hours=12), days=20)
    assert warnings == [
        f"{{dir}}/conf.yaml:7:17: warning: listeners[0].tls.certificates[0].cert: "
        f"certificate expires in 19 days, on {expiry_of(tmp_path)}"
    ]


def test_a_not_yet_valid_certificate_is_a_warning(tmp_path: Path):
    """When the certificate's validity starts in the future, a warning says from when."""
    (warning,) = warnings_for(tmp_path, valid_from_days_ago=-2)
    assert warning.startswith(
        "{dir}/conf.yaml:7:17: warning: listeners[0].tls.certificates[0].cert: certificate is not valid before "
    )


def test_a_key_readable_by_everyone_is_a_warning(tmp_path: Path):
    """When the private key file is world-readable, a warning says how to fix it."""
    assert warnings_for(tmp_path, key_mode=0o644) == [
        "{dir}/conf.yaml:8:16: warning: listeners[0].tls.certificates[0].key: private key is readable "
        "by every user (mode 0644); chmod 600 {dir}/tls/example.org.key"
    ]


def test_a_certificate_sni_never_selects_is_a_warning(tmp_path: Path):
    """When every name of a later certificate is already served by an earlier one, a warning says it is never used."""
    tls = tmp_path / "tls"
    first = make_self_signed(tls, ["example.org", "www.example.org"], name="both")
    second = make_self_signed(tls, ["www.example.org"], name="www")
    third = make_self_signed(tls, ["api.example.org"], name="api")
    config = load_config(write_config(tmp_path, [first, second, third]))
    assert [w.replace(str(tmp_path), "{dir}") for w in config.warnings] == [
        "{dir}/conf.yaml:9:11: warning: listeners[0].tls.certificates[1]: every name it carries "
        "(www.example.org) is served by an earlier certificate; SNI never selects it"
    ]


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_matching_pairs_of_each_key_type_are_accepted(tmp_path: Path, key_type: str):
    """When a certificate and its key belong together, EC or RSA, the listener loads."""
    cert, key = make_self_signed(tmp_path / "tls", ["example.org"], key_type=key_type)
    config = load_config(write_config(tmp_path, [(cert, key)]))
    assert config.listeners[0].tls.certificates[0].cert == cert


def test_a_chain_file_is_checked_by_its_leaf(tmp_path: Path):
    """When the certificate file holds a chain, the first certificate is the one matched against the key."""
    cert, key = make_self_signed(tmp_path / "tls", ["example.org"])
    intermediate, _ = make_self_signed(tmp_path / "ca", ["Example CA"])
    Path(cert).write_text(Path(cert).read_text() + Path(intermediate).read_text())
    config = load_config(write_config(tmp_path, [(cert, key)]))
    assert config.warnings == ()
