"""The grading processes: long-lived ``serve`` processes (:mod:`nnh.grade.serve`),
one per job, each fed one student's task at a time and replaced when it dies or
hangs; or the same work on the workers of a Dask cluster.  Ctrl-C stops the run
after the students being graded.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from nnh.grade.confine import SCRIPT
from nnh.grade.settings import GradeError
from nnh.grade.task import sandbox_user_usable, unusable_user_error



class _Server:
    """One long-lived ``python nnh/grade/process.py serve`` process: it imports nbgrader
    once and then grades one student after the other, each in a fresh temporary
    course with a fresh confined kernel.  A student who runs out of time, or whose
    grading kills the process, costs a restart; the next student gets a new one."""

    START_TIMEOUT = 300  # importing nbgrader on a loaded machine
    MAX_TASKS = 50  # start afresh now and then: whatever a library leaks stays bounded
    IDLE = 300  # seconds a server waits for a task before it exits (idle Dask workers)

    def __init__(self, sandbox: str = "bwrap", withhold: tuple[str, ...] = ()) -> None:
        self.sandbox = sandbox  # its kernels' sandbox: "bwrap" (a box each) or "limits"
        self.withhold = tuple(withhold)  # the names whose references its box withholds (nnh.grade.withhold)
        self.process: subprocess.Popen | None = None
        self.tmp: str | None = None  # the server's temporary folder: everything it makes, removed with it
        self.log = None
        self.tasks = 0
        self.buffer = b""
        self.ready = False

    @property
    def kind(self) -> tuple[str, tuple[str, ...]]:
        """(sandbox, withheld names): which tasks it can grade."""
        return self.sandbox, self.withhold

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process (it then imports nbgrader; :meth:`start` waits for it)."""
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0", PYTHONUNBUFFERED="1",
                   MALLOC_ARENA_MAX="2", NNH_GRADE_SANDBOX=self.sandbox, NNH_GRADE_WITHHOLD=",".join(self.withhold))
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        self._remove_tmp()
        self.tmp = env["TMPDIR"] = tempfile.mkdtemp(prefix="nnh-server-")
        os.chmod(self.tmp, 0o711)  # a kernel passes through to its own folders
        if self.log is not None:
            self.log.close()
        self.log = tempfile.TemporaryFile(prefix="nnh-server-")
        self.buffer, self.tasks, self.ready = b"", 0, False
        self.process = subprocess.Popen([sys.executable, SCRIPT, "serve", "--idle", str(self.IDLE)],
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


def prestart_servers(count: int, sandbox: str = "bwrap", withhold: tuple[str, ...] = ()) -> None:
    """Spawn ``count`` servers now, so that their imports overlap the rest of the set-up."""
    for _ in range(count):
        server = _Server(sandbox, withhold)
        server.spawn()
        with _SERVERS_LOCK:
            _PRESTARTED.append(server)


def _thread_server(sandbox: str, withhold: tuple[str, ...] = ()) -> _Server:
    """This thread's server (a ``nnh grade`` job, or a Dask worker thread), started if
    needed, whose kernels run in ``sandbox`` without the references of ``withhold``."""
    kind = (sandbox, tuple(withhold))
    server = getattr(_THREAD, "server", None)
    if server is not None and server.kind != kind:
        server.close()
    if server is None or not server.alive() or server.kind != kind:
        with _SERVERS_LOCK:
            spare = _PRESTARTED.pop() if _PRESTARTED and _PRESTARTED[-1].kind == kind else None
        server = _THREAD.server = spare or _Server(*kind)
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
                server = _thread_server(sandbox, tuple(payload["limits"].get("withhold", ())))
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
