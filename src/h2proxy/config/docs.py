"""Renders docs/configuration.md from the schema, so the reference cannot drift.

    python -m h2proxy.config.docs docs/configuration.md     # rewrite the file
    python -m h2proxy.config.docs --check docs/configuration.md

Every option becomes one table row: key path, type, default, bounds, description,
all read from the model's fields; options read under a former name are listed once
more, together, under "Renamed options". The prose around the tables is here too;
the test suite fails when the committed file differs from L{render}.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from h2proxy.config.model import Config
from h2proxy.config.spec import Field, Kind, ListOf, MapOf, Section, options_of


@dataclass(frozen=True, slots=True)
class Row:
    """One option as the reference shows it."""

    key: str
    type: str
    default: str
    bounds: str
    description: str
    former: tuple[str, ...] = ()
    """Key paths this option is also read under (its names before a rename)."""


@dataclass(frozen=True, slots=True)
class Table:
    """The options of one section, under a heading naming its key path."""

    path: str
    about: str
    rows: tuple[Row, ...]


def tables(cls: type = Config, path: str = "") -> Iterator[Table]:
    """The schema as tables, depth first, in declaration order."""
    fields = options_of(cls)
    yield Table(path or "(top level)", _about(cls), tuple(_row(f, path) for f in fields))
    for f in fields:
        nested = _nested(f.option.kind)
        if nested is not None and not nested[0].inherits:
            section, suffix = nested
            yield from tables(section.cls, _join(path, f.key) + suffix)


def _nested(kind: Kind) -> tuple[Section, str] | None:
    """The section a kind contains, and the key-path suffix of its items."""
    if isinstance(kind, Section):
        return kind, ""
    if isinstance(kind, ListOf) and isinstance(kind.item, Section):
        return kind.item, "[]"
    if isinstance(kind, MapOf):
        return kind.item, ".<name>"
    return None


def _row(f: Field, path: str) -> Row:
    kind = f.option.kind
    key = _join(path, f.key)
    description = f.option.doc
    nested = _nested(kind)
    if nested is not None:
        section, suffix = nested
        if section.inherits:
            provider = _provider_key(section.cls)
            description += f" Same options as [{provider}](#{_anchor(provider)})."
        else:
            description += f" See [`{key}{suffix}`](#{_anchor(key + suffix)})."
    former = tuple(_join(path, old) for old in f.option.former)
    if former:
        names = ", ".join(f"`{old}`" for old in former)
        description += f" Also read as {names} (see [Renamed options](#renamed-options))."
    what = kind.what + (" or null" if f.option.nullable else "")
    return Row(key, what, default_text(f), kind.bounds(), description, former)


def _provider_key(cls: type) -> str:
    """The top-level key whose section gives C{inherits} sections of C{cls} their
    defaults (``http2`` for a listener's ``http2``)."""
    for f in options_of(Config):
        kind = f.option.kind
        if isinstance(kind, Section) and kind.provides_defaults and kind.cls is cls:
            return f.key
    raise ValueError(f"no top-level section provides defaults for {cls.__name__}")


def default_text(f: Field) -> str:
    """The default as the reference prints it (and as an operator would write it)."""
    if f.required:
        return "required"
    if f.default is None:
        return "null" if f.option.nullable else "omitted"
    if _nested(f.option.kind) is not None:
        return "see its options"
    return f.option.kind.format(f.default)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _about(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The whole of docs/configuration.md."""
    parts = [INTRO]
    for table in tables():
        parts.append(f"### `{table.path}`\n\n{table.about}\n")
        parts.append("| Option | Type | Default | Bounds | Description |")
        parts.append("|---|---|---|---|---|")
        for row in table.rows:
            cells = [f"`{row.key}`", row.type, f"`{row.default}`", row.bounds, row.description]
            parts.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        parts.append("")
    parts.append(renamed_section(tuple(tables())))
    return "\n".join(parts)


def renamed_section(all_tables: tuple[Table, ...]) -> str:
    """The "Renamed options" section: every former key path and the option it now
    names, as a list (a table row starting with a key would read as an option)."""
    renames = [(old, row.key) for table in all_tables for row in table.rows for old in row.former]
    if not renames:
        return RENAMED + "\nNo option is read under a former name.\n"
    lines = [f"- `{old}`: read as `{key}`" for old, key in renames]
    return RENAMED + "\n" + "\n".join(lines) + "\n"


INTRO = """\
# Configuration reference

<!-- Generated from src/h2proxy/config/model.py by `python -m h2proxy.config.docs
docs/configuration.md`; a test fails when this file and the schema differ. Edit the
schema (or the prose in src/h2proxy/config/docs.py), then regenerate. -->

h2proxy reads one YAML file, given with `-c` (default `/etc/h2proxy/h2proxy.yaml`).
`conf/h2proxy.yaml` is a commented starting point; `conf/examples/` has TLS with
several certificates, several upstreams with health checks, h2c behind another
proxy, and a tuned high-throughput setup.

```sh
twistd -n --pidfile= h2proxy -c /etc/h2proxy/h2proxy.yaml --check    # validate and exit, like nginx -t
```

`--check` reads the file and every file it names (certificates, keys), prints every
problem at once and exits non-zero if any is an error. The daemon runs the same
checks on start and on reload (`SIGHUP`): an invalid file is refused and the old
configuration keeps serving.

## Messages

Each problem names the file, line, column and key path, then says what was expected:

```
conf.yaml:9:17: warning: listeners[0].tls.certificates[1].cert: certificate expires in 12 days, on 2026-03-01
conf.yaml:12:11: listeners[0].port: expected an integer from 0 to 65535, got 'http'
conf.yaml:14:17: listeners[0].tls.certificates[2].cert: file not found: /etc/h2proxy/tls/example.org.pem
conf.yaml:20:13: upstreams.app.policy: expected one of round_robin, least_conn, random_two, got 'least_connections'; did you mean 'least_conn'?
conf.yaml:31:15: routes[2].upstream: no upstream named 'ap'; did you mean 'app'?
```

Errors stop the daemon from starting (or a reload from taking effect). Warnings
(marked `warning:`) do not: they are printed by `--check` and logged on start, and
the loader returns them on `Config.warnings`.

One check depends on how twistd runs the daemon, not on the file alone: a
`logging.access_log` or `logging.error_log` of `-` (standard output) is an error
when twistd detaches (started without `-n`, twistd points standard output at
/dev/null and every line would be lost), and a warning from `--check` without `-n`
(pass `--check` the twistd options the daemon runs with, as the systemd unit does:
`twistd -n --pidfile= h2proxy -c FILE --check`).

Besides each value's own type and bounds, the loader checks:

- keys: unknown keys (with a suggestion), duplicate keys in one mapping, YAML merge
  keys (`<<`, not supported);
- listeners: unique names; no two listeners (or the admin listener) on sockets that
  cannot both be bound: the same address and port, or a wildcard covering the other
  (`::` also takes IPv4 connections on Linux, so `::` and `0.0.0.0` on one port conflict);
  `protocols` only on cleartext listeners (a TLS listener offers what `tls.alpn` lists);
- certificates: the files exist and are readable, the certificate is PEM, the key
  is an unencrypted PEM key that matches the certificate; warnings for a certificate
  that has expired, is not yet valid or expires within 30 days, a key file readable
  by every user, and a certificate whose names are all served by an earlier one
  (SNI would never select it); the cipher string selects at least one suite;
- routes: each names an existing upstream; no two routes with the same host, path
  and `exact`; warnings for an upstream no route uses, `strip_prefix` on the path
  `/` (nothing to strip), and `buffer_limit` on a route that does not buffer;
- forwarding: warning for a trusted network that covers every address (`/0`): any
  client could then forge forwarding fields;
- upstreams: no server listed twice; a health check's timeout is shorter than its
  interval; warnings for a queue without `max_connections` and a `tls` section
  without any `https://` server;
- limits: `limits.max_request_body`, when set, is not smaller than any stream window
  (`http2.initial_window_size`, or a listener's override): a client could otherwise
  send a whole window of body that is then refused;
- `http2`: warning when the connection window is smaller than the stream window.

## Values

- **Durations**: `250ms`, `30s`, `5m`, `1h`, `1.5s`, or a bare number of seconds.
- **Sizes**: `512B`, `64KiB`, `16MiB`, `1GiB`, or a bare number of bytes. Units are
  binary; `64KB` or `64k` is refused with a suggestion rather than guessed at.
- **Addresses** to listen on are IPv4 or IPv6 literals without brackets (`::`,
  `0.0.0.0`, `127.0.0.1`, `::1`); names are not resolved. Write IPv6 literals in
  quotes (`"::"`) so YAML reads them as strings.
- **Backend servers** are `host:port`, `[v6]:port`, or `https://host[:port]` (TLS to
  the backend; the port defaults to 443).
- **Paths** (certificates, keys, logs) may be relative: they are taken from the
  directory of the configuration file, so a config and its files can move together.
- **Environment variables**: `${NAME}` anywhere in a value is replaced by the
  variable's value before the value is read (`cert: ${TLS_DIR}/example.org.pem`,
  `port: ${PORT}`); an unset variable is an error. Use it for secrets' paths.
- **Header fields** to set or add are written `"name: value"`, in quotes: unquoted,
  YAML reads `name: value` as a mapping. Names are case-insensitive (sent lowercase).
- **Networks** (`trusted_proxies`, a route's `allow` and `deny`) are CIDR
  (`10.0.0.0/8`, `2001:db8::/32`) or a single address (a /32 or /128); a network
  with host bits set (`10.0.0.1/8`) is refused.
- `null` (or an empty value) is accepted only where the table says "or null".

## Options
"""

RENAMED = """\
## Renamed options

An option that was renamed is still read under its former key path, so an existing
file keeps working: the loader takes the value as the new option's and warns
(`renamed to KEY; write KEY instead`, printed by `--check` and logged on start and
reload). A file that sets an option under both names is refused (`set twice, as
KEY and by its former name`). Rename the key in the file when convenient.
"""


def main(argv: list[str]) -> int:
    check = "--check" in argv
    targets = [a for a in argv if a != "--check"] or ["docs/configuration.md"]
    text = render()
    if check:
        with open(targets[0], encoding="utf-8") as handle:
            if handle.read() != text:
                print(f"{targets[0]} is out of date: run python -m h2proxy.config.docs {targets[0]}")
                return 1
        return 0
    with open(targets[0], "w", encoding="utf-8") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
