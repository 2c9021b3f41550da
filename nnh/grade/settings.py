"""What the modules of ``nnh grade`` share: the statuses a student can get, the
default limits, the columns of the CSV and :class:`GradeError` (a problem of the
course or of the command line, reported as ``nnh grade: error: ...``).
"""

from __future__ import annotations


STATUSES = ("ok", "timeout", "kernel_died", "memory", "tampered", "error")
STATUS_TEXT = {
    "ok": "graded normally",
    "timeout": "a cell or the whole notebook ran longer than the time limit",
    "kernel_died": "the Python kernel died (os._exit, a crash, or a resource limit); later cells were not run",
    "memory": "the notebook used more memory than allowed",
    "tampered": "your code changes what the tests rely on (modules, builtins, the test helpers, the kernel); "
                "the notes below say which tests that cost",
    "error": "the submission could not be graded",
}
DEFAULT_TIMEOUT = 600
DEFAULT_MEMORY = 4096  # MB: resident in a cgroup; as address space TensorFlow needs about 3 GB (it reserves more
#                        than it uses): 2 GB aborts at import
DEFAULT_MAX_OUTPUT = 8.0  # MB of outputs a student's notebook keeps (a cell: at most CELL_OUTPUT_MB of it)
CELL_OUTPUT_MB = 1.0
CSV_FIELDS = ["student_id", "assignment", "score", "max_score", "status"]


class GradeError(RuntimeError):
    """A problem with the course or the command line (not with a student)."""
