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
    print(f"cold `make book` build:       {cold:7.1f} s")
    print(f"cached rebuild, no change:    {cached:7.1f} s  ({cached / cold:.1%} of cold)")
    for name, seconds in results["chapter_execution_s"].items():
        print(f"  execute {name:32} {seconds:6.1f} s")
    out = save("book", results)
    print(f"wrote {out.relative_to(REPO)} (key 'book')")


if __name__ == "__main__":
    main()
