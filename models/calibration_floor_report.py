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

import msgspec
import numpy as np

from daemon.quality import CALIBRATION_BINS, expected_calibration_error
from models.baselines import ConstantBaseline
from models.calibration import (
    DRIFT_PRIOR_SD,
    PRIOR_SD,
    OutOfFold,
    Standardisation,
    evidence_bar,
    fit_logistic,
    fit_terms,
    fit_with_evidence,
    logit,
    mean_log_loss,
    pooled_horizon,
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
    expected_met,
    market_correlation,
    oracle_bootstrap_ece,
    trailing_outcome_rate,
    verdict,
)
from models.dataset import WindowSet, load_audited_windows, walk_forward
from models.evaluation import ECE_LIMIT, LOG_LOSS_MARGIN
from models.training import Predictions, RunInfo, ensemble_fold_parts, load_fold, predict, read_run, run_data

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
        ensemble = load_fold(run_dir, run, fold.index)
        model = predict(ensemble, test.windows).probabilities
        blocks.append(Block(f"fold {fold.index} test block", test, model, constant, data, before))
    # External sets are scored as the last fold stands: its ensemble, constant and labels resolved before its test.
    for path in externals:
        rows = load_audited_windows(path, run.spec())[0]
        model = predict(ensemble, rows.windows).probabilities
        blocks.append(Block(f"external set {path.name}", rows, model, constant, rows, before))
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


def floor_of(p: FloatArray, rows: WindowSet, horizon: int, *, draws: int, seed: int) -> Floor:
    """The perfect forecaster's floor for ``p`` on ``rows`` (labelled windows)."""
    times, symbols = dense_index(rows.end_ts), dense_index(rows.symbols)
    correlation = market_correlation(rows.log_return[:, 0], times, symbols)
    simulated = calibrated_ece(p, times, symbols, horizon=horizon, correlation=correlation, draws=draws, seed=seed)
    return Floor.of(simulated, ECE_LIMIT)


@dataclass(frozen=True)
class Slope:
    """The intercept's slope on the trailing rate's logit, fitted on the outcomes resolved before
    a block (after a burn-in), with what it and the unshrunk rate gained there."""

    slope: float
    gain: float
    """Mean log loss of the constant minus that of the fitted intercept."""
    raw_gain: float
    """The same for the trailing rate stated as it is (slope 1)."""
    bar: float
    """The gain ``models.calibration``'s evidence rule asks of one coefficient there."""


def fitted_slope(block: Block, j: int, horizon: int, half_life: float) -> Slope:
    rows = labelled(block.fit, j)
    times = np.unique(rows.end_ts)
    rows = rows.select(np.flatnonzero(rows.end_ts >= times[min(BURN_IN, len(times) - 1)]))
    anchor = float(logit(np.asarray(block.constant[j])))
    rate = np.clip(outcome_rate(block.fit, j, rows.end_ts, half_life, float(block.constant[j])), 0.01, 0.99)
    x = (logit(rate) - anchor)[:, None]
    up = rows.up[:, j]
    independent = len(np.unique(rows.end_ts)) / horizon
    slope = fit_logistic(x, up, offset=anchor, prior_sd=SLOPE_PRIOR_SD, signed=1, overlap=len(up) / independent)
    base = mean_log_loss(np.full(len(up), anchor), up)
    return Slope(
        float(slope[0]),
        base - mean_log_loss(x @ slope + anchor, up),
        base - mean_log_loss(logit(rate), up),
        evidence_bar(independent),
    )


@dataclass(frozen=True)
class Intercept:
    """The trailing outcome rate at one half-life on one block and horizon: stated as it is, and
    shrunk toward the constant by the slope fitted before the block."""

    half_life: int
    ece: float
    log_loss_excess: float
    """Log loss minus the constant probability's."""
    fit: Slope
    kept: bool
    """Whether the evidence rule keeps the slope (a new calibration would then state the shrunk rate)."""
    shrunk_ece: float
    shrunk_log_loss_excess: float


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
    chosen: int
    """Index of the half-life whose fitted slope gained most before the block (the causal choice)."""
    window_rate_ece: float | None
    """The window's own trailing up rate stated as the probability (None where the horizon is not
    shorter than the window)."""
    window_rate_log_loss_excess: float | None


