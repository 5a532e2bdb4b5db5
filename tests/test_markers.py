"""Markers select what they say: ``-m postgres``, ``-m e2e`` and ``-m slow`` are exact.

The markers are set by ``pytest_collection_modifyitems`` in ``conftest.py``
from the fixtures a test uses; these tests read every item the session
collected (before ``-k``/``-m`` deselected any) and check the marks against
what each item actually uses, so a new fixture that reaches PostgreSQL or the
server without a mark is caught. Under ``make test`` that is the whole suite.
"""

from __future__ import annotations

import pytest
from session_items import COLLECTED_ITEMS

# Fixtures that reach PostgreSQL without a "postgres" param: asking for one
# of these means the test runs on PostgreSQL whatever its parameters say.
POSTGRES_FIXTURES = {"postgres_url"}
SERVER_FIXTURES = {"vault_server", "sqlite_server", "start_vault_server", "run_vault"}


def collected(request: pytest.FixtureRequest) -> list[pytest.Item]:
    everything = request.config.stash[COLLECTED_ITEMS]
    items = [item for item in everything if isinstance(item, pytest.Function)]
    assert items, "the session collected nothing to check"
    return items


def runs_on_postgres(item: pytest.Function) -> bool:
    params = item.callspec.params.values() if hasattr(item, "callspec") else ()
    return "postgres" in params or bool(POSTGRES_FIXTURES.intersection(item.fixturenames))


def marked_by_its_module(item: pytest.Function, name: str) -> bool:
    """A module whose own fixtures create a database says so in ``pytestmark``."""
    return any(mark.name == name for mark in item.module.__dict__.get("pytestmark", []) or [])


def test_every_test_on_postgres_is_marked_postgres_and_no_other(
    request: pytest.FixtureRequest,
) -> None:
    items = collected(request)
    unmarked = [
        i.nodeid for i in items if runs_on_postgres(i) and not i.get_closest_marker("postgres")
    ]
    stray = [
        i.nodeid
        for i in items
        if i.get_closest_marker("postgres")
        and not runs_on_postgres(i)
        and not marked_by_its_module(i, "postgres")
    ]
    assert unmarked == []
    assert stray == []


def test_the_backend_parameter_reaches_postgres_in_the_marked_half(
    request: pytest.FixtureRequest,
) -> None:
    """The check above can fail: the contract suites do have a PostgreSQL half."""
    items = collected(request)
    on_backend = [i for i in items if hasattr(i, "callspec") and "backend" in i.callspec.params]
    if not on_backend:
        pytest.skip("no contract suite collected in this run")
    marked = {i.callspec.params["backend"] for i in on_backend if i.get_closest_marker("postgres")}
    assert marked <= {"postgres"}


def test_every_test_that_starts_the_server_is_marked_e2e(request: pytest.FixtureRequest) -> None:
    items = collected(request)
    unmarked = [
        i.nodeid
        for i in items
        if SERVER_FIXTURES.intersection(i.fixturenames) and not i.get_closest_marker("e2e")
    ]
    assert unmarked == []


def test_every_test_under_e2e_is_marked_e2e(request: pytest.FixtureRequest) -> None:
    items = collected(request)
    unmarked = [
        i.nodeid
        for i in items
        if i.nodeid.startswith("tests/e2e/") and not i.get_closest_marker("e2e")
    ]
    assert unmarked == []
