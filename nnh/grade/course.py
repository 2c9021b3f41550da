"""The instructor's course as ``nnh grade`` reads it: its nbgrader configuration and
folders (:class:`Course`), the students who submitted an assignment, the files of
a folder (symbolic links left out, depth and count capped), the template gradebook
that holds only the assignment, and the digest that says whether a student must be graded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat as stat_module
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nnh.grade.settings import GradeError


@dataclass
class Course:
    root: Path
    config_text: str
    coursedir: object  # nbgrader.coursedir.CourseDirectory

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    @property
    def course_id(self) -> str:
        return self.coursedir.course_id

    def path(self, step: str, student: str, assignment: str) -> Path:
        return Path(self.coursedir.format_path(getattr(self.coursedir, f"{step}_directory"), student, assignment))


def load_course(root: str | os.PathLike = ".") -> Course:
    """The course in ``root``, configured by its ``nbgrader_config.py`` as nbgrader would."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    config_file = root / "nbgrader_config.py"
    text = config_file.read_text() if config_file.exists() else ""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config() if text else Config()
    if not config.CourseDirectory.get("root"):
        config.CourseDirectory.root = str(root)
    return Course(root=root, config_text=text, coursedir=CourseDirectory(config=config))


def template_gradebook(course: Course, assignment: str) -> bytes:
    """An sqlite gradebook holding only ``assignment`` (notebooks and cells, no
    students): copied from the course gradebook with nbgrader's API, so the course
    may use any database nbgrader accepts."""
    import nbgrader.api
    from nbgrader.api import Gradebook, MissingEntry

    with tempfile.TemporaryDirectory(prefix="nnh-template-") as tmp, _alembic_in_process(nbgrader.api):
        path = os.path.join(tmp, "gradebook.db")
        with Gradebook(course.db_url, course.course_id) as src, Gradebook(f"sqlite:///{path}", course.course_id) as dst:
            try:
                source = src.find_assignment(assignment)
            except MissingEntry:
                raise GradeError(f"assignment {assignment!r} is not in the gradebook {course.db_url}: "
                                 f"run `nbgrader generate_assignment {assignment}` first") from None
            dst.update_or_create_assignment(assignment, duedate=source.duedate)
            for notebook in source.notebooks:
                dst.update_or_create_notebook(notebook.name, assignment, kernelspec=notebook.kernelspec)
                for cell in notebook.source_cells:
                    dst.update_or_create_source_cell(cell.name, notebook.name, assignment, cell_type=cell.cell_type,
                                                     locked=cell.locked, source=cell.source, checksum=cell.checksum)
                for cell in notebook.grade_cells:
                    dst.update_or_create_grade_cell(cell.name, notebook.name, assignment,
                                                    max_score=cell.max_score, cell_type=cell.cell_type)
                for cell in notebook.solution_cells:
                    dst.update_or_create_solution_cell(cell.name, notebook.name, assignment)
                for cell in notebook.task_cells:
                    dst.update_or_create_task_cell(cell.name, notebook.name, assignment,
                                                   max_score=cell.max_score, cell_type=cell.cell_type)
        return Path(path).read_bytes()


@contextlib.contextmanager
def _alembic_in_process(api):
    """A new sqlite gradebook asks ``alembic heads`` for its schema version, in a
    subprocess (seconds); ask alembic's API in this process instead."""
    original = api.get_alembic_version

    def head() -> str:
        try:
            from alembic.config import Config
            from alembic.script import ScriptDirectory
            from nbgrader.dbutil import ALEMBIC_DIR

            config = Config()
            config.set_main_option("script_location", ALEMBIC_DIR)
            return ScriptDirectory.from_config(config).get_current_head()
        except Exception:  # noqa: BLE001 - nbgrader's own way, then
            return original()

    api.get_alembic_version = head
    try:
        yield
    finally:
        api.get_alembic_version = original


#: How deep and how many files of a submission are read (a deeper or larger one is cut there).
MAX_DEPTH, MAX_FILES = 32, 2000


def _files(directory: Path) -> dict[str, bytes]:
    """The regular files below ``directory`` (relative name → bytes), at most
    :data:`MAX_FILES` of them and :data:`MAX_DEPTH` folders deep.  Anything else is
    left out without being opened: a symbolic link (a submission that links to the
    solutions or to ``/etc/shadow`` must not have the grader, maybe root, read them), a
    named pipe (opening it would wait forever), a device.  No recursion: a folder
    10 000 levels deep is no error."""
    if not directory.is_dir() or directory.is_symlink():
        return {}
    out: dict[str, bytes] = {}
    stack = [(str(directory), 0)]
    while stack and len(out) < MAX_FILES:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != ".ipynb_checkpoints" and depth < MAX_DEPTH:
                    stack.append((entry.path, depth + 1))
            elif entry.is_file(follow_symlinks=False) and len(out) < MAX_FILES:
                try:
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                with os.fdopen(fd, "rb") as fh:
                    if stat_module.S_ISREG(os.fstat(fd).st_mode):  # still the file scandir saw
                        out[os.path.relpath(entry.path, directory)] = fh.read()
    return dict(sorted(out.items()))


def find_students(course: Course, assignment: str) -> list[str]:
    pattern = course.path("submitted", "*", assignment)
    root = Path(course.coursedir.format_path(course.coursedir.submitted_directory, ".", ".")).resolve()
    students = []
    for path in sorted(root.parent.glob(str(pattern.relative_to(root.parent)))):
        if path.is_dir():
            students.append(path.relative_to(root).parts[0])
    return students


def digest(source_files: dict, submitted_files: dict, config_text: str) -> str:
    h = hashlib.sha256(config_text.encode())
    for label, files in (("source", source_files), ("submitted", submitted_files)):
        for name in sorted(files):
            h.update(f"\0{label}\0{name}\0{len(files[name])}\0".encode())
            h.update(files[name])
    return h.hexdigest()
