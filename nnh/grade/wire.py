"""Plain data across the wall between a student's kernel and the judge.

The judge (:mod:`nnh.grade.judge`) runs the hidden tests in a process of its own
and asks the student's kernel only for *values*: the binding of a name, the
result of calling a function of the student's namespace.  What crosses is JSON
text that this module writes and reads, and nothing else:

* ``None``, ``bool``, ``int``, ``float`` (NaN and infinities included) and ``str``
  as themselves; ``list`` as a JSON array; ``tuple``, ``dict``, ``complex``,
  ``bytes`` and ``range`` as tagged objects;
* NumPy arrays and scalars of boolean, integer, float, complex and string types
  as their dtype (``"<f8"``), shape and C-order bytes in base64, read back with
  ``np.frombuffer`` after the three are checked against each other (25 times
  faster than NumPy's ``.npy`` format, whose header is parsed by ``literal_eval``;
  a test crosses thousands of arrays);
  array-likes of the frameworks (TensorFlow tensors, Keras variables) as arrays;
* a NumPy ``Generator`` as the state of its bit generator, so that a test's
  random stream goes on where the student's function left it;
* a module as its name (the judge imports its own copy, never the kernel's);
* anything else as a *handle*: a number that names the object in the kernel,
  with which the judge can call it or read an attribute, but never get it.

Never pickle, never code: the judge decodes only these forms (:func:`decode`),
checks the size of what it reads and the depth of its nesting, and refuses the
rest with :class:`WireError`.

This file is also the kernel's half: its source is sent to the kernel as it is
(:data:`KERNEL_SOURCE`), so it imports only the standard library and NumPy, and
only inside its functions.
"""

from __future__ import annotations

import base64
import json
import re

#: The deepest nesting of containers either side accepts.
MAX_DEPTH = 32
#: The largest message either side accepts (characters of JSON text).
MAX_CHARS = 64 << 20
#: NumPy dtype kinds that cross (no objects, no structured or void types).
ARRAY_KINDS = "biufcSU"
#: The bit generators whose state crosses (their states are plain integers and arrays).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")
#: Modules of these packages are bound in the judge to its own copy; others become handles.
JUDGE_MODULES = ("numpy", "math", "cmath", "scipy", "keras", "tensorflow", "nnh", "sklearn", "random",
                 "statistics", "functools", "itertools", "collections", "operator", "fractions", "decimal")


class WireError(Exception):
    """A value that cannot cross, or a message that is not one this module wrote."""


#: A dtype as ``dtype.str`` writes one: byte order, kind, item size (NumPy never makes an
#: array of item size 0: ``"U0"`` becomes ``"<U1"``).
_DTYPE = re.compile(r"[<>|=]?[biufcSU][1-9][0-9]{0,8}\Z")
#: The most dimensions an array that crosses may have (NumPy's own limit).
MAX_DIMS = 64


def _array_data(array) -> dict:
    return {"d": array.dtype.str, "s": list(array.shape), "b": base64.b64encode(array.tobytes()).decode("ascii")}


def _array(body):
    import math

    import numpy as np

    if not (type(body) is dict and set(body) == {"d", "s", "b"} and type(body["d"]) is str
            and _DTYPE.match(body["d"]) and type(body["s"]) is list and len(body["s"]) <= MAX_DIMS
            and all(type(n) is int and n >= 0 for n in body["s"]) and type(body["b"]) is str):
        raise WireError("an array must come as its dtype, shape and base64 bytes")
    try:
        dtype = np.dtype(body["d"])
        raw = base64.b64decode(body["b"], validate=True)
    except (TypeError, ValueError) as error:
        raise WireError(f"not an array: {error}") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.shape != ():
        raise WireError(f"arrays of dtype {dtype} do not cross")
    if math.prod(body["s"]) * dtype.itemsize != len(raw):
        raise WireError(f"{len(raw)} bytes are not an array of shape {tuple(body['s'])} and dtype {dtype}")
    try:
        return np.frombuffer(bytearray(raw), dtype).reshape(body["s"])
    except ValueError as error:  # more elements than an index can hold
        raise WireError(f"not an array: {error}") from None


def _array_like(value):
    """A framework's tensor or variable as a NumPy array (None for anything else)."""
    module = type(value).__module__ or ""
    if module.split(".")[0] not in ("tensorflow", "keras", "jax", "jaxlib", "torch") or not hasattr(value, "__array__"):
        return None
    import numpy as np

    try:
        array = np.asarray(value.numpy() if callable(getattr(value, "numpy", None)) else value)
    except Exception:  # noqa: BLE001 - a symbolic tensor, say
        return None
    return array if array.dtype.kind in ARRAY_KINDS else None


