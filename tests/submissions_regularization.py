"""Submissions for the ``regularization`` assignment's grading tests.

Each wrong answer is the reference with one plausible mistake, listed with the
test cells that mistake must cost points in.
"""

from __future__ import annotations

from nbgrading import mutate, reference_answers

ASSIGNMENT = "regularization"
REFERENCE = reference_answers(ASSIGNMENT)

# Correct answers in other styles: explicit Python loops over the entries,
# isinstance checks on np.ndarray, np.linalg.norm, returning tuples; an AdamW
# update element by element with ``math``, Adam + L2 as the student's own AdamW
# with no decay on the penalised gradient, early stopping with Keras' wait counter.
OTHER_STYLE = {
    "l2_penalty": '''def l2_penalty(weights, lam):
    if lam < 0 or math.isnan(lam) or math.isinf(lam):
        raise ValueError("lam must be a finite number >= 0")
    if isinstance(weights, np.ndarray):
        weights = [weights]
    total = 0.0
    for array in weights:
        for value in np.ravel(array):
            total += float(value) ** 2
    return lam * total
''',
    "l1_penalty": '''def l1_penalty(weights, lam):
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    arrays = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    return lam * float(sum(np.linalg.norm(np.ravel(a), ord=1) for a in arrays))
''',
    "elastic_net_penalty": '''def elastic_net_penalty(weights, l1, l2):
    if not (np.isfinite(l1) and l1 >= 0):
        raise ValueError("l1 must be finite and >= 0")
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError("l2 must be finite and >= 0")
    flat = np.concatenate([np.ravel(a) for a in (weights if isinstance(weights, (list, tuple)) else [weights])])
    return float(l1 * np.abs(flat).sum() + l2 * np.dot(flat, flat))
''',
    "l2_penalty_grad": '''def l2_penalty_grad(weights, lam):
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError("lam must be finite and >= 0")
    def grad(w):
        return np.multiply(w, 2 * lam, dtype=np.float64)
    if isinstance(weights, np.ndarray):
        return grad(weights)
    return tuple(grad(w) for w in weights)
''',
    "adamw_update": '''def adamw_update(w, grad, m, v, step, learning_rate, weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    arrays = [np.asarray(x, dtype=float) for x in (w, grad, m, v)]
    shape = arrays[0].shape
    new_w, new_m, new_v = np.empty(shape), np.empty(shape), np.empty(shape)
    correction = math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)
    for index in np.ndindex(*shape):
        wi, gi, mi, vi = (float(a[index]) for a in arrays)
        wi = wi * (1.0 - learning_rate * weight_decay)
        mi = beta_1 * mi + (1.0 - beta_1) * gi
        vi = beta_2 * vi + (1.0 - beta_2) * gi * gi
        new_w[index] = wi - learning_rate * correction * mi / (math.sqrt(vi) + epsilon)
        new_m[index], new_v[index] = mi, vi
    return new_w, new_m, new_v
''',
    "adam_l2_update": '''def adam_l2_update(w, grad, m, v, step, learning_rate, l2, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    penalized = np.add(grad, np.multiply(2.0 * l2, w))  # Adam + L2 is AdamW without decay on this gradient
    return adamw_update(w, penalized, m, v, step, learning_rate, 0.0, beta_1, beta_2, epsilon)
''',
    "early_stopping": '''def early_stopping(val_losses, patience, min_delta=0.0):
    if patience < 1:
        raise ValueError("patience must be >= 1")
    if min_delta < 0:
        raise ValueError("min_delta must not be negative")
    wait, best, best_epoch = 0, None, 0
    for epoch, current in enumerate(list(val_losses)):
        wait += 1
        if best is None or current + min_delta < best:
            best, best_epoch, wait = current, epoch, 0
            continue
        if wait >= patience:
            return (epoch, best_epoch)
    if best is None:
        raise ValueError("val_losses is empty")
    return (None, best_epoch)
''',
}

