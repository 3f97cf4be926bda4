"""Finds where h2proxy's source uses a private name of something it depends on.

A private name is one with a single leading underscore (C{_name}, not C{__dunder__}
nor an enum-style C{_sunder_}). A use of one belongs to a dependency, not to
h2proxy, when it is:

- imported: C{from package._module import x}, C{from package import _name};
- read, written or deleted as an attribute (C{thing._name}, or C{getattr(thing,
  "_name")} and its siblings) on anything but
  C{self}/C{cls}, where no h2proxy module defines C{_name} (as a function, class,
  module or class-level assignment, or C{self._name = ...} in a class of its own);
- read or written as C{self._name}/C{cls._name}, or defined as a method C{_name},
  in a class that inherits C{_name} from a class outside h2proxy (an override of,
  or a reach into, the base class's private state); or read as C{self._name} in a
  class where no h2proxy module defines it (a mixin reaching into the class it is
  mixed into). Whether a base class has the
  name is decided from its attributes and its source text, so instance attributes
  that the base's C{__init__} sets are found too.

The scan cannot follow values through variables: C{x = obj; x._name} is found
if no h2proxy module defines C{_name}, or if C{x} is a parameter annotated with a
class outside h2proxy that has C{_name}. That is the trade for having no type
checker in the loop; the fence (one module per dependency) keeps such code rare.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

SRC = Path(__file__).resolve().parents[1] / "src"
OWN_PACKAGES = ("h2proxy", "h2proxy_tools")
SELF_NAMES = {"self", "cls"}


@dataclass(frozen=True, order=True)
class Use:
    """One private name used by one module of h2proxy."""

    name: str
    module: str


def isPrivate(name: str) -> bool:
    """C{_name}, but not C{__dunder__} and not C{_sunder_} (enum's public API)."""
    return name.startswith("_") and not name.startswith("__") and not (name.endswith("_") and len(name) > 2)


def sourceModules() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every module under src/; a package's
    ``__main__`` runs a program when imported, so it is left out (it may only
    call into its package)."""
    for package in OWN_PACKAGES:
        for path in sorted((SRC / package).rglob("*.py")):
            parts = path.relative_to(SRC).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _isOwn(cls: type) -> bool:
    return cls.__module__.split(".")[0] in OWN_PACKAGES


@lru_cache(maxsize=None)
def _sourceText(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def inheritedFromDependency(cls: type, name: str, *, including: bool = False) -> bool:
    """Whether a class outside h2proxy in C{cls}'s MRO (from its first base, or
    from C{cls} itself if C{including}) has C{name}: as an attribute, or in its
    source (an instance attribute its methods set)."""
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for base in cls.__mro__[0 if including else 1 :]:
        if base is object or _isOwn(base):
            continue
        if name in vars(base) or pattern.search(_sourceText(base)):
            return True
    return False


def _ownDefinitions(tree: ast.Module) -> set[str]:
    """Private names the module defines itself (see the module docstring)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names.add(leaf.id)
                    elif isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == "self":
                        names.add(leaf.attr)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
            names |= {leaf.value for leaf in ast.walk(node.value) if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str)}
    return {name for name in names if isPrivate(name)}


@lru_cache(maxsize=1)
def _parsed() -> dict[str, ast.Module]:
    return {module: ast.parse(path.read_text(), str(path)) for module, path in sourceModules()}


@lru_cache(maxsize=1)
def ownNames() -> frozenset[str]:
    """Every private name some h2proxy module defines."""
    names: set[str] = set()
    for tree in _parsed().values():
        names |= _ownDefinitions(tree)
    return frozenset(names)


class _ModuleScan(ast.NodeVisitor):
    """The uses in one module; classes are looked up on the imported module."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.imported = importlib.import_module(module)
        self.classes: list[type | None] = []
        self.parameters: list[dict[str, type]] = []
        self.uses: set[Use] = set()

    def _found(self, name: str) -> None:
        self.uses.add(Use(name, self.module))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module and node.module.split(".")[0] not in OWN_PACKAGES:
            for part in node.module.split("."):
                if isPrivate(part):
                    self._found(part)
            for alias in node.names:
                if isPrivate(alias.name):
                    self._found(alias.name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] not in OWN_PACKAGES:
                for part in alias.name.split("."):
                    if isPrivate(part):
                        self._found(part)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        owner = self.classes[-1] if self.classes else self.imported
        cls = getattr(owner, node.name, None)
        self.classes.append(cls if isinstance(cls, type) else None)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and isPrivate(item.name):
                if isinstance(cls, type) and inheritedFromDependency(cls, item.name):
                    self._found(item.name)
        self.generic_visit(node)
        self.classes.pop()

    def _visitFunction(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """Note the parameters annotated with a class outside h2proxy: an attribute
        of one of them is the dependency's even where h2proxy has a name like it."""
        owner = self.classes[-1] if self.classes else (self.imported if len(self.parameters) == 0 else None)
        function = inspect.unwrap(getattr(owner, node.name, None)) if owner is not None else None
        try:
            hints = typing.get_type_hints(function) if callable(function) else {}
        except Exception:  # an annotation that does not evaluate at run time
            hints = {}
        self.parameters.append(
            {name: hint for name, hint in hints.items() if isinstance(hint, type) and not _isOwn(hint)}
        )
        self.generic_visit(node)
        self.parameters.pop()

    visit_FunctionDef = _visitFunction
    visit_AsyncFunctionDef = _visitFunction

    def visit_Call(self, node: ast.Call) -> None:
        """C{getattr(thing, "_name")} and its siblings: a use as an attribute would be."""
        if isinstance(node.func, ast.Name) and node.func.id in {"getattr", "hasattr", "setattr", "delattr"}:
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                name = node.args[1].value
                if isPrivate(name) and name not in ownNames():
                    self._found(name)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if isPrivate(name):
            cls = self.classes[-1] if self.classes else None
            if cls is not None and isinstance(node.value, ast.Name) and node.value.id in SELF_NAMES:
                if inheritedFromDependency(cls, name) or name not in ownNames():
                    self._found(name)  # a base's private state, or a mixin's partner's
            elif name not in ownNames():
                self._found(name)
            elif isinstance(node.value, ast.Name) and self.parameters:
                annotated = self.parameters[-1].get(node.value.id)
                if annotated is not None and inheritedFromDependency(annotated, name, including=True):
                    self._found(name)
        self.generic_visit(node)


def scan() -> set[Use]:
    """Every use of a dependency's private name in src/."""
    uses: set[Use] = set()
    for module, tree in _parsed().items():
        visitor = _ModuleScan(module)
        visitor.visit(tree)
        uses |= visitor.uses
    return uses


if __name__ == "__main__":
    for use in sorted(scan(), key=lambda u: (u.module, u.name)):
        print(f"{use.module}: {use.name}")