def encode(value, refer=None, depth: int = 0, memo: dict | None = None):
    """``value`` as JSON-ready data.  ``refer(value)`` gives what stands for an
    object that is not plain data (a handle); without it, such an object is a
    :class:`WireError`.  An array, dictionary or generator that occurs twice (the
    same object: ``f(w, zeros, zeros)``) is sent once and arrives as one object."""
    import numpy as np

    memo = {} if memo is None else memo
    if type(value) in (np.ndarray, dict, np.random.Generator):
        if id(value) in memo:
            return {"$t": "same", "v": memo[id(value)][0]}
        memo[id(value)] = (len(memo) + 1, value)  # the value too: its id stays its own while encoding
        data = _encode(value, refer, depth, memo)
        data["k"] = memo[id(value)][0]
        return data
    return _encode(value, refer, depth, memo)


def _encode(value, refer, depth: int, memo: dict):
    import types

    import numpy as np

    if depth > MAX_DEPTH:
        raise WireError(f"data nested deeper than {MAX_DEPTH} levels does not cross")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value
    if kind is list:
        return [encode(v, refer, depth + 1, memo) for v in value]
    if kind is tuple:
        return {"$t": "tuple", "v": [encode(v, refer, depth + 1, memo) for v in value]}
    if kind is dict:
        return {"$t": "dict", "v": [[encode(k, refer, depth + 1, memo), encode(v, refer, depth + 1, memo)]
                                    for k, v in value.items()]}
    if kind is complex:
        return {"$t": "complex", "v": [value.real, value.imag]}
    if kind is bytes:
        return {"$t": "bytes", "v": base64.b64encode(value).decode("ascii")}
    if kind is range:
        return {"$t": "range", "v": [value.start, value.stop, value.step]}
    if kind is np.ndarray and value.dtype.kind in ARRAY_KINDS and value.dtype.fields is None:
        return {"$t": "array", "v": _array_data(value)}
    if isinstance(value, np.generic) and kind.__module__ == "numpy" and value.dtype.kind in ARRAY_KINDS:
        return {"$t": "scalar", "v": _array_data(np.asarray(value))}
    if kind is np.random.Generator and type(value.bit_generator).__name__ in BIT_GENERATORS:
        return {"$t": "rng", "v": encode(value.bit_generator.state, None, depth + 1, {})}
    if kind is types.ModuleType and (value.__name__ or "").split(".")[0] in JUDGE_MODULES:
        return {"$t": "module", "v": value.__name__}
    array = _array_like(value)
    if array is not None:
        return {"$t": "array", "v": _array_data(array)}
    if refer is None:
        raise WireError(f"a {kind.__name__} is not plain data")
    return refer(value)


def _keras_model(body):
    """A Keras model the judge sent (its JSON config and weights), rebuilt; only the
    kernel reads these (see :meth:`KernelServer.resolve`)."""
    import keras

    if not isinstance(body, dict) or not isinstance(body.get("config"), str):
        raise WireError("a Keras model must come as its JSON config and its weights")
    model = keras.models.model_from_json(body["config"])
    model.set_weights(decode(body.get("weights"), None, 1, {}))
    return model


def _tagged(tag: str, body, resolve, depth: int, memo: dict):
    if tag == "tuple" and isinstance(body, list):
        return tuple(decode(v, resolve, depth + 1, memo) for v in body)
    if tag == "dict" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
        out = {}
        for key, item in body:
            key = decode(key, resolve, depth + 1, memo)
            try:
                out[key] = decode(item, resolve, depth + 1, memo)
            except TypeError:
                raise WireError("a dictionary key must be hashable plain data") from None
        return out
    if tag == "complex" and isinstance(body, list) and len(body) == 2 and all(type(v) in (int, float) for v in body):
        return complex(*body)
    if tag == "bytes" and isinstance(body, str):
        return base64.b64decode(body, validate=True)
    if tag == "range" and isinstance(body, list) and len(body) == 3 and all(type(v) is int for v in body):
        return range(*body)
    if tag == "array":
        return _array(body)
    if tag == "scalar":
        array = _array(body)
        if array.shape != ():
            raise WireError("a scalar must be a 0-d array")
        return array[()]
    if tag == "rng":
        return _rng(decode(body, None, depth + 1, {}))
    if tag == "module" and isinstance(body, str) and body.split(".")[0] in JUDGE_MODULES:
        import importlib

        return importlib.import_module(body)
    raise WireError(f"unknown or malformed tagged value {tag!r}")


