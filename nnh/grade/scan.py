"""The static tampering scan: before anything runs, every cell the student wrote is
read for changes to what the tests rely on (assignments into imported modules,
rebound names, ``exec``, frame and code access, forbidden imports).  It explains;
the runtime guard (:mod:`nnh.grade.guard`) checks.
"""

from __future__ import annotations

import ast


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
    scan = _CellScan({**_module_aliases([_strip_magics(source)]), **aliases})  # the cell's own imports count too
    for statement in tree.body:
        scan.visit(statement, True)
    return scan.reasons


class _CellScan:
    """The walk of :func:`scan_cell` over one cell's syntax tree."""

    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases
        self.protected_names = {name for name, module in aliases.items() if module in PROTECTED_MODULES}
        self.protected = PROTECTED_BUILTINS | self.protected_names
        self.reasons: list[str] = []

    def flag(self, node: ast.AST, what: str) -> None:
        self.reasons.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def check_target(self, target: ast.AST, node: ast.AST, top_level: bool) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.check_target(element, node, top_level)
        elif isinstance(target, ast.Starred):
            self.check_target(target.value, node, top_level)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = _root_name(target)
            if root in self.protected_names or root in {"builtins", "__builtins__", "sys"}:
                self.flag(node, f"assigns into {ast.unparse(target)} (module {self.aliases.get(root, root)!r})")
        elif isinstance(target, ast.Name) and top_level and target.id in self.protected:
            self.flag(node, f"rebinds {target.id!r}, which the tests rely on")

    def visit(self, node: ast.AST, top_level: bool) -> None:
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                self.check_target(target, node, top_level)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.NamedExpr)):
            targets = ([node.target] if isinstance(node, (ast.For, ast.AsyncFor, ast.NamedExpr))
                       else [item.optional_vars for item in node.items if item.optional_vars is not None])
            for target in targets:
                self.check_target(target, node, top_level)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if top_level and node.name in self.protected:
                self.flag(node, f"defines {node.name!r}, which the tests rely on")
            for child in ast.iter_child_nodes(node):
                self.visit(child, False)
            return
        elif isinstance(node, ast.Global):
            for name in node.names:
                if name in self.protected:
                    self.flag(node, f"declares global {name!r}, which the tests rely on")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self.check_import(node, top_level)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            if not (node.attr == "__class__" and isinstance(node.ctx, ast.Load)):
                self.flag(node, f"uses {ast.unparse(node)!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            self.check_call(node, top_level)
            return
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_CALLS and isinstance(node.ctx, ast.Load):
            self.flag(node, f"uses {node.id!r}")
        elif isinstance(node, ast.Name) and node.id in {"__builtins__", "builtins"}:
            self.flag(node, f"uses {node.id!r}")
        for child in ast.iter_child_nodes(node):
            self.visit(child, top_level)

    def check_import(self, node: ast.Import | ast.ImportFrom, top_level: bool) -> None:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            if name.split(".")[0] in FORBIDDEN_IMPORTS:
                self.flag(node, f"imports {name!r}")
        if not top_level:
            return
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            module = alias.name.split(".")[0] if isinstance(node, ast.Import) else (node.module or "")
            if bound in PROTECTED_BUILTINS or (bound in self.protected_names and self.aliases.get(bound) not in
                                               {module.split(".")[0], None}):
                self.flag(node, f"rebinds {bound!r} by an import")

    def check_call(self, node: ast.Call, top_level: bool) -> None:
        first = node.args[0] if node.args else None
        if not (node.func.id in {"setattr", "delattr"} and isinstance(first, ast.Name) and first.id in {"self", "cls"}):
            self.flag(node, f"calls {node.func.id}()")  # setattr(self, ...) is an ordinary method
        for child in [*node.args, *node.keywords]:
            self.visit(child, top_level)


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
