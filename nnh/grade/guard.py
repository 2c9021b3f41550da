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


def _integrity_guard(name, modules, aliases, shadowed, deep, volatile):  # pragma: no cover - runs in the kernel
    """Runs inside the student's kernel, once, silently, before its first cell (its
    source is sent there by :class:`SandboxExecute`).  Imports ``modules``, takes a
    snapshot of the identity of everything the tests rely on, and installs a check
    as ``builtins.<name>`` (``name`` is random per run).  ``<name>(challenge)``
    answers ``HMAC(key, challenge + ":ok")`` if nothing changed, or
    ``HMAC(key, challenge + ":tampered")`` and what changed.  Returns the key (hex),
    which lives on only in the check's closure."""
    import builtins
    import hashlib
    import hmac
    import os
    import sys
    import types

    for module in modules:
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - guard what imports
            pass
    key = os.urandom(32)
    new_hmac, sha256, module_type, getitem = hmac.new, hashlib.sha256, types.ModuleType, dict.get
    missing = object()
    tops = {m.split(".")[0] for m in modules}
    found = {}
    for mname, module in list(sys.modules.items()):
        top = mname.split(".")[0]
        if isinstance(module, module_type) and top in tops and (top in deep or "." not in mname) \
                and ".tests" not in mname:
            found[mname] = module
    for top in sorted(tops - set(deep)):  # e.g. keras: the module and its public submodules
        module = sys.modules.get(top)
        for attr, value in (list(vars(module).items()) if module is not None else []):
            if isinstance(value, module_type) and not attr.startswith("_") \
                    and str(getattr(value, "__name__", "")).startswith(top + "."):
                found.setdefault(f"{top}.{attr}", value)

    def watched(value):
        return callable(value) or isinstance(value, (module_type, float, classmethod, staticmethod, property))

    entries = []  # (what, mapping, key, value): mapping[key] must stay value
    classes = set()
    for mname, module in sorted(found.items()):
        namespace = vars(module)
        for attr, value in list(namespace.items()):
            if mname == "builtins" and (attr in volatile or attr == name):
                continue
            if attr == "__warningregistry__" or not watched(value):
                continue
            entries.append((f"{mname}.{attr}", namespace, attr, value))
            if isinstance(value, type) and str(getattr(value, "__module__", "")).split(".")[0] in tops \
                    and id(value) not in classes:
                classes.add(id(value))
                for cattr, cvalue in list(vars(value).items()):
                    if watched(cvalue) and not cattr.startswith("__"):
                        entries.append((f"{mname}.{attr}.{cattr}", vars(value), cattr, cvalue))
    modules_dict = sys.modules
    for mname, module in found.items():
        if modules_dict.get(mname) is module:
            entries.append((f"sys.modules[{mname!r}]", modules_dict, mname, module))
    for attr in ("modules", "settrace", "setprofile", "gettrace", "getprofile", "exc_info", "_getframe",
                 "addaudithook"):  # not displayhook, excepthook: IPython swaps them around every cell
        if attr in vars(sys):
            entries.append((f"sys.{attr}", vars(sys), attr, vars(sys)[attr]))
    shell = get_ipython()  # noqa: F821 - the kernel's IPython
    user_ns = shell.user_ns
    entries.append(("the notebook's __builtins__", user_ns, "__builtins__", user_ns.get("__builtins__")))
    for cls in list(type(shell).__mro__) + list(type(shell.kernel).__mro__) + list(type(shell.compile).__mro__):
        if cls is not object and id(cls) not in classes:
            classes.add(id(cls))
            for cattr, cvalue in list(vars(cls).items()):
                if watched(cvalue) and not cattr.startswith("__"):
                    entries.append((f"IPython: {cls.__name__}.{cattr}", vars(cls), cattr, cvalue))
    instance_names = {obj_name: (obj, dict(vars(obj))) for obj_name, obj in
                      (("the shell", shell), ("the kernel", shell.kernel), ("the compiler", shell.compile))}
    transformers = {
        "input_transformers_cleanup": shell.input_transformers_cleanup,
        "input_transformers_post": shell.input_transformers_post,
        "ast_transformers": shell.ast_transformers,
        "line_transforms": shell.input_transformer_manager.line_transforms,
        "token_transformers": shell.input_transformer_manager.token_transformers,
    }
    transformers = {k: (v, list(v)) for k, v in transformers.items()}
    handlers = dict(shell.kernel.shell_handlers)
    events = {event: list(callbacks) for event, callbacks in shell.events.callbacks.items()}
    trace, profile = sys.gettrace(), sys.getprofile()
    custom = shell.custom_exceptions
    allowed_dirs = tuple(os.path.dirname(m.__file__) for m in (sys.modules.get("matplotlib_inline"),
                                                                sys.modules.get("IPython"),
                                                                sys.modules.get("ipykernel"))
                         if m is not None and getattr(m, "__file__", None))

    def changes():
        found = []
        for what, mapping, attr, value in entries:
            if mapping.get(attr, missing) is not value:
                found.append(f"{what} was replaced or deleted")
        for attr in shadowed:
            if attr in user_ns:
                found.append(f"the notebook rebinds {attr!r}")
        for alias, mname in aliases.items():
            module = found_modules.get(mname)
            if module is not None and getitem(user_ns, alias, module) is not module:
                found.append(f"the notebook rebinds {alias!r}, which must be the module {mname!r}")
        if shell.user_ns is not user_ns:
            found.append("the notebook namespace was replaced")
        for obj_name, (obj, before) in instance_names.items():
            for attr, value in vars(obj).items():
                if callable(value) and before.get(attr, missing) is not value:
                    found.append(f"{obj_name}'s {attr} was replaced")
        for attr, (current, before) in transformers.items():
            current_now = getattr(shell.input_transformer_manager, attr) if attr in ("line_transforms",
                                                                                      "token_transformers") \
                else getattr(shell, attr)
            if current_now is not current or len(current) != len(before) or \
                    any(a is not b for a, b in zip(current, before)):
                found.append(f"IPython's {attr} were changed")
        if dict(shell.kernel.shell_handlers) != handlers:
            found.append("the kernel's message handlers were changed")
        for event, callbacks in shell.events.callbacks.items():
            for callback in callbacks:
                if not any(callback is c for c in events.get(event, [])):
                    code = getattr(getattr(callback, "__func__", callback), "__code__", None)
                    where = getattr(code, "co_filename", "")
                    if not (where and where.startswith(allowed_dirs) and os.path.isfile(where)):
                        found.append(f"an IPython {event!r} callback was registered")
        if sys.gettrace() is not trace or sys.getprofile() is not profile:
            found.append("a trace or profile function was set")
        if shell.custom_exceptions != custom:
            found.append("IPython's custom exception handler was set")
        return found

    found_modules = dict(found)

    def check(challenge):
        try:
            reasons = changes()
        except Exception as error:  # noqa: BLE001 - a check that cannot run is a change too
            reasons = [f"the integrity check failed ({type(error).__name__})"]
        verdict = "tampered" if reasons else "ok"
        token = new_hmac(key, f"{challenge}:{verdict}".encode(), sha256).hexdigest()
        return token + "\n" + "\n".join(reasons[:8])

    setattr(builtins, name, check)
    return key.hex()
