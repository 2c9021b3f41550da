"""Time a cold `jupyter-book build` (empty cache), a cached rebuild with no
change, and each chapter's execution; print the figures and a ratio, and write
bench/results.json.

The cold build runs on a copy of the repository in a temporary folder, so the
reader's own _build/ and its cache are left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import save

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
       "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
IGNORE = shutil.ignore_patterns(".venv", "_build", ".git", ".pytest_cache", ".hypothesis",
                                "submitted", "autograded", "feedback", "gradebook.db")


def build(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "jupyter-book"), "build", ".", "-n", "-W", "--keep-going"],
                   cwd=root, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def chapter_seconds(root: Path) -> dict[str, float]:
    """Execution time per notebook, as recorded by jupyter-cache during the build."""
    from jupyter_cache import get_cache

    cache = get_cache(root / "_build" / ".jupyter_cache")
    return {Path(record.uri).relative_to(root).as_posix(): record.data.get("execution_seconds")
            for record in cache.list_cache_records()}


CHAPTER_LIMIT_S = 60
CAPSTONE = "book/bag_of_tricks.ipynb"
CAPSTONE_LIMIT_S = 150


def targets(results: dict) -> list[tuple[str, float, float]]:
    """(name, measured, limit) of every target of the book benchmark."""
    out = [("cold build (s)", results["cold_build_s"], 300.0),
           ("cached rebuild / cold build", results["cached_over_cold"], 0.10)]
    for name, seconds in results["chapter_execution_s"].items():
        if name.startswith("book/"):
            out.append((f"execute {name} (s)", seconds, CAPSTONE_LIMIT_S if name == CAPSTONE else CHAPTER_LIMIT_S))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nnh"
        shutil.copytree(REPO, root, ignore=IGNORE)
        cold = build(root)
        cached = build(root)
        chapters = chapter_seconds(root)
    results = {"cold_build_s": round(cold, 1), "cached_build_s": round(cached, 1),
               "cached_over_cold": round(cached / cold, 3),
               "chapter_execution_s": {k: round(v, 1) for k, v in chapters.items() if v is not None}}
    results["targets"] = {name: {"value": value, "limit": limit, "met": value <= limit}
                          for name, value, limit in targets(results)}
    print(f"cold `make book` build:       {cold:7.1f} s")
    print(f"cached rebuild, no change:    {cached:7.1f} s  ({cached / cold:.1%} of cold)")
    for name, seconds in results["chapter_execution_s"].items():
        print(f"  execute {name:32} {seconds:6.1f} s")
    for name, target in results["targets"].items():
        print(f"target {name:40} {target['value']:8.3f} ≤ {target['limit']:g}: {'met' if target['met'] else 'NOT met'}")
    out = save("book", results)
    print(f"wrote {out.relative_to(REPO)} (key 'book')")


if __name__ == "__main__":
    main()