def _rng(state):
    import numpy as np

    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise WireError(f"a random generator must use one of {', '.join(BIT_GENERATORS)}")
    generator = np.random.Generator(getattr(np.random, name)())
    try:
        generator.bit_generator.state = state
    except Exception as error:  # noqa: BLE001 - a malformed state
        raise WireError(f"not a state of {name}: {error}") from None
    return generator


def decode(data, resolve=None, depth: int = 0, memo: dict | None = None):
    """The value that :func:`encode` wrote as ``data``.  ``resolve(entry)`` gives the
    object for a handle entry (``{"$t": "ref", ...}``); without it, a handle is a
    :class:`WireError`."""
    memo = {} if memo is None else memo
    if depth > MAX_DEPTH:
        raise WireError(f"data nested deeper than {MAX_DEPTH} levels does not cross")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(v, resolve, depth + 1, memo) for v in data]
    if type(data) is dict and isinstance(data.get("$t"), str):
        tag = data["$t"]
        if tag in ("ref", "keras"):  # a handle, or a Keras model sent by the judge: the kernel's to resolve
            if resolve is None:
                raise WireError("a handle is not plain data")
            return resolve(data)
        if tag == "same":
            if data.get("v") not in memo:
                raise WireError("a repeated object that was not sent before")
            return memo[data["v"]]
        value = _tagged(tag, data.get("v"), resolve, depth, memo)
        if "k" in data:
            if tag not in ("array", "dict", "rng") or type(data["k"]) is not int or data["k"] in memo:
                raise WireError("a malformed repeated object")
            memo[data["k"]] = value
        return value
    raise WireError(f"not a value of the wire format: {type(data).__name__}")


def loads(text: str):
    """JSON text of a message, size-checked, as Python data (not yet decoded)."""
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise WireError(f"a message must be text of at most {MAX_CHARS >> 20} MB")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise WireError(f"not JSON: {error}") from None


def dumps(message) -> str:
    text = json.dumps(message, separators=(",", ":"))
    if len(text) > MAX_CHARS:
        raise WireError(f"the data is larger than the {MAX_CHARS >> 20} MB that cross")
    return text


def write_back(original, updated) -> None:
    """Make ``original`` (an argument the judge sent) hold what the kernel's copy of it
    held after the call (``updated``): arrays, lists, dictionaries and generators are
    changed in place, as if the student's function had changed them itself."""
    import numpy as np

    if type(original) is np.ndarray and type(updated) is np.ndarray:
        if original.shape == updated.shape and original.flags.writeable:
            np.copyto(original, updated, casting="unsafe")
    elif type(original) is list and type(updated) is list:
        if len(original) == len(updated):
            for i, (old, new) in enumerate(zip(original, updated)):
                if type(old) in (np.ndarray, list, dict, np.random.Generator) and type(old) is type(new):
                    write_back(old, new)
                elif not _same(old, new):
                    original[i] = new
        else:
            original[:] = updated
    elif type(original) is dict and type(updated) is dict:
        for key in [k for k in original if k not in updated]:
            del original[key]
        for key, new in updated.items():
            old = original.get(key)
            if type(old) in (np.ndarray, list, dict, np.random.Generator) and type(old) is type(new):
                write_back(old, new)
            elif key not in original or not _same(old, new):
                original[key] = new
    elif type(original) is np.random.Generator and type(updated) is np.random.Generator:
        if type(original.bit_generator) is type(updated.bit_generator):
            original.bit_generator.state = updated.bit_generator.state


def _same(a, b) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays of other shapes
        return False


MUTABLE = ("ndarray", "list", "dict", "Generator")


# -- the kernel's half: a server of values, installed once per notebook -------------------------

