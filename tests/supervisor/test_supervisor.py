"""The supervisor's life cycle on a fake process reactor and clock: spawning,
readiness, back-off, reloads (good, bad, failing), drain timing, stop and signals."""

from __future__ import annotations

import os
import signal
import socket

from h2proxy.errors import ConfigError, ConfigProblem
from h2proxy.handover import BOOT_FD, FIRST_LISTENER_FD, REPORT_FD, WorkerBoot, read_boot
from h2proxy.supervisor.generations import GenerationState
from h2proxy.supervisor.service import Supervisor
from h2proxy.handover import EX_CONFIG
from tests.supervisor.fakes import Harness, make_config, make_source


def boot_of(process) -> WorkerBoot:
    """Decode what the supervisor wrote on a worker's stdin, through a real pipe."""
    read, write = os.pipe()
    try:
        os.write(write, process.written[BOOT_FD])
        os.close(write)
        return read_boot(read)
    finally:
        os.close(read)


# Spawning and readiness


def test_start_spawns_one_process_per_configured_worker():
    """When the supervisor starts with workers: 2, it spawns two worker processes."""
    harness = Harness(make_config(workers=2))
    assert len(harness.start()) == 2


def test_auto_workers_means_one_per_cpu():
    """When workers is auto (None), the supervisor spawns one worker per CPU."""
    harness = Harness(make_config(workers=None))
    assert len(harness.start()) == 3


def test_each_worker_gets_the_sockets_and_the_config():
    """When a worker is spawned, every listening socket is mapped into it and its boot
    message carries the config's text, its generation, slot and descriptors."""
    config = make_config("public", "internal", workers=1)
    harness = Harness(config)
    (process,) = harness.start()
    sockets = harness.binder.sockets
    assert process.childFDs[FIRST_LISTENER_FD] == sockets["public"].fileno()
    assert process.childFDs[FIRST_LISTENER_FD + 1] == sockets["internal"].fileno()
    assert process.childFDs[BOOT_FD] == "w" and process.childFDs[REPORT_FD] == "r"
    assert process.childFDs[1] == 1 and process.childFDs[2] == "r"
    boot = boot_of(process)
    assert boot.source == make_source("generation text 1\n")
    assert (boot.generation, boot.slot) == (1, 0)
    assert [(l.name, l.fd, l.family) for l in boot.listeners] == [
        ("public", FIRST_LISTENER_FD, socket.AF_INET),
        ("internal", FIRST_LISTENER_FD + 1, socket.AF_INET),
    ]
    assert process.args[-2:] == ["--generation=1", "--slot=0"]


def test_workers_do_not_inherit_the_systemd_notify_socket():
    """When the supervisor runs under systemd, its workers' environment has no NOTIFY_SOCKET
    or LISTEN_FDS (only the main process may talk to systemd)."""
    harness = Harness(make_config(workers=1),
                      environ={"PATH": "/bin", "NOTIFY_SOCKET": "/run/x", "LISTEN_FDS": "1"})
    (process,) = harness.start()
    assert process.env == {"PATH": "/bin"}


def test_ready_is_notified_once_every_worker_is_ready():
    """When only some workers reported ready, systemd is not told READY=1; when the last
    one does, it is, with a status naming the generation."""
    harness = Harness(make_config(workers=2))
    first, second = harness.start()
    first.report("ready")
    assert "READY" not in harness.notifier.kinds()
    second.report("ready")
    assert harness.notifier.kinds() == ["READY"]
    assert "generation 1: 2/2 workers serving" in harness.notifier.sent[-1][1]
    assert harness.supervisor.serving.number == 1


def test_an_unknown_report_is_logged_and_ignored(logged):
    """When a worker writes a line that is not a report, it is logged and changes nothing."""
    harness = Harness(make_config(workers=1))
    (process,) = harness.start()
    process.report("hello there")
    assert logged.matching("unknown report")
    assert harness.supervisor.serving is None


