"""The judge of ``nnh grade`` (``nnh/grade/judge.py``) and the wire format between it
and the student's kernel (``nnh/grade/wire.py``).

The kernel's half (:class:`nnh.grade.wire.KernelServer`) runs here in-process over a
plain dictionary as the notebook's namespace, so these tests check the judge's
decisions without starting kernels; ``tests/test_grade_command.py`` grades a real
class through it.
"""

from __future__ import annotations

import base64
import importlib
import os
import time
import types

import nbformat
import numpy as np
import pytest

import nbgrading
from nnh.grade.judge import KernelError, Remote, Session
from nnh.grade.judge_client import apply_verdict, judged_part, kernel_part_verdict, notebook_imports, visible_part
from nnh.grade.wire import MAX_CHARS, MAX_DEPTH, KernelServer, WireError, decode, dumps, encode, loads


def session(namespace: dict) -> Session:
    """A judge session whose kernel is ``namespace``, answered in-process."""
    server = KernelServer(namespace)
    return Session(lambda request: server(dumps(request)))


def run(namespace: dict, source: str, judge: Session | None = None) -> dict:
    return (judge or session(namespace)).run("test", source)


# -- the wire format ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, 0, -3, 2**80, 1.5, float("inf"), "text", [1, [2.0, "x"]], (1, (2, 3)), {"a": 1, 2: (3,)},
    1 + 2j, b"\x00\xff", range(2, 9, 3), np.float32(0.5), np.int64(7), np.bool_(True),
    np.arange(6, dtype=np.int16).reshape(2, 3), np.array(["a", "bc"]), np.zeros((0, 4)), np.array(3.0),
    np.arange(6.0).reshape(2, 3).T, np.arange(10)[::3], np.array([1.5, -2], dtype=">f4"), np.array([b"ab", b""]),
    np.array([True, False]), np.array([[1 + 2j]]), np.empty((2, 0), dtype="U0"), np.float16(2.5)])
