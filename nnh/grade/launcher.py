"""The kernel launcher (``process.py kernel``): the ``argv`` of the kernelspec every
student's kernel is started with.  It asks the zygote for a warm kernel and stands
in for it, or starts a fresh kernel; in a bubblewrap box when asked to (it runs
again inside the box with ``--inside``), confined by :func:`nnh.grade.confine._confine`.
"""

from __future__ import annotations

import os
import sys

from nnh.grade.box import _enter_box, _kernel_environment, box_command
from nnh.grade.confine import SCRIPT, _confine, _die_with_parent
from nnh.grade.zygote import _kernel_from_zygote, _relay


def _parse_launcher(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser(prog="python nnh/grade/process.py kernel")
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
