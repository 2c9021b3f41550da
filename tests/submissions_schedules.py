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
    "plateau_schedule": '''class _Plateau:
    """ReduceLROnPlateau as a small state machine; the rate kept in float32, as Keras keeps it."""

    def __init__(self, initial_lr, factor, patience, min_delta, cooldown, min_lr):
        checks = {"factor": 0 < factor < 1, "patience": patience >= 1, "min_delta": min_delta >= 0,
                  "cooldown": cooldown >= 0, "min_lr": min_lr >= 0, "initial_lr": initial_lr > 0}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} is out of range")
        self.lr = np.float32(initial_lr)
        self.factor, self.patience, self.min_delta = factor, patience, min_delta
        self.cooldown, self.min_lr = cooldown, min_lr
        self.best = math.inf
        self.wait = self.cooling = self.epochs = 0

    def end_epoch(self, loss):
        if self.cooling:
            self.cooling -= 1
            self.wait = 0
        improved = self.epochs == 0 or loss + self.min_delta < self.best
        self.epochs += 1
        if improved:
            self.best, self.wait = loss, 0
            return self.lr
        if self.cooling:
            return self.lr
        self.wait += 1
        if self.wait == self.patience and self.lr > self.min_lr:
            self.lr = np.float32(max(self.lr * self.factor, self.min_lr))
            self.cooling, self.wait = self.cooldown, 0
        return self.lr


def plateau_schedule(val_losses, initial_lr, factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0):
    machine = _Plateau(initial_lr, factor, patience, min_delta, cooldown, min_lr)
    return np.array([machine.end_epoch(float(v)) for v in val_losses], dtype=np.float32)
''',
}

# Driving Keras' own callback is a correct answer too (it does not use nnh).
KERAS_CALLBACK = '''import types


def plateau_schedule(val_losses, initial_lr, factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0):
    if not 0 < factor < 1 or patience < 1 or min(min_delta, cooldown, min_lr) < 0 or initial_lr <= 0:
        raise ValueError("factor must be in (0, 1), patience >= 1, min_delta, cooldown, min_lr >= 0, initial_lr > 0")
    optimizer = keras.optimizers.SGD(learning_rate=initial_lr)
    callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=factor, patience=patience,
                                                 min_delta=min_delta, cooldown=cooldown, min_lr=min_lr)
    callback.set_model(types.SimpleNamespace(optimizer=optimizer))
    callback.on_train_begin()
    rates = []
    for epoch, loss in enumerate(val_losses):
        callback.on_epoch_end(epoch, {"val_loss": float(loss)})
        rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    return np.array(rates)
'''

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
    "keras_schedule_with_a_python_float": (
        # a Python float of the step: fine when called by hand, not inside model.fit's graph
        mutate(REFERENCE, "WarmupCosine", "t = ops.cast(step, \"float32\")", "t = float(step)"),
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
    "plateau_no_cooldown": (
        mutate(REFERENCE, "plateau_schedule", "cooling, wait = cooldown, 0", "cooling, wait = 0, 0"),
        ["test_plateau_schedule_cooldown", "test_plateau_schedule_sequences", "test_plateau_schedule_keras"],
    ),
    "plateau_cooldown_not_keras": (  # skips `cooldown` epochs, not Keras' cooldown - 1
        mutate(REFERENCE, "plateau_schedule", "cooling, wait = cooldown, 0", "cooling, wait = cooldown + 1, 0"),
        ["test_plateau_schedule_cooldown", "test_plateau_schedule_sequences"],
    ),
    "plateau_below_min_lr": (
        mutate(REFERENCE, "plateau_schedule", "lr = max(lr * factor, min_lr)", "lr = lr * factor"),
        ["test_plateau_schedule_min_lr", "test_plateau_schedule_sequences", "test_plateau_schedule_keras"],
    ),
    "plateau_raises_rate_to_min_lr": (
        mutate(REFERENCE, "plateau_schedule", "if wait >= patience and lr > min_lr:", "if wait >= patience:"),
        ["test_plateau_schedule_min_lr", "test_plateau_schedule_sequences"],
    ),
    "plateau_patience_off_by_one": (
        mutate(REFERENCE, "plateau_schedule", "if wait >= patience and", "if wait > patience and"),
        ["test_plateau_schedule_example", "test_plateau_schedule_sequences", "test_plateau_schedule_keras"],
    ),
    "plateau_ignores_min_delta": (
        mutate(REFERENCE, "plateau_schedule", "loss < best - min_delta", "loss < best"),
        ["test_plateau_schedule_min_delta", "test_plateau_schedule_sequences"],
    ),
    "plateau_tie_is_improvement": (
        mutate(REFERENCE, "plateau_schedule", "loss < best - min_delta", "loss <= best - min_delta"),
        ["test_plateau_schedule_min_delta"],
    ),
    "plateau_counter_not_reset": (
        mutate(REFERENCE, "plateau_schedule", "cooling, wait = cooldown, 0", "cooling = cooldown"),
        ["test_plateau_schedule_example", "test_plateau_schedule_sequences", "test_plateau_schedule_keras"],
    ),
    "plateau_rate_before_update": (
        mutate(mutate(REFERENCE, "plateau_schedule", "        rates.append(lr)\n", ""), "plateau_schedule",
               "    for loss in val_losses:\n", "    for loss in val_losses:\n        rates.append(lr)\n"),
        ["test_plateau_schedule_example", "test_plateau_schedule_sequences", "test_plateau_schedule_keras"],
    ),
    "plateau_factor_one_accepted": (
        mutate(REFERENCE, "plateau_schedule", "if not 0 < factor < 1:", "if not 0 < factor <= 1:"),
        ["test_plateau_schedule_errors"],
    ),
    "plateau_imports_the_reference": (
        {**REFERENCE, "plateau_schedule": "from nnh.schedules import plateau_schedule\n"},
        ["test_plateau_schedule_example", "test_plateau_schedule_min_delta", "test_plateau_schedule_cooldown",
         "test_plateau_schedule_min_lr", "test_plateau_schedule_sequences", "test_plateau_schedule_keras"],
    ),
    "plateau_wraps_the_reference": (
        {**REFERENCE, "plateau_schedule": "import nnh.schedules\n\n\ndef plateau_schedule(*args, **kwargs):\n"
                                          "    return nnh.schedules.plateau_schedule(*args, **kwargs)\n"},
        ["test_plateau_schedule_example", "test_plateau_schedule_min_delta", "test_plateau_schedule_cooldown",
         "test_plateau_schedule_min_lr", "test_plateau_schedule_sequences", "test_plateau_schedule_keras"],
    ),
}

# student id → answers that must get full marks
CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE},
           "keras_callback": {**REFERENCE, "plateau_schedule": KERAS_CALLBACK}}
