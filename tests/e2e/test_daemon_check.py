"""``twistd h2proxy --check`` on the shipped configs and on broken ones, like nginx -t;
and the systemd unit passes systemd-analyze verify."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.config.certs import make_self_signed
from tests.e2e.harness import run

ROOT = Path(__file__).resolve().parents[2]
TWISTD = str(Path(sys.executable).with_name("twistd"))
SHIPPED = [ROOT / "conf" / "h2proxy.yaml", *sorted((ROOT / "conf" / "examples").glob("*.yaml"))]
ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")


def check(path: Path, env: dict | None = None):
    return run([TWISTD, "--pidfile=", "h2proxy", "-c", str(path), "--check"], timeout=60,
               env={**os.environ, **(env or {})}, cwd=path.parent)


def provide_certificates(config_path: Path, env: dict[str, str]) -> None:
    """Make a matching certificate and key wherever the config expects one."""
    document = yaml.safe_load(config_path.read_text())
    for listener in document.get("listeners", []):
        for pair in (listener.get("tls") or {}).get("certificates", []):
            cert, key = (Path(ENV_REFERENCE.sub(lambda m: env[m.group(1)], pair[k]))
                         for k in ("cert", "key"))
            cert = cert if cert.is_absolute() else config_path.parent / cert
            key = key if key.is_absolute() else config_path.parent / key
            made_cert, made_key = make_self_signed(cert.parent / ".made", ["localhost"],
                                                   name=cert.stem)
            key.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(made_cert, cert)
            shutil.move(made_key, key)


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_passes_check(shipped, tmp_path):
    """When --check runs on the shipped default or an example (with its certificates
    present), it exits 0 and says the file is valid."""
    copy = tmp_path / "conf" / shipped.name
    copy.parent.mkdir()
    shutil.copy(shipped, copy)
    if (shipped.parent / "static").is_dir():
        shutil.copytree(shipped.parent / "static", copy.parent / "static")
    text = copy.read_text()
    env = {name: str(tmp_path / name.lower()) for name in ENV_REFERENCE.findall(text)}
    provide_certificates(copy, env)
    result = check(copy, env)
    assert result.returncode == 0, result.stderr.decode()
    assert b"configuration is valid" in result.stdout


BROKEN = {
    "bad-port.yaml": (
        "listeners:\n  - name: h2c\n    address: 127.0.0.1\n    port: http\n"
        "upstreams:\n  app:\n    servers:\n      - address: 127.0.0.1:8000\n"
        "routes:\n  - upstream: app\n",
        r":4:11: listeners\[0\]\.port",
    ),
    "typo.yaml": (
        "listeners:\n  - name: h2c\n    address: 127.0.0.1\n    port: 8080\n"
        "upstreams:\n  app:\n    servers:\n      - address: 127.0.0.1:8000\n"
        "routes:\n  - upstream: app\ntimeout:\n  drain: 5s\n",
        r":11:1: timeout: .*did you mean",
    ),
    "missing-cert.yaml": (
        "listeners:\n  - name: tls\n    address: 127.0.0.1\n    port: 8443\n    tls:\n"
        "      certificates:\n        - cert: nowhere.pem\n          key: nowhere.key\n"
        "upstreams:\n  app:\n    servers:\n      - address: 127.0.0.1:8000\n"
        "routes:\n  - upstream: app\n",
        r":7:\d+: listeners\[0\]\.tls\.certificates\[0\]\.cert",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_fails_on_a_broken_file_with_its_location(name, tmp_path):
    """When --check runs on a broken file, it exits 1 and prints file:line:col and the key."""
    text, expected = BROKEN[name]
    path = tmp_path / name
    path.write_text(text)
    result = check(path)
    assert result.returncode == 1
    errors = result.stderr.decode()
    assert re.search(re.escape(str(path)) + expected, errors), errors
    assert "configuration is invalid" in errors


def test_the_systemd_unit_verifies():
    """When systemd-analyze verify reads the unit (with ExecStart pointing at this
    checkout's twistd), it reports nothing."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "systemd" / "h2proxy.service").read_text()
    assert "/opt/h2proxy/bin/twistd" in unit
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"h2proxy-verify-{os.getpid()}"
    local.mkdir(exist_ok=True)
    try:
        path = local / "h2proxy.service"
        path.write_text(unit.replace("/opt/h2proxy/bin/twistd", TWISTD))
        result = run([analyze, "verify", str(path)], timeout=60, cwd=local)
        assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()
    finally:
        shutil.rmtree(local)


def test_the_unit_has_what_operations_rely_on():
    """When the unit is read, it has notify readiness, a checked reload, restart on failure,
    the bind capability for a dedicated user, and the hardening options."""
    unit = (ROOT / "systemd" / "h2proxy.service").read_text()
    for line in ("Type=notify", "ExecStartPre=/opt/h2proxy/bin/twistd -n --pidfile= h2proxy -c "
                 "/etc/h2proxy/h2proxy.yaml --check", "ExecReload=/opt/h2proxy/bin/twistd -n --pidfile= h2proxy -c "
                 "/etc/h2proxy/h2proxy.yaml --check", "ExecReload=/bin/kill -HUP $MAINPID",
                 "Restart=on-failure", "User=h2proxy", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "KillMode=mixed", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", "ReadWritePaths=/var/log/h2proxy", "RestrictAddressFamilies="):
        assert line in unit, line


def start_daemon(path: Path, *flags: str):
    """Start (not check) the daemon on C{path} the way an operator would, bounded in time."""
    return run([TWISTD, *flags, "h2proxy", "-c", str(path)], timeout=60, cwd=path.parent)


def test_starting_on_a_broken_file_prints_only_its_errors(tmp_path):
    """When the daemon is started (not checked) on a broken file, it exits 1 and prints the
    file:line:col problems and a verdict, not twistd's usage text."""
    text, expected = BROKEN["bad-port.yaml"]
    path = tmp_path / "bad-port.yaml"
    path.write_text(text)
    result = start_daemon(path, "-n", "--pidfile=")
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 1, output
    assert re.search(re.escape(str(path)) + expected, result.stderr.decode()), output
    assert f"{path}: configuration is invalid; not starting" in output
    assert "Usage:" not in output and "--help" not in output, output


def test_check_on_a_broken_file_prints_no_usage(tmp_path):
    """When --check finds errors, nothing but the problems and the verdict is printed."""
    text, _ = BROKEN["typo.yaml"]
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    result = check(path)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 1
    assert "Usage:" not in output, output
    assert output.strip().splitlines()[-1] == f"{path}: configuration is invalid"


def test_version_names_h2proxy_and_what_it_runs_on():
    """When `twistd h2proxy --version` runs, it prints h2proxy's version and those of
    Twisted, h2 and OpenSSL, and exits 0."""
    from importlib import metadata

    import h2
    import twisted

    result = run([TWISTD, "h2proxy", "--version"], timeout=60)
    output = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert f"h2proxy {metadata.version('h2proxy')}" in output
    assert f"Twisted {twisted.__version__}" in output
    assert f"h2 {h2.__version__}" in output
    assert re.search(r"\(OpenSSL \d+\.\d+", output), output


STDOUT_LOG = (
    "listeners:\n  - name: h2c\n    address: 127.0.0.1\n    port: 0\n"
    "upstreams:\n  app:\n    servers:\n      - address: 127.0.0.1:8000\n"
    "routes:\n  - upstream: app\nlogging:\n  access_log: \"-\"\n"
)
STDOUT_LOG_PROBLEM = r":12:15: (warning: )?logging\.access_log: - \(standard output\) is lost when twistd runs as a daemon"


def test_a_detaching_daemon_refuses_an_access_log_on_stdout(tmp_path):
    """When twistd is started without -n (it would detach, with standard output on
    /dev/null) on a config whose access log is "-", it refuses with the option's place
    and exits 1 instead of silently dropping every access log line."""
    path = tmp_path / "stdout-log.yaml"
    path.write_text(STDOUT_LOG)
    pidfile = tmp_path / "twistd.pid"
    try:
        result = start_daemon(path, f"--pidfile={pidfile}", f"--logfile={tmp_path / 'twistd.log'}")
        errors = result.stderr.decode()
        assert result.returncode == 1, errors
        assert re.search(re.escape(str(path)) + STDOUT_LOG_PROBLEM, errors), errors
        assert "warning:" not in errors and "not starting" in errors
        assert not pidfile.exists()
    finally:
        if pidfile.exists():  # the unfixed daemon detached: do not leave it running
            os.kill(int(pidfile.read_text()), 15)


def test_check_warns_of_an_access_log_on_stdout_only_without_n(tmp_path):
    """When --check runs without -n (for a twistd that detaches) on a config whose
    access log is "-", it passes with a warning; with -n (as the systemd unit checks),
    it says nothing about it."""
    path = tmp_path / "stdout-log.yaml"
    path.write_text(STDOUT_LOG)
    detached = check(path)
    assert detached.returncode == 0, detached.stderr.decode()
    assert re.search(re.escape(str(path)) + r":12:15: warning: logging\.access_log",
                     detached.stderr.decode()), detached.stderr.decode()
    foreground = run([TWISTD, "-n", "--pidfile=", "h2proxy", "-c", str(path), "--check"],
                     timeout=60, cwd=tmp_path)
    assert foreground.returncode == 0 and foreground.stderr == b"", foreground.stderr.decode()
