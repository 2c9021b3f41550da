"""The preflight: the assignment's source notebook (the reference solution) is graded
as a student, in the same sandbox, with the same limits, on the same workers, first,
and no student's grade is kept before it has passed.  Anything short of full marks
stops the run with an error that names the failing tests, their errors and the
limits.
"""

from __future__ import annotations

import argparse
import json

from nnh.grade.course import Course, digest
from nnh.grade.merge import save_manifest
from nnh.grade.settings import GradeError
from nnh.grade.task import task_payload


PREFLIGHT_STUDENT = "nnh-preflight"
_PREFLIGHT_KEY = ".preflight"  # the manifest entry of the last passed preflight


def source_points(source_files: dict) -> dict[str, dict[str, float]]:
    """notebook name (without ``.ipynb``) → {grade_id: points} of its test cells."""
    points = {}
    for name, blob in source_files.items():
        if name.endswith(".ipynb") and "/" not in name:
            cells = json.loads(blob)["cells"]
            points[name[:-len(".ipynb")]] = {
                c["metadata"]["nbgrader"]["grade_id"]: float(c["metadata"]["nbgrader"].get("points", 0))
                for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    return points


def _cell_errors(autograded: dict) -> dict[str, str]:
    """grade_id → the last line of the error a graded cell raised, from autograded notebooks."""
    errors = {}
    for name, blob in autograded.items():
        if not name.endswith(".ipynb"):
            continue
        for cell in json.loads(blob).get("cells", []):
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and grade_id:
                    errors[grade_id] = f"{output.get('ename')}: {str(output.get('evalue'))[:300]}"
    return errors


def preflight_failures(result: dict, source_files: dict) -> list[str]:
    """The test cells of the reference solution that did not get full marks, with why."""
    errors = _cell_errors(result.get("autograded", {}))
    failures = []
    for notebook, cells in source_points(source_files).items():
        data = result.get("notebooks", {}).get(notebook)
        for grade_id, points in cells.items():
            score = data["grades"].get(grade_id, {}).get("auto_score") if data else None
            if score is None or score < points:
                why = errors.get(grade_id, "not run" if data else "the notebook was not graded")
                failures.append(f"{notebook}/{grade_id}: {score or 0:g} of {points:g} points ({why})")
    return failures


def preflight_payload(args: argparse.Namespace, course: Course, assignment: str, source_files: dict,
                      template: bytes, limits: dict, manifest: dict, out) -> dict | None:
    """The task that grades the source notebook as a student, with the class's limits;
    None if a preflight with the same source, configuration and limits passed before."""
    submitted = {n: b for n, b in source_files.items() if n.endswith(".ipynb") and "/" not in n}
    key = digest(source_files, {"limits": json.dumps(limits, sort_keys=True).encode(),
                                "scheduler": str(args.scheduler).encode()}, course.config_text)
    if manifest.get(_PREFLIGHT_KEY, {}).get("digest") == key:
        return None
    print(f"preflight: grading the reference solution of {assignment} with the class's limits", file=out)
    # no feedback: its scores and errors are all it is for
    return task_payload(course, assignment, PREFLIGHT_STUDENT, source_files, submitted, template, limits, key,
                        feedback=False)


def check_preflight(result: dict, payload: dict, course: Course, source_files: dict, manifest: dict) -> None:
    """A :class:`GradeError` naming the failing tests and the limits unless the preflight's
    ``result`` has full marks; else the pass is remembered in the manifest."""
    failures = preflight_failures(result, source_files)
    limits, assignment = payload["limits"], payload["assignment"]
    if result["status"] != "ok" or failures:
        details = "; ".join(result.get("details", []))[:1500]
        raise GradeError(
            f"preflight failed: the reference solution of {assignment} gets status {result['status']!r} and "
            f"loses points in the sandbox, so honest students would too. Failing tests: "
            f"{'; '.join(failures[:3]) or 'none recorded'}"
            + (f" and {len(failures) - 3} more. " if len(failures) > 3 else ". ")
            + (f"The grader says: {details}. " if details else "")
            + f"Limits: --memory {limits['memory']} MB (of resident memory where the sandbox has a cgroup, "
            f"else of address space, of which TensorFlow kernels need about 3000 MB; 0 = no cap), --timeout {limits['notebook_timeout']:g} s per notebook, "
            f"{limits['cell_timeout']} s per cell. Raise the limit or install what is missing, "
            "or skip this check with --no-preflight. No student's grade was kept.")
    manifest[_PREFLIGHT_KEY] = {"digest": payload["digest"], "seconds": round(result.get("seconds", 0.0), 2)}
    save_manifest(course, assignment, manifest)


class Gate:
    """Holds the students' results back until the preflight's result has come and
    passed: the preflight is graded first, alongside the first students (its slot
    would otherwise wait for it alone), and nothing of a student is kept before it
    passes.  ``gate(result)`` takes every result as it arrives; a failed preflight
    raises its :class:`GradeError` there, which stops the run."""

    def __init__(self, payload: dict | None, check, finish) -> None:
        self.payload, self.check, self.finish = payload, check, finish
        self.open = payload is None
        self.waiting: list[dict] = []

    def __call__(self, result: dict) -> None:
        if self.open:
            self.finish(result)
        elif result["student"] == PREFLIGHT_STUDENT:
            self.check(result, self.payload)
            self.open = True
            waiting, self.waiting = self.waiting, []
            for held in waiting:
                self.finish(held)
        else:
            self.waiting.append(result)
