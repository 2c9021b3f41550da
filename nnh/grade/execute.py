"""nbgrader's ``Execute`` preprocessor, adapted for grading a class
(:func:`_preprocessors`): a time budget for the notebook, output caps, a dead or
stuck kernel costing only the cells from it on, and the runtime guard's checks
around every test cell; plus two small preprocessors (stderr is not a failure, the
source's cell order restored).
"""

from __future__ import annotations

import json
import os
import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async as _ensure_async
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute, NbGraderPreprocessor

from nnh.grade.box import _Box
from nnh.grade.guard import DEEP_GUARDED, GUARD_UNAVAILABLE, KERNEL_FUNCTIONS, SHADOW_GUARDED, _VOLATILE_BUILTINS
from nnh.grade import judge_client
from nnh.grade.judge_client import apply_verdict, judged_part, kernel_part_verdict, visible_part


OUTPUT_NOTE = "[nnh grade: output truncated: it passed"
TAMPER_NOTE = "[nnh grade: tampering:"  # under the judge, the guard's finding (a note, not an error)
OUTPUT_ERROR_CHARS = 20_000  # an error's message, and each traceback line, at most
OUTPUT_TRACEBACK_LINES = 60  # the last lines of a traceback


def _output_size(content: dict) -> int:
    """Characters of an output message's content (text, data of every MIME type, its
    metadata, error): everything the notebook would store of it."""
    size = 0
    for key in ("text", "evalue"):
        if isinstance(content.get(key), str):
            size += len(content[key])
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
    if content.get("metadata"):
        size += len(json.dumps(content["metadata"], default=str))
    size += sum(len(str(line)) for line in content.get("traceback") or [])
    return size



