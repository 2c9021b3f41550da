"""The per-student side of ``nnh grade``: a kernel launcher that confines student
code, and the worker that autogrades one student with nbgrader in a throw-away
course directory.

Two entry points, both run as ``python nnh/_sandbox.py`` (a script, so that
the ``nnh`` package, which imports TensorFlow, is not imported):

``kernel --memory MB --cpu S --fsize MB --nproc N --user NAME -- CMD...``
    Sets resource limits (``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``,
    ``RLIMIT_NPROC``, no core files), drops to an unprivileged user when started
    as root, and ``exec``\\ s the real kernel command.  The worker installs a
    ``python3`` kernelspec whose ``argv`` goes through this launcher, so nbgrader's
    own ``Execute`` preprocessor starts a confined kernel without knowing it.

``worker PAYLOAD RESULT``
    Reads a pickled task (the course config, the assignment's source, one
    student's submitted files and a gradebook that holds only the assignment),
    runs nbgrader's ``Autograde`` and ``GenerateFeedback`` through
    :class:`nbgrader.apps.NbGraderAPI` in a temporary course root outside the
    instructor's course, checks the submission for tampering, and pickles the
    grades, the autograded notebooks and the feedback to ``RESULT``.

Nothing here writes to the instructor's course: the parent process
(:mod:`nnh.grade`) is the single writer.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import pickle
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


def _launch_kernel(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nnh._sandbox kernel")
    parser.add_argument("--memory", type=int, default=0, help="address-space cap in MB (0: none)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU-time cap in seconds (0: none)")
    parser.add_argument("--fsize", type=int, default=256, help="largest file the kernel may write, MB")
    parser.add_argument("--nproc", type=int, default=4096, help="tasks (processes + threads) of the sandbox user")
    parser.add_argument("--user", default="nobody", help="unprivileged user to run as when started as root")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.memory:
        _set_limit(resource.RLIMIT_AS, args.memory << 20)
    if args.cpu:
        _set_limit(resource.RLIMIT_CPU, args.cpu)
    _set_limit(resource.RLIMIT_FSIZE, args.fsize << 20)
    _set_limit(resource.RLIMIT_CORE, 0)
    if os.geteuid() == 0 and args.user:
        import pwd

        account = pwd.getpwnam(args.user)
        # the connection file is written 0600 by the grader: hand it to the sandbox user
        if "-f" in command:
            connection = command[command.index("-f") + 1]
            os.chown(connection, account.pw_uid, account.pw_gid)
        # RLIMIT_NPROC counts every task of the user: only meaningful for a dedicated user
        _set_limit(resource.RLIMIT_NPROC, args.nproc)
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    _die_with_parent()
    os.execvp(command[0], command)


def _die_with_parent() -> None:
    """Linux: the kernel gets SIGKILL when the grader process that started it dies
    (jupyter_client starts kernels in their own session, out of reach of a
    process-group kill).  Set after dropping privileges, which clears it."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent is already gone
            os._exit(1)
    except (OSError, AttributeError):
        pass


def write_kernelspec(jupyter_dir: str, *, memory: int, cpu: int, user: str) -> None:
    """A ``python3`` kernelspec in ``jupyter_dir/kernels`` that starts ipykernel
    through the launcher above (put ``jupyter_dir`` first on ``JUPYTER_PATH``)."""
    spec_dir = os.path.join(jupyter_dir, "kernels", "python3")
    os.makedirs(spec_dir, exist_ok=True)
    argv = [sys.executable, SCRIPT, "kernel", "--memory", str(memory), "--cpu", str(cpu),
            "--user", user, "--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Python 3 (ipykernel, nnh sandbox)", "language": "python",
            "metadata": {"debugger": False}}
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


# --------------------------------------------------------------------------- nbgrader preprocessors

