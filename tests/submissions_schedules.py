"""Submissions for the ``schedules`` assignment's grading tests.

Each entry maps a student id to the answer cells it submits (grade_id →
source), built from the reference answers of the source notebook by one
targeted mistake, plus the cells that mistake must cost points in.
"""

from __future__ import annotations

from nbgrading import mutate, reference_answers

ASSIGNMENT = "schedules"
REFERENCE = reference_answers(ASSIGNMENT)

# A correct answer in another style: scalar math in Python loops, no reuse of
# the other functions, a differently structured Keras class.
OTHER_STYLE = {
    "step_decay": '''def step_decay(step, initial_lr, drop=0.5, every=10):
    if initial_lr <= 0 or not (0 < drop <= 1) or every < 1:
        raise ValueError("initial_lr must be > 0, drop in (0, 1], every >= 1")
    def one(t):
        if t < 0:
            raise ValueError("step must be >= 0")
        return initial_lr * drop ** math.floor(t / every)
    if np.ndim(step) == 0:
        return one(float(step))
    steps = np.asarray(step)
    return np.array([one(float(t)) for t in steps.ravel()]).reshape(steps.shape)
''',
    "cosine_decay": '''def cosine_decay(step, total_steps, initial_lr, final_lr=0.0):
    if total_steps < 1:
        raise ValueError("total_steps must be >= 1")
    def one(t):
        if t < 0:
            raise ValueError("step must be >= 0")
        t = min(t, total_steps)
        return final_lr + (initial_lr - final_lr) * (1 + math.cos(math.pi * t / total_steps)) / 2
    if np.ndim(step) == 0:
        return one(float(step))
    return np.vectorize(lambda t: one(float(t)), otypes=[float])(step)
''',
    "linear_warmup": '''def linear_warmup(step, warmup_steps, peak_lr, initial_lr=0.0):
    steps = np.atleast_1d(np.asarray(step, dtype=float))
    if (steps < 0).any():
        raise ValueError("step must be >= 0")
    out = np.empty_like(steps)
    for i, t in enumerate(steps.flat):
        if warmup_steps == 0 or t >= warmup_steps:
            out.flat[i] = peak_lr
        else:
            out.flat[i] = initial_lr + (peak_lr - initial_lr) * t / warmup_steps
    return float(out[0]) if np.ndim(step) == 0 else out.reshape(np.shape(step))
''',
    "warmup_cosine": '''def warmup_cosine(step, warmup_steps, total_steps, peak_lr, final_lr=0.0, initial_lr=0.0):
    if warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError("warmup_steps must be in [0, total_steps]")
    def one(t):
        if t < 0:
            raise ValueError("step must be >= 0")
        if t < warmup_steps:
            return initial_lr + (peak_lr - initial_lr) * t / warmup_steps
        if t >= total_steps:
            return final_lr
        frac = (t - warmup_steps) / (total_steps - warmup_steps)
        return final_lr + 0.5 * (peak_lr - final_lr) * (1 + math.cos(math.pi * frac))
    if np.ndim(step) == 0:
        return one(float(step))
    return np.vectorize(lambda t: one(float(t)), otypes=[float])(step)
''',
    "WarmupCosine": '''class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, warmup_steps, total_steps, peak_lr, final_lr=0.0, initial_lr=0.0):
        self.config = dict(warmup_steps=warmup_steps, total_steps=total_steps, peak_lr=peak_lr,
                           final_lr=final_lr, initial_lr=initial_lr)

    def __call__(self, step):
        c = self.config
        t = keras.ops.cast(step, "float32")
        w = keras.ops.cast(c["warmup_steps"], "float32")
        T = keras.ops.cast(c["total_steps"], "float32")
        ramp = c["initial_lr"] + (c["peak_lr"] - c["initial_lr"]) * t / keras.ops.maximum(w, 1.0)
        frac = keras.ops.clip((t - w) / keras.ops.maximum(T - w, 1.0), 0.0, 1.0)
        cos = c["final_lr"] + (c["peak_lr"] - c["final_lr"]) * 0.5 * (1.0 + keras.ops.cos(np.pi * frac))
        return keras.ops.where(t < w, ramp, cos)

    def get_config(self):
        return dict(self.config)
''',
}

