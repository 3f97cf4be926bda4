"""The dependency direction, enforced by walking every module's imports.

The rules are not written here: they are the ``layers`` block at the end of
docs/architecture.md, so the map a reader sees and the check that runs are the same
text. Each line is ``MODULES [except MODULES] -/-> MODULES``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "src"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: Fewer modules than this means the walk lost its way (a moved src/), not a clean tree.
MIN_MODULES = 60

@dataclass(frozen=True)
class Rule:
    """Modules under C{sources}, except those under C{exempt}, may not import anything
    under C{banned}.

    @ivar text: the rule as written, for messages.
    """

    sources: tuple[str, ...]
    exempt: tuple[str, ...]
    banned: tuple[str, ...]
    text: str

    def governs(self, module: str) -> bool:
        return under(module, self.sources) and not under(module, self.exempt)

    def forbids(self, name: str) -> bool:
        return under(name, self.banned)


@dataclass(frozen=True)
class Import:
    """One imported name, where it is imported."""

    module: str
    name: str
    path: Path
    line: int


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether the dotted C{name} is one of C{prefixes} or inside one of them."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_rules(markdown: str) -> list[Rule]:
    """The rules of the ``layers`` fenced block of C{markdown} (comments and blank
    lines skipped); a line that is not a rule is an error naming it."""
    blocks = re.findall(r"^```layers\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    if len(blocks) != 1:
        raise ValueError(f"expected one ```layers block, found {len(blocks)}")
    rules = []
    for line in blocks[0].splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        left, arrow, right = line.partition("-/->")
        sources, _, exempt = left.partition(" except ")
        rule = Rule(_names(sources), _names(exempt), _names(right), line)
        if not arrow or not rule.sources or not rule.banned:
            raise ValueError(f"not a layers rule (MODULES [except MODULES] -/-> MODULES): {line!r}")
        rules.append(rule)
    return rules


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCES).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(path: Path, module: str) -> list[Import]:
    """Every name C{path} imports, anywhere in it (functions and TYPE_CHECKING blocks
    too), relative imports made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, path, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            found.append(Import(module, name, path, node.lineno))
    return found


def all_imports() -> tuple[set[str], list[Import]]:
    modules: set[str] = set()
    found: list[Import] = []
    for path in sorted(SOURCES.rglob("*.py")):
        module = module_name(path)
        modules.add(module)
        found += imports_in(path, module)
    return modules, found


def violations(rules: list[Rule], found: list[Import]) -> list[tuple[Import, Rule]]:
    return [(edge, rule) for edge in found for rule in rules if rule.governs(edge.module) and rule.forbids(edge.name)]


def describe(edge: Import, rule: Rule) -> str:
    return f"{edge.path.relative_to(ROOT)}:{edge.line}: {edge.module} imports {edge.name} (rule: {rule.text})"


RULES = parse_rules(ARCHITECTURE.read_text())
MODULES, IMPORTS = all_imports()


def test_the_walk_sees_the_whole_source_tree():
    """When the walk finds fewer modules than the tree has, this fails rather than pass on nothing."""
    assert len(MODULES) >= MIN_MODULES, sorted(MODULES)


def test_every_rule_governs_an_existing_module():
    """When a rule names modules that no longer exist (a rename the doc missed), this fails naming it."""
    idle = [rule.text for rule in RULES if not any(rule.governs(module) for module in MODULES)]
    assert idle == []


def test_no_module_imports_across_a_forbidden_edge():
    """When any module imports across a rule of docs/architecture.md, this fails naming file:line and the rule."""
    broken = [describe(edge, rule) for edge, rule in violations(RULES, IMPORTS)]
    assert broken == []


def test_a_violation_is_reported_with_its_file_and_line(tmp_path):
    """When a module imports across a rule (relative imports, imports in functions included), the report names file:line."""
    rules = parse_rules("```layers\nh2proxy.frontend -/-> h2proxy.upstream\nh2proxy except h2proxy.codec -/-> h2\n```\n")
    path = tmp_path / "sample.py"
    path.write_text("import os\n\ndef late():\n    from ...upstream.pool import UpstreamPool\n    import h2.errors\n")
    found = imports_in(path, "h2proxy.frontend.http2.sample")
    assert [(edge.name, edge.line, rule.text) for edge, rule in violations(rules, found)] == [
        ("h2proxy.upstream.pool", 4, "h2proxy.frontend -/-> h2proxy.upstream"),
        ("h2.errors", 5, "h2proxy except h2proxy.codec -/-> h2"),
    ]
    exempt = tmp_path / "codec.py"
    exempt.write_text("import h2.errors\n")
    assert violations(rules, imports_in(exempt, "h2proxy.codec.sample")) == []


@pytest.mark.parametrize("name, prefix, expected", [("h2", "h2", True), ("h2.errors", "h2", True), ("h2proxy", "h2", False), ("h2proxy_tools.x", "h2proxy", False)])
def test_prefixes_match_on_dotted_boundaries(name, prefix, expected):
    """When a name merely starts with the same letters as a prefix (h2proxy, h2), it is not under it."""
    assert under(name, (prefix,)) is expected


def test_a_line_that_is_not_a_rule_is_refused():
    """When the block holds a line without -/->, parsing fails naming the line."""
    with pytest.raises(ValueError, match="h2proxy.config twisted"):
        parse_rules("```layers\nh2proxy.config twisted\n```\n")
