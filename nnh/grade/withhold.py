"""Delegation made impossible: in the sandbox, the course's reference implementations
of an assignment's answers do not exist.

Under the judge, no hidden test runs in the student's kernel, so the kernel needs no
reference.  The box then gets, in place of the ``nnh`` package, a copy of it in which
every top-level function or class whose name an answer cell of the assignment defines
(``cosine_decay``, ``WarmupCosine``, ...), and every helper of its module that it uses
(:func:`helpers_of`: ``_warmup_cosine``, ``_adam_step``, ...), is replaced by a stub that raises
:class:`NotImplementedError` and whose source is gone.  A student who imports the
reference, wraps it, calls it through another ``nnh`` function or copies it out of the
installed source finds only the stub; everything else of ``nnh`` works as usual.  The
preflight grades the reference solution in that box, so a chapter helper that an
exercise uses and that needs a withheld name stops the run before any student.
"""

from __future__ import annotations

import ast
import json
import os
import shutil

#: What a withheld reference raises in the student's kernel.
WITHHELD = ("{module}.{name} is the course's reference for an answer of this assignment: it is withheld "
            "while notebooks are graded (write your own)")
#: The folder of the copy, next to the box's shared folder (not inside it: the kernel may write there).
COPY_SUFFIX = ".nnh"


#: The top-level statements that define a graded name (and that a stub replaces).
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

def graded_names(source_files: dict) -> list[str]:
    """The names the answer cells of the assignment's source notebooks define at top
    level (functions and classes), sorted."""
    names = set()
    for path, blob in source_files.items():
        if not path.endswith(".ipynb") or "/" in path:
            continue
        for cell in json.loads(blob).get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.get("cell_type") != "code" or not meta.get("solution"):
                continue
            source = cell.get("source", "")
            try:
                tree = ast.parse("".join(source) if isinstance(source, list) else source)
            except SyntaxError:
                continue
            names.update(node.name for node in tree.body
                         if isinstance(node, DEFINITIONS))
    return sorted(names)


def _stub(node: ast.stmt, module: str) -> str:
    message = WITHHELD.format(module=module, name=node.name)
    if isinstance(node, ast.ClassDef):
        return (f"class {node.name}:\n    def __init__(self, *args, **kwargs):\n"
                f"        raise NotImplementedError({message!r})\n")
    return f"def {node.name}(*args, **kwargs):\n    raise NotImplementedError({message!r})\n"


def helpers_of(tree: ast.Module, names: set[str]) -> set[str]:
    """The top-level functions and classes of the module ``tree`` that the definitions
    named in ``names`` use, directly or through one another (``_sum_squares``, a base
    class, a validator of the module): what a reference is made of, which an answer must
    not call either.  Not those the module's own top-level statements use (its import
    would fail)."""
    defined = {node.name: node for node in tree.body if isinstance(node, DEFINITIONS)}
    at_import = {n.id for part in _run_at_import(tree, names) for n in ast.walk(part) if isinstance(n, ast.Name)}
    found, todo = set(), [name for name in names if name in defined]
    while todo:
        for n in ast.walk(defined[todo.pop()]):
            if isinstance(n, ast.Name) and n.id in defined and n.id not in names | found | at_import:
                found.add(n.id)
                todo.append(n.id)
    return found


def _run_at_import(tree: ast.Module, names: set[str]) -> list[ast.AST]:
    """The parts of the module that run when it is imported, but for the definitions
    named in ``names`` (stubbed whole): its other statements, and the decorators, bases,
    default values and called names in the class bodies of its other definitions."""
    parts = []
    for node in tree.body:
        if not isinstance(node, DEFINITIONS):
            parts.append(node)
        elif node.name not in names:
            parts += node.decorator_list
            if isinstance(node, ast.ClassDef):
                parts += node.bases + [k.value for k in node.keywords]
                parts += [n.func for statement in node.body if not isinstance(statement, DEFINITIONS)
                          for n in ast.walk(statement) if isinstance(n, ast.Call)]
            else:
                parts += node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
    return parts


def withhold_source(text: str, module: str, names: set[str]) -> tuple[str, list[str]]:
    """``text`` (a module's source) with each top-level definition named in ``names``,
    and each of the module's helpers they use (:func:`helpers_of`), replaced (decorators
    and all) by a stub; and the names it replaced."""
    tree = ast.parse(text)
    names = set(names) | helpers_of(tree, set(names))
    lines = text.splitlines(keepends=True)
    replaced = []
    for node in reversed(tree.body):
        if isinstance(node, DEFINITIONS) and node.name in names:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            lines[start:node.end_lineno] = [_stub(node, module)]
            replaced.append(node.name)
    return "".join(lines), sorted(replaced)


def make_copy(package: str, destination: str, names: list[str]) -> list[str]:
    """Copy the package folder ``package`` (``nnh``) to ``destination`` with the
    definitions named in ``names`` withheld in its modules (not in the grader,
    ``nnh.grade``); readable by everyone, writable by no kernel.  The qualified names
    withheld."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(package, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    withheld = []
    for entry in sorted(os.scandir(destination), key=lambda e: e.name):
        if not (entry.is_file() and entry.name.endswith(".py")) or entry.name == "__init__.py":
            continue
        module = "nnh." + entry.name[:-len(".py")]
        with open(entry.path, encoding="utf-8") as fh:
            text, replaced = withhold_source(fh.read(), module, set(names))
        if replaced:
            with open(entry.path, "w", encoding="utf-8") as fh:
                fh.write(text)
            withheld += [f"{module}.{name}" for name in replaced]
    for parent, dirs, files in os.walk(destination):
        os.chmod(parent, 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)
    return withheld


def package_folder() -> str:
    """The real folder of the ``nnh`` package (what the box shows at that path)."""
    import importlib.util

    spec = importlib.util.find_spec("nnh")
    return os.path.realpath(list(spec.submodule_search_locations)[0])


def names_from_environment() -> list[str]:
    """The names a grading server withholds: ``NNH_GRADE_WITHHOLD`` (comma-separated)."""
    return sorted(n for n in os.environ.get("NNH_GRADE_WITHHOLD", "").split(",") if n)
