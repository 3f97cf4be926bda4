"""Traversal fuzz: request paths built from dangerous segments, raw and encoded,
never reach a file outside the root (or outside the symlink targets allowed with
follow_symlinks), and never the secret next to the root."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h2proxy.static import paths

SEGMENTS = ["..", ".", "%2e%2e", "%2E.", ".%2e", "%2f", "%2F", "%00", "\\", "%5c", "a", "secret", "link-out",
            "link-in", "//", "/", "%252e%252e", "a.txt", "%2e", "..%2f", "%c0%ae%c0%ae", "sub"]



@dataclass(frozen=True)
class Tree:
    """A root with files and two links (one out, one in), and secrets outside it."""

    top: str

    @property
    def root(self) -> str:
        return os.path.join(self.top, "root")

    def real(self, *parts: str) -> bytes:
        return os.path.realpath(os.path.join(self.top, *parts)).encode()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    made = Tree(str(tmp_path_factory.mktemp("traversal")))
    os.makedirs(os.path.join(made.root, "a", "sub"))
    os.makedirs(os.path.join(made.top, "outside"))
    for name in ("a.txt", os.path.join("a", "a.txt"), os.path.join("a", "sub", "a.txt")):
        with open(os.path.join(made.root, name), "wb") as f:
            f.write(b"public")
    for secret in (os.path.join(made.top, "secret"), os.path.join(made.top, "outside", "secret")):
        with open(secret, "wb") as f:
            f.write(b"SECRET")
    os.symlink(os.path.join(made.top, "outside"), os.path.join(made.root, "link-out"))
    os.symlink(os.path.join(made.root, "a"), os.path.join(made.root, "link-in"))
    return made


paths_strategy = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=8).map(
    lambda segments: ("/static/" + "/".join(segments)).encode())


def _served(tree: Tree, path: bytes, follow: bool) -> bytes | None:
    """The real path served for C{path}, or None when refused."""
    site = paths.Site(root=tree.root.encode(), index=b"index.html", follow_symlinks=follow)
    try:
        return paths.locate(site, paths.requested(path, "/static"))
    except (paths.Refused, paths.IsDirectory):
        return None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(paths_strategy)
def test_without_follow_symlinks_only_files_under_the_root(tree, path):
    real = _served(tree, path, follow=False)
    if real is not None:
        assert paths.inside(real, tree.real("root")), (path, real)
        with open(real, "rb") as f:
            assert f.read() != b"SECRET"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(paths_strategy)
def test_with_follow_symlinks_only_the_root_and_its_link_targets(tree, path):
    real = _served(tree, path, follow=True)
    if real is not None:
        assert paths.inside(real, tree.real("root")) or paths.inside(real, tree.real("outside")), (path, real)
        assert real != tree.real("secret")


def test_the_fuzz_reaches_files(tree):
    """The alphabet can name served files, so the properties above are not vacuous."""
    assert _served(tree, b"/static/a/sub/a.txt", follow=False) is not None
    assert _served(tree, b"/static/link-in/a.txt", follow=False) is not None
    assert _served(tree, b"/static/link-out/secret", follow=False) is None
    assert _served(tree, b"/static/link-out/secret", follow=True) is not None
