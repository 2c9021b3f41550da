"""Shared set-up: the quiet TensorFlow environment, before anything imports it."""

import os

for _key, _value in {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
                     "PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PLATFORM_DIRS": "1"}.items():
    os.environ.setdefault(_key, _value)

import nnh  # noqa: E402,F401  (TensorFlow, when first imported, loads quietly)


import contextlib  # noqa: E402
import fcntl  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MATHJAX = REPO / "book" / "_static" / "vendor" / "mathjax" / "tex-chtml.js"


@contextlib.contextmanager
def once_per_run(name: str):
    """Run a block once per test run, even when several xdist workers ask for it.

    Yields the path of a stamp file: a worker that finds it existing must not
    redo the work (another worker of this run did it, under the same lock);
    otherwise it does the work and creates the stamp. Workers of one run share
    ``PYTEST_XDIST_TESTRUNUID``; stamps of earlier runs are removed.
    """
    folder = REPO / "_build"
    folder.mkdir(exist_ok=True)
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"pid{os.getpid()}")
    with open(folder / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for old in folder.glob(f".{name}-*"):
                if old.name != f".{name}-{run}":
                    old.unlink(missing_ok=True)
            yield folder / f".{name}-{run}"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stored_outputs_config() -> Path:
    """``_config.yml`` with execution off, written to ``_build/_config.stored-outputs.yml``."""
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    path = REPO / "_build" / "_config.stored-outputs.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


@pytest.fixture(scope="session")
def built():
    """The book built once per run (`make book`'s command) → its `_build/html` folder.

    Shared by tests/test_book.py and tests/test_browser.py (xdist group "book").
    The build renders the notebooks' stored outputs instead of executing them
    again: ``tests/test_notebooks.py`` re-executes every chapter under nbval in the
    same run and compares those outputs with the fresh ones, so executing here
    too would only repeat that work (the capstone's grid alone takes minutes).
    ``make book`` executes (``_config.yml``); this build uses the same
    configuration with ``execute_notebooks: "off"`` (:func:`stored_outputs_config`).
    The build runs under a lock, once per run: xdist 3.8's loadgroup does not
    group tests under pytest 9.2 (it sets ``item._nodeid``, which pytest 9.2 no
    longer reads), so tests of the group can land on both workers.
    """
    assert MATHJAX.exists(), f"{MATHJAX} is missing: run `make vendor` (a prerequisite of `make test`)"
    with once_per_run("book-built") as stamp:
        if not stamp.exists():
            bin_dir = Path(sys.executable).parent
            env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                       TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
            result = subprocess.run(
                [str(bin_dir / "jupyter-book"), "build", ".", "-n", "-W", "--keep-going",
                 "--config", str(stored_outputs_config())],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
            )
            assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
            # -W already fails the build on a Sphinx warning; this also catches
            # warnings printed outside Sphinx's logger.  The kernel launcher's
            # notice about its local TCP transport is not about the book.
            warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()
                        and not line.startswith("[IPKernelApp] WARNING | Kernel is running over TCP")]
            assert not warnings, "\n".join(warnings[-40:])
            stamp.touch()
    return REPO / "_build" / "html"
