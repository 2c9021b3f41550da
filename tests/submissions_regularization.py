"""Submissions for the ``regularization`` assignment's grading tests.

Each wrong answer is the reference with one plausible mistake, listed with the
test cells that mistake must cost points in.
"""

from __future__ import annotations

from nbgrading import mutate, reference_answers

ASSIGNMENT = "regularization"
REFERENCE = reference_answers(ASSIGNMENT)

# Correct answers in other styles: explicit Python loops over the entries,
# isinstance checks on np.ndarray, np.linalg.norm, returning tuples.
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
         "test_l2_penalty_grad_errors"],
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

CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE}}
