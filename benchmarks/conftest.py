"""Benchmark support: a table of ratios against a baseline measured in the same run.

The machine these run on is shared and noisy, so absolute times say little
from one run to the next. Every figure worth quoting is therefore a pair, a
*subject* (the vault's code) and a *baseline* (the same primitive steps done
directly, or the cheapest call over the same transport), measured one after
the other in the same run, and reported as the ratio subject / baseline.

Each pair runs in alternating repetitions (baseline, subject, baseline, ...).
Both the median ratio (median of the repetitions' medians) and the min ratio
(best round of any repetition) are printed. The verdict against a goal uses
the **min**: noise on a shared machine only ever adds time, and it comes in
bursts, so a burst during one side inflates that side's median but rarely
its best rounds (on this machine, five runs of the same code gave median
ratios from 1.7x to 3.3x and min ratios from 1.71x to 1.79x). For the crypto
pairs each round is already the mean of many calibrated iterations, so the
min is not one lucky call. The min does hide costs that come in periodic
bursts of the code itself (a dict compaction every few thousand puts): the
median column shows those. When the two ratios disagree by more than 15 % the
row is flagged ``noisy``: rerun before quoting it.

Benchmarks are off by default (``--benchmark-disable`` in pyproject's
``addopts``). Run them with::

    pytest benchmarks -p no:cacheprovider --benchmark-enable

(``--benchmark-enable`` wins over ``--benchmark-disable`` wherever it is on
the command line.) Without it every benchmark body runs once as a smoke test
and no table is printed. Nothing is written to disk.
"""

from __future__ import annotations

from typing import Any

import pytest
from bench_support import RatioTable

_TABLE = pytest.StashKey[RatioTable]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TABLE] = RatioTable()
    # pyproject's addopts has --strict-markers for every run from this rootdir.
    config.addinivalue_line(
        "markers", "huge: seeds a database of a million subjects (deselect: -m 'not huge')"
    )


@pytest.fixture(scope="session")
def ratios(pytestconfig: pytest.Config) -> RatioTable:
    return pytestconfig.stash[_TABLE]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash[_TABLE].render()
    if not lines:
        return
    terminalreporter.section(
        "ratios against a same-run baseline (verdict on the min ratio; see benchmarks/conftest.py)"
    )
    for line in lines:
        terminalreporter.write_line(line)
