"""Collects every problem found in one configuration file, with its place.

The loader never stops at the first problem: each check adds to a L{Report}, and
the whole report is raised at the end as one L{ConfigError}, so an operator fixes a
file in one pass instead of one error per ``--check``.
"""

from __future__ import annotations

from h2proxy.errors import ConfigError, ConfigProblem

#: Problems shown at most; a file with more is probably not a config file at all.
MAX_PROBLEMS = 100

Mark = tuple[int, int]  # (line, column), both 1-based


class Report:
    """The problems of one file, and where each key path was found in it.

    @ivar marks: key path (``listeners[0].port``) -> where its value starts.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[ConfigProblem] = []
        self.marks: dict[str, Mark] = {}

    def error(self, key: str, message: str, mark: Mark | None = None) -> None:
        self._add(key, message, mark, warning=False)

    def warning(self, key: str, message: str, mark: Mark | None = None) -> None:
        self._add(key, message, mark, warning=True)

    def written(self, key: str) -> bool:
        """Whether the file sets C{key} itself (a check that must tell an option
        written out from one left at its default)."""
        return key in self.marks

    @property
    def error_count(self) -> int:
        return sum(1 for p in self.problems if not p.warning)

    def where(self, key: str) -> Mark | None:
        """The mark of C{key}, else of its nearest ancestor found in the file (an
        option left at its default has no place of its own)."""
        while key:
            if key in self.marks:
                return self.marks[key]
            key = _parent(key)
        return None

    def sorted(self) -> list[ConfigProblem]:
        """Problems in file order (file-level ones first), capped at L{MAX_PROBLEMS}."""
        ordered = sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0))
        if len(ordered) <= MAX_PROBLEMS:
            return ordered
        hidden = len(ordered) - MAX_PROBLEMS
        more = ConfigProblem(self.source, None, None, "", f"{hidden} more problems not shown")
        return ordered[:MAX_PROBLEMS] + [more]

    def raise_if_errors(self) -> None:
        if self.error_count:
            raise ConfigError(self.sorted())

    def warnings(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.sorted() if p.warning)

    def _add(self, key: str, message: str, mark: Mark | None, warning: bool) -> None:
        line, column = mark if mark is not None else (self.where(key) or (None, None))
        self.problems.append(ConfigProblem(self.source, line, column, key, message, warning))


def _parent(key: str) -> str:
    """``a.b[2].c`` -> ``a.b[2]`` -> ``a.b`` -> ``a`` -> ````."""
    cut = max(key.rfind("."), key.rfind("["))
    return key[:cut] if cut > 0 else ""


def child(path: str, key: str) -> str:
    """The key path of C{key} inside C{path}."""
    return f"{path}.{key}" if path else key
