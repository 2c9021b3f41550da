"""Warm kernels for ``nnh grade``: the zygote of :mod:`nnh.grade.zygote`.

Each grading kernel is a fork of a process that has already imported nnh
(TensorFlow), started through the same kernelspec and launcher as a fresh
kernel.  These tests start real kernels with jupyter_client and check that a
forked kernel is confined and isolated like a fresh one: its own limits, user,
working folder, environment and random state, nothing of another kernel, and
that interrupts, deaths and kills reach the right process.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import gradeclass
from nnh.grade.box import BOX_WORK, _Box, _run_quietly, box_command, write_kernelspec
from nnh.grade.cgroup import CGROUP_PARENT
from nnh.grade.serve import _is_zombie, _reap_children, _stat
from nnh.grade.zygote import _Zygote

pytestmark = pytest.mark.xdist_group("nnh-grade-solo")

MEMORY = 6000  # MB; the address-space cap the kernels must report


def sandbox_user() -> str:
    """The user kernels run as: ``nobody`` when nnh grade would use it (as root, with
    a Python that user can run), else none (the grader's own user)."""
    from nnh.grade.task import sandbox_user_usable

    return "nobody" if sandbox_user_usable("nobody") else ""


@pytest.fixture
def zygote():
    _Zygote.ensure()
    yield _Zygote.current
    _Zygote.current.close()
    _Zygote.current = None


@pytest.fixture
def spec(monkeypatch):
    """A kernelspec and runtime folder as the grader writes them; a function
    ``spec(zygote_path)`` that installs the spec and returns the working folder."""
    root = Path(tempfile.mkdtemp(prefix="nnh-zygote-test-"))
    os.chmod(root, 0o711)  # the sandbox user (as root: nobody) traverses, as in nnh grade
    runtime = root / "runtime"
    runtime.mkdir(mode=0o711)
    os.chmod(runtime, 0o711)
    work = root / "work"
    work.mkdir()
    user = sandbox_user()
    if user:
        shutil.chown(work, user)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JUPYTER_PATH", str(root / "jupyter"))
    monkeypatch.setenv("NNH_KERNEL_MARK", "from-the-launcher")

    def install(zygote_path: str) -> Path:
        write_kernelspec(str(root / "jupyter"), memory=MEMORY, cpu=0, user=user, zygote=zygote_path)
        return work

    yield install
    shutil.rmtree(root, ignore_errors=True)


def start(work: Path):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(work))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def run(kc, code: str, timeout: float = 60) -> dict:
    """Execute ``code``; {"stdout": text, "error": ename or None}."""
    out = {"stdout": "", "error": None}

    def hook(msg):
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out["stdout"] += msg["content"]["text"]
        elif msg["msg_type"] == "error":
            out["error"] = msg["content"]["ename"]

    # stop_on_error=False: an error must not abort the next request (see below)
    kc.execute_interactive(code, output_hook=hook, timeout=timeout, stop_on_error=False)
    return out


def value(kc, expression: str):
    import ast

    result = run(kc, f"print(repr({expression}))")
    assert result["error"] is None, result
    return ast.literal_eval(result["stdout"].strip())


def stop(km, kc) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and not _is_zombie(pid)


def processes(**pids: int) -> str:
    """What a failed assertion should tell: the state of each process (Linux /proc)."""
    said = []
    for name, pid in pids.items():
        try:
            stat = _stat(pid)
            wchan = Path(f"/proc/{pid}/wchan").read_text()
            threads = len(os.listdir(f"/proc/{pid}/task"))
            said.append(f"{name} {pid}: state {stat[0]}, parent {stat[1]}, {threads} thread(s), waiting in {wchan}")
        except OSError:
            said.append(f"{name} {pid}: gone")
    return "; ".join(said)


PROBE = ("(os.getpid(), os.getppid(), os.getcwd(), os.environ.get('NNH_KERNEL_MARK'), "
         "resource.getrlimit(resource.RLIMIT_AS)[0] >> 20, os.getuid(), float(np.random.rand()), "
         "'tensorflow' in sys.modules, __import__('ctypes').CDLL(None).prctl(3, 0, 0, 0, 0))")