# Correct answers built on Keras ops (tensors in, tensors out), Adam's bias-corrected
# moments updated in place on copies, early stopping in float32 with a while loop.
KERAS_STYLE = {
    "adamw_update": '''def adamw_update(w, grad, m, v, step, learning_rate, weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    ops = keras.ops
    w, grad, m, v = (ops.convert_to_tensor(np.asarray(x, dtype="float64")) for x in (w, grad, m, v))
    w = ops.multiply(w, 1.0 - learning_rate * weight_decay)
    m = ops.add(m, ops.multiply(1.0 - beta_1, ops.subtract(grad, m)))
    v = ops.add(v, ops.multiply(1.0 - beta_2, ops.subtract(ops.square(grad), v)))
    alpha = learning_rate * (1.0 - beta_2 ** step) ** 0.5 / (1.0 - beta_1 ** step)
    w = ops.subtract(w, ops.divide(ops.multiply(alpha, m), ops.add(ops.sqrt(v), epsilon)))
    return w, m, v
''',
    "adam_l2_update": '''def adam_l2_update(w, grad, m, v, step, learning_rate, l2, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    w = np.array(w, dtype=np.float64, copy=True)
    g = np.array(grad, dtype=np.float64, copy=True)
    g += 2.0 * l2 * w
    m = np.array(m, dtype=np.float64, copy=True)
    m *= beta_1
    m += (1.0 - beta_1) * g
    v = np.array(v, dtype=np.float64, copy=True)
    v *= beta_2
    v += (1.0 - beta_2) * g * g
    m_hat = m / (1.0 - beta_1 ** step)  # bias-corrected moments; Keras' epsilon, rescaled
    v_hat = v / (1.0 - beta_2 ** step)
    w -= learning_rate * m_hat / (np.sqrt(v_hat) + epsilon / math.sqrt(1.0 - beta_2 ** step))
    return w, m, v
''',
    "early_stopping": '''def early_stopping(val_losses, patience, min_delta=0.0):
    losses = np.asarray(val_losses, dtype=np.float32)  # Keras compares in float32
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if min_delta < 0:
        raise ValueError(f"min_delta must be >= 0, got {min_delta}")
    if losses.size == 0:
        raise ValueError("val_losses is empty")
    best_epoch, epoch = 0, 1
    while epoch < losses.size:
        if losses[epoch] + np.float32(min_delta) < losses[best_epoch]:
            best_epoch = epoch
        elif epoch - best_epoch == patience:
            return epoch, best_epoch
        epoch += 1
    return None, best_epoch
''',
}

