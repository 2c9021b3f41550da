"""Submissions for the ``augmentation`` assignment's grading tests.

The correct answers in another style draw their random numbers differently
(per-image loops, ``rng.integers`` coin flips, ``rng.choice`` offsets,
``rng.shuffle``, the CutMix centre before lambda), bin the ECE with
``np.digitize``, paste the CutMix box through a mask and fit the temperature by
a grid refined around its best point; a third style fits it by Newton's method
on 1/T and pastes the box row by row.  The wrong ones each make one of the
mistakes the issues list.
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
    "fit_temperature": '''def fit_temperature(logits, labels):
    z = np.array(logits, dtype=float)
    y = np.array(labels)
    if z.shape[0] != y.shape[0]:
        raise ValueError("logits and labels differ in length")
    rows = np.arange(len(y))

    def nll(t):
        s = z / t
        top = s.max(axis=1)
        return np.mean(top + np.log(np.sum(np.exp(s - top[:, None]), axis=1)) - s[rows, y])

    lo, hi = math.log(1e-2), math.log(1e2)
    for _ in range(12):                       # a grid over log T, refined around its best point
        grid = np.linspace(lo, hi, 21)
        values = [nll(math.exp(u)) for u in grid]
        i = int(np.argmin(values))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, 20)]
    return math.exp(grid[i])
''',
    "cutmix_batch": '''def cutmix_batch(x, y, alpha, rng):
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    if np.shape(x)[0] != np.shape(y)[0]:
        raise ValueError("x and y differ in batch size")
    n, H, W = np.shape(x)[:3]
    cy, cx = rng.choice(H), rng.choice(W)     # the centre first
    lam0 = rng.beta(alpha, alpha)
    index = np.arange(n)
    rng.shuffle(index)
    h0 = int(round(H * math.sqrt(1 - lam0)))
    w0 = int(round(W * math.sqrt(1 - lam0)))
    in_rows = (np.arange(H) >= cy - h0 // 2) & (np.arange(H) < cy - h0 // 2 + h0)
    in_cols = (np.arange(W) >= cx - w0 // 2) & (np.arange(W) < cx - w0 // 2 + w0)
    mask = in_rows[:, None] & in_cols[None, :]
    x = np.asarray(x)
    x_mixed = np.where(mask[None, :, :, None], x[index], x)
    lam = 1 - mask.mean()
    y = np.asarray(y, dtype=float)
    top = int(np.argmax(in_rows)) if in_rows.any() else int(cy)
    left = int(np.argmax(in_cols)) if in_cols.any() else int(cx)
    return x_mixed, lam * y + (1 - lam) * y[index], lam, index, (top, left, int(in_rows.sum()), int(in_cols.sum()))
''',
}

THIRD_STYLE = {
    "fit_temperature": '''def fit_temperature(logits, labels):
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if z.shape[0] != y.shape[0]:
        raise ValueError(f"labels must have one entry per row of logits, got {y.shape[0]} for {z.shape[0]}")
    zy = z[np.arange(len(y)), y]

    def nll(beta):                            # convex in beta = 1/T
        s = beta * z
        m = s.max(axis=1)
        return np.mean(m + np.log(np.exp(s - m[:, None]).sum(axis=1)) - beta * zy)

    beta = 1.0
    for _ in range(200):                      # Newton's method with step halving
        s = beta * z
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mean_z = (p * z).sum(axis=1)
        grad = np.mean(mean_z - zy)
        hess = np.mean((p * z * z).sum(axis=1) - mean_z ** 2)
        step = grad / hess if hess > 0 else grad
        while beta - step <= 0 or nll(beta - step) > nll(beta) + 1e-15:
            step /= 2
            if abs(step) < 1e-14:
                break
        if abs(step) < 1e-13 * beta:
            break
        beta -= step
    return 1.0 / beta
''',
    "cutmix_batch": '''def cutmix_batch(x, y, alpha, rng):
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError("x and y must have the same number of examples")
    N, H, W, C = x.shape
    index = rng.permutation(N)
    lam0 = rng.beta(alpha, alpha)
    r = np.sqrt(1.0 - lam0)
    h0, w0 = int(np.rint(H * r)), int(np.rint(W * r))
    cy = rng.integers(H)
    cx = rng.integers(W)
    y1, y2 = int(np.clip(cy - h0 // 2, 0, H)), int(np.clip(cy - h0 // 2 + h0, 0, H))
    x1, x2 = int(np.clip(cx - w0 // 2, 0, W)), int(np.clip(cx - w0 // 2 + w0, 0, W))
    out = np.empty_like(x)
    for i in range(N):
        out[i] = x[i]
        for row in range(y1, y2):
            out[i, row, x1:x2] = x[index[i], row, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (H * W)
    y_mixed = np.zeros(y.shape)
    for i in range(N):
        y_mixed[i] = lam * y[i] + (1 - lam) * y[index[i]]
    return out, y_mixed, lam, index, (y1, x1, y2 - y1, x2 - x1)
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
    "temperature_fitted_on_ece": (
        mutate(REFERENCE, "fit_temperature",
               '    result = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded", options={"xatol": 1e-10})\n'
               "    return float(np.exp(result.x))",
               "    def probs(t):\n"
               "        e = np.exp(z / t - (z / t).max(axis=1, keepdims=True))\n"
               "        return e / e.sum(axis=1, keepdims=True)\n"
               "    grid = np.exp(np.linspace(np.log(0.01), np.log(100), 400))\n"
               "    return float(grid[np.argmin([expected_calibration_error(probs(t), y) for t in grid])])"),
        ["test_fit_temperature_nll"],
    ),
    "temperature_inverted": (
        mutate(REFERENCE, "fit_temperature", "return float(np.exp(result.x))", "return float(np.exp(-result.x))"),
        ["test_fit_temperature_nll", "test_fit_temperature_calibrates"],
    ),
    "temperature_coarse_grid": (
        mutate(REFERENCE, "fit_temperature",
               '    result = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded", options={"xatol": 1e-10})\n'
               "    return float(np.exp(result.x))",
               "    grid = np.linspace(np.log(0.05), np.log(20), 100)\n"
               "    return float(np.exp(grid[np.argmin([nll(u) for u in grid])]))"),
        ["test_fit_temperature_nll"],
    ),
    "temperature_fixed": (
        mutate(REFERENCE, "fit_temperature", "return float(np.exp(result.x))", "return 1.5"),
        ["test_fit_temperature_nll", "test_fit_temperature_calibrates"],
    ),
    "temperature_no_length_check": (
        mutate(REFERENCE, "fit_temperature",
               "    if len(z) != len(y):\n"
               '        raise ValueError(f"logits and labels must hold the same number of examples, got {len(z)} and {len(y)}")\n',
               ""),
        ["test_fit_temperature_errors"],
    ),
    "cutmix_lam_is_lam0": (
        mutate(REFERENCE, "cutmix_batch", "lam = 1 - (bottom - top) * (right - left) / (height * width)", "lam = lam0"),
        ["test_cutmix_batch_labels"],
    ),
    "cutmix_partner_box_elsewhere": (
        mutate(REFERENCE, "cutmix_batch", "x[index, top:bottom, left:right]", "x[index, :bottom - top, :right - left]"),
        ["test_cutmix_batch_box"],
    ),
    "cutmix_labels_reversed": (
        mutate(REFERENCE, "cutmix_batch", "y_mixed = lam * y + (1 - lam) * y[index]", "y_mixed = (1 - lam) * y + lam * y[index]"),
        ["test_cutmix_batch_labels"],
    ),
    "cutmix_in_place": (
        mutate(REFERENCE, "cutmix_batch", "x_mixed = x.copy()", "x_mixed = x"),
        ["test_cutmix_batch_no_mutation"],
    ),
    "cutmix_box_per_image": (
        mutate(REFERENCE, "cutmix_batch", "    x_mixed[:, top:bottom, left:right] = x[index, top:bottom, left:right]\n",
               "    for i in range(n):\n"
               "        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))\n"
               "        top, bottom = max(cy - h0 // 2, 0), min(cy - h0 // 2 + h0, height)\n"
               "        left, right = max(cx - w0 // 2, 0), min(cx - w0 // 2 + w0, width)\n"
               "        x_mixed[i, top:bottom, left:right] = x[index[i], top:bottom, left:right]\n"),
        ["test_cutmix_batch_box"],
    ),
    "cutmix_box_not_clipped": (
        mutate(mutate(REFERENCE, "cutmix_batch", "top, bottom = max(cy - h0 // 2, 0), min(cy - h0 // 2 + h0, height)",
                      "top, bottom = cy - h0 // 2, cy - h0 // 2 + h0"),
               "cutmix_batch", "left, right = max(cx - w0 // 2, 0), min(cx - w0 // 2 + w0, width)",
               "left, right = cx - w0 // 2, cx - w0 // 2 + w0"),
        ["test_cutmix_batch_box"],
    ),
    "cutmix_constant_lam0": (
        mutate(REFERENCE, "cutmix_batch", "lam0 = float(rng.beta(alpha, alpha))", "lam0 = 0.5"),
        ["test_cutmix_batch_distribution"],
    ),
    "delegates_to_reference": (
        {**REFERENCE, "smooth_labels": "from nnh.augment import smooth_labels as _course\n\n"
                                       "def smooth_labels(y_onehot, epsilon):\n    return _course(y_onehot, epsilon)\n"},
        ["test_smooth_labels_values"],
    ),
}

CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE},
           "third_style": {**REFERENCE, **THIRD_STYLE}}
