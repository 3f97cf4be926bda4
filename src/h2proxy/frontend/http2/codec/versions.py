"""The versions of the HTTP/2 libraries the codec is tested on, checked when it is
imported: the codec overrides private hooks of these libraries (see L{internals}),
so a release outside these ranges may change what it relies on without an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Callable

from h2proxy.errors import H2ProxyError


@dataclass(frozen=True)
class VersionRange:
    """Release versions from C{low} (included) to C{high} (excluded)."""

    low: tuple[int, ...]
    high: tuple[int, ...]

    def __contains__(self, version: str) -> bool:
        return self.low <= release(version) < self.high

    def __str__(self) -> str:
        return f">={'.'.join(map(str, self.low))},<{'.'.join(map(str, self.high))}"


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: C{"4.4.1"} -> C{(4, 4, 1)};
    a pre-release or local suffix (C{"4.5.0rc1"}) is ignored."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


#: Distribution name -> the versions the codec is tested on.
SUPPORTED: dict[str, VersionRange] = {
    "h2": VersionRange((4, 4, 1), (4, 5)),
    "hpack": VersionRange((4, 2), (4, 3)),
    "hyperframe": VersionRange((6, 1), (6, 2)),
    "priority": VersionRange((2, 0), (2, 1)),
}


class UnsupportedDependencyVersion(H2ProxyError):
    """An HTTP/2 library is installed in a version the codec is not tested on."""


def requireSupported(version: Callable[[str], str] | None = None) -> None:
    """Raise L{UnsupportedDependencyVersion} for the first library whose installed
    version (as C{version(name)} reports it; by default the installed metadata) is
    outside its supported range, or which is not installed at all."""
    version = version or metadata.version
    for name, supported in SUPPORTED.items():
        try:
            installed = version(name)
        except metadata.PackageNotFoundError:
            raise UnsupportedDependencyVersion(
                f"{name} is not installed; h2proxy's HTTP/2 codec needs {name}{supported}"
            ) from None
        if installed not in supported:
            raise UnsupportedDependencyVersion(
                f"{name} {installed} is installed, but h2proxy's HTTP/2 codec is tested on {name}{supported} "
                f"only: install a version in that range (pip install '{name}{supported}')"
            )
