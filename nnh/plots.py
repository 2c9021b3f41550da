"""Plots for the book.  Every function returns the matplotlib ``Figure`` (so a
reader can restyle or save it) and never calls ``plt.show()``."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from nnh import schedules


def plot_cosine_lr(total_steps: int = 1000, initial_lr: float = 0.1, final_lr: float = 0.0):
    """Cosine decay (left) and its slope per step (right).

    The slope panel shows the shape described in the chapter: the rate falls
    slowly at the start, fastest (almost linearly) in the middle and slowly
    again at the end.
    """
    steps = np.arange(total_steps + 1)
    rates = schedules.cosine_decay(steps, total_steps, initial_lr, final_lr)
    fig, (ax_lr, ax_slope) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    ax_lr.plot(steps, rates)
    ax_lr.set(
        title="Cosine learning-rate decay",
        xlabel="training step t (batches)",
        ylabel="learning rate η_t",
    )
    ax_slope.plot(steps[1:], np.diff(rates), color="C1")
    ax_slope.set(
        title="Change of the rate per step",
        xlabel="training step t (batches)",
        ylabel="η_t − η_(t−1)  (per batch)",
    )
    for ax in (ax_lr, ax_slope):
        ax.grid(alpha=0.3)
    return fig


def plot_schedules(curves: Mapping[str, Sequence[float]], title: str = "Learning-rate schedules",
                   xlabel: str = "training step (batches)"):
    """One line per named schedule: ``curves`` maps a label to the rate at steps 0, 1, 2, …"""
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    for label, rates in curves.items():
        ax.plot(np.arange(len(rates)), rates, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel="learning rate")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_learning_curves(histories: Mapping[str, Mapping[str, Sequence[float]]],
                         metric: str = "loss", title: str | None = None):
    """Training (solid) and test (dashed) ``metric`` per epoch for each named run."""
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    for i, (label, history) in enumerate(histories.items()):
        epochs = np.arange(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], color=f"C{i}", label=f"{label} (train)")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], color=f"C{i}", ls="--", label=f"{label} (test)")
    ax.set(
        title=title or f"{metric.replace('_', ' ').capitalize()} per epoch",
        xlabel="epoch",
        ylabel=metric.replace("_", " "),
    )
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize="small")
    return fig


# --- data augmentation, mixup and calibration (chapter "augmentation") --------------


def plot_image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, *,
                    ncols: int | None = None, title: str = "Images", cmap: str | None = None,
                    panel_size: float = 1.8):
    """Show images side by side, e.g. an original and its augmented variants.

    Args:
        images: arrays ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``; floats in
            [0, 1] or integers in 0–255.  Single-channel images are drawn with
            ``cmap`` (default ``"gray_r"``: ink dark on white, as the digits).
        titles: one caption per image.
        ncols: images per row (default: all in one row, at most 8).
        title: the figure's title.
        panel_size: inches per image.
    """
    images = [np.asarray(im) for im in images]
    n = len(images)
    ncols = ncols or min(n, 8)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.5),
                             layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        image = images[i]
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            ax.imshow(image, cmap=cmap or "gray_r", vmin=0, vmax=float(max(1.0, image.max())))
        else:
            ax.imshow(np.clip(image, 0, 255 if image.dtype == np.uint8 else 1))
        if titles is not None:
            ax.set_title(titles[i], fontsize="small")
    fig.suptitle(title)
    return fig


def plot_beta_densities(alphas: Sequence[float] = (0.1, 0.2, 0.4, 1.0, 2.0), ymax: float = 4.0):
    """Density of ``Beta(α, α)`` — the distribution of mixup's weight λ — for several α.

    For ``α < 1`` the density piles up at 0 and 1 (most mixed examples stay
    close to one of the two originals); ``α = 1`` is uniform; ``α > 1``
    concentrates around 1/2.  Densities above ``ymax`` are cut off.
    """
    from scipy import stats

    lam = np.linspace(1e-3, 1 - 1e-3, 999)
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    for alpha in alphas:
        ax.plot(lam, stats.beta(alpha, alpha).pdf(lam), label=f"α = {alpha:g}")
    ax.set(title="Beta(α, α) density of the mixup weight λ", xlabel="mixing weight λ",
           ylabel="probability density p(λ)", xlim=(0, 1), ylim=(0, ymax))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_reliability_diagrams(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
                              n_bins: int = 10, title: str = "Reliability diagrams"):
    """One reliability diagram per model, side by side.

    ``predictions`` maps a model's name to ``(probs, labels)``: predicted
    probabilities ``(N, K)`` and true class ids ``(N,)``.  Bars: accuracy of
    the predictions in each equal-width confidence bin; dots: their mean
    confidence; the number at the foot of each bar is how many predictions
    fall in the bin; the diagonal is perfect calibration (bars below it:
    over-confident, above it: under-confident).  The panel title gives the
    expected calibration error (:func:`nnh.metrics.expected_calibration_error`).
    """
    from nnh import metrics

    fig, axes = plt.subplots(1, len(predictions), figsize=(3.6 * len(predictions), 3.9),
                             layout="constrained", squeeze=False, sharey=True)
    for ax, (name, (probs, labels)) in zip(axes.flat, predictions.items()):
        curve = metrics.reliability_curve(probs, labels, n_bins)
        ece = metrics.expected_calibration_error(probs, labels, n_bins)
        centers = (curve.edges[:-1] + curve.edges[1:]) / 2
        filled = curve.count > 0
        ax.bar(centers[filled], curve.accuracy[filled], width=1 / n_bins, edgecolor="k",
               alpha=0.7, label="accuracy in bin")
        ax.plot(centers[filled], curve.confidence[filled], "o", color="C3", ms=4,
                label="mean confidence in bin")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        for x, count in zip(centers[filled], curve.count[filled]):
            ax.text(x, 0.02, str(count), ha="center", va="bottom", fontsize="x-small")
        ax.set(title=f"{name}\nECE = {ece:.3f}", xlabel="confidence (max probability)",
               xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("accuracy")
    axes.flat[0].legend(fontsize="small", loc="upper left")
    fig.suptitle(title)
    return fig


# --- dropout (chapter "dropout") ------------------------------------------------------


def plot_dropout_masks(masks: Mapping[str, np.ndarray], title: str = "Dropout masks", *,
                       xlabel: str = "hidden unit (index)", ylabel: str = "training example (index)"):
    """Sampled keep-masks as images: one panel per mask, rows = examples, columns = units.

    ``masks`` maps a label (e.g. ``"rate 0.5"``) to a boolean array
    ``(n_examples, n_units)`` such as :func:`nnh.dropout.dropout_mask` returns.
    Kept units are light, dropped units dark; each row is the sub-network that
    one training example trains.  The panel title gives the fraction kept;
    ``xlabel``/``ylabel`` rename the axes for other layouts (e.g. rows =
    feature maps, columns = pixel positions).
    """
    fig, axes = plt.subplots(1, len(masks), figsize=(4.2 * len(masks), 3.4),
                             layout="constrained", squeeze=False)
    for ax, (label, mask) in zip(axes.flat, masks.items()):
        mask = np.asarray(mask, dtype=bool)
        ax.imshow(mask, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set(title=f"{label}: {mask.mean():.0%} of units kept", xlabel=xlabel, ylabel=ylabel)
    fig.suptitle(title)
    return fig


def plot_mc_dropout(probs: np.ndarray, indices: Sequence[int], labels: Sequence[int] | None = None,
                    reference: np.ndarray | None = None,
                    title: str = "Monte-Carlo dropout: predictions of T stochastic passes"):
    """Spread of Monte-Carlo dropout predictions for a few examples, one panel each.

    Args:
        probs: ``(T, N, K)`` class probabilities of ``T`` passes with dropout
            on (:func:`nnh.dropout.mc_dropout_predict`).
        indices: the examples to show (one panel each).
        labels: true classes ``(N,)``, shown in the panel titles.
        reference: ``(N, K)`` deterministic probabilities (dropout off), drawn
            as crosses.

    Dots are the ``T`` passes (jittered sideways), bars their mean, whiskers
    ± one standard deviation.
    """
    probs = np.asarray(probs)
    n_passes, _, n_classes = probs.shape
    fig, axes = plt.subplots(1, len(indices), figsize=(3.3 * len(indices), 3.5),
                             layout="constrained", squeeze=False, sharey=True)
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, size=n_passes)
    classes = np.arange(n_classes)
    for ax, n in zip(axes.flat, indices):
        p = probs[:, n, :]
        ax.bar(classes, p.mean(axis=0), yerr=p.std(axis=0), color="C0", alpha=0.5,
               capsize=2, label=f"mean ± std of {n_passes} passes")
        ax.plot(classes[None, :] + jitter[:, None], p, ".", color="C0", ms=2.5, alpha=0.6)
        if reference is not None:
            ax.plot(classes, np.asarray(reference)[n], "x", color="C3", ms=6,
                    label="dropout off (deterministic)")
        caption = f"test example {n}" + (f", label {labels[n]}" if labels is not None else "")
        ax.set(title=caption, xlabel="class", xticks=classes, ylim=(0, 1.05))
        ax.grid(alpha=0.3, axis="y")
    axes.flat[0].set_ylabel("predicted probability")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize="small")
    fig.suptitle(title)
    return fig


# --- weight penalties (chapter "regularization") --------------------------------------


def plot_lines(x: Sequence[float], curves: Mapping[str, Sequence[float]], *, title: str,
               xlabel: str, ylabel: str, styles: Mapping[str, str] | None = None):
    """One line per named curve over a shared ``x`` (e.g. a function of a parameter).

    ``curves`` maps a label to ``y`` values of the same length as ``x``;
    ``styles`` optionally maps a label to a matplotlib format string (``"--"``).
    """
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    for label, y in curves.items():
        ax.plot(x, y, (styles or {}).get(label, "-"), label=label)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_weight_histograms(weights_by_name: Mapping[str, object], *, bins: int = 81,
                           limit: float | None = None, tol: float | None = None,
                           magnitude: bool = False, smallest: float = 1e-6,
                           log_count: bool = True,
                           title: str = "Distribution of the trained weights"):
    """Histogram of all weights of each model, one panel per model, on shared bins.

    Args:
        weights_by_name: label → one array or a list of arrays (e.g.
            :func:`nnh.regularization.kernels` of a trained model); all
            entries are pooled.
        bins: number of bins.
        limit: largest ``|w|`` shown (default: the largest ``|w|`` of all
            models); larger values are counted in the outermost bin.
        tol: if given, shade ``|w| <= tol`` and print the fraction of such
            weights in each panel's legend.
        magnitude: ``False``: histogram of the values ``w`` on
            ``[-limit, limit]`` (an odd ``bins`` puts one bin centred on 0).
            ``True``: histogram of ``|w|`` on log-spaced bins from
            ``smallest`` to ``limit`` with a log x-axis, which resolves
            near-zero weights; ``|w| < smallest`` (exact zeros included) is
            counted in the first bin.
        log_count: logarithmic count axis.
    """
    from nnh import regularization

    pooled = {name: np.concatenate([np.ravel(a) for a in regularization._arrays(w)])
              for name, w in weights_by_name.items()}
    if limit is None:
        limit = max(float(np.max(np.abs(v))) for v in pooled.values() if v.size)
    if magnitude:
        edges = np.geomspace(smallest, limit, bins + 1)
    else:
        edges = np.linspace(-limit, limit, bins + 1)
    fig, axes = plt.subplots(1, len(pooled), figsize=(3.6 * len(pooled), 3.4),
                             layout="constrained", squeeze=False, sharex=True, sharey=True)
    for i, (ax, (name, values)) in enumerate(zip(axes.flat, pooled.items())):
        shown = np.clip(np.abs(values), smallest, limit) if magnitude else np.clip(values, -limit, limit)
        ax.hist(shown, bins=edges, color=f"C{i}", alpha=0.8, label=f"{values.size:,} weights")
        if tol is not None:
            fraction = float(np.mean(np.abs(values) <= tol))
            low = smallest if magnitude else -tol
            ax.axvspan(low, tol, color="0.3", alpha=0.15, label=f"|w| ≤ {tol:g}: {fraction:.1%}")
        ax.set(title=name, xlabel="|w| (log scale)" if magnitude else "weight value w")
        if magnitude:
            ax.set_xscale("log")
        if log_count:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left" if magnitude else "upper right")
    axes.flat[0].set_ylabel("count (weights per bin)")
    fig.suptitle(title)
    return fig


def plot_sweep(values: Sequence[float], scores: Sequence[float], *, best: str | None = None,
               baseline: float | None = None, baseline_label: str = "baseline",
               xlabel: str = "hyper-parameter", ylabel: str = "score",
               title: str = "Hyper-parameter sweep", log_x: bool = True):
    """A score as a function of a hyper-parameter (log x-axis by default).

    Args:
        values: the hyper-parameter values (> 0 for a log axis).
        scores: the score of each value.
        best: ``"max"`` or ``"min"`` marks (star) and labels the best value;
            ``None`` marks nothing.  Ties go to the first (smallest) value.
        baseline: score of a reference run (e.g. no penalty), drawn as a
            dashed horizontal line labelled ``baseline_label``.
    """
    if best not in (None, "max", "min"):
        raise ValueError(f"best must be 'max', 'min' or None, got {best!r}")
    values, scores = np.asarray(values, dtype=float), np.asarray(scores, dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    ax.plot(values, scores, "o-", label=ylabel)
    if baseline is not None:
        ax.axhline(baseline, color="0.4", ls="--", label=baseline_label)
    if best is not None:
        i = int(np.argmax(scores) if best == "max" else np.argmin(scores))
        ax.plot(values[i], scores[i], "*", color="C3", ms=16,
                label=f"best: {xlabel} = {values[i]:g} ({scores[i]:.3g})")
    if log_x:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


# --- the capstone ablation (chapter "bag of tricks") ------------------------------------


def plot_ablation(summary: Mapping[str, Mapping[str, tuple[float, float]]], *,
                  panels: Mapping[str, str] | None = None, n_seeds: int | None = None,
                  title: str = "Bag-of-tricks ablation"):
    """Horizontal bars of the mean of each metric per configuration, with error bars of
    ± one standard deviation over the seeds, one panel per metric.

    Args:
        summary: configuration → metric → ``(mean, std)``, as
            :func:`nnh.ablation.summarize` returns it; the first configuration
            is the baseline, drawn as a dashed vertical line in every panel.
        panels: metric → (panel title, axis label with unit); default: test
            accuracy, expected calibration error and training time.
        n_seeds: the number of seeds behind each bar, for the axis label.
    """
    panels = dict(panels or {"accuracy": ("test accuracy", "fraction of test examples correct"),
                             "ece": ("expected calibration error", "ECE (0 = calibrated)"),
                             "seconds": ("training time", "seconds per run")})
    names = list(summary)
    if not names:
        raise ValueError("summary must hold at least one configuration, got {}")
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.2, 0.42 * len(names) + 1.6),
                             layout="constrained", sharey=True, squeeze=False)
    for i, (ax, (metric, (panel_title, label))) in enumerate(zip(axes.flat, panels.items())):
        mean = np.array([summary[n][metric][0] for n in names])
        std = np.array([summary[n][metric][1] for n in names])
        ax.barh(y, mean, xerr=std, color=[f"C{i}"] * len(names), alpha=0.75, capsize=3,
                error_kw={"elinewidth": 1})
        ax.axvline(mean[0], color="0.3", ls="--", lw=1, label=f"{names[0]}: {mean[0]:.3g}")
        lo, hi = float(np.min(mean - std)), float(np.max(mean + std))
        if metric == "accuracy":  # zoom in: the differences are a few points
            pad = max(0.01, 0.15 * (hi - lo))
            ax.set_xlim(max(0.0, lo - pad), min(1.0, hi + pad))
        ax.set(title=panel_title, xlabel=label)
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize="x-small", loc="lower right")
    axes.flat[0].set_yticks(y, names)
    axes.flat[0].invert_yaxis()
    axes.flat[0].set_ylabel("configuration")
    fig.suptitle(f"{title}\nbars: mean, error bars: ± one standard deviation"
                 + (f" over {n_seeds} seeds" if n_seeds else ""))
    return fig


# --- early stopping (chapter "weight penalties") ---------------------------------------


def plot_early_stopping(history: Mapping[str, Sequence[float]], stop_epoch: int | None, best_epoch: int, *,
                        title: str = "Early stopping on the validation loss"):
    """Training and validation loss per epoch (log scale) of one run, with the epoch whose
    weights ``EarlyStopping(restore_best_weights=True)`` restores and the epoch at which it
    stops marked.  ``stop_epoch``/``best_epoch`` are numbered from 0, as Keras and
    :func:`nnh.regularization.early_stopping` number them; the x-axis counts from 1."""
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], color="C0", label="training loss")
    ax.plot(epochs, history["val_loss"], color="C0", ls="--", label="validation loss")
    ax.axvline(best_epoch + 1, color="C2", ls=":", label=f"restored: weights after epoch {best_epoch + 1}")
    ax.plot(best_epoch + 1, history["val_loss"][best_epoch], "o", color="C2")
    if stop_epoch is not None:
        ax.axvline(stop_epoch + 1, color="C3", ls="-.", label=f"stops after epoch {stop_epoch + 1}")
        ax.axvspan(stop_epoch + 1, epochs[-1], color="0.85", alpha=0.5, label="epochs not trained")
    ax.set(title=title, xlabel="epoch", ylabel="cross-entropy (log scale)", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# --- learning-rate range test and ReduceLROnPlateau (chapter "schedules") ----------------


def plot_lr_range_test(rates: Sequence[float], losses: Sequence[float], smoothed: Sequence[float], *,
                       marks: Mapping[str, float] | None = None,
                       title: str = "Learning-rate range test"):
    """Loss of each batch (dots) and its smoothed curve against the rate, on a log axis;
    ``marks`` maps a label to a rate drawn as a vertical line."""
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    ax.plot(rates, losses, ".", color="C0", alpha=0.4, label="loss of each batch")
    ax.plot(rates, smoothed, color="C0", label="smoothed")
    for i, (label, rate) in enumerate((marks or {}).items()):
        ax.axvline(rate, color=f"C{i + 1}", ls="--", label=label)
    ax.set(xscale="log", title=title, xlabel="learning rate (log scale)", ylabel="training cross-entropy")
    ax.set_ylim(0, 1.5 * max(smoothed[0], min(smoothed) * 4))  # the last, diverging batches go off the top
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_plateau(history: Mapping[str, Sequence[float]], title: str = "ReduceLROnPlateau"):
    """Validation loss (left) and learning rate (right, log scale) per epoch of one run;
    ``history`` needs ``val_loss`` and ``learning_rate`` (the rate each epoch trained with)."""
    epochs = np.arange(1, len(history["val_loss"]) + 1)
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    ax_loss.plot(epochs, history["loss"], label="training")
    ax_loss.plot(epochs, history["val_loss"], ls="--", label="validation")
    ax_loss.set(title=f"{title}: loss per epoch", xlabel="epoch", ylabel="cross-entropy")
    ax_loss.legend()
    ax_lr.step(epochs, history["learning_rate"], where="mid", color="C2")
    ax_lr.set(title=f"{title}: rate of each epoch", xlabel="epoch", ylabel="learning rate (log scale)",
              yscale="log")
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3)
    return fig


# --- calibration (chapter "calibration") ----------------------------------------------


def plot_calibrated_scores(results: Mapping[int, Mapping[str, np.ndarray]],
                           title: str = "Scores of perfectly calibrated predictions"):
    """How the ECE, the NLL and the Brier score of calibrated predictions depend on the
    number ``N`` of test examples, from :func:`nnh.experiments.calibrated_scores`
    (``{N: {"ECE" | "NLL" | "Brier": values of the repeats}}``).  One panel per score:
    every repeat as a dot, the mean ± one standard deviation as a line with error bars,
    ``N`` on a log axis."""
    sizes = sorted(results)
    names = [k for k in ("ECE", "NLL", "Brier") if k in results[sizes[0]]]
    fig, axes = plt.subplots(1, len(names), figsize=(3.8 * len(names), 3.5), layout="constrained",
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        for n in sizes:
            values = results[n][name]
            ax.plot(np.full(len(values), n), values, ".", color="0.6", ms=3, alpha=0.5)
        means = [results[n][name].mean() for n in sizes]
        sds = [results[n][name].std() for n in sizes]
        ax.errorbar(sizes, means, yerr=sds, fmt="o-", color="C0", capsize=3, label="mean ± s.d.")
        ax.set_xscale("log")
        ax.set(title=name, xlabel="test examples N (log scale)", ylabel=f"{name} of calibrated predictions",
               ylim=(0, None))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(title)
    return fig