def test_forked_kernels_are_warm_confined_and_separate(zygote, spec):
    work = spec(zygote.path)
    kernels = [start(work), start(work)]
    try:
        probes = []
        for _, kc in kernels:
            assert run(kc, "import os, sys, resource\nimport numpy as np")["error"] is None
            probes.append(value(kc, PROBE))
        for (km, _), (pid, ppid, cwd, mark, memory, uid, _, warm, dumpable) in zip(kernels, probes):
            assert ppid == zygote.process.pid, "the kernel was not forked from the zygote"
            assert warm, "TensorFlow was not already imported"
            assert pid != km.provisioner.process.pid  # the launcher stands in for it
            assert Path(cwd) == work and mark == "from-the-launcher"
            assert memory == MEMORY
            assert dumpable == 1, "the kernel kept the zygote's protection from tracing"
            import pwd

            assert uid == (pwd.getpwnam(sandbox_user()).pw_uid if sandbox_user() else os.getuid())
        assert probes[0][0] != probes[1][0]
        assert probes[0][6] != probes[1][6], "two kernels share NumPy's random state"
        # what one kernel changes in a module is not seen by the next one
        first, second = kernels[0][1], kernels[1][1]
        assert run(first, "import nnh, numpy\nnnh.leaked = 1\nnumpy.allclose = None")["error"] is None
        assert value(second, "hasattr(__import__('nnh'), 'leaked') or np.allclose is None") is False
        third = start(work)
        kernels.append(third)
        assert run(third[1], "import numpy as np, nnh")["error"] is None
        assert value(third[1], "hasattr(nnh, 'leaked') or np.allclose is None") is False
        # TensorFlow works in a fork (it was imported, never run, before the fork)
        assert run(second, "import keras\nkeras.utils.set_random_seed(0)\n"
                           "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
                           "m.compile('adam', 'mse')\n"
                           "h = m.fit(np.ones((32, 4)), np.zeros((32, 2)), epochs=2, verbose=0)")["error"] is None
        assert value(second, "len(h.history['loss'])") == 2
    finally:
        for km, kc in kernels:
            stop(km, kc)


def test_interrupt_death_and_kill_reach_the_forked_kernel(zygote, spec):
    work = spec(zygote.path)
    km, kc = start(work)  # at once: the zygote is still importing, the launcher waits for it
    try:
        pid, ppid = value(kc, "(__import__('os').getpid(), __import__('os').getppid())")
        assert ppid == zygote.process.pid, "a fresh kernel, not a fork of the zygote"
        # interrupt: jupyter_client signals the launcher's group; the launcher forwards it
        # stop_on_error=False: after an error, ipykernel aborts the requests that
        # reach it before its queue is flushed (a race with the next execute below)
        kc.execute("import time\nwhile True: time.sleep(0.01)", stop_on_error=False)
        time.sleep(1)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        # the kernel ends itself: the launcher ends with the same exit status
        kc.execute("import os; os._exit(3)")
        deadline = time.monotonic() + 60
        while km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        state = processes(launcher=km.provisioner.process.pid, kernel=pid, zygote=zygote.process.pid)
        assert not km.is_alive(), state
        assert km.provisioner.process.returncode == 3, state
        assert not alive(pid), state
    finally:
        stop(km, kc)
    # jupyter_client kills the launcher (SIGKILL): the zygote kills its kernel
    km, kc = start(work)
    pid = value(kc, "__import__('os').getpid()")
    stop(km, kc)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    assert zygote.process.poll() is None, "the zygote died with a kernel"


def test_without_a_zygote_the_launcher_starts_a_fresh_kernel(zygote, spec):
    work = spec(zygote.path)
    os.kill(zygote.process.pid, signal.SIGKILL)
    zygote.process.wait()
    km, kc = start(work)
    try:
        assert run(kc, "import os, sys, resource\nimport numpy as np")["error"] is None
        pid, ppid, cwd, mark, memory, *_ = value(kc, PROBE)
        assert pid == km.provisioner.process.pid, "a fresh kernel is the launcher itself (exec)"
        assert Path(cwd) == work and mark == "from-the-launcher" and memory == MEMORY
    finally:
        stop(km, kc)
    _Zygote.ensure()  # a dead zygote is replaced before the next student
    assert _Zygote.current is not zygote and _Zygote.current.process.poll() is None


def test_zygote_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("NNH_GRADE_ZYGOTE", "0")
    monkeypatch.setattr(_Zygote, "current", None)
    _Zygote.ensure()
    assert _Zygote.current is None


# --------------------------------------------------------------------------- the box (bubblewrap)

BOX_PROBE = ("(os.getuid(), os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), os.getcwd(), "
             "sorted(os.listdir('.')), sorted(os.listdir(REPO)), "
             "[name for _, name in socket.if_nameindex()], 'tensorflow' in sys.modules, os.listdir('/tmp'), "
             "len(open('/proc/sysvipc/shm').read().splitlines()) - 1)")
REPO = str(Path(__file__).resolve().parents[1])
LINGER = ("import ctypes, subprocess\n"  # a detached process, a file in /tmp, a SysV shared memory segment
          "open('/tmp/left-behind', 'w').write('x')\n"
          "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
          "assert ctypes.CDLL(None).shmget(0x7700, 4096, 0o1600) >= 0\n"
          "assert ctypes.CDLL(None).syscall(248, b'user', b'nnh-left', b'x', 1, -5) > 0\n")  # add_key, session
