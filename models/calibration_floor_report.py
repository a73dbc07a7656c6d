"""The ECE goal of issue 13 against what a perfectly calibrated forecaster scores on the same
blocks, and against a causal intercept that follows the market: ``python -m
models.calibration_floor_report --run=runs/equities-1d --data=... --json=... --markdown=...``.

The blocks are the model card's goal table (``models.evaluation.evaluate_run``): each fold's model
on its own test block, and the last fold's model on each external file, beside the constant
probability fitted on that fold's training windows. No network is trained; the figures come from
the run's saved folds (see ``models.calibration_floor`` for the statistics).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from daemon.quality import CALIBRATION_BINS, expected_calibration_error
from models.baselines import ConstantBaseline
from models.calibration import (
    CalibrationPart,
    OutOfFold,
    Standardisation,
    fit_logistic,
    logit,
    mean_log_loss,
    sigmoid,
    trailing_rates,
)
from models.calibration_floor import (
    BoolArray,
    FloatArray,
    Floor,
    IntArray,
    calibrated_ece,
    calibration_in_the_large,
    dense_index,
    evidence_kept,
    expected_met,
    market_correlation,
    oracle_bootstrap_ece,
    trailing_outcome_rate,
    verdict,
)
from models.dataset import WindowSet, load_audited_windows, walk_forward
from models.evaluation import ECE_LIMIT, LOG_LOSS_MARGIN
from models.training import RunInfo, load_fold, predict, read_run, run_data

HALF_LIVES = (21, 63, 252, 1008)
"""Half-lives of the trailing outcome rate, in resolved candle times."""
BURN_IN = 252
"""Candle times at the start of a file left out of the intercept's fit (its value still leans on the prior)."""
SLOPE_PRIOR_SD = 1.0
"""Prior standard deviation of the intercept's slope (1 = follow the trailing rate fully)."""
PROBABILITY_CLIP = 1e-6


@dataclass(frozen=True)
class Block:
    """One row group of the goal table: a model's probabilities on scored windows."""

    name: str
    rows: WindowSet
    model: FloatArray
    """``[N, H]``"""
    constant: FloatArray
    """``[H]`` the constant probability (the fold's training up rate)."""
    history: WindowSet
    """Windows whose resolved outcomes the trailing rate may use (the training file, or the external file)."""
    fit: WindowSet
    """Windows the intercept's slope is fitted on: labels resolved before the block starts."""


def run_blocks(run_dir: Path, externals: Sequence[Path]) -> tuple[RunInfo, list[Block]]:
    run = read_run(run_dir)
    _, data = run_data(run)
    folds = walk_forward(data, run.split_sizes())
    blocks = []
    for fold in folds:
        test = fold.part(data, "test")
        start = int(test.end_ts.min())
        before = data.select(np.flatnonzero(data.end_ts < start)).labels_before(start)
        constant = ConstantBaseline.fit(fold.part(data, "train")).rate
        model = predict(load_fold(run_dir, run, fold.index), test.windows).probabilities
        blocks.append(Block(f"fold {fold.index} test block", test, model, constant, data, before))
    last = folds[-1]
    ensemble = load_fold(run_dir, run, last.index)
    cutoff = int(last.part(data, "test").end_ts.min())
    trained = data.select(np.flatnonzero(data.end_ts < cutoff)).labels_before(cutoff)
    constant = ConstantBaseline.fit(last.part(data, "train")).rate
    for path in externals:
        rows = load_audited_windows(path, run.spec())[0]
        model = predict(ensemble, rows.windows).probabilities
        blocks.append(Block(f"external set {path.name}", rows, model, constant, rows, trained))
    return run, blocks