def test_worker_output_is_logged_under_its_name_and_level(logged, logged_errors):
    """When a worker writes log lines on its stderr, the supervisor logs each with the
    worker's name and the level the worker gave (a warning when it gave none, as for a
    traceback), and cuts an endless line at its cap."""
    harness = Harness(make_config(workers=1))
    (process,) = harness.start()
    process.proto.childDataReceived(2, b"error something broke\ninfo par")
    process.proto.childDataReceived(2, b"tial line\n")
    process.proto.childDataReceived(2, b"Traceback (most recent call last):\n")
    texts = logged.matching("worker 1.0[")
    assert f"worker 1.0[{process.pid}]: something broke" in texts
    assert f"worker 1.0[{process.pid}]: partial line" in texts
    levels = {formatted: e["log_level"].name for e in logged.events
              if (formatted := e.get("text"))}
    assert levels["something broke"] == "error"
    assert levels["Traceback (most recent call last):"] == "warn"
    process.proto.childDataReceived(2, b"x" * (200 * 1024))
    assert max(len(e.get("text", "")) for e in logged.events) <= 64 * 1024
    assert logged_errors.take(r"worker 1\.0\[1001\]: something broke")


# Deaths, restarts and back-off


def test_a_worker_that_ran_a_while_restarts_at_once(logged, logged_errors):
    """When a worker that served for longer than the threshold dies, it is restarted
    immediately and the log says why it died."""
    harness = Harness(make_config(workers=2))
    first, second = harness.startServing()
    harness.reactor.advance(60)
    first.end(signal=9)
    assert logged.matching("killed by signal 9 (SIGKILL); restarting in 0s")
    harness.reactor.advance(0)
    assert len(harness.reactor.live()) == 2
    assert second.alive and second.signals == []
    assert logged_errors.take(r"died: killed by signal 9")


def test_a_crash_loop_backs_off_doubling_up_to_the_cap(logged_errors):
    """When a worker keeps dying right after it starts, each restart waits twice as long as
    the one before, up to maxRestartDelay."""
    harness = Harness(make_config(workers=1))
    harness.start()
    delays = []
    for _ in range(9):
        (process,) = harness.reactor.live()
        process.end(status=1)
        call = harness.supervisor.serving or harness.supervisor.starting
        delays.append(call.slots[0].restartCall.getTime() - harness.reactor.seconds())
        harness.reactor.advance(delays[-1])
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert logged_errors.take(r"died: exited with status 1; restarting in")


def test_a_crash_loop_spawns_a_bounded_number_of_processes(logged_errors):
    """When a worker dies instantly forever, ten minutes see a handful of spawns, not a spin."""
    harness = Harness(make_config(workers=1))
    harness.start()
    for _ in range(600):
        for process in harness.reactor.live():
            process.end(status=1)
        harness.reactor.advance(1)
    assert len(harness.reactor.spawned) < 20
    assert logged_errors.take(r"died: exited with status 1; restarting in")


def test_the_back_off_resets_after_a_long_run(logged_errors):
    """When a worker crash-looped, then ran longer than the threshold, its next death
    restarts it at once and the next crash loop starts again from minRestartDelay."""
    harness = Harness(make_config(workers=1))
    harness.start()
    for _ in range(3):
        harness.reactor.live()[0].end(status=1)
        harness.reactor.advance(60)
    harness.reactor.advance(100)
    harness.reactor.live()[0].end(status=1)
    slot = harness.supervisor.starting.slots[0]
    assert slot.restartCall.getTime() == harness.reactor.seconds()
    harness.reactor.advance(0)
    harness.reactor.live()[0].end(status=1)
    assert slot.restartCall.getTime() - harness.reactor.seconds() == Supervisor.minRestartDelay
    assert logged_errors.take(r"died: exited with status 1; restarting in")


def test_a_failed_spawn_is_retried_with_back_off(logged, logged_errors):
    """When spawning a worker fails (fork refused), it is logged and retried later."""
    harness = Harness(make_config(workers=1))
    harness.reactor.spawnError = OSError(11, "Resource temporarily unavailable")
    harness.start()
    assert logged.matching("cannot spawn worker 1.0")
    harness.reactor.spawnError = None
    harness.reactor.advance(1)
    assert len(harness.reactor.live()) == 1
    assert logged_errors.take(r"cannot spawn worker 1\.0|died: exited with status 127")


# Reloads


def test_a_valid_reload_hands_over_only_when_the_new_generation_is_ready():
    """When a valid config is reloaded, a new generation starts, the old one is told to
    drain only once every new worker is ready, and systemd sees RELOADING=1 then READY=1."""
    harness = Harness(make_config(workers=2))
    old = harness.startServing()
    harness.nextConfig = make_config(workers=2)
    harness.supervisor.reload()
    new = [p for p in harness.reactor.live() if p not in old]
    assert len(new) == 2
    assert harness.notifier.kinds() == ["READY", "RELOADING"]
    new[0].report("ready")
    assert all(p.signals == [] for p in old)
    new[1].report("ready")
    assert all(p.signals == ["TERM"] for p in old)
    assert harness.notifier.kinds() == ["READY", "RELOADING", "READY"]
    assert harness.supervisor.serving.number == 2
    assert [boot_of(p).generation for p in new] == [2, 2]