class KernelServer:  # pragma: no cover - exercised in the kernel, and by tests/test_judge.py in-process
    """Answers the judge's requests in the student's kernel: ``names`` (what each name
    of the notebook's namespace is bound to), ``call`` (call a handle with arguments),
    ``getattr`` (an attribute of a handle), ``run`` (a kernel part) and ``own`` (the
    delegation check).  Errors are answered, never raised."""

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.objects: dict[int, object] = {}
        self.numbers: dict[int, int] = {}

    def refer(self, value) -> dict:
        key = id(value)
        if key not in self.numbers:
            self.numbers[key] = len(self.objects) + 1
            self.objects[self.numbers[key]] = value
        name = getattr(value, "__qualname__", None) if isinstance(value, type) or callable(value) else None
        return {"$t": "ref", "id": self.numbers[key], "kind": "class" if isinstance(value, type) else
                "callable" if callable(value) else "object",
                "name": str(name if isinstance(name, str) else type(value).__name__)[:200]}

    def resolve(self, entry: dict):
        if entry.get("$t") == "keras":
            return _keras_model(entry.get("v"))
        if entry.get("id") not in self.objects:
            raise WireError(f"no object has the handle {entry.get('id')!r}")
        return self.objects[entry["id"]]

    def __call__(self, text: str) -> str:
        try:
            request = loads(text)
            answer = getattr(self, "_" + str(request.get("op")))(request)
            return dumps(answer)
        except BaseException as error:  # noqa: BLE001 - the judge decides what it means
            return dumps({"raise": _raised(error)})

    def loop(self, path: str) -> None:
        """Serve the judge at the Unix socket ``path`` until it says ``done``."""
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as line:
            line.connect(path)
            stream = line.makefile("rwb")
            while True:
                request = stream.readline()
                if not request or request == b"done\n":
                    return
                stream.write(self(request.decode()).encode() + b"\n")
                stream.flush()

    def _names(self, request) -> dict:
        found = {}
        for name in request.get("names", []):
            if isinstance(name, str) and name in self.namespace:
                found[name] = encode(self.namespace[name], self.refer)
        return {"ok": found}

    def _getattr(self, request) -> dict:
        return {"ok": encode(getattr(self.resolve(request), str(request["name"])), self.refer)}

    def _call(self, request) -> dict:
        target = self.resolve(request)
        arguments = decode(request.get("arguments"), self.resolve)
        if type(arguments) is not list or len(arguments) != 2 or type(arguments[0]) is not list \
                or type(arguments[1]) is not dict:
            raise WireError("a call needs a list of arguments and a dictionary of keywords")
        args, kwargs = arguments
        result = target(*args, **kwargs)
        back = [[a if type(a).__name__ in MUTABLE else None for a in args],
                {k: v for k, v in kwargs.items() if type(v).__name__ in MUTABLE}]
        return {"ok": encode(result, self.refer), "back": encode(back, self.refer)}


    def _run(self, request) -> dict:
        """A kernel part of a test cell (:data:`nnh.grade.judge.KERNEL_PART`), run in a
        namespace of its own, a copy of the notebook's: the names it defines are never the
        notebook's (nothing a student's cell bound can stand in for them), and what it
        reads is what the notebook holds now.  The values of ``names`` it defines."""
        namespace = dict(self.namespace)
        exec(compile(str(request["code"]), "<nnh grade: kernel part>", "exec"), namespace)  # noqa: S102
        return {"ok": {name: encode(namespace[name], self.refer) for name in request.get("names", [])
                       if isinstance(name, str) and name in namespace}}

    def _own(self, request) -> dict:
        """``nnh.grading.assert_own_work`` on a handle, against the kernel's own copy of
        the reference (its module and qualified name come with the request)."""
        import importlib

        from nnh.grading import assert_own_work

        reference = importlib.import_module(str(request["module"]))
        for part in str(request["qualname"]).split("."):
            reference = getattr(reference, part)
        args = decode(request.get("arguments"), self.resolve)
        assert_own_work(self.resolve(request), reference, *args, name=request.get("name"))
        return {"ok": None}


def keras_model(value) -> dict | None:
    """What stands for a Keras model of the judge's in a request: its JSON config and
    weights, which the kernel rebuilds into a model of its own (None: not a model)."""
    module = type(value).__module__ or ""
    if module.split(".")[0] != "keras":
        return None
    import keras

    if not isinstance(value, keras.Model):
        return None
    return {"$t": "keras", "v": {"config": value.to_json(), "weights": encode(list(value.get_weights()))}}


def _raised(error: BaseException) -> dict:
    """An exception as data: its type's name, the names of its built-in base classes, its message."""
    import builtins

    bases = [c.__name__ for c in type(error).__mro__ if getattr(builtins, c.__name__, None) is c]
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 - a message that cannot be made
        message = "<the message could not be read>"
    return {"type": type(error).__name__[:200], "bases": bases, "message": message[:4000]}


def install(name: str) -> None:  # pragma: no cover - runs in the kernel
    """Put a :class:`KernelServer` of the notebook's namespace at ``builtins.<name>``."""
    import builtins

    setattr(builtins, name, KernelServer(get_ipython().user_ns))  # noqa: F821 - the kernel's IPython


def kernel_source() -> str:
    """The source that defines this module's kernel half in the kernel."""
    import inspect
    import sys

    return inspect.getsource(sys.modules[__name__])
