"""The preflight: before any student, the assignment's source notebook (the
reference solution) is graded as a student, in the same sandbox, with the same
limits, on the same workers.  Anything short of full marks stops the run with an
error that names the failing tests, their errors and the limits.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor

from nnh.grade.course import Course, digest
from nnh.grade.merge import save_manifest
from nnh.grade.pool import _grade_on_dask, hand_back_server, run_task
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


def _preflight_locally(payload: dict, wall: float) -> dict:
    """Grade ``payload`` on a grading server and hand the (warm) server back to the students."""
    def task() -> dict:
        result = run_task(payload, wall)
        hand_back_server()
        return result

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnh-preflight") as executor:
        return executor.submit(task).result()


def preflight(args: argparse.Namespace, course: Course, assignment: str, source_files: dict, template: bytes,
              limits: dict, wall: float, manifest: dict, out) -> None:
    """Grade the source notebook as a student, with the class's limits; a :class:`GradeError`
    naming the failing tests and the limits unless it gets full marks."""
    submitted = {n: b for n, b in source_files.items() if n.endswith(".ipynb") and "/" not in n}
    key = digest(source_files, {"limits": json.dumps(limits, sort_keys=True).encode(),
                                "scheduler": str(args.scheduler).encode()}, course.config_text)
    if manifest.get(_PREFLIGHT_KEY, {}).get("digest") == key:
        return
    payload = task_payload(course, assignment, PREFLIGHT_STUDENT, source_files, submitted, template, limits, key)
    print(f"preflight: grading the reference solution of {assignment} with the class's limits", file=out)
    if args.scheduler:
        results = []
        _grade_on_dask(args.scheduler, [payload], wall, results.append)
        result = results[0]
    else:
        result = _preflight_locally(payload, wall)
    failures = preflight_failures(result, source_files)
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
            "or skip this check with --no-preflight.")
    manifest[_PREFLIGHT_KEY] = {"digest": key, "seconds": round(result.get("seconds", 0.0), 2)}
    save_manifest(course, assignment, manifest)
