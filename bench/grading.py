"""Time grading one class three ways and write the figures into bench/results.json.

The same N submissions of an assignment (the reference, other correct styles,
blank and wrong answers of ``tests/submissions_<assignment>.py``, repeated
under new student ids up to N) are graded

1. by serial ``nbgrader autograde`` (one student after the other), then
   ``nbgrader generate_feedback`` (timed apart),
2. by ``nnh grade --jobs J --no-feedback`` (J students at a time, each kernel in a
   bubblewrap box): the same work as 1's autograde,
3. by ``nnh grade --jobs J`` (with feedback): the same work as 1's two commands,
4. by ``nnh grade --jobs J --sandbox limits`` (no box: what the box costs),
5. by ``nnh grade --jobs J --no-judge`` (hidden tests in the kernel: what the judge costs),

and, as the floor, the graded notebooks (hidden tests included) are executed
one by one with a bare ``jupyter nbconvert --execute``.  Prints the speed-up of
``nnh grade`` over serial nbgrader and the cost per submission of each, and
merges the figures into ``bench/results.json`` under ``"grading"`` (``bench/book.py``
writes other keys of the same file).

    python bench/grading.py [--assignment regularization] [--n 20] [--jobs 2]

Targets on 2 cores (issues 13 and 14): speed-up >= 3 with the sandbox on, for
the same work (``speedup``: autograde alone; ``speedup_with_feedback``: with the
feedback);
``nnh grade``'s cost per submission (``jobs * wall / N``) <= 1.3 x the bare
execution.  The exercises' ungraded "Try it" cells skip their work under
nbgrader (``NBGRADER_EXECUTION``), not under the bare execution.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import nbgrading  # noqa: E402  (tests/ helpers: a temporary course root with the real nbgrader)
from results import save  # noqa: E402  (bench/results.py, next to this script)

BIN = Path(sys.executable).parent


def the_class(assignment: str, n: int) -> dict[str, dict[str, str]]:
    module = importlib.import_module(f"submissions_{assignment}")
    pool = [("reference", module.REFERENCE), *module.CORRECT.items(), ("blank", {}),
            *((name, answers) for name, (answers, _) in module.WRONG.items())]
    return {f"s{i:03d}_{pool[i % len(pool)][0]}": pool[i % len(pool)][1] for i in range(n)}


def make(root: Path, assignment: str, students: dict) -> Path:
    course = nbgrading.make_course(root, assignment)
    for student, answers in students.items():
        nbgrading.submit(course, assignment, student, answers)
    return course


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``command``: its wall-clock seconds, and the CPU seconds of it and of every
    process it waited for."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=nbgrading.env(), check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="regularization")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    students = the_class(args.assignment, args.n)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nnh-bench-") as tmp:
        tmp = Path(tmp)
        serial_course = make(tmp / "serial", args.assignment, students)
        serial, serial_cpu = timed([str(BIN / "nbgrader"), "autograde", args.assignment, "--force"], serial_course)
        serial_feedback, _ = timed([str(BIN / "nbgrader"), "generate_feedback", args.assignment, "--force"],
                                   serial_course)
        plain_course = make(tmp / "plain", args.assignment, students)
        plain, _ = timed([str(BIN / "nnh"), "grade", args.assignment, "--jobs", str(args.jobs), "--force",
                          "--no-feedback"], plain_course)
        parallel_course = make(tmp / "parallel", args.assignment, students)
        parallel, parallel_cpu = timed([str(BIN / "nnh"), "grade", args.assignment, "--jobs", str(args.jobs),
                                        "--force"], parallel_course)
        serial_scores = nbgrading.scores(serial_course, args.assignment)
        judged_scores = nbgrading.scores(parallel_course, args.assignment)
        differ = sorted(s for s in students if serial_scores.get(s) != judged_scores.get(s))
        # the same without the bubblewrap box: what the box costs per submission
        limits_course = make(tmp / "limits", args.assignment, students)
        limited, _ = timed([str(BIN / "nnh"), "grade", args.assignment, "--jobs", str(args.jobs), "--force",
                            "--sandbox", "limits", "--user", ""], limits_course)
        # the same with the tests decided in the kernel: what the judge costs per submission
        kernel_course = make(tmp / "kernel", args.assignment, students)
        in_kernel, _ = timed([str(BIN / "nnh"), "grade", args.assignment, "--jobs", str(args.jobs), "--force",
                              "--no-judge"], kernel_course)
        kernel_differ = sorted(s for s in students
                               if serial_scores.get(s) != nbgrading.scores(kernel_course, args.assignment).get(s))
        # seconds of each student inside nnh grade's grading processes (kernel, nbgrader, feedback)
        manifest = json.loads((parallel_course / "autograded" / ".nnh-grade" / f"{args.assignment}.json").read_text())
        inside = sorted(record["seconds"] for record in manifest.values())
        bare_dir = tmp / "bare"
        bare_dir.mkdir()
        bare = bare_cpu = 0.0
        for student in students:
            graded = nbgrading.notebook_path(serial_course, "autograded", args.assignment, student)
            copy = bare_dir / f"{student}.ipynb"
            shutil.copy(graded, copy)
            wall, cpu = timed([str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--inplace",
                               "--ExecutePreprocessor.allow_errors=True", "--ExecutePreprocessor.timeout=600",
                               str(copy)], bare_dir)
            bare, bare_cpu = bare + wall, bare_cpu + cpu
    n = len(students)
    # the same comparison in CPU seconds, which another load on the machine changes far less than
    # the wall-clock times: how much work nnh grade does per submission, next to the others
    results = {
        "assignment": args.assignment, "submissions": n, "jobs": args.jobs, "cpus": os.cpu_count(),
        "serial_nbgrader_s": round(serial, 1), "nnh_grade_no_feedback_s": round(plain, 1),
        "speedup": round(serial / plain, 2),
        "serial_nbgrader_generate_feedback_s": round(serial_feedback, 1), "nnh_grade_s": round(parallel, 1),
        "speedup_with_feedback": round((serial + serial_feedback) / parallel, 2),
        "nnh_grade_sandbox_limits_s": round(limited, 1),
        "box_cost_per_submission_s": round((parallel - limited) * args.jobs / n, 2),
        "nnh_grade_no_judge_s": round(in_kernel, 1),
        "judge_cost_per_submission_s": round((parallel - in_kernel) * args.jobs / n, 2),
        "per_submission_bare_execute_s": round(bare / n, 2),
        "per_submission_serial_nbgrader_s": round(serial / n, 2),
        "per_submission_nnh_grade_s": round(parallel * args.jobs / n, 2),
        "nnh_grade_cost_over_bare": round(parallel * args.jobs / bare, 2),
        "serial_nbgrader_cost_over_bare": round(serial / bare, 2),
        "median_seconds_per_student_in_grading_process": round(inside[len(inside) // 2], 2),
        "cpu_s": {"serial_nbgrader": round(serial_cpu, 1), "nnh_grade": round(parallel_cpu, 1),
                  "bare_execute": round(bare_cpu, 1)},
        "nnh_grade_cpu_over_bare": round(parallel_cpu / bare_cpu, 2),
        "nnh_grade_cpu_over_serial_nbgrader": round(parallel_cpu / serial_cpu, 2),
        # a submission that calls the course's reference loses more tests when the box withholds it
        "scores_differ_from_nbgrader": differ,
        "scores_differ_from_nbgrader_no_judge": kernel_differ,
        "load_average_1min_at_start": round(load_at_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    print(f"{n} submissions of {args.assignment!r}, {os.cpu_count()} CPUs")
    print(f"serial nbgrader autograde: {serial:7.1f} s  ({serial / n:5.2f} s per submission)")
    print(f"nnh grade --jobs {args.jobs} --no-feedback: {plain:7.1f} s  (speed-up {serial / plain:.2f}x, the same work)")
    print(f"serial nbgrader autograde + generate_feedback: {serial + serial_feedback:7.1f} s")
    print(f"nnh grade --jobs {args.jobs} (with feedback): {parallel:7.1f} s  "
          f"(speed-up {(serial + serial_feedback) / parallel:.2f}x, the same work; "
          f"{serial / parallel:.2f}x over autograde alone)")
    print(f"the same with --sandbox limits (no box): {limited:7.1f} s; the box costs "
          f"{(parallel - limited) * args.jobs / n:+.2f} s per submission")
    print(f"the same with --no-judge (tests in the kernel): {in_kernel:7.1f} s; the judge costs "
          f"{(parallel - in_kernel) * args.jobs / n:+.2f} s per submission")
    print(f"bare nbconvert --execute:  {bare:7.1f} s  ({bare / n:5.2f} s per submission)")
    print(f"cost per submission over bare execution: nnh grade {parallel * args.jobs / bare:.2f}x, "
          f"serial nbgrader {serial / bare:.2f}x")
    print(f"median seconds per student inside nnh grade's grading processes: {inside[len(inside) // 2]:.2f} "
          f"({args.jobs} at a time)")
    print(f"CPU seconds: serial nbgrader {serial_cpu:.1f}, nnh grade {parallel_cpu:.1f}, bare {bare_cpu:.1f} "
          f"(nnh grade per submission: {parallel_cpu / bare_cpu:.2f}x bare, {parallel_cpu / serial_cpu:.2f}x serial "
          f"nbgrader)")
    print(f"per-cell scores that differ from serial nbgrader: {', '.join(differ) or 'none'} "
          f"(with --no-judge: {', '.join(kernel_differ) or 'none'})")
    print(f"load average (1 min): {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    out = save("grading", results)
    print(f"wrote {out.relative_to(REPO)} (key 'grading')")


if __name__ == "__main__":
    main()
