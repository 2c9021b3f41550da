"""The bubblewrap box every kernel runs in: PID, IPC, UTS, network and mount
namespaces of its own, a file system with only the system, the Python environment
and the nnh package (read-only), a private ``/tmp``, and as root a user id no other
kernel has at the same time.  :class:`_Box` is a grading process's box; the kernel
environment and kernelspec are made here too.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback

from nnh.grade.cgroup import CGROUP_IN_BOX, _cgroup_dirs, _make_cgroup, _oom_kills, _remove_cgroup
from nnh.grade.confine import SCRIPT, _account, _private_home
from nnh.grade.withhold import COPY_SUFFIX, make_copy, names_from_environment, package_folder


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
    copy = shared.rstrip("/") + COPY_SUFFIX
    if os.path.isdir(copy):  # the nnh package with the assignment's references withheld (nnh.grade.withhold)
        command += ["--ro-bind", copy, package_folder()]
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


def _kill_user(uid: int, wait: bool = True) -> None:
    """As root: kill every process of ``uid``: a child that becomes ``uid`` sends
    SIGKILL to every process it may signal, which are exactly those, until none is
    alive.  ``wait=False``: do not wait for it (the grading process reaps it later)."""
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
            for _ in range(50):  # again: a process may have forked while we killed
                os.kill(-1, signal.SIGKILL)
                if not _runs_as(uid):
                    break  # dead, or a zombie its parent (outside the box user) reaps
                time.sleep(0.005)
        except ProcessLookupError:
            pass
        except BaseException:  # noqa: BLE001 - reported by the exit code
            code = 1
        os._exit(code)
    if wait:
        os.waitpid(pid, 0)


def _runs_as(uid: int) -> bool:
    """Whether a process of real user id ``uid`` other than this one is alive (not a
    zombie), from ``/proc``."""
    me = str(os.getpid())
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
        except OSError:
            continue  # gone
        if int(fields.get("Uid", "-1 ").split()[0]) == uid and not fields.get("State", "").strip().startswith(("Z", "X")):
            return True
    return False


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


#: What a boxed kernel keeps of the grader's environment (names, and beginnings of
#: names): what Python, the libraries and Jupyter read, and nbgrader's
#: ``NBGRADER_EXECUTION`` (``autograde``: the exercises' ungraded "Try it" cells
#: skip their demonstrations, as nbgrader's FAQ suggests); nothing else (a token,
#: a database password in the instructor's shell) reaches student code.
KERNEL_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "HOME", "USER", "LOGNAME", "MPLBACKEND", "MPLCONFIGDIR",
              "KERAS_HOME", "KERAS_BACKEND", "JUPYTER_PLATFORM_DIRS", "PYDEVD_DISABLE_FILE_VALIDATION",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_ARENA_MAX", "NBGRADER_EXECUTION")
KERNEL_ENV_PREFIXES = ("LC_", "JPY_", "PYTHON", "TF_", "NNH_")


def _kernel_environment(environ: dict) -> dict:
    """The part of ``environ`` a boxed kernel gets (see :data:`KERNEL_ENV`)."""
    return {k: v for k, v in environ.items()
            if (k in KERNEL_ENV or k.startswith(KERNEL_ENV_PREFIXES)) and k != "NNH_GRADE_JUDGES"}


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
        self.names = names_from_environment()  # the assignment's answers: their references are withheld
        self.withheld = make_copy(package_folder(), self.root + COPY_SUFFIX, self.names) if self.names else []

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

    def stop_kernel(self) -> None:
        """A student's notebook is done: kill what runs in the box now, without waiting,
        so that it dies while the grader writes the feedback (:meth:`clean` then waits)."""
        if self.uid is not None:
            _kill_user(self.uid, wait=False)

    def clean(self) -> None:
        """After a student: nothing of theirs keeps running or stays on disk."""
        if self.uid is not None:
            _kill_user(self.uid)
        shutil.rmtree(os.path.join(self.root, BOX_STUDENT), ignore_errors=True)

    def close(self) -> None:
        """The end of the grading process: its box's folder goes, its user id is free again."""
        self.clean()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.root + COPY_SUFFIX, ignore_errors=True)
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
