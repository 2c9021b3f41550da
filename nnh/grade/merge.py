"""The single writer of the course: each student's result goes into the course
gradebook (any ``db_url`` nbgrader accepts), ``autograded/`` and ``feedback/``
(with a banner when the status is not ``ok``), and the manifest remembers what was
graded, from which files, so that an unchanged submission is not graded again.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import shutil
from pathlib import Path

from nnh.grade.course import Course
from nnh.grade.settings import STATUS_TEXT


def _banner(result: dict) -> str:
    status = result["status"]
    items = "".join(f"<li>{html.escape(d)}</li>" for d in result.get("details", []))
    return (f'<div class="nnh-grade-status" style="border:2px solid {"#2a7" if status == "ok" else "#c33"};'
            f'padding:0.6em 1em;margin:1em;font-family:sans-serif">'
            f"<strong>Grading status: {html.escape(status)}</strong> &mdash; {html.escape(STATUS_TEXT[status])}"
            f"{'<ul>' + items + '</ul>' if items else ''}</div>")


def _with_banner(page: bytes, banner: str) -> bytes:
    text = page.decode("utf-8", errors="replace")
    start = text.find("<body")
    if start >= 0:
        end = text.find(">", start) + 1
        text = text[:end] + banner + text[end:]
    else:
        text = banner + text
    return text.encode("utf-8")


def _replace_dir(directory: Path, files: dict[str, bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)


def _feedback_pages(result: dict, assignment: str, notebooks: list[str]) -> dict[str, bytes]:
    """nbgrader's feedback pages, with a banner for a status other than ok or for details,
    and a page with the banner for a notebook nbgrader wrote none of."""
    feedback = dict(result.get("feedback", {}))
    banner = _banner(result) if (result["status"] != "ok" or result.get("details")) else ""
    for name in notebooks:
        html_name = os.path.splitext(name)[0] + ".html"
        if html_name in feedback:
            if banner:
                feedback[html_name] = _with_banner(feedback[html_name], banner)
        else:
            page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title></head>"
                    f"<body><h1>{html.escape(assignment)}: {html.escape(name)}</h1>{_banner(result)}"
                    f"<p>Score: 0</p></body></html>")
            feedback[html_name] = page.encode()
    return feedback


def merge(course: Course, assignment: str, result: dict, notebooks: list[str], *,
          feedback: bool = True) -> tuple[float, float]:
    """Write one student's result into the course: autograded/, feedback/ and the
    gradebook (as nbgrader's ``SaveAutoGrades`` does).  Returns (score, max_score).
    ``feedback=False`` (``--no-feedback``): the student's old feedback for the
    assignment is removed, as it no longer matches the grades; ``nbgrader
    generate_feedback`` writes it later."""
    import warnings

    from nbgrader.api import Gradebook

    warnings.filterwarnings("ignore", message=".*not in session.*")
    student = result["student"]
    _replace_dir(course.path("autograded", student, assignment), result.get("autograded", {}))
    _replace_dir(course.path("feedback", student, assignment), _feedback_pages(result, assignment, notebooks)
                 if feedback else {})
    with Gradebook(course.db_url, course.course_id) as gb:
        gb.update_or_create_student(student)
        kwargs = {}
        if result.get("timestamp"):
            kwargs["timestamp"] = datetime.datetime.fromisoformat(result["timestamp"])
        submission = gb.update_or_create_submission(assignment, student, **kwargs)
        for notebook in submission.notebooks:
            data = result.get("notebooks", {}).get(notebook.name)
            for grade in notebook.grades:
                auto = data["grades"].get(grade.name, {}).get("auto_score") if data else 0.0
                grade.auto_score = auto
                grade.needs_manual_grade = grade.manual_score is not None or auto is None
            for comment in notebook.comments:
                comment.auto_comment = data["comments"].get(comment.name) if data else None
            notebook.late_submission_penalty = data.get("late_submission_penalty") if data else None
        gb.db.commit()
        submission = gb.find_submission(assignment, student)
        return float(submission.score), float(submission.max_score)


def _manifest_path(course: Course, assignment: str) -> Path:
    return Path(course.coursedir.format_path(course.coursedir.autograded_directory, ".", ".")).resolve().parent \
        / course.coursedir.autograded_directory / ".nnh-grade" / f"{assignment}.json"


def load_manifest(course: Course, assignment: str) -> dict:
    path = _manifest_path(course, assignment)
    return json.loads(path.read_text()) if path.exists() else {}


def save_manifest(course: Course, assignment: str, manifest: dict) -> None:
    path = _manifest_path(course, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path)


def gradebook_scores(course: Course, assignment: str) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gb:
        return {s.student.id: (float(s.score), float(s.max_score)) for s in gb.assignment_submissions(assignment)}
