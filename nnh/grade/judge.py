"""The judge: the process where ``nnh grade`` decides every test cell.

A test cell's code (its visible tests and its hidden ones) runs here, in a Python
process of its own that no student code ever runs in: its own ``numpy``,
``math``, ``keras`` and ``nnh``, imported here from the course's environment, and
the reference implementations with them.  The names the test reads from the
notebook (the student's functions, the data an answer cell defined) are bound
to what the student's kernel answers for them (:mod:`nnh.grade.wire`): plain
data by value, a module by name (the judge's own copy of it), and any other
object as a :class:`Remote`, a proxy whose calls go to the kernel and come back
as values.  The modules the source notebook's own cells import (``np``, ``math``,
``keras``) are the judge's from the start, never asked of the kernel, whatever the
student binds to those names there.  Every comparison, property check and assertion of the test runs
here; the kernel only ever computes what the student's code computes.

The grading process (:mod:`nnh.grade.execute`) talks to the judge through its
standard input and output (or, for a judge forked by the run's judge zygote,
:func:`zygote`, through its connection), one JSON message per line::

    grader -> judge   {"op": "reset", "socket": PATH, "modules": {ALIAS: MODULE}}
                                                            a new notebook, and what its cells import
                      {"op": "reset", "socket": PATH, "modules": {...}, "earlier": [CODE, ...]}
                                                            the same notebook, after a judge was lost
                      {"op": "run", "cell": ID, "source": CODE, "timeout": SECONDS}
                                                            its kernel parts first run in the kernel
    judge -> grader   {"ready": true}
                      {"loop": true}                        start the kernel's loop
                      {"verdict": {"ok": true} | {"ok": false, "ename": ..., "evalue": ...}}

and to the kernel through a Unix socket at PATH (:class:`KernelChannel`): when a
test cell first needs the kernel, the grader starts the kernel's value server
in a silent request (``KernelServer.loop``), which connects and answers one
request per line until the judge says ``done``.  The student's code thus runs
on the kernel's main thread, in a request the notebook does not record.

Run it as ``python -m nnh.grade.judge``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import re
import sys

from nnh.grade.wire import MAX_CHARS, MUTABLE, WireError, decode, encode, keras_model, loads, write_back

#: Lines of a hidden block between these two markers run in the student's kernel, not in
#: the judge: code that must put the student's objects inside Keras (their layer in a model,
#: their schedule in an optimizer), which a proxy cannot do.  The judge has the kernel run
#: them first, whatever the cell's visible tests did there, in a namespace of their own made
#: from the notebook's (:meth:`Session.kernel_part`), takes what they define (values, or
#: proxies of functions it then calls) and makes every check itself.  Plain ``nbgrader
#: autograde`` runs the whole cell.
KERNEL_PART = re.compile(r"^[ \t]*# nnh grade: begin kernel part[^\n]*\n(.*?)^[ \t]*# nnh grade: end kernel part[^\n]*"
                         r"(?:\n|\Z)", re.MULTILINE | re.DOTALL)
#: What a test reads from the kernel that is not a name of the notebook.
_BUILTIN_NAMES = frozenset(dir(builtins))


class KernelError(Exception):
    """The student's code raised an exception that has no built-in counterpart here,
    or the kernel did not answer as it must."""


class KernelTimeout(BaseException):
    """The student's kernel did not answer within the test cell's time limit.  Not an
    ``Exception``: like an interrupt in the kernel, it ends the test cell whatever the
    test catches."""


class Remote:
    """An object that lives in the student's kernel: calling it (or one of its
    attributes) runs the student's code there and returns the result as a value."""

    __slots__ = ("_nnh_session", "_nnh_ref")

    def __init__(self, session: "Session", ref: dict):
        object.__setattr__(self, "_nnh_session", session)
        object.__setattr__(self, "_nnh_ref", ref)

    @property
    def __name__(self) -> str:  # noqa: PLW3201 - what messages name the student's function by
        return self._nnh_ref.get("name", "answer").rsplit(".", 1)[-1]

    def __call__(self, *args, **kwargs):
        return self._nnh_session.call(self, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._nnh_session.getattr(self, name)

    def _nnh_own_work(self, reference, args: tuple, name: str | None):
        """:func:`nnh.grading.assert_own_work` for this object, run in the kernel (where
        the object is) against the kernel's copy of ``reference``."""
        self._nnh_session.own_work(self, reference, args, name)

    def __setattr__(self, name, value):
        raise AttributeError("an object of the student's kernel cannot be changed from a test")

    def __repr__(self) -> str:
        return f"<{self._nnh_ref.get('kind', 'object')} {self._nnh_ref.get('name', 'answer')} of the student's notebook>"


def _raise_from(error: dict):
    """Raise the built-in exception the kernel's exception derives from (a
    ``ValueError`` subclass of the student's is a ``ValueError`` here)."""
    if not isinstance(error, dict):
        raise KernelError("the student's kernel did not answer as it must")
    message = str(error.get("message", ""))[:4000]
    for name in error.get("bases", []):
        kind = getattr(builtins, str(name), None)
        if isinstance(kind, type) and issubclass(kind, Exception) and kind is not Exception:
            raise kind(message)
    raise KernelError(f"{str(error.get('type', 'an exception'))[:200]}: {message}")


def _names_read(tree: ast.AST) -> set[str]:
    """Every name the code (and the functions and comprehensions in it) reads as a
    variable (not attribute names, not the modules it imports)."""
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def _names_bound(tree: ast.AST) -> set[str]:
    """Every name the code binds somewhere (assignments, imports, definitions, loop and
    ``except`` targets, parameters): the test's own, never asked of the kernel (which
    thus never learns the names a hidden test uses for itself)."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound


class Session:
    """The judge's state for one notebook: the namespace its test cells share, and
    the way to the kernel (``ask(request) -> reply text``)."""

    def __init__(self, ask, earlier: list[str] = (), modules: dict | None = None):
        import importlib

        self.ask = ask
        self.namespace: dict = {"__name__": "__nnh_test__", "__builtins__": builtins}
        self.owned: set[str] = set()  # names a test cell bound here: never taken from the kernel
        self.from_kernel: dict = {}  # name -> the value the kernel gave for it
        for alias, name in (modules or {}).items():  # the source notebook's imports: the judge's own
            try:
                self.namespace[alias] = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a module the judge cannot import: the kernel's name
                continue
            self.owned.add(alias)
        for source in earlier:  # test cells a lost judge ran: what they bound is still not the kernel's
            try:
                self.owned.update(_names_bound(ast.parse(source)))
            except SyntaxError:
                pass

    def _request(self, request: dict):
        try:
            message = loads(self.ask(request))
        except WireError as error:
            raise KernelError(f"the student's kernel did not answer as it must ({error})") from None
        if not isinstance(message, dict):
            raise KernelError("the student's kernel did not answer as it must")
        if "raise" in message:
            _raise_from(message["raise"])
        if "ok" not in message:
            raise KernelError("the student's kernel did not answer as it must")
        return message

    def _handle(self, ref: dict) -> Remote:
        if ref.get("$t") != "ref" or type(ref.get("id")) is not int:
            raise WireError("from the kernel, only handles stand for objects")
        return Remote(self, ref)

    def _value(self, data):
        try:
            return decode(data, self._handle)
        except (WireError, ImportError, RecursionError, MemoryError) as error:
            raise KernelError(f"the student's code returned something that is not plain data ({error})") from None

    def _encode(self, value):
        def refer(obj):
            if type(obj) is Remote:
                return {"$t": "ref", "id": obj._nnh_ref.get("id")}
            model = keras_model(obj)  # a model the test built: the kernel gets a copy (config and weights)
            if model is not None:
                return model
            raise WireError(f"a {type(obj).__name__} of the test cannot be sent to the student's kernel")
        return encode(value, refer)

    def call(self, target: Remote, args: tuple, kwargs: dict):
        request = {"op": "call", "id": target._nnh_ref.get("id"), "arguments": self._encode([list(args), dict(kwargs)])}
        message = self._request(request)
        result = self._value(message["ok"])
        back = self._value(message.get("back"))
        if type(back) is not list or len(back) != 2 or type(back[0]) is not list or type(back[1]) is not dict:
            raise KernelError("the student's kernel did not answer as it must")
        for original, new in [*zip(args, back[0]), *((kwargs[k], v) for k, v in back[1].items() if k in kwargs)]:
            if new is not None and type(original).__name__ in MUTABLE:
                write_back(original, new)
        return result

    def own_work(self, target: Remote, reference, args: tuple, name: str | None) -> None:
        module, qualname = getattr(reference, "__module__", None), getattr(reference, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            raise TypeError(f"assert_own_work needs a function or class as the reference, got {reference!r}")
        self._request({"op": "own", "id": target._nnh_ref.get("id"), "module": module, "qualname": qualname,
                       "arguments": self._encode(list(args)), "name": name})

    def getattr(self, target: Remote, name: str):
        return self._value(self._request({"op": "getattr", "id": target._nnh_ref.get("id"), "name": name})["ok"])

    def bind(self, tree: ast.AST) -> None:
        """Bind the names the code ``tree`` reads that the notebook defines (and neither
        the code itself nor an earlier test cell binds) to the kernel's values."""
        wanted = sorted(_names_read(tree) - _names_bound(tree) - self.owned - _BUILTIN_NAMES)
        if not wanted:
            return
        found = self._request({"op": "names", "names": wanted})["ok"]
        if not isinstance(found, dict):
            raise KernelError("the student's kernel did not answer as it must")
        for name in wanted:
            if name in found:
                self.namespace[name] = self.from_kernel[name] = self._value(found[name])
            elif name in self.from_kernel:  # the notebook no longer defines it
                del self.from_kernel[name]
                self.namespace.pop(name, None)

    def kernel_part(self, code: str) -> None:
        """Have the kernel run ``code`` (a kernel part) in a namespace of its own made from
        the notebook's, so that no earlier cell of the student's can have bound its names,
        and bind what it defines here, as the test's own."""
        names = sorted(_names_bound(ast.parse(code)))
        found = self._request({"op": "run", "code": code, "names": names})["ok"]
        if not isinstance(found, dict):
            raise KernelError("the student's kernel did not answer as it must")
        for name in names:
            if name in found:
                self.namespace[name] = self._value(found[name])
                self.owned.add(name)

    def run(self, cell: str, source: str) -> dict:
        """Run a test cell's code; its verdict."""
        parts = [part.group(1) for part in KERNEL_PART.finditer(source)]
        try:
            tree = ast.parse(KERNEL_PART.sub("", source))
            code = compile(tree, f"<test {cell}>", "exec")
            for part in parts:
                ast.parse(part)
        except SyntaxError as error:
            return {"ok": False, "ename": "SyntaxError", "evalue": f"the test cell does not compile: {error}"}
        try:
            for part in parts:
                self.kernel_part(part)
            self.bind(tree)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                exec(code, self.namespace)  # noqa: S102 - the course's own test code
            verdict = {"ok": True}
        except (KeyboardInterrupt, SystemExit):
            raise
        except KernelTimeout as error:
            verdict = {"ok": False, "ename": "CellTimeoutError", "evalue": str(error)}
        except BaseException as error:  # noqa: BLE001 - the verdict (nnh.grading's DelegationError too)
            verdict = {"ok": False, "ename": type(error).__name__, "evalue": str(error)[:4000]}
        for name, value in self.namespace.items():  # what the test bound is the test's from now on
            if name not in ("__builtins__", "__name__") and self.from_kernel.get(name, self) is not value:
                self.owned.add(name)
                self.from_kernel.pop(name, None)
        return verdict


#: Seconds the judge waits for the kernel to connect once the grader has asked it to.
CONNECT_TIMEOUT = 20


class KernelChannel:
    """The judge's line to the student's kernel during one test cell: a Unix socket the
    judge listens on (in the kernel's connection folder), to which the kernel's value
    server connects when the grader asks it to (``KernelServer.loop``); one JSON
    message per line each way, the kernel's at most :data:`MAX_CHARS` long.  The kernel
    has until ``deadline`` (the cell's time limit, :func:`time.monotonic`) to answer; after
    that every request of the cell fails with :class:`KernelTimeout`."""

    def __init__(self, start=None):
        self.start = start  # asks the grader to start the kernel's loop
        self.server = None
        self.stream = None
        self.connection = None
        self.deadline = float("inf")
        self.limit = 0.0  # the cell's time limit, in seconds (for the message)
        self.late = False  # the kernel did not answer in time during this cell

    def begin(self, limit: float) -> None:
        """A test cell starts: the kernel must answer within ``limit`` seconds from now."""
        import time

        self.limit, self.deadline, self.late = float(limit), time.monotonic() + float(limit), False

    def timeout_message(self) -> str:
        return f"the student's code did not return within the cell's {self.limit:g} s time limit"

    def _left(self) -> float:
        import time

        left = self.deadline - time.monotonic()
        if self.late or left <= 0:
            self.late = True
            raise KernelTimeout(self.timeout_message())
        return left

    def listen(self, path: str) -> None:
        import os
        import socket

        self.close()
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        os.chmod(path, 0o666)  # the kernel runs as a user of its own
        self.server.listen(1)

    def ask(self, request: dict) -> str:
        try:
            if self.stream is None:
                self._connect()
            left = self._left()
            self.connection.settimeout(left if left != float("inf") else None)
            self.stream.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            self.stream.flush()
            line = self.stream.readline(MAX_CHARS + 2)
        except TimeoutError:
            self.late = True
            self._left()  # raises KernelTimeout
        except OSError as error:
            raise KernelError(f"the line to the student's kernel broke ({error})") from None
        if not line.endswith(b"\n"):
            raise KernelError("the student's kernel did not answer as it must (no answer, or too long)")
        return line.decode("utf-8", errors="replace")

    def _connect(self) -> None:
        import socket

        if self.server is None:
            raise KernelError("the judge has no line to the student's kernel")
        self.start()
        self.server.settimeout(min(CONNECT_TIMEOUT, self._left()))
        try:
            self.connection, _ = self.server.accept()
        except socket.timeout:
            self._left()
            raise KernelError("the student's kernel did not connect to the judge") from None
        self.stream = self.connection.makefile("rwb")

    def close(self) -> None:
        """The end of a test cell: the kernel's loop returns."""
        if self.connection is not None:
            with contextlib.suppress(OSError):
                self.stream.write(b"done\n")
                self.stream.flush()
            with contextlib.suppress(OSError):
                self.stream.close()
                self.connection.close()
        self.connection = self.stream = None


def serve(stdin=None, stdout=None) -> None:
    """The judge's main loop (see the module docstring)."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer

    def send(message: dict) -> None:
        stdout.write(json.dumps(message).encode() + b"\n")
        stdout.flush()

    def receive() -> dict:
        line = stdin.readline()
        if not line:
            raise SystemExit(0)
        return json.loads(line)

    channel = KernelChannel(start=lambda: send({"loop": True}))
    session = Session(channel.ask)
    while True:
        message = receive()
        if message.get("op") == "reset":
            try:
                channel.listen(str(message.get("socket")))
                send({"ready": True})
            except OSError as error:
                send({"ready": False, "error": str(error)})
            modules = message.get("modules") if isinstance(message.get("modules"), dict) else {}
            session = Session(channel.ask, [str(source) for source in message.get("earlier", [])],
                              {str(k): str(v) for k, v in modules.items()})
        elif message.get("op") == "run":
            channel.begin(float(message.get("timeout", 60)))
            try:
                verdict = session.run(str(message.get("cell")), str(message.get("source", "")))
                if channel.late and verdict.get("ename") != "CellTimeoutError":  # however the test took it
                    verdict = {"ok": False, "ename": "CellTimeoutError", "evalue": channel.timeout_message()}
            finally:
                channel.close()
            send({"verdict": verdict})


#: The judge's address space is capped at ``--memory`` MB, and never below this: it imports
#: TensorFlow (about 2.1 GB of address space, 0.8 GB resident, measured while it decided the
#: dropout and augmentation references), whatever ``--memory`` means for the kernels.
JUDGE_MEMORY_MIN = 4096


def cap_memory(megabytes: int) -> None:
    """Cap this process's address space (0: no cap): what a student's code returns cannot
    make the judge take the machine's memory (a list of one array a thousand times, say,
    that a test turns into one huge array)."""
    import resource

    if megabytes > 0:
        limit = max(megabytes, JUDGE_MEMORY_MIN) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _imports() -> None:
    """What every judge imports before its first test cell."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras  # noqa: F401 - what the Keras tests use: imported once, while the kernel starts

    import nnh.grading  # noqa: F401


