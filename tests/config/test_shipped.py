"""The shipped default config and every example are valid (acceptance 3).

Each file is copied to a temporary directory together with freshly made
certificates at the paths it names, then loaded by the library and checked by the
real ``twistd h2proxy --check`` (subprocesses, a few seconds in all).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from h2proxy.config.load import load_config
from h2proxy.config.model import Config, Http2Config
from h2proxy_tools.devcert import make_certificate
from tests.config.certs import make_self_signed

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "conf" / "h2proxy.yaml"
EXAMPLES = sorted((ROOT / "conf" / "examples").glob("*.yaml"))
SHIPPED = [DEFAULT, *EXAMPLES]
#: Environment the examples expect (see the comment at the top of each).
ENV = {"H2PROXY_TLS_DIR": "letsencrypt"}
CHECK_TIMEOUT = 30.0


def install(config: Path, directory: Path) -> Path:
    """Copy C{config} into C{directory} with a certificate and key at each path it names."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / config.name
    shutil.copy(config, target)
    if config == DEFAULT:
        make_certificate(str(directory / "dev"))  # what scripts/demo does
        shutil.copytree(DEFAULT.parent / "static", directory / "static")
        return target
    text = re.sub(r"\$\{(\w+)\}", lambda m: str(directory / ENV[m.group(1)]), config.read_text())
    for listener in yaml.safe_load(text)["listeners"]:
        for pair in (listener.get("tls") or {}).get("certificates", []):
            _make_pair(directory, directory / pair["cert"], directory / pair["key"])
    return target


def _make_pair(directory: Path, cert: Path, key: Path) -> None:
    """A certificate for the host its file is named after (wildcard.x -> *.x)."""
    stem = cert.name.removesuffix(".pem")
    host = "*." + stem.removeprefix("wildcard.") if stem.startswith("wildcard.") else stem
    made_cert, made_key = make_self_signed(directory / "made", [host], name=stem)
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(made_cert, cert)
    shutil.move(made_key, key)


def env_for(directory: Path) -> dict[str, str]:
    return {name: str(directory / value) for name, value in ENV.items()}


def load_shipped(config: Path, directory: Path) -> Config:
    return load_config(str(install(config, directory)), env=env_for(directory))


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_is_valid_without_warnings(config: Path, tmp_path: Path):
    """When a shipped config is loaded with its certificates in place, there is no error and no warning."""
    assert load_shipped(config, tmp_path).warnings == ()


def test_shipped_default_is_the_demo(tmp_path: Path):
    """When scripts/demo runs the shipped default, it serves TLS on 8443 and h2c on 8080 in front of the origin on 8000."""
    config = load_shipped(DEFAULT, tmp_path)
    tls, h2c = config.listeners
    assert (tls.address, tls.port, tls.tls.certificates[0].cert) == ("127.0.0.1", 8443, str(tmp_path / "dev" / "cert.pem"))
    assert (h2c.address, h2c.port, h2c.tls) == ("127.0.0.1", 8080, None)
    assert [(s.host, s.port) for s in config.upstreams["app"].servers] == [("127.0.0.1", 8000)]
    assert [(r.host, r.path, r.upstream) for r in config.routes] == [("*", "/static", None), ("*", "/", "app")]
    assert config.routes[0].static.root == str(tmp_path / "static") and config.routes[1].compress is not None
    assert config.workers == 1
    demo = (ROOT / "scripts" / "demo").read_text()
    assert "conf/h2proxy.yaml" in demo and "--port 8000" in demo and "conf/dev" in demo


def test_examples_show_what_they_are_named_for(tmp_path: Path):
    """When the examples are loaded, they show SNI certificates, health-checked upstreams, h2c behind a proxy and tuning."""
    loaded = {p.stem: load_shipped(p, tmp_path / p.stem) for p in EXAMPLES}
    assert sorted(loaded) == ["h2c-behind-proxy", "high-throughput", "tls-sni", "upstreams-health"]
    assert len(loaded["tls-sni"].listeners[0].tls.certificates) >= 2
    checked = [u for u in loaded["upstreams-health"].upstreams.values() if u.health_check is not None]
    assert len(checked) >= 2
    behind = loaded["h2c-behind-proxy"].listeners[0]
    assert behind.tls is None and behind.proxy_protocol
    tuned = loaded["high-throughput"]
    assert tuned.workers is None and tuned.http2.initial_window_size > Http2Config().initial_window_size


def run_check(config: Path, directory: Path) -> subprocess.CompletedProcess:
    twistd = Path(sys.executable).with_name("twistd")
    return subprocess.run(
        [str(twistd), "-n", "h2proxy", "-c", str(config), "--check"],
        cwd=directory,
        env={"PATH": str(twistd.parent), **env_for(directory)},
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
    )


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_passes_twistd_check(config: Path, tmp_path: Path):
    """When `twistd h2proxy --check` is run on a shipped config, it exits 0 and says the configuration is valid."""
    result = run_check(install(config, tmp_path), tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith("configuration is valid\n")


def test_twistd_check_reports_a_broken_config_without_a_traceback(tmp_path: Path):
    """When `twistd h2proxy --check` is run on a broken config, it exits 1 with file:line:col messages and no traceback."""
    broken = install(DEFAULT, tmp_path).with_name("broken.yaml")
    broken.write_text(DEFAULT.read_text().replace("port: 8443", "port: https").replace("workers: 1", "workers: 0"))
    result = run_check(broken, tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"{broken}:11:10: workers: expected auto or an integer from 1 to 256, got 0\n"
        f"{broken}:19:11: listeners[0].port: expected an integer from 0 to 65535, got 'https'\n"
        f"{broken}: configuration is invalid\n"
    )