def artifact_blocks(ref: str, files: Sequence[Path], fraction: float) -> tuple[list[int], str, list[Block]]:
    """An exported model (``NAME/VERSION`` in the bundled registry) on each file as ``candlecast
    evaluate --model`` scores it: the constant fitted on the first ``fraction`` of the file's
    window-end times, the rest scored; the trailing rate runs over the whole file, its slope is
    fitted on that first part."""
    from daemon.settings import bundled_registry
    from models.artifact_evaluation import prepare, score_windows, split_by_time
    from models.registry import Registry

    registry = Registry(bundled_registry())
    model = registry.load(registry.entry(ref))
    blocks = []
    for path in files:
        windows = prepare(path, model.manifest, registry).windows
        baseline, rows = split_by_time(windows, fraction)
        probabilities = score_windows(model, rows.windows).probabilities
        constant = ConstantBaseline.fit(baseline).rate
        blocks.append(Block(f"file {path.name}", rows, probabilities, constant, windows, baseline))
    manifest = model.manifest
    return list(manifest.horizons), f"{manifest.name} {manifest.version}", blocks


def log_loss(p: FloatArray, up: BoolArray) -> float:
    q = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return float(-np.mean(np.where(up, np.log(q), np.log(1 - q))))


def labelled(data: WindowSet, j: int) -> WindowSet:
    return data.select(np.flatnonzero(data.valid[:, j]))


def outcome_rate(history: WindowSet, j: int, at: IntArray, half_life: float, prior: float) -> FloatArray:
    h = labelled(history, j)
    return trailing_outcome_rate(h.up[:, j], h.end_ts, h.label_ts[:, j], at, half_life=half_life, prior=prior)


def floor_of(p: FloatArray, rows: WindowSet, horizon: int) -> Floor:
    """The perfect forecaster's floor for ``p`` on ``rows`` (labelled windows), 2000 draws, seed 0."""
    times, symbols = dense_index(rows.end_ts), dense_index(rows.symbols)
    correlation = market_correlation(rows.log_return[:, 0], times, symbols)
    draws = calibrated_ece(p, times, symbols, horizon=horizon, correlation=correlation, draws=2000, seed=0)
    return Floor.of(draws, ECE_LIMIT)


def fitted_slope(block: Block, j: int, horizon: int, half_life: float) -> tuple[float, bool]:
    """The intercept's slope on the trailing rate's logit, fitted on the outcomes resolved before
    the block, and whether ``models.calibration``'s evidence rule keeps it."""
    rows = labelled(block.fit, j)
    times = np.unique(rows.end_ts)
    rows = rows.select(np.flatnonzero(rows.end_ts >= times[min(BURN_IN, len(times) - 1)]))
    anchor = float(logit(np.asarray(block.constant[j])))
    rate = outcome_rate(block.fit, j, rows.end_ts, half_life, float(block.constant[j]))
    x = (logit(np.clip(rate, 0.01, 0.99)) - anchor)[:, None]
    up = rows.up[:, j]
    independent = len(np.unique(rows.end_ts)) / horizon
    slope = fit_logistic(x, up, offset=anchor, prior_sd=SLOPE_PRIOR_SD, signed=1, overlap=len(up) / independent)
    gain = mean_log_loss(np.full(len(up), anchor), up) - mean_log_loss(x @ slope + anchor, up)
    return float(slope[0]), evidence_kept(gain, 1, independent)


@dataclass(frozen=True)
class Intercept:
    """The trailing outcome rate at one half-life on one block and horizon: stated as it is, and
    shrunk toward the constant by a slope fitted on the outcomes resolved before the block."""

    half_life: int
    ece: float
    log_loss_excess: float
    """Log loss minus the constant probability's."""
    slope: float
    kept: bool
    """Whether the evidence rule keeps the slope (else the fit is the constant)."""
    fitted_ece: float
    fitted_log_loss_excess: float


@dataclass(frozen=True)
class FloorRow:
    """One block and horizon of the goal table, with its floor and the causal intercepts."""

    set: str
    horizon: int
    labels: int
    times: int
    symbols: int
    correlation: float
    """Mean pairwise correlation of the symbols' one-candle returns in the block."""
    up_rate: float
    mean_probability: float
    calibration_in_the_large: float
    ece: float
    ece_constant: float
    log_loss_excess: float
    perfect: Floor
    """ECE of a perfectly calibrated forecaster stating the model's probabilities (copula draws)."""
    perfect_p_value: float
    """Share of those draws at or above the model's ECE."""
    oracle_bootstrap: Floor
    """ECE of the block's own up rate on block-bootstrap resamples of its days."""
    verdict: str
    intercepts: list[Intercept]
    window_rate_ece: float | None
    """The window's own trailing up rate stated as the probability (None where the horizon is not
    shorter than the window)."""
    window_rate_log_loss_excess: float | None


