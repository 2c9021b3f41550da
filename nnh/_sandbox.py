"""The per-student side of ``nnh grade``: a kernel launcher that confines student
code, and the worker that autogrades one student with nbgrader in a throw-away
course directory.

Entry points, all run as ``python nnh/_sandbox.py`` (a script: it needs no other
module of the ``nnh`` package):

``kernel --memory MB --cpu S --fsize MB --nproc N --user NAME -- CMD...``
    Sets resource limits (``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``,
    ``RLIMIT_NPROC``, no core files), drops to an unprivileged user when started
    as root, and ``exec``\\ s the real kernel command.  The worker installs a
    ``python3`` kernelspec whose ``argv`` goes through this launcher, so nbgrader's
    own ``Execute`` preprocessor starts a confined kernel without knowing it.

    With ``--zygote SOCKET`` it asks that zygote for the kernel instead (see
    below) and stands in for it; without an answer it starts a fresh one.
    With ``--box SHARED`` the kernel runs in a bubblewrap box (see :class:`_Box`):
    the zygote's, or else a box of its own, in which the launcher runs again
    with ``--inside`` to set the box up and confine the kernel.

``zygote FD [--box]``
    Imports what every kernel of the course imports (nnh's modules, that is
    TensorFlow, Keras, ipykernel) once, then forks one kernel per launcher that connects to
    the listening Unix socket ``FD``; each fork is confined as a fresh kernel is.
    ``--box``: it runs in a box, which it clears between two kernels.

``worker PAYLOAD RESULT``
    Reads a pickled task (the course config, the assignment's source, one
    student's submitted files and a gradebook that holds only the assignment),
    runs nbgrader's ``Autograde`` and ``GenerateFeedback`` through
    :class:`nbgrader.apps.NbGraderAPI` in a temporary course root outside the
    instructor's course, checks the submission for tampering, and pickles the
    grades, the autograded notebooks and the feedback to ``RESULT``.

``serve [--idle SECONDS]``
    The same, for one student after another: a long-lived process that imports
    nbgrader once and reads task files line by line on stdin (what ``nnh grade``
    uses; see :func:`_serve`).  Every student still gets a fresh temporary
    course, gradebook copy and kernel, and the process state that grading one
    student changes is put back before the next.

Nothing here writes to the instructor's course: the parent process
(:mod:`nnh.grade`) is the single writer.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import pickle
import re
import resource
import shutil
import sys
import traceback

if __name__ == "__main__":
    # run as a script (``python nnh/_sandbox.py``), not ``-m nnh._sandbox``: importing the
    # nnh package would import TensorFlow (seconds) in the worker and in the kernel launcher
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

SCRIPT = os.path.abspath(__file__)

# --------------------------------------------------------------------------- kernel launcher


def _set_limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY or value <= hard else hard))


def _parse_launcher(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser(prog="python nnh/_sandbox.py kernel")
    parser.add_argument("--memory", type=int, default=0, help="address-space cap in MB (0: none)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU-time cap in seconds (0: none)")
    parser.add_argument("--fsize", type=int, default=256, help="largest file the kernel may write, MB")
    parser.add_argument("--nproc", type=int, default=4096, help="tasks (processes + threads) of the sandbox user")
    parser.add_argument("--user", default="nobody", help="unprivileged user to run as when started as root")
    parser.add_argument("--zygote", default="", help="socket of a warm-kernel server (see zygote); '' to exec")
    parser.add_argument("--box", default="", help="shared folder of the box to run in (see _Box); '' for none")
    parser.add_argument("--inside", action="store_true", help="(already in the box: set it up, then confine)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return args


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


def _launch_kernel(argv: list[str]) -> None:
    args = _parse_launcher(argv)
    limits = {k: getattr(args, k) for k in ("memory", "cpu", "fsize", "nproc", "user", "box")}
    if args.zygote and args.command[1:3] == ["-m", "ipykernel_launcher"] and not args.inside:
        code = _kernel_from_zygote(args.zygote, limits, args.command)
        if code is not None:
            _exit_like(code)
    if args.box and not args.inside:  # a box of its own, in which this launcher runs again
        import subprocess

        command = [*box_command(args.box), "--", sys.executable, SCRIPT, "kernel", "--inside", *argv]
        _die_with_parent()  # and the box with this launcher (bwrap --die-with-parent)
        box = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=_kernel_environment(dict(os.environ)))
        _relay(box.stdout.fileno())
        _exit_like(box.wait())
    if args.inside:
        _enter_box(limits)
    _confine(limits, args.command)
    os.execvp(args.command[0], args.command)


def _exit_like(code: int) -> None:
    """End this process as the kernel ended: its exit status, or the signal that killed it."""
    import signal

    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


# --------------------------------------------------------------------------- warm kernels (zygote)
#
# Every grading kernel starts by importing nnh, i.e. TensorFlow: about 4 s of CPU
# per student, more than the rest of a student's grading.  A zygote imports it
# once; each kernel is a fork of it (copy-on-write), confined like a fresh one.
# The kernelspec still starts ``_sandbox.py kernel``: that launcher asks the
# zygote for a kernel, hands it its stdin/stdout/stderr, forwards the signals
# jupyter_client sends (interrupt, terminate) and exits as the kernel exits, so
# jupyter_client and nbclient see an ordinary kernel process.  Without a zygote
# (or if it does not answer) the launcher starts a fresh kernel as before.

#: Every module of nnh: ``import nnh`` loads them on first use (and TensorFlow with them).
NNH_MODULES = ("nnh.ablation", "nnh.augment", "nnh.data", "nnh.dropout", "nnh.experiments", "nnh.grading",
               "nnh.metrics", "nnh.models", "nnh.plots", "nnh.regularization", "nnh.schedules", "nnh.training")
#: What the zygote imports: what every kernel of the course imports first.
WARM_IMPORTS = ("numpy", "nnh", *NNH_MODULES, "keras", "scipy.stats", "ipykernel.kernelapp", "ipykernel.ipkernel")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # what ipykernel sets as MPLBACKEND


def _kernel_from_zygote(path: str, limits: dict, command: list[str]) -> int | None:
    """Have the zygote at ``path`` fork ``command`` (``python -m ipykernel_launcher ARGS``)
    and wait for it as if it were this process; its exit code (negative: the signal
    that killed it), or None when no zygote answered before forking."""
    import signal
    import socket

    _die_with_parent()  # then the zygote sees the connection close and kills the kernel
    boxed = bool(limits.get("box"))
    request = {"argv": command[3:], "cwd": os.getcwd(), "limits": limits,
               "env": _kernel_environment(dict(os.environ)) if boxed else dict(os.environ)}
    fds = [0, 1, 2]
    if boxed:  # its output through a pipe of its own: the grader's log is not the kernel's to read
        read, write = os.pipe()
        fds = [os.open(os.devnull, os.O_RDONLY), write, write]
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(path)
        socket.send_fds(conn, [json.dumps(request).encode()], fds)
        answer = conn.recv(64)
    except OSError:
        answer = b""
    finally:
        if boxed:
            os.close(fds[0])
            os.close(write)
    if not answer:
        if boxed:
            os.close(read)
        return None
    if boxed:
        import threading

        threading.Thread(target=_relay, args=(read,), daemon=True).start()
    pid = int(answer)

    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)  # the kernel leads its own process group, as a fresh one does
        except (ProcessLookupError, PermissionError):
            pass

    # a boxed kernel's pid is that of its box: it is interrupted by a message, and
    # stopped by this launcher's end (the zygote then kills it)
    for signum in () if boxed else (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                                    signal.SIGUSR2):
        signal.signal(signum, forward)
    try:
        status = conn.recv(64)
    except OSError:
        status = b""
    return int(status) if status else -int(signal.SIGKILL)  # no status: the zygote died, and its kernels


#: What a boxed kernel's output to stdout and stderr (its own writes, a crash) may put
#: into the grader's log; the rest is read and dropped.
RELAY_BYTES = 1 << 20


def _relay(fd: int) -> None:
    """Copy what a boxed kernel writes to its stdout and stderr (the read end ``fd`` of
    its pipe) to this launcher's stderr, the grader's log, at most :data:`RELAY_BYTES`.
    The kernel never holds the log's own file, which it could read or fill."""
    left = RELAY_BYTES
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        if left > 0:
            try:
                os.write(2, chunk[:left])
            except OSError:
                pass
            left -= len(chunk[:left])
    os.close(fd)


