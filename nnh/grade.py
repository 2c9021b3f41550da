"""``nnh grade``: grade a whole class with nbgrader, in parallel, robustly.

Built on top of nbgrader, not instead of it: every student is autograded by
nbgrader's own ``Autograde`` converter and gets nbgrader's own HTML feedback
(see :mod:`nnh._sandbox`), each in its own process, in a throw-away course
directory with its own copy of the gradebook (holding only the assignment),
with a confined kernel.  This process is the single writer of the course: it
merges each student's grades into the course gradebook (any ``db_url``
nbgrader accepts) and writes ``autograded/`` and ``feedback/`` exactly where
nbgrader would, so ``nbgrader export``, formgrader and manual grading keep
working.

Usage (in the course root)::

    nnh grade ASSIGNMENT [--jobs N] [--scheduler ADDRESS] [--timeout SECONDS]
                         [--memory MB] [--max-output MB] [--csv PATH] [--force] [--student ID ...]
                         [--sandbox bwrap|limits] [--no-preflight]

Every student's kernel runs in a bubblewrap box of its own (``--sandbox bwrap``, the
default; see :mod:`nnh._sandbox`): its own PID, network, IPC and mount namespaces, no
file of the course, a private ``/tmp``, and as root a user id no other kernel has.

Before the first student, a *preflight* grades the assignment's source notebook (the
reference solution) in the same sandbox, with the same limits, on the same workers.
If it does not get full marks, ``nnh grade`` stops with an error that names the failing
tests, their errors and the limits, instead of taking points from every honest student
(e.g. a ``--memory`` cap too low for TensorFlow, a package missing on the workers).
A passed preflight is remembered for the same source, configuration and limits.

Statuses (CSV column ``status``):

``ok``           graded normally (wrong answers and errors in the student's own
                 cells are just lost points)
``timeout``      a cell hit the per-cell limit, or the notebook the per-student limit
``kernel_died``  the kernel exited or crashed; the cells before it keep their points
``memory``       the student's code exceeded the memory cap
``tampered``     the student's cells change what the tests rely on: the tests after
                 the first such cell score zero
``error``        nothing gradable: empty folder, invalid notebook, grader failure
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import functools
import hashlib
import html
import json
import os
import pickle
import shutil
import signal
import stat as stat_module
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("ok", "timeout", "kernel_died", "memory", "tampered", "error")
STATUS_TEXT = {
    "ok": "graded normally",
    "timeout": "a cell or the whole notebook ran longer than the time limit",
    "kernel_died": "the Python kernel died (os._exit, a crash, or a resource limit); later cells were not run",
    "memory": "the notebook used more memory than allowed",
    "tampered": "your code changes what the tests rely on (modules, builtins, the test helpers); "
                "the tests that ran after it score zero",
    "error": "the submission could not be graded",
}
DEFAULT_TIMEOUT = 600
DEFAULT_MEMORY = 4096  # MB: resident in a cgroup; as address space TensorFlow needs about 3 GB (it reserves more
#                        than it uses): 2 GB aborts at import
DEFAULT_MAX_OUTPUT = 8.0  # MB of outputs a student's notebook keeps (a cell: at most CELL_OUTPUT_MB of it)
CELL_OUTPUT_MB = 1.0
CSV_FIELDS = ["student_id", "assignment", "score", "max_score", "status"]
_SANDBOX = str(Path(__file__).resolve().with_name("_sandbox.py"))


class GradeError(RuntimeError):
    """A problem with the course or the command line (not with a student)."""


# --------------------------------------------------------------------------- the course


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


# --------------------------------------------------------------------------- one student's task


def grading_limits(course: Course, timeout: float, memory: int, user: str,
                   max_output: float = DEFAULT_MAX_OUTPUT, sandbox: str = "bwrap") -> dict:
    """The per-student limits: the course's per-cell limit (nbgrader's
    ``Execute.timeout``, at most ``timeout``), the notebook's, memory, CPU, and the bytes
    of output kept for the notebook (``max_output`` MB) and for one cell (at most
    :data:`CELL_OUTPUT_MB` of it)."""
    cell_timeout = course.coursedir.config.Execute.get("timeout", 30) or timeout
    notebook_output = int(max_output * 2**20)
    return {"memory": memory, "cell_timeout": int(max(1, min(cell_timeout, timeout))),
            "notebook_timeout": float(timeout), "cpu": int(timeout * (os.cpu_count() or 1) + 60), "user": user,
            "sandbox": sandbox,
            "notebook_output": notebook_output, "cell_output": min(int(CELL_OUTPUT_MB * 2**20), notebook_output)}


def make_payload(course: Course, assignment: str, student: str, source_files: dict, template: bytes,
                 limits: dict, *, hide_tests: bool = True) -> dict:
    """Everything grading ``student`` needs, with no access to the course (see :func:`run_task`).
    ``hide_tests``: the feedback shows the hidden tests' results and messages, not their code."""
    submitted = _files(course.path("submitted", student, assignment))
    return task_payload(course, assignment, student, source_files, submitted, template, limits,
                        digest(source_files, submitted, course.config_text), hide_tests=hide_tests)


