"""The twistd service opens the admin listener early and closes it after the workers drained."""

from __future__ import annotations

import pytest
from twisted.internet import defer, error

from h2proxy.supervisor import tap
from h2proxy.supervisor.admin import AdminServer
from h2proxy.config.model import AdminConfig
from tests.observability.test_admin import app_config
from tests.supervisor.fakes import Harness


class RefusingReactor:
    """Stands in for the reactor of an admin listener whose port is taken."""

    def listenTCP(self, port, factory, interface=""):
        raise error.CannotListenError(interface, port, OSError(98, "Address already in use"))


def service_for(harness: Harness) -> tap.SupervisorService:
    admin = AdminServer(supervisor=harness.supervisor, reactor=harness.reactor)
    return tap.SupervisorService(harness.supervisor, harness.reactor, admin=admin)


def test_admin_listens_during_privileged_start(monkeypatch):
    """When the service starts, the admin listener is bound along with the proxy listeners."""
    monkeypatch.setattr(tap, "drop_privileges", lambda user, group: None)
    harness = Harness(app_config(workers=1, admin=AdminConfig(port=9901)))
    service = service_for(harness)
    service.privilegedStartService()
    assert [server[0] for server in harness.reactor.tcpServers] == [9901]


def test_an_admin_port_in_use_stops_the_start(monkeypatch, logged, logged_errors):
    """When the admin address cannot be bound, the start fails with the reason logged."""
    monkeypatch.setattr(tap, "drop_privileges", lambda user, group: None)
    harness = Harness(app_config(workers=1, admin=AdminConfig(port=9901)))
    service = service_for(harness)
    service.admin.reactor = RefusingReactor()
    with pytest.raises(SystemExit):
        service.privilegedStartService()
    assert logged.matching("cannot listen for the admin listener on 127.0.0.1 port 9901")
    assert logged_errors.take(r"cannot listen for the admin listener .* Address already in use")


def test_admin_closes_only_after_the_workers_have_drained():
    """When the service stops, the admin port stays open until every worker has exited."""
    harness = Harness(app_config(workers=1, admin=AdminConfig(port=9901)))
    service = service_for(harness)
    service.admin.listen(harness.supervisor.config.admin)
    (process,) = harness.startServing()
    closed = []
    service.admin.stop = lambda: closed.append(True) or defer.succeed(None)
    done = service.stopService()
    assert closed == []
    process.end()
    assert closed == [True] and done.called