def _set_dumpable(flag: bool) -> None:
    """Linux ``PR_SET_DUMPABLE``: a process that is not dumpable cannot be traced, nor
    its memory read or written through ``/proc``, by other processes of its user."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, int(flag), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _become_kernel(request: dict, fds: list[int], inherited: list) -> None:
    """In a fork of the zygote: become the kernel ``request`` describes; never returns."""
    import atexit

    code = 1
    try:
        for thing in inherited:  # the zygote's sockets, pidfds and selector
            thing.close() if hasattr(thing, "close") else os.close(thing)
        os.setsid()
        _set_dumpable(True)  # as a fresh process (the zygote is not, see _zygote)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        if request["limits"].get("box"):
            _private_mounts(request["limits"]["box"])
            _enter_box(request["limits"])
        else:
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        backend = os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
        if "matplotlib" in sys.modules:
            sys.modules["matplotlib"].rcParams["backend"] = backend
        _confine(request["limits"], request["argv"])
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # fresh entropy, as a new process has (random reseeds itself)
        sys.argv = ["ipykernel_launcher", *request["argv"]]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # noqa: BLE001 - the kernel's own failure, reported on its stderr
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # noqa: SLF001 - what a normal interpreter exit runs
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _stale(fileobj, kernel: tuple | None, what: str) -> bool:
    """Is a ready ``exit`` (pidfd) or ``hangup`` (connection) event of the zygote about
    a kernel it has already dealt with earlier in the same batch of events?"""
    if kernel is None:
        return True
    conn, pidfd = kernel
    return fileobj != pidfd if what == "exit" else (fileobj is not conn or conn.fileno() < 0)


def _zygote(argv: list[str]) -> int:
    """``zygote FD``: import :data:`WARM_IMPORTS`, then fork one kernel per
    connection on the listening Unix socket ``FD`` (see :func:`_kernel_from_zygote`).
    A kernel is killed when its launcher's connection closes; the launcher gets
    the kernel's exit status when it ends.  Runs until its parent dies."""
    import importlib
    import selectors
    import signal
    import socket

    _die_with_parent()
    # the listening socket, bound by the grader before starting us (see _Zygote): a
    # launcher that connects while we import waits in its backlog, never finds no socket
    server = socket.socket(fileno=int(argv[0]))
    boxed = argv[1:2] == ["--box"]  # in a box of its own (see _Box), cleared between kernels
    shared = argv[2] if boxed else ""
    if boxed:
        os.makedirs(ZYGOTE_HOME, mode=0o700, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a kernel that needs it imports it (and fails) itself
            traceback.print_exc()
    # a kernel runs as the grader's user when it cannot run as another one: it must
    # not reach into the zygote's memory (ptrace, /proc/PID/mem) to change the next kernels
    _set_dumpable(False)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, ("accept", 0))
    kernels: dict[int, tuple] = {}  # pid -> (connection, pidfd)
    while True:
        # a launcher connects only after the previous one ended: its end comes first
        for key, _ in sorted(selector.select(), key=lambda event: event[0].data[0] == "accept"):
            what, pid = key.data
            if what != "accept" and _stale(key.fileobj, kernels.get(pid), what):
                continue  # handled earlier in this batch (the kernel ended and its launcher went)
            if what == "accept":
                conn, _ = server.accept()
                try:
                    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                    request = json.loads(data)
                except (OSError, ValueError):
                    conn.close()
                    continue
                if len(fds) != 3:
                    for fd in fds:
                        os.close(fd)
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    _become_kernel(request, fds, [selector, server, conn, *(x for k in kernels.values() for x in k)])
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                kernels[pid] = (conn, pidfd)
                selector.register(pidfd, selectors.EVENT_READ, ("exit", pid))
                selector.register(conn, selectors.EVENT_READ, ("hangup", pid))
                try:
                    conn.send(str(pid).encode())
                except OSError:
                    pass  # the launcher is gone: "hangup" kills the kernel
            elif what == "exit":
                conn, pidfd = kernels.pop(pid)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                if boxed and not kernels:
                    _clear_box(shared)
                if conn.fileno() >= 0:
                    selector.unregister(conn)
                    try:
                        conn.send(str(os.waitstatus_to_exitcode(status)).encode())
                    except OSError:
                        pass
                    conn.close()
            else:  # "hangup": the launcher is gone (jupyter_client killed it): so is its kernel
                conn = kernels[pid][0]
                selector.unregister(conn)
                conn.close()
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                if boxed and len(kernels) == 1:
                    _clear_box(shared)  # the kernel too: its "exit" then finds it dead


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


# --------------------------------------------------------------------------- the box (bubblewrap)
#
# With the bwrap sandbox (the default of ``nnh grade``) a kernel runs in a box that
# Debian's bubblewrap makes: PID, IPC, UTS and network namespaces of its own, and a
# mount namespace whose root holds only the system (/usr, /etc, the libraries), the
# Python environment and the nnh package, read-only, a private /tmp (a tmpfs of
# BOX_TMP_MB that holds the kernel's working folder and home), and one folder of the
# grader's: the box's shared folder, where the student's files are copied for the
# kernel and where its connection files are.  No course, gradebook, other student or
# home folder of the machine exists in it.  As root, the kernel also runs as a user
# id of its own (one per grading process, from BOX_UIDS), which no other kernel on
# the machine has at the same time.  A grading process's zygote lives in such a box;
# its kernels are forks of it, and between two kernels it kills everything else in
# the box and empties the box's /tmp.  Without a zygote every kernel gets a box of
# its own, which ends with it.

#: User ids of the kernels when grading as root: each grading process takes the first
#: free one (a lock file in BOX_LOCKS says it is taken) and keeps it while it lives.
BOX_UIDS = range(2_000_000_000, 2_000_004_096)
BOX_LOCKS = "/run/nnh-grade"
BOX_TMP_MB = 256  # the box's /tmp (tmpfs): what the kernel can write, home and working folder included
BOX_SHM_MB = 64  # the box's /dev/shm (POSIX semaphores and shared memory, e.g. joblib's)
BOX_INODES = 100_000  # files and folders in each of them
BOX_PARENT = "/run/nnh-grade/boxes"  # as root, where the boxes' shared folders are (not in /tmp)
BOX_WORK, BOX_HOME, ZYGOTE_HOME = "/tmp/work", "/tmp/home", "/tmp/.zygote"
BOX_STUDENT = "student"  # the folder of the student being graded, in the box's shared folder


def _system_binds() -> list[str]:
    """bwrap arguments: the system's programs, libraries and /etc, read-only."""
    args = []
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc"):
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _environment_dirs() -> list[str]:
    """The folders this Python environment runs and imports from: its prefixes and
    the nnh package's own folder (an editable install keeps it in the course's
    repository: the box gets that folder, not the repository)."""
    import importlib.util

    dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    spec = importlib.util.find_spec("nnh")
    if spec is not None and spec.submodule_search_locations:
        dirs.update(os.path.realpath(p) for p in spec.submodule_search_locations)
    kept: list[str] = []
    for path in sorted(dirs):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in ["/usr", *kept]):
            kept.append(path)
    return kept


def _ancestors(path: str) -> list[str]:
    """The folders above ``path``, "/" excluded."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def box_command(shared: str) -> list[str]:
    """The ``bwrap`` command line, up to the command to run, of a box whose one
    folder of the machine it can write is ``shared`` (see above)."""
    command = [shutil.which("bwrap") or "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc",
               "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent",
               "--new-session"]
    if os.geteuid() != 0:
        command.append("--unshare-user")  # without root: a user namespace, the same uid
    command += _system_binds()
    # the file systems of its own first: a Python environment under /tmp is bound on top
    command += ["--proc", "/proc", "--dev", "/dev", "--size", str(BOX_SHM_MB << 20), "--tmpfs", "/dev/shm",
                "--size", str(BOX_TMP_MB << 20), "--tmpfs", "/tmp"]
    parents: set[str] = set()
    for path in _environment_dirs():
        command += ["--ro-bind", path, path]
        parents.update(_ancestors(path))
    for path in sorted(parents):  # bwrap makes the folders on the way 0700: let the kernel's user pass
        command += ["--chmod", "0755", path]
    command += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu", "--bind", shared, shared,
                "--chdir", "/tmp", "--setenv", "TMPDIR", "/tmp", "--chmod", "1777", "/tmp", "--chmod", "1777", "/dev/shm"]
    for path in _ancestors(shared):  # e.g. the grading process's own temporary folder in /tmp
        if path != "/tmp":
            command += ["--chmod", "0711", path]
    cgroup = _cgroup_dirs(os.path.basename(shared))  # made by the grading process, as root (see _Box)
    if all(os.path.isdir(folder) for folder in cgroup.values()):
        for hierarchy, folder in cgroup.items():
            command += ["--bind", folder, os.path.join(CGROUP_IN_BOX, hierarchy)]
    return command


def _enter_box(limits: dict) -> None:
    """In the box, as its root, before :func:`_confine`: the kernel's working folder
    (a copy of the student's files) and home on the box's /tmp, both the kernel's."""
    shutil.copytree(os.path.join(limits["box"], BOX_STUDENT, "files"), BOX_WORK, dirs_exist_ok=True)
    os.makedirs(BOX_HOME, exist_ok=True)
    if os.geteuid() == 0 and limits["user"]:
        uid, gid = _account(limits["user"])
        for folder in (BOX_WORK, BOX_HOME):
            for parent, dirs, files in os.walk(folder):
                for name in [parent, *(os.path.join(parent, n) for n in dirs + files)]:
                    os.lchown(name, uid, gid)
    os.chdir(BOX_WORK)


def _tmp_roots(shared: str) -> set[str]:
    """The folders right under /tmp that hold what the box binds there (the Python
    environment, the nnh package, the shared folder), e.g. a course cloned into /tmp."""
    return {"/tmp/" + p[len("/tmp/"):].split("/")[0] for p in [*_environment_dirs(), shared] if p.startswith("/tmp/")}


def _private_mounts(shared: str) -> None:
    """In a fork of the boxed zygote, as the box's root, before :func:`_enter_box`: a
    mount and an IPC namespace of the kernel's own, with an empty /tmp and /dev/shm
    (tmpfs, as in :func:`box_command`), so that nothing it writes or keeps there
    (files, shared memory, semaphores, message queues) reaches the next kernel and
    all of it goes with its processes.  Without the right to (no root: a user
    namespace), the kernel uses the box's and the zygote empties them after it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000 | 0x08000000) != 0:  # CLONE_NEWNS | CLONE_NEWIPC
        return
    nodev = 0x2 | 0x4  # MS_NOSUID | MS_NODEV
    libc.mount(None, b"/", None, 0x4000 | 0x40000, None)  # MS_REC | MS_PRIVATE: nothing propagates out
    fresh = [("/dev/shm", BOX_SHM_MB)]
    if not _tmp_roots(shared):  # a Python environment under /tmp must stay visible: the zygote empties /tmp
        fresh.append(("/tmp", BOX_TMP_MB))
    for path, megabytes in fresh:
        options = f"size={megabytes}m,nr_inodes={BOX_INODES},mode=1777".encode()
        if libc.mount(b"tmpfs", path.encode(), b"tmpfs", nodev, options) != 0:
            raise OSError(ctypes.get_errno(), f"mounting a tmpfs on {path}")


def _clear_box(shared: str) -> None:
    """In the zygote's box, between two kernels: kill every other process in it (all
    but its init and the zygote) and empty its /tmp and /dev/shm (but for the zygote's
    home and the shared folder's mount) for kernels that could not have their own."""
    import signal
    import subprocess
    import time

    for _ in range(5):  # again: a process forked while the last round went on
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    keep = {ZYGOTE_HOME, *_tmp_roots(shared)}
    try:
        doomed = [e.path for folder in ("/tmp", "/dev/shm") for e in os.scandir(folder) if e.path not in keep]
        if doomed:  # rm: no recursion limit, and it stays on this file system (not into a mount)
            subprocess.run(["rm", "-rf", "--one-file-system", "--", *doomed], timeout=120, check=False,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):  # the next kernel still gets its own /tmp as root
        traceback.print_exc()


def _kill_user(uid: int) -> None:
    """As root: kill every process of ``uid``: a child that becomes ``uid`` sends
    SIGKILL to every process it may signal, which are exactly those."""
    import signal
    import time

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            _clear_keyrings()
            for _ in range(50):
                os.kill(-1, signal.SIGKILL)
                time.sleep(0.005)
        except ProcessLookupError:
            pass
        except BaseException:  # noqa: BLE001 - reported by the exit code
            code = 1
        os._exit(code)
    os.waitpid(pid, 0)


def _clear_keyrings() -> None:
    """As the box's uid: empty the keyrings that outlive its processes (keyctl(2)): the
    persistent keyring, the user-session keyring and the user keyring."""
    import ctypes

    sys_keyctl = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)  # SYS_keyctl
    if sys_keyctl is None:
        return
    keyctl = ctypes.CDLL(None, use_errno=True).syscall
    clear, get_persistent = 7, 22  # KEYCTL_CLEAR, KEYCTL_GET_PERSISTENT
    user_session, user = -5, -4  # KEY_SPEC_USER_SESSION_KEYRING, KEY_SPEC_USER_KEYRING
    persistent = keyctl(sys_keyctl, get_persistent, ctypes.c_long(-1), ctypes.c_long(user))
    if persistent > 0:
        keyctl(sys_keyctl, clear, ctypes.c_long(persistent))
    for keyring in (user_session, user):
        keyctl(sys_keyctl, clear, ctypes.c_long(keyring))


