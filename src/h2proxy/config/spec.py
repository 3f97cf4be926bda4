"""The kinds of value an option can hold, and the L{option} marker the model uses.

Each kind knows three things: how to turn what YAML gave into the model's value
(raising L{OptionError} with a message an operator can act on), how to name itself
and its bounds in the documentation, and how to print a default the way an operator
would write it. The model (model.py) attaches one kind, a default and a one-line
description to every field with L{option}; the loader (load.py) and the reference
documentation (docs.py) are both driven by those fields, so they cannot disagree.

Plain data and pure functions: no YAML, no Twisted. The few kinds that look at the
system (files, users) do so only when converting.
"""

from __future__ import annotations

import difflib
import grp
import ipaddress
import os
import pwd
import re
import stat
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable

from h2proxy.config.units import format_duration, format_size, parse_duration, parse_size

#: The metadata key under which a dataclass field carries its L{Option}.
OPTION = "h2proxy.option"


class OptionError(Exception):
    """A value that does not fit its option.

    @ivar show_got: whether the loader should append ``, got <value as written>``
        (true for "expected ..." messages, false when the message already says
        what was wrong, like ``file not found: /etc/x.pem``).
    @ivar hint: appended after that, like ``; did you mean 64KiB?``.
    """

    def __init__(self, message: str, show_got: bool = True, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.show_got = show_got
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Context:
    """What conversion needs to know about the file being read.

    @ivar base_dir: directory of the configuration file; relative paths are
        resolved against it, so a config and its certificates can move together.
    """

    base_dir: str


def did_you_mean(word: str, choices: "list[str] | tuple[str, ...]") -> str:
    """``; did you mean 'x'?`` for the closest of C{choices}, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Kind:
    """Base of every kind: converts one value and describes itself."""

    #: The type as the documentation names it.
    what: str = "value"

    def convert(self, value: object, context: Context) -> Any:
        raise NotImplementedError

    def bounds(self) -> str:
        """Allowed range or values, for the documentation (empty when unbounded)."""
        return ""

    def format(self, value: Any) -> str:
        """C{value} as an operator would write it in YAML."""
        return str(value)


def _digits(value: object) -> object:
    """A quoted number (``"8443"``, or a ``${PORT}`` inside quotes) read as the
    integer it plainly is; anything else unchanged."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


@dataclass(frozen=True, slots=True)
class Integer(Kind):
    low: int
    high: int
    what = "integer"

    def convert(self, value: object, context: Context) -> int:
        value = _digits(value)
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise OptionError(f"expected an integer from {self.low} to {self.high}")
        return value

    def bounds(self) -> str:
        return f"{self.low} to {self.high}"


@dataclass(frozen=True, slots=True)
class IntegerChoice(Kind):
    """One of a few integers (the statuses a redirect may use)."""

    values: tuple[int, ...]
    what = "integer"

    def convert(self, value: object, context: Context) -> int:
        value = _digits(value)
        if isinstance(value, bool) or value not in self.values:
            raise OptionError(f"expected one of {self.bounds()}")
        return value  # type: ignore[return-value]

    def bounds(self) -> str:
        return ", ".join(str(v) for v in self.values)


@dataclass(frozen=True, slots=True)
class Duration(Kind):
    """Float seconds, written ``250ms``, ``30s``, ``5m``, ``1h`` or a bare number of seconds."""

    low: float
    high: float
    what = "duration"

    def convert(self, value: object, context: Context) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise OptionError(
                f"expected a duration from {self.bounds()} (like 250ms, 30s, 5m, 1h)"
            ) from None
        if not self.low <= seconds <= self.high:
            raise OptionError(f"expected a duration from {self.bounds()}")
        return seconds

    def bounds(self) -> str:
        return f"{format_duration(self.low)} to {format_duration(self.high)}"

    def format(self, value: Any) -> str:
        return format_duration(value)


@dataclass(frozen=True, slots=True)
class Size(Kind):
    """Int bytes, written ``512B``, ``64KiB``, ``16MiB``, ``1GiB`` or a bare number of bytes."""

    low: int
    high: int
    what = "size"

    def convert(self, value: object, context: Context) -> int:
        try:
            size = parse_size(value)
        except ValueError as error:
            hint = "" if str(error) == "not a size" else f"; {error}"
            raise OptionError(f"expected a size from {self.bounds()} (like 64KiB, 16MiB)", hint=hint) from None
        if not self.low <= size <= self.high:
            raise OptionError(f"expected a size from {self.bounds()}")
        return size

    def bounds(self) -> str:
        return f"{format_size(self.low)} to {format_size(self.high)}"

    def format(self, value: Any) -> str:
        return format_size(value)


@dataclass(frozen=True, slots=True)
class Boolean(Kind):
    what = "boolean"

    def convert(self, value: object, context: Context) -> bool:
        if not isinstance(value, bool):
            raise OptionError("expected true or false")
        return value

    def bounds(self) -> str:
        return "true, false"

    def format(self, value: Any) -> str:
        return "true" if value else "false"


@dataclass(frozen=True, slots=True)
class Choice(Kind):
    values: tuple[str, ...]
    what = "string"

    def convert(self, value: object, context: Context) -> str:
        written = value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # YAML reads ``min_version: 1.2`` as a number
        if value not in self.values:
            listed = ", ".join(self.values)
            hint = did_you_mean(written, self.values) if isinstance(written, str) else ""
            raise OptionError(f"expected one of {listed}", hint=hint)
        return value  # type: ignore[return-value]

    def bounds(self) -> str:
        return ", ".join(self.values)


@dataclass(frozen=True, slots=True)
class Pattern(Kind):
    """A string matching C{regex}; C{expected} says in words what that means."""

    regex: str
    expected: str
    what = "string"
    lower: bool = False

    def convert(self, value: object, context: Context) -> str:
        if not isinstance(value, str) or re.fullmatch(self.regex, value) is None:
            raise OptionError(f"expected {self.expected}")
        return value.lower() if self.lower else value

    def bounds(self) -> str:
        return self.expected

    def format(self, value: Any) -> str:
        return f'"{value}"' if value in ("*", "") or value.startswith("*") else str(value)


@dataclass(frozen=True, slots=True)
class Workers(Kind):
    """``auto`` (None: one worker per CPU) or a number of worker processes."""

    high: int
    what = "integer or auto"

    def convert(self, value: object, context: Context) -> int | None:
        if value == "auto":
            return None
        value = _digits(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.high:
            raise OptionError(f"expected auto or an integer from 1 to {self.high}")
        return value

    def bounds(self) -> str:
        return f"auto, 1 to {self.high}"

    def format(self, value: Any) -> str:
        return "auto" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class IpAddress(Kind):
    """An IPv4 or IPv6 literal to listen on, without brackets."""

    what = "IP address"

    def convert(self, value: object, context: Context) -> str:
        expected = "expected an IPv4 or IPv6 address like 127.0.0.1 or ::"
        if not isinstance(value, str):
            raise OptionError(expected)
        if value.startswith("[") and value.endswith("]"):
            raise OptionError("expected an IPv6 address without brackets", hint=f"; write {value[1:-1]}")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            hint = "; names are not resolved: use 127.0.0.1 or ::1" if value == "localhost" else ""
            raise OptionError(expected, hint=hint) from None

    def bounds(self) -> str:
        return "IPv4 or IPv6 literal"

    def format(self, value: Any) -> str:
        return f'"{value}"' if ":" in value else str(value)


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
SERVER_ADDRESS_FORMS = "host:port, [v6]:port or https://host:port"


@dataclass(frozen=True, slots=True)
class ServerAddress(Kind):
    """A backend written ``host:port``, ``[v6]:port`` or ``scheme://host[:port]``;
    converts to ``(host, port, scheme)``."""

    what = "address"

    def convert(self, value: object, context: Context) -> tuple[str, int, str]:
        if not isinstance(value, str):
            raise OptionError(f"expected {SERVER_ADDRESS_FORMS}")
        scheme, has_scheme, rest = value.partition("://")
        if not has_scheme:
            scheme, rest = "http", value
        if scheme not in _DEFAULT_PORTS:
            raise OptionError("expected the scheme http:// or https://")
        host, port = _split_host_port(rest, _DEFAULT_PORTS[scheme] if has_scheme else None)
        return host, port, scheme

    def bounds(self) -> str:
        return SERVER_ADDRESS_FORMS


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (port optional when C{default_port} is given)."""
    if text.startswith("["):
        host, closed, tail = text[1:].partition("]")
        if not closed or (tail and not tail.startswith(":")):
            raise OptionError(f"expected {SERVER_ADDRESS_FORMS}")
        port_text = tail[1:] if tail else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise OptionError(f"'{host}' is not an IPv6 address", show_got=False) from None
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
        if ":" in host:
            raise OptionError(f"expected {SERVER_ADDRESS_FORMS}", hint=f"; write [{host}]:{port_text}")
        if _HOSTNAME.fullmatch(host) is None:
            raise OptionError(f"expected {SERVER_ADDRESS_FORMS}")
    if not port_text:
        if default_port is None:
            raise OptionError(f"missing port; expected {SERVER_ADDRESS_FORMS}")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise OptionError(f"expected a port from 1 to 65535 in {SERVER_ADDRESS_FORMS}")
    return host, int(port_text)


def _existing(
    value: object, context: Context, noun: str, kind: str, isKind: Callable[[int], bool], access: int
) -> str:
    """The absolute path of C{value}, once it names an existing C{noun} that is a
    C{kind} (its mode passing C{isKind}) the daemon may open with C{access}; else
    an error naming what is wrong with it."""
    path = _absolute(value, context)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise OptionError(f"{noun} not found: {path}", show_got=False) from None
    except OSError as error:
        raise OptionError(f"cannot read {path}: {error.strerror}", show_got=False) from None
    if not isKind(mode):
        raise OptionError(f"not a {kind}: {path}", show_got=False)
    if not os.access(path, access):
        raise OptionError(f"permission denied: {path}", show_got=False)
    return path


@dataclass(frozen=True, slots=True)
class FilePath(Kind):
    """An existing, readable regular file; relative paths are taken from the
    config file's directory."""

    what = "file path"

    def convert(self, value: object, context: Context) -> str:
        return _existing(value, context, "file", "regular file", stat.S_ISREG, os.R_OK)

    def bounds(self) -> str:
        return "existing file"


@dataclass(frozen=True, slots=True)
class DirectoryPath(Kind):
    """An existing directory the daemon can list and read from; relative paths are
    taken from the config file's directory."""

    what = "directory path"

    def convert(self, value: object, context: Context) -> str:
        return _existing(value, context, "directory", "directory", stat.S_ISDIR, os.R_OK | os.X_OK)

    def bounds(self) -> str:
        return "existing directory"


@dataclass(frozen=True, slots=True)
class LogPath(Kind):
    """A file to append to (its directory must exist), or ``-`` for standard output."""

    what = "file path"

    def convert(self, value: object, context: Context) -> str:
        if value == "-":
            return "-"
        path = _absolute(value, context)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise OptionError(f"directory does not exist: {directory}", show_got=False)
        if os.path.isdir(path):
            raise OptionError(f"is a directory, expected a file: {path}", show_got=False)
        return path

    def bounds(self) -> str:
        return "file in an existing directory, or -"


def _absolute(value: object, context: Context) -> str:
    if not isinstance(value, str) or not value:
        raise OptionError("expected a file path")
    if "\0" in value:
        raise OptionError("a file path cannot contain a NUL character", show_got=False)
    return os.path.normpath(os.path.join(context.base_dir, os.path.expanduser(value)))


@dataclass(frozen=True, slots=True)
class SystemAccount(Kind):
    """The name of an existing system user or group (to drop privileges to)."""

    group: bool = False
    what = "name"

    def convert(self, value: object, context: Context) -> str:
        noun = "group" if self.group else "user"
        if not isinstance(value, str) or not value:
            raise OptionError(f"expected a {noun} name")
        lookup: Callable[[str], object] = grp.getgrnam if self.group else pwd.getpwnam
        try:
            lookup(value)
        except KeyError:
            raise OptionError(f"no such {noun} on this system: {value}", show_got=False) from None
        return value

    def bounds(self) -> str:
        return "existing group" if self.group else "existing user"


@dataclass(frozen=True, slots=True)
class Text(Kind):
    """A non-empty string of at most C{max_length} characters (checked elsewhere
    when it has a grammar of its own, like an OpenSSL cipher string)."""

    max_length: int
    what = "string"

    def convert(self, value: object, context: Context) -> str:
        if not isinstance(value, str) or not value or len(value) > self.max_length:
            raise OptionError(f"expected a non-empty string of at most {self.max_length} characters")
        return value


# -- structure ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section(Kind):
    """A nested mapping whose options are the fields of the dataclass C{cls}.

    @ivar provides_defaults: this section's value is the default for every
        C{inherits} section of the same class (the top-level ``http2``).
    @ivar inherits: options left out here take the C{provides_defaults} section's
        values, not the dataclass defaults (a listener's ``http2`` override).
    @ivar switch: the section may also be written ``true`` (on, every option at its
        default) or ``false`` (off: None, as when it is omitted), like a route's
        ``compress``.
    """

    cls: type
    provides_defaults: bool = False
    inherits: bool = False
    switch: bool = False

    @property
    def what(self) -> str:  # type: ignore[override]
        return "boolean or mapping" if self.switch else "mapping"

    def bounds(self) -> str:
        return "true (the defaults), false (off) or a mapping" if self.switch else ""

    def convert(self, value: object, context: Context) -> Any:
        """What a switch section written as a scalar C{value} (true or false) stands
        for: the section with its defaults, or None. (A mapping is read option by
        option by the loader, as for any section.)

        @raise OptionError: when C{value} is not a boolean.
        """
        if not isinstance(value, bool):
            raise OptionError("expected true, false or a mapping")
        return self.cls() if value else None


@dataclass(frozen=True, slots=True)
class ListOf(Kind):
    """A YAML sequence of C{item}, converted to a tuple.

    @ivar unique: reject a value that appears twice (for scalar items).
    """

    item: Kind
    low: int
    high: int
    unique: bool = False

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"list of {self.item.what}"

    def bounds(self) -> str:
        parts = [f"{self.low} to {self.high} items"]
        inner = self.item.bounds()
        if inner and not isinstance(self.item, Section):
            parts.append(f"each {inner}")
        return "; ".join(parts)

    def format(self, value: Any) -> str:
        return "[" + ", ".join(self.item.format(v) for v in value) + "]"


@dataclass(frozen=True, slots=True)
class MapOf(Kind):
    """A YAML mapping of names (matching C{key}) to C{item} sections; the name is
    passed to the section's class as its C{name} field."""

    item: Section
    key: Pattern
    low: int
    high: int

    @property
    def what(self) -> str:  # type: ignore[override]
        return "mapping of name to mapping"

    def bounds(self) -> str:
        return f"{self.low} to {self.high} entries; names are {self.key.expected}"


# -- the field marker --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """What the model says about one field.

    @ivar kind: the value's kind.
    @ivar doc: one line: what the option does.
    @ivar key: the YAML key (the field name unless given).
    @ivar nullable: an explicit YAML ``null`` gives None (for "off" or "inherit").
    @ivar fills: the converted value is a tuple spread over these fields (one YAML
        ``address`` becomes a server's host, port and scheme).
    @ivar former: keys this option had before it was renamed; still read (with a
        warning naming the new key), so an existing file keeps loading.
    """

    kind: Kind
    doc: str
    key: str
    nullable: bool = False
    fills: tuple[str, ...] = ()
    former: tuple[str, ...] = ()


def option(
    kind: Kind,
    doc: str,
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    key: str = "",
    nullable: bool = False,
    fills: tuple[str, ...] = (),
    former: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that is also a documented configuration option.

    Without a default the option is required. C{key} defaults to the field's name
    (filled in by L{options_of}); C{former} lists the keys it was renamed from.
    """
    meta = {OPTION: Option(kind, doc, key, nullable, fills, former)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class Field:
    """One option of a section class, as the loader and the docs see it."""

    name: str
    option: Option
    default: Any  # MISSING when required

    @property
    def key(self) -> str:
        return self.option.key or self.name

    @property
    def required(self) -> bool:
        return self.default is MISSING


def options_of(cls: type) -> list[Field]:
    """The option fields of the dataclass C{cls}, in declaration order."""
    found: list[Field] = []
    for f in cls.__dataclass_fields__.values():  # type: ignore[attr-defined]
        meta = f.metadata.get(OPTION)
        if meta is None:
            continue
        default = f.default
        if f.default_factory is not MISSING:
            default = f.default_factory()
        found.append(Field(f.name, meta, default))
    return found
