"""The C{h2proxy-audit} command: the list of attacks, running them one after the
other with a health check after each, and the report (one line per attack)."""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from h2proxy_tools.audit import attacks as dos
from h2proxy_tools.audit.client import Outcome, Target
from h2proxy_tools.audit.smuggling import smuggling
from h2proxy_tools.audit.verdicts import healthCheck

#: The first line of C{--help}.
DESCRIPTION = "h2proxy-audit: attack your own HTTP/2 server and see what holds."


@dataclass(frozen=True)
class Attack:
    """One line of the report: a name to pick it with C{--only}, what runs it, and
    whether it waits for the server's timeouts (C{--skip-slow} leaves those out)."""

    name: str
    run: Callable[[Target], Outcome]
    slow: bool = False


ATTACKS: tuple[Attack, ...] = (
    Attack("rapid-reset", dos.rapidReset),
    Attack("continuation-flood", dos.continuationFlood),
    Attack("header-block-size", dos.headerBlockSize),
    Attack("hpack-bomb", dos.hpackBomb),
    Attack("data-dribble", dos.dataDribble),
    Attack("ping-flood", dos.pingFlood),
    Attack("settings-flood", dos.settingsFlood),
    Attack("priority-churn", dos.priorityChurn),
    Attack("reset-flood", dos.resetFlood),
    Attack("zero-length-headers", dos.zeroLengthHeaders),
    Attack("empty-frames", dos.emptyFrames),
    Attack("smuggling", smuggling),
    Attack("slow-handshake", dos.slowHandshake, slow=True),
    Attack("slow-headers", dos.slowHeaders, slow=True),
    Attack("slow-body", dos.slowBody, slow=True),
    Attack("window-no-read", dos.windowNoRead, slow=True),
)


def runAudit(target: Target, attacks: Sequence[Attack], report: Callable[[Outcome], None]) -> list[Outcome]:
    """Run each attack, then check the server still serves; report each outcome."""
    outcomes = []
    for attack in attacks:
        try:
            outcome = attack.run(target)
        except (OSError, ssl.SSLError) as error:
            outcome = Outcome(attack.name, "", observed=f"could not run: {error}")
        outcome.healthy = healthCheck(target)
        if not outcome.healthy:
            outcome.passed = False
            outcome.observed += "; a normal request failed afterwards"
        outcomes.append(outcome)
        report(outcome)
    return outcomes


def formatRow(outcome: Outcome) -> str:
    verdict = "PASS" if outcome.passed else "FAIL"
    return f"{outcome.attack:<22} {verdict:<5} {outcome.option:<32} {outcome.observed}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="h2proxy-audit", description=DESCRIPTION)
    parser.add_argument("url", help="the server: https://host:port or http://host:port (h2c), optionally with a path")
    parser.add_argument("--large-path", help="a path with a large response (MiBs), for the flow-control attacks")
    parser.add_argument("--only", help="comma-separated attack names to run (default: all)")
    parser.add_argument("--skip-slow", action="store_true", help="skip the attacks that wait for the server's timeouts")
    parser.add_argument("--hold", type=float, default=75.0, help="longest wait for a timeout-based defence (s)")
    parser.add_argument("--connections", type=int, default=0,
                        help="also open this many idle connections (more than limits.max_connections) and check a new one is served")
    parser.add_argument("--i-own-this-server", action="store_true", help="allow a target that is not a loopback address")
    args = parser.parse_args(argv)
    target = Target.fromURL(args.url, hold=args.hold)
    target = replace(target, largePath=args.large_path or target.path)
    if not target.isLoopback and not args.i_own_this_server:
        parser.error(f"{target.host} is not a loopback address: pass --i-own-this-server if you run it")
    attacks = list(ATTACKS)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {a.name for a in ATTACKS} - {"connection-flood"}
        if unknown:
            parser.error(f"unknown attacks: {', '.join(sorted(unknown))}; known: {', '.join(a.name for a in ATTACKS)}")
        attacks = [a for a in attacks if a.name in wanted]
    if args.skip_slow:
        attacks = [a for a in attacks if not a.slow]
    if args.connections:
        attacks.append(Attack("connection-flood", lambda t: dos.connectionFlood(t, args.connections)))
    print(f"auditing {args.url} ({len(attacks)} attacks)")
    print(f"{'attack':<22} {'':<5} {'option':<32} observed")
    outcomes = runAudit(target, attacks, lambda outcome: print(formatRow(outcome), flush=True))
    failed = [o.attack for o in outcomes if not o.passed]
    print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