# --------------------------------------------------------------------------- the box's cgroup
#
# As root, a box also gets a control group of its own (cgroup v2, or the memory and
# pids hierarchies of cgroup v1), made by the grading process and bound into the box
# at CGROUP_IN_BOX.  Each kernel, still the box's root, writes its limits there and
# joins it before it drops to the box's uid: ``--memory`` then caps the kernel's
# *resident* memory (the kernel and everything it starts; swap included), and
# ``--nproc`` its tasks (processes and threads).  The zygote stays outside: only the
# pages a student's kernel touches count.  The files stay root's: the kernel cannot
# raise its limits or leave.  Where no cgroup can be made (not root, a read-only
# /sys/fs/cgroup), ``--memory`` falls back to an address-space limit (RLIMIT_AS).

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PARENT = "nnh-grade"  # the folder of the boxes' cgroups, in each hierarchy
CGROUP_IN_BOX = "/run/nnh-cgroup"  # where a box sees its cgroup: one folder per hierarchy
CGROUP_V1 = ("memory", "pids")


def _cgroup_dirs(name: str) -> dict[str, str]:
    """hierarchy → folder of the cgroup ``name`` (``unified`` on cgroup v2)."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return {"unified": os.path.join(CGROUP_ROOT, CGROUP_PARENT, name)}
    return {c: os.path.join(CGROUP_ROOT, c, CGROUP_PARENT, name) for c in CGROUP_V1}


def _write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _make_cgroup(name: str) -> dict[str, str] | None:
    """As root: the cgroup ``name`` in every hierarchy :func:`_cgroup_dirs` names, or
    ``None`` (nothing left behind) when one cannot be made or lacks a controller."""
    made: list[str] = []
    try:
        for hierarchy, folder in _cgroup_dirs(name).items():
            parent = os.path.dirname(folder)
            if hierarchy == "unified":  # v2: memory and pids must be enabled on the way down
                _write(os.path.join(CGROUP_ROOT, "cgroup.subtree_control"), "+memory +pids")
                os.makedirs(parent, exist_ok=True)
                _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids")
            os.makedirs(parent, exist_ok=True)
            _remove_stale_cgroups(parent)
            os.mkdir(folder)
            made.append(folder)
            needed = ("memory.max", "pids.max") if hierarchy == "unified" else (
                "memory.limit_in_bytes" if hierarchy == "memory" else "pids.max",)
            if not all(os.path.exists(os.path.join(folder, f)) for f in needed):
                raise OSError(f"{folder} lacks {needed}")
        return {h: f for h, f in _cgroup_dirs(name).items()}
    except OSError:
        _remove_cgroup(made)
        return None


def _remove_cgroup(folders) -> None:
    """Remove cgroup folders (once their processes are gone: retried for a second)."""
    import time

    for folder in folders:
        for _ in range(100):
            try:
                os.rmdir(folder)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)


def _remove_stale_cgroups(parent: str) -> None:
    """Remove the cgroups of boxes whose grading process is gone (it was killed)."""
    for entry in os.scandir(parent):
        pid = entry.name.split("-")[2] if entry.name.count("-") >= 3 else ""
        if entry.is_dir() and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _remove_cgroup([entry.path])


def _join_cgroup(limits: dict) -> bool:
    """In a box, as its root, before dropping privileges: set the kernel's limits in
    the box's cgroup (``memory`` MB resident, swap included; ``nproc`` tasks) and move
    this process into it; False if the box has no cgroup."""
    folders = {h: os.path.join(CGROUP_IN_BOX, h) for h in ("unified", *CGROUP_V1)}
    memory = str(limits["memory"] << 20) if limits["memory"] else None
    try:
        if os.path.isdir(folders["unified"]):
            v2 = folders["unified"]
            _write(os.path.join(v2, "memory.max"), memory or "max")
            if os.path.exists(os.path.join(v2, "memory.swap.max")):
                _write(os.path.join(v2, "memory.swap.max"), "0")
            _write(os.path.join(v2, "pids.max"), str(limits["nproc"]))
            _write(os.path.join(v2, "cgroup.procs"), "0")
            return True
        if not all(os.path.isdir(folders[h]) for h in CGROUP_V1):
            return False
        v1 = folders["memory"]
        swap = os.path.join(v1, "memory.memsw.limit_in_bytes")  # exists where swap is accounted
        if os.path.exists(swap):
            _write(swap, "-1")  # first: it may never be below the memory limit
        _write(os.path.join(v1, "memory.limit_in_bytes"), memory or "-1")
        if os.path.exists(swap):
            _write(swap, memory or "-1")
        _write(os.path.join(folders["pids"], "pids.max"), str(limits["nproc"]))
        for hierarchy in CGROUP_V1:
            _write(os.path.join(folders[hierarchy], "cgroup.procs"), "0")
        return True
    except OSError:
        traceback.print_exc()
        return False


def _oom_kills(folders: dict[str, str]) -> int:
    """How many processes the kernel's OOM killer has killed in a box's cgroup."""
    events = folders.get("unified", "") and os.path.join(folders["unified"], "memory.events")
    if not events:
        events = os.path.join(folders.get("memory", ""), "memory.oom_control")
    try:
        with open(events) as fh:
            return sum(int(line.split()[1]) for line in fh if line.startswith("oom_kill "))
    except (OSError, ValueError, IndexError):
        return 0


#: What a boxed kernel keeps of the grader's environment (names, and beginnings of
#: names): what Python, the libraries and Jupyter read; nothing else (a token, a
#: database password in the instructor's shell) reaches student code.
KERNEL_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "HOME", "USER", "LOGNAME", "MPLBACKEND", "MPLCONFIGDIR",
              "KERAS_HOME", "KERAS_BACKEND", "JUPYTER_PLATFORM_DIRS", "PYDEVD_DISABLE_FILE_VALIDATION",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_ARENA_MAX")
KERNEL_ENV_PREFIXES = ("LC_", "JPY_", "PYTHON", "TF_", "NNH_")


def _kernel_environment(environ: dict) -> dict:
    """The part of ``environ`` a boxed kernel gets (see :data:`KERNEL_ENV`)."""
    return {k: v for k, v in environ.items() if k in KERNEL_ENV or k.startswith(KERNEL_ENV_PREFIXES)}


class _Box:
    """This grading process's box: its shared folder and, as root, its user id."""

    current: _Box | None = None
    error: str | None = None  # why there is no box, when one was asked for

    def __init__(self) -> None:
        import tempfile

        self.uid, self._lock = _claim_uid() if os.geteuid() == 0 else (None, None)
        parent = BOX_PARENT if self.uid is not None else None  # as root: outside /tmp, which kernels get afresh
        if parent:
            os.makedirs(parent, mode=0o711, exist_ok=True)
            _remove_stale_boxes(parent)
        self.root = tempfile.mkdtemp(prefix=f"nnh-box-{os.getpid()}-", dir=parent)
        os.chmod(self.root, 0o711)  # the kernel's user passes through, sees nothing else
        # as root, a cgroup (see _join_cgroup); None: memory is capped as address space
        wanted = self.uid is not None and os.environ.get("NNH_GRADE_CGROUP", "1") != "0"
        self.cgroup = _make_cgroup(os.path.basename(self.root)) if wanted else None
        self.oom_kills = 0  # the cgroup's OOM kills before the current student

    @property
    def user(self) -> str:
        """What the launcher's ``--user`` gets: the box's uid, or '' (not root)."""
        return str(self.uid) if self.uid is not None else ""

    @classmethod
    def ensure(cls) -> None:
        """Make this process's box, if ``NNH_GRADE_SANDBOX`` asks for one and there is none."""
        if os.environ.get("NNH_GRADE_SANDBOX", "bwrap") != "bwrap" or cls.current is not None:
            return
        try:
            box = cls()
            check = _run_quietly([*box_command(box.root), "--", sys.executable, "-c", "import ipykernel"])
            if check:
                box.close()
                raise RuntimeError(check)
        except (OSError, RuntimeError) as error:
            cls.error = (f"the sandbox could not be made ({error}); nnh grade needs bubblewrap (Debian: "
                         "apt-get install bubblewrap) and, when not run as root, user namespaces; or grade with "
                         "--sandbox limits (resource limits only, see the page Grading a class)")
            return
        import atexit

        atexit.register(box.close)
        cls.current = box

    def student(self, files: str) -> str:
        """A fresh student folder with a copy of ``files`` (the kernel's working folder,
        :data:`BOX_WORK`, is made from it); the folder of the kernel's connection files."""
        folder = os.path.join(self.root, BOX_STUDENT)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        os.chmod(folder, 0o711)
        shutil.copytree(files, os.path.join(folder, "files"),
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        run = os.path.join(folder, "run")  # the kernel makes its sockets there, then loses the right to
        os.makedirs(run)
        if self.uid is not None:
            os.chown(run, self.uid, self.uid)
        self.oom_kills = _oom_kills(self.cgroup) if self.cgroup else 0
        return run

    def killed_for_memory(self) -> bool:
        """Whether the kernel's OOM killer has killed a process of the current student
        (its resident memory passed ``--memory`` in the box's cgroup)."""
        return bool(self.cgroup) and _oom_kills(self.cgroup) > self.oom_kills

    def seal(self, run: str) -> None:
        """Once the kernel is up: it may no longer create files in its connection folder."""
        if self.uid is not None and os.path.isdir(run):
            os.chown(run, 0, 0)

    def clean(self) -> None:
        """After a student: nothing of theirs keeps running or stays on disk."""
        if self.uid is not None:
            _kill_user(self.uid)
        shutil.rmtree(os.path.join(self.root, BOX_STUDENT), ignore_errors=True)

    def close(self) -> None:
        """The end of the grading process: its box's folder goes, its user id is free again."""
        self.clean()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.cgroup:
            _remove_cgroup(self.cgroup.values())
        if self._lock is not None:
            self._lock.close()


def _remove_stale_boxes(parent: str) -> None:
    """Remove the shared folders of boxes whose grading process is gone (it was killed)."""
    for entry in os.scandir(parent):
        pid = entry.name.split("-")[2] if entry.name.count("-") >= 3 else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(entry.path, ignore_errors=True)


def _run_quietly(command: list[str]) -> str:
    """Run ``command`` (60 s at most): '' if it succeeded, else what it printed."""
    import subprocess

    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{command[0]} did not end in 60 s"
    return "" if done.returncode == 0 else (done.stderr or done.stdout or f"exit code {done.returncode}")[-800:]


def _claim_uid() -> tuple[int, object]:
    """As root: the first user id of :data:`BOX_UIDS` no other grading process on this
    machine holds, and the open lock file that holds it (closed: released)."""
    import fcntl

    os.makedirs(BOX_LOCKS, mode=0o700, exist_ok=True)
    for uid in BOX_UIDS:
        lock = open(os.path.join(BOX_LOCKS, f"{uid}.lock"), "w")  # noqa: SIM115 - held while the box lives
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return uid, lock
    raise RuntimeError(f"all {len(BOX_UIDS)} sandbox user ids are taken")


def write_kernelspec(jupyter_dir: str, *, memory: int, cpu: int, user: str, zygote: str = "",
                     box: str = "") -> None:
    """A ``python3`` kernelspec in ``jupyter_dir/kernels`` that starts ipykernel
    through the launcher above (put ``jupyter_dir`` first on ``JUPYTER_PATH``),
    forked from the zygote listening on ``zygote`` if given, in the box whose
    shared folder is ``box`` if given (see :class:`_Box`)."""
    spec_dir = os.path.join(jupyter_dir, "kernels", "python3")
    os.makedirs(spec_dir, exist_ok=True)
    argv = [sys.executable, SCRIPT, "kernel", "--memory", str(memory), "--cpu", str(cpu), "--user", user,
            "--zygote", zygote, "--box", box,
            "--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Python 3 (ipykernel, nnh sandbox)", "language": "python",
            "metadata": {"debugger": False}}
    # PYTHONSAFEPATH: ``python -m ipykernel_launcher`` must not import a student's
    # ``ipykernel_launcher.py`` (or anything else) from the working folder first
    spec["env"] = {"PYTHONSAFEPATH": "1"}
    if box:  # the kernel's pid means nothing outside its box: interrupt it with a message, not a signal
        spec.update(interrupt_mode="message", env={**spec["env"], **_private_home(BOX_HOME)})
    with open(os.path.join(spec_dir, "kernel.json"), "w") as fh:
        json.dump(spec, fh)


# --------------------------------------------------------------------------- tampering scan

#: Names a hidden test relies on; a student cell must not rebind them at top level.
PROTECTED_BUILTINS = frozenset({
    "AssertionError", "BaseException", "Exception", "ValueError", "TypeError", "ZeroDivisionError",
    "NotImplementedError", "isinstance", "issubclass", "float", "int", "bool", "abs", "len", "all",
    "any", "range", "zip", "type", "getattr", "hasattr", "setattr", "callable", "repr", "str", "list",
    "tuple", "dict", "set", "min", "max", "round", "__import__", "__builtins__", "__name__",
    "globals", "locals", "vars", "print", "open", "super", "object", "get_ipython",
})
#: Modules whose attributes a student cell must never assign, whatever they are called.
PROTECTED_MODULES = frozenset({"builtins", "numpy", "math", "nnh", "keras", "tensorflow", "sys", "os",
                               "scipy", "IPython", "importlib", "inspect"})
#: Imports that only serve to reach into the interpreter.
FORBIDDEN_IMPORTS = frozenset({"builtins", "ctypes", "gc", "importlib", "unittest", "mock", "IPython",
                               "atexit", "faulthandler", "_thread", "cffi"})
#: Attributes that reach into frames, code objects or namespaces.
FORBIDDEN_ATTRIBUTES = frozenset({
    "__dict__", "__globals__", "__code__", "__closure__", "__builtins__", "__subclasses__", "__setattr__",
    "__delattr__", "__setitem__", "__class__", "__bases__", "__mro__", "__init_subclass__", "f_globals",
    "f_locals", "f_back", "f_builtins", "_getframe", "settrace", "setprofile", "excepthook", "displayhook",
    "input_transformers_post", "input_transformers_cleanup", "ast_transformers", "set_custom_exc",
    "register_magic_function", "events", "user_ns", "modules", "meta_path", "path_hooks", "addaudithook",
})
FORBIDDEN_CALLS = frozenset({"exec", "eval", "compile", "__import__", "setattr", "delattr", "get_ipython",
                             "globals", "vars", "breakpoint"})


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _module_aliases(sources: list[str]) -> dict[str, str]:
    """Name → module for every ``import`` (and ``from pkg import mod``) in ``sources``."""
    aliases = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                for alias in node.names:
                    if top in PROTECTED_MODULES:
                        aliases[alias.asname or alias.name] = top
    return aliases


def _strip_magics(source: str) -> str:
    return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def scan_cell(source: str, aliases: dict[str, str]) -> list[str]:
    """Reasons why this (student-written) cell tampers with what the tests rely on."""
    try:
        tree = ast.parse(_strip_magics(source))
    except SyntaxError:
        return []  # a syntax error is graded by running it, not a tampering
    aliases = {**_module_aliases([_strip_magics(source)]), **aliases}  # the cell's own imports count too
    protected_names = {name for name, module in aliases.items() if module in PROTECTED_MODULES}
    protected = PROTECTED_BUILTINS | protected_names
    reasons: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        reasons.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def check_target(target: ast.AST, node: ast.AST, top_level: bool) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                check_target(element, node, top_level)
        elif isinstance(target, ast.Starred):
            check_target(target.value, node, top_level)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = _root_name(target)
            if root in protected_names or root in {"builtins", "__builtins__", "sys"}:
                flag(node, f"assigns into {ast.unparse(target)} (module {aliases.get(root, root)!r})")
        elif isinstance(target, ast.Name) and top_level and target.id in protected:
            flag(node, f"rebinds {target.id!r}, which the tests rely on")

    def visit(node: ast.AST, top_level: bool) -> None:
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                check_target(target, node, top_level)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.NamedExpr)):
            targets = ([node.target] if isinstance(node, (ast.For, ast.AsyncFor, ast.NamedExpr))
                       else [item.optional_vars for item in node.items if item.optional_vars is not None])
            for target in targets:
                check_target(target, node, top_level)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if top_level and node.name in protected:
                flag(node, f"defines {node.name!r}, which the tests rely on")
            for child in ast.iter_child_nodes(node):
                visit(child, False)
            return
        elif isinstance(node, ast.Global):
            for name in node.names:
                if name in protected:
                    flag(node, f"declares global {name!r}, which the tests rely on")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_IMPORTS:
                    flag(node, f"imports {name!r}")
            if top_level:
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    module = alias.name.split(".")[0] if isinstance(node, ast.Import) else (node.module or "")
                    if bound in PROTECTED_BUILTINS or (bound in protected_names and aliases.get(bound) not in
                                                       {module.split(".")[0], None}):
                        flag(node, f"rebinds {bound!r} by an import")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            if not (node.attr == "__class__" and isinstance(node.ctx, ast.Load)):
                flag(node, f"uses {ast.unparse(node)!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            first = node.args[0] if node.args else None
            if node.func.id in {"setattr", "delattr"} and isinstance(first, ast.Name) and first.id in {"self", "cls"}:
                for child in [*node.args, *node.keywords]:  # setattr(self, ...) is an ordinary method
                    visit(child, top_level)
                return
            flag(node, f"calls {node.func.id}()")
            for child in [*node.args, *node.keywords]:
                visit(child, top_level)
            return
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_CALLS and isinstance(node.ctx, ast.Load):
            flag(node, f"uses {node.id!r}")
        elif isinstance(node, ast.Name) and node.id in {"__builtins__", "builtins"}:
            flag(node, f"uses {node.id!r}")
        for child in ast.iter_child_nodes(node):
            visit(child, top_level)

    for statement in tree.body:
        visit(statement, True)
    return reasons


def scan_notebook(submitted, source) -> list[tuple[str | None, int, list[str]]]:
    """Tampering found in the student-editable cells of ``submitted``: for each
    offending cell (grade_id or None, index in ``submitted``, reasons).  Locked
    cells of ``source`` are skipped: nbgrader restores them before running."""
    locked = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
              if c.metadata.get("nbgrader", {}).get("locked") or c.metadata.get("nbgrader", {}).get("grade")
              and not c.metadata.get("nbgrader", {}).get("solution")}
    aliases = _module_aliases([c.source for c in source.cells if c.cell_type == "code"])
    student_code = [c.source for c in submitted.cells if c.cell_type == "code"
                    and c.metadata.get("nbgrader", {}).get("grade_id") not in locked]
    aliases.update({k: v for k, v in _module_aliases(student_code).items() if k not in aliases})
    found = []
    for index, cell in enumerate(submitted.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type != "code" or grade_id in locked:
            continue
        reasons = scan_cell(cell.source, aliases)
        if reasons:
            found.append((grade_id, index, reasons))
    return found


# --------------------------------------------------------------------------- runtime integrity guard

GUARD_UNAVAILABLE = "the runtime integrity guard could not be installed: only the static check applied"
#: Global names whose rebinding in the notebook namespace can only serve to fool a test.
SHADOW_GUARDED = ("AssertionError", "BaseException", "Exception", "ValueError", "TypeError", "ZeroDivisionError",
                  "NotImplementedError", "isinstance", "issubclass", "__import__")
#: The packages the guard watches, when the notebook imports them: what tests compare with.
#: (Not tensorflow: its lazy loaders replace their own entries on first use.)
GUARDED_TOPS = ("builtins", "math", "cmath", "numpy", "nnh", "keras", "scipy", "sklearn")
#: Top-level modules whose every loaded submodule is guarded (others: the module and its public submodules).
DEEP_GUARDED = ("builtins", "math", "numpy", "nnh")
#: Builtins that IPython or ipykernel rebind by themselves.
_VOLATILE_BUILTINS = ("_", "__", "___", "exit", "quit", "get_ipython", "display", "__IPYTHON__", "input",
                      "raw_input", "copyright", "credits", "license", "help")


def guarded_modules(sources: list[str]) -> tuple[list[str], dict[str, str]]:
    """What the integrity guard watches for a notebook whose code cells are
    ``sources``: the modules they import, and the names ``import`` binds to a module
    (``np`` → ``numpy``)."""
    modules, aliases = {"builtins", "math", "numpy"}, {}
    for source in sources:
        try:
            tree = ast.parse(_strip_magics(source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    modules.add(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module)
    if any(m.split(".")[0] == "nnh" for m in modules):
        modules |= set(NNH_MODULES)  # loaded on first use: guard them all, as they are before any cell
    modules = sorted(m for m in modules if m.split(".")[0] in GUARDED_TOPS)
    return modules, {k: v for k, v in aliases.items() if v.split(".")[0] in GUARDED_TOPS}


def _integrity_guard(name, modules, aliases, shadowed, deep, volatile):  # pragma: no cover - runs in the kernel
    """Runs inside the student's kernel, once, silently, before its first cell (its
    source is sent there by :class:`SandboxExecute`).  Imports ``modules``, takes a
    snapshot of the identity of everything the tests rely on, and installs a check
    as ``builtins.<name>`` (``name`` is random per run).  ``<name>(challenge)``
    answers ``HMAC(key, challenge + ":ok")`` if nothing changed, or
    ``HMAC(key, challenge + ":tampered")`` and what changed.  Returns the key (hex),
    which lives on only in the check's closure."""
    import builtins
    import hashlib
    import hmac
    import os
    import sys
    import types

    for module in modules:
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - guard what imports
            pass
    key = os.urandom(32)
    new_hmac, sha256, module_type, getitem = hmac.new, hashlib.sha256, types.ModuleType, dict.get
    missing = object()
    tops = {m.split(".")[0] for m in modules}
    found = {}
    for mname, module in list(sys.modules.items()):
        top = mname.split(".")[0]
        if isinstance(module, module_type) and top in tops and (top in deep or "." not in mname) \
                and ".tests" not in mname:
            found[mname] = module
    for top in sorted(tops - set(deep)):  # e.g. keras: the module and its public submodules
        module = sys.modules.get(top)
        for attr, value in (list(vars(module).items()) if module is not None else []):
            if isinstance(value, module_type) and not attr.startswith("_") \
                    and str(getattr(value, "__name__", "")).startswith(top + "."):
                found.setdefault(f"{top}.{attr}", value)

    def watched(value):
        return callable(value) or isinstance(value, (module_type, float, classmethod, staticmethod, property))

    entries = []  # (what, mapping, key, value): mapping[key] must stay value
    classes = set()
    for mname, module in sorted(found.items()):
        namespace = vars(module)
        for attr, value in list(namespace.items()):
            if mname == "builtins" and (attr in volatile or attr == name):
                continue
            if attr == "__warningregistry__" or not watched(value):
                continue
            entries.append((f"{mname}.{attr}", namespace, attr, value))
            if isinstance(value, type) and str(getattr(value, "__module__", "")).split(".")[0] in tops \
                    and id(value) not in classes:
                classes.add(id(value))
                for cattr, cvalue in list(vars(value).items()):
                    if watched(cvalue) and not cattr.startswith("__"):
                        entries.append((f"{mname}.{attr}.{cattr}", vars(value), cattr, cvalue))
    modules_dict = sys.modules
    for mname, module in found.items():
        if modules_dict.get(mname) is module:
            entries.append((f"sys.modules[{mname!r}]", modules_dict, mname, module))
    for attr in ("modules", "settrace", "setprofile", "gettrace", "getprofile", "exc_info", "_getframe",
                 "addaudithook"):  # not displayhook, excepthook: IPython swaps them around every cell
        if attr in vars(sys):
            entries.append((f"sys.{attr}", vars(sys), attr, vars(sys)[attr]))
    shell = get_ipython()  # noqa: F821 - the kernel's IPython
    user_ns = shell.user_ns
    entries.append(("the notebook's __builtins__", user_ns, "__builtins__", user_ns.get("__builtins__")))
    for cls in list(type(shell).__mro__) + list(type(shell.kernel).__mro__) + list(type(shell.compile).__mro__):
        if cls is not object and id(cls) not in classes:
            classes.add(id(cls))
            for cattr, cvalue in list(vars(cls).items()):
                if watched(cvalue) and not cattr.startswith("__"):
                    entries.append((f"IPython: {cls.__name__}.{cattr}", vars(cls), cattr, cvalue))
    instance_names = {obj_name: (obj, dict(vars(obj))) for obj_name, obj in
                      (("the shell", shell), ("the kernel", shell.kernel), ("the compiler", shell.compile))}
    transformers = {
        "input_transformers_cleanup": shell.input_transformers_cleanup,
        "input_transformers_post": shell.input_transformers_post,
        "ast_transformers": shell.ast_transformers,
        "line_transforms": shell.input_transformer_manager.line_transforms,
        "token_transformers": shell.input_transformer_manager.token_transformers,
    }
    transformers = {k: (v, list(v)) for k, v in transformers.items()}
    handlers = dict(shell.kernel.shell_handlers)
    events = {event: list(callbacks) for event, callbacks in shell.events.callbacks.items()}
    trace, profile = sys.gettrace(), sys.getprofile()
    custom = shell.custom_exceptions
    allowed_dirs = tuple(os.path.dirname(m.__file__) for m in (sys.modules.get("matplotlib_inline"),
                                                                sys.modules.get("IPython"),
                                                                sys.modules.get("ipykernel"))
                         if m is not None and getattr(m, "__file__", None))

    def changes():
        found = []
        for what, mapping, attr, value in entries:
            if mapping.get(attr, missing) is not value:
                found.append(f"{what} was replaced or deleted")
        for attr in shadowed:
            if attr in user_ns:
                found.append(f"the notebook rebinds {attr!r}")
        for alias, mname in aliases.items():
            module = found_modules.get(mname)
            if module is not None and getitem(user_ns, alias, module) is not module:
                found.append(f"the notebook rebinds {alias!r}, which must be the module {mname!r}")
        if shell.user_ns is not user_ns:
            found.append("the notebook namespace was replaced")
        for obj_name, (obj, before) in instance_names.items():
            for attr, value in vars(obj).items():
                if callable(value) and before.get(attr, missing) is not value:
                    found.append(f"{obj_name}'s {attr} was replaced")
        for attr, (current, before) in transformers.items():
            current_now = getattr(shell.input_transformer_manager, attr) if attr in ("line_transforms",
                                                                                      "token_transformers") \
                else getattr(shell, attr)
            if current_now is not current or len(current) != len(before) or \
                    any(a is not b for a, b in zip(current, before)):
                found.append(f"IPython's {attr} were changed")
        if dict(shell.kernel.shell_handlers) != handlers:
            found.append("the kernel's message handlers were changed")
        for event, callbacks in shell.events.callbacks.items():
            for callback in callbacks:
                if not any(callback is c for c in events.get(event, [])):
                    code = getattr(getattr(callback, "__func__", callback), "__code__", None)
                    where = getattr(code, "co_filename", "")
                    if not (where and where.startswith(allowed_dirs) and os.path.isfile(where)):
                        found.append(f"an IPython {event!r} callback was registered")
        if sys.gettrace() is not trace or sys.getprofile() is not profile:
            found.append("a trace or profile function was set")
        if shell.custom_exceptions != custom:
            found.append("IPython's custom exception handler was set")
        return found

    found_modules = dict(found)

    def check(challenge):
        try:
            reasons = changes()
        except Exception as error:  # noqa: BLE001 - a check that cannot run is a change too
            reasons = [f"the integrity check failed ({type(error).__name__})"]
        verdict = "tampered" if reasons else "ok"
        token = new_hmac(key, f"{challenge}:{verdict}".encode(), sha256).hexdigest()
        return token + "\n" + "\n".join(reasons[:8])

    setattr(builtins, name, check)
    return key.hex()


# --------------------------------------------------------------------------- nbgrader preprocessors

OUTPUT_NOTE = "[nnh grade: output truncated: it passed"
OUTPUT_ERROR_CHARS = 20_000  # an error's message, and each traceback line, at most
OUTPUT_TRACEBACK_LINES = 60  # the last lines of a traceback


def _output_size(content: dict) -> int:
    """Characters of an output message's content (text, data of every MIME type, its
    metadata, error): everything the notebook would store of it."""
    size = 0
    for key in ("text", "evalue"):
        if isinstance(content.get(key), str):
            size += len(content[key])
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
    if content.get("metadata"):
        size += len(json.dumps(content["metadata"], default=str))
    size += sum(len(str(line)) for line in content.get("traceback") or [])
    return size


def _preprocessors():
    """nbgrader preprocessors used by the worker (imported lazily: nbgrader is heavy)."""
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import ensure_async as _ensure_async
    from nbformat.notebooknode import NotebookNode
    from nbgrader import utils
    from nbgrader.preprocessors import Execute, NbGraderPreprocessor

    class SandboxExecute(Execute):
        """nbgrader's ``Execute`` with three changes, so that one bad cell costs only
        what it must:

        * a dying kernel does not lose the grades of the cells that ran before: the
          cell that killed it and every later code cell get an error output;
        * the notebook has a time budget (``notebook_timeout``): each cell gets at most
          what is left of it, and once it is spent the remaining cells are not run;
        * a cell that cannot be stopped (it ignores the interrupt) ends the run like
          a dead kernel, instead of failing the whole notebook;
        * output is capped as it arrives (``cell_output`` and ``notebook_output``
          bytes): what passes a cap is dropped, with one note in the cell, so a
          flood of ``print`` or ``display`` cannot fill the grader's memory or the
          disk.  Errors are always kept (shortened): they decide the points;
        * an integrity guard (:func:`_integrity_guard`, when ``guard`` is set): before
          the first cell a silent request snapshots what the tests rely on, and before
          and after every test cell a silent request with a fresh challenge checks it;
          a change (or a check that does not answer correctly) ends the run: that test
          cell and every later one get a ``TamperingDetected`` error (zero points).
        """

        sandbox_owner = None  # (uid, gid) that gets the notebook's folder, when grading as root
        box_run = None  # the boxed kernel's connection folder: sealed once the kernel is up
        notebook_timeout = None  # seconds for all cells together (None: no budget)
        guard = None  # (modules, aliases) to guard, from the source notebook (None: no runtime guard)
        cell_output = None  # bytes of output one cell keeps (None: no cap)
        notebook_output = None  # bytes of output the notebook keeps (None: no cap)

        def preprocess(self, nb, resources=None, km=None):
            self._nnh_output = {"notebook": 0, "cells": {}, "truncated": set()}
            self._nnh_dead = None
            self._nnh_why = ""
            self._nnh_start = None
            self._nnh_cell_timeout = self.timeout
            self._nnh_guard = None  # (name in builtins, key) once the guard is installed; False: unavailable
            path = (resources or {}).get("metadata", {}).get("path")
            if self.sandbox_owner and path and os.path.isdir(path):
                os.chown(path, *self.sandbox_owner)  # the kernel's working folder, and nothing else
            try:
                return super().preprocess(nb, resources, km)
            except Exception:
                if self._nnh_dead is None:
                    raise
                return nb, resources  # shutting down a dead or stuck kernel may fail too

        async def async_start_new_kernel_client(self):
            client = await super().async_start_new_kernel_client()
            if self.box_run and _Box.current is not None:
                _Box.current.seal(self.box_run)
            return client

        def _stop(self, cell, index, ename, why):
            self._nnh_dead = cell.metadata.get("nbgrader", {}).get("grade_id") or f"#{index + 1}"
            self._nnh_why = ename
            cell.outputs = list(cell.get("outputs", [])) + [_error(ename, why)]
            return cell, self.resources

        # -- the integrity guard: silent requests the notebook does not record

        def _silent(self, code, expressions, timeout):
            """Run ``code`` silently (no output, no history, no execution count) and
            evaluate ``expressions``; their text values, or None without an answer."""
            import ast as _ast
            import time as _time
            from queue import Empty

            from jupyter_core.utils import run_sync

            msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=expressions,
                                     allow_stdin=False)

            async def reply():
                deadline = _time.monotonic() + timeout
                while _time.monotonic() < deadline:
                    try:
                        msg = await _ensure_async(self.kc.shell_channel.get_msg(timeout=1))
                    except Empty:
                        await self._async_check_alive()
                        continue
                    if msg["parent_header"].get("msg_id") == msg_id:
                        return msg
                return None

            msg = run_sync(reply)()
            if msg is None or msg["content"].get("status") != "ok":
                return None
            values = {}
            for key, value in msg["content"].get("user_expressions", {}).items():
                try:
                    values[key] = _ast.literal_eval(value["data"]["text/plain"])
                except (KeyError, TypeError, ValueError, SyntaxError):
                    values[key] = None
            return values

        def _install_guard(self, timeout):
            import inspect
            import secrets

            modules, aliases = self.guard
            name, temporary = "_" + secrets.token_hex(12), "_" + secrets.token_hex(12)
            code = (inspect.getsource(_integrity_guard) + f"{temporary} = _integrity_guard({name!r}, "
                    f"{modules!r}, {aliases!r}, {SHADOW_GUARDED!r}, {DEEP_GUARDED!r}, {_VOLATILE_BUILTINS!r})\n"
                    "del _integrity_guard\n")
            values = self._silent(code, {"key": f"globals().pop({temporary!r})"}, timeout)
            key = (values or {}).get("key")
            if not isinstance(key, str):
                self._nnh_guard = False
                self.log.warning(GUARD_UNAVAILABLE)
                return
            self._nnh_guard = (name, bytes.fromhex(key))

        def _check_guard(self):
            """None if nothing the tests rely on changed, else what changed."""
            import hashlib
            import hmac
            import secrets

            name, key = self._nnh_guard
            challenge = secrets.token_hex(16)
            values = self._silent("", {"r": f"{name}({challenge!r})"}, 60)
            answer = (values or {}).get("r")
            token, _, reasons = answer.partition("\n") if isinstance(answer, str) else ("", "", "")

            def expected(verdict):
                return hmac.new(key, f"{challenge}:{verdict}".encode(), hashlib.sha256).hexdigest()

            if hmac.compare_digest(token, expected("ok")):
                return None
            if hmac.compare_digest(token, expected("tampered")):
                return "; ".join(reasons.splitlines()) or "a change"
            return "the integrity check did not answer as it must (it was removed or replaced)"

        # -- the output caps

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            if msg.get("msg_type") == "error":  # never dropped: it decides the points
                content["evalue"] = _shorten(str(content.get("evalue", "")), OUTPUT_ERROR_CHARS)
                content["traceback"] = [_shorten(str(line), OUTPUT_ERROR_CHARS)
                                        for line in list(content.get("traceback") or [])[-OUTPUT_TRACEBACK_LINES:]]
                return super().output(outs, msg, display_id, cell_index)
            size = _output_size(content)
            used = self._nnh_output
            cell_used = used["cells"].get(cell_index, 0)
            budgets = ((self.cell_output, cell_used, "this cell's"), (self.notebook_output, used["notebook"],
                                                                      "the notebook's"))
            over = [(cap, spent, what) for cap, spent, what in budgets if cap is not None and spent + size > cap]
            out, keep = None, not over
            if over and msg.get("msg_type") == "stream" and isinstance(content.get("text"), str):
                room = max(min(cap - spent for cap, spent, _ in over), 0)
                content["text"], size = content["text"][:room], room  # the part that fits
                keep = size > 0
            if keep:
                used["cells"][cell_index] = cell_used + size
                used["notebook"] += size
                out = super().output(outs, msg, display_id, cell_index)
            if over and cell_index not in used["truncated"]:
                used["truncated"].add(cell_index)
                cap, _, what = over[0]
                # display data: never merged into the student's streams, nor cut by LimitOutput
                outs.append(NotebookNode(output_type="display_data", metadata={}, data={
                    "text/plain": f"{OUTPUT_NOTE} {what} limit of {cap / 2**20:g} MB; the rest was not kept]"}))
            return out

        def _update_display_id(self, display_id, msg):
            # an update replaces an output in place: it must fit the cell's cap on its own
            if self.cell_output is not None and _output_size(msg.get("content", {})) > self.cell_output:
                return None
            return super()._update_display_id(display_id, msg)

        def _guarded(self, cell, index, when):
            """Run the integrity check; on a change, stop here (a ``TamperingDetected`` error)."""
            if not self._nnh_guard or cell.cell_type != "code" or not utils.is_grade(cell):
                return None
            try:
                change = self._check_guard()
            except DeadKernelError:
                return self._stop(cell, index, "KernelDied", "the kernel died before this cell")
            if change is None:
                return None
            if when == "before":
                cell.outputs = []
            return self._stop(cell, index, "TamperingDetected",
                              f"the integrity check {when} this test cell found: {change}")

        def preprocess_cell(self, cell, resources, index):
            import time as _time

            if self._nnh_dead is not None:
                if cell.cell_type == "code":
                    reason = {"KernelDied": "the kernel died", "TamperingDetected": "tampering was detected"}.get(
                        self._nnh_why, "the notebook ran out of time")
                    cell.outputs = [_error(self._nnh_why, f"not run: {reason} in cell {self._nnh_dead}")]
                return cell, resources
            if self._nnh_start is None:
                self._nnh_start = _time.monotonic()
            if self.guard and self._nnh_guard is None and cell.cell_type == "code":
                left = (self.notebook_timeout - (_time.monotonic() - self._nnh_start)) if self.notebook_timeout \
                    else None
                try:
                    self._install_guard(max(1.0, min(max(self._nnh_cell_timeout or 0, 60), left or 1e9)))
                except DeadKernelError:
                    return self._stop(cell, index, "KernelDied", "the kernel died before this cell")
            if self.notebook_timeout and cell.cell_type == "code":
                left = self.notebook_timeout - (_time.monotonic() - self._nnh_start)
                if left <= 0:
                    cell.outputs = []
                    return self._stop(cell, index, "NotebookTimeoutError",
                                      f"not run: the notebook used up its {self.notebook_timeout:.0f} s time limit")
                self.timeout = int(max(1, min(self._nnh_cell_timeout or left, left)))
            stopped = self._guarded(cell, index, "before")
            if stopped is not None:
                return stopped
            try:
                cell, resources = super().preprocess_cell(cell, resources, index)
            except DeadKernelError:
                return self._stop(cell, index, "KernelDied",
                                  "the kernel died while running this cell (os._exit, killing its own process, "
                                  "a crash, or the memory or CPU limit)")
            except Exception as error:  # noqa: BLE001 - e.g. a cell that ignores the interrupt
                return self._stop(cell, index, "CellTimeoutError",
                                  f"the cell could not be run or stopped ({type(error).__name__}: "
                                  f"{str(error)[:300]}); the cells after it were not run")
            stopped = self._guarded(cell, index, "after")
            return stopped if stopped is not None else (cell, resources)

    def _shorten(text, limit):
        return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} characters cut]"

    def _error(ename, evalue):
        return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                            traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])

    class StderrIsNotFailure(NbGraderPreprocessor):
        """Grade cells: turn ``stderr`` stream outputs into ``stdout``, so that
        warnings and logs do not cost points (``nbgrader.utils.determine_grade``
        gives zero to any cell with stderr output); errors still do."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "code" and utils.is_grade(cell):
                for output in cell.outputs:
                    if output.output_type == "stream" and output.name == "stderr":
                        output.name = "stdout"
            return cell, resources

    class RestoreOrder(NbGraderPreprocessor):
        """Put the cells of the source notebook back in the source's order (cells
        the student added stay right after the cell they followed)."""

        source_order: dict = {}  # notebook name -> grade_ids in the source's order (set by the worker)

        def preprocess(self, nb, resources):
            order = type(self).source_order.get(resources["nbgrader"]["notebook"])
            if not order:
                return nb, resources
            rank = {grade_id: i for i, grade_id in enumerate(order) if grade_id}
            groups: dict[int, list] = {-1: []}
            current = -1
            for cell in nb.cells:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id in rank:
                    current = rank[grade_id]
                groups.setdefault(current, []).append(cell)
            nb.cells = [cell for key in sorted(groups) for cell in groups[key]]
            return nb, resources

    return SandboxExecute, StderrIsNotFailure, RestoreOrder


# --------------------------------------------------------------------------- the worker


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def _write_files(root: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def _check_notebooks(sub_dir: str, expected: list[str], source_ids: dict[str, set]) -> tuple[list[str], str | None]:
    """Validate the submitted notebooks; rename a notebook submitted under another
    name when it is clearly the missing one.  Returns (details, error or None)."""
    import nbformat

    details = []
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(sub_dir, "*.ipynb")))
    if not os.path.isdir(sub_dir) or not [f for f in os.listdir(sub_dir) if f != "timestamp.txt"]:
        return details, "the submission folder is empty"
    valid = {}
    for name in present:
        path = os.path.join(sub_dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                json.load(fh)
        except (ValueError, UnicodeDecodeError) as error:
            details.append(f"{name} is not valid JSON ({error}); it cannot be graded")
            continue
        try:
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        except Exception as error:  # noqa: BLE001 - any reason it is not a notebook
            details.append(f"{name} is not a Jupyter notebook ({type(error).__name__}: {str(error)[:200]})")
            continue
        valid[name] = nb
    missing = [name for name in expected if name not in valid]
    extra = [name for name in valid if name not in expected]
    for name in missing:
        ids = source_ids[name]
        candidates = [e for e in extra
                      if ids & {c.metadata.get("nbgrader", {}).get("grade_id") for c in valid[e].cells}]
        if len(candidates) == 1 and not os.path.exists(os.path.join(sub_dir, name)):
            os.rename(os.path.join(sub_dir, candidates[0]), os.path.join(sub_dir, name))
            details.append(f"the notebook {candidates[0]!r} was graded as {name!r} (renamed notebook)")
            valid[name] = valid.pop(candidates[0])
            extra.remove(candidates[0])
    for name in extra:
        details.append(f"the extra notebook {name!r} is not part of the assignment and was not graded")
    for name in expected:
        if name not in valid:
            path = os.path.join(sub_dir, name)
            if os.path.exists(path):  # invalid: move it away so nbgrader treats it as missing
                os.rename(path, path + ".invalid")
            details.append(f"{name} is missing or invalid: its tests score zero")
    if not any(name in valid for name in expected):
        return details, "no gradable notebook in the submission"
    return details, None


HIDDEN_NOTE = "# (hidden tests: their code is not shown in the feedback)"
_HIDDEN_REGION = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?",
                            re.MULTILINE | re.DOTALL)


def hide_hidden_tests(auto_dir: str) -> dict[str, bytes]:
    """Rewrite the autograded notebooks of ``auto_dir`` for the student's feedback: in every
    test cell with hidden tests the hidden region becomes one comment line, and an error
    it raised shows only its type and message (a traceback would print the hidden lines).
    Returns {path: original bytes}, to put back once the feedback is made."""
    originals = {}
    for path in sorted(glob.glob(os.path.join(auto_dir, "*.ipynb"))):
        with open(path, "rb") as fh:
            blob = fh.read()
        nb = json.loads(blob)
        changed = False
        for cell in nb.get("cells", []):
            if not cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                continue
            source = "".join(cell["source"]) if isinstance(cell.get("source"), list) else cell.get("source", "")
            if not _HIDDEN_REGION.search(source):
                continue
            cell["source"] = _HIDDEN_REGION.sub(HIDDEN_NOTE + "\n", source).rstrip("\n")
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
            changed = True
        if changed:
            originals[path] = blob
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(nb, fh)
    return originals


def _repair_duplicates(sub_dir: str, names: list[str]) -> list[str]:
    """A cell copied and pasted keeps its nbgrader metadata, and nbgrader's autograde fails
    on a notebook with two cells of one ``grade_id`` (jupyter/nbgrader#1941, #981).  Keep the
    metadata on the first cell of each ``grade_id`` (a test cell is then restored from the
    source, as always) and make the later copies ordinary cells: they still run, in place.
    Returns one line of feedback per repaired notebook."""
    import nbformat

    details = []
    for name in names:
        path = os.path.join(sub_dir, name)
        if not os.path.exists(path):
            continue
        nb = nbformat.read(path, as_version=4)
        seen, copies, ids = set(), [], set()
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id is not None and grade_id in seen:
                del cell.metadata["nbgrader"]
                copies.append(grade_id)
            seen.add(grade_id)
            if cell.get("id") in ids:  # a pasted cell may keep its id too
                cell.id = f"{cell.id}-copy{len(ids)}"
            ids.add(cell.get("id"))
        if copies:
            nbformat.write(nb, path)
            details.append(f"{name}: cells {sorted(set(copies))} appear more than once; the first of each "
                           "is graded, the copies run as ordinary cells")
    return details


def work(payload: dict, tmp: str) -> dict:
    """Autograde one student in ``tmp`` (a fresh directory); see the module docstring."""
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                        IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec,
                                        SaveAutoGrades)
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    assignment, student = payload["assignment"], payload["student"]
    course = os.path.join(tmp, "course")
    os.makedirs(course)
    with open(os.path.join(course, "nbgrader_config.py"), "w") as fh:
        fh.write(payload["config_text"])
    config = PyFileConfigLoader("nbgrader_config.py", path=course).load_config() if payload["config_text"] else Config()
    db = os.path.join(course, "gradebook.db")
    with open(db, "wb") as fh:
        fh.write(payload["template_db"])
    config.CourseDirectory.root = course
    config.CourseDirectory.db_url = f"sqlite:///{db}"
    coursedir = CourseDirectory(config=config)
    source_dir = coursedir.format_path(coursedir.source_directory, ".", assignment)
    sub_dir = coursedir.format_path(coursedir.submitted_directory, student, assignment)
    auto_dir = coursedir.format_path(coursedir.autograded_directory, student, assignment)
    feedback_dir = coursedir.format_path(coursedir.feedback_directory, student, assignment)
    _write_files(source_dir, payload["source_files"])
    _write_files(sub_dir, payload["submitted_files"])

    sources = {os.path.basename(p): nbformat.read(p, as_version=4)
               for p in sorted(glob.glob(os.path.join(source_dir, "*.ipynb")))}
    source_ids = {name: {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells} - {None}
                  for name, nb in sources.items()}
    import warnings

    from nbformat.warnings import DuplicateCellId

    warnings.filterwarnings("ignore", category=DuplicateCellId)  # renumbered by nbformat, reported below
    details, fatal = _check_notebooks(sub_dir, sorted(sources), source_ids)
    result = {"student": student, "assignment": assignment, "status": "ok", "details": details,
              "notebooks": {}, "autograded": {}, "feedback": {}, "timestamp": None}
    if fatal:
        result.update(status="error", details=details + [fatal])
        return result
    result["details"] += _repair_duplicates(sub_dir, sorted(sources))

    # tampering: scan the student-written cells before anything runs
    tampering = {}
    for name, source in sources.items():
        path = os.path.join(sub_dir, name)
        if os.path.exists(path):
            found = scan_notebook(nbformat.read(path, as_version=4), source)
            if found:
                tampering[name] = found

    # confine the kernel
    limits = payload["limits"]
    box = _Box.current if limits.get("sandbox") == "bwrap" else None
    if limits.get("sandbox") == "bwrap" and box is None:
        result.update(status="error", details=details + [_Box.error or "the sandbox (bubblewrap) is not available"])
        return result
    zygote = _Zygote.current.path if _Zygote.current and _Zygote.current.boxed == bool(box) else ""
    jupyter_dir, home = os.path.join(tmp, "jupyter"), os.path.join(tmp, "home")
    os.makedirs(home)
    user = box.user if box else limits.get("user", "")
    write_kernelspec(jupyter_dir, memory=int(limits["memory"]), cpu=int(limits["cpu"]), user=user,
                     zygote=zygote, box=box.root if box else "")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([jupyter_dir, os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep)
    if box:  # the kernel's files: a copy in the box; its sockets in a folder the box shares
        runtime = box.student(sub_dir)
        config.KernelManager.transport = "ipc"  # the box has no network, not even the grader's loopback
        config.KernelManager.connection_file = os.path.join(runtime, "kernel.json")  # the sockets next to it
        os.environ["JUPYTER_RUNTIME_DIR"] = runtime
    else:
        runtime = os.path.join(tmp, "runtime")  # connection files: the kernel must reach its own
        os.makedirs(runtime)
        os.chmod(runtime, 0o711)
        os.environ.update(JUPYTER_RUNTIME_DIR=runtime, **_private_home(home))

    if not box and os.geteuid() == 0 and limits.get("user"):
        import pwd

        account = pwd.getpwnam(limits["user"])
        os.makedirs(home, exist_ok=True)
        os.chown(home, account.pw_uid, account.pw_gid)
        for directory in (tmp, course, os.path.dirname(os.path.dirname(auto_dir)),
                          os.path.dirname(auto_dir)):
            os.makedirs(directory, exist_ok=True)
            os.chmod(directory, 0o711)  # traverse, not list
    SandboxExecute, StderrIsNotFailure, RestoreOrder = _preprocessors()
    cell_timeout = int(limits["cell_timeout"])
    config.Execute.timeout = cell_timeout
    config.Execute.interrupt_on_timeout = True
    config.Execute.iopub_timeout = max(float(config.Execute.get("iopub_timeout", 4)), 30.0)  # a loaded machine
    config.OverwriteCells.add_missing_cells = True
    config.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                               RestoreOrder, CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [SandboxExecute, StderrIsNotFailure, IgnorePattern,
                                                ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
                                                AssignLatePenalties, CheckCellMetadata]
    RestoreOrder.source_order = {os.path.splitext(n)[0]: [c.metadata.get("nbgrader", {}).get("grade_id")
                                                          for c in nb.cells] for n, nb in sources.items()}
    api = NbGraderAPI(coursedir=coursedir, config=config)
    SandboxExecute.notebook_timeout = limits.get("notebook_timeout")
    SandboxExecute.cell_output = limits.get("cell_output")
    SandboxExecute.notebook_output = limits.get("notebook_output")
    SandboxExecute.guard = guarded_modules([c.source for nb in sources.values() for c in nb.cells
                                            if c.cell_type == "code"])
    if not box and os.geteuid() == 0 and limits.get("user"):
        SandboxExecute.sandbox_owner = (account.pw_uid, account.pw_gid)
    SandboxExecute.box_run = runtime if box else None
    outcome = api.autograde(assignment, student, force=True, create=True)
    log = (outcome.get("log") or "") + (outcome.get("error") or "")
    if os.environ.get("NNH_GRADE_LOGS"):  # debugging: keep nbgrader's full log of every student
        with open(os.path.join(os.environ["NNH_GRADE_LOGS"], f"{student}.log"), "w") as fh:
            fh.write(log)
    result["log"] = log[-20000:]
    if not outcome["success"]:
        result["status"] = "error"
        lines = [line for line in log.splitlines() if line.strip() and not line.startswith((" ", "\t", "Traceback"))
                 and ("Error" in line or "error" in line or "Exception" in line)]
        result["details"].append("nbgrader autograde failed: " + " | ".join(lines[:6])[-1500:])

    # statuses from the executed notebooks
    affected: dict[str, set] = {}
    for name in sources:
        path = os.path.join(auto_dir, name)
        if not os.path.exists(path):
            continue
        nb = nbformat.read(path, as_version=4)
        enames = [(c.metadata.get("nbgrader", {}).get("grade_id"), o.get("ename"), o.get("evalue", ""))
                  for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        if any(e in {"CellTimeoutError", "TimeoutError"} or (e == "KeyboardInterrupt") for _, e, _ in enames):
            result["status"] = "timeout"
            result["details"].append(f"{name}: a cell ran longer than its time limit ({cell_timeout} s per-cell limit, "
                                     f"{limits.get('notebook_timeout') or 0:.0f} s for the notebook) and was interrupted")
        if any(e == "NotebookTimeoutError" for _, e, _ in enames):
            result["status"] = "timeout"
            where = [g for g, e, _ in enames if e == "NotebookTimeoutError"][0]
            result["details"].append(f"{name}: the notebook ran longer than its {limits['notebook_timeout']:.0f} s "
                                     f"time limit; the cells from {where} on were not run")
        if any(e == "MemoryError" for _, e, _ in enames):
            result["status"] = "memory"
            result["details"].append(f"{name}: a cell ran out of memory (limit {limits['memory']} MB)")
        cut = [c.metadata.get("nbgrader", {}).get("grade_id") or f"#{i + 1}" for i, c in enumerate(nb.cells)
               if c.cell_type == "code" and any(OUTPUT_NOTE in str(o.get("data", {}).get("text/plain", ""))
                                                for o in c.outputs if o.output_type == "display_data")]
        if cut:
            result["details"].append(f"{name}: the output of {len(cut)} cell(s) ({', '.join(cut[:5])}) passed the "
                                     f"output limit ({limits.get('notebook_output', 0) / 2**20:g} MB for the notebook, "
                                     f"{limits.get('cell_output', 0) / 2**20:g} MB for a cell) and was cut")
        died = [v for _, e, v in enames if e == "KernelDied" and not v.startswith("not run")]
        if died:
            where = [g for g, e, v in enames if e == "KernelDied" and not v.startswith("not run")]
            if box is not None and box.killed_for_memory():
                result["status"] = "memory"
                result["details"].append(f"{name}: the kernel was killed in cell {where[0]} for using more than "
                                         f"{limits['memory']} MB of resident memory; the cells after it were not run")
            else:
                if result["status"] != "memory":
                    result["status"] = "kernel_died"
                result["details"].append(f"{name}: the kernel died in cell {where[0]}; the cells after it were not run")
        for grade_id, ename, evalue in enames:
            if "course's reference" in evalue:
                result["details"].append(f"{name}: {grade_id} scores zero: {evalue}")
        caught = [(g, v) for g, e, v in enames if e == "TamperingDetected" and not v.startswith("not run")]
        if caught:
            result["status"] = "tampered"
            result["details"].append(f"{name}: {caught[0][1]} (cell {caught[0][0]}); that test and every later "
                                     "one score zero")
        if GUARD_UNAVAILABLE in log:
            result["details"].append(f"{name}: {GUARD_UNAVAILABLE}")
        if name in tampering:
            first = min(index for _, index, _ in tampering[name])
            submitted = nbformat.read(os.path.join(sub_dir, name), as_version=4)
            first_id = submitted.cells[first].metadata.get("nbgrader", {}).get("grade_id")
            ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
            # every graded cell that runs after the first tampering cell is affected
            start = ids.index(first_id) if first_id in ids else 0
            affected[name] = {g for g, c in zip(ids[start:], nb.cells[start:])
                              if c.metadata.get("nbgrader", {}).get("grade")}
            result["status"] = "tampered"
            for grade_id, _, reasons in tampering[name]:
                for reason in reasons:
                    where = grade_id or "added by the student"
                    result["details"].append(f"{name}: tampering in cell {where}: {reason}")
            zeroed = ", ".join(sorted(affected[name]))
            result["details"].append(f"{name}: the tests after that cell score zero: {zeroed}")
    if tampering and not affected:
        result["status"] = "tampered"

    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except Exception:  # noqa: BLE001 - nothing was recorded
            submission = None
        if submission is not None:
            for notebook in submission.notebooks:
                zero = affected.get(notebook.name + ".ipynb", set())
                for grade in notebook.grades:
                    if grade.name in zero:
                        grade.auto_score = 0.0
                        grade.needs_manual_grade = grade.manual_score is not None
                gb.db.commit()
            result["timestamp"] = submission.timestamp.isoformat() if submission.timestamp else None
            for notebook in submission.notebooks:
                result["notebooks"][notebook.name] = {
                    "grades": {g.name: {"auto_score": g.auto_score, "needs_manual_grade": g.needs_manual_grade}
                               for g in notebook.grades},
                    "comments": {c.name: c.auto_comment for c in notebook.comments},
                    "late_submission_penalty": notebook.late_submission_penalty,
                }
    if os.path.isdir(auto_dir) and outcome["success"]:
        originals = hide_hidden_tests(auto_dir) if payload.get("hide_tests") else {}
        try:
            feedback = api.generate_feedback(assignment, student, force=True)
        finally:
            for path, blob in originals.items():  # the course's autograded/ keeps everything
                with open(path, "wb") as fh:
                    fh.write(blob)
        if not feedback["success"]:
            result["details"].append("nbgrader generate_feedback failed: " + (feedback.get("error") or "")[-500:])
        # what nbgrader put there (source and submitted files), not what the kernel wrote
        keep = set(payload["source_files"]) | set(payload["submitted_files"]) | set(sources) | {"timestamp.txt"}
        result["autograded"] = {k: v for k, v in _files(auto_dir).items() if k in keep}
        if os.path.isdir(feedback_dir):
            result["feedback"] = _files(feedback_dir)
    return result


def _setup_process() -> None:
    """What every grading process sets once: quiet libraries, private files."""
    import warnings

    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", message=".*not in session.*")
    os.umask(0o077)  # nothing the grader writes is readable by the sandbox user


def _grade_file(payload_path: str, result_path: str) -> None:
    """Grade the pickled task ``payload_path`` in a fresh temporary folder and
    pickle the result to ``result_path`` (written atomically, last)."""
    import tempfile

    with open(payload_path, "rb") as fh:
        payload = pickle.load(fh)
    tmp = tempfile.mkdtemp(prefix="nnh-grade-")
    try:
        result = work(payload, tmp)
    except Exception:  # noqa: BLE001 - reported as the student's status "error"
        result = {"student": payload["student"], "assignment": payload["assignment"], "status": "error",
                  "details": ["the grader failed: " + traceback.format_exc()[-1500:]], "notebooks": {},
                  "autograded": {}, "feedback": {}, "timestamp": None}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(result_path + ".part", "wb") as fh:
        pickle.dump(result, fh)
    os.replace(result_path + ".part", result_path)


def _worker(payload_path: str, result_path: str) -> int:
    """``worker PAYLOAD RESULT``: grade one student in this (fresh) process."""
    _setup_process()
    _Box.ensure()
    _grade_file(payload_path, result_path)
    return 0


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


class _Zygote:
    """This grading server's zygote (see :func:`_zygote`): a child process that
    has imported what every kernel imports, listening on a private socket."""

    current: _Zygote | None = None

    def __init__(self) -> None:
        import socket
        import subprocess
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="nnh-zygote-")  # 0700: only the grader connects
        self.path = os.path.join(self.directory, "socket")
        home = os.path.join(self.directory, "home")
        os.makedirs(home)
        env = dict(os.environ, **_private_home(home))  # what a kernel's imports read: as in work()
        # bound and listening before the zygote starts: a kernel launched right after this
        # (the first student) must find the socket, not fall back to a fresh kernel
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, SCRIPT, "zygote", str(server.fileno())]
        self.boxed = _Box.current is not None
        if self.boxed:  # in a box of this grading process's, as its kernels are
            command = [*box_command(_Box.current.root), "--", *command, "--box", _Box.current.root]
            env.update(_private_home(ZYGOTE_HOME))
        try:
            server.bind(self.path)
            server.listen(64)
            self.process = subprocess.Popen(command,
                                            cwd=self.directory, env=env, stdin=subprocess.DEVNULL,
                                            pass_fds=[server.fileno()])
        finally:
            server.close()  # the zygote has its own copy

    @classmethod
    def ensure(cls) -> None:
        """Start the zygote, or a new one if the last one died."""
        if os.environ.get("NNH_GRADE_ZYGOTE", "1") == "0":
            return
        if cls.current is not None and cls.current.process.poll() is None:
            return
        if cls.current is not None:
            cls.current.close()
        else:
            import atexit

            atexit.register(lambda: cls.current and cls.current.close())
        cls.current = cls()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


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
    if _Box.current is not None:
        _Box.current.clean()
    # a boxed zygote's children are its box: cleared by the zygote itself (and, as root, by clean() above)
    forks = zygote if zygote and not _Zygote.current.boxed else None
    for _ in range(rounds):
        pids = [pid for pid in _children() if pid != zygote] + (_children(forks) if forks else [])
        if not pids:
            return
        for pid in pids:
            try:
                if os.getpgid(pid) == pid:  # kernels lead their own session and group
                    os.killpg(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        time.sleep(0.05)  # orphans are handed to us as their parents die


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

    parser = argparse.ArgumentParser(prog="python nnh/_sandbox.py serve")
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


if __name__ == "__main__":
    import signal

    # a signal mask survives fork and exec, whoever blocked what before starting us: the
    # kernels this starts must get jupyter_client's interrupt (SIGINT)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if sys.argv[1:2] == ["kernel"]:
        _launch_kernel(sys.argv[2:])
    elif sys.argv[1:2] == ["zygote"]:
        sys.exit(_zygote(sys.argv[2:]))
    elif sys.argv[1:2] == ["worker"]:
        sys.exit(_worker(sys.argv[2], sys.argv[3]))
    elif sys.argv[1:2] == ["serve"]:
        sys.exit(_serve(sys.argv[2:]))
    else:
        sys.exit("usage: python nnh/_sandbox.py kernel|zygote|worker|serve ...")
