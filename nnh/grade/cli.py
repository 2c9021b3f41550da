"""The command line of ``nnh grade``: the options, the run over the class (preflight,
the students, the merge of each result as it arrives), the progress line, the
summary and the CSV.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

from nnh.grade.course import _files, find_students, load_course, template_gradebook
from nnh.grade.judge_client import start_judges, stop_judges
from nnh.grade.merge import gradebook_scores, load_manifest, merge, save_manifest
from nnh.grade.pool import _deferred_ctrl_c, _grade_locally, _grade_on_dask, prestart_servers, stop_servers
from nnh.grade.preflight import Gate, check_preflight, preflight_payload
from nnh.grade.settings import CELL_OUTPUT_MB, CSV_FIELDS, DEFAULT_MAX_OUTPUT, DEFAULT_MEMORY, DEFAULT_TIMEOUT, GradeError, STATUSES
from nnh.grade.task import grading_limits, hide_tests_setting, judge_setting, make_payload, sandbox_problem, sandbox_user_usable, unusable_user_error
from nnh.grade.withhold import graded_names


class Progress:
    """students done / total, failures so far, ETA — a bar on a terminal, a line per student otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.failed, self.stream = total, 0, 0, stream
        self.start = time.monotonic()
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.show(None)

    def update(self, student: str, status: str) -> None:
        self.done += 1
        self.failed += status != "ok"
        self.show(f"{student}: {status}")

    def show(self, last: str | None) -> None:
        if self.total == 0:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta_text = "--:--" if eta != eta else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        line = f"grading [{bar}] {self.done}/{self.total} done, {self.failed} not ok, ETA {eta_text}"
        if self.tty:
            self.stream.write("\r" + line + (f"  ({last})" if last else "") + "\x1b[K")
            if self.done == self.total:
                self.stream.write("\n")
        elif last is not None:
            self.stream.write(line + f"  ({last})\n")
        self.stream.flush()


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="nnh grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", metavar="ASSIGNMENT", help="the assignment to grade (nbgrader's assignment id)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                        help="students graded at the same time (default: the number of CPUs)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="send the students to an existing Dask cluster, e.g. tcp://host:8786")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit for one student's notebook (default {DEFAULT_TIMEOUT}); the per-cell "
                             "limit is nbgrader's Execute.timeout, at most this")
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY, metavar="MB",
                        help=f"memory cap of a student's kernel: resident memory in the sandbox's cgroup (as "
                             f"root), else address space (default {DEFAULT_MEMORY}; 0: none)")
    parser.add_argument("--max-output", type=float, default=DEFAULT_MAX_OUTPUT, metavar="MB",
                        help=f"output a student's notebook keeps (default {DEFAULT_MAX_OUTPUT:g}; a cell keeps at most "
                             f"{CELL_OUTPUT_MB:g} MB of it); the rest is dropped, with a note in the cell and the "
                             "feedback (error outputs are always kept, shortened)")
    parser.add_argument("--csv", metavar="PATH", help="write student_id,assignment,score,max_score,status")
    parser.add_argument("--force", action="store_true", help="grade again even if the submission has not changed")
    parser.add_argument("--student", nargs="+", metavar="ID", help="grade only these students")
    hide = parser.add_mutually_exclusive_group()
    hide.add_argument("--hide-tests", dest="hide_tests", action="store_true", default=None,
                      help="feedback shows each hidden test's result and message, not its code (the default; "
                           "course setting: c.NnhGrade.hide_tests)")
    hide.add_argument("--show-hidden-tests", dest="hide_tests", action="store_false",
                      help="feedback shows the hidden tests' code too, as nbgrader does")
    parser.add_argument("--no-feedback", dest="feedback", action="store_false",
                        help="grade without writing feedback/ (nbgrader generate_feedback writes it later, e.g. "
                             "after manual grading); a graded student's old feedback is removed")
    judge = parser.add_mutually_exclusive_group()
    judge.add_argument("--judge", dest="judge", action="store_true", default=None,
                       help="decide every test cell in the judge, a process of the grader's that student code "
                            "cannot reach (course setting: c.NnhGrade.judge; see the page Grading a class)")
    judge.add_argument("--no-judge", dest="judge", action="store_false",
                       help="decide test cells in the student's kernel, as nbgrader autograde does")
    parser.add_argument("--sandbox", choices=("bwrap", "limits"), default="bwrap",
                        help="bwrap (default): each kernel in a bubblewrap box of its own (namespaces, no network, "
                             "no course files, its own uid as root); limits: resource limits and the user nobody "
                             "only (see the page Grading a class)")
    parser.add_argument("--no-preflight", dest="preflight", action="store_false",
                        help="do not grade the reference solution first (see above)")
    parser.add_argument("--course", default=".", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--user", default="nobody", help=argparse.SUPPRESS)
    return parser


def grade(args: argparse.Namespace, out=sys.stdout) -> int:
    if args.jobs < 1:
        raise GradeError(f"--jobs must be at least 1, got {args.jobs}")
    if not args.timeout > 0:
        raise GradeError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.memory < 0:
        raise GradeError(f"--memory must be a number of MB (0: no cap), got {args.memory}")
    if not 0 < args.max_output < float("inf"):
        raise GradeError(f"--max-output must be a positive number of MB, got {args.max_output}")
    if args.sandbox == "bwrap" and not args.scheduler:
        problem = sandbox_problem()
        if problem:
            raise GradeError(problem)
    if not args.scheduler and args.judge is not False:
        start_judges()  # it imports Keras while the course is read (stopped below if the course has no judge)
    try:
        return _grade_with_judges(args, out)
    finally:
        stop_judges()


def _grade_with_judges(args: argparse.Namespace, out) -> int:
    course = load_course(args.course)
    source_files = _files(course.path("source", ".", args.assignment))
    judge = judge_setting(course, args.judge)
    if not judge:
        stop_judges()
    # under the judge, in the box: the references of the answers are not there (nnh.grade.withhold)
    withhold = tuple(graded_names(source_files)) if args.sandbox == "bwrap" and judge else ()
    if not args.scheduler:
        prestart_servers(args.jobs, args.sandbox, withhold)  # their nbgrader imports overlap reading the course
    try:
        return _grade(args, out, course, source_files, judge, withhold)
    finally:
        stop_servers()  # the unused ones; the others were closed when the class was done


def _grade(args: argparse.Namespace, out, course, source_files: dict, judge: bool, withhold: tuple[str, ...]) -> int:
    assignment = args.assignment
    source_dir = course.path("source", ".", assignment)
    notebooks = sorted(n for n in source_files if n.endswith(".ipynb") and "/" not in n)
    if not notebooks:
        raise GradeError(f"no notebooks in the source folder {source_dir}")
    students = _students(args, course)
    template = template_gradebook(course, assignment)
    manifest = load_manifest(course, assignment)
    _check_sandbox_user(args, course)
    limits = grading_limits(course, args.timeout, args.memory, args.user, args.max_output, args.sandbox,
                            judge, withhold)
    wall = args.timeout + 60  # the notebook's limit, plus starting the kernel and the feedback
    payloads = _payloads(args, course, students, source_files, template, limits, manifest, out)
    first = preflight_payload(args, course, assignment, source_files, template, limits, manifest, out) \
        if payloads and args.preflight else None
    progress = Progress(len(payloads))
    merge_state = {"merging": False, "ctrl_c": False}

    def finish(result: dict) -> None:
        # one student's merge is atomic with respect to Ctrl-C: see _deferred_ctrl_c
        merge_state["merging"] = True
        try:
            student = result["student"]
            feedback = payloads[student]["feedback"]
            score, max_score = merge(course, assignment, result, notebooks, feedback=feedback)
            manifest[student] = {"digest": payloads[student]["digest"], "feedback": feedback,
                                 "status": result["status"],
                                 "details": result.get("details", []), "score": score, "max_score": max_score,
                                 "seconds": round(result.get("seconds", 0.0), 2)}
            save_manifest(course, assignment, manifest)
            progress.update(student, result["status"])
        finally:
            merge_state["merging"] = False
        if merge_state["ctrl_c"]:
            raise KeyboardInterrupt

    gate = Gate(first, lambda result, payload: check_preflight(result, payload, course, source_files, manifest),
                finish)
    tasks = ([first] if first else []) + list(payloads.values())  # the preflight first, see Gate
    interrupted = False
    try:
        with _deferred_ctrl_c(merge_state):
            if payloads and args.scheduler:
                _grade_on_dask(args.scheduler, tasks, wall, gate)
            elif payloads:
                _grade_locally(args.jobs, tasks, wall, gate)
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: {progress.done} student(s) graded and kept, "
              f"{len(payloads) - progress.done} left as they were", file=sys.stderr)
    _report(args, course, students, manifest, out)
    return 130 if interrupted else 0