#: keyctl(KEYCTL_SEARCH) for that key in the user-session keyring: > 0 if it is still there
FIND_KEY = "ctypes.CDLL(None).syscall(250, 10, -5, b'user', b'nnh-left', 0)"


@pytest.fixture
def box(monkeypatch):
    """This process as a grading process with a box, as ``nnh grade`` makes it."""
    if _Box.current is None:
        _Box.ensure()
    if _Box.current is None:
        pytest.fail(_Box.error)
    monkeypatch.setattr(_Zygote, "current", None)
    yield _Box.current
    if _Zygote.current is not None:
        _Zygote.current.close()
    _Box.current.close()
    _Box.current = None


def boxed_kernel(box: _Box, zygote: str, files: Path, jupyter: Path, memory: int = MEMORY):
    """A kernel started as the grader starts one: kernelspec (written to ``jupyter``), IPC
    transport, student files."""
    from jupyter_client import KernelManager

    write_kernelspec(str(jupyter), memory=memory, cpu=0, user=box.user, zygote=zygote, box=box.root)
    os.environ["JUPYTER_PATH"] = str(jupyter)
    run_dir = box.student(str(files))
    km = KernelManager(kernel_name="python3", transport="ipc", connection_file=os.path.join(run_dir, "kernel.json"))
    km.start_kernel(cwd=str(files))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=90)
    box.seal(run_dir)
    return km, kc


@pytest.mark.parametrize("warm", [True, False], ids=["zygote", "fresh"])
def test_a_boxed_kernel_sees_only_its_box_and_leaves_nothing(box, warm, tmp_path, tmp_path_factory, monkeypatch):
    """Two students in turn: each sees only its box, files, environment and network, and
    leaves nothing (process, file, shared memory, key) to the next.  As root (with writable
    cgroups), --memory caps resident memory, not address space: TensorFlow imports under a
    1500 MB cap, and the first student, who touches 2 GB, is killed and reported as such."""
    resident = gradeclass.cgroups_writable()
    assert box.cgroup or not resident, "as root with writable cgroups, the box must have one"
    monkeypatch.setenv("JUPYTER_PATH", "")
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "hunter2")  # in the instructor's shell, not for students
    (tmp_path / "data.txt").write_text("the student's own file")
    # a module of the student's that ``python -m ipykernel_launcher`` must not run
    (tmp_path / "ipykernel_launcher.py").write_text("raise SystemExit('the working folder came first')\n")
    if warm:
        _Zygote.ensure()
        assert _Zygote.current.boxed
    zygote = _Zygote.current.path if warm else ""
    seen = []
    for student in range(2):  # two students, one after the other, of the same grading process
        km, kc = boxed_kernel(box, zygote, tmp_path, tmp_path_factory.mktemp("jupyter"),
                              memory=1500 if resident else MEMORY)
        try:
            assert run(kc, f"import os, sys, socket\nREPO = {REPO!r}")["error"] is None
            seen.append(value(kc, BOX_PROBE))
            if resident:
                assert value(kc, f"__import__('resource').getrlimit(__import__('resource').RLIMIT_AS)[0] == "
                                 f"{resource.RLIM_INFINITY}")
                assert run(kc, "import tensorflow\nfor name in ('memory', 'cpu', 'unified'):  # cannot leave its cgroup\n"
                               "    try:\n        open(f'/run/nnh-cgroup/{name}/cgroup.procs', 'w').write('1')\n"
                               "    except OSError:\n        pass\n"
                               "    else:\n        raise AssertionError('moved')\n")["error"] is None
                memory = ("unified", "memory.max") if "unified" in box.cgroup else ("memory", "memory.limit_in_bytes")
                assert int(Path(box.cgroup[memory[0]], memory[1]).read_text()) == 1500 << 20
                if "cpu" in box.cgroup:  # cgroup v1 with the cpu hierarchy: the box's processes share one weight
                    assert int(Path(box.cgroup["cpu"], "cpu.shares").read_text()) == 1024
                    assert any(":cpu" in line and f"{CGROUP_PARENT}/" in line
                               for line in value(kc, "open('/proc/self/cgroup').read()").splitlines()), \
                        "the kernel is not in its box's cpu cgroup"
                assert not box.killed_for_memory(), "the student before was the one killed"
            if box.uid is not None and os.uname().machine == "x86_64":
                assert value(kc, "__import__('ctypes')." + FIND_KEY.removeprefix("ctypes.")) < 0, \
                    "a key of the student before"
            assert value(kc, "os.environ.get('GRADER_SECRET_TOKEN')") is None, "the grader's environment leaked"
            assert run(kc, LINGER)["error"] is None
            assert run(kc, "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)")["error"] \
                in {"ConnectionRefusedError", "OSError", "TimeoutError"}
            if resident and student == 0:  # 2 GB, touched: the OOM killer ends the kernel
                kc.execute("import numpy\nx = numpy.ones(2 << 30, dtype=numpy.uint8)\nprint(x.sum())")
                deadline = time.monotonic() + 20
                while km.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not km.is_alive() and box.killed_for_memory()
        finally:
            stop(km, kc)
        _reap_children()  # what the grading process does after each student
    for uid, pid, pids, cwd, files, repo, interfaces, tensorflow, tmp, segments in seen:
        assert uid == (box.uid if os.geteuid() == 0 else os.getuid())
        assert uid != 0
        assert len(pids) <= 4, f"the box's /proc shows other processes: {pids}"
        assert cwd == BOX_WORK and files == ["data.txt", "ipykernel_launcher.py"]
        assert "nnh" in repo and set(repo) <= {"nnh", ".venv"}, f"the nnh package, nothing else of the course: {repo}"
        assert interfaces == ["lo"], "the box has a network of its own, with only a loopback"
        assert tensorflow is warm
        assert "left-behind" not in tmp, "a file of the student before"
        assert segments == 0, "shared memory of the student before"
    assert not any("sleep 1000" in " ".join(_cmdline(p)) for p in _all_pids()), "a process outlived its student"


