"""YAML -> L{Config}, with every problem reported at its file:line:column.

The file is read with PyYAML's node API (C{yaml.compose}), which keeps where each
value was written; a generic walker then converts each node by the kind the model
declares for it (see spec.py), so there is no per-option parsing code to keep in
step with the model. Unknown keys, duplicate keys, wrong types and out-of-range
values are collected, not raised one by one; cross-field checks (checks.py) run on
whatever parsed cleanly; then everything found is raised at once as one
L{ConfigError}, or the config is returned with its warnings on C{Config.warnings}.

Public API: L{load_config} for a file, L{load_config_text} for text (tests).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from h2proxy.config import checks
from h2proxy.config.model import Config
from h2proxy.config.report import Report, child
from h2proxy.config.spec import (
    Context,
    Field,
    Kind,
    ListOf,
    MapOf,
    OptionError,
    Section,
    did_you_mean,
    options_of,
)
from h2proxy.errors import ConfigError, ConfigProblem

#: Largest configuration file read (a config is not a database).
MAX_CONFIG_BYTES = 1024 * 1024

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_ENV = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Returned by the walker for a value it could not convert (already reported).
INVALID: Any = type("Invalid", (), {"__repr__": lambda self: "INVALID"})()


class _Shape:
    """Stands in for a mapping or list where a scalar was expected, so that every
    kind rejects it with its own "expected ..." message."""

    def __init__(self, words: str) -> None:
        self.words = words


def load_config(path: str, *, env: Mapping[str, str] | None = None, now: datetime.datetime | None = None) -> Config:
    """Read, validate and return the configuration in the file C{path}.

    Relative paths inside it are taken from the file's directory.

    @param env: variables for ``${NAME}`` substitution (default: the process environment).
    @param now: the time certificates are checked against (default: now).
    @raise ConfigError: with every problem found, each ``file:line:col: key: message``.
    """
    return load_config_text(read_config_text(path), path, env=env, now=now)


def load_config_text(
    text: str,
    path: str,
    *,
    env: Mapping[str, str] | None = None,
    now: datetime.datetime | None = None,
) -> Config:
    """Validate configuration C{text} as if read from C{path} (which names it in
    messages and anchors relative paths); see L{load_config}."""
    report = Report(path)
    root = _compose(text, report)
    if root is None:
        report.raise_if_errors()
    base_dir = os.path.dirname(os.path.abspath(path))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    walker = _Walker(report, Context(base_dir), os.environ if env is None else env, now)
    draft = walker.section(Config, root, "", top=True)
    checks.cross_check(draft, walker.declared, walker.path_of, report)
    report.raise_if_errors()
    return Config(**draft, source=path, warnings=report.warnings())


def read_config_text(path: str) -> str:
    """The file's text, or a L{ConfigError} saying why it cannot be read."""

    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigProblem(path, None, None, "", message)])

    if os.path.isdir(path):
        raise fail("is a directory; expected a YAML configuration file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as error:
        raise fail(f"cannot read: {error.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise fail(f"larger than {MAX_CONFIG_BYTES // 1024}KiB; is this the configuration file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(
            [ConfigProblem(path, line, column, "", "not UTF-8 text; save the file as UTF-8")]
        ) from None


def _compose(text: str, report: Report) -> MappingNode | None:
    """The document's root mapping node, or None after reporting why there is none."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        report.error("", f"YAML syntax error: {_yaml_problem(error)}", _yaml_mark(error))
        return None
    except yaml.YAMLError as error:  # reader errors: control characters and the like
        report.error("", f"YAML error: {error}", (1, 1))
        return None
    except RecursionError:
        report.error("", "YAML nesting too deep", (1, 1))
        return None
    if root is None:
        report.error("", "the file is empty; expected a mapping with listeners, upstreams and routes", (1, 1))
        return None
    if not isinstance(root, MappingNode):
        report.error("", f"expected a mapping of options at the top level, got {_shape(root).words}", _mark(root))
        return None
    return root


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    """PyYAML's context and problem as one phrase, with where the context began
    (an unclosed quote is reported at the end of the file, but started earlier)."""
    problem = error.problem or "invalid YAML"
    if "'\\t'" in problem:
        problem += "; indent with spaces, not tabs"
    if not error.context:
        return problem
    if problem.startswith("but "):
        return f"{error.context}, {problem}"
    started = error.context_mark
    if started is not None and error.problem_mark is not None and started.line != error.problem_mark.line:
        return f"{error.context} (from line {started.line + 1}, column {started.column + 1}): {problem}"
    return f"{error.context}: {problem}"


def _yaml_mark(error: yaml.MarkedYAMLError) -> tuple[int, int] | None:
    mark = error.problem_mark or error.context_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _shape(node: Node) -> _Shape:
    if isinstance(node, MappingNode):
        return _Shape("a mapping")
    if isinstance(node, SequenceNode):
        return _Shape("a list")
    return _Shape("a scalar")


class _Walker:
    """Converts nodes by the kinds the model declares, reporting as it goes.

    @ivar declared: key path of each mapping-of-names -> every name written there,
        even those whose entry was invalid (so a route to a broken upstream is not
        also reported as a route to a missing one).
    @ivar defaults: a section class -> the value that C{inherits} sections of that
        class start from (the top-level ``http2``).
    @ivar paths: id of each section object built -> the key path it was read from
        (lists keep only their valid items, so an index alone would mislead).
    """

    def __init__(self, report: Report, context: Context, env: Mapping[str, str], now: datetime.datetime) -> None:
        self.report = report
        self.context = context
        self.env = env
        self.now = now
        self.constructor = yaml.SafeLoader("")
        self.declared: dict[str, tuple[str, ...]] = {}
        self.defaults: dict[type, Any] = {}
        self.paths: dict[int, str] = {}

    def path_of(self, section: object) -> str:
        """The key path C{section} was read from."""
        return self.paths[id(section)]

    # -- sections ------------------------------------------------------------

    def section(self, cls: type, node: MappingNode, path: str, *, top: bool = False,
                extra: dict[str, Any] | None = None, base: Any = None) -> Any:
        """The instance of C{cls} that C{node} describes (or, with C{top}, the
        keyword arguments for it, keeping every option that converted)."""
        errors_before = self.report.error_count
        fields = options_of(cls)
        entries = self._entries(node, path, fields)
        values: dict[str, Any] = dict(extra or {})
        complete = True
        for f in sorted(fields, key=_defaults_first):
            converted = self._field(f, entries.get(f.key), node, path, base)
            if converted is INVALID:
                complete = False
            elif f.option.fills:
                values.update(zip(f.option.fills, converted))
            else:
                values[f.name] = converted
        if top:
            return values
        if not complete:
            return INVALID
        value = cls(**values)
        self.paths[id(value)] = path
        if self.report.error_count == errors_before:
            checks.check_section(value, path, self.report, self.now)
        return value

    def _field(self, f: Field, entry: Node | None, mapping: MappingNode, path: str, base: Any) -> Any:
        key = child(path, f.key)
        if entry is None:
            if f.required:
                self.report.error(key, "required option is missing", _mark(mapping))
                return INVALID
            return getattr(base, f.name) if base is not None else f.default
        if f.option.nullable and _is_null(entry):
            return None
        value = self.value(f.option.kind, entry, key)
        if isinstance(f.option.kind, Section) and f.option.kind.provides_defaults and value is not INVALID:
            self.defaults[f.option.kind.cls] = value
        return value

    def _entries(self, node: MappingNode, path: str, fields: list[Field]) -> dict[str, Node]:
        """Key -> value node, reporting unknown and duplicate keys.

        Records where each value is, for messages: a scalar or flow value at the
        value itself, a block mapping or list at its key (its first item is
        already on the next line).
        """
        known = [f.key for f in fields]
        renamed = {old: f.key for f in fields for old in f.option.former}
        entries: dict[str, Node] = {}
        for written, key_node, value in self._pairs(node, path):
            key = renamed.get(written, written)
            if key in entries:
                # _pairs dropped repeated keys: this is a renamed option written
                # under both its names.
                self.report.error(child(path, written), f"set twice, as {key} and by its former name; keep only {key}",
                                  _mark(key_node))
                continue
            if key != written:
                self.report.warning(child(path, written), f"renamed to {key}; write {key} instead", _mark(key_node))
            if key in known:
                entries[key] = value
                block = isinstance(value, (MappingNode, SequenceNode)) and not value.flow_style
                self.report.marks[child(path, key)] = _mark(key_node if block else value)
        self._unknown(node, path, known, former=tuple(renamed))
        return entries

    def _unknown(self, node: MappingNode, path: str, known: list[str], former: tuple[str, ...]) -> None:
        """Report each key of C{node} that is not an option of its section (nor the
        former name of one; suggestions name only current keys)."""
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.value in known or key_node.value in former:
                continue
            if key_node.tag == _MERGE:
                self.report.error(path, "YAML merge keys (<<) are not supported; write the options out", _mark(key_node))
                continue
            hint = did_you_mean(key_node.value, known) or "; expected one of: " + ", ".join(known)
            self.report.error(child(path, key_node.value), f"unknown option{hint}", _mark(key_node))

    def _pairs(self, node: MappingNode, path: str) -> list[tuple[str, Node, Node]]:
        """The (key text, key node, value node) triples of C{node}; a key that is
        not a scalar or appears twice is reported and left out."""
        seen: dict[str, int] = {}
        pairs: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.report.error(path, f"expected a name as key, got {_shape(key_node).words}", _mark(key_node))
                continue
            key = key_node.value
            if key in seen:
                self.report.error(child(path, key), f"duplicate key (first at line {seen[key]})", _mark(key_node))
                continue
            seen[key] = key_node.start_mark.line + 1
            pairs.append((key, key_node, value_node))
        return pairs

    # -- values --------------------------------------------------------------

    def value(self, kind: Kind, node: Node, path: str) -> Any:
        """Convert C{node} by C{kind}; INVALID (after reporting) when it does not fit."""
        self.report.marks.setdefault(path, _mark(node))
        if isinstance(kind, Section):
            return self._section_value(kind, node, path)
        if isinstance(kind, ListOf):
            return self._list(kind, node, path)
        if isinstance(kind, MapOf):
            return self._map(kind, node, path)
        return self._scalar(kind, node, path)

    def _section_value(self, kind: Section, node: Node, path: str) -> Any:
        if kind.switch and isinstance(node, ScalarNode):
            return self._scalar(kind, node, path)
        if not isinstance(node, MappingNode):
            self._expected(path, node, "expected a mapping")
            return INVALID
        base = self.defaults.get(kind.cls) if kind.inherits else None
        return self.section(kind.cls, node, path, base=base)

    def _list(self, kind: ListOf, node: Node, path: str) -> Any:
        if not isinstance(node, SequenceNode):
            self._expected(path, node, "expected a list (one '- ' line per item)")
            return INVALID
        if not kind.low <= len(node.value) <= kind.high:
            self.report.error(path, f"expected {kind.low} to {kind.high} items, got {len(node.value)}")
            return INVALID
        items = [self.value(kind.item, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if kind.unique:
            self._unique(items, node, path)
        return tuple(item for item in items if item is not INVALID)

    def _unique(self, items: list, node: SequenceNode, path: str) -> None:
        seen: set = set()
        for index, item in enumerate(items):
            if item is not INVALID and item in seen:
                self.report.error(f"{path}[{index}]", f"'{item}' is listed twice", _mark(node.value[index]))
            seen.add(item)

    def _map(self, kind: MapOf, node: Node, path: str) -> Any:
        if not isinstance(node, MappingNode):
            self._expected(path, node, "expected a mapping of names")
            return INVALID
        pairs = self._pairs(node, path)
        self.declared[path] = tuple(name for name, _, _ in pairs)
        if not kind.low <= len(pairs) <= kind.high:
            self.report.error(path, f"expected {kind.low} to {kind.high} entries, got {len(pairs)}")
            return INVALID
        result: dict[str, Any] = {}
        for name, key_node, value_node in pairs:
            key = child(path, name)
            try:
                kind.key.convert(name, self.context)
            except OptionError as error:
                self.report.error(key, f"{error.message}, got '{name}'", _mark(key_node))
                continue
            if not isinstance(value_node, MappingNode):
                self._expected(key, value_node, "expected a mapping")
                continue
            self.report.marks.setdefault(key, _mark(key_node))
            item = self.section(kind.item.cls, value_node, key, extra={"name": name})
            if item is not INVALID:
                result[name] = item
        return result

    def _scalar(self, kind: Kind, node: Node, path: str) -> Any:
        raw = self._python(node, path)
        if raw is INVALID:
            return INVALID
        try:
            return kind.convert(raw, self.context)
        except OptionError as error:
            if error.show_got:
                self.report.error(path, f"{error.message}, {_got(raw, node)}{error.hint}", _mark(node))
            else:
                self.report.error(path, error.message, _mark(node))
            return INVALID

    def _python(self, node: Node, path: str) -> Any:
        """The Python value of a scalar node after ``${NAME}`` substitution; a
        L{_Shape} for a mapping or list."""
        if not isinstance(node, ScalarNode):
            return _shape(node)
        if node.tag == _STR and "${" in node.value:
            text = self._substitute(node.value, node, path)
            if text is INVALID:
                return INVALID
            if node.style is None:  # plain scalar: resolve its type as YAML would
                tag = self.constructor.resolve(ScalarNode, text, (True, False))
                node = ScalarNode(tag, text, node.start_mark, node.end_mark)
            else:
                return text
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as error:
            self.report.error(path, f"cannot read this value: {getattr(error, 'problem', None) or error}", _mark(node))
            return INVALID

    def _substitute(self, text: str, node: Node, path: str) -> Any:
        """C{text} with each ``${NAME}`` replaced by the environment variable NAME."""
        missing: list[str] = []

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if _ENV_NAME.fullmatch(name) is None:
                missing.append(f"'${{{name}}}' is not a valid environment variable reference")
                return ""
            if name not in self.env:
                missing.append(f"environment variable {name} is not set")
                return ""
            return self.env[name]

        result = _ENV.sub(replace, text)
        if missing:
            for message in missing:
                self.report.error(path, message, _mark(node))
            return INVALID
        return result

    def _expected(self, path: str, node: Node, expected: str) -> None:
        words = "nothing" if _is_null(node) else _shape(node).words
        self.report.error(path, f"{expected}, got {words}")


def _defaults_first(f: Field) -> int:
    """Sections that provide defaults to others are converted before the rest."""
    kind = f.option.kind
    return 0 if isinstance(kind, Section) and kind.provides_defaults else 1


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _got(raw: Any, node: Node) -> str:
    """``got 'http'`` as the operator wrote it."""
    if isinstance(raw, _Shape):
        return f"got {raw.words}"
    if raw is None:
        return "got nothing"
    if isinstance(raw, str):
        return f"got '{raw}'"
    return f"got {node.value}"
