"""Submissions for the ``augmentation`` assignment's grading tests.

The correct answers in another style draw their random numbers differently
(per-image loops, ``rng.integers`` coin flips, ``rng.choice`` offsets,
``rng.shuffle``) and bin the ECE with ``np.digitize``; the wrong ones each make
one of the mistakes the issue lists.
"""

from __future__ import annotations

from nbgrading import mutate, reference_answers

ASSIGNMENT = "augmentation"
REFERENCE = reference_answers(ASSIGNMENT)

OTHER_STYLE = {
    "random_flip": '''def random_flip(images, rng, horizontal=True, vertical=False):
    result = []
    for image in images:
        if horizontal and rng.integers(0, 2) == 1:
            image = np.fliplr(image)
        if vertical and rng.integers(0, 2) == 1:
            image = np.flipud(image)
        result.append(image)
    return np.array(result, dtype=np.asarray(images).dtype).reshape(np.shape(images))
''',
    "random_crop": '''def random_crop(images, size, rng):
    n, H, W, C = np.shape(images)
    h, w = size
    if h > H or w > W or h < 1 or w < 1:
        raise ValueError("size must fit inside the image")
    out = np.empty((n, h, w, C), dtype=np.asarray(images).dtype)
    for i in range(n):
        top = rng.choice(H - h + 1)
        left = rng.choice(W - w + 1)
        out[i] = images[i, top:top + h, left:left + w, :]
    return out
''',
    "smooth_labels": '''def smooth_labels(y_onehot, epsilon):
    if epsilon < 0 or epsilon > 1 or epsilon != epsilon:
        raise ValueError("epsilon must be in [0, 1]")
    K = np.shape(y_onehot)[-1]
    return (1.0 - epsilon) * np.array(y_onehot, dtype=np.float64) + np.full(np.shape(y_onehot), epsilon / K)
''',
    "epsilon_hot": '''def epsilon_hot(y, epsilon):
    if not (epsilon >= 0 and epsilon < 0.5):
        raise ValueError("epsilon must be in [0, 0.5)")
    labels = np.asarray(y)
    if not np.isin(labels, [0, 1]).all():
        raise ValueError("y must be 0/1 labels")
    return labels * (1 - 2 * epsilon) + epsilon
''',
    "mixup_batch": '''def mixup_batch(x, y, alpha, rng):
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    if np.shape(x)[0] != np.shape(y)[0]:
        raise ValueError("x and y must have the same batch size")
    lam = rng.beta(alpha, alpha)
    index = np.arange(np.shape(x)[0])
    rng.shuffle(index)
    x_mixed = np.add(lam * np.asarray(x, float), (1 - lam) * np.take(x, index, axis=0))
    y_mixed = np.add(lam * np.asarray(y, float), (1 - lam) * np.take(y, index, axis=0))
    return x_mixed, y_mixed, lam, index
''',
    "expected_calibration_error": '''def expected_calibration_error(probs, labels, n_bins=15):
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if len(probs) != len(labels):
        raise ValueError("probs and labels differ in length")
    conf = np.max(probs, axis=1)
    right = (np.argmax(probs, axis=1) == np.asarray(labels)).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    total = 0.0
    for b in np.unique(which):
        sel = which == b
        total += sel.sum() / len(conf) * abs(right[sel].mean() - conf[sel].mean())
    return total
''',
}

WRONG = {
    "flip_whole_batch": (
        mutate(REFERENCE, "random_flip", "flip = rng.random(len(out)) < 0.5",
               "flip = np.full(len(out), rng.random() < 0.5)"),
        ["test_random_flip_probability"],
    ),
    "flip_wrong_axis": (
        mutate(REFERENCE, "random_flip", "out[flip] = out[flip][:, :, ::-1]", "out[flip] = out[flip][:, ::-1, :]"),
        ["test_random_flip_values", "test_random_flip_probability"],
    ),
    "flip_in_place": (
        mutate(REFERENCE, "random_flip", "out = np.array(images, copy=True)", "out = images"),
        ["test_random_flip_no_mutation"],
    ),
    "crop_wraps_around": (
        mutate(mutate(mutate(REFERENCE, "random_crop", "rng.integers(0, height - h + 1, size=n)", "rng.integers(0, height, size=n)"),
                      "random_crop", "rng.integers(0, width - w + 1, size=n)", "rng.integers(0, width, size=n)"),
               "random_crop", "image[t:t + h, l:l + w]", "np.roll(image, (-t, -l), axis=(0, 1))[:h, :w]"),
        ["test_random_crop_windows", "test_random_crop_offsets"],
    ),
    "crop_one_offset_for_all": (
        mutate(mutate(REFERENCE, "random_crop", "rng.integers(0, height - h + 1, size=n)",
                      "np.full(n, rng.integers(0, height - h + 1))"),
               "random_crop", "rng.integers(0, width - w + 1, size=n)", "np.full(n, rng.integers(0, width - w + 1))"),
        ["test_random_crop_offsets"],
    ),
    "smoothing_without_over_k": (
        mutate(REFERENCE, "smooth_labels", "return y * (1 - epsilon) + epsilon / y.shape[1]",
               "return y * (1 - epsilon) + epsilon"),
        ["test_smooth_labels_values"],
    ),
    "epsilon_hot_accepts_half": (
        mutate(REFERENCE, "epsilon_hot", "if not 0 <= epsilon < 0.5:", "if not 0 <= epsilon <= 0.5:"),
        ["test_epsilon_hot_errors"],
    ),
    "mixup_seed_form": (
        mutate(REFERENCE, "mixup_batch", "return lam * x + (1 - lam) * x[index], lam * y + (1 - lam) * y[index], lam, index",
               "return x + lam * x[index], y + lam * y[index], lam, index"),
        ["test_mixup_batch_convex"],
    ),
    "mixup_different_lam_for_y": (
        mutate(REFERENCE, "mixup_batch", "return lam * x + (1 - lam) * x[index], lam * y + (1 - lam) * y[index], lam, index",
               "lam_y = float(rng.beta(alpha, alpha))\n"
               "    return lam * x + (1 - lam) * x[index], lam_y * y + (1 - lam_y) * y[index], lam, index"),
        ["test_mixup_batch_convex"],
    ),
    "mixup_with_itself": (
        mutate(REFERENCE, "mixup_batch", "index = rng.permutation(len(x))", "index = np.arange(len(x))"),
        ["test_mixup_batch_distribution"],
    ),
    "mixup_uniform_lambda": (
        mutate(REFERENCE, "mixup_batch", "lam = float(rng.beta(alpha, alpha))", "lam = float(rng.uniform(0, 1))"),
        ["test_mixup_batch_distribution"],
    ),
    "ece_unweighted_bins": (
        mutate(mutate(REFERENCE, "expected_calibration_error", "ece += in_bin.mean() * abs(", "ece += abs("),
               "expected_calibration_error", "return float(ece)", "return float(ece / len(np.unique(bins)))"),
        ["test_expected_calibration_error_values"],
    ),
    "ece_drops_confidence_one": (
        mutate(REFERENCE, "expected_calibration_error", "bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)",
               "bins = (confidence * n_bins).astype(int)"),
        ["test_expected_calibration_error_values"],
    ),
    "delegates_to_reference": (
        {**REFERENCE, "smooth_labels": "from nnh.augment import smooth_labels as _course\n\n"
                                       "def smooth_labels(y_onehot, epsilon):\n    return _course(y_onehot, epsilon)\n"},
        ["test_smooth_labels_values"],
    ),
}

CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE}}