def test_a_reload_keeps_unchanged_sockets_binds_new_ones_and_closes_removed_ones_after_handover():
    """When a reload adds a listener and removes another, the kept one is not rebound, the
    new one is bound before the new workers start, and the removed one closes only when
    the new generation serves."""
    harness = Harness(make_config("kept", "removed", workers=1))
    harness.startServing()
    kept, removed = harness.binder.sockets["kept"], harness.binder.sockets["removed"]
    harness.nextConfig = make_config("kept", "added", workers=1)
    harness.supervisor.reload()
    (new,) = [p for p in harness.reactor.live() if boot_of(p).generation == 2]
    added = harness.binder.sockets["added"]
    assert new.childFDs[FIRST_LISTENER_FD] == kept.fileno()
    assert new.childFDs[FIRST_LISTENER_FD + 1] == added.fileno()
    assert not removed.closed
    new.report("ready")
    assert removed.closed and not kept.closed and not added.closed


def test_an_invalid_reload_logs_every_problem_and_keeps_serving(logged, logged_errors):
    """When the reloaded file is invalid, every problem is logged with file:line:col,
    nothing is spawned or signalled, and systemd gets READY=1 back."""
    harness = Harness(make_config(workers=2))
    old = harness.startServing()
    harness.nextConfig = ConfigError([
        ConfigProblem("/etc/h2proxy/h2proxy.yaml", 12, 5, "listeners[0].port", "expected an integer"),
        ConfigProblem("/etc/h2proxy/h2proxy.yaml", 20, 3, "routes[0].upstream", "no upstream 'x'"),
    ])
    harness.supervisor.reload()
    assert logged.matching("/etc/h2proxy/h2proxy.yaml:12:5: listeners[0].port: expected an integer")
    assert logged.matching("/etc/h2proxy/h2proxy.yaml:20:3: routes[0].upstream")
    assert logged.matching("generation 1 keeps serving")
    assert len(harness.reactor.spawned) == 2
    assert all(p.alive and p.signals == [] for p in old)
    assert harness.notifier.kinds() == ["READY", "RELOADING", "READY"]
    assert logged_errors.take(r"expected an integer|no upstream 'x'|reload failed: .* is invalid")


def test_a_loader_crash_does_not_take_the_daemon_down(logged, logged_errors):
    """When loading the new config raises something unexpected, the reload fails and the
    serving generation carries on."""
    harness = Harness(make_config(workers=1))
    harness.startServing()
    harness.nextConfig = RuntimeError("boom")
    harness.supervisor.reload()
    assert logged.matching("reload failed: cannot load")
    assert harness.supervisor.serving.number == 1
    assert logged_errors.take(r"reload failed: cannot load")


def test_a_reload_whose_listener_cannot_be_bound_keeps_serving(logged, logged_errors):
    """When a reload adds listeners and one of them cannot be bound, the ones bound for it
    are closed again, no worker starts and the old generation keeps serving."""
    harness = Harness(make_config("main", workers=1))
    harness.startServing()
    harness.binder.refuse = {"second"}
    harness.nextConfig = make_config("main", "first", "second", workers=1)
    harness.supervisor.reload()
    assert logged.matching("cannot listen for second")
    assert harness.binder.sockets["first"].closed
    assert not harness.binder.sockets["main"].closed
    assert len(harness.reactor.spawned) == 1
    assert harness.notifier.kinds()[-1] == "READY"
    assert logged_errors.take(r"reload failed: cannot listen for second")


def test_a_new_worker_dying_before_ready_abandons_the_reload(logged, logged_errors):
    """When a worker of the new generation dies before the generation is ready, the reload
    fails: the other new workers drain, sockets bound for it close, the old generation
    was never signalled and nothing restarts."""
    harness = Harness(make_config("main", workers=2))
    old = harness.startServing()
    harness.nextConfig = make_config("main", "extra", workers=2)
    harness.supervisor.reload()
    first, second = [p for p in harness.reactor.live() if p not in old]
    first.report("ready")
    second.end(status=1)
    assert logged.matching("reload failed: generation 2")
    assert first.signals == ["TERM"]
    assert harness.binder.sockets["extra"].closed
    assert all(p.signals == [] for p in old)
    assert harness.supervisor.serving.number == 1
    harness.reactor.advance(120)
    assert len(harness.reactor.spawned) == 4
    assert harness.notifier.kinds()[-1] == "READY"
    assert logged_errors.take(r"before its generation was ready|reload failed: generation 2 lost worker")