WRONG = {
    "half_factor": (
        mutate(REFERENCE, "l2_penalty", "return float(lam * sum(", "return float(0.5 * lam * sum("),
        ["test_l2_penalty_values", "test_l2_penalty_list", "test_l2_penalty_keras"],
    ),
    "missing_square": (
        mutate(REFERENCE, "l2_penalty", "np.square(np.asarray(w, dtype=float))", "np.asarray(w, dtype=float)"),
        ["test_l2_penalty_values", "test_l2_penalty_keras"],
    ),
    "only_first_array": (
        {**REFERENCE, **{k: v.replace("arrays = weights if", "arrays = weights[:1] if")
                         for k, v in REFERENCE.items() if k in ("l2_penalty", "l1_penalty")}},
        ["test_l2_penalty_list", "test_l2_penalty_keras", "test_l1_penalty_values", "test_l1_penalty_keras"],
    ),
    "grad_in_place": (
        mutate(REFERENCE, "l2_penalty_grad",
               "return [2.0 * lam * np.asarray(w, dtype=float) for w in weights]",
               "for w in weights:\n        w *= 2.0 * lam\n    return weights"),
        ["test_l2_penalty_grad_no_mutation"],
    ),
    "grad_missing_two": (
        mutate(mutate(REFERENCE, "l2_penalty_grad", "return [2.0 * lam *", "return [lam *"),
               "l2_penalty_grad", "return 2.0 * lam * np.asarray(weights", "return lam * np.asarray(weights"),
        ["test_l2_penalty_grad_array", "test_l2_penalty_grad_list"],
    ),
    "no_validation": (
        {**REFERENCE, **{k: v.replace("    raise ValueError", "    pass  # raise ValueError")
                         for k, v in REFERENCE.items()}},
        ["test_l2_penalty_errors", "test_l1_penalty_errors", "test_elastic_net_penalty_errors",
         "test_l2_penalty_grad_errors", "test_early_stopping_errors"],
    ),
    "negative_check_only": (
        mutate(REFERENCE, "l1_penalty", "if not (math.isfinite(lam) and lam >= 0):", "if lam < 0:"),
        ["test_l1_penalty_errors"],
    ),
    "l1_without_abs": (
        mutate(REFERENCE, "l1_penalty", "np.sum(np.abs(np.asarray(w, dtype=float)))", "np.sum(np.asarray(w, dtype=float))"),
        ["test_l1_penalty_values", "test_l1_penalty_keras"],
    ),
    "elastic_net_swapped": (
        mutate(REFERENCE, "elastic_net_penalty", "return l1_penalty(weights, l1) + l2_penalty(weights, l2)",
               "return l1_penalty(weights, l2) + l2_penalty(weights, l1)"),
        ["test_elastic_net_penalty_values"],
    ),
    "grad_flattened_list": (
        mutate(REFERENCE, "l2_penalty_grad",
               "return [2.0 * lam * np.asarray(w, dtype=float) for w in weights]",
               "return 2.0 * lam * np.concatenate([np.ravel(w) for w in weights])"),
        ["test_l2_penalty_grad_list"],
    ),
    "grad_returns_input": (
        mutate(REFERENCE, "l2_penalty_grad",
               "return 2.0 * lam * np.asarray(weights, dtype=float)",
               "g = np.asarray(weights, dtype=float)\n    g *= 2.0 * lam\n    return g"),
        ["test_l2_penalty_grad_no_mutation"],
    ),
    "delegates_to_reference": (
        {**REFERENCE, "l2_penalty": "from nnh.regularization import l2_penalty as _course_l2\n\n"
                                    "def l2_penalty(weights, lam):\n    return _course_l2(weights, lam)\n"},
        ["test_l2_penalty_values", "test_l2_penalty_list"],
    ),
}

ADAMW_VALUES = ["test_adamw_update_values", "test_adamw_update_keras"]
ADAM_L2_VALUES = ["test_adam_l2_update_values", "test_adam_l2_update_keras"]
ADAMW_DECAY = "    w = w - learning_rate * weight_decay * w  # 1. decoupled decay, outside the adaptive step\n"
ADAM_STEP = "    w = w - alpha * m / (np.sqrt(v) + epsilon)"
BIAS_CORRECTION = "alpha = learning_rate * math.sqrt(1 - beta_2**step) / (1 - beta_1**step)"


def both_updates(old: str, new: str) -> dict[str, str]:
    """The reference with the same mistake in adamw_update and adam_l2_update."""
    return mutate(mutate(REFERENCE, "adamw_update", old, new), "adam_l2_update", old, new)


def early_stopping_wrong(old: str, new: str) -> dict[str, str]:
    return mutate(REFERENCE, "early_stopping", old, new)


