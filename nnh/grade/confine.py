"""Confining a kernel process: resource limits (address space or the box's cgroup,
CPU time, file size, no core files, tasks of its user), the unprivileged user it
runs as when the grader is root, a private home, and dying with its parent.
Also the path of the script every grader process runs (:data:`SCRIPT`).
"""

from __future__ import annotations

import os
import resource

from nnh.grade.cgroup import _join_cgroup


#: The script every process of the grader runs (see :mod:`nnh.grade.process`).
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "process.py")


def _set_limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY or value <= hard else hard))


def _confine(limits: dict, command: list[str]) -> None:
    """Resource limits, then (as root) the unprivileged user: what the kernel runs under.
    In a box with a cgroup, memory is capped as resident memory there, else as address space."""
    in_cgroup = bool(limits.get("box")) and os.geteuid() == 0 and _join_cgroup(limits)
    if limits["memory"] and not in_cgroup:
        _set_limit(resource.RLIMIT_AS, limits["memory"] << 20)
    if limits["cpu"]:
        _set_limit(resource.RLIMIT_CPU, limits["cpu"])
    _set_limit(resource.RLIMIT_FSIZE, limits["fsize"] << 20)
    _set_limit(resource.RLIMIT_CORE, 0)
    if limits.get("box"):  # ipykernel would take the box's init (pid 1) for "my parent died"; 1: no such check
        os.environ["JPY_PARENT_PID"] = "1"
    if os.geteuid() == 0 and limits["user"]:
        uid, gid = _account(limits["user"])
        # the connection file is written 0600 by the grader: hand it to the sandbox user
        if "-f" in command:
            connection = command[command.index("-f") + 1]
            os.chown(connection, uid, gid)
        # RLIMIT_NPROC counts every task of the user: only meaningful for a dedicated user
        _set_limit(resource.RLIMIT_NPROC, limits["nproc"])
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    _die_with_parent()


def _account(user: str) -> tuple[int, int]:
    """(uid, gid) of ``user``: a name, or a number (a uid of the box pool, its own gid)."""
    if user.isdigit():
        return int(user), int(user)
    import pwd

    account = pwd.getpwnam(user)
    return account.pw_uid, account.pw_gid


def _die_with_parent() -> None:
    """Linux: the kernel gets SIGKILL when the grader process that started it dies
    (jupyter_client starts kernels in their own session, out of reach of a
    process-group kill).  Set after dropping privileges, which clears it."""
    try:
        import ctypes
        import signal

        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        # the parent is already gone (in a box, pid 1 is the box's init, a live parent)
        if (parent == 1 and os.getpid() > 2) or os.getppid() != parent:
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _private_home(home: str) -> dict[str, str]:
    """Environment variables that point a kernel's per-user files (home, matplotlib and
    Keras configuration and caches, user site-packages) at the empty folder ``home``."""
    return {"HOME": home, "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
            "KERAS_HOME": os.path.join(home, ".keras"), "PYTHONNOUSERSITE": "1"}
