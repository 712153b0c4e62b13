"""Shared fixtures: a real PostgreSQL server for the gallery's server backend (started once per test run)."""

from __future__ import annotations

import itertools

import pytest

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL (Debian's package, installed by `make postgres`); never skipped: without it the
    tests that need it fail with the install hint."""
    from occluface.bench.postgres import TemporaryPostgres

    with TemporaryPostgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the session's server (one per test)."""
    return postgres_server.create_database(f"occluface_test_{next(_databases)}")
