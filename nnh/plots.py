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
