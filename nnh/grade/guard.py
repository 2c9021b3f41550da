"""The runtime integrity guard: :func:`_integrity_guard` runs in the student's kernel
(its source is sent there by :mod:`nnh.grade.execute`), snapshots what the tests
rely on and answers, for each fresh challenge, with an HMAC under a key only the
grader knows whether anything changed.  :func:`guarded_modules` picks what to watch
from the source notebook.
"""

from __future__ import annotations

import ast

from nnh.grade.scan import _strip_magics
from nnh.grade.zygote import NNH_MODULES


GUARD_UNAVAILABLE = "the runtime integrity guard could not be installed: only the static check applied"
#: Global names whose rebinding in the notebook namespace can only serve to fool a test.
SHADOW_GUARDED = ("AssertionError", "BaseException", "Exception", "ValueError", "TypeError", "ZeroDivisionError",
                  "NotImplementedError", "isinstance", "issubclass", "__import__")
#: The packages the guard watches, when the notebook imports them: what tests compare with.
#: (Not tensorflow: its lazy loaders replace their own entries on first use.)
GUARDED_TOPS = ("builtins", "math", "cmath", "numpy", "nnh", "keras", "scipy", "sklearn")
#: Top-level modules whose every loaded submodule is guarded (others: the module and its public submodules).
DEEP_GUARDED = ("builtins", "math", "numpy", "nnh")
#: Builtins that IPython or ipykernel rebind by themselves.
_VOLATILE_BUILTINS = ("_", "__", "___", "exit", "quit", "get_ipython", "display", "__IPYTHON__", "input",
                      "raw_input", "copyright", "credits", "license", "help")


