"""nbgrader configuration of the nnh course.

The course root is the repository root: instructors write assignments in
``solutions/<assignment>/`` (nbgrader's *source*), ``make exercises`` generates
the student versions into ``exercises/<assignment>/`` (nbgrader's *release*),
and submissions are collected into ``submitted/<student>/<assignment>/``.
"""

import os

# Kernels started by nbgrader inherit this environment: keep TensorFlow quiet,
# because nbgrader gives zero points to a test cell that writes to stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")
c.CourseDirectory.course_id = "nnh"

# What students see in place of the reference solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Time limits: a cell may train a tiny model, never more.
c.Execute.timeout = 120          # seconds per cell
c.Execute.startup_timeout = 120  # seconds to start the kernel (TensorFlow import)
c.Execute.interrupt_on_timeout = True

# Test cells a student deleted are put back from the source before grading
# (edited ones are always restored), so a missing test cannot score nothing.
c.OverwriteCells.add_missing_cells = True