def test_the_box_holds_no_course_file(box):
    """Only the Python environment and the nnh package of the repository are in it."""
    check = _run_quietly([*box_command(box.root), "--", "sh", "-c",
                                   f"test ! -e {REPO}/solutions && test ! -e {REPO}/book && test -e {REPO}/nnh"])
    assert check == ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_the_grader_reads_only_regular_files_of_a_submission(tmp_path):
    """Links are not followed (the solutions, /etc/shadow), a named pipe does not make
    the grader wait, and a folder 2000 levels deep is cut, not an error."""
    from nnh.grade.course import _files

    (tmp_path / "answer.ipynb").write_text("{}")
    (tmp_path / "solutions.ipynb").symlink_to(Path(REPO) / "solutions" / "schedules" / "schedules.ipynb")
    (tmp_path / "etc").symlink_to("/etc", target_is_directory=True)
    os.mkfifo(tmp_path / "pipe")
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(1100):  # deeper than Python's recursion limit (os.walk and os.makedirs recurse)
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    with os.fdopen(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as fh:
        fh.write("too deep")
    os.close(fd)
    (tmp_path / "d" / "near.txt").write_text("kept")
    try:
        files = _files(tmp_path)
    finally:
        subprocess.run(["rm", "-rf", str(tmp_path / "d")], check=True)
    assert set(files) == {"answer.ipynb", "d/near.txt"}


@pytest.mark.skipif(os.geteuid() != 0, reason="kills a user's processes as root")
def test_killing_a_box_user_ends_its_processes_and_returns_at_once():
    """``_kill_user`` kills every process of the box's user id, also those forked while
    it kills, and stops as soon as none is alive: a zombie whose parent is the grader
    (it reaps it later) does not count, nor does the killer itself (which runs as that
    user): either would keep it sending signals for its whole 50 rounds."""
    from nnh.grade.box import _kill_user, _runs_as

    uid = 54329  # no account, no process on this machine
    assert not _runs_as(uid)
    zombie = os.fork()
    if zombie == 0:  # pragma: no cover - the child
        os.setuid(uid)
        os._exit(0)
    deadline = time.monotonic() + 10
    while not _is_zombie(zombie) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _is_zombie(zombie) and not _runs_as(uid), "a zombie of the user is not a process that runs"
    itself = os.fork()
    if itself == 0:  # pragma: no cover - the child: the user's only live process
        os.setuid(uid)
        os._exit(0 if not _runs_as(uid) else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(itself, 0)[1]) == 0, "the process that asks is not counted"
    parent = os.fork()
    if parent == 0:  # pragma: no cover - the child: processes of uid that fork more of themselves
        try:
            os.setsid()
            os.setuid(uid)
            for _ in range(3):
                if os.fork() == 0:
                    while True:
                        if os.fork() == 0:
                            time.sleep(60)
                        time.sleep(0.01)
            time.sleep(60)
        finally:
            os._exit(0)
    time.sleep(0.3)
    assert _runs_as(uid)
    try:
        _kill_user(uid)
        assert not _runs_as(uid), "every process of the user is dead"
    finally:
        for pid in (zombie, parent):
            os.waitpid(pid, 0)
        subprocess.run(["pkill", "-KILL", "-U", str(uid)], check=False)
