"""The twistd entry point: --check, the TLS check shared with reloads, privilege drop."""

from __future__ import annotations

import pytest

import h2proxy.supervisor.tap as tap
from h2proxy.config.model import CertificateConfig, Config, ListenerConfig, TlsConfig
from h2proxy.errors import ConfigError, ConfigProblem
from tests.config.certs import make_self_signed


def tls_config(cert: str, key: str) -> Config:
    tls = TlsConfig(certificates=(CertificateConfig(cert=cert, key=key),))
    return Config(listeners=(ListenerConfig(name="public", address="127.0.0.1", port=0, tls=tls),),
                  upstreams={}, routes=())


def test_check_tls_accepts_a_matching_pair(tmp_path):
    """When a listener's certificate and key load and match, check_tls passes."""
    cert, key = make_self_signed(tmp_path)
    tap.check_tls(tls_config(cert, key), "conf.yaml")


def test_check_tls_names_the_listener_whose_tls_fails(tmp_path):
    """When OpenSSL refuses a listener's certificate, the error names the file, the
    listener's key path and the listener."""
    cert, _ = make_self_signed(tmp_path, name="one")
    _, other_key = make_self_signed(tmp_path, name="two")
    with pytest.raises(ConfigError) as caught:
        tap.check_tls(tls_config(cert, other_key), "conf.yaml")
    assert str(caught.value).startswith("conf.yaml: listeners[0].tls: listener public: cannot set up TLS")


def write(tmp_path, text: str):
    path = tmp_path / "h2proxy.yaml"
    path.write_text(text)
    return path


VALID = """
listeners:
  - name: h2c
    address: 127.0.0.1
    port: 8080
upstreams:
  app:
    servers:
      - address: 127.0.0.1:8000
routes:
  - upstream: app
"""


def test_check_option_exits_0_on_a_valid_file(tmp_path, capsys):
    """When --check is given a valid file, it says so and exits 0."""
    path = write(tmp_path, VALID)
    with pytest.raises(SystemExit) as caught:
        tap.Options().parseOptions(["-c", str(path), "--check"])
    assert caught.value.code == 0
    assert "configuration is valid" in capsys.readouterr().out


def test_check_option_exits_1_with_the_location(tmp_path, capsys):
    """When --check is given a broken file, it prints the error with file:line:col and exits 1."""
    path = write(tmp_path, VALID.replace("port: 8080", "port: http"))
    with pytest.raises(SystemExit) as caught:
        tap.Options().parseOptions(["-c", str(path), "--check"])
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert f"{path}:5:11: listeners[0].port" in err
    assert "configuration is invalid" in err


STDOUT_LOGS = VALID + """logging:
  error_log: "-"
  access_log: "-"
"""


def test_a_detached_daemon_loads_no_config_logging_to_stdout(tmp_path):
    """When the loader of a detached daemon (start and every reload) reads a file whose
    logs go to "-", it refuses it, naming each option at its line: those lines would go
    to /dev/null."""
    path = write(tmp_path, STDOUT_LOGS)
    with pytest.raises(ConfigError) as caught:
        tap.load_checked(str(path), daemon=True)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:13:14: logging.error_log: - (standard output) is lost when twistd runs as a "
        "daemon (without -n): run in the foreground (twistd -n) or give a file path",
        f"{path}:14:15: logging.access_log: - (standard output) is lost when twistd runs as a "
        "daemon (without -n): run in the foreground (twistd -n) or give a file path",
    ]
    assert tap.load_checked(str(path)).logging.access_log == "-"


