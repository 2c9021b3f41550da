"""Warm kernels: a zygote process imports what every kernel imports (nnh, TensorFlow,
Keras, ipykernel) once, then forks one kernel per student, each confined and boxed
as a fresh kernel would be.  :class:`_Zygote` is the grading process's handle on it;
:func:`_kernel_from_zygote` and :func:`_relay` are the launcher's side.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback

from nnh.grade.box import ZYGOTE_HOME, _Box, _clear_box, _enter_box, _kernel_environment, _private_mounts, box_command
from nnh.grade.confine import SCRIPT, _confine, _die_with_parent, _private_home


#
# Every grading kernel starts by importing nnh, i.e. TensorFlow: about 4 s of CPU
# per student, more than the rest of a student's grading.  A zygote imports it
# once; each kernel is a fork of it (copy-on-write), confined like a fresh one.
# The kernelspec still starts the kernel launcher (``process.py kernel``): that launcher asks the
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
    import selectors
    import socket

    _die_with_parent()
    # the listening socket, bound by the grader before starting us (see _Zygote): a
    # launcher that connects while we import waits in its backlog, never finds no socket
    server = socket.socket(fileno=int(argv[0]))
    boxed = argv[1:2] == ["--box"]  # in a box of its own (see _Box), cleared between kernels
    shared = argv[2] if boxed else ""
    _warm_up(boxed)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, ("accept", 0))
    kernels: dict[int, tuple] = {}  # pid -> (connection, pidfd)
    while True:
        # a launcher connects only after the previous one ended: its end comes first
        for key, _ in sorted(selector.select(), key=lambda event: event[0].data[0] == "accept"):
            what, pid = key.data
            if what == "accept":
                _fork_kernel(server, selector, kernels)
            elif _stale(key.fileobj, kernels.get(pid), what):
                continue  # handled earlier in this batch (the kernel ended and its launcher went)
            elif what == "exit":
                _kernel_ended(selector, kernels, pid, shared)
            else:
                _launcher_gone(selector, kernels, pid, shared)


def _warm_up(boxed: bool) -> None:
    """Import what every kernel imports, then make this process undumpable."""
    import importlib

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


def _fork_kernel(server, selector, kernels: dict[int, tuple]) -> None:
    """A launcher connected: read its request and its stdin/stdout/stderr, fork the
    kernel (:func:`_become_kernel`) and answer with its pid."""
    import selectors
    import socket

    conn, _ = server.accept()
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(data)
    except (OSError, ValueError):
        conn.close()
        return
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return
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


def _kernel_ended(selector, kernels: dict[int, tuple], pid: int, shared: str) -> None:
    """The kernel ``pid`` exited: reap it, clear the box when no kernel is left, and
    send its exit code to its launcher."""
    conn, pidfd = kernels.pop(pid)
    selector.unregister(pidfd)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    if shared and not kernels:
        _clear_box(shared)
    if conn.fileno() >= 0:
        selector.unregister(conn)
        try:
            conn.send(str(os.waitstatus_to_exitcode(status)).encode())
        except OSError:
            pass
        conn.close()


def _launcher_gone(selector, kernels: dict[int, tuple], pid: int, shared: str) -> None:
    """The launcher of ``pid`` is gone (jupyter_client killed it): so is its kernel."""
    import signal

    conn = kernels[pid][0]
    selector.unregister(conn)
    conn.close()
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if shared and len(kernels) == 1:
        _clear_box(shared)  # the kernel too: its "exit" then finds it dead


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
        """Start the zygote, or a new one if the last one died.  Not without root in a
        bubblewrap box: there the kernels and the zygote share the box's one user id, so
        a kernel could signal its zygote (and so end its own kernel); each kernel then
        gets a box of its own instead."""
        if os.environ.get("NNH_GRADE_ZYGOTE", "1") == "0":
            return
        if os.geteuid() != 0 and _Box.current is not None:
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
