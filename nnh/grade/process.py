"""The entry point of the grader's own processes, run as a script
(``python nnh/grade/process.py COMMAND ...``, see :data:`nnh.grade.launcher.SCRIPT`):

``kernel --memory MB --cpu S --fsize MB --nproc N --user NAME -- CMD...``
    the kernel launcher (:mod:`nnh.grade.launcher`): sets resource limits, drops to an
    unprivileged user when started as root, and ``exec``\\ s the real kernel command, in a
    bubblewrap box (``--box SHARED``, :mod:`nnh.grade.box`) and forked from a warm zygote
    (``--zygote SOCKET``, :mod:`nnh.grade.zygote`) when asked to.  The worker installs a
    ``python3`` kernelspec whose ``argv`` goes through it, so nbgrader's own ``Execute``
    preprocessor starts a confined kernel without knowing it.

``zygote FD [--box]``
    a warm kernel factory (:mod:`nnh.grade.zygote`).

``worker PAYLOAD RESULT``
    grades one student in this process (:mod:`nnh.grade.worker`).

``serve [--idle SECONDS]``
    grades one student after another, tasks read on stdin (:mod:`nnh.grade.serve`).

A script, not ``python -m``: the kernel launcher starts in the student's working folder
as root, where ``-m`` would put that folder first on ``sys.path``.  The script's own
folder is taken off ``sys.path`` too, so that ``import nnh.grade...`` finds the installed
package only.
"""

import os
import signal
import sys

sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != os.path.dirname(os.path.abspath(__file__))]


def main(argv: list[str]) -> int:
    """Run ``COMMAND ARGS...`` (see the module docstring)."""
    # a signal mask survives fork and exec, whoever blocked what before starting us: the
    # kernels this starts must get jupyter_client's interrupt (SIGINT)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "kernel":
        from nnh.grade.launcher import _launch_kernel

        _launch_kernel(args)
        return 0
    if command == "zygote":
        from nnh.grade.zygote import _zygote

        return _zygote(args)
    if command == "worker" and len(args) == 2:
        from nnh.grade.worker import _worker

        return _worker(*args)
    if command == "serve":
        from nnh.grade.serve import _serve

        return _serve(args)
    print("usage: python nnh/grade/process.py kernel|zygote|worker|serve ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