def test_a_new_generation_not_ready_in_time_is_abandoned(logged, logged_errors):
    """When the new generation does not report ready within readyTimeout, the reload is
    abandoned and its workers are told to drain."""
    harness = Harness(make_config(workers=1))
    (old,) = harness.startServing()
    harness.supervisor.reload()
    (new,) = [p for p in harness.reactor.live() if p is not old]
    harness.reactor.advance(Supervisor.readyTimeout - 1)
    assert new.signals == []
    harness.reactor.advance(1)
    assert new.signals == ["TERM"]
    assert old.signals == []
    assert logged.matching("not ready within 60s")
    assert logged_errors.take(r"reload failed: generation 2 not ready within")


def test_a_reload_during_a_reload_follows_it():
    """When SIGHUP arrives while a new generation is starting, one more reload runs after
    that generation is ready, with the file as it is then."""
    harness = Harness(make_config(workers=1))
    harness.startServing()
    harness.supervisor.reload()
    harness.supervisor.reload()
    harness.supervisor.reload()
    assert len(harness.reactor.spawned) == 2
    harness.nextConfig = make_config(workers=3)
    harness.reactor.spawned[1].report("ready")
    assert harness.supervisor.starting.number == 3
    assert len(harness.supervisor.starting.slots) == 3


def test_reloads_are_refused_while_too_many_generations_drain(logged, logged_errors):
    """When as many generations as maxGenerations are still alive (long drains), a reload
    is refused with a message, and nothing already running is cut short."""
    harness = Harness(make_config(workers=1, drain=600.0))
    harness.startServing()
    for _ in range(Supervisor.maxGenerations - 1):
        harness.supervisor.reload()
        harness.reactor.live()[-1].report("ready")
    assert len(harness.supervisor.generations) == Supervisor.maxGenerations
    spawned = len(harness.reactor.spawned)
    harness.supervisor.reload()
    assert len(harness.reactor.spawned) == spawned
    assert logged.matching("reload refused: 16 generations are still alive")
    assert all("KILL" not in p.signals for p in harness.reactor.spawned)
    assert logged_errors.take(r"reload refused: 16 generations are still alive")


def test_auto_workers_are_capped():
    """When workers is auto on a machine with more CPUs than MAX_WORKERS, MAX_WORKERS start."""
    from h2proxy.config.model import MAX_WORKERS

    harness = Harness(make_config(workers=None))
    harness.supervisor.cpuCount = lambda: MAX_WORKERS * 4
    assert len(harness.start()) == MAX_WORKERS


def test_a_dead_worker_of_the_serving_generation_restarts_during_a_reload(logged_errors):
    """When a serving worker dies while a reload is starting, it is still restarted, so the
    serving generation keeps its strength until the handover."""
    harness = Harness(make_config(workers=1))
    (old,) = harness.startServing()
    harness.reactor.advance(60)
    harness.supervisor.reload()
    old.end(signal=9)
    harness.reactor.advance(0)
    generations = sorted(boot_of(p).generation for p in harness.reactor.live())
    assert generations == [1, 2]
    assert logged_errors.take(r"died: killed by signal 9")


def test_a_superseded_generation_does_not_restart_its_workers(logged_errors):
    """When a worker of a generation that was handed over dies, no replacement starts, and a
    restart that was pending for it is cancelled."""
    harness = Harness(make_config(workers=2))
    first, second = harness.startServing()
    harness.reactor.advance(1)
    first.end(status=1)  # young: a restart is pending in 1 s
    harness.supervisor.reload()
    for process in harness.reactor.live():
        if process is not second:
            process.report("ready")
    second.end(status=0)
    harness.reactor.advance(300)
    assert all(boot_of(p).generation == 2 for p in harness.reactor.live())
    assert len(harness.reactor.spawned) == 4
    assert logged_errors.take(r"died: exited with status 1")


# Drain timing