class ReadyClient(AsyncKernelClient):
    """jupyter_client's kernel client, ready without an idle wait.

    jupyter_client 8's ``wait_for_ready`` (``KernelClient._async_wait_for_ready``)
    ends by reading IOPub until it has been quiet for 0.2 s: 0.2 s in which nothing
    runs, for every kernel, that is for every student.  This one makes the same two
    checks (the kernel answers ``kernel_info`` on the shell channel; IOPub delivers a
    message, so its subscription is live), then drops only the IOPub messages already
    there.  A message that comes later is one nbclient skips anyway: it reads only the
    messages whose parent is one of its own requests."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass  # IOPub not connected yet: ask again
                else:
                    self._handle_kernel_info_reply(reply)
                    break
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
        while True:
            try:
                await self.iopub_channel.get_msg(timeout=0)
            except Empty:
                return


class SandboxExecute(Execute):
    """nbgrader's ``Execute`` with three changes, so that one bad cell costs only
    what it must:

    * a dying kernel does not lose the grades of the cells that ran before: the
      cell that killed it and every later code cell get an error output;
    * the notebook has a time budget (``notebook_timeout``): each cell gets at most
      what is left of it, and once it is spent the remaining cells are not run;
    * a cell that cannot be stopped (it ignores the interrupt) ends the run like
      a dead kernel, instead of failing the whole notebook;
    * output is capped as it arrives (``cell_output`` and ``notebook_output``
      bytes): what passes a cap is dropped, with one note in the cell, so a
      flood of ``print`` or ``display`` cannot fill the grader's memory or the
      disk.  Errors are always kept (shortened): they decide the points;
    * an integrity guard (:func:`nnh.grade.guard._integrity_guard`, when ``guard`` is set): before
      the first cell a silent request snapshots what the tests rely on, and before
      and after every test cell a silent request with a fresh challenge checks it;
      a change (or a check that does not answer correctly) ends the run: that test
      cell and every later one get a ``TamperingDetected`` error (zero points).
      Under the judge a change costs no points, only a note: the check runs after
      each test cell only, until it finds one.
    """

    sandbox_owner = None  # (uid, gid) that gets the notebook's folder, when grading as root
    box_run = None  # the boxed kernel's connection folder: sealed once the kernel is up
    notebook_timeout = None  # seconds for all cells together (None: no budget)
    guard = None  # (modules, aliases) to guard, from the source notebook (None: no runtime guard)
    cell_output = None  # bytes of output one cell keeps (None: no cap)
    notebook_output = None  # bytes of output the notebook keeps (None: no cap)
    judge = False  # decide every test cell in the judge (nnh.grade.judge), not in the kernel
    judge_socket = None  # where the judge listens for the kernel (in the kernel's connection folder)
    judge_modules = None  # alias -> module the source notebook's own cells import: the judge's own
    judge_memory = 0  # the judge's memory cap, MB (nnh.grade.judge.cap_memory)

    def preprocess(self, nb, resources=None, km=None):
        self._nnh_output = {"notebook": 0, "cells": {}, "truncated": set()}
        self._nnh_dead = None
        self._nnh_why = ""
        self._nnh_start = None
        self._nnh_cell_timeout = self.timeout
        self._nnh_guard = None  # (name in builtins, key) once the guard is installed; False: unavailable
        self._nnh_server = None  # the name of the kernel's value server (nnh.grade.wire), once installed
        self._nnh_loop = None  # the silent request in which the kernel serves the judge
        self._nnh_tampered = None  # under the judge: the guard's first finding
        self._nnh_note = None  # ... not yet shown in a cell
        if self.judge:
            self._judge_client().start(self.judge_memory)  # its imports overlap the kernel's start
        path = (resources or {}).get("metadata", {}).get("path")
        if self.sandbox_owner and path and os.path.isdir(path):
            os.chown(path, *self.sandbox_owner)  # the kernel's working folder, and nothing else
        try:
            return super().preprocess(nb, resources, km)
        except Exception:
            if self._nnh_dead is None:
                raise
            return nb, resources  # shutting down a dead or stuck kernel may fail too
        finally:
            if self.box_run and _Box.current is not None:
                _Box.current.stop_kernel()  # shut down "immediate": the launcher only was killed

    async def async_start_new_kernel_client(self):
        client = await super().async_start_new_kernel_client()
        if self.box_run and _Box.current is not None:
            _Box.current.seal(self.box_run)
        return client

    def _stop(self, cell, index, ename, why):
        self._nnh_dead = cell.metadata.get("nbgrader", {}).get("grade_id") or f"#{index + 1}"
        self._nnh_why = ename
        cell.outputs = list(cell.get("outputs", [])) + [_error(ename, why)]
        return cell, self.resources

    # -- the integrity guard: silent requests the notebook does not record

    def _silent(self, code, expressions, timeout):
        """Run ``code`` silently (no output, no history, no execution count) and
        evaluate ``expressions``; their values (literals), or None without an answer."""
        import ast as _ast

        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=expressions,
                                 allow_stdin=False)
        msg = self._shell_reply(msg_id, timeout)
        if msg is None or msg["content"].get("status") != "ok":
            return None
        values = {}
        for key, value in (msg["content"].get("user_expressions") or {}).items():
            try:
                values[key] = _ast.literal_eval(value["data"]["text/plain"])
            except (KeyError, TypeError, ValueError, SyntaxError, MemoryError, RecursionError):
                values[key] = None
        return values

    def _shell_reply(self, msg_id, timeout):
        """The kernel's reply to request ``msg_id``; None if none came within ``timeout``
        seconds (the kernel is then interrupted)."""
        import time as _time
        from queue import Empty

        from jupyter_core.utils import run_sync

        async def reply():
            deadline = _time.monotonic() + timeout
            while _time.monotonic() < deadline:
                try:
                    msg = await _ensure_async(self.kc.shell_channel.get_msg(timeout=1))
                except Empty:
                    await self._async_check_alive()
                    continue
                if msg["parent_header"].get("msg_id") == msg_id:
                    return msg
            return None

        msg = run_sync(reply)()
        if msg is None:
            run_sync(self.km.interrupt_kernel)()
        return msg

    # -- the judge: test cells decided outside the kernel

    def _judge_client(self):
        return judge_client.shared()

    def _install_server(self, timeout):
        """The kernel's value server (:mod:`nnh.grade.wire`) under a random name among its
        builtins, and the judge listening for it next to the kernel's connection files."""
        import secrets

        from nnh.grade.wire import kernel_source

        name = "_" + secrets.token_hex(12)
        code = (f"{name} = {{}}\nexec(compile({kernel_source()!r}, '<nnh wire>', 'exec'), {name})\n"
                f"{name}['install']({name!r})\ndel {name}\n")
        values = self._silent(code, {"ok": f"hasattr(__import__('builtins'), {name!r})"}, timeout)
        installed = (values or {}).get("ok") is True
        self._nnh_server = name if installed and self._judge_client().reset(self.judge_socket, self.judge_modules) \
            else False

    def _start_loop(self):
        """The kernel serves the judge (a silent request that returns when the judge is done)."""
        if self._nnh_server:
            # an expression, not code: IPython's input and AST transformers (the student's to change)
            # do not apply to it
            self._nnh_loop = self.kc.execute("", silent=True, store_history=False, allow_stdin=False,
                                             user_expressions={"loop": f"{self._nnh_server}.loop("
                                                                       f"{self.judge_socket!r})"})

    def _end_loop(self, timeout: float = 3.0) -> None:
        """Wait for the kernel's loop to return (it is interrupted if it does not)."""
        msg_id, self._nnh_loop = self._nnh_loop, None
        if msg_id is not None:
            self._shell_reply(msg_id, timeout)

    def _judged(self, cell, resources, index):
        """Run a test cell's visible tests in the kernel (what the student sees), then
        let the judge run the whole cell and decide it."""
        full = cell.source
        cell.source = visible_part(full)
        try:
            cell, resources = self._run_cell(cell, resources, index)
        finally:
            cell.source = full
        if self._nnh_dead is not None:
            return cell, resources
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") or f"#{index + 1}"
        try:
            verdict = self._judge_client().run(grade_id, judged_part(full), self._start_loop, max(float(self.timeout or 60), 1.0))
        finally:
            self._end_loop()
        apply_verdict(cell, kernel_part_verdict(full, cell, verdict))
        return cell, resources

    def _install_guard(self, timeout):
        import inspect
        import secrets

        modules, aliases = self.guard
        name, temporary = "_" + secrets.token_hex(12), "_" + secrets.token_hex(12)
        code = ("".join(inspect.getsource(function) + "\n" for function in KERNEL_FUNCTIONS)
                + f"try:\n    {temporary} = _integrity_guard({name!r}, {modules!r}, {aliases!r}, "
                f"{SHADOW_GUARDED!r}, {DEEP_GUARDED!r}, {_VOLATILE_BUILTINS!r})\n"
                f"finally:\n    del {', '.join(function.__name__ for function in KERNEL_FUNCTIONS)}\n")
        values = self._silent(code, {"key": f"globals().pop({temporary!r})"}, timeout)
        key = (values or {}).get("key")
        if not isinstance(key, str):
            self._nnh_guard = False
            self.log.warning(GUARD_UNAVAILABLE)
            return
        self._nnh_guard = (name, bytes.fromhex(key))

    def _check_guard(self):
        """None if nothing the tests rely on changed, else what changed."""
        import hashlib
        import hmac
        import secrets

        name, key = self._nnh_guard
        challenge = secrets.token_hex(16)
        values = self._silent("", {"r": f"{name}({challenge!r})"}, 60)
        answer = (values or {}).get("r")
        token, _, reasons = answer.partition("\n") if isinstance(answer, str) else ("", "", "")

        def expected(verdict):
            return hmac.new(key, f"{challenge}:{verdict}".encode(), hashlib.sha256).hexdigest()

        if hmac.compare_digest(token, expected("ok")):
            return None
        if hmac.compare_digest(token, expected("tampered")):
            return "; ".join(reasons.splitlines()) or "a change"
        return "the integrity check did not answer as it must (it was removed or replaced)"

    # -- the output caps

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":  # never dropped: it decides the points
            content["evalue"] = _shorten(str(content.get("evalue", "")), OUTPUT_ERROR_CHARS)
            content["traceback"] = [_shorten(str(line), OUTPUT_ERROR_CHARS)
                                    for line in list(content.get("traceback") or [])[-OUTPUT_TRACEBACK_LINES:]]
            return super().output(outs, msg, display_id, cell_index)
        size = _output_size(content)
        used = self._nnh_output
        cell_used = used["cells"].get(cell_index, 0)
        budgets = ((self.cell_output, cell_used, "this cell's"), (self.notebook_output, used["notebook"],
                                                                  "the notebook's"))
        over = [(cap, spent, what) for cap, spent, what in budgets if cap is not None and spent + size > cap]
        out, keep = None, not over
        if over and msg.get("msg_type") == "stream" and isinstance(content.get("text"), str):
            room = max(min(cap - spent for cap, spent, _ in over), 0)
            content["text"], size = content["text"][:room], room  # the part that fits
            keep = size > 0
        if keep:
            used["cells"][cell_index] = cell_used + size
            used["notebook"] += size
            out = super().output(outs, msg, display_id, cell_index)
        if over and cell_index not in used["truncated"]:
            used["truncated"].add(cell_index)
            cap, _, what = over[0]
            # display data: never merged into the student's streams, nor cut by LimitOutput
            outs.append(NotebookNode(output_type="display_data", metadata={}, data={
                "text/plain": f"{OUTPUT_NOTE} {what} limit of {cap / 2**20:g} MB; the rest was not kept]"}))
        return out

    def _update_display_id(self, display_id, msg):
        # an update replaces an output in place: it must fit the cell's cap on its own
        if self.cell_output is not None and _output_size(msg.get("content", {})) > self.cell_output:
            return None
        return super()._update_display_id(display_id, msg)

    def _guarded(self, cell, index, when):
        """Run the integrity check; on a change, stop here (a ``TamperingDetected`` error).
        Under the judge, where a finding is a note that changes no points, only after each
        test cell (a change made before it is found there too) and until the first finding."""
        if not self._nnh_guard or cell.cell_type != "code" or not utils.is_grade(cell):
            return None
        if self.judge and (when == "before" or self._nnh_tampered):
            return None
        try:
            change = self._check_guard()
        except DeadKernelError:
            return self._stop(cell, index, "KernelDied", "the kernel died before this cell")
        if change is None:
            return None
        found = f"the integrity check {when} this test cell found: {change}"
        if self.judge:  # the judge decides the tests: a finding is a note
            if not self._nnh_tampered:
                self._nnh_tampered = found
                self._nnh_note = found
            return None
        if when == "before":
            cell.outputs = []
        return self._stop(cell, index, "TamperingDetected", found)

    def _after_guard(self, cell):
        """Under the judge: the guard's first finding becomes a note on the cell where it
        was made (it costs no points: the judge decides every test cell)."""
        if self._nnh_note:
            cell.outputs = list(cell.get("outputs", [])) + [NotebookNode(
                output_type="display_data", metadata={}, data={"text/plain": f"{TAMPER_NOTE} {self._nnh_note}]"})]
            self._nnh_note = None

    def preprocess_cell(self, cell, resources, index):
        if self.judge and cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell) \
                and self._nnh_dead is None:
            return self._judged(cell, resources, index)
        return self._run_cell(cell, resources, index)

    def _run_cell(self, cell, resources, index):
        import time as _time

        if self._nnh_dead is not None:
            if cell.cell_type == "code":
                reason = {"KernelDied": "the kernel died", "TamperingDetected": "tampering was detected"}.get(
                    self._nnh_why, "the notebook ran out of time")
                cell.outputs = [_error(self._nnh_why, f"not run: {reason} in cell {self._nnh_dead}")]
            return cell, resources
        if self._nnh_start is None:
            self._nnh_start = _time.monotonic()
        if self.guard and self._nnh_guard is None and cell.cell_type == "code":
            left = (self.notebook_timeout - (_time.monotonic() - self._nnh_start)) if self.notebook_timeout \
                else None
            try:
                self._install_guard(max(1.0, min(max(self._nnh_cell_timeout or 0, 60), left or 1e9)))
            except DeadKernelError:
                return self._stop(cell, index, "KernelDied", "the kernel died before this cell")
        if self.judge and self._nnh_server is None and cell.cell_type == "code":
            try:  # before any student code, which could keep it from being installed
                self._install_server(60)
            except DeadKernelError:
                return self._stop(cell, index, "KernelDied", "the kernel died before this cell")
        if self.notebook_timeout and cell.cell_type == "code":
            left = self.notebook_timeout - (_time.monotonic() - self._nnh_start)
            if left <= 0:
                cell.outputs = []
                return self._stop(cell, index, "NotebookTimeoutError",
                                  f"not run: the notebook used up its {self.notebook_timeout:.0f} s time limit")
            self.timeout = int(max(1, min(self._nnh_cell_timeout or left, left)))
        stopped = self._guarded(cell, index, "before")
        if stopped is not None:
            return stopped
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            return self._stop(cell, index, "KernelDied",
                              "the kernel died while running this cell (os._exit, killing its own process, "
                              "a crash, or the memory or CPU limit)")
        except Exception as error:  # noqa: BLE001 - e.g. a cell that ignores the interrupt
            return self._stop(cell, index, "CellTimeoutError",
                              f"the cell could not be run or stopped ({type(error).__name__}: "
                              f"{str(error)[:300]}); the cells after it were not run")
        stopped = self._guarded(cell, index, "after")
        if stopped is None and self.judge and cell.cell_type == "code":
            self._after_guard(cell)
        return stopped if stopped is not None else (cell, resources)

def _shorten(text, limit):
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} characters cut]"

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


def _preprocessors():
    """The preprocessor classes the worker configures for one student, made afresh
    (subclasses with their own settings), so that nothing set for one student reaches
    the next in a long-lived grading process."""
    return (type("SandboxExecute", (SandboxExecute,), {}), type("StderrIsNotFailure", (StderrIsNotFailure,), {}),
            type("RestoreOrder", (RestoreOrder,), {"source_order": {}}))