# student id → (answers, grade_ids of test cells that must lose points)
WRONG = {
    "warmup_off_by_one": (
        mutate(REFERENCE, "linear_warmup", "np.minimum(t, warmup_steps)", "np.minimum(t + 1, warmup_steps)"),
        ["test_linear_warmup_values", "test_warmup_cosine_values"],
    ),
    "total_excludes_warmup": (
        mutate(REFERENCE, "warmup_cosine", "cosine_decay(after, total_steps - warmup_steps,",
               "cosine_decay(after, total_steps,"),
        ["test_warmup_cosine_values", "test_warmup_cosine_boundaries"],
    ),
    "no_clamp_after_total": (
        mutate(REFERENCE, "cosine_decay", "np.minimum(t, total_steps) / total_steps", "t / total_steps"),
        ["test_cosine_decay_after_total"],
    ),
    "missing_final_lr": (
        mutate(REFERENCE, "cosine_decay", "final_lr + (initial_lr - final_lr) * 0.5", "initial_lr * 0.5"),
        ["test_cosine_decay_values"],
    ),
    "integer_division": (
        mutate(REFERENCE, "cosine_decay", "np.minimum(t, total_steps) / total_steps",
               "np.minimum(t, total_steps) // total_steps"),
        ["test_cosine_decay_values"],
    ),
    "no_floor_in_step_decay": (
        mutate(REFERENCE, "step_decay", "np.floor(t / every)", "(t / every)"),
        ["test_step_decay_values", "test_step_decay_arrays"],
    ),
    "drop_zero_accepted": (
        mutate(REFERENCE, "step_decay", "if not 0 < drop <= 1:", "if not 0 <= drop <= 1:"),
        ["test_step_decay_errors"],
    ),
    "warmup_longer_than_total_accepted": (
        {**REFERENCE, "warmup_cosine": OTHER_STYLE["warmup_cosine"].replace(
            "if warmup_steps < 0 or warmup_steps > total_steps:", "if warmup_steps < 0:")},
        ["test_warmup_cosine_errors"],
    ),
    "assert_instead_of_valueerror": (
        mutate(REFERENCE, "cosine_decay",
               'raise ValueError(f"total_steps must be >= 1, got {total_steps}")',
               'assert False, "total_steps must be >= 1"'),
        ["test_cosine_decay_errors"],
    ),
    "scalar_only": (
        {**REFERENCE, **{k: OTHER_STYLE[k].replace("if np.ndim(step) == 0:", "if True:")
                         for k in ("step_decay", "cosine_decay", "warmup_cosine")}},
        ["test_step_decay_arrays", "test_cosine_decay_arrays", "test_warmup_cosine_arrays"],
    ),
    "keras_schedule_with_numpy": (
        mutate(REFERENCE, "WarmupCosine", "t = ops.cast(step, \"float32\")", "t = float(step); ops = np"),
        ["test_WarmupCosine_optimizer"],
    ),
    "keras_schedule_without_config": (
        mutate(REFERENCE, "WarmupCosine", 'return {"warmup_steps"', 'return {}\n        {"warmup_steps"'),
        ["test_WarmupCosine_config", "test_WarmupCosine_optimizer"],
    ),
    "subclasses_the_reference": (
        {**REFERENCE, "WarmupCosine": "import nnh.schedules\n\n"
                                      "class WarmupCosine(nnh.schedules.WarmupCosine):\n    pass\n"},
        ["test_WarmupCosine_values"],
    ),
}

# student id → answers that must get full marks
CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE}}