def intercept(block: Block, j: int, horizon: int, half_life: int) -> Intercept:
    rows = labelled(block.rows, j)
    up, prior = rows.up[:, j], float(block.constant[j])
    constant = np.full(len(up), prior)
    rate = np.clip(outcome_rate(block.history, j, rows.end_ts, half_life, prior), 0.01, 0.99)
    slope, kept = fitted_slope(block, j, horizon, half_life)
    anchor = logit(np.asarray(prior))
    shrunk = sigmoid(anchor + slope * (logit(rate) - anchor)) if kept else constant
    return Intercept(
        half_life,
        expected_calibration_error(rate, up),
        log_loss(rate, up) - log_loss(constant, up),
        slope,
        kept,
        expected_calibration_error(shrunk, up),
        log_loss(shrunk, up) - log_loss(constant, up),
    )


def floor_row(block: Block, j: int, horizon: int, *, draws: int, seed: int) -> FloorRow:
    rows = labelled(block.rows, j)
    p, up = block.model[block.rows.valid[:, j], j], rows.up[:, j]
    times, symbols = dense_index(rows.end_ts), dense_index(rows.symbols)
    one = labelled(block.rows, 0)
    correlation = market_correlation(one.log_return[:, 0], dense_index(one.end_ts), dense_index(one.symbols))
    model_ece = expected_calibration_error(p, up)
    perfect = calibrated_ece(p, times, symbols, horizon=horizon, correlation=correlation, draws=draws, seed=seed)
    floor = Floor.of(perfect, ECE_LIMIT)
    resampled = oracle_bootstrap_ece(up, rows.end_ts, block=max(20, 2 * horizon), samples=draws, seed=seed)
    constant = np.full(len(up), block.constant[j])
    window_rate = np.clip(trailing_rates(rows.windows, block.rows.horizons)[:, j], 0.01, 0.99)
    defined = not np.isnan(window_rate).any()
    return FloorRow(
        set=block.name,
        horizon=horizon,
        labels=len(up),
        times=len(np.unique(rows.end_ts)),
        symbols=len(np.unique(rows.symbols)),
        correlation=correlation,
        up_rate=float(up.mean()),
        mean_probability=float(p.mean()),
        calibration_in_the_large=calibration_in_the_large(p, up),
        ece=model_ece,
        ece_constant=expected_calibration_error(constant, up),
        log_loss_excess=log_loss(p, up) - log_loss(constant, up),
        perfect=floor,
        perfect_p_value=float(np.mean(perfect >= model_ece)),
        oracle_bootstrap=Floor.of(resampled, ECE_LIMIT),
        verdict=verdict(model_ece, floor, ECE_LIMIT),
        intercepts=[intercept(block, j, horizon, half_life) for half_life in HALF_LIVES],
        window_rate_ece=expected_calibration_error(window_rate, up) if defined else None,
        window_rate_log_loss_excess=log_loss(window_rate, up) - log_loss(constant, up) if defined else None,
    )


