"""What a reload reads and what it changes: the config's text as handed to the
workers (L{ConfigSource}), and the lines the supervisor logs before it hands over
to a new generation, one per listener, route and upstream added, removed or changed."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping

from h2proxy.config.load import read_config_text
from h2proxy.config.model import Config
from h2proxy.errors import ConfigError, ConfigProblem
from h2proxy.handover import ConfigSource
from h2proxy.observability.metrics import route_label, server_label


def _changed_fields(old, new) -> list[str]:
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def _keyed_changes(kind: str, old: Mapping, new: Mapping, detail: Callable[[object, object], str]) -> list[str]:
    """C{kind} entries added, removed and changed between two name -> entry maps."""
    lines = [f"{kind} {name} added" for name in new if name not in old]
    lines += [f"{kind} {name} removed" for name in old if name not in new]
    lines += [f"{kind} {name} changed ({detail(old[name], new[name])})"
              for name in new if name in old and old[name] != new[name]]
    return lines


def _upstream_detail(old, new) -> str:
    before = {server_label(s): s for s in old.servers}
    after = {server_label(s): s for s in new.servers}
    parts = [f"+{label}" for label in after if label not in before]
    parts += [f"-{label}" for label in before if label not in after]
    parts += [f"~{label}" for label in after if label in before and before[label] != after[label]]
    others = [name for name in _changed_fields(old, new) if name != "servers"]
    return ", ".join(([f"servers {' '.join(parts)}"] if parts else []) + others)


def describe_changes(old: Config, new: Config) -> list[str]:
    """What a reload changes, one line per listener, route and upstream added,
    removed or changed, then one per other section that differs; a single line
    when nothing did (certificates are read again all the same)."""
    lines = _keyed_changes("listener", {l.name: l for l in old.listeners},
                           {l.name: l for l in new.listeners},
                           lambda a, b: ", ".join(_changed_fields(a, b)))
    lines += _keyed_changes("route", {route_label(r): r for r in old.routes},
                            {route_label(r): r for r in new.routes},
                            lambda a, b: ", ".join(_changed_fields(a, b)))
    lines += _keyed_changes("upstream", old.upstreams, new.upstreams, _upstream_detail)
    sections = [name for name in _changed_fields(old, new)
                if name not in ("listeners", "routes", "upstreams", "source", "warnings")]
    lines += [f"{name} changed" for name in sections]
    return lines or ["no setting changed (certificates and keys were read again)"]


def read_source(path: str) -> ConfigSource:
    """The config file's text, stamped with the time it is read (right before the file
    is validated, so certificates are checked against the same instant in the workers).

    @raise ConfigError: the file cannot be read.
    """
    return ConfigSource(read_config_text(path), path, datetime.datetime.now(datetime.timezone.utc))


def unchanged_since(source: ConfigSource, again: ConfigSource) -> ConfigSource:
    """C{source}, if the file still holds its text after validation (C{again}).

    The loader reads the file itself: an edit landing between the two reads would
    hand the workers a text other than the one validated.

    @raise ConfigError: the file changed meanwhile; reloading again picks up the edit.
    """
    if again.text != source.text:
        raise ConfigError([ConfigProblem(source.path, None, None, "",
                                         "changed while it was being validated; reload again")])
    return source
