"""The audit tool's own logic (the attacks themselves run against the real daemon in
tests/e2e/test_attack_audit.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from h2proxy_tools.audit import ATTACKS, SMUGGLING_VECTORS, Outcome, Target, formatRow, main, smugglingFields
from tests.frontend.frames import requestHeaders


def test_a_url_gives_the_target():
    """When given https://host:port/path, the target has the address, TLS, authority and path."""
    target = Target.fromURL("https://127.0.0.1:8443/health")
    assert (target.host, target.port, target.tls, target.authority, target.path) == ("127.0.0.1", 8443, True, "127.0.0.1:8443", "/health")
    assert Target.fromURL("http://[::1]:8080").port == 8080 and not Target.fromURL("http://[::1]:8080").tls
    assert Target.fromURL("https://example.org").port == 443


def test_a_url_that_is_not_http_is_refused():
    """When the URL is not http:// or https://, the target cannot be built."""
    with pytest.raises(ValueError):
        Target.fromURL("ftp://127.0.0.1:21")


def test_only_loopback_targets_without_the_ownership_flag(capsys):
    """When the target is not a loopback address and --i-own-this-server is missing, the audit refuses to run."""
    with pytest.raises(SystemExit) as exit:
        main(["https://192.0.2.1:443"])
    assert exit.value.code == 2
    assert "--i-own-this-server" in capsys.readouterr().err
    assert Target.fromURL("http://127.0.0.1:1").isLoopback and Target.fromURL("http://[::1]:1").isLoopback


def test_unknown_attack_names_are_refused(capsys):
    """When --only names an attack that does not exist, the audit says which ones do."""
    with pytest.raises(SystemExit):
        main(["http://127.0.0.1:1", "--only", "rapid-reset,nonsense"])
    assert "nonsense" in capsys.readouterr().err


def test_every_attack_names_the_option_that_governs_it():
    """When the table is printed, each row has the verdict, the attack, the option and what was observed."""
    row = formatRow(Outcome("rapid-reset", "http2.reset_budget", True, "GOAWAY ENHANCE_YOUR_CALM"))
    assert row.split()[:3] == ["rapid-reset", "PASS", "http2.reset_budget"]
    assert len({attack.name for attack in ATTACKS}) == len(ATTACKS)


def test_smuggling_fields_replace_remove_and_add():
    """When a vector names a pseudo-header it replaces the normal one (or removes it with None); a regular field is added after the others."""

    class Request:
        def requestFields(self, extra=()):
            return requestHeaders(extra=extra)

    fields = smugglingFields(Request(), SMUGGLING_VECTORS["missing :path"])
    assert b":path" not in dict(fields)
    fields = smugglingFields(Request(), SMUGGLING_VECTORS["space in :path"])
    assert dict(fields)[b":path"] == b"/a b HTTP/1.1"
    fields = smugglingFields(Request(), SMUGGLING_VECTORS["pseudo-header after a field"])
    assert [n for n, _ in fields][-2:] == [b"x-first", b":foo"]


def test_the_package_runs_as_a_module():
    """When run as python -m h2proxy_tools.audit with an unknown attack, the package's
    __main__ reaches the same command line, which names the known attacks and exits 2."""
    result = subprocess.run([sys.executable, "-m", "h2proxy_tools.audit", "http://127.0.0.1:1",
                             "--only", "no-such-attack"], capture_output=True, timeout=60)
    assert result.returncode == 2
    assert b"unknown attacks: no-such-attack" in result.stderr
    assert b"rapid-reset" in result.stderr
