"""The ``tls.client_auth`` section: its CA file is checked when the config is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from h2proxy.config.load import load_config
from h2proxy.errors import ConfigError
from tests.config.cacerts import make_ca
from tests.config.certs import make_self_signed


def write_config(directory: Path, ca_file: str, required: str = "") -> str:
    """A config with one TLS listener asking for client certificates; returns its path."""
    cert, key = make_self_signed(directory / "tls", ["example.org"])
    path = directory / "conf.yaml"
    path.write_text(
        "listeners:\n"
        "  - name: internal\n"
        "    address: 127.0.0.1\n"
        "    port: 8443\n"
        "    tls:\n"
        "      certificates:\n"
        f"        - cert: {cert}\n"
        f"          key: {key}\n"
        "      client_auth:\n"
        f"        ca_file: {ca_file}\n"
        f"{required}"
        "upstreams:\n"
        "  app:\n"
        "    servers:\n"
        "      - address: 127.0.0.1:8000\n"
        "routes:\n"
        "  - upstream: app\n"
    )
    return str(path)


def error_of(path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_a_ca_file_is_accepted_and_required_defaults_to_true(tmp_path: Path):
    """When the CA file holds a CA certificate, the section loads, requiring certificates."""
    ca, _ = make_ca(tmp_path)
    config = load_config(write_config(tmp_path, ca))
    auth = config.listeners[0].tls.client_auth
    assert (auth.ca_file, auth.required) == (ca, True)


def test_required_false_is_read(tmp_path: Path):
    """When required is false, the listener asks for a certificate but does not insist."""
    ca, _ = make_ca(tmp_path)
    config = load_config(write_config(tmp_path, ca, "        required: false\n"))
    assert config.listeners[0].tls.client_auth.required is False


def test_without_the_section_no_client_certificate_is_asked(tmp_path: Path):
    """When tls has no client_auth, it is None."""
    cert, key = make_self_signed(tmp_path / "tls", ["example.org"])
    path = tmp_path / "conf.yaml"
    path.write_text(
        f"listeners:\n  - name: main\n    address: 127.0.0.1\n    port: 8443\n    tls:\n      certificates:\n        - cert: {cert}\n"
        f"          key: {key}\nupstreams:\n  app:\n    servers:\n      - address: 127.0.0.1:8000\n"
        "routes:\n  - upstream: app\n"
    )
    assert load_config(str(path)).listeners[0].tls.client_auth is None


def test_a_missing_ca_file_is_an_error_on_its_line(tmp_path: Path):
    """When the CA file does not exist, the error names the file and the line of ca_file."""
    path = write_config(tmp_path, str(tmp_path / "nowhere.pem"))
    assert f"conf.yaml:10:18: listeners[0].tls.client_auth.ca_file: file not found: {tmp_path}/nowhere.pem" in error_of(path)


def test_a_ca_file_that_is_not_pem_is_an_error(tmp_path: Path):
    """When the CA file is not PEM, the error says so on the line of ca_file."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    message = error_of(write_config(tmp_path, str(junk)))
    assert f"conf.yaml:10:18: listeners[0].tls.client_auth.ca_file: not a PEM certificate bundle: {junk}" in message


def test_a_ca_file_without_a_ca_certificate_is_an_error(tmp_path: Path):
    """When the file holds only a leaf certificate (no CA:TRUE), it cannot be a trust store."""
    leaf, _ = make_self_signed(tmp_path / "leaf", ["client.example"])
    message = error_of(write_config(tmp_path, leaf))
    assert f"conf.yaml:10:18: listeners[0].tls.client_auth.ca_file: no CA certificate in {leaf}" in message
