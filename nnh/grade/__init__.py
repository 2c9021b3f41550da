"""``nnh grade``: grade a whole class with nbgrader, in parallel, robustly.

Built on top of nbgrader, not instead of it: every student is autograded by
nbgrader's own ``Autograde`` converter and gets nbgrader's own HTML feedback
(see :mod:`nnh.grade.worker`), each in its own process, in a throw-away course
directory with its own copy of the gradebook (holding only the assignment),
with a confined kernel.  This process is the single writer of the course: it
merges each student's grades into the course gradebook (any ``db_url``
nbgrader accepts) and writes ``autograded/`` and ``feedback/`` exactly where
nbgrader would, so ``nbgrader export``, formgrader and manual grading keep
working.

Usage (in the course root)::

    nnh grade ASSIGNMENT [--jobs N] [--scheduler ADDRESS] [--timeout SECONDS]
                         [--memory MB] [--max-output MB] [--csv PATH] [--force] [--student ID ...]
                         [--sandbox bwrap|limits] [--no-preflight]

Every student's kernel runs in a bubblewrap box of its own (``--sandbox bwrap``, the
default; see :mod:`nnh.grade.box`): its own PID, network, IPC and mount namespaces, no
file of the course, a private ``/tmp``, and as root a user id no other kernel has.

First, a *preflight* grades the assignment's source notebook (the reference solution)
in the same sandbox, with the same limits, on the same workers; no student's grade is
kept before it has passed (the other slots grade the first students meanwhile).
If it does not get full marks, ``nnh grade`` stops with an error that names the failing
tests, their errors and the limits, instead of taking points from every honest student
(e.g. a ``--memory`` cap too low for TensorFlow, a package missing on the workers).
A passed preflight is remembered for the same source, configuration and limits.

Statuses (CSV column ``status``):

``ok``           graded normally (wrong answers and errors in the student's own
                 cells are just lost points)
``timeout``      a cell hit the per-cell limit, or the notebook the per-student limit
``kernel_died``  the kernel exited or crashed; the cells before it keep their points
``memory``       the student's code exceeded the memory cap
``tampered``     the student's cells change what the tests rely on: under the judge
                 (the default) a note that costs nothing by itself; with
                 ``--no-judge`` every test cell after the first such cell scores zero
``error``        nothing gradable: empty folder, invalid notebook, grader failure

The grader is this package, one job a module:

=================  ===========================================================================
``cli``            the command line: options, the run over the class, the summary and CSV
``settings``       the statuses, the defaults and :class:`GradeError`
``course``         the instructor's course: config, source, submissions, the template gradebook
``task``           one student's task: what a grading process gets, with the limits
``preflight``      the reference solution graded first, in the same sandbox
``pool``           the grading processes (local servers, or Dask workers) and their tasks
``merge``          the single writer: grades into the course gradebook, ``autograded/``,
                   ``feedback/``, and the manifest of what was graded
``process``        the entry point of the grader's own processes (a script)
``serve``          a grading process: one student after another, state put back between them
``worker``         one student: nbgrader's ``Autograde`` in a throw-away course, statuses
``submission``     the submitted notebooks checked, renamed, pasted cells repaired
``execute``        nbgrader's ``Execute`` with time budget, output caps, dead-kernel handling
``scan``           the static tampering scan of the student's cells
``guard``          the runtime integrity guard, installed in the kernel
``judge``          the judge: the process where test cells are decided, away from student code
``judge_client``   the grading process's side of the judge: cells in, verdicts out
``wire``           the plain data that crosses between the kernel and the judge
``feedback``       hidden tests taken out of the student's feedback
``launcher``       the kernel launcher: resource limits, the kernel's user, the box
``zygote``         warm kernels: one import of TensorFlow, a fork per student
``box``            the bubblewrap box of each kernel: namespaces, file system, user id
``withhold``       the box's copy of nnh without the references of the assignment's answers
``cgroup``         the box's cgroup: resident memory and processes, per student
=================  ===========================================================================

What is isolated, by what, and what is not: the page *Grading a class* of the book.
"""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``nnh grade ...`` (see :func:`nnh.grade.cli.main`); imported on use, so that
    ``import nnh.grade`` stays light for the grading processes."""
    from nnh.grade.cli import main as run

    return run(argv)
