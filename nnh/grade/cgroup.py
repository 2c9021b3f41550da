"""The box's cgroup (as root): the kernel's resident memory (swap included) and its
number of tasks are capped per student, and an OOM kill there is seen by the
grader, which reports the status ``memory``; where the CPU controller is there, every
box has the same CPU weight, so a student who starts many busy processes or threads
gets no more CPU than one who starts none.  cgroup v2 when the machine has it, else
v1's ``memory`` and ``pids`` hierarchies (and ``cpu``, if mounted); without either,
memory is capped as address space (:func:`nnh.grade.confine._confine`).
"""

from __future__ import annotations

import os
import traceback


#
# As root, a box also gets a control group of its own (cgroup v2, or the memory and
# pids hierarchies of cgroup v1), made by the grading process and bound into the box
# at CGROUP_IN_BOX.  Each kernel, still the box's root, writes its limits there and
# joins it before it drops to the box's uid: ``--memory`` then caps the kernel's
# *resident* memory (the kernel and everything it starts; swap included), and
# ``--nproc`` its tasks (processes and threads); in the CPU controller every box has
# the default weight, so under contention the boxes of the students graded at the same
# time share the CPU equally, whatever each starts.  The zygote stays outside: only the
# pages a student's kernel touches count.  The files stay root's: the kernel cannot
# raise its limits or leave.  Where no cgroup can be made (not root, a read-only
# /sys/fs/cgroup), ``--memory`` falls back to an address-space limit (RLIMIT_AS).

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PARENT = "nnh-grade"  # the folder of the boxes' cgroups, in each hierarchy
CGROUP_IN_BOX = "/run/nnh-cgroup"  # where a box sees its cgroup: one folder per hierarchy
CGROUP_V1 = ("memory", "pids")
CGROUP_V1_OPTIONAL = ("cpu",)  # used where the machine mounts it (equal CPU weights); else not
#: hierarchy → the files a usable cgroup of it has (its controllers are there)
_CONTROL_FILES = {"unified": ("memory.max", "pids.max"), "memory": ("memory.limit_in_bytes",),
                  "pids": ("pids.max",), "cpu": ("cpu.shares",)}


def _cgroup_dirs(name: str) -> dict[str, str]:
    """hierarchy → folder of the cgroup ``name`` (``unified`` on cgroup v2)."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return {"unified": os.path.join(CGROUP_ROOT, CGROUP_PARENT, name)}
    hierarchies = [*CGROUP_V1, *(c for c in CGROUP_V1_OPTIONAL if os.path.isdir(os.path.join(CGROUP_ROOT, c)))]
    return {c: os.path.join(CGROUP_ROOT, c, CGROUP_PARENT, name) for c in hierarchies}


def _enable_controllers(folder: str) -> None:
    """cgroup v2: enable memory and pids (required) and cpu (where it can be) below ``folder``."""
    _write(os.path.join(folder, "cgroup.subtree_control"), "+memory +pids")
    try:
        _write(os.path.join(folder, "cgroup.subtree_control"), "+cpu")
    except OSError:
        pass  # no CPU controller to delegate: the boxes share the CPU as processes do


def _write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _make_cgroup(name: str) -> dict[str, str] | None:
    """As root: the cgroup ``name`` in every hierarchy :func:`_cgroup_dirs` names, or
    ``None`` (nothing left behind) when one cannot be made or lacks a controller."""
    dirs = _cgroup_dirs(name)
    made: list[str] = []
    try:
        for hierarchy, folder in dirs.items():
            parent = os.path.dirname(folder)
            if hierarchy == "unified":  # v2: the controllers must be enabled on the way down
                _enable_controllers(CGROUP_ROOT)
                os.makedirs(parent, exist_ok=True)
                _enable_controllers(parent)
            os.makedirs(parent, exist_ok=True)
            _remove_stale_cgroups(parent)
            os.mkdir(folder)
            made.append(folder)
            if not all(os.path.exists(os.path.join(folder, f)) for f in _CONTROL_FILES[hierarchy]):
                raise OSError(f"{folder} lacks {_CONTROL_FILES[hierarchy]}")
        return dirs
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
    folders = {h: os.path.join(CGROUP_IN_BOX, h) for h in ("unified", *CGROUP_V1, *CGROUP_V1_OPTIONAL)}
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
        for hierarchy in (*CGROUP_V1, *(h for h in CGROUP_V1_OPTIONAL if os.path.isdir(folders[h]))):
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
