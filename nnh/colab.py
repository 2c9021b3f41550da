"""The first code cell of every notebook: install :mod:`nnh` on Colab, a no-op elsewhere.

A reader who opens a chapter or an exercise with the book's Colab button gets a
fresh runtime without :mod:`nnh`.  The first code cell of every notebook
therefore installs it from the course repository when ``import nnh`` would fail,
and does nothing (no output, nothing on stderr) where it is installed: locally,
on Binder, under nbval and inside nbgrader's autograding.

The repository lives in one place, ``_config.yml``'s ``repository.url`` and
``repository.branch``; this module generates the cell from it, and
``tests/test_workflows.py`` checks that every notebook of the toc starts with
exactly that cell.  On Colab, TensorFlow, Keras, NumPy, Matplotlib and
scikit-learn are preinstalled, so ``nnh`` is installed with ``--no-deps`` (its
book/grading tools -- Jupyter Book, nbgrader -- would replace packages the
Colab runtime pins), plus ``myst-nb`` for the chapters' ``glue``.

Run it on the source notebooks (the released exercises are generated from
``solutions/`` by ``make exercises``)::

    python -m nnh.colab book/*.ipynb solutions/*/*.ipynb
    python -m nnh.colab --check book/*.ipynb exercises/*/*.ipynb   # exit 1 if out of date

Example:
    >>> cell = install_cell("https://github.com/nnh-course/nnh", "main")
    >>> cell.metadata["tags"]
    ['remove-cell']
    >>> "git+https://github.com/nnh-course/nnh@main" in cell.source
    True
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

CELL_ID = "colab-install"
GRADE_ID = "colab_install"
MARKER = "# Colab: installs nnh"
# Locked, not graded, not a solution: nbgrader keeps it as it is in the release
# and restores it if a student edits it.
NBGRADER_METADATA = {"grade": False, "grade_id": GRADE_ID, "locked": True,
                     "schema_version": 3, "solution": False, "task": False}
_TEMPLATE = '''\
{marker} (the course library) from {url} when it is
# missing; does nothing where nnh is installed (locally, on Binder, in grading).
import importlib.util

if importlib.util.find_spec("nnh") is None:
    import subprocess
    import sys

    for _args in (["--no-deps", "{requirement}"], ["myst-nb"]):
        _run = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *_args],
                              capture_output=True, text=True)
        if _run.returncode != 0:
            raise RuntimeError(f"pip install {{' '.join(_args)}} failed:\\n{{_run.stderr}}")
    importlib.invalidate_caches()'''


def repository(config: str | Path = "_config.yml") -> tuple[str, str]:
    """The book's repository ``(url, branch)`` from ``_config.yml``.

    Args:
        config: path of the Jupyter Book configuration.

    Returns:
        ``repository.url`` (without a trailing ``/`` or ``.git``) and
        ``repository.branch`` (``"main"`` when absent).
    """
    import yaml

    settings = yaml.safe_load(Path(config).read_text(encoding="utf-8")).get("repository") or {}
    url = str(settings.get("url") or "")
    if not re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+/?", url):
        raise ValueError(f"repository.url must be https://<host>/<owner>/<name>, got {url!r}")
    return url.rstrip("/").removesuffix(".git"), str(settings.get("branch") or "main")


def install_source(url: str, branch: str = "main") -> str:
    """The source of the install cell for the repository ``url`` at ``branch``.

    Args:
        url: ``https://`` URL of the repository that holds ``nnh``.
        branch: branch (or tag) to install from.

    Returns:
        Python source: installs ``nnh @ git+<url>@<branch>`` when ``nnh`` is not
        importable; otherwise only runs ``importlib.util.find_spec``.
    """
    if not re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"url must be https://<host>/<owner>/<name>, got {url!r}")
    if not re.fullmatch(r"[\w./-]+", branch):
        raise ValueError(f"branch must be a git branch or tag name, got {branch!r}")
    return _TEMPLATE.format(marker=MARKER, url=url, requirement=f"nnh @ git+{url}@{branch}")


def install_cell(url: str, branch: str = "main", nbgrader: bool = False) -> nbformat.NotebookNode:
    """The install cell: hidden in the HTML book (``remove-cell``), first in the notebook.

    Args:
        url: repository URL (see :func:`install_source`).
        branch: branch to install from.
        nbgrader: add nbgrader metadata (a locked, non-graded cell ``colab_install``).

    Returns:
        An nbformat v4 code cell without outputs.
    """
    cell = nbformat.v4.new_code_cell(install_source(url, branch))
    cell.id = CELL_ID
    cell.metadata["tags"] = ["remove-cell"]
    if nbgrader:
        cell.metadata["nbgrader"] = dict(NBGRADER_METADATA)
    return cell


def _is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and (
        cell.get("id") == CELL_ID
        or cell.metadata.get("nbgrader", {}).get("grade_id") == GRADE_ID
        or cell.source.lstrip().startswith(MARKER))


def _uses_nbgrader(nb) -> bool:
    return any("nbgrader" in cell.metadata for cell in nb.cells if not _is_install_cell(cell))


def with_install_cell(nb, url: str, branch: str = "main"):
    """A copy of notebook ``nb`` whose first code cell is the install cell.

    An existing install cell is replaced (wherever it is); the new one goes just
    before the first other code cell (the imports), after the title. Notebooks
    with nbgrader metadata get the nbgrader version of the cell. ``nb`` is not
    modified.
    """
    nb = copy.deepcopy(nb)
    old = [cell for cell in nb.cells if _is_install_cell(cell)]
    cells = [cell for cell in nb.cells if not _is_install_cell(cell)]
    first_code = next((i for i, cell in enumerate(cells) if cell.cell_type == "code"), len(cells))
    cell = install_cell(url, branch, nbgrader=_uses_nbgrader(nb))
    if old:  # keep what execution and nbgrader's release add to an unchanged cell
        cell.execution_count = old[0].get("execution_count")
        checksum = old[0].metadata.get("nbgrader", {}).get("checksum")
        if checksum and "nbgrader" in cell.metadata and _signature(old[0]) == _signature(cell):
            cell.metadata["nbgrader"]["checksum"] = checksum
    cells.insert(first_code, cell)
    nb.cells = cells
    return nb


def _signature(cell) -> tuple:
    """What must match: source, tags, nbgrader flags, no outputs (not ids, counts, checksums)."""
    grader = cell.metadata.get("nbgrader")
    return (cell.cell_type, cell.source, tuple(cell.metadata.get("tags", ())),
            None if grader is None else tuple(grader.get(key) for key in sorted(NBGRADER_METADATA)),
            len(cell.get("outputs", [])))


def first_code_cell(nb):
    """The first code cell of ``nb`` (``None`` when it has none)."""
    return next((cell for cell in nb.cells if cell.cell_type == "code"), None)


def is_up_to_date(nb, url: str, branch: str = "main") -> bool:
    """Whether the first code cell of ``nb`` is the install cell :func:`with_install_cell` makes.

    Compares the source, the tags, the nbgrader flags and (no) outputs, so that a
    notebook executed by ``make notebooks`` or released by nbgrader (which adds a
    checksum) still counts as up to date; and that no other install cell is left.
    """
    expected = first_code_cell(with_install_cell(nb, url, branch))
    first = first_code_cell(nb)
    return (first is not None and _signature(first) == _signature(expected)
            and sum(_is_install_cell(cell) for cell in nb.cells) == 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnh.colab", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--config", type=Path, default=Path("_config.yml"),
                        help="Jupyter Book _config.yml holding repository.url (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a notebook is not up to date")
    args = parser.parse_args(argv)
    url, branch = repository(args.config)
    stale = []
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if is_up_to_date(nb, url, branch):
            continue
        stale.append(path)
        if not args.check:
            nbformat.write(with_install_cell(nb, url, branch), path)
    for path in stale:
        print(f"{'out of date' if args.check else 'updated'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