class FakeOs:
    """Records what drop_privileges asks of the operating system."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.calls: list[tuple] = []

    def getuid(self):
        return self.uid

    def getgid(self):
        return 0

    def initgroups(self, name, gid):
        self.calls.append(("initgroups", name, gid))

    def setgroups(self, groups):
        self.calls.append(("setgroups", groups))

    def setgid(self, gid):
        self.calls.append(("setgid", gid))

    def setuid(self, uid):
        self.calls.append(("setuid", uid))
        self.uid = uid


class Entry:
    def __init__(self, **fields):
        self.__dict__.update(fields)


@pytest.fixture
def fake_os(monkeypatch):
    def install(uid: int) -> FakeOs:
        fake = FakeOs(uid)
        monkeypatch.setattr(tap, "os", fake)
        monkeypatch.setattr(tap.pwd, "getpwnam",
                            lambda name: Entry(pw_name=name, pw_uid=990, pw_gid=991))
        monkeypatch.setattr(tap.grp, "getgrnam", lambda name: Entry(gr_gid=992))
        return fake
    return install


def test_root_drops_to_the_configured_user_group_last(fake_os):
    """When started as root with a user and group configured, the process takes the group
    and supplementary groups first and the user last (after which it could not)."""
    fake = fake_os(0)
    tap.drop_privileges("h2proxy", "www")
    assert fake.calls == [("initgroups", "h2proxy", 992), ("setgid", 992), ("setuid", 990)]


def test_root_with_only_a_user_takes_its_primary_group(fake_os):
    """When only the user is configured, its primary group is used."""
    fake = fake_os(0)
    tap.drop_privileges("h2proxy", None)
    assert ("setgid", 991) in fake.calls


def test_not_root_changes_nothing(fake_os):
    """When not running as root (systemd's User= already applied), nothing is changed."""
    fake = fake_os(1000)
    tap.drop_privileges("h2proxy", "h2proxy")
    assert fake.calls == []


def test_an_unknown_user_stops_the_start(fake_os, monkeypatch, logged, logged_errors):
    """When the configured user does not exist, the start fails with a message."""
    fake_os(0)

    def missing(name):
        raise KeyError(name)

    monkeypatch.setattr(tap.pwd, "getpwnam", missing)
    with pytest.raises(SystemExit):
        tap.drop_privileges("nobody-here", None)
    assert logged.matching("no such user or group nobody-here")
    assert logged_errors.take(r"cannot drop privileges: no such user")


def test_error_log_writes_at_its_level_and_reopens(tmp_path):
    """When the error log is set, events at its level or above are written to the file,
    lower ones are not, and after reopen a moved-away file is replaced by a new one."""
    from twisted.logger import LogLevel

    path = tmp_path / "error.log"
    errors = tap.ErrorLog(str(path), "warn")
    errors({"log_format": "kept {n}", "n": 1, "log_level": LogLevel.error, "log_time": 0})
    errors({"log_format": "dropped", "log_level": LogLevel.info, "log_time": 0})
    path.rename(tmp_path / "error.log.1")
    errors.reopen()
    errors({"log_format": "after rotation", "log_level": LogLevel.warn, "log_time": 0})
    assert "kept 1" in (tmp_path / "error.log.1").read_text()
    assert "dropped" not in (tmp_path / "error.log.1").read_text()
    assert "after rotation" in path.read_text()


def test_error_log_becomes_the_application_log_observer(tmp_path):
    """When the error log is set, twistd's application gets it as its log observer (so
    twistd uses it instead of its own log file)."""
    from twisted.application.service import Application
    from twisted.logger import ILogObserver

    errors = tap.ErrorLog(str(tmp_path / "e.log"), "info")
    application = Application("h2proxy")
    tap.SupervisorService(supervisor=None, reactor=None, errorLog=errors).setServiceParent(application)
    assert application.getComponent(ILogObserver) is errors


class _UnreadableSupervisor:
    """A supervisor whose config file became unreadable between validation and binding."""

    def bindListeners(self) -> None:
        raise ConfigError([ConfigProblem("conf.yaml", None, None, "", "cannot read the configuration: permission denied")])


def test_a_config_unreadable_at_bind_time_stops_the_start_with_its_message(logged_errors):
    """When the supervisor cannot read the config text it hands to workers, the start
    fails with that message and exit status 1, not a traceback."""
    from twisted.internet.task import Clock

    service = tap.SupervisorService(_UnreadableSupervisor(), Clock())
    with pytest.raises(SystemExit) as caught:
        service.privilegedStartService()
    assert caught.value.code == 1
    assert logged_errors.take(r"cannot read the configuration: permission denied")