def _preprocessors():
    """nbgrader preprocessors used by the worker (imported lazily: nbgrader is heavy)."""
    from nbclient.exceptions import DeadKernelError
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
          a dead kernel, instead of failing the whole notebook.
        """

        sandbox_owner = None  # (uid, gid) that gets the notebook's folder, when grading as root
        notebook_timeout = None  # seconds for all cells together (None: no budget)

        def preprocess(self, nb, resources=None, km=None):
            self._nnh_dead = None
            self._nnh_why = ""
            self._nnh_start = None
            self._nnh_cell_timeout = self.timeout
            path = (resources or {}).get("metadata", {}).get("path")
            if self.sandbox_owner and path and os.path.isdir(path):
                os.chown(path, *self.sandbox_owner)  # the kernel's working folder, and nothing else
            try:
                return super().preprocess(nb, resources, km)
            except Exception:
                if self._nnh_dead is None:
                    raise
                return nb, resources  # shutting down a dead or stuck kernel may fail too

        def _stop(self, cell, index, ename, why):
            self._nnh_dead = cell.metadata.get("nbgrader", {}).get("grade_id") or f"#{index + 1}"
            self._nnh_why = ename
            cell.outputs = list(cell.get("outputs", [])) + [_error(ename, why)]
            return cell, self.resources

        def preprocess_cell(self, cell, resources, index):
            import time as _time

            if self._nnh_dead is not None:
                if cell.cell_type == "code":
                    reason = ("the kernel died" if self._nnh_why == "KernelDied"
                              else "the notebook ran out of time")
                    cell.outputs = [_error(self._nnh_why, f"not run: {reason} in cell {self._nnh_dead}")]
                return cell, resources
            if self._nnh_start is None:
                self._nnh_start = _time.monotonic()
            if self.notebook_timeout and cell.cell_type == "code":
                left = self.notebook_timeout - (_time.monotonic() - self._nnh_start)
                if left <= 0:
                    cell.outputs = []
                    return self._stop(cell, index, "NotebookTimeoutError",
                                      f"not run: the notebook used up its {self.notebook_timeout:.0f} s time limit")
                self.timeout = int(max(1, min(self._nnh_cell_timeout or left, left)))
            try:
                return super().preprocess_cell(cell, resources, index)
            except DeadKernelError:
                return self._stop(cell, index, "KernelDied",
                                  "the kernel died while running this cell (os._exit, killing its own process, "
                                  "a crash, or the memory or CPU limit)")
            except Exception as error:  # noqa: BLE001 - e.g. a cell that ignores the interrupt
                return self._stop(cell, index, "CellTimeoutError",
                                  f"the cell could not be run or stopped ({type(error).__name__}: "
                                  f"{str(error)[:300]}); the cells after it were not run")

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
    details, fatal = _check_notebooks(sub_dir, sorted(sources), source_ids)
    result = {"student": student, "assignment": assignment, "status": "ok", "details": details,
              "notebooks": {}, "autograded": {}, "feedback": {}, "timestamp": None}
    if fatal:
        result.update(status="error", details=details + [fatal])
        return result

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
    jupyter_dir, home = os.path.join(tmp, "jupyter"), os.path.join(tmp, "home")
    os.makedirs(home)
    write_kernelspec(jupyter_dir, memory=int(limits["memory"]), cpu=int(limits["cpu"]), user=limits.get("user", ""))
    os.environ["JUPYTER_PATH"] = os.pathsep.join([jupyter_dir, os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep)
    runtime = os.path.join(tmp, "runtime")  # connection files: the kernel must reach its own
    os.makedirs(runtime)
    os.chmod(runtime, 0o711)
    os.environ.update(JUPYTER_RUNTIME_DIR=runtime, HOME=home, MPLCONFIGDIR=os.path.join(home, ".matplotlib"),
                      KERAS_HOME=os.path.join(home, ".keras"),
                      PYTHONNOUSERSITE="1")

    if os.geteuid() == 0 and limits.get("user"):
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
    if os.geteuid() == 0 and limits.get("user"):
        SandboxExecute.sandbox_owner = (account.pw_uid, account.pw_gid)
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
        died = [v for _, e, v in enames if e == "KernelDied" and not v.startswith("not run")]
        if died:
            if result["status"] != "memory":
                result["status"] = "kernel_died"
            where = [g for g, e, v in enames if e == "KernelDied" and not v.startswith("not run")]
            result["details"].append(f"{name}: the kernel died in cell {where[0]}; the cells after it were not run")
        for grade_id, ename, evalue in enames:
            if "course's reference" in evalue:
                result["details"].append(f"{name}: {grade_id} scores zero: {evalue}")
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
        feedback = api.generate_feedback(assignment, student, force=True)
        if not feedback["success"]:
            result["details"].append("nbgrader generate_feedback failed: " + (feedback.get("error") or "")[-500:])
        # what nbgrader put there (source and submitted files), not what the kernel wrote
        keep = set(payload["source_files"]) | set(payload["submitted_files"]) | set(sources) | {"timestamp.txt"}
        result["autograded"] = {k: v for k, v in _files(auto_dir).items() if k in keep}
        if os.path.isdir(feedback_dir):
            result["feedback"] = _files(feedback_dir)
    return result


def _worker(payload_path: str, result_path: str) -> int:
    import tempfile
    import warnings

    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", message=".*not in session.*")

    os.umask(0o077)  # nothing the grader writes is readable by the sandbox user
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
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["kernel"]:
        _launch_kernel(sys.argv[2:])
    elif sys.argv[1:2] == ["worker"]:
        sys.exit(_worker(sys.argv[2], sys.argv[3]))
    else:
        sys.exit("usage: python -m nnh._sandbox kernel|worker ...")
