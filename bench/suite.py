"""Time the whole test suite as `make test` runs it (`pytest -n 2 --dist loadgroup`)
on a fresh clone of the committed tree, and the share of its largest parts.

Prints the wall time against the 15-minute target, the time of each test file
summed over its tests (pytest's ``--durations``), and writes them to
bench/results.json under the key ``suite``.  Takes as long as `make test`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from results import save

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_S = 15 * 60
DURATION = re.compile(r"^\s*([\d.]+)s\s+(call|setup|teardown)\s+(\S+?)(?:::|$)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "nnh"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        # the clone shares this checkout's environment and vendored assets (make test's prerequisites)
        (clone / ".venv").symlink_to(REPO / ".venv")
        for vendored in ("_vendor", "book/_static/vendor"):
            if (REPO / vendored).exists():
                (clone / vendored).symlink_to(REPO / vendored)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "3",
               "TF_ENABLE_ONEDNN_OPTS": "0", "CHROMIUM": os.environ.get("CHROMIUM", "/usr/bin/chromium")}
        start = time.perf_counter()
        run = subprocess.run([str(BIN / "python"), "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
                              "--durations=0", "-p", "no:cacheprovider"],
                             cwd=clone, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    per_file: dict[str, float] = defaultdict(float)
    for line in run.stdout.splitlines():
        match = DURATION.match(line)
        if match:
            per_file[match.group(3)] += float(match.group(1))
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-500:]
    results = {"make_test_wall_s": round(wall, 1), "target_s": TARGET_S, "within_target": wall <= TARGET_S,
               "exit_code": run.returncode, "summary": summary,
               "test_seconds_by_file": {k: round(v, 1) for k, v in sorted(per_file.items(), key=lambda kv: -kv[1])}}
    print(f"`make test` (pytest -n 2) wall time: {wall:7.1f} s  (target ≤ {TARGET_S} s: "
          f"{'met' if wall <= TARGET_S else 'NOT met'}); {summary}")
    for name, seconds in list(results["test_seconds_by_file"].items())[:12]:
        print(f"  {name:45} {seconds:7.1f} s of test time")
    out = save("suite", results)
    print(f"wrote {out.relative_to(REPO)} (key 'suite')")
    if run.returncode != 0:
        failures = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        log = Path(tempfile.gettempdir()) / "nnh-bench-suite.log"
        log.write_text(run.stdout + run.stderr)
        print("\n".join(failures[:40]) + f"\n(the whole output is in {log})")
        sys.exit(f"the test suite failed (exit {run.returncode})")


if __name__ == "__main__":
    main()
