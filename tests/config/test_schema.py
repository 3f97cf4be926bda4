"""The schema itself: every option documented, every default inside its own bounds."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from h2proxy.config.docs import tables
from h2proxy.config.model import Config
from h2proxy.config.spec import Context, ListOf, MapOf, Section, options_of


def sections(cls: type = Config, seen: set | None = None) -> list[type]:
    """Every section class reachable from C{cls}."""
    seen = seen if seen is not None else set()
    if cls in seen:
        return []
    seen.add(cls)
    found = [cls]
    for f in options_of(cls):
        kind = f.option.kind
        inner = kind.item if isinstance(kind, (ListOf, MapOf)) else kind
        if isinstance(inner, Section):
            found += sections(inner.cls, seen)
    return found


SECTIONS = sections()
SCALARS = [
    (cls.__name__, f)
    for cls in SECTIONS
    for f in options_of(cls)
    if not isinstance(f.option.kind, (Section, ListOf, MapOf)) and not f.required and f.default is not None
]


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_sections_are_frozen_dataclasses_with_a_docstring(cls):
    """When a section class is part of the schema, it is a frozen dataclass whose docstring describes it."""
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert cls.__doc__ and cls.__doc__.strip()


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_every_option_has_a_one_line_description(cls):
    """When an option is declared, its description is one sentence on one line."""
    for f in options_of(cls):
        assert "\n" not in f.option.doc and f.option.doc.endswith("."), f"{cls.__name__}.{f.name}"


@pytest.mark.parametrize("owner, f", SCALARS, ids=lambda v: v if isinstance(v, str) else v.name)
def test_every_default_is_valid_as_documented(owner, f):
    """When a default is written as the reference prints it, its own kind reads it back unchanged."""
    written = yaml.safe_load(f"value: {f.option.kind.format(f.default)}")["value"]
    assert f.option.kind.convert(written, Context("/")) == f.default


def test_nullable_options_default_to_null_and_required_ones_are_not_nullable():
    """When an option is nullable its default is None, and no required option is nullable."""
    for cls in SECTIONS:
        for f in options_of(cls):
            if f.option.nullable:
                assert f.default is None, f.name
            if f.required:
                assert not f.option.nullable, f.name


def test_option_keys_are_unique_within_each_section():
    """When two fields of a section would share a YAML key, this fails."""
    for cls in SECTIONS:
        keys = [f.key for f in options_of(cls)]
        assert len(keys) == len(set(keys)), cls.__name__


def test_the_reference_covers_every_section():
    """When the schema gains a section, the reference renders a table for it."""
    documented = {t.path for t in tables()}
    assert "listeners[].tls.certificates[]" in documented
    assert "upstreams.<name>.servers[]" in documented
    assert len(documented) == len(SECTIONS)  # each once: a listener's http2 shares the http2 table