def test_plain_values_cross_unchanged(value):
    back = decode(loads(dumps(encode(value))))
    assert type(back) is type(value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape and np.array_equal(back, value)
        assert back.flags.writeable and back.flags.c_contiguous
    else:
        assert back == value or (value != value and back != back)


def test_nan_crosses():
    assert np.isnan(decode(loads(dumps(encode(float("nan"))))))


def test_a_generator_goes_on_where_it_left_off():
    rng = np.random.default_rng(5)
    rng.random(3)
    copy = decode(loads(dumps(encode(rng))))
    assert np.array_equal(copy.random(4), rng.random(4))


def test_the_same_array_twice_arrives_as_one_object():
    zeros = np.zeros(2)
    first, second, other = decode(loads(dumps(encode([zeros, zeros, np.zeros(2)]))))
    assert first is second and first is not other


class _Reduces:
    def __reduce__(self):  # pragma: no cover - must never be called
        raise AssertionError("pickled")


class _Hooked(np.ndarray):
    """An array subclass whose hook runs wherever one is made (counted)."""

    made = 0

    def __array_finalize__(self, obj):
        type(self).made += 1


@pytest.mark.parametrize("value", [_Reduces(), np.array([object()], dtype=object), np.ma.masked_array([1, 2]),
                                   np.ndarray.__new__(_Hooked, (2,)),
                                   np.zeros(2, dtype=[("a", "f8")]), lambda: None, types.SimpleNamespace()])
def test_what_is_not_plain_data_does_not_cross_by_value(value):
    made = _Hooked.made
    with pytest.raises(WireError):
        encode(value)
    handle = encode(value, refer=lambda obj: {"$t": "ref", "id": 1})
    assert handle["$t"] == "ref"
    assert _Hooked.made == made, "an array subclass is sent as a handle, never copied (its hooks do not run)"


def _array_body(array) -> dict:
    return {"d": array.dtype.str, "s": list(array.shape), "b": base64.b64encode(array.tobytes()).decode()}


@pytest.mark.parametrize("data", [
    {"$t": "array", "v": {"d": "|O", "s": [1], "b": base64.b64encode(b"\0" * 8).decode()}},  # object pointers
    {"$t": "array", "v": {"d": "|V8", "s": [1], "b": base64.b64encode(b"\0" * 8).decode()}},  # a void type
    {"$t": "array", "v": {"d": "f8,i4", "s": [1], "b": ""}},  # a structured type
    {"$t": "array", "v": {"d": "<i3", "s": [1], "b": "AAAA"}},  # no such type
    {"$t": "array", "v": {"d": "<U0", "s": [3], "b": ""}},  # an item size NumPy never makes
    {"$t": "array", "v": {**_array_body(np.zeros(2)), "b": "not base64!"}},
    {"$t": "array", "v": {**_array_body(np.zeros(2)), "s": [100000000000]}},  # claims 800 GB
    {"$t": "array", "v": {**_array_body(np.zeros(2)), "s": [-2]}},
    {"$t": "array", "v": {**_array_body(np.zeros(2)), "s": [1] * 65}},
    {"$t": "array", "v": {**_array_body(np.zeros(2)), "extra": 1}},
    {"$t": "array", "v": {**_array_body(np.zeros(2)), "s": "2"}},
    {"$t": "array", "v": "AAAA"},  # NumPy's .npy text, or anything but the three fields
    {"$t": "scalar", "v": _array_body(np.zeros(2))},
    {"$t": "module", "v": "os"},
    {"$t": "module", "v": "subprocess"},
    {"$t": "rng", "v": {"$t": "dict", "v": [["bit_generator", "Evil"]]}},
    {"$t": "pickle", "v": ""},
    {"$t": "ref", "id": 1},
    {"$t": "same", "v": 3},
    {"no": "tag"},
])
def test_the_judge_refuses_what_its_encoder_never_writes(data):
    with pytest.raises(WireError):
        decode(data)


def test_deep_nesting_and_huge_messages_are_refused():
    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(WireError):
        encode(deep)
    with pytest.raises(WireError):
        decode(deep)
    with pytest.raises(WireError):
        loads(" " * (MAX_CHARS + 1))
    with pytest.raises(WireError):
        loads("[" * 100_000)


# -- the judge's session -------------------------------------------------------------------------

def test_a_test_passes_or_fails_on_the_values_the_students_code_returns():
    namespace = {"double": lambda x: 2 * x, "np": np}
    assert run(namespace, "assert double(np.arange(3)).tolist() == [0, 2, 4]") == {"ok": True}
    namespace["double"] = lambda x: 3 * x
    verdict = run(namespace, "assert double(2) == 4, 'double(2) must be 4'")
    assert verdict == {"ok": False, "ename": "AssertionError", "evalue": "double(2) must be 4"}


def test_the_tests_use_the_judges_own_modules_and_builtins():
    fake_numpy = types.ModuleType("numpy")
    fake_numpy.allclose = lambda *args, **kwargs: True
    namespace = {"np": fake_numpy, "len": lambda x: 3, "AssertionError": None, "f": lambda: [1, 2]}
    assert run(namespace, "assert np.allclose([0.0], [1.0])")["ok"] is False
    assert run(namespace, "assert len(f()) == 3")["ok"] is False
    assert run(namespace, "assert np is __import__('numpy')") == {"ok": True}


def test_the_notebooks_own_modules_are_the_judges_whatever_the_kernel_binds_to_them():
    """A module crosses by name, but an object that only looks like one would cross as a
    proxy whose comparisons run in the kernel (the red team's ``np = _Lenient(numpy)``):
    the names the source notebook's own cells import are bound by the judge itself."""
    class Lenient:
        isclose = allclose = staticmethod(lambda *args, **kwargs: True)

    namespace = {"np": Lenient(), "math": Lenient(), "f": lambda: 0.0}
    server = KernelServer(namespace)
    asked = []

    def ask(request):
        asked.append(request)
        return server(dumps(request))

    test = "assert math.isclose(f(), 1.0) and np.allclose([f()], [1.0])"
    assert Session(ask).run("a", test) == {"ok": True}, "without them, the kernel's objects decide"
    asked.clear()
    judge = Session(ask, modules={"np": "numpy", "math": "math", "nothing": "no_such_module_here"})
    assert judge.run("a", test)["ename"] == "AssertionError"
    assert all(set(r.get("names", [])) <= {"f"} for r in asked), "never asked for np or math"
    source = nbformat.read(nbgrading.REPO / "solutions" / "regularization" / "regularization.ipynb", as_version=4)
    assert {"np": "numpy", "math": "math", "keras": "keras", "nnh": "nnh"}.items() <= notebook_imports([source]).items()


def test_names_the_tests_bound_are_not_taken_from_the_notebook():
    namespace = {"f": lambda x: x + 1}
    judge = session(namespace)
    assert judge.run("a", "_expected = 3\nassert f(2) == _expected") == {"ok": True}
    namespace["_expected"] = 99  # the student binds the same name in the notebook
    namespace["f"] = lambda x: 99
    assert judge.run("b", "assert f(2) == _expected")["ok"] is False


def test_the_kernel_is_never_asked_for_the_names_a_test_binds():
    asked = []
    server = KernelServer({"f": lambda x: x + 1})

    def ask(request):
        asked.extend(request.get("names", []))
        return server(dumps(request))

    code = ("import math as _m\nfrom nnh.grading import check_function as _check\n"
            "def _helper(_y):\n    return _y\nfor _i in range(2):\n    _expected = _helper(_i) + 1\n"
            "    assert f(_i) == _expected")
    assert Session(ask).run("a", code) == {"ok": True}
    assert set(asked) == {"f"}, asked


def test_a_name_the_student_redefines_is_read_again():
    namespace = {"f": lambda: 1}
    judge = session(namespace)
    assert judge.run("a", "assert f() == 2")["ok"] is False
    namespace["f"] = lambda: 2
    assert judge.run("b", "assert f() == 2") == {"ok": True}


def test_changes_to_the_arguments_reach_the_test():
    def in_place(w, m, v):
        m += 1.0
        v += 1.0
        w *= 2
        return w

    judge = session({"in_place": in_place, "np": np})
    code = ("w, zeros = np.ones(2), np.zeros(2)\nin_place(w, zeros, zeros)\n"
            "assert w.tolist() == [2.0, 2.0] and zeros.tolist() == [2.0, 2.0]")
    assert judge.run("a", code) == {"ok": True}
    code = "rng = np.random.default_rng(0)\nin_place(np.ones(1), rng.random(1), np.zeros(1))\n"
    assert judge.run("b", code) == {"ok": True}


def test_the_random_stream_goes_on_after_the_students_function():
    judge = session({"draw": lambda rng: rng.random(2)})
    code = ("import numpy as np\nrng = np.random.default_rng(3)\nfirst = draw(rng)\nsecond = rng.random(2)\n"
            "expected = np.random.default_rng(3).random(4)\n"
            "assert np.array_equal(np.concatenate([first, second]), expected)")
    assert judge.run("a", code) == {"ok": True}


class _StudentError(ValueError):
    pass


def _raises_student_error():
    raise _StudentError("bad rate")


def _exits():
    raise SystemExit(0)


def test_exceptions_arrive_as_their_built_in_kind():
    namespace = {"f": _raises_student_error, "g": _exits}
    code = "try:\n    f()\nexcept ValueError as e:\n    assert 'bad rate' in str(e)\nelse:\n    raise AssertionError"
    assert run(namespace, code) == {"ok": True}
    verdict = run(namespace, "try:\n    g()\nexcept Exception:\n    pass")
    assert verdict == {"ok": True}  # SystemExit in the kernel is an error of the call here, not the judge's exit
    assert run(namespace, "g()")["ename"] == "KernelError"


def test_objects_stay_in_the_kernel_and_the_judge_only_gets_values():
    class Layer:
        rate = 0.5

        def __call__(self, x):
            return x * 2

    judge = session({"Layer": Layer, "np": np})
    code = "layer = Layer()\nassert layer.rate == 0.5\nassert np.array_equal(layer(np.ones(2)), [2, 2])"
    assert judge.run("a", code) == {"ok": True}
    assert type(judge.namespace["layer"]) is Remote
    with pytest.raises(AttributeError):
        judge.namespace["layer"].rate = 1


def test_a_kernel_that_does_not_answer_as_it_must_fails_the_test():
    for reply in [None, "not json", '{"raise": 3}', '{"nothing": 1}', "12", "[" * 5000, "x" * (MAX_CHARS + 1)]:
        judge = Session(lambda request, reply=reply: reply)
        verdict = judge.run("a", "f = g\nassert f() is None")
        assert verdict["ok"] is False and verdict["ename"] == "KernelError", (reply, verdict)


def test_objects_the_test_made_are_not_sent_to_the_kernel():
    verdict = run({"f": lambda x: 1}, "class Local:\n    pass\nf(Local())")
    assert verdict["ok"] is False and verdict["ename"] == "WireError"
    # a WireError is not a ValueError: it cannot satisfy a test that expects one
    verdict = run({"f": lambda x: 1}, "try:\n    f(object())\nexcept ValueError:\n    pass")
    assert verdict["ok"] is False


def test_a_keras_model_of_the_test_reaches_the_kernel_as_a_copy():
    import keras

    def predict(model, x):
        assert type(model).__module__.startswith("keras") and model is not sent[0]
        return keras.ops.convert_to_numpy(model(x))

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    sent = [model]
    judge = session({"predict": predict})
    judge.namespace["model"] = model
    judge.owned.add("model")
    x = np.ones((4, 3), dtype="float32")
    judge.namespace["x"] = x
    judge.owned.add("x")
    code = "import numpy as np, keras\nassert np.allclose(predict(model, x), keras.ops.convert_to_numpy(model(x)))"
    assert judge.run("a", code) == {"ok": True}
    # nothing of the kind comes back: a model tag from the kernel is refused
    assert run({"f": lambda: 1}, "f()")["ok"]
    with pytest.raises(KernelError):
        judge._value({"$t": "keras", "v": {"config": model.to_json(), "weights": []}})


def test_the_delegation_check_runs_where_the_students_function_is():
    from nnh.schedules import cosine_decay

    own = "from nnh import schedules as _ref\nfrom nnh.grading import assert_own_work\n" \
          "assert_own_work(cosine_decay, _ref.cosine_decay, 5, 10, 0.1)"
    assert run({"cosine_decay": cosine_decay}, own)["ok"] is False

    def written(step, total_steps, initial_lr, final_lr=0.0):
        return final_lr + (initial_lr - final_lr) * (1 + np.cos(np.pi * min(step, total_steps) / total_steps)) / 2

    assert run({"cosine_decay": written}, own) == {"ok": True}


def test_the_judge_and_the_kernel_talk_over_a_unix_socket(tmp_path):
    """The judge listens; when a test first needs the kernel, the grader starts the kernel's
    loop (here a thread), which connects and answers until the judge says done."""
    import threading

    from nnh.grade.judge import KernelChannel

    server = KernelServer({"f": lambda x: x * 2})
    path = str(tmp_path / "judge.sock")
    loops = []

    def start():
        loops.append(threading.Thread(target=server.loop, args=(path,)))
        loops[-1].start()

    channel = KernelChannel(start)
    channel.listen(path)
    judge = Session(channel.ask)
    for _ in range(2):  # a loop per test cell
        assert judge.run("a", "assert f(21) == 42") == {"ok": True}
        channel.close()
        loops[-1].join(5)
        assert not loops[-1].is_alive(), "the kernel's loop returns when the judge is done"
    assert len(loops) == 2
    # a kernel that never connects fails the test, in bounded time
    silent = KernelChannel(lambda: None)
    silent.listen(str(tmp_path / "other.sock"))
    import nnh.grade.judge as judge_module

    judge_module.CONNECT_TIMEOUT, before = 0.5, judge_module.CONNECT_TIMEOUT
    try:
        assert Session(silent.ask).run("b", "assert f(1) == 2")["ename"] == "KernelError"
    finally:
        judge_module.CONNECT_TIMEOUT = before


def _loop_quietly(server: KernelServer, path: str) -> None:
    """The kernel's loop, as the kernel runs it: an answer the judge no longer waits
    for ends it (here without a thread's traceback)."""
    try:
        server.loop(path)
    except OSError:
        pass


def test_a_kernel_that_does_not_answer_in_time_fails_that_cell_only(tmp_path):
    """The judge waits for the kernel no longer than the cell's time limit: that cell
    fails as a time-out, and the next cell is judged as usual (the judge lives on)."""
    import threading
    import time

    from nnh.grade.judge import KernelChannel

    server = KernelServer({"slow": lambda: time.sleep(3), "f": lambda x: x * 2})
    path = str(tmp_path / "judge.sock")
    loops = []

    def start():
        loops.append(threading.Thread(target=_loop_quietly, args=(server, path)))
        loops[-1].start()

    channel = KernelChannel(start)
    channel.listen(path)
    judge = Session(channel.ask)
    channel.begin(0.5)
    began = time.monotonic()
    verdict = judge.run("a", "try:\n    slow()\nexcept Exception:\n    pass\n")  # a test cannot catch it
    assert verdict["ename"] == "CellTimeoutError" and "0.5 s time limit" in verdict["evalue"]
    assert time.monotonic() - began < 2.0
    channel.close()
    loops[-1].join(5)
    channel.begin(5)
    assert judge.run("b", "assert f(21) == 42") == {"ok": True}
    channel.close()
    loops[-1].join(5)
    assert not any(loop.is_alive() for loop in loops)


def test_a_judge_started_again_takes_nothing_earlier_tests_bound_from_the_kernel():
    """A judge lost in a notebook is started again for the next cell without the names
    the earlier test cells bound: those are still the test's, never the student's."""
    asked = []
    server = KernelServer({"_expected": 99, "f": lambda x: x * 2})

    def ask(request):
        asked.append(request)
        return server(dumps(request))

    judge = Session(ask, earlier=["_expected = f(2)\nassert _expected == 4\n"])
    verdict = judge.run("later", "assert f(1) == 2\nassert _expected == 4")
    assert verdict["ename"] == "NameError"
    assert all("_expected" not in r.get("names", []) for r in asked)


# -- the grading process's side ------------------------------------------------------------------

def test_the_kernel_runs_only_the_visible_tests():
    source = "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(5) == 10\n### END HIDDEN TESTS\nprint('done')\n"
    assert visible_part(source) == "assert f(1) == 2\nprint('done')\n"


def test_a_kernel_part_of_the_hidden_tests_runs_in_the_kernel_and_nowhere_else():
    source = ("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nimport numpy as _np\n"
              "# nnh grade: begin kernel part (why)\ndef _trace():\n    return [f(3)]\n_seen = f(4)\n"
              "# nnh grade: end kernel part\nassert _trace() == [6] and _seen == 8\n### END HIDDEN TESTS\n")
    assert visible_part(source) == "assert f(1) == 2\n"
    assert judged_part(source) == source[len("assert f(1) == 2\n"):], "the hidden tests, kernel part included"
    assert judged_part("assert f(1) == 2\n") == "assert f(1) == 2\n"
    namespace = {"f": lambda x: 2 * x}
    exec(visible_part(source), namespace)  # noqa: S102 - what the kernel runs
    assert run(namespace, judged_part(source)) == {"ok": True}  # the judge calls the kernel's _trace
    assert "_trace" not in namespace and "_seen" not in namespace, "the kernel part's names are not the notebook's"
    namespace["f"] = lambda x: 2 * x if x < 3 else 0
    assert run(namespace, judged_part(source))["ename"] == "AssertionError"


def test_a_kernel_part_runs_whatever_the_visible_tests_did_and_cannot_be_planted():
    """The red team's attack: a wrong layer whose visible test raises in the kernel (so a
    kernel part run after it would never run), and an answer cell that defines the kernel
    part's names with the values the hidden tests want.  The kernel part runs anyway, in a
    namespace of its own: the plants change nothing."""
    source = ("assert f(1) == 2\nmodel_ok = True\n### BEGIN HIDDEN TESTS\n"
              "# nnh grade: begin kernel part\ndef _probe():\n    return f(3)\n_visible = model_ok\n"
              "# nnh grade: end kernel part\nassert _visible and _probe() == 6\n### END HIDDEN TESTS\n")
    planted = {"f": lambda x: 0, "_probe": lambda: 6, "_visible": True}
    with pytest.raises(AssertionError):
        exec(visible_part(source), planted)  # noqa: S102 - the kernel's run fails before model_ok is bound
    assert run(planted, judged_part(source))["ename"] == "NameError", "model_ok was never bound: the cell fails"
    planted["model_ok"] = True
    assert run(planted, judged_part(source))["ename"] == "AssertionError", "the real _probe() is 0"


def test_a_kernel_parts_cell_fails_where_its_visible_tests_failed_in_the_kernel():
    """The judge runs only the hidden tests of a cell with a kernel part: the visible tests'
    failure in the kernel (which a student can only cause, never hide) fails the cell."""
    with_part = "x = 1\n### BEGIN HIDDEN TESTS\n# nnh grade: begin kernel part\ny = 2\n# nnh grade: end kernel part\n" \
                "### END HIDDEN TESTS\n"
    failed = nbformat.v4.new_code_cell(with_part, outputs=[
        nbformat.v4.new_output("error", ename="AssertionError", evalue="wrong rate", traceback=[])])
    passed = nbformat.v4.new_code_cell(with_part)
    assert kernel_part_verdict(with_part, failed, {"ok": True}) == {"ok": False, "ename": "AssertionError",
                                                                    "evalue": "wrong rate"}
    assert kernel_part_verdict(with_part, passed, {"ok": True}) == {"ok": True}
    assert kernel_part_verdict("x = 1\n", failed, {"ok": True}) == {"ok": True}, "the judge re-ran those tests"


def test_the_verdict_decides_the_cells_outputs():
    def cell():
        return nbformat.v4.new_code_cell(outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="hello\n"),
            nbformat.v4.new_output("error", ename="AssertionError", evalue="from the kernel", traceback=[])])

    passed = cell()
    apply_verdict(passed, {"ok": True})
    assert [o.output_type for o in passed.outputs] == ["stream", "stream"]
    assert "from the kernel" in passed.outputs[1].text
    failed = cell()
    apply_verdict(failed, {"ok": False, "ename": "AssertionError", "evalue": "from the judge"})
    assert [(o.output_type, o.get("evalue")) for o in failed.outputs] == [("stream", None),
                                                                          ("error", "from the judge")]