WRONG.update({
    # AdamW
    "adamw_decay_after_step": (
        mutate(mutate(REFERENCE, "adamw_update", ADAMW_DECAY, ""), "adamw_update", ADAM_STEP,
               "    w = w - alpha * m / (np.sqrt(v) + epsilon)\n    w = w - learning_rate * weight_decay * w"),
        ADAMW_VALUES,
    ),
    "adamw_decay_without_learning_rate": (
        mutate(REFERENCE, "adamw_update", "w = w - learning_rate * weight_decay * w", "w = w - weight_decay * w"),
        ADAMW_VALUES,
    ),
    "adamw_decay_in_the_gradient": (  # AdamW written as Adam + L2: the decay goes through sqrt(v)
        mutate(REFERENCE, "adamw_update", ADAMW_DECAY, "    grad = grad + weight_decay * w\n"),
        ADAMW_VALUES,
    ),
    # both updates
    "adam_no_bias_correction": (both_updates(BIAS_CORRECTION, "alpha = learning_rate"), ADAMW_VALUES + ADAM_L2_VALUES),
    "adam_step_counted_from_zero": (  # treats the 1-based step as 0-based: t = step + 1
        both_updates("**step", "**(step + 1)"), ADAMW_VALUES + ADAM_L2_VALUES,
    ),
    "adam_updates_in_place": (
        {**REFERENCE,
         "adamw_update": REFERENCE["adamw_update"]
            .replace("w = np.array(w, dtype=float)", "w = np.asarray(w, dtype=float)")
            .replace("w = w - learning_rate * weight_decay * w", "w -= learning_rate * weight_decay * w")
            .replace("m = m + (1 - beta_1) * (grad - m)", "m += (1 - beta_1) * (grad - m)")
            .replace("v = v + (1 - beta_2) * (grad**2 - v)", "v += (1 - beta_2) * (grad**2 - v)"),
         "adam_l2_update": REFERENCE["adam_l2_update"]
            .replace("w = np.array(w, dtype=float)", "w = np.asarray(w, dtype=float)")
            .replace("m = m + (1 - beta_1) * (g - m)", "m += (1 - beta_1) * (g - m)")
            .replace("v = v + (1 - beta_2) * (g**2 - v)", "v += (1 - beta_2) * (g**2 - v)")
            .replace("w = w - alpha * m", "w -= alpha * m")},
        ["test_adamw_update_no_mutation", "test_adam_l2_update_no_mutation"],
    ),
    # Adam + L2
    "adam_l2_without_two": (
        mutate(REFERENCE, "adam_l2_update", "+ 2 * l2 * w", "+ l2 * w"), ADAM_L2_VALUES,
    ),
    "adam_l2_decoupled": (  # the penalty applied as AdamW's decay instead of through the gradient
        mutate(REFERENCE, "adam_l2_update", "g = np.asarray(grad, dtype=float) + 2 * l2 * w",
               "w = w - learning_rate * 2 * l2 * w\n    g = np.asarray(grad, dtype=float)"),
        ADAM_L2_VALUES,
    ),
    "adam_l2_raw_gradient_in_v": (  # the penalty enters m but v sees the data gradient alone
        mutate(REFERENCE, "adam_l2_update", "(g**2 - v)", "(np.asarray(grad, dtype=float)**2 - v)"),
        ADAM_L2_VALUES,
    ),
    # early stopping
    "early_stopping_patience_off_by_one": (
        early_stopping_wrong("epoch - best_epoch >= patience", "epoch - best_epoch > patience"),
        ["test_early_stopping_values", "test_early_stopping_to_the_end", "test_early_stopping_keras"],
    ),
    "early_stopping_returns_stop_as_best": (
        early_stopping_wrong("return epoch, best_epoch", "return epoch, epoch"),
        ["test_early_stopping_values", "test_early_stopping_keras"],
    ),
    "early_stopping_ties_improve": (
        early_stopping_wrong("loss < best_loss - min_delta", "loss <= best_loss - min_delta"),
        ["test_early_stopping_values", "test_early_stopping_keras"],
    ),
    "early_stopping_ignores_min_delta": (
        early_stopping_wrong("loss < best_loss - min_delta", "loss < best_loss"),
        ["test_early_stopping_values", "test_early_stopping_keras"],
    ),
    "early_stopping_last_epoch_instead_of_none": (
        early_stopping_wrong("return None, best_epoch", "return len(val_losses) - 1, best_epoch"),
        ["test_early_stopping_values", "test_early_stopping_to_the_end", "test_early_stopping_keras"],
    ),
})

CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE},
           "keras_style": {**REFERENCE, **KERAS_STYLE}}
