"""The grading process's side of the judge (:mod:`nnh.grade.judge`): start it,
hand it a test cell, start the kernel's loop when the judge asks (the two then
talk over a Unix socket), and turn its verdict into the cell's outputs (which
nbgrader then scores)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from nbformat.notebooknode import NotebookNode

from nnh.grade.feedback import HIDDEN_REGION
from nnh.grade.judge import KERNEL_PART

#: The note a cell gets when the kernel's run of its visible tests failed but the judge's passed.
KERNEL_ONLY_NOTE = "[nnh grade: in your kernel this test cell raised"


def visible_part(source: str) -> str:
    """What the student's kernel runs of a test cell: its code without the hidden tests."""
    return HIDDEN_REGION.sub("", source)


def judged_part(source: str) -> str:
    """What the judge runs of a test cell: all of it; of a cell with a kernel part
    (:data:`nnh.grade.judge.KERNEL_PART`), only its hidden tests (its visible tests put
    the student's objects inside Keras too; the kernel part hands their results to the
    hidden tests as values)."""
    if not KERNEL_PART.search(source):
        return source
    return "".join(hidden.group(0) for hidden in HIDDEN_REGION.finditer(source))


def notebook_imports(notebooks) -> dict[str, str]:
    """What the cells of the source ``notebooks`` that the student does not write (neither
    answers nor tests) import: the name each ``import`` binds -> the module (``np`` ->
    ``numpy``).  The judge binds these names to its own modules (see :mod:`nnh.grade.judge`)."""
    import ast

    from nnh.grade.scan import _strip_magics

    imports = {}
    for nb in notebooks:
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.get("cell_type") != "code" or meta.get("solution") or meta.get("grade"):
                continue
            try:
                tree = ast.parse(_strip_magics(cell.source))
            except SyntaxError:
                continue
            for node in tree.body:
                for alias in node.names if isinstance(node, ast.Import) else ():
                    top = alias.name.split(".")[0]
                    imports[alias.asname or top] = alias.name if alias.asname else top
    return imports


class JudgeGone(RuntimeError):
    """The judge process ended or did not answer in time."""


#: The environment variable that names the judge zygote's socket (:func:`start_judges`).
JUDGES_ENV = "NNH_GRADE_JUDGES"
_JUDGES: list = []  # (zygote process, its folder) of this nnh grade run