# -- every assignment: the judge decides as the kernel does --------------------------------------

def _verdicts(assignment: str, answers: dict[str, str], judged: bool) -> dict[str, bool]:
    """Test cell → passed, for the source notebook with ``answers`` in its answer cells:
    every cell run in one namespace (as nbgrader does in the kernel), or the test cells
    decided by a judge (the kernel running their visible tests and kernel parts)."""
    nb = nbformat.read(nbgrading.REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    namespace: dict = {}
    judge = session(namespace)
    passed = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or "NBGRADER_EXECUTION" in cell.source:
            continue
        meta = cell.metadata.get("nbgrader", {})
        source = answers.get(meta.get("grade_id"), "raise NotImplementedError()") if meta.get("solution") \
            else cell.source
        test = bool(meta.get("grade")) and not meta.get("solution")
        by_judge = judged and test
        try:
            exec(visible_part(source) if by_judge else source, namespace)  # noqa: S102 - the course's cells
            ok = True
        except Exception:  # noqa: BLE001 - a failing test
            ok = False
        if test:
            if by_judge:  # what execute.py does: the judge's verdict, and a kernel part's visible tests
                cell = nbformat.v4.new_code_cell(source, outputs=[] if ok else [
                    nbformat.v4.new_output("error", ename="AssertionError", evalue="in the kernel", traceback=[])])
                ok = kernel_part_verdict(source, cell, judge.run(meta["grade_id"], judged_part(source)))["ok"]
            passed[meta["grade_id"]] = ok
    return passed


def _submissions(assignment: str, wrong: bool):
    module = importlib.import_module(f"submissions_{assignment}")
    if not wrong:
        return [(f"{assignment}-{sid}", assignment, answers) for sid, answers in module.CORRECT.items()]
    return [(f"{assignment}-{sid}", assignment, module.WRONG[sid][0]) for sid in sorted(module.WRONG)]


@pytest.mark.parametrize(("assignment", "answers"), [
    pytest.param(a, answers, id=sid) for assignment in ("regularization", "schedules", "augmentation", "dropout")
    for sid, a, answers in _submissions(assignment, wrong=False)[:1]]
    + [pytest.param(a, answers, id=sid) for assignment in ("regularization", "schedules")
       for sid, a, answers in _submissions(assignment, wrong=True)])
def test_the_judge_decides_every_test_as_the_kernel_does(assignment, answers):
    """Cell by cell, the judge gives the reference of every assignment and the wrong answers
    of two what the kernel gives (``tests/test_grading.py`` grades every correct and wrong
    answer of every assignment with ``nnh grade`` itself)."""
    in_kernel = _verdicts(assignment, answers, judged=False)
    judged = _verdicts(assignment, answers, judged=True)
    assert judged == in_kernel


def test_the_judges_memory_is_capped():
    """The red team's bomb: a function that answers the judge with one 8 MB array 600 times
    over, which a test's ``np.shape`` turns into a 4.8 GB array outside the box.  The judge
    runs with its address space capped (``--memory``, never below what it needs itself), so
    the bomb is a MemoryError in that test."""
    import subprocess
    import sys

    from nnh.grade.judge import JUDGE_MEMORY_MIN
    from nnh.grade.judge_client import JudgeClient

    bomb = ("from nnh.grade.judge import cap_memory\ncap_memory(100)\nimport numpy as np\n"
            "try:\n    np.shape([np.ones(1_000_000)] * 600)\nexcept MemoryError:\n    print('MemoryError')\n")
    done = subprocess.run([sys.executable, "-c", bomb], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "MemoryError", done.stdout + done.stderr
    client = JudgeClient()
    client.start(2048)
    try:
        with open(f"/proc/{client.process.pid}/limits") as fh:
            limit = [line.split()[4] for line in fh if line.startswith("Max address space")][0]
        deadline = time.monotonic() + 30
        while limit == "unlimited" and time.monotonic() < deadline:  # set as the judge starts
            time.sleep(0.1)
            with open(f"/proc/{client.process.pid}/limits") as fh:
                limit = [line.split()[4] for line in fh if line.startswith("Max address space")][0]
        assert int(limit) == JUDGE_MEMORY_MIN << 20
    finally:
        client.stop()


def test_the_judges_of_a_run_are_forked_from_one_zygote(tmp_path):
    """``nnh grade`` starts one judge zygote, which imports Keras once; each grading
    process's judge is a fork of it: a process of its own, with its memory cap, that
    decides test cells like a judge started from scratch, and that ends with the run."""
    from nnh.grade.judge import JUDGE_MEMORY_MIN
    from nnh.grade.judge_client import JudgeClient, start_judges, stop_judges

    start_judges()
    clients = [JudgeClient(), JudgeClient()]
    try:
        for number, client in enumerate(clients):
            client.start(1024)
            assert client.reset(str(tmp_path / f"kernel{number}.sock"), {"np": "numpy"}, timeout=120)
            verdict = client.run("t", "assert np.allclose(np.ones(2).sum(), 2.0)", lambda: None, 10)
            assert verdict == {"ok": True}, verdict
            assert client.run("t", "assert 1 == 2, 'no'", lambda: None, 10) == {"ok": False, "ename": "AssertionError",
                                                                           "evalue": "no"}
        pids = [client.process.pid for client in clients]
        assert len(set(pids)) == 2 and all(type(client.process).__name__ == "_ForkedJudge" for client in clients)
        with open(f"/proc/{pids[0]}/limits") as fh:
            assert [line.split()[4] for line in fh if line.startswith("Max address space")] == [
                str(JUDGE_MEMORY_MIN << 20)]
        clients[0].stop()
        assert not os.path.exists(f"/proc/{pids[0]}") or _is_zombie_pid(pids[0])
        assert clients[1].run("t", "assert True", lambda: None, 10) == {"ok": True}, "the other judge goes on"
    finally:
        stop_judges()
    time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{pid}") and not _is_zombie_pid(pid) for pid in pids), "they end with the run"


def _is_zombie_pid(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True