def test_a_draining_worker_is_killed_after_its_window_and_the_grace_period(logged):
    """When an old worker has not exited after timeouts.drain plus killGrace, it gets
    SIGKILL, and not a moment before."""
    harness = Harness(make_config(workers=1, drain=10.0))
    (old,) = harness.startServing()
    harness.supervisor.reload()
    (new,) = [p for p in harness.reactor.live() if p is not old]
    new.report("ready")
    harness.reactor.advance(10 + Supervisor.killGrace - 0.1)
    assert old.signals == ["TERM"]
    harness.reactor.advance(0.1)
    assert old.signals == ["TERM", "KILL"]
    assert not old.alive
    assert logged.matching("still running after its drain window")
    assert [g.number for g in harness.supervisor.generations] == [2]


def test_a_worker_that_drains_in_time_is_not_killed():
    """When an old worker exits within its window, its kill timer is cancelled."""
    harness = Harness(make_config(workers=1, drain=10.0))
    (old,) = harness.startServing()
    harness.supervisor.reload()
    harness.reactor.live()[-1].report("ready")
    harness.reactor.advance(3)
    old.end(status=0)
    harness.reactor.advance(60)
    assert old.signals == ["TERM"]
    assert harness.reactor.getDelayedCalls() == []


def test_status_counts_the_streams_of_draining_workers():
    """When draining workers report their open streams, systemd's STATUS line says how
    many streams are still draining."""
    harness = Harness(make_config(workers=1))
    (old,) = harness.startServing()
    harness.supervisor.reload()
    harness.reactor.live()[-1].report("ready")
    old.report("draining")
    old.report("streams 7")
    assert harness.notifier.sent[-1] == (
        "STATUS", "generation 2: 1/1 workers serving; draining 1 worker(s), 7 stream(s) open"
    )


# Stopping


def test_stop_drains_every_worker_and_fires_when_the_last_exits():
    """When the daemon stops, systemd gets STOPPING=1, every worker of every generation gets
    SIGTERM, and the stop fires only once the last one has exited; then sockets close."""
    harness = Harness(make_config(workers=2))
    first, second = harness.startServing()
    stopped = harness.supervisor.stop()
    assert harness.notifier.kinds()[-1] == "STOPPING"
    assert first.signals == ["TERM"] and second.signals == ["TERM"]
    first.end()
    assert not stopped.called
    assert not harness.binder.sockets["main"].closed
    second.end()
    assert stopped.called
    assert harness.binder.sockets["main"].closed


def test_stop_kills_stragglers_after_the_drain_window():
    """When a worker does not finish draining, the stop still completes: SIGKILL after the
    drain window plus the grace period."""
    harness = Harness(make_config(workers=1, drain=2.0))
    (worker,) = harness.startServing()
    stopped = harness.supervisor.stop()
    harness.reactor.advance(2 + Supervisor.killGrace)
    assert worker.signals == ["TERM", "KILL"]
    assert stopped.called


def test_a_second_stop_kills_at_once():
    """When a stop is requested again while draining, every worker gets SIGKILL now."""
    harness = Harness(make_config(workers=2))
    harness.startServing()
    stopped = harness.supervisor.stop()
    assert harness.supervisor.stop() is stopped
    assert stopped.called
    assert all(p.signals == ["TERM", "KILL"] for p in harness.reactor.spawned)


def test_stop_cancels_pending_restarts_and_ignores_reloads(logged_errors):
    """When the daemon stops while a restart is pending, nothing is restarted, and a reload
    requested while stopping does nothing."""
    harness = Harness(make_config(workers=2))
    first, second = harness.startServing()
    first.end(status=1)
    stopped = harness.supervisor.stop()
    harness.supervisor.reload()
    second.end()
    harness.reactor.advance(300)
    assert stopped.called
    assert len(harness.reactor.spawned) == 2
    assert logged_errors.take(r"died: exited with status 1")


# Signals


def test_signal_handlers_only_schedule_work():
    """When a signal arrives, the handler does nothing but schedule it on the reactor; the
    work happens on the next reactor turn."""
    harness = Harness(make_config(workers=1))
    harness.startServing()
    harness.supervisor.handleSignal(signal.SIGHUP, None)
    assert len(harness.reactor.spawned) == 1
    harness.reactor.advance(0)
    assert len(harness.reactor.spawned) == 2


def test_first_term_stops_the_reactor_and_second_forces():
    """When SIGTERM arrives, the reactor is asked to stop (which drains); when another
    arrives during the drain, the workers are killed."""
    harness = Harness(make_config(workers=1))
    (worker,) = harness.startServing()
    harness.supervisor.signalReceived(signal.SIGTERM)
    assert harness.reactorStops == 1
    harness.supervisor.stop()  # what the reactor's shutdown does
    harness.supervisor.signalReceived(signal.SIGINT)
    assert worker.signals == ["TERM", "KILL"]


