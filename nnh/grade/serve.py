"""A grading process (``process.py serve``): imports nbgrader once, then grades one
student after another (tasks read on stdin), and between two students puts back
what grading changed in the process and reaps every process a kernel left.
"""

from __future__ import annotations

import glob
import json
import os
import sys

from nnh.grade.box import _Box
from nnh.grade.confine import _die_with_parent
from nnh.grade.execute import _preprocessors
from nnh.grade.worker import _grade_file, _setup_process
from nnh.grade.judge_client import running_pid
from nnh.grade.zygote import _Zygote


class _ProcessState:
    """What :func:`work` changes in the grading process (environment variables,
    working directory, ``sys.path``, warning filters, umask), captured once and
    put back after every student, so that nothing of one student's grading
    reaches the next one in a long-lived server.  (The preprocessor classes that
    hold per-student settings are created afresh for every student.)"""

    def __init__(self) -> None:
        import warnings

        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.path = list(sys.path)
        self.filters = list(warnings.filters)
        self.umask = os.umask(0o077)
        os.umask(self.umask)

    def restore(self) -> None:
        import warnings

        os.chdir(self.cwd)
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        sys.path[:] = self.path
        warnings.filters[:] = self.filters
        warnings._filters_mutated()  # noqa: SLF001 - invalidate the warnings caches
        os.umask(self.umask)


def _children(parent: int | None = None) -> list[int]:
    """Process ids of the children of ``parent`` (default: this process; Linux ``/proc``).
    This process's zombies are included (the caller reaps them with ``waitpid``);
    another process's are left out (it reaps them itself)."""
    pids = []
    for task in glob.glob(f"/proc/{parent or os.getpid()}/task/*/children"):
        try:
            with open(task) as fh:
                pids += [int(pid) for pid in fh.read().split()]
        except OSError:
            pass
    return [pid for pid in pids if not _is_zombie(pid)] if parent else pids


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: state, parent, group, ...
    (OSError when the process is gone)."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def _is_zombie(pid: int) -> bool:
    try:
        return _stat(pid)[0] in "ZX"
    except (OSError, IndexError):
        return True


def _become_subreaper() -> None:
    """Linux: orphaned descendants (a process a kernel detached with ``setsid`` and a
    double fork) become this process's children instead of init's, so that
    :func:`_reap_children` finds them."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap_children(rounds: int = 20) -> None:
    """Kill whatever a student's grading left running (a kernel nbclient could not
    shut down, the processes in its session, and, in a subreaper, the processes
    it detached, which become our children once their parent dies), and reap it."""
    import signal
    import time

    zygote = _Zygote.current.process.pid if _Zygote.current else None
    judge = running_pid()  # the judge runs no student code: it serves the next student too
    if _Box.current is not None:
        _Box.current.clean()
    # a boxed zygote's children are its box: cleared by the zygote itself (and, as root, by clean() above)
    forks = zygote if zygote and not _Zygote.current.boxed else None
    for _ in range(rounds):
        pids = [pid for pid in _children() if pid not in (zygote, judge)] + (_children(forks) if forks else [])
        if not pids:
            return
        for pid in pids:
            try:
                if os.getpgid(pid) == pid:  # kernels lead their own session and group
                    os.killpg(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        waited = True
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                waited = False  # the zygote's child: the zygote reaps it
        if not waited:
            time.sleep(0.05)
        # an orphan is ours once its parent has exited (Linux reparents it before the parent
        # can be reaped), so the next round finds those of the processes just reaped


#: Exit status of a server that stopped because no task came (it read none).
IDLE_EXIT = 75


def _serve(argv: list[str]) -> int:
    """``serve [--idle SECONDS]``: a long-lived grading process.  Imports nbgrader
    once, prints ``ready``, then reads one task per line on stdin (a JSON list
    ``[PAYLOAD, RESULT]``), grades it exactly as ``worker`` does (a fresh
    temporary course, gradebook copy and confined kernel per student) and
    answers ``{"done": RESULT}`` on stdout.  Anything else the grading prints
    goes to stderr.  Answers ``started`` as soon as it has read a task, so that
    a task sent to a server that is already gone can be sent to another one.
    Exits at the end of stdin, or with :data:`IDLE_EXIT` after ``--idle``
    seconds without a task."""
    import argparse
    import select

    parser = argparse.ArgumentParser(prog="python nnh/grade/process.py serve")
    parser.add_argument("--idle", type=float, default=0, help="exit after this many seconds without a task (0: never)")
    args = parser.parse_args(argv)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)  # os.dup: not inherited by the kernels
    os.dup2(2, 1)  # prints of nbgrader, nbclient or a kernel go to the log, never into the protocol
    _die_with_parent()
    _become_subreaper()
    _setup_process()
    _Box.ensure()
    _Zygote.ensure()  # its imports overlap ours
    import nbconvert.preprocessors  # noqa: F401 - the heavy imports, once
    import nbformat  # noqa: F401
    import nbgrader.api  # noqa: F401
    import nbgrader.apps  # noqa: F401
    import nbgrader.preprocessors  # noqa: F401

    _preprocessors()
    state = _ProcessState()
    protocol.write("ready\n")
    buffer = b""
    while True:
        while b"\n" not in buffer:
            ready, _, _ = select.select([0], [], [], args.idle or None)
            if not ready:
                return IDLE_EXIT
            chunk = os.read(0, 1 << 16)
            if not chunk:
                return 0
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        payload_path, result_path = json.loads(line)
        protocol.write("started\n")
        try:
            _Zygote.ensure()
            _grade_file(payload_path, result_path)
        finally:
            state.restore()
            _reap_children()
        protocol.write(json.dumps({"done": result_path}) + "\n")