def task_payload(course: Course, assignment: str, student: str, source_files: dict, submitted: dict,
                 template: bytes, limits: dict, key: str, *, hide_tests: bool = True) -> dict:
    """The task :func:`run_task` grades: ``submitted`` (name → bytes) as ``student``'s files."""
    return {"assignment": assignment, "student": student, "config_text": course.config_text,
            "source_files": source_files, "submitted_files": submitted, "template_db": template,
            "limits": limits, "hide_tests": hide_tests, "digest": key}


def hide_tests_setting(course: Course, flag: bool | None) -> bool:
    """``--hide-tests``/``--show-hidden-tests`` if given, else the course's
    ``c.NnhGrade.hide_tests`` (``nbgrader_config.py``), else True."""
    if flag is not None:
        return flag
    section = course.coursedir.config.get("NnhGrade", {})
    return bool(section.get("hide_tests", True))


@functools.lru_cache(maxsize=None)
def sandbox_problem() -> str:
    """Why the bubblewrap sandbox cannot run on this machine ('' if it can): a box
    made exactly as a kernel's is, importing what a kernel imports."""
    if shutil.which("bwrap") is None:
        return ("the sandbox needs bubblewrap, which is not installed (Debian: apt-get install bubblewrap); "
                "or grade with --sandbox limits (resource limits only, see the page Grading a class)")
    from nnh import _sandbox  # light: no TensorFlow

    with tempfile.TemporaryDirectory(prefix="nnh-box-check-") as shared:
        os.chmod(shared, 0o711)
        problem = _sandbox._run_quietly([*_sandbox.box_command(shared), "--", sys.executable, "-c",
                                         "import ipykernel, nnh"])
    if problem:
        return (f"the sandbox (bubblewrap) does not work here: {problem.strip()} -- when not run as root it needs "
                "user namespaces; or grade with --sandbox limits (see the page Grading a class)")
    return ""


def unusable_user_error(user: str) -> str:
    """The error of ``--sandbox limits`` as root when ``user`` cannot run this Python."""
    return (f"--sandbox limits: the user {user!r} cannot run {sys.executable} (is it in a private folder, such as "
            "pyenv's under /root?): install the course's Python where others can run it, or use the default "
            "sandbox (--sandbox bwrap), which needs no such user")


@functools.lru_cache(maxsize=None)
def sandbox_user_usable(user: str) -> bool:
    """Can ``user`` run this Python and import the kernel's packages?  (Not when the
    interpreter lives in a private folder, e.g. pyenv under ``/root``.)"""
    if not user or os.geteuid() != 0:
        return False
    try:
        import pwd

        account = pwd.getpwnam(user)
        check = subprocess.run([sys.executable, "-c", "import ipykernel, nnh"], user=account.pw_uid,
                               group=account.pw_gid, extra_groups=[], cwd="/", capture_output=True, timeout=120,
                               env={"PATH": os.environ.get("PATH", ""), "HOME": "/"})
        return check.returncode == 0
    except (KeyError, OSError, subprocess.SubprocessError):
        return False