def zygote(fd: int) -> None:
    """``python -m nnh.grade.judge --zygote FD``: the judges of one ``nnh grade`` run,
    forked from one process that imports Keras once (as the kernels are forked from a
    zygote).  ``FD`` is a Unix socket the grader listens on (in a folder of its own, which
    only it may enter); the zygote imports, then forks one judge per connection: the
    grading process sends ``{"memory": MB}``; the judge writes its process id, then reads
    its messages from the connection and answers there (:func:`serve`) until the grading
    process closes it.  TensorFlow is imported but has never run when the zygote forks.
    Ends with the process that started it."""
    import os
    import signal
    import socket

    from nnh.grade.confine import _die_with_parent

    _die_with_parent()
    listener = socket.socket(fileno=fd)
    _imports()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the judges are reaped as they end
    while True:
        connection, _ = listener.accept()
        with connection.makefile("rwb") as stream:
            try:
                memory = int(json.loads(stream.readline() or b"{}").get("memory", 0))
            except (ValueError, TypeError, AttributeError):
                continue
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the judge
                try:
                    listener.close()
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    cap_memory(memory)
                    stream.write(f"{os.getpid()}\n".encode())  # first, before any answer
                    stream.flush()
                    serve(stream, stream)
                finally:
                    os._exit(0)
        connection.close()


if __name__ == "__main__":
    if "--zygote" in sys.argv:
        zygote(int(sys.argv[sys.argv.index("--zygote") + 1]))
    cap_memory(int(sys.argv[sys.argv.index("--memory") + 1]) if "--memory" in sys.argv else 0)
    _imports()
    serve()