def intercept(block: Block, j: int, horizon: int, half_life: int) -> Intercept:
    rows = labelled(block.rows, j)
    up, prior = rows.up[:, j], float(block.constant[j])
    constant = np.full(len(up), prior)
    rate = np.clip(outcome_rate(block.history, j, rows.end_ts, half_life, prior), 0.01, 0.99)
    fit = fitted_slope(block, j, horizon, half_life)
    anchor = logit(np.asarray(prior))
    shrunk = sigmoid(anchor + fit.slope * (logit(rate) - anchor))
    return Intercept(
        half_life,
        expected_calibration_error(rate, up),
        log_loss(rate, up) - log_loss(constant, up),
        fit,
        fit.gain > fit.bar,
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
    intercepts = [intercept(block, j, horizon, half_life) for half_life in HALF_LIVES]
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
        intercepts=intercepts,
        chosen=int(np.argmax([c.fit.gain for c in intercepts])),
        window_rate_ece=expected_calibration_error(window_rate, up) if defined else None,
        window_rate_log_loss_excess=log_loss(window_rate, up) - log_loss(constant, up) if defined else None,
    )


TERMS = ("members and trailing rate", "members only", "trailing rate only")


def term_evidence(
    x: FloatArray, d: FloatArray, up: BoolArray, *, independent: float, anchor: float
) -> tuple[dict[str, dict[str, object]], FloatArray]:
    """Each of ``TERMS`` fitted on one horizon's pooled out-of-fold predictions (standardised member
    logits ``x``, trailing-rate drifts ``d``): the fit with every coefficient and its pooled gain,
    the bar each coefficient must clear beside the others, and the coefficients the evidence rule
    keeps with their gain (the joint fit's are ``fit_combination``'s, ``models.calibration.fit_terms``);
    and the members-only fit with every coefficient."""
    count = x.shape[1]
    overlap = len(up) / independent
    base = mean_log_loss(np.full(len(up), anchor), up)
    fits: dict[str, dict[str, object]] = {}
    coefficients: dict[str, FloatArray] = {}
    for label, inputs, signed, priors in zip(
        TERMS,
        (np.concatenate([x, d[:, None]], axis=1), x, d[:, None]),
        (1, 0, 1),
        ([PRIOR_SD] * count + [DRIFT_PRIOR_SD], [PRIOR_SD] * count, [DRIFT_PRIOR_SD]),
        strict=True,
    ):
        prior_sd = np.asarray(priors)
        v = fit_logistic(inputs, up, offset=anchor, prior_sd=prior_sd, signed=signed, overlap=overlap)
        kept = (
            fit_terms(x, d, up, offset=anchor, independent=independent)
            if label == TERMS[0]
            else fit_with_evidence(
                inputs, up, offset=anchor, prior_sd=prior_sd, signed=signed, overlap=overlap, independent=independent
            )
        )
        coefficients[label] = v
        fits[label] = {
            "coefficients": v.tolist(),
            "gain": base - mean_log_loss(inputs @ v + anchor, up),
            "bar": evidence_bar(independent),
            "kept": kept.tolist(),
            "kept_gain": base - mean_log_loss(inputs @ kept + anchor, up),
        }
    return fits, coefficients["members only"]


def combination_evidence(run_dir: Path, horizon_index: int, *, draws: int, seed: int) -> list[dict[str, object]]:
    """Refit every fold's combination at one horizon as ``models.training.combine_fold`` does,
    and report per fold each term's share of the evidence (``term_evidence``: the joint fit and each
    term alone, with every coefficient and with those the evidence rule keeps) and, on the fold's own
    test block, the stored combination's bins and floors (``draws`` draws from ``seed``) and the
    members-only fit beside it."""
    run = read_run(run_dir)
    _, data = run_data(run)
    j, h = horizon_index, data.horizons[horizon_index]
    earlier: list[OutOfFold] = []
    out = []
    for fold in walk_forward(data, run.split_sizes()):
        ensemble = load_fold(run_dir, run, fold.index)
        _, test, own, parts = ensemble_fold_parts(ensemble, data, fold, earlier)
        predicted = predict(ensemble, test.windows)
        earlier.append(OutOfFold(predicted.member_logits, test, own))
        x, d, up, independent = pooled_horizon(parts, j, h)
        anchor = float(logit(np.asarray(run.folds[fold.index].train_rate[j])))
        fits, members_only = term_evidence(x, d, up, independent=independent, anchor=anchor)
        figures = own_block_figures(
            run,
            fold.index,
            j,
            test=test,
            predicted=predicted,
            own=own,
            members_only=members_only,
            draws=draws,
            seed=seed,
        )
        out.append(
            {
                "fold": fold.index,
                "horizon": h,
                "pooled_labels": len(up),
                "independent": independent,
                "fits": fits,
                "test": figures,
            }
        )
    return out