class _Server:
    """One long-lived ``python nnh/_sandbox.py serve`` process: it imports nbgrader
    once and then grades one student after the other, each in a fresh temporary
    course with a fresh confined kernel.  A student who runs out of time, or whose
    grading kills the process, costs a restart; the next student gets a new one."""

    START_TIMEOUT = 300  # importing nbgrader on a loaded machine
    MAX_TASKS = 50  # start afresh now and then: whatever a library leaks stays bounded
    IDLE = 300  # seconds a server waits for a task before it exits (idle Dask workers)

    def __init__(self, sandbox: str = "bwrap") -> None:
        self.sandbox = sandbox  # its kernels' sandbox: "bwrap" (a box each) or "limits"
        self.process: subprocess.Popen | None = None
        self.tmp: str | None = None  # the server's temporary folder: everything it makes, removed with it
        self.log = None
        self.tasks = 0
        self.buffer = b""
        self.ready = False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process (it then imports nbgrader; :meth:`start` waits for it)."""
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0", PYTHONUNBUFFERED="1",
                   MALLOC_ARENA_MAX="2", NNH_GRADE_SANDBOX=self.sandbox)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        self._remove_tmp()
        self.tmp = env["TMPDIR"] = tempfile.mkdtemp(prefix="nnh-server-")
        os.chmod(self.tmp, 0o711)  # a kernel passes through to its own folders
        if self.log is not None:
            self.log.close()
        self.log = tempfile.TemporaryFile(prefix="nnh-server-")
        self.buffer, self.tasks, self.ready = b"", 0, False
        self.process = subprocess.Popen([sys.executable, _SANDBOX, "serve", "--idle", str(self.IDLE)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
                                        start_new_session=True)
        with _SERVERS_LOCK:
            _SERVERS.add(self)

    def start(self) -> None:
        """Spawn the process if it is not running, and wait until it is ready."""
        if not self.alive():
            self.spawn()
        if self.ready:
            return
        try:
            line = self._read_line(self.START_TIMEOUT)
        except TimeoutError:
            line = None
        if line != "ready":
            self.stop()
            raise RuntimeError(f"the grading process did not start: {self.stderr_since(0)[-1500:]}")
        self.ready = True

    def _read_line(self, timeout: float) -> str | None:
        """The next line the server answers; None at its end; TimeoutError."""
        import select

        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().strip()

    def stderr_since(self, offset: int) -> str:
        self.log.seek(offset)
        return self.log.read().decode(errors="replace")

    def grade(self, payload_path: str, result_path: str, wall_timeout: float) -> tuple[str, str, int | None]:
        """Send one task: ("done" | "timeout" | "died" | "lost", its stderr, exit code).
        "lost": the server was gone before it read the task (send it to another one)."""
        offset = self.log.seek(0, os.SEEK_END)
        deadline = time.monotonic() + wall_timeout
        started = False
        try:
            self.process.stdin.write((json.dumps([payload_path, result_path]) + "\n").encode())
            self.process.stdin.flush()
            line = self._read_line(wall_timeout)
            if line == "started":
                started = True
                line = self._read_line(deadline - time.monotonic())
        except TimeoutError:
            stderr = self.stderr_since(offset)
            self.stop()
            return "timeout", stderr, None
        except (OSError, ValueError):  # a broken pipe, or stopped from another thread (Ctrl-C)
            line = None
        if line is None:  # the server is gone: before the task (idle exit, killed while idle) or under it
            returncode = self.process.wait()
            stderr = self.stderr_since(offset)
            self.stop()
            return ("died" if started else "lost"), stderr, returncode
        self.tasks += 1
        stderr = self.stderr_since(offset)
        if self.tasks >= self.MAX_TASKS:
            self.close()
        return "done", stderr, 0

    def close(self) -> None:
        """End the server when it is idle (end of its stdin)."""
        if self.alive():
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.stop()

    def stop(self) -> None:
        """Kill the server and what it started (its kernels die with it)."""
        if self.process is not None:
            _kill_group(self.process)
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        self._remove_tmp()
        with _SERVERS_LOCK:
            _SERVERS.discard(self)

    def _remove_tmp(self) -> None:
        """What a killed server could not remove itself (a box, a zygote's socket, a student's copy)."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _kill_group(process: subprocess.Popen) -> None:
    """Kill ``process`` and its process group (it leads its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        try:
            process.kill()
        except ProcessLookupError:
            pass
    process.wait()


_SERVERS: set = set()
_PRESTARTED: list = []
_SERVERS_LOCK = threading.Lock()
_THREAD = threading.local()


def stop_servers() -> None:
    """Kill every grading server of this process (Ctrl-C, the end of a run, or
    ``client.run`` on the Dask workers)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS)
        _PRESTARTED.clear()
    for server in servers:
        server.stop()


