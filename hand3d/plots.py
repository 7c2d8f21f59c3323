"""Figures people look at: PCK curves against the paper's and the baseline's, and training loss curves."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or in CI

import matplotlib.pyplot as plt  # noqa: E402

from hand3d.atomic import atomic_write  # noqa: E402
from hand3d.paper_reference import PaperCurve  # noqa: E402

__all__ = ["PckPanel", "plot_history", "plot_pck"]


@dataclass
class PckPanel:
    """One PCK plot: our model's curve, the mean-hand baseline's and, where there is one, the paper's."""

    title: str
    unit: str
    model: dict
    baseline: dict
    paper: PaperCurve | None = None

    def draw(self, axes) -> None:
        key = "thresholds_mm" if "thresholds_mm" in self.model else "thresholds"
        axes.plot(self.model[key], self.model["pck"], color="C0", lw=2, label=f"ours (AUC {self.model['auc']:.3f})")
        axes.plot(
            self.baseline[key],
            self.baseline["pck"],
            color="0.5",
            ls="--",
            label=f"mean-hand baseline (AUC {self.baseline['auc']:.3f})",
        )
        if self.paper is not None:
            upto = self.paper.thresholds <= max(self.model[key])
            axes.plot(self.paper.thresholds[upto], self.paper.pck[upto], color="C3", lw=1.5, label=self.paper.label)
        axes.set(title=self.title, xlabel=f"threshold ({self.unit})", ylabel="PCK", ylim=(0, 1.02))
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize=8)


def _save(figure, path: str) -> None:
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)


def plot_pck(panels: list[PckPanel], out_png: str, suptitle: str) -> None:
    """Side-by-side PCK panels in one PNG."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for panel, ax in zip(panels, axes[0], strict=True):
        panel.draw(ax)
    figure.suptitle(suptitle, fontsize=10)
    _save(figure, out_png)


NOT_LOSSES = ("step", "lr", "images_per_s", "data_wait_ms")  # history.csv's columns that are not loss terms


def _read_history(path: str) -> tuple[list[str], dict[str, list[float]]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows in the training history")
    columns = [c for c in rows[0] if c not in NOT_LOSSES]
    return columns, {c: [float(r[c]) for r in rows] for c in ("step", *columns)}


def plot_history(history_csv: str, out_png: str, title: str) -> None:
    """Every loss term of a training history (``history.csv``) against the step, one panel per term, log scale."""
    columns, values = _read_history(history_csv)
    cols = min(3, len(columns))
    rows = math.ceil(len(columns) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=False):
        series = values[column]
        ax.plot(values["step"], series, color="C0")
        if all(v > 0 for v in series):
            ax.set_yscale("log")
        ax.set(title=column, xlabel="step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    figure.suptitle(title, fontsize=10)
    _save(figure, out_png)
