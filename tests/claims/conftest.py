"""Claims are tests: every qualitative claim a chapter makes about an effect is
re-checked here by re-running the chapter's experiment (:mod:`nnh.experiments`,
:mod:`nnh.ablation`) from fresh seeds (``claims.stats.SEEDS``, disjoint from the
seeds the chapters print).

Every test in this folder is marked ``claims`` (deselect locally with
``pytest -m "not claims"``; CI runs them).  Each file trains its experiment once,
in a module-scoped fixture, and keeps its tests on one xdist worker
(``xdist_group``), so the training is not repeated.  If a claim fails, fix the
chapter's text, not the test.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks (loadgroup)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.claims)
            item.add_marker(pytest.mark.xdist_group(f"claims-{Path(str(item.fspath)).stem}"))