def close_servers() -> None:
    """End every grading server of this process once it is idle."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS)
        _PRESTARTED.clear()
    for server in servers:
        server.close()


def prestart_servers(count: int, sandbox: str = "bwrap") -> None:
    """Spawn ``count`` servers now, so that their imports overlap the rest of the set-up."""
    for _ in range(count):
        server = _Server(sandbox)
        server.spawn()
        with _SERVERS_LOCK:
            _PRESTARTED.append(server)


def _thread_server(sandbox: str) -> _Server:
    """This thread's server (a ``nnh grade`` job, or a Dask worker thread), started if
    needed, whose kernels run in ``sandbox``."""
    server = getattr(_THREAD, "server", None)
    if server is not None and server.sandbox != sandbox:
        server.close()
    if server is None or not server.alive() or server.sandbox != sandbox:
        with _SERVERS_LOCK:
            spare = _PRESTARTED.pop() if _PRESTARTED and _PRESTARTED[-1].sandbox == sandbox else None
        server = _THREAD.server = spare or _Server(sandbox)
    server.start()
    return server


def run_task(payload: dict, wall_timeout: float) -> dict:
    """Grade one student in this thread's grading server (see :class:`_Server`).
    Runs wherever it is called: in a thread of ``nnh grade`` or on a Dask worker."""
    student = payload["student"]
    sandbox = payload["limits"].get("sandbox", "bwrap")
    user = payload["limits"].get("user", "") if sandbox == "limits" and os.geteuid() == 0 else ""
    if user and not sandbox_user_usable(user):
        return {"student": student, "assignment": payload["assignment"], "status": "error", "notebooks": {},
                "autograded": {}, "feedback": {}, "timestamp": None, "seconds": 0.0,
                "details": [unusable_user_error(user)]}
    with tempfile.TemporaryDirectory(prefix="nnh-task-") as tmp:
        payload_path, result_path = os.path.join(tmp, "payload.pkl"), os.path.join(tmp, "result.pkl")
        with open(payload_path, "wb") as fh:
            pickle.dump(payload, fh)
        started = time.monotonic()
        outcome, stderr, returncode = "died", "", None
        for _ in range(2):  # again only if the server was gone before it read the task
            try:
                server = _thread_server(sandbox)
            except RuntimeError as error:
                outcome, stderr = "died", str(error)
                break
            started = time.monotonic()
            outcome, stderr, returncode = server.grade(payload_path, result_path, wall_timeout)
            if outcome != "lost":
                break
        elapsed = time.monotonic() - started
        if outcome == "done" and os.path.exists(result_path):
            with open(result_path, "rb") as fh:
                result = pickle.load(fh)
        else:
            result = {"student": student, "assignment": payload["assignment"], "notebooks": {}, "autograded": {},
                      "feedback": {}, "timestamp": None, "details": []}
            if outcome == "timeout":
                result["status"] = "timeout"
                result["details"].append(f"grading took longer than {wall_timeout:.0f} s and was stopped "
                                         "(an infinite loop?)")
            elif any(s in stderr for s in ("MemoryError", "bad_alloc", "Cannot allocate memory", "cannot allocate")):
                result["status"] = "memory"
                result["details"].append("the grader ran out of memory")
            else:
                result["status"] = "error"
                result["details"].append(f"the grader exited with code {returncode}: {stderr[-1000:]}")
        if result["status"] in {"kernel_died"} and any(s in stderr for s in ("MemoryError", "bad_alloc",
                                                                              "cannot allocate memory")):
            result["status"] = "memory"
            result["details"].append(f"out of memory: the limit is {payload['limits']['memory']} MB")
        result["seconds"] = elapsed
        return result


# --------------------------------------------------------------------------- merging (single writer)


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


def merge(course: Course, assignment: str, result: dict, notebooks: list[str]) -> tuple[float, float]:
    """Write one student's result into the course: autograded/, feedback/ and the
    gradebook (as nbgrader's ``SaveAutoGrades`` does).  Returns (score, max_score)."""
    import warnings

    from nbgrader.api import Gradebook

    warnings.filterwarnings("ignore", message=".*not in session.*")
    student = result["student"]
    _replace_dir(course.path("autograded", student, assignment), result.get("autograded", {}))
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
    _replace_dir(course.path("feedback", student, assignment), feedback)
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


# --------------------------------------------------------------------------- progress


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


# --------------------------------------------------------------------------- the command


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
    if not args.scheduler:
        prestart_servers(args.jobs, args.sandbox)  # their nbgrader imports overlap reading the course
    try:
        return _grade(args, out)
    finally:
        stop_servers()  # the unused ones; the others were closed when the class was done


def _grade(args: argparse.Namespace, out) -> int:
    course = load_course(args.course)
    assignment = args.assignment
    source_dir = course.path("source", ".", assignment)
    source_files = _files(source_dir)
    notebooks = sorted(n for n in source_files if n.endswith(".ipynb") and "/" not in n)
    if not notebooks:
        raise GradeError(f"no notebooks in the source folder {source_dir}")
    students = find_students(course, assignment)
    if args.student:
        unknown = sorted(set(args.student) - set(students))
        if unknown:
            raise GradeError(f"no submission of {assignment!r} for: {', '.join(unknown)}")
        students = [s for s in students if s in set(args.student)]
    template = template_gradebook(course, assignment)
    manifest = load_manifest(course, assignment)
    graded_before = gradebook_scores(course, assignment)
    limited = args.sandbox == "limits" and os.geteuid() == 0 and args.user
    if limited and not args.scheduler and not sandbox_user_usable(args.user):
        raise GradeError(unusable_user_error(args.user))
    if limited and course.root.stat().st_mode & 0o005:
        print(f"note: {course.root} is readable by others, so also by the sandbox user {args.user!r}: "
              "`chmod o-rx` it to hide the course (solutions, gradebook) from student code", file=sys.stderr)

    limits = grading_limits(course, args.timeout, args.memory, args.user, args.max_output, args.sandbox)
    wall = args.timeout + 60  # the notebook's limit, plus starting the kernel and the feedback

    todo, payloads = [], {}
    hide_tests = hide_tests_setting(course, args.hide_tests)
    for student in students:
        payload = make_payload(course, assignment, student, source_files, template, limits, hide_tests=hide_tests)
        record = manifest.get(student)
        if (not args.force and record and record.get("digest") == payload["digest"] and student in graded_before):
            continue
        payloads[student] = payload
        todo.append(student)
    skipped = len(students) - len(todo)
    if skipped:
        print(f"{skipped} student(s) skipped: submission unchanged since last grading (use --force)", file=out)

    if todo and args.preflight:
        preflight(args, course, assignment, source_files, template, limits, wall, manifest, out)
    progress = Progress(len(todo))
    interrupted = False
    merge_state = {"merging": False, "ctrl_c": False}

    def finish(result: dict) -> None:
        # one student's merge is atomic with respect to Ctrl-C: see _deferred_ctrl_c
        merge_state["merging"] = True
        try:
            student = result["student"]
            score, max_score = merge(course, assignment, result, notebooks)
            manifest[student] = {"digest": payloads[student]["digest"], "status": result["status"],
                                 "details": result.get("details", []), "score": score, "max_score": max_score,
                                 "seconds": round(result.get("seconds", 0.0), 2)}
            save_manifest(course, assignment, manifest)
            progress.update(student, result["status"])
        finally:
            merge_state["merging"] = False
        if merge_state["ctrl_c"]:
            raise KeyboardInterrupt

    try:
        with _deferred_ctrl_c(merge_state):
            if todo and args.scheduler:
                _grade_on_dask(args.scheduler, [payloads[s] for s in todo], wall, finish)
            elif todo:
                _grade_locally(args.jobs, [payloads[s] for s in todo], wall, finish)
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: {progress.done} student(s) graded and kept, "
              f"{len(todo) - progress.done} left as they were", file=sys.stderr)

    scores = gradebook_scores(course, assignment)
    rows = []
    for student in students:
        record = manifest.get(student)
        if record is None or student not in scores:
            continue
        score, max_score = scores[student]
        rows.append({"student_id": student, "assignment": assignment, "score": score, "max_score": max_score,
                     "status": record["status"]})
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    print(f"{assignment}: {len(rows)} student(s): " + ", ".join(f"{v} {k}" for k, v in counts.items() if v), file=out)
    return 130 if interrupted else 0


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
        server = getattr(_THREAD, "server", None)
        if server is not None and server.alive():
            _THREAD.server = None
            with _SERVERS_LOCK:
                _PRESTARTED.append(server)
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