def guarded_modules(sources: list[str]) -> tuple[list[str], dict[str, str]]:
    """What the integrity guard watches for a notebook whose code cells are
    ``sources``: the modules they import, and the names ``import`` binds to a module
    (``np`` → ``numpy``)."""
    modules, aliases = {"builtins", "math", "numpy"}, {}
    for source in sources:
        try:
            tree = ast.parse(_strip_magics(source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    modules.add(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module)
    if any(m.split(".")[0] == "nnh" for m in modules):
        modules |= set(NNH_MODULES)  # loaded on first use: guard them all, as they are before any cell
    modules = sorted(m for m in modules if m.split(".")[0] in GUARDED_TOPS)
    return modules, {k: v for k, v in aliases.items() if v.split(".")[0] in GUARDED_TOPS}


# The functions below run inside the student's kernel: their source is sent there (see
# :data:`KERNEL_FUNCTIONS` and :mod:`nnh.grade.execute`), run once, silently, before the
# first cell, and deleted from the notebook's namespace in the same request.

def _integrity_guard(name, modules, aliases, shadowed, deep, volatile):  # pragma: no cover - runs in the kernel
    """Imports ``modules``, takes a snapshot of the identity of everything the tests rely
    on, and installs a check as ``builtins.<name>`` (``name`` is random per run).
    ``<name>(challenge)`` answers ``HMAC(key, challenge + ":ok")`` if nothing changed, or
    ``HMAC(key, challenge + ":tampered")`` and what changed.  Returns the key (hex),
    which lives on only in the check's closure."""
    import builtins
    import hashlib
    import hmac
    import os
    import sys

    for module in modules:
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - guard what imports
            pass
    key = os.urandom(32)
    new_hmac, sha256, changes = hmac.new, hashlib.sha256, _guard_changes
    found = _guard_found(modules, deep)
    shell = get_ipython()  # noqa: F821 - the kernel's IPython
    entries, classes = _guard_entries(found, {m.split(".")[0] for m in modules}, name, volatile)
    state = _guard_ipython(shell, entries, classes)
    state.update(entries=entries, shadowed=shadowed, aliases=aliases, modules=dict(found), shell=shell,
                 user_ns=shell.user_ns, trace=sys.gettrace(), profile=sys.getprofile(), getitem=dict.get)
    entries.append(("the notebook's __builtins__", state["user_ns"], "__builtins__",
                    state["user_ns"].get("__builtins__")))

    def check(challenge):
        try:
            reasons = changes(state)
        except Exception as error:  # noqa: BLE001 - a check that cannot run is a change too
            reasons = [f"the integrity check failed ({type(error).__name__})"]
        verdict = "tampered" if reasons else "ok"
        token = new_hmac(key, f"{challenge}:{verdict}".encode(), sha256).hexdigest()
        return token + "\n" + "\n".join(reasons[:8])

    setattr(builtins, name, check)
    return key.hex()


def _guard_watched(value):  # pragma: no cover - runs in the kernel
    import types

    return callable(value) or isinstance(value, (types.ModuleType, float, classmethod, staticmethod, property))


def _guard_found(modules, deep):  # pragma: no cover - runs in the kernel
    """The loaded modules to watch: every submodule of the ``deep`` ones, the top
    module and its public submodules of the others (e.g. keras)."""
    import sys
    import types

    tops = {m.split(".")[0] for m in modules}
    found = {}
    for mname, module in list(sys.modules.items()):
        top = mname.split(".")[0]
        if isinstance(module, types.ModuleType) and top in tops and (top in deep or "." not in mname) \
                and ".tests" not in mname:
            found[mname] = module
    for top in sorted(tops - set(deep)):
        module = sys.modules.get(top)
        for attr, value in (list(vars(module).items()) if module is not None else []):
            if isinstance(value, types.ModuleType) and not attr.startswith("_") \
                    and str(getattr(value, "__name__", "")).startswith(top + "."):
                found.setdefault(f"{top}.{attr}", value)
    return found


def _guard_entries(found, tops, name, volatile):  # pragma: no cover - runs in the kernel
    """(what, mapping, key, value) for everything whose identity must not change
    (``mapping[key]`` must stay ``value``): the watched modules' functions, classes,
    submodules and floats, the methods of their classes, their ``sys.modules`` entries
    and ``sys``'s hooks; and the ids of the classes already covered."""
    import sys

    entries, classes = [], set()
    for mname, module in sorted(found.items()):
        namespace = vars(module)
        for attr, value in list(namespace.items()):
            if mname == "builtins" and (attr in volatile or attr == name):
                continue
            if attr == "__warningregistry__" or not _guard_watched(value):
                continue
            entries.append((f"{mname}.{attr}", namespace, attr, value))
            if isinstance(value, type) and str(getattr(value, "__module__", "")).split(".")[0] in tops \
                    and id(value) not in classes:
                classes.add(id(value))
                for cattr, cvalue in list(vars(value).items()):
                    if _guard_watched(cvalue) and not cattr.startswith("__"):
                        entries.append((f"{mname}.{attr}.{cattr}", vars(value), cattr, cvalue))
    for mname, module in found.items():
        if sys.modules.get(mname) is module:
            entries.append((f"sys.modules[{mname!r}]", sys.modules, mname, module))
    for attr in ("modules", "settrace", "setprofile", "gettrace", "getprofile", "exc_info", "_getframe",
                 "addaudithook"):  # not displayhook, excepthook: IPython swaps them around every cell
        if attr in vars(sys):
            entries.append((f"sys.{attr}", vars(sys), attr, vars(sys)[attr]))
    return entries, classes


def _guard_ipython(shell, entries, classes):  # pragma: no cover - runs in the kernel
    """IPython's part of the snapshot: the methods of the shell's, kernel's and
    compiler's classes (added to ``entries``), their instances' callables, the input
    and AST transformers, message handlers, event callbacks, custom exception handler."""
    import os
    import sys

    for cls in list(type(shell).__mro__) + list(type(shell.kernel).__mro__) + list(type(shell.compile).__mro__):
        if cls is not object and id(cls) not in classes:
            classes.add(id(cls))
            for cattr, cvalue in list(vars(cls).items()):
                if _guard_watched(cvalue) and not cattr.startswith("__"):
                    entries.append((f"IPython: {cls.__name__}.{cattr}", vars(cls), cattr, cvalue))
    transformers = {
        "input_transformers_cleanup": shell.input_transformers_cleanup,
        "input_transformers_post": shell.input_transformers_post,
        "ast_transformers": shell.ast_transformers,
        "line_transforms": shell.input_transformer_manager.line_transforms,
        "token_transformers": shell.input_transformer_manager.token_transformers,
    }
    packages = (sys.modules.get("matplotlib_inline"), sys.modules.get("IPython"), sys.modules.get("ipykernel"))
    return {
        "instances": {obj_name: (obj, dict(vars(obj))) for obj_name, obj in
                      (("the shell", shell), ("the kernel", shell.kernel), ("the compiler", shell.compile))},
        "transformers": {k: (v, list(v)) for k, v in transformers.items()},
        "handlers": dict(shell.kernel.shell_handlers),
        "events": {event: list(callbacks) for event, callbacks in shell.events.callbacks.items()},
        "custom": shell.custom_exceptions,
        "allowed_dirs": tuple(os.path.dirname(m.__file__) for m in packages
                              if m is not None and getattr(m, "__file__", None)),
    }


def _guard_changes(state):  # pragma: no cover - runs in the kernel
    """What changed since the snapshot ``state`` (see :func:`_integrity_guard`)."""
    import os
    import sys

    missing, shell, user_ns = object(), state["shell"], state["user_ns"]
    found = [f"{what} was replaced or deleted" for what, mapping, attr, value in state["entries"]
             if mapping.get(attr, missing) is not value]
    found += [f"the notebook rebinds {attr!r}" for attr in state["shadowed"] if attr in user_ns]
    for alias, mname in state["aliases"].items():
        module = state["modules"].get(mname)
        if module is not None and state["getitem"](user_ns, alias, module) is not module:
            found.append(f"the notebook rebinds {alias!r}, which must be the module {mname!r}")
    if shell.user_ns is not user_ns:
        found.append("the notebook namespace was replaced")
    for obj_name, (obj, before) in state["instances"].items():
        for attr, value in vars(obj).items():
            if callable(value) and before.get(attr, missing) is not value:
                found.append(f"{obj_name}'s {attr} was replaced")
    for attr, (current, before) in state["transformers"].items():
        owner = shell.input_transformer_manager if attr in ("line_transforms", "token_transformers") else shell
        if getattr(owner, attr) is not current or len(current) != len(before) or \
                any(a is not b for a, b in zip(current, before)):
            found.append(f"IPython's {attr} were changed")
    if dict(shell.kernel.shell_handlers) != state["handlers"]:
        found.append("the kernel's message handlers were changed")
    for event, callbacks in shell.events.callbacks.items():
        for callback in callbacks:
            if not any(callback is c for c in state["events"].get(event, [])):
                code = getattr(getattr(callback, "__func__", callback), "__code__", None)
                where = getattr(code, "co_filename", "")
                if not (where and where.startswith(state["allowed_dirs"]) and os.path.isfile(where)):
                    found.append(f"an IPython {event!r} callback was registered")
    if sys.gettrace() is not state["trace"] or sys.getprofile() is not state["profile"]:
        found.append("a trace or profile function was set")
    if shell.custom_exceptions != state["custom"]:
        found.append("IPython's custom exception handler was set")
    return found


#: What :mod:`nnh.grade.execute` sends to the kernel, in this order; the last one installs the guard.
KERNEL_FUNCTIONS = (_guard_watched, _guard_found, _guard_entries, _guard_ipython, _guard_changes, _integrity_guard)