def own_block_figures(
    run: RunInfo,
    fold: int,
    j: int,
    *,
    test: WindowSet,
    predicted: Predictions,
    own: Standardisation,
    members_only: FloatArray,
    draws: int,
    seed: int,
) -> dict[str, object]:
    """The stored combination on its test block: where its mean logit comes from, its bins, its
    floor; and the members-only fit (the trailing-rate term left out) beside it."""
    info = run.folds[fold]
    mask = test.valid[:, j]
    p, y = predicted.probabilities[mask, j], test.up[mask, j]
    rate = info.train_rate[j]
    constant = np.full(len(y), rate)
    anchor = float(logit(np.asarray(rate)))
    logits = predicted.member_logits[mask, :, j]
    weights = np.asarray(info.ensemble_weights)[:, j]
    # The members' term relative to the anchor: scale * sum_m w_m z_m + bias - anchor.
    member_term = info.calibration_scale[j] * (logits @ weights) + info.calibration_bias[j] - anchor
    drift_term = info.drift_coef[j] * (trailing_rates(test.windows[mask], run.horizons)[:, j] - info.drift_centre[j])
    without = sigmoid((logits - own.mean[:, j]) / own.spread[:, j] @ members_only + anchor)
    which = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    bins = [
        {
            "bin": f"{b / CALIBRATION_BINS:.1f}-{(b + 1) / CALIBRATION_BINS:.1f}",
            "count": int((which == b).sum()),
            "stated": float(p[which == b].mean()),
            "realised": float(y[which == b].mean()),
            "ece_share": float(abs(y[which == b].sum() - p[which == b].sum()) / len(y)),
        }
        for b in np.unique(which)
    ]
    rows = labelled(test, j)
    return {
        "stored": {"scale": info.calibration_scale[j], "drift_coef": info.drift_coef[j], "weights": weights.tolist()},
        "up_rate": float(y.mean()),
        "stated_mean": float(p.mean()),
        "ece": expected_calibration_error(p, y),
        "ece_constant": expected_calibration_error(constant, y),
        "ece_members_only": expected_calibration_error(without, y),
        "log_loss": log_loss(p, y),
        "log_loss_constant": log_loss(constant, y),
        "log_loss_members_only": log_loss(without, y),
        "members_logit_mean": float(np.mean(member_term)),
        "members_logit_sd": float(np.std(member_term)),
        "trailing_rate_logit_mean": float(np.mean(drift_term)),
        "trailing_rate_logit_sd": float(np.std(drift_term)),
        "bins": bins,
        "perfect_model": asdict(floor_of(p, rows, run.horizons[j], draws=draws, seed=seed)),
        "perfect_constant": asdict(floor_of(constant, rows, run.horizons[j], draws=draws, seed=seed)),
    }


FLOOR_HEADER = (
    "| set | h | labels (times) | corr. | up rate / stated | ECE model / constant | perfect forecaster's ECE: "
    "median, 95th pct, P(>0.03) | bootstrap oracle: median, 95th pct | P(perfect >= model) | verdict |"
)
INTERCEPT_HEADER = (
    "| set | h | ECE constant | trailing outcome rate as it is, half-life {lives}: ECE | its log-loss excess | "
    "chosen before the block: half-life, slope, gain / bar | its ECE, log-loss excess | window's own trailing "
    "rate: ECE, excess |"
)


NOISE_NOTE = ", beyond a perfect forecaster's noise"
NOISE_LEVEL = 0.05


def beyond_noise(row: FloorRow) -> bool:
    """A failure that fewer than 5% of the perfect forecaster's draws reach."""
    return row.verdict != "met" and row.perfect_p_value < NOISE_LEVEL