@contextlib.contextmanager
def _deferred_ctrl_c(state: dict):
    """Ctrl-C raises KeyboardInterrupt, except while ``state["merging"]``: then it
    sets ``state["ctrl_c"]`` and the merge raises it when done.  (Not by blocking
    SIGINT during the merge: while the main thread blocks it, Linux hands a Ctrl-C
    to another thread of the process, e.g. one of OpenBLAS's.)  A SIGINT that is
    ignored (a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum, frame):
        if state["merging"]:
            state["ctrl_c"] = True
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _grade_locally(jobs: int, payloads: list[dict], wall: float, finish) -> None:
    executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="nnh-grade")
    futures = {executor.submit(run_task, p, wall): p["student"] for p in payloads}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                finish(future.result())
    except BaseException:
        for future in pending:
            future.cancel()
        stop_servers()  # the students being graded are dropped, their kernels die with the servers
        executor.shutdown(wait=True, cancel_futures=True)
        stop_servers()
        raise
    executor.shutdown(wait=True)
    close_servers()


def _grade_on_dask(address: str, payloads: list[dict], wall: float, finish) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - depends on the installation
        raise GradeError("--scheduler needs Dask: pip install 'dask[distributed]'") from None
    with Client(address) as client:
        futures = [client.submit(run_task, p, wall, pure=False, retries=0,
                                 key=f"nnh-grade-{p['assignment']}-{p['student']}-{p['digest'][:12]}")
                   for p in payloads]
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as error:  # noqa: BLE001 - a lost worker is the student's "error"
                    payload = payloads[futures.index(future)]
                    result = {"student": payload["student"], "assignment": payload["assignment"], "status": "error",
                              "details": [f"the Dask task failed: {type(error).__name__}: {error}"],
                              "notebooks": {}, "autograded": {}, "feedback": {}, "timestamp": None}
                finish(result)
        except BaseException:
            client.cancel(futures)
            _on_workers(client, stop_servers)  # a running task cannot be cancelled: kill its grading
            raise
        _on_workers(client, close_servers)  # idle servers would otherwise wait for _Server.IDLE to end


def _on_workers(client, function) -> None:
    try:
        client.run(function)
    except Exception:  # noqa: BLE001 - a worker that is gone has no server either
        pass


def main(argv: list[str] | None = None) -> int:
    """``nnh grade ...`` (also usable as ``python -m nnh.grade ...``)."""
    args = build_parser().parse_args(argv)
    try:
        return grade(args)
    except GradeError as error:
        print(f"nnh grade: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
