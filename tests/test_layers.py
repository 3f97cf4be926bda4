"""The dependency direction of DESIGN.md, enforced by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "h2proxy"

#: module prefix -> import prefixes it must never use.
FORBIDDEN = {
    "h2proxy.config": ("twisted", "h2", "priority", "h2proxy.frontend", "h2proxy.upstream",
                       "h2proxy.bridge", "h2proxy.worker.server", "h2proxy.supervisor.tap"),
    "h2proxy.message": ("twisted", "h2", "h2proxy."),
    "h2proxy.frontend": ("h2proxy.upstream", "h2proxy.bridge", "h2proxy.worker.server"),
    "h2proxy.upstream": ("h2", "priority", "h2proxy.frontend", "h2proxy.bridge", "h2proxy.worker.server"),
    "h2proxy.bridge": ("h2proxy.worker.server", "h2proxy.supervisor.tap", "h2proxy.supervisor.service"),
    "h2proxy.supervisor.service": ("h2proxy.frontend", "h2proxy.upstream", "h2proxy.bridge", "h2", "priority"),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_across_a_forbidden_edge():
    """When any module imports across a layer boundary of DESIGN.md, this fails naming it."""
    violations = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        for owner, banned in FORBIDDEN.items():
            if module != owner and not module.startswith(owner + "."):
                continue
            for name in imports_of(path):
                for prefix in banned:
                    bare = prefix.rstrip(".")
                    if name == bare or name.startswith(bare + ".") or (prefix.endswith(".") and name.startswith(prefix)):
                        violations.append(f"{module} imports {name}")
    assert violations == []


def test_the_checker_sees_a_violation(tmp_path):
    """When a source file does import a banned module, imports_of reports it."""
    sample = tmp_path / "sample.py"
    sample.write_text("from h2proxy.upstream.pool import UpstreamPool\nimport twisted.internet\n")
    assert imports_of(sample) == {"h2proxy.upstream.pool", "twisted.internet"}
