"""The declared dependencies match the code.

pyproject.toml is the only place an installer learns what h2proxy needs, so
it must name every distribution that src/ imports, bound each one on both
sides (a new major release of Twisted or h2 has broken the proxy before it was
tested), and agree with constraints/lowest.txt, which scripts/test-lowest uses
to prove the lower bounds. These checks read the files themselves rather than
the installed h2proxy metadata, which may come from another checkout.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src"
LOWEST_CONSTRAINTS = ROOT / "constraints" / "lowest.txt"
PROJECT = canonicalize_name("h2proxy")
FIRST_PARTY = frozenset({"h2proxy", "h2proxy_tools"})


def _project_table() -> dict:
    """The [project] table of pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]


def runtime_requirements() -> list[Requirement]:
    """What installing h2proxy pulls in."""
    return [Requirement(line) for line in _project_table()["dependencies"]]


def extra_requirements_for_tests() -> list[Requirement]:
    """What the test extra adds."""
    return [Requirement(line) for line in _project_table()["optional-dependencies"]["test"]]


def lower_bound(requirement: Requirement) -> Version | None:
    """The version after C{>=}, if the requirement has one."""
    found = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return found[0] if len(found) == 1 else None


def has_upper_bound(requirement: Requirement) -> bool:
    """Whether some newer release is excluded."""
    return any(s.operator in ("<", "<=") for s in requirement.specifier)


def imported_top_level_modules(root: Path) -> dict[str, list[Path]]:
    """Each absolutely imported top-level module under C{root}, with the files importing it.

    Relative imports and the standard library are left out: they need no
    distribution.
    """
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(path.relative_to(ROOT))
    return found


def lowest_pins(path: Path) -> dict[NormalizedName, Version]:
    """The C{name==version} lines of a constraints file, by canonical name."""
    pins: dict[NormalizedName, Version] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", (
            f"{path.name}:{number}: {line!r} must pin one exact version (name==version)"
        )
        pins[canonicalize_name(requirement.name)] = Version(specs[0].version)
    return pins


def test_every_third_party_module_imported_under_src_is_a_declared_runtime_dependency() -> None:
    declared = {canonicalize_name(r.name) for r in runtime_requirements()}
    distributions = metadata.packages_distributions()
    problems = []
    for module, files in sorted(imported_top_level_modules(SOURCE).items()):
        if module in FIRST_PARTY:
            continue
        providers = {canonicalize_name(d) for d in distributions.get(module, [])} - {PROJECT}
        if not providers:
            problems.append(f"{module!r} (imported by {files[0]}) comes from no installed distribution")
        elif not providers & declared:
            problems.append(
                f"{module!r} (imported by {files[0]}) comes from {sorted(providers)}, which "
                "pyproject.toml does not declare: add it to [project] dependencies with both "
                "bounds and pin its lower bound in constraints/lowest.txt"
            )
    assert not problems, "\n".join(problems)


def test_the_import_scan_sees_the_libraries_the_proxy_is_built_on() -> None:
    """Guards the check above against a scan that silently finds nothing."""
    modules = imported_top_level_modules(SOURCE)
    assert {"twisted", "h2", "OpenSSL"} <= modules.keys()
    assert not {"os", "__future__"} & modules.keys()


def test_every_runtime_dependency_has_a_lower_and_an_upper_bound() -> None:
    unbounded = [
        str(r) for r in runtime_requirements() if lower_bound(r) is None or not has_upper_bound(r)
    ]
    assert not unbounded, f"runtime dependencies need one '>=' and one '<' bound: {unbounded}"


def test_every_test_dependency_has_an_upper_bound() -> None:
    uncapped = [str(r) for r in extra_requirements_for_tests() if not has_upper_bound(r)]
    assert not uncapped, f"test dependencies need a '<' bound above the newest release tested: {uncapped}"


def test_the_lowest_constraints_pin_exactly_each_declared_lower_bound() -> None:
    declared = {canonicalize_name(r.name): lower_bound(r) for r in runtime_requirements()}
    pins = lowest_pins(LOWEST_CONSTRAINTS)
    assert pins.keys() == declared.keys(), (
        f"constraints/lowest.txt must pin the runtime dependencies and nothing else: "
        f"unpinned {sorted(declared.keys() - pins.keys())}, undeclared {sorted(pins.keys() - declared.keys())}"
    )
    differing = {name: (str(pins[name]), str(low)) for name, low in declared.items() if pins[name] != low}
    assert not differing, f"pinned version differs from the declared lower bound (pin, bound): {differing}"


def test_the_installed_versions_satisfy_the_declared_ranges() -> None:
    problems = []
    for requirement in runtime_requirements() + extra_requirements_for_tests():
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement.name} is not installed (wanted {requirement.specifier})")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement.name} {installed} is outside {requirement.specifier}")
    assert not problems, "\n".join(problems) + "\nreinstall with: pip install -e '.[test]' (scripts/test does this)"


def test_the_codec_checks_the_same_ranges_pyproject_declares() -> None:
    """The codec's import-time check and the installer must agree: a range wider in
    pyproject would install a release the codec then refuses to import with, a
    narrower one would leave the check guarding nothing."""
    from h2proxy.frontend.http2.codec.versions import SUPPORTED

    declared = {canonicalize_name(r.name): r.specifier for r in runtime_requirements()}
    for name, supported in SUPPORTED.items():
        assert declared[canonicalize_name(name)] == type(declared[canonicalize_name(name)])(str(supported)), name