def markdown(name: str, rows: Sequence[FloorRow]) -> str:
    """The floor table and the causal intercept table of one model."""
    lines = [f"### {name}", "", FLOOR_HEADER, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, o = r.perfect, r.oracle_bootstrap
        lines.append(
            f"| {r.set} | {r.horizon} | {r.labels:,} ({r.times:,}) | {r.correlation:.2f} | "
            f"{r.up_rate:.3f} / {r.mean_probability:.3f} | {r.ece:.4f} / {r.ece_constant:.4f} | "
            f"{f.median:.4f}, {f.p95:.4f}, {f.share_above:.0%} | {o.median:.4f}, {o.p95:.4f} | "
            f"{r.perfect_p_value:.2f} | {r.verdict}{NOISE_NOTE if beyond_noise(r) else ''} |"
        )
    met = sum(r.verdict == "met" for r in rows)
    expected = expected_met([r.perfect for r in rows])
    within = sum(not beyond_noise(r) for r in rows)
    lines += [
        "",
        f"Met: {met} of {len(rows)}; a perfectly calibrated forecaster would meet it on {expected:.1f} of "
        f"{len(rows)} in expectation. Met or within a perfect forecaster's noise (at least 5% of its draws reach "
        f"the model's ECE): {within} of {len(rows)}.",
        "",
        INTERCEPT_HEADER.format(lives=" / ".join(str(h) for h in HALF_LIVES)),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        window = (
            f"{r.window_rate_ece:.4f}, {r.window_rate_log_loss_excess:+.4f}"
            if r.window_rate_ece is not None and r.window_rate_log_loss_excess is not None
            else "n/a"
        )
        chosen = r.intercepts[r.chosen]
        fit = chosen.fit
        lines.append(
            f"| {r.set} | {r.horizon} | {r.ece_constant:.4f} | "
            + " / ".join(f"{c.ece:.4f}" for c in r.intercepts)
            + " | "
            + " / ".join(f"{c.log_loss_excess:+.4f}" for c in r.intercepts)
            + f" | {chosen.half_life}, {fit.slope:+.2f}, {fit.gain:.5f} / {fit.bar:.5f}"
            + ("" if chosen.kept else " (refused)")
            + f" | {chosen.shrunk_ece:.4f}, {chosen.shrunk_log_loss_excess:+.4f} | {window} |"
        )
    lines += ["", intercept_summary(rows)]
    return "\n".join(lines) + "\n"


def meets(ece: float, excess: float) -> bool:
    return ece <= ECE_LIMIT and excess <= LOG_LOSS_MARGIN


def intercept_summary(rows: Sequence[FloorRow]) -> str:
    """How often each way of stating the intercept meets both goals."""
    n = len(rows)
    model = sum(meets(r.ece, r.log_loss_excess) for r in rows)
    raw = ", ".join(
        f"half-life {h}: {sum(meets(r.intercepts[i].ece, r.intercepts[i].log_loss_excess) for r in rows)}"
        for i, h in enumerate(HALF_LIVES)
    )
    chosen = [r.intercepts[r.chosen] for r in rows]
    shrunk = sum(meets(c.shrunk_ece, c.shrunk_log_loss_excess) for c in chosen)
    kept = sum(c.kept for c in chosen)
    return (
        f"Both goals met, of {n}: the model {model}; the trailing outcome rate as it is, {raw}; the slope and "
        f"half-life chosen before each block {shrunk}, the evidence rule keeping that slope on {kept}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a training run: its walk-forward blocks and the --data files")
    source.add_argument("--model", help="NAME/VERSION in the bundled registry, on each --data file")
    source.add_argument("--render", action="store_true", help="only write --markdown from an earlier --json")
    parser.add_argument("--data", type=Path, action="append", default=[], help="candle file (repeatable)")
    parser.add_argument("--baseline-fraction", type=float, default=0.3, help="with --model, as `evaluate --model`")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--explain",
        type=int,
        default=None,
        help="with --run, a horizon index: each fold's combination evidence",
    )
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    if args.render:
        earlier = json.loads(args.json.read_text())
        if args.markdown:
            args.markdown.write_text(markdown(earlier["model"], msgspec.convert(earlier["rows"], list[FloorRow])))
        return
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
    if args.explain is not None and args.run is not None:
        document["explain"] = combination_evidence(args.run, args.explain, draws=args.draws, seed=args.seed)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(name, rows))


if __name__ == "__main__":
    main()
