"""Fixtures for the observability tests: the supervisor tests' log capture."""

from tests.supervisor.conftest import logged  # noqa: F401
