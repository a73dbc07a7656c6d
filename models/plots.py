"""The evaluation report's PNG plots (matplotlib, headless): calibration curves, equity curves,
actions against outcomes and confidence reliability, one of each per evaluation set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.contenders import BEST_MEMBER, CONSTANT, ENSEMBLE, LOGISTIC, MOMENTUM, REFERENCE_STRATEGY, REWEIGHTED, Json

PLOTTED_MODELS = (ENSEMBLE, REWEIGHTED, BEST_MEMBER, LOGISTIC, MOMENTUM, CONSTANT)
IMAGE_DIR = "img"
"""Where the images go, under the report's directory (the Markdown links them there)."""


def image_name(stem: str, key: str, kind: str) -> str:
    return f"{stem}-{key}-{kind}.png"


def plot_all(figures: Json, directory: Path, stem: str) -> list[Path]:
    import matplotlib as mpl

    mpl.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for key, figures_of_set in figures["sets"].items():
        for kind, plot in (
            ("calibration", plot_calibration),
            ("equity", plot_equity),
            ("confusion", plot_confusion),
            ("confidence", plot_confidence),
        ):
            path = directory / image_name(stem, key, kind)
            plot(figures_of_set, path)
            written.append(path)
    return written


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    # No timestamps in the PNG metadata: the same figures give the same file.
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def plot_calibration(figures_of_set: Json, path: Path) -> None:
    import matplotlib.pyplot as plt

    horizons = list(figures_of_set["up_rate"])
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.2 * len(horizons), 4), squeeze=False)
    for ax, h in zip(axes[0], horizons, strict=True):
        seen: list[float] = []
        for name in PLOTTED_MODELS:
            if name == MOMENTUM:
                continue
            curve = figures_of_set["models"][name]["calibration_curve"][h]
            x, y = [b["predicted"] for b in curve], [b["realised"] for b in curve]
            seen += x + y
            ax.plot(x, y, marker="o", ms=3 if len(x) > 1 else 6, label=name)
        low, high = max(0.0, min(seen) - 0.03), min(1.0, max(seen) + 0.03)
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_title(f"{h}-candle horizon")
        ax.set_xlabel("predicted P(up), mean per decile")
        ax.set_ylabel("realised up rate")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def plot_equity(figures_of_set: Json, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, row in figures_of_set["trading"].items():
        dates = np.array([d[:10] for d in row["equity"]["dates"]], dtype="datetime64[D]")
        width = 2.0 if name == REFERENCE_STRATEGY else 1.0
        ax.plot(dates, row["equity"]["values"], lw=width, label=name)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("equity (start = 1), after costs")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_confusion(figures_of_set: Json, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    names = [ENSEMBLE, LOGISTIC]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        confusion = figures_of_set["models"][name]["confusion"]
        actions = ["BUY", "HOLD", "SELL"]
        counts = np.array([[confusion[a]["up"], confusion[a]["down"]] for a in actions], dtype=float)
        ax.imshow(counts, cmap="Blues")
        for i in range(3):
            for j in range(2):
                total = counts[i].sum()
                share = f"{100 * counts[i, j] / total:.0f}%" if total else "-"
                colour = "white" if counts[i, j] > counts.max() / 2 else "black"
                ax.text(j, i, f"{int(counts[i, j])}\n{share}", ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks([0, 1], ["next close up", "not up"])
        ax.set_yticks(range(3), actions)
        ax.set_title(f"{name}: action vs outcome", fontsize=9)
    _save(fig, path)


def plot_confidence(figures_of_set: Json, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name in (ENSEMBLE, LOGISTIC):
        rows = figures_of_set["models"][name]["confidence_reliability"]
        x = [r["predicted"] for r in rows]
        y = [r["realised"] for r in rows]
        errors = [[r["realised"] - r["low"] for r in rows], [r["high"] - r["realised"] for r in rows]]
        ax.errorbar(x, y, yerr=errors, marker="o", ms=3, capsize=2, label=name)
    ax.plot([0.5, 1], [0.5, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("signal confidence (mean per bin)")
    ax.set_ylabel("realised hit rate")
    ax.set_title("Is a signal with confidence c right that often?", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)