def test_usr1_reopens_logs_everywhere():
    """When SIGUSR1 arrives, the supervisor reopens its own logs and relays it to every
    live worker."""
    harness = Harness(make_config(workers=2))
    harness.startServing()
    harness.supervisor.signalReceived(signal.SIGUSR1)
    assert harness.ownLogReopens == 1
    assert all(p.signals == ["USR1"] for p in harness.reactor.spawned)


def test_generation_states_follow_the_handover():
    """When a reload completes, the new generation is serving and the old one draining,
    and the old one is forgotten once its workers have exited."""
    harness = Harness(make_config(workers=1))
    (old,) = harness.startServing()
    harness.supervisor.reload()
    first, second = harness.supervisor.generations
    assert (first.state, second.state) == (GenerationState.SERVING, GenerationState.STARTING)
    harness.reactor.live()[-1].report("ready")
    assert (first.state, second.state) == (GenerationState.DRAINING, GenerationState.SERVING)
    old.end()
    assert harness.supervisor.generations == [second]


# Config text handed to the workers


def test_a_reload_hands_the_new_generation_the_text_it_validated():
    """When a reload validates a new text, the new workers get that text and the old ones
    kept the one they were started with."""
    harness = Harness(make_config(workers=1))
    (old,) = harness.startServing()
    harness.sourceText = "generation text 2\n"
    harness.supervisor.reload()
    (new,) = [p for p in harness.reactor.live() if p is not old]
    assert boot_of(new).source.text == "generation text 2\n"
    assert boot_of(old).source.text == "generation text 1\n"


def test_a_file_edited_during_validation_fails_the_reload(logged_errors):
    """When the config file reads differently before and after validation, the reload
    fails saying so, nothing is spawned, and the serving generation carries on."""
    harness = Harness(make_config(workers=1))
    harness.startServing()
    harness.texts = ["before the edit\n", "after the edit\n"]
    harness.supervisor.reload()
    assert len(harness.reactor.spawned) == 1
    assert harness.supervisor.serving.number == 1
    assert logged_errors.take(r"changed while it was being validated; reload again")
    assert logged_errors.take(r"reload failed: .* is invalid; generation 1 keeps serving")


# Workers that refuse their boot message


def test_a_refusing_worker_is_logged_and_retried_after_the_longest_wait(logged_errors):
    """When a serving worker exits with EX_CONFIG, the supervisor says it refused its boot
    message and waits maxRestartDelay before the next try, not the crash loop's first
    second; the retry comes then."""
    harness = Harness(make_config(workers=1))
    (process,) = harness.startServing()
    process.end(status=EX_CONFIG)
    slot = harness.supervisor.serving.slots[0]
    assert slot.restartCall.getTime() - harness.reactor.seconds() == Supervisor.maxRestartDelay
    harness.reactor.advance(Supervisor.maxRestartDelay - 1)
    assert harness.reactor.live() == []
    harness.reactor.advance(1)
    assert len(harness.reactor.live()) == 1
    assert logged_errors.take(r"worker 1\.0 \(pid \d+\) refused its boot message \(exited with "
                              r"status 78: .*retrying in 60s")


def test_workers_refusing_forever_spawn_a_handful_of_processes(logged_errors):
    """When every worker refuses its boot message at once, ten minutes see about one
    spawn a minute, not a spin."""
    harness = Harness(make_config(workers=1))
    harness.start()
    for _ in range(600):
        for process in harness.reactor.live():
            process.end(status=EX_CONFIG)
        harness.reactor.advance(1)
    assert len(harness.reactor.spawned) <= 11
    assert logged_errors.take(r"refused its boot message")


def test_a_refusal_in_a_reload_abandons_it(logged_errors):
    """When a reload's new worker refuses its boot message, the reload fails naming the
    exit status and the serving generation keeps serving."""
    harness = Harness(make_config(workers=1))
    (old,) = harness.startServing()
    harness.supervisor.reload()
    (new,) = [p for p in harness.reactor.live() if p is not old]
    new.end(status=EX_CONFIG)
    assert harness.supervisor.serving.number == 1 and old.signals == []
    assert logged_errors.take(r"reload failed: generation 2 lost worker 2\.0 .* exited with status 78")
    assert logged_errors.take(r"before its generation was ready")