def _students(args: argparse.Namespace, course) -> list[str]:
    """The students to consider: every one who submitted, or those of ``--student``."""
    students = find_students(course, args.assignment)
    if args.student:
        unknown = sorted(set(args.student) - set(students))
        if unknown:
            raise GradeError(f"no submission of {args.assignment!r} for: {', '.join(unknown)}")
        students = [s for s in students if s in set(args.student)]
    return students


def _check_sandbox_user(args: argparse.Namespace, course) -> None:
    """``--sandbox limits`` as root: the ``--user`` must be able to run the kernel, and
    the instructor is told when that user can read the course."""
    limited = args.sandbox == "limits" and os.geteuid() == 0 and args.user
    if limited and not args.scheduler and not sandbox_user_usable(args.user):
        raise GradeError(unusable_user_error(args.user))
    if limited and course.root.stat().st_mode & 0o005:
        print(f"note: {course.root} is readable by others, so also by the sandbox user {args.user!r}: "
              "`chmod o-rx` it to hide the course (solutions, gradebook) from student code", file=sys.stderr)


def _payloads(args: argparse.Namespace, course, students: list[str], source_files: dict, template: bytes,
              limits: dict, manifest: dict, out) -> dict[str, dict]:
    """The task of each student to grade (student -> payload), in order: all of them with
    ``--force``, else those whose submission or grading set-up changed since last time."""
    graded_before = gradebook_scores(course, args.assignment)
    hide_tests = hide_tests_setting(course, args.hide_tests)
    payloads = {}
    for student in students:
        payload = make_payload(course, args.assignment, student, source_files, template, limits,
                               hide_tests=hide_tests, feedback=args.feedback)
        record = manifest.get(student)
        if not args.force and record and record.get("digest") == payload["digest"] and student in graded_before \
                and record.get("feedback", True) >= args.feedback:  # graded without feedback: again to write it
            continue
        payloads[student] = payload
    skipped = len(students) - len(payloads)
    if skipped:
        print(f"{skipped} student(s) skipped: submission unchanged since last grading (use --force)", file=out)
    return payloads


def _report(args: argparse.Namespace, course, students: list[str], manifest: dict, out) -> None:
    """The CSV (``--csv``) and the one-line summary, from the course gradebook."""
    scores = gradebook_scores(course, args.assignment)
    rows = []
    for student in students:
        record = manifest.get(student)
        if record is None or student not in scores:
            continue
        score, max_score = scores[student]
        rows.append({"student_id": student, "assignment": args.assignment, "score": score, "max_score": max_score,
                     "status": record["status"]})
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    print(f"{args.assignment}: {len(rows)} student(s): " + ", ".join(f"{v} {k}" for k, v in counts.items() if v),
          file=out)


def main(argv: list[str] | None = None) -> int:
    """``nnh grade ...``."""
    args = build_parser().parse_args(argv)
    try:
        return grade(args)
    except GradeError as error:
        print(f"nnh grade: error: {error}", file=sys.stderr)
        return 2

