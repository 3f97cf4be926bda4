"""docs/security.md and the tests it names cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?[^`]*`|`::(\w+)[^`]*`")


def named_tests() -> list[tuple[str, str | None]]:
    """(file, test) pairs named in the document; ``::name`` refers to the file last named."""
    found: list[tuple[str, str | None]] = []
    current = None
    for match in _REFERENCE.finditer(DOC.read_text(encoding="utf-8")):
        if match.group(1):
            current = match.group(1)
            found.append((current, match.group(2)))
        else:
            found.append((current, match.group(3)))
    return found


def test_every_test_the_security_doc_names_exists():
    """When docs/security.md names a test file or test function that does not exist, this fails naming it."""
    missing = []
    for file, name in named_tests():
        path = ROOT / file
        if not path.exists():
            missing.append(file)
            continue
        if name is None:
            continue
        functions = {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
        if name not in functions:
            missing.append(f"{file}::{name}")
    assert missing == []


def test_the_doc_names_a_test_for_every_audit_attack():
    """When an attack of h2proxy_tools.audit has no e2e test named in docs/security.md, this fails."""
    from h2proxy_tools.audit import ATTACKS

    text = DOC.read_text(encoding="utf-8")
    for attack in ATTACKS:
        if attack.name.startswith("slow-") or attack.name in ("smuggling", "window-no-read", "rapid-reset", "ping-flood"):
            continue
        assert f"[{attack.name}]" in text, attack.name