def combination_evidence(run_dir: Path, fold_index: int, horizon_index: int) -> dict[str, object]:
    """Refit one fold's combination at one horizon as ``models.training.combine_fold`` does and
    report each coefficient's share of the evidence: the pooled gain of the joint fit and of each
    term alone against the rule's bar, and the fitted fold's bins on its own test block."""
    run = read_run(run_dir)
    _, data = run_data(run)
    folds = walk_forward(data, run.split_sizes())
    earlier: list[OutOfFold] = []
    for fold in folds[:fold_index]:
        ensemble = load_fold(run_dir, run, fold.index)
        train = fold.part(data, "train")
        own = Standardisation.fit(predict(ensemble, train.windows).member_logits, train.windows, data.horizons)
        test = fold.part(data, "test")
        earlier.append(OutOfFold(predict(ensemble, test.windows).member_logits, test, own))
    fold = folds[fold_index]
    ensemble = load_fold(run_dir, run, fold_index)
    train, calibration, test = (fold.part(data, s) for s in ("train", "calibration", "test"))
    own = Standardisation.fit(predict(ensemble, train.windows).member_logits, train.windows, data.horizons)
    parts: list[CalibrationPart] = [oof.part(fold.cutoffs[2], own) for oof in earlier]
    parts.append(
        OutOfFold(predict(ensemble, calibration.windows).member_logits, calibration, own).part(fold.cutoffs[2], own)
    )
    j, h = horizon_index, data.horizons[horizon_index]
    x = np.concatenate([p.standardised[p.valid[:, j], :, j] for p in parts])
    d = np.concatenate([p.drift[p.valid[:, j], j] for p in parts])
    up = np.concatenate([p.up[p.valid[:, j], j] for p in parts])
    independent = sum(p.times(j) for p in parts) / h
    overlap = len(up) / independent
    anchor = float(logit(np.asarray(run.folds[fold_index].train_rate[j])))
    members = x.shape[1]
    fits: dict[str, object] = {}
    for label, inputs, signed, priors in (
        ("members and trailing rate", np.concatenate([x, d[:, None]], axis=1), 1, [0.1] * members + [0.25]),
        ("members only", x, 0, [0.1] * members),
        ("trailing rate only", d[:, None], 1, [0.25]),
    ):
        v = fit_logistic(inputs, up, offset=anchor, prior_sd=np.asarray(priors), signed=signed, overlap=overlap)
        gain = mean_log_loss(np.full(len(up), anchor), up) - mean_log_loss(inputs @ v + anchor, up)
        count = int(np.count_nonzero(v))
        fits[label] = {
            "coefficients": v.tolist(),
            "gain": gain,
            "bar": count * max(np.log(independent), 2.0) / (2 * independent),
            "kept": evidence_kept(gain, count, independent),
        }
    info = run.folds[fold_index]
    predicted = predict(ensemble, test.windows)
    mask = test.valid[:, j]
    p, y = predicted.probabilities[mask, j], test.up[mask, j]
    constant = np.full(len(y), ConstantBaseline.fit(train).rate[j])
    rates = trailing_rates(test.windows[mask], data.horizons)[:, j]
    weights = np.asarray(info.ensemble_weights)[:, j]
    # The members' term relative to the anchor: scale * sum_m w_m z_m + bias - anchor.
    member_term = (
        info.calibration_scale[j] * (predicted.member_logits[mask, :, j] @ weights) + info.calibration_bias[j] - anchor
    )
    drift_term = info.drift_coef[j] * (rates - info.drift_centre[j])
    which = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    bins = []
    for b in np.unique(which):
        chosen = which == b
        bins.append(
            {
                "bin": f"{b / CALIBRATION_BINS:.1f}-{(b + 1) / CALIBRATION_BINS:.1f}",
                "count": int(chosen.sum()),
                "stated": float(p[chosen].mean()),
                "realised": float(y[chosen].mean()),
                "ece_share": float(abs(y[chosen].sum() - p[chosen].sum()) / len(y)),
            }
        )
    return {
        "fold": fold_index,
        "horizon": h,
        "pooled_labels": len(up),
        "independent": independent,
        "fits": fits,
        "stored": {
            "scale": info.calibration_scale[j],
            "drift_coef": info.drift_coef[j],
            "weights": [w[j] for w in info.ensemble_weights],
        },
        "test": {
            "ece": expected_calibration_error(p, y),
            "ece_constant": expected_calibration_error(constant, y),
            "log_loss": log_loss(p, y),
            "log_loss_constant": log_loss(constant, y),
            "members_logit_mean": float(np.mean(member_term)),
            "members_logit_sd": float(np.std(member_term)),
            "trailing_rate_logit_mean": float(np.mean(drift_term)),
            "trailing_rate_logit_sd": float(np.std(drift_term)),
            "stated_mean": float(p.mean()),
            "up_rate": float(y.mean()),
            "bins": bins,
            "perfect_model": asdict(floor_of(p, labelled(test, j), h)),
            "perfect_constant": asdict(floor_of(constant, labelled(test, j), h)),
        },
    }


