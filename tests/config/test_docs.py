"""docs/configuration.md and the schema cannot drift (acceptance 2)."""

from __future__ import annotations

import re
from pathlib import Path

from h2proxy.config.docs import render
from h2proxy.config.model import Config
from h2proxy.config.spec import ListOf, MapOf, Section, options_of

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def schema_options(cls: type = Config, path: str = "") -> dict[str, str]:
    """Every option's key path -> its default as an operator writes it (``required`` if none)."""
    found: dict[str, str] = {}
    for f in options_of(cls):
        key = f"{path}.{f.key}" if path else f.key
        kind = f.option.kind
        inner = kind.item if isinstance(kind, (ListOf, MapOf)) else kind
        if f.required:
            found[key] = "required"
        elif f.default is None:
            found[key] = "null" if f.option.nullable else "omitted"
        elif isinstance(inner, Section):
            found[key] = "see its options"
        else:
            found[key] = kind.format(f.default)
        if isinstance(inner, Section) and not inner.inherits:
            suffix = "[]" if isinstance(kind, ListOf) else ".<name>" if isinstance(kind, MapOf) else ""
            found.update(schema_options(inner.cls, key + suffix))
    return found


def documented_options(text: str) -> dict[str, str]:
    """Option key path -> default cell, from the reference tables' rows."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in _UNESCAPED_PIPE.split(line)[1:-1]]
        key, default = cells[0].strip("`"), cells[2].strip("`")
        assert key not in rows, f"{key} documented twice"
        rows[key] = default
    return rows


def test_committed_reference_is_the_rendering_of_the_schema():
    """When the schema changes without regenerating docs/configuration.md, this fails (run python -m h2proxy.config.docs)."""
    assert DOCS.read_text(encoding="utf-8") == render()


def test_every_schema_option_is_documented_with_its_default():
    """When an option of the schema is missing from the reference or shows another default, this fails."""
    documented = documented_options(DOCS.read_text(encoding="utf-8"))
    missing = {k: v for k, v in schema_options().items() if documented.get(k) != v}
    assert missing == {}


def test_every_documented_option_exists_in_the_schema():
    """When the reference lists an option the schema does not have, this fails."""
    schema = schema_options()
    extra = [k for k in documented_options(DOCS.read_text(encoding="utf-8")) if k not in schema]
    assert extra == []


def test_the_row_parser_sees_every_row():
    """When the reference is parsed, it yields as many options as the schema has (the parser is not vacuous)."""
    assert len(documented_options(render())) == len(schema_options()) > 70


def test_the_command_line_checks_and_rewrites_the_reference(tmp_path):
    """When `python -m h2proxy.config.docs --check` sees a stale file it exits 1; rewriting makes it pass."""
    from h2proxy.config.docs import main

    target = tmp_path / "configuration.md"
    target.write_text("stale\n")
    assert main(["--check", str(target)]) == 1
    assert main([str(target)]) == 0
    assert main(["--check", str(target)]) == 0