def start_judges() -> None:
    """Start the judge zygote of this ``nnh grade`` run (:func:`nnh.grade.judge.zygote`):
    it imports Keras once, while the run reads the course, and every grading process
    started afterwards forks its judge from it instead of importing Keras again."""
    import socket
    import tempfile

    folder = tempfile.mkdtemp(prefix="nnh-judges-")  # 0700: the grader's alone
    path = os.path.join(folder, "judges.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # listening before the zygote runs
    listener.bind(path)
    listener.listen(64)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0", PYTHONHASHSEED="0")
    try:
        process = subprocess.Popen([sys.executable, "-P", "-m", "nnh.grade.judge", "--zygote", str(listener.fileno())],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=env, cwd="/", start_new_session=True, pass_fds=[listener.fileno()])
    finally:
        listener.close()
    _JUDGES.append((process, folder))
    os.environ[JUDGES_ENV] = path


def stop_judges() -> None:
    """End the judge zygote and every judge it forked (its process group)."""
    import shutil
    import signal

    os.environ.pop(JUDGES_ENV, None)
    while _JUDGES:
        process, folder = _JUDGES.pop()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        shutil.rmtree(folder, ignore_errors=True)


class _ForkedJudge:
    """A judge forked by the judge zygote (:func:`start_judges`), with what
    :class:`JudgeClient` uses of a ``Popen``: ``stdin``, ``stdout``, ``pid`` (None until
    the judge's first line has been read), ``poll``, ``kill``, ``wait``."""

    def __init__(self, path: str, memory: int) -> None:
        import socket

        self.connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.connection.connect(path)
            self.connection.sendall(json.dumps({"memory": memory}).encode() + b"\n")
        except OSError:
            self.connection.close()
            raise
        self.stdin = self.connection.makefile("wb")
        self.stdout = self.connection
        self.pid: int | None = None
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self.pid is not None and not os.path.exists(f"/proc/{self.pid}"):
            self.returncode = 0
        return self.returncode

    def kill(self) -> None:
        import signal

        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.returncode = -signal.SIGKILL
        for stream in (self.stdin, self.connection):
            try:
                stream.close()
            except OSError:
                pass

    def wait(self) -> int:
        deadline = time.monotonic() + 5
        while self.pid is not None and os.path.exists(f"/proc/{self.pid}") and time.monotonic() < deadline:
            time.sleep(0.01)  # not our child: the zygote reaps it
        return self.returncode if self.returncode is not None else 0


class JudgeClient:
    """One judge process, started on first use and restarted after it is lost;
    :meth:`run` decides one test cell."""

    #: Seconds the judge may take beyond a cell's time limit (its own work on the kernel's
    #: answers) before it is given up (and started again for the next cell).
    GRACE = 20.0

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self._buffer = b""
        self.socket: str | None = None  # where the current notebook's kernel connects
        self.earlier: list[str] = []  # the test cells of the current notebook the judge has run
        self.modules: dict[str, str] = {}  # what the current notebook's own cells import (notebook_imports)
        self.memory = 0  # MB of address space (0: no cap), see nnh.grade.judge.cap_memory

    def _start(self) -> None:
        self._buffer = b""
        if os.environ.get(JUDGES_ENV):  # forked from this run's judge zygote (Keras imported there once)
            try:
                self.process = _ForkedJudge(os.environ[JUDGES_ENV], self.memory)
                return
            except OSError:
                pass  # no zygote (it died): a judge of our own
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0", PYTHONHASHSEED="0")
        self.process = subprocess.Popen([sys.executable, "-P", "-m", "nnh.grade.judge", "--memory", str(self.memory)],
                                        stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                        cwd="/")  # -P and "/": nothing is imported from a folder students write

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, memory: int | None = None) -> None:
        """Start the judge if it is not running (it imports its modules at once), with its
        address space capped at ``memory`` MB (see :func:`nnh.grade.judge.cap_memory`)."""
        if memory is not None and memory != self.memory:
            self.stop()
            self.memory = memory
        if not self.alive():
            self._start()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.pid is None:  # a forked judge not heard from yet: its first line is its id
                try:
                    self._receive(time.monotonic() + 5, stopping=True)
                except (JudgeGone, ValueError, OSError):
                    pass
            self.process.kill()
            self.process.wait()
            self.process = None

    def _send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, AttributeError):
            self.stop()
            raise JudgeGone("the judge process ended") from None

    def _receive(self, deadline: float, stopping: bool = False) -> dict | None:
        """The judge's next message (None once a forked judge's id was read, ``stopping``)."""
        while True:
            fd = self.process.stdout.fileno()
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    if not stopping:
                        self.stop()
                    raise JudgeGone("the judge did not answer in time")
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    if not stopping:
                        self.stop()
                    raise JudgeGone("the judge process ended")
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
            if self.process.pid is None:  # a forked judge's first line: its process id
                self.process.pid = int(line)
                if stopping:
                    return None
                continue
            return json.loads(line)

    def reset(self, socket: str, modules: dict[str, str] | None = None, timeout: float = 60) -> bool:
        """A new notebook: the judge forgets every name of the last one, binds ``modules``
        (:func:`notebook_imports`) to its own, and listens for the kernel at the Unix
        socket ``socket``.  False if it cannot."""
        self.socket, self.earlier, self.modules = socket, [], dict(modules or {})
        return self._reset(timeout)

    def _reset(self, timeout: float = 60) -> bool:
        self.start()
        try:
            self._send({"op": "reset", "socket": self.socket, "modules": self.modules, "earlier": self.earlier})
            return bool(self._receive(time.monotonic() + timeout).get("ready"))
        except JudgeGone:
            return False

    def run(self, cell: str, source: str, start_loop, timeout: float) -> dict:
        """The judge's verdict on test cell ``cell`` (its whole ``source``).
        ``start_loop()`` asks the student's kernel to serve the judge (see
        :class:`nnh.grade.judge.KernelChannel`), which must answer within ``timeout``
        seconds.  A judge lost in an earlier cell is started again first; it takes
        nothing the earlier test cells bound from the kernel."""
        if not self.alive():
            if self.socket is None or not self._reset():
                return {"ok": False, "ename": "JudgeError", "evalue": "the grader's judge could not be started"}
        self.earlier.append(source)
        deadline = time.monotonic() + timeout + self.GRACE
        try:
            self._send({"op": "run", "cell": cell, "source": source, "timeout": timeout})
            while True:
                message = self._receive(deadline)
                if "verdict" in message:
                    return message["verdict"]
                if message.get("loop"):
                    start_loop()
        except JudgeGone as error:
            return {"ok": False, "ename": "CellTimeoutError" if "in time" in str(error) else "JudgeError",
                    "evalue": f"the grader's run of this test did not finish: {error} (limit {timeout:.0f} s)"}


_SHARED: list[JudgeClient] = []


def shared() -> JudgeClient:
    """This grading process's judge: one for all its students (it holds no student's
    state between notebooks, and :func:`nnh.grade.serve._reap_children` spares it)."""
    if not _SHARED:
        _SHARED.append(JudgeClient())
    return _SHARED[0]


def running_pid() -> int | None:
    """The process id of this grading process's judge, if it runs."""
    return _SHARED[0].process.pid if _SHARED and _SHARED[0].alive() else None


def kernel_part_verdict(source: str, cell: NotebookNode, verdict: dict) -> dict:
    """The verdict on a test cell whose kernel run (its visible tests, in ``cell``'s
    outputs) is done and that the judge decided (``verdict``).  The judge runs only the
    hidden tests of a cell with a kernel part (:func:`judged_part`): there the visible
    tests' failure in the kernel fails the cell too, as in plain nbgrader (a student can
    only lose by making their kernel fail)."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if verdict.get("ok") and errors and KERNEL_PART.search(source):
        return {"ok": False, "ename": str(errors[-1].get("ename")), "evalue": str(errors[-1].get("evalue"))[:4000]}
    return verdict


def apply_verdict(cell: NotebookNode, verdict: dict) -> None:
    """Make ``cell``'s outputs say what the judge decided: an error output if it
    failed (nbgrader gives the cell no points), none if it passed (the kernel's
    error, if any, becomes a note)."""
    kept = []
    for output in cell.get("outputs", []):
        if output.get("output_type") != "error":
            kept.append(output)
        elif verdict.get("ok"):
            kept.append(NotebookNode(output_type="stream", name="stdout", text=(
                f"{KERNEL_ONLY_NOTE} {output.get('ename')}: {str(output.get('evalue'))[:500]}; "
                "the grader's own run of the tests passed]\n")))
    if not verdict.get("ok"):
        ename, evalue = str(verdict.get("ename", "AssertionError")), str(verdict.get("evalue", ""))
        kept.append(NotebookNode(output_type="error", ename=ename, evalue=evalue,
                                 traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]))
    cell.outputs = kept