FLOOR_HEADER = (
    "| set | h | labels (times) | corr. | up rate / stated | ECE model / constant | perfect forecaster's ECE: "
    "median, 95th pct, P(>0.03) | bootstrap oracle: median, 95th pct | P(perfect >= model) | verdict |"
)
INTERCEPT_HEADER = (
    "| set | h | ECE constant | trailing outcome rate, half-life {lives}: ECE | log-loss excess | slope fitted "
    "before the block (kept?) | window's own trailing rate: ECE, excess |"
)


def markdown(name: str, rows: Sequence[FloorRow]) -> str:
    """The floor table and the causal intercept table of one model."""
    lines = [f"### {name}", "", FLOOR_HEADER, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, o = r.perfect, r.oracle_bootstrap
        lines.append(
            f"| {r.set} | {r.horizon} | {r.labels:,} ({r.times:,}) | {r.correlation:.2f} | "
            f"{r.up_rate:.3f} / {r.mean_probability:.3f} | {r.ece:.4f} / {r.ece_constant:.4f} | "
            f"{f.median:.4f}, {f.p95:.4f}, {f.share_above:.0%} | {o.median:.4f}, {o.p95:.4f} | "
            f"{r.perfect_p_value:.2f} | {r.verdict} |"
        )
    met = sum(r.verdict == "met" for r in rows)
    expected = expected_met([r.perfect for r in rows])
    lines += [
        "",
        f"Met: {met} of {len(rows)}; a perfectly calibrated forecaster would meet it on {expected:.1f} of "
        f"{len(rows)} in expectation.",
        "",
        INTERCEPT_HEADER.format(lives=" / ".join(str(h) for h in HALF_LIVES)),
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        window = (
            f"{r.window_rate_ece:.4f}, {r.window_rate_log_loss_excess:+.4f}"
            if r.window_rate_ece is not None and r.window_rate_log_loss_excess is not None
            else "n/a"
        )
        cells = r.intercepts
        lines.append(
            f"| {r.set} | {r.horizon} | {r.ece_constant:.4f} | "
            + " / ".join(f"{c.ece:.4f}" for c in cells)
            + " | "
            + " / ".join(f"{c.log_loss_excess:+.4f}" for c in cells)
            + " | "
            + " / ".join(f"{c.slope:+.2f}" + ("" if c.kept else " (no)") for c in cells)
            + f" | {window} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a training run: its walk-forward blocks and the --data files")
    source.add_argument("--model", help="NAME/VERSION in the bundled registry, on each --data file")
    parser.add_argument("--data", type=Path, action="append", default=[], help="candle file (repeatable)")
    parser.add_argument("--baseline-fraction", type=float, default=0.3, help="with --model, as `evaluate --model`")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--explain", default=None, help="with --run, FOLD,HORIZON_INDEX: the combination's evidence")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    if args.run is not None:
        run, blocks = run_blocks(args.run, args.data)
        horizons, name = run.horizons, f"{run.name} {run.version}"
    else:
        horizons, name, blocks = artifact_blocks(args.model, args.data, args.baseline_fraction)
    rows = [
        floor_row(block, j, h, draws=args.draws, seed=args.seed) for block in blocks for j, h in enumerate(horizons)
    ]
    document: dict[str, object] = {
        "source": str(args.run or args.model),
        "model": name,
        "limits": {"ece": ECE_LIMIT, "log_loss_margin": LOG_LOSS_MARGIN},
        "draws": args.draws,
        "seed": args.seed,
        "rows": [asdict(r) for r in rows],
    }
    if args.explain and args.run is not None:
        fold, horizon = (int(x) for x in args.explain.split(","))
        document["explain"] = combination_evidence(args.run, fold, horizon)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(name, rows))


if __name__ == "__main__":
    main()
