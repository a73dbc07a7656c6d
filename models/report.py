"""The evaluation report: a JSON of every figure, PNG plots (``models.plots``), and a Markdown page
written from them.

Every number in the Markdown comes from the JSON beside it, and every sentence that compares
models is derived from a bootstrap interval, so the page can never claim more than was measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from models.contenders import (
    BEST_MEMBER,
    BUY_AND_HOLD,
    CONSTANT,
    ENSEMBLE,
    LOGISTIC,
    MOMENTUM,
    REFERENCE_STRATEGY,
    REWEIGHTED,
    Json,
)
from models.dataset import iso
from models.plots import IMAGE_DIR, image_name, plot_all


def pct(value: float | None, digits: int = 1) -> str:
    # None: a NaN that went through the JSON file (a report rendered again from it).
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def ci(summary: Mapping[str, float], fmt: str = "pct") -> str:
    """``[low, high]`` as percentages (``pct``), percentage points (``pp``) or numbers (``num``)."""
    shows: dict[str, Callable[[float], str]] = {"pct": pct, "pp": signed, "num": lambda v: num(v, 2)}
    show = shows[fmt]
    return f"[{show(summary['low'])}, {show(summary['high'])}]"


def signed(value: float, fmt: str = "pp") -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:+.1f} pp" if fmt == "pp" else f"{value:+.2f}"


def verdict(summary: Mapping[str, float]) -> str:
    """How a paired difference reads at the report's confidence level."""
    if summary["low"] > 0:
        return "higher (interval excludes 0)"
    if summary["high"] < 0:
        return "lower (interval excludes 0)"
    return "no detectable difference"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(figures: Json, directory: Path, stem: str, *, card: bool = False) -> list[Path]:
    """Write ``stem.json``, ``stem.md`` and ``img/stem-*.png`` under ``directory``; ``card`` adds
    the sections of a model card (how to reproduce it, intended use, limitations)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / f"{stem}.json"]
    written[0].write_bytes(msgspec.json.format(msgspec.json.encode(_finite(figures))) + b"\n")
    images = plot_all(figures, directory / IMAGE_DIR, stem)
    written += images
    markdown = directory / f"{stem}.md"
    markdown.write_text(render(figures, stem, card=card))
    written.append(markdown)
    return written


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def render(figures: Json, stem: str, *, card: bool = False) -> str:
    """The Markdown page of a report."""
    model = figures["model"]
    title = f"Model card: {model['name']} {model['version']}" if card else figures["title"]
    parts = [f"# {title}", ""]
    if card:
        parts += [render_summary(figures), "", render_reproduce(figures), ""]
    if model.get("source") == "artifact":
        parts += [render_artifact(figures), "", render_data(figures), "", render_settings(figures)]
    else:
        parts += [render_model(figures), "", render_settings(figures)]
    if figures.get("goals"):
        parts += ["", render_goals(figures)]
    for key, figures_of_set in figures["sets"].items():
        parts += ["", render_set(key, figures_of_set, figures, stem)]
    parts += ["", render_definitions(figures)]
    if card:
        parts += ["", render_limitations(figures)]
    if figures.get("streaming"):
        parts += ["", render_streaming(figures)]
    return "\n".join(parts) + "\n"


def render_summary(figures: Json) -> str:
    """The card's opening: what the model is for and, in numbers, how it fared."""
    model = figures["model"]
    market = "a 24/7 market" if model["calendar"] == "continuous" else "a weekday market"
    lines = [
        f"`{model['name']}` predicts, for each window of {model['window']} `{model['interval']}` candles of "
        f"{', '.join(model['symbols'])} ({market}), the probability that the close "
        f"{', '.join(map(str, model['horizons']))} candles ahead is above the window's last close, and quantiles "
        f"{model['quantiles']} of that log return. It is bundled with the daemon; the threshold strategy turns "
        "the 1-candle probability into BUY, SELL or HOLD.",
        "",
        "Headline figures (primary horizon, 1 candle; 95% block-bootstrap intervals):",
        "",
    ]
    rows = []
    for f in figures["sets"].values():
        g = f["models"][ENSEMBLE]["horizons"]["1"]
        best = max(
            (BUY_AND_HOLD, CONSTANT, MOMENTUM, LOGISTIC, BEST_MEMBER),
            key=lambda name: f["models"][name]["horizons"]["1"]["accuracy"],
        )
        t = f["trading"][REFERENCE_STRATEGY]
        rows.append(
            [
                f["title"],
                f"{pct(g['accuracy'])} {ci(g['accuracy_ci'])}",
                f"{best} {pct(f['models'][best]['horizons']['1']['accuracy'])}",
                num(g["log_loss"]),
                num(f["models"][CONSTANT]["horizons"]["1"]["log_loss"]),
                num(g["brier"]),
                num(g["auc"], 3),
                f"{num(t['sharpe'], 2)} {ci(t['sharpe_ci'], 'num')}" if t["exposure"] > 0 else "no trade (always HOLD)",
                pct(f["models"][ENSEMBLE]["actions"]["HOLD"]["coverage"]),
            ]
        )
    lines.append(
        table(
            [
                "test set",
                "ensemble accuracy",
                "most accurate baseline here",
                "log loss",
                "log loss, constant p",
                "Brier",
                "ROC AUC",
                "Sharpe after costs (threshold strategy)",
                "HOLD share",
            ],
            rows,
        )
    )
    lines += ["", _plain_verdict(figures)]
    return "\n".join(lines)


def _plain_verdict(figures: Json) -> str:
    """One paragraph a reader can trust: is the ensemble measurably better than its baselines?"""
    sentences = []
    for f in figures["sets"].values():
        models = f["models"]
        better, worse = [], []
        for name in (BUY_AND_HOLD, CONSTANT, MOMENTUM, LOGISTIC, BEST_MEMBER):
            diff = models[name]["horizons"]["1"]["accuracy_minus_ensemble"]
            if diff["high"] < 0:
                better.append(name)
            elif diff["low"] > 0:
                worse.append(name)
        loss = models[CONSTANT]["horizons"]["1"]["log_loss_minus_ensemble"]
        probability = (
            "its probabilities beat the constant probability in log loss"
            if loss["low"] > 0
            else "its probabilities are worse than the constant probability in log loss"
            if loss["high"] < 0
            else "its log loss is not distinguishable from the constant probability's"
        )
        accuracy = (
            f"its 1-candle accuracy is measurably above {', '.join(better)}"
            if better
            else "its 1-candle accuracy is not measurably above any baseline"
        )
        if worse:
            accuracy += f" and measurably below {', '.join(worse)}"
        sentences.append(f"On the {f['short']}, {accuracy}; {probability}.")
    quantiles = []
    for f in figures["sets"].values():
        better = [h for h, q in f["quantiles"].items() if q["pinball_minus_baseline"]["high"] < 0]
        worse = [h for h, q in f["quantiles"].items() if q["pinball_minus_baseline"]["low"] > 0]
        verdicts = ([f"better at horizons {', '.join(better)}"] if better else []) + (
            [f"worse at horizons {', '.join(worse)}"] if worse else []
        )
        quantiles.append(f"{f['short']}: {'; '.join(verdicts) or 'no detectable difference'}")
    return (
        "**Verdict, as measured.** "
        + " ".join(sentences)
        + " The return quantiles, against the training returns' own quantiles in pinball loss (intervals "
        "excluding 0): "
        + "; ".join(quantiles)
        + ". Direction is close to unpredictable from prices and volumes alone, while the size of the next move "
        "is partly predictable; read every figure below with its interval."
    )


def render_reproduce(figures: Json) -> str:
    commands = figures.get("commands", {})
    return "\n".join(
        [
            "## How this card was produced",
            "",
            "```sh",
            commands.get("train", ""),
            *([commands["calibrate"]] if "calibrate" in commands else []),
            commands.get("export", ""),
            commands.get("evaluate", ""),
            "```",
            "",
            "Training is deterministic on a given machine (fixed seeds, deterministic kernels, a fixed thread "
            "count): the same command gives the same weights digest. The JSON beside this page holds every "
            "figure in it.",
        ]
    )


def render_limitations(figures: Json) -> str:
    model = figures["model"]
    return "\n".join(
        [
            "## Intended use and limitations",
            "",
            f"- Trained on {', '.join(model['symbols'])} (`{model['data']['name']}`), "
            f"{model['folds'][-1]['train']['start'][:4]} to {model['folds'][-1]['train']['end'][:4]}. Up rates "
            "differ between markets and periods, more so at longer horizons, and always-up rules can look good on "
            "accuracy; compare with the baselines, not with 50%.",
            f"- `{model['interval']}` candles only ({model['calendar']} calendar): the daemon serves the model's "
            "interval alone and dead-letters candles of any other; `candlecast evaluate --model` and "
            "`candlecast backtest` refuse a file of another interval, naming the bundled models.",
            "- The trading simulation is simple: close-to-close fills with a fixed cost in basis points, equal "
            "capital per symbol, no borrow costs for shorts, no market impact beyond the slippage figure, no "
            "dividends beyond those in the price data.",
            "- The online re-weighting (`models.reweighting`) is measured here but not used by the daemon: the "
            "daemon's exact-recovery guarantee needs every decision to depend on a bounded number of recent "
            "candles of its symbol, and these weights depend on the whole history of every symbol.",
            "- The ensemble weights and the calibration are fitted on pooled out-of-fold predictions: each fold's "
            "calibration slice and the earlier folds' models on their own test blocks (`models.calibration`); the "
            "first fold has only its calibration slice. The trailing up-rate term uses only candles the window "
            "holds, so the daemon's exact recovery is unchanged.",
            "- How the pipeline came to be: design choices were revised after looking at walk-forward results of "
            "earlier versions (the calibration's anchored intercept and prior, after unregularised fits amplified "
            "noise; return quantiles in units of the window's volatility, after quantiles in fixed units lost to "
            "the training returns' own quantiles; for equities-1d 1.1.0, the pooled out-of-fold fit, the trailing "
            "up-rate intercept and the shrinkage to the base rate, after 1.0.0 was worse than the constant "
            "probability on the walk-forward test blocks; for equities-1d 1.2.0, counting same-time windows once "
            "and Schwarz's criterion, after 1.1.0 was worse than the constant on two of its test blocks and "
            "crypto-1h's fit of the same kind on one). No hyper-parameter was tuned on the test blocks, but they "
            "are not perfectly untouched; the external sets were never used to choose anything.",
            "- Not investment advice: the figures above show how little a price-only model knows.",
        ]
    )


def render_model(figures: Json) -> str:
    model = figures["model"]
    horizons = model["horizons"]
    lines = [
        "## The model",
        "",
        f"- **{model['name']} {model['version']}**: {len(model['members'])} members, "
        f"{model['parameters']:,} parameters; "
        f"windows of {model['window']} `{model['interval']}` candles ({model['calendar']} calendar, gap policy "
        f"`{model['gap_policy']}` with at most {model['max_missing']} missing candles); horizons {horizons} candles; "
        f"quantiles {model['quantiles']}.",
        f"- Weights sha256 (the manifest's `weights_sha256`): `{model['weights_sha256']}`.",
        f"- Trained on `{model['data']['name']}` (sha256 `{model['data']['sha256'][:16]}…`, {model['data']['rows']:,} "
        f"candles, symbols {', '.join(model['symbols'])}) in {model['train_seconds'] / 60:.1f} minutes of wall-clock "
        f"time ({model['train_cpu_seconds'] / 60:.1f} CPU minutes) for "
        f"{len(model['folds'])} walk-forward folds ({model['threads']} torch threads, device {model['device']}).",
        "",
        *([render_audit(model["audit"], model["data"]["name"]), ""] if model.get("audit") else []),
        "Walk-forward folds (window-end dates; the exported model is the last fold's):",
        "",
        table(
            ["fold", "train", "validation (early stopping)", "calibration (weights, Platt)", "test"],
            (
                [
                    str(f["index"]),
                    f"{f['train']['start'][:10]} .. {f['train']['end'][:10]} ({f['train']['windows']:,})",
                    f"{f['validation']['start'][:10]} .. {f['validation']['end'][:10]} "
                    f"({f['validation']['windows']:,})",
                    f"{f['calibration']['start'][:10]} .. {f['calibration']['end'][:10]} "
                    f"({f['calibration']['windows']:,})",
                    f"{f['test']['start'][:10]} .. {f['test']['end'][:10]} ({f['test']['windows']:,})",
                ]
                for f in model["folds"]
            ),
        ),
        "",
        f"Members of the last fold's model (weights per horizon {horizons}; a member with weight 0 at every "
        "horizon is left out of the exported graph):",
        "",
        table(
            ["member", "parameters", "best epoch / run", "weights", "train seconds"],
            (
                [
                    m["kind"],
                    f"{m['parameters']:,}",
                    f"{m['best_epoch']} / {m['epochs_run']}",
                    ", ".join(f"{w:.2f}" for w in m["weights"]),
                    f"{m['seconds']:.0f}",
                ]
                for m in model["members"]
            ),
        ),
        "",
        "Calibration (`models.calibration.fit_combination`: Platt scaling per horizon with its intercept "
        "anchored at the training up rate plus a term in the window's own trailing up rate, coefficients shrunk "
        "by Gaussian priors, each set to 0 unless refitting without it costs the pooled out-of-fold log loss "
        "more than ln(n)/2 independent outcomes (backward elimination; windows ending together count once, an "
        "h-candle horizon's labels once per h times), fitted jointly with the weights on "
        f"{', '.join(f'{n:,}' for n in model['calibration'].get('labels') or []) or 'the calibration slice'} "
        "pooled out-of-fold labels per horizon): scale "
        f"{', '.join(f'{v:.3f}' for v in model['calibration']['scale'])}, bias "
        f"{', '.join(f'{v:.3f}' for v in model['calibration']['bias'])}, trailing up-rate coefficient "
        f"{', '.join(f'{v:.2f}' for v in model['calibration'].get('drift_coef') or [0.0] * len(horizons))} "
        "per horizon. A scale of 0 means no member logit was worth using at that horizon; with a trailing "
        "coefficient of 0 too, the ensemble predicts the training up rate.",
    ]
    return "\n".join(lines)


def render_artifact(figures: Json) -> str:
    """The artifact an evaluation of ``--model`` scored, from its manifest."""
    model = figures["model"]
    training = model["training"]
    calibration = model["calibration"]
    ranges = ", ".join(
        f"{split} {training[split]['start'][:10]} .. {training[split]['end'][:10]}"
        for split in ("train", "validation", "calibration", "test")
        if training.get(split)
    )
    drift = calibration.get("drift_coef") or []
    lines = [
        "## The artifact",
        "",
        f"- **{model['name']} {model['version']}** (`{model['path']}`, file sha256 `{model['file_sha256'][:16]}…`, "
        f"weights sha256 `{model['weights_sha256'][:16]}…`): {len(model['members'])} members "
        f"({', '.join(m['name'] for m in model['members'])}), {model['parameters']:,} parameters; windows of "
        f"{model['window']} `{model['interval']}` candles ({model['calendar']} calendar, gap policy "
        f"`{model['gap_policy']}` with at most {model['max_missing']} missing candles); horizons {model['horizons']}; "
        f"quantiles {model['quantiles']}.",
        f"- Trained on {', '.join(d['name'] for d in training['data'])} ({', '.join(training['symbols'])}): {ranges}.",
        f"- Calibration: scale {', '.join(f'{v:.3f}' for v in calibration['scale'])}, bias "
        f"{', '.join(f'{v:.3f}' for v in calibration['bias'])}"
        + (f", trailing up-rate coefficient {', '.join(f'{v:.2f}' for v in drift)}" if drift else "")
        + f" per horizon; fitted on {calibration.get('fitted_on') or 'the calibration slice'}.",
    ]
    if model.get("dropped_members"):
        lines.append(
            f"- Members left out of the graph (weight 0 at every horizon): {', '.join(model['dropped_members'])}."
        )
    return "\n".join(lines)


def render_data(figures: Json) -> str:
    """What became of each candle file's rows: rejected as the daemon would, by reason, and jumps."""
    rows = []
    for audit in figures["data"]:
        rejected = ", ".join(f"{reason} {count:,}" for reason, count in audit["rejected"].items()) or "none"
        jumps = ", ".join(
            f"{j['symbol']} {j['date'][:10]} {j['log_return']:+.2f}"
            + (f" ({j['looks_like']}?)" if j["looks_like"] else "")
            for j in audit["jumps"]
        )
        rows.append([f"`{audit['file']}`", f"{audit['rows']:,}", rejected, jumps or "none", f"{audit['windows']:,}"])
    return "\n".join(
        [
            "## The candles",
            "",
            "Rows the daemon would reject (misaligned open times, inconsistent prices, duplicates, by reason) never "
            "enter a window; price jumps without a market move (|log return| > 0.25, `models.hygiene`) are cut out: "
            "no window or label straddles them.",
            "",
            table(["file", "rows", "rejected rows", "jumps excluded", "windows"], rows),
        ]
    )


def render_goals(figures: Json) -> str:
    """Is the ensemble never worse than knowing nothing? Per test set and horizon."""
    rows = []
    for name, horizons in figures["goals"].items():
        for h, g in horizons.items():
            rows.append(
                [
                    name,
                    h,
                    f"{g['labels']:,}",
                    f"{num(g['log_loss'])} / {num(g['log_loss_constant'])}",
                    f"{g['log_loss_excess']:+.4f}",
                    f"{num(g['ece'])} / {num(g['ece_constant'])}",
                    "met" if g["met"] else "**not met**",
                ]
            )
    met = sum(g["met"] for horizons in figures["goals"].values() for g in horizons.values())
    return "\n".join(
        [
            "## Calibration goals",
            "",
            "On every test set, at every horizon: log loss no more than 0.002 above the constant probability's "
            "(the training up rate) and an expected calibration error (10 equal-width bins) of at most 0.03. "
            f"Met in {met} of {len(rows)} cases:",
            "",
            table(
                [
                    "test set",
                    "horizon",
                    "labels",
                    "log loss ensemble / constant",
                    "excess",
                    "ECE ensemble / constant",
                    "goal",
                ],
                rows,
            ),
        ]
    )


def render_audit(audit: Json, name: str) -> str:
    """One line: what the daemon would reject in a candle file, and the jumps cut out of it."""
    rejected = ", ".join(f"{reason} {count:,}" for reason, count in sorted(audit["rejected"].items())) or "none"
    jumps = audit["jumps"]
    listed = "; ".join(
        f"{j['symbol']} {iso(j['ts'])[:10]} {j['log_return']:+.2f}"
        + (f" (like a {j['looks_like']} split)" if j["looks_like"] else "")
        for j in jumps
    )
    return (
        f"- Data hygiene, `{name}`: {audit['rows']:,} rows; rejected as the daemon would: {rejected}; price jumps "
        f"without a market move (|log return| > 0.25, `models.hygiene`) cut out of every window and label: "
        f"{len(jumps)}" + (f" ({listed})." if jumps else ".")
    )


def render_settings(figures: Json) -> str:
    s = figures["settings"]
    return "\n".join(
        [
            "## How it is measured",
            "",
            f"- Strategy: the threshold strategy, BUY when p > {s['buy_above']}, SELL when p < {s['sell_below']}, "
            "HOLD otherwise, on the primary (1-candle) horizon; no hysteresis or cooldown.",
            f"- Trading simulation: BUY = long, SELL = short, HOLD = flat, from a window's close to the next close; "
            f"each symbol gets an equal share of capital on each day; costs {s['fee_bps']} bp fees + "
            f"{s['slippage_bps']} bp slippage per unit of position changed (a flip from long to short pays twice, "
            "closing at the end of a run of candles pays too). Sharpe ratios are annualised with "
            f"{s['periods_per_year']:.0f} periods a year, without a risk-free rate.",
            f"- Intervals: {100 * s['level']:.0f}% percentile intervals from a circular block bootstrap over candle "
            f"times ({s['samples']} resamples, blocks of {s['block']} consecutive candle times, seed {s['seed']}); all "
            "models are resampled on the same times, so the intervals of differences are paired. Windows ending at "
            "one time are not independent (the symbols move together), which is why times, not windows, are "
            "resampled.",
        ]
    )


def render_set(key: str, f: Json, figures: Json, stem: str) -> str:
    horizons = list(f["up_rate"])
    models = f["models"]
    lines = [
        f"## {f['title']}",
        "",
        f["description"],
        "",
        f"{f['windows']:,} windows of {f['symbols']} symbols on {f['days']} days, {f['start'][:10]} .. "
        f"{f['end'][:10]}. Up rate (close h candles ahead strictly above the window's close): "
        + ", ".join(f"h={h}: {pct(f['up_rate'][h])} ({f['labels'][h]:,} labels)" for h in horizons)
        + "; ties (unchanged close, counted as not up): "
        + ", ".join(f"{pct(f['ties'][h], 2)}" for h in horizons)
        + ".",
        "",
        *([render_audit(f["audit"], f["audit_file"]), ""] if f.get("audit") else []),
        f"Best single member ({f.get('best_member_rule', 'lowest calibration-slice log loss, chosen per fold')}): "
        f"{', '.join(f['best_members'])}.",
    ]
    for h in horizons:
        lines += ["", f"### Direction and probability, {h}-candle horizon", ""]
        rows = []
        for name, entry in models.items():
            g = entry["horizons"][h]
            diff = g.get("accuracy_minus_ensemble")
            loss_diff = g.get("log_loss_minus_ensemble")
            rows.append(
                [
                    name,
                    f"{pct(g['accuracy'])} {ci(g['accuracy_ci'])}",
                    "" if diff is None else f"{signed(diff['estimate'])} {ci(diff, 'pp')}",
                    num(g["log_loss"]) if "log_loss" in g else "n/a",
                    ""
                    if loss_diff is None
                    else f"{loss_diff['estimate']:+.4f} [{loss_diff['low']:+.4f}, {loss_diff['high']:+.4f}]",
                    num(g["brier"]) if "brier" in g else "n/a",
                    num(g["ece"]) if "ece" in g else "n/a",
                    num(g["auc"], 3) if "auc" in g else "n/a",
                ]
            )
        lines.append(
            table(
                [
                    "model",
                    "accuracy [95% CI]",
                    "accuracy - ensemble [95% CI]",
                    "log loss",
                    "log loss - ensemble [95% CI]",
                    "Brier",
                    "ECE",
                    "ROC AUC",
                ],
                rows,
            )
        )
        lines += ["", _accuracy_sentence(models, h)]
    lines += ["", f"![calibration curves]({IMAGE_DIR}/{image_name(stem, key, 'calibration')})", ""]
    lines += [render_actions(f, figures), "", render_trading(key, f, stem), "", render_confidence(key, f, stem)]
    lines += ["", render_quantiles(f), "", render_reweighting(f), "", render_members(f)]
    return "\n".join(lines)


def _accuracy_sentence(models: Json, h: str) -> str:
    ensemble = models[ENSEMBLE]["horizons"][h]
    parts = []
    for name in (BUY_AND_HOLD, CONSTANT, MOMENTUM, LOGISTIC, BEST_MEMBER):
        diff = models[name]["horizons"][h]["accuracy_minus_ensemble"]
        parts.append(f"{name}: {verdict({'low': -diff['high'], 'high': -diff['low']})}")
    return (
        f"Ensemble accuracy {pct(ensemble['accuracy'])}; ensemble compared with each baseline (paired bootstrap): "
        + "; ".join(parts)
        + "."
    )


def render_actions(f: Json, figures: Json) -> str:
    s = figures["settings"]
    rows = []
    for name in (ENSEMBLE, REWEIGHTED, BEST_MEMBER, LOGISTIC, MOMENTUM, CONSTANT):
        actions = f["models"][name]["actions"]
        rows.append(
            [name]
            + [
                f"{pct(actions[a]['coverage'])} / {pct(actions[a]['precision'])} ({int(actions[a]['count']):,})"
                for a in ("BUY", "SELL", "HOLD")
            ]
        )
    return "\n".join(
        [
            f"### Actions of the threshold strategy (BUY p > {s['buy_above']}, SELL p < {s['sell_below']})",
            "",
            "Coverage (share of windows) / precision (share whose direction came true: BUY the close rose, SELL it "
            "did not, HOLD the likelier direction came true) and count. Momentum's probability is its training up "
            "rate after an up or a down candle, so the thresholds rarely or never fire for it.",
            "",
            table(["model", "BUY", "SELL", "HOLD"], rows),
        ]
    )


def render_trading(key: str, f: Json, stem: str) -> str:
    rows = []
    for name, t in f["trading"].items():
        diff = t.get("sharpe_minus_ensemble")
        rows.append(
            [
                name,
                pct(t["total_return"]),
                pct(t["annual_return"]),
                f"{num(t['sharpe'], 2)} {ci(t['sharpe_ci'], 'num')}",
                "" if diff is None else f"{signed(diff['estimate'], 'num')} {ci(diff, 'num')}",
                pct(t["max_drawdown"]),
                pct(t["win_rate"]),
                pct(t["turnover"]),
                pct(t["exposure"]),
            ]
        )
    reference = f["trading"][REFERENCE_STRATEGY]
    bh = f["trading"][BUY_AND_HOLD]["sharpe_minus_ensemble"]
    return "\n".join(
        [
            "### Trading simulation after costs (primary horizon)",
            "",
            table(
                [
                    "strategy",
                    "total return",
                    "annualised",
                    "Sharpe [95% CI]",
                    "Sharpe - ensemble [95% CI]",
                    "max drawdown",
                    "win rate",
                    "turnover / day",
                    "exposure",
                ],
                rows,
            ),
            "",
            f"The ensemble's threshold strategy had a Sharpe ratio of {num(reference['sharpe'], 2)} "
            f"{ci(reference['sharpe_ci'], 'num')}; buy-and-hold compared with it: "
            f"{verdict(bh)} ({signed(bh['estimate'], 'num')} {ci(bh, 'num')}). Win rate counts symbol-days with a "
            "position that made money after costs; turnover is the share of capital traded per day; exposure the "
            "share of capital in a position.",
            "",
            f"![equity curves]({IMAGE_DIR}/{image_name(stem, key, 'equity')})",
            "",
            f"![actions against outcomes]({IMAGE_DIR}/{image_name(stem, key, 'confusion')})",
        ]
    )


def render_confidence(key: str, f: Json, stem: str) -> str:
    rows = [
        [
            _bin_label(r["from"], r["to"]),
            f"{r['predicted']:.3f}",
            f"{pct(r['realised'])} [{pct(r['low'])}, {pct(r['high'])}]",
            f"{int(r['count']):,}",
        ]
        for r in f["models"][ENSEMBLE]["confidence_reliability"]
    ]
    return "\n".join(
        [
            "### Confidence against realised hit rate (ensemble)",
            "",
            "A signal's confidence (`strategies.base.directional_confidence`) is p for BUY, 1 - p for SELL and "
            "max(p, 1 - p) for HOLD; it is calibrated if signals with confidence c are right about c of the time. "
            "Signals of this set by confidence (Wilson 95% intervals, which treat windows as independent and are "
            "therefore too narrow):",
            "",
            table(["confidence", "mean confidence", "realised hit rate [95% CI]", "signals"], rows),
            "",
            f"![confidence reliability]({IMAGE_DIR}/{image_name(stem, key, 'confidence')})",
        ]
    )


def _bin_label(low: float | None, high: float | None) -> str:
    # JSON turns the open ends (infinities) into null.
    if low is None or not math.isfinite(low):
        return f"< {high:.3f}"
    if high is None or not math.isfinite(high):
        return f">= {low:.3f}"
    return f"{low:.3f} .. {high:.3f}"


def render_quantiles(f: Json) -> str:
    rows = []
    for h, q in f["quantiles"].items():
        levels = q["levels"]
        labels = {"ensemble": "ensemble", "baseline": "training quantiles", "volatility": "EWMA volatility x quantiles"}
        for name in (n for n in labels if n in q):
            g = q[name]
            diff = q.get(f"pinball_minus_{name}")
            rows.append(
                [
                    h,
                    labels[name],
                    ", ".join(f"{pct(b)}" for b in g["below"]),
                    f"{pct(g['interval_coverage'])} (nominal {pct(levels[-1] - levels[0], 0)})",
                    num(g["interval_width"]),
                    num(g["pinball"], 5),
                    "" if diff is None else f"{-diff['estimate']:+.5f} [{-diff['high']:+.5f}, {-diff['low']:+.5f}]",
                ]
            )
    levels_text = ", ".join(f"{lv:g}" for lv in next(iter(f["quantiles"].values()))["levels"])
    return "\n".join(
        [
            "### Return quantiles",
            "",
            f"Share of realised log returns below each predicted quantile (levels {levels_text}; ideally equal to "
            "the level), coverage and mean width of the outer interval, and the pinball loss of two baselines "
            "fitted on the same training windows: the training log returns' unconditional quantiles (the same "
            "interval for every window) and the window's EWMA volatility (decay 0.94) times the training returns' "
            "quantiles in units of it. The last column is the baseline's pinball loss minus the ensemble's "
            "(positive: the ensemble is better):",
            "",
            table(
                [
                    "horizon",
                    "quantiles",
                    "realised below",
                    "interval coverage",
                    "mean width (log return)",
                    "pinball loss",
                    "baseline - ensemble [95% CI]",
                ],
                rows,
            ),
        ]
    )


def render_reweighting(f: Json) -> str:
    static = f["models"][ENSEMBLE]["horizons"]
    online = f["models"][REWEIGHTED]["horizons"]
    rows = []
    for h in static:
        diff = online[h]["log_loss_minus_ensemble"]
        rows.append(
            [
                h,
                f"{num(static[h]['log_loss'])} / {num(online[h]['log_loss'])}",
                f"{diff['estimate']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]",
                f"{pct(static[h]['accuracy'])} / {pct(online[h]['accuracy'])}",
                "helps" if diff["high"] < 0 else ("hurts" if diff["low"] > 0 else "no detectable effect"),
            ]
        )
    weights = f["reweighting"]
    mean = ", ".join(
        f"{name} {w[0]:.2f}" for name, w in zip(weights["member_names"], weights["mean_weights"], strict=True)
    )
    return "\n".join(
        [
            "### Online re-weighting by recent realised loss",
            "",
            "`models.reweighting` (exponential weights on each member's discounted realised log loss, outcomes used "
            "only once realised) replayed over this set, starting from the fitted weights of each fold:",
            "",
            table(
                ["horizon", "log loss static / online", "online - static [95% CI]", "accuracy static / online", ""],
                rows,
            ),
            "",
            f"Mean online weights at the primary horizon: {mean}. Re-weighting moves the weights of the member "
            "logits only: at a horizon where the calibration scale is 0 (no member was worth using on the "
            "calibration slice) it cannot change the probabilities.",
        ]
    )


def render_members(f: Json) -> str:
    rows = [
        [
            name,
            pct(m["accuracy"]),
            num(m["log_loss"]),
            num(m["brier"]),
            num(m["auc"], 3),
        ]
        for name, m in f["members"].items()
    ]
    return "\n".join(
        [
            "### Members alone (primary horizon, "
            + f"{f.get('member_calibration', 'each Platt-calibrated on the calibration slice')})",
            "",
            table(["member", "accuracy", "log loss", "Brier", "ROC AUC"], rows),
        ]
    )


def render_definitions(figures: Json) -> str:
    return "\n".join(
        [
            "## Reading these numbers",
            "",
            "- **Labels**: for horizon h, up means the close h candles after the window's newest candle is strictly "
            "above that candle's close; an unchanged close counts as not up. Candles are the symbol's own trading "
            "days; a label is missing when a gap longer than the gap policy tolerates comes first.",
            "- **Accuracy**: share of labels whose direction the model called (p > 0.5 calls up). Buy-and-hold "
            "always calls up, so its accuracy is the up rate; the constant probability calls the majority "
            "direction of its training data (up), so its accuracy is the up rate too; momentum calls the "
            "direction of the window's last candle. Buy-and-hold has no probability, so log loss, Brier, ECE and "
            "AUC are n/a for it.",
            "- **Log loss** (natural log), **Brier** score, **ECE** (10 equal-width bins) and **ROC AUC** measure "
            "the probabilities; an AUC of 0.5 is no ranking skill.",
            "- **Baselines** are fitted on each fold's training windows only: the constant probability is the "
            "training up rate; logistic regression (scikit-learn, L2, standardised) uses the same 11 window "
            "features as the networks (newest candle, and their means over the last 5 and 20 candles); the best "
            "single member is the ensemble member with the lowest calibration-slice log loss.",
        ]
    )


def render_streaming(figures: Json) -> str:
    """Streaming scoring beside windowed: the member-level walk-forward comparison
    (``models.streaming_evaluation``), each member kind's cost and contribution and the choice they
    make (``models.contribution``), and this model's walk-forward test log loss beside an earlier
    version's and the constant's on the same folds."""
    streaming = figures["streaming"]
    members, comparison = streaming.get("members"), streaming.get("comparison")
    horizons = [str(h) for h in figures["model"]["horizons"]]
    kinds = {m["kind"] for m in figures["model"]["members"]}
    streams = kinds <= set(streaming["streaming_kinds"])
    parts = [
        "## Streaming scoring, member cost and contribution (issue 14)",
        "",
        (
            f"Every member of {figures['model']['name']} {figures['model']['version']} streams "
            f"({', '.join(sorted(kinds))}): the artifact scores a candle with one step from per-symbol state "
            '(docs/design.md, "Streaming members") beside its windowed `forward`, and the manifest\'s `streaming` '
            "section says so."
            if streams
            else f"The members of {figures['model']['name']} {figures['model']['version']} "
            f"({', '.join(sorted(kinds))}) score whole windows."
        ),
    ]
    if members is not None:
        parts += ["", *_render_walk_forward_beside(figures, members, horizons)]
        parts += ["", *_render_costs(members)]
        parts += ["", *_render_contribution(members, horizons)]
    if comparison is not None:
        parts += ["", *_render_member_comparison(comparison, horizons)]
    return "\n".join(parts)


def _render_walk_forward_beside(figures: Json, members: Json, horizons: list[str]) -> list[str]:
    beside, service = members.get("beside"), members.get("service")
    folds = [name for name in figures["goals"] if name.startswith("fold ")]
    header = ["test block", "horizon", "labels", "this model"]
    header += ["this model, the daemon's step histories"] if service else []
    header += [f"{beside['model']}"] if beside else []
    header += ["constant probability"]
    rows: list[list[str]] = []
    totals: dict[str, dict[str, float]] = {h: {} for h in horizons}

    def add(h: str, key: str, value: float, labels: float) -> None:
        totals[h][key] = totals[h].get(key, 0.0) + value * labels

    for i, name in enumerate(folds):
        for j, h in enumerate(horizons):
            goal = figures["goals"][name][h]
            labels = float(goal["labels"])
            row = [name.removesuffix(" test block"), h, f"{goal['labels']:,}", num(goal["log_loss"])]
            add(h, "model", goal["log_loss"], labels)
            add(h, "labels", 1.0, labels)
            if service:
                row.append(num(service["service"][i][j]))
                add(h, "service", service["service"][i][j], labels)
            if beside:
                earlier = beside["folds"][name][h]["log_loss"]
                row.append(num(earlier))
                add(h, "beside", earlier, labels)
            row.append(num(goal["log_loss_constant"]))
            add(h, "constant", goal["log_loss_constant"], labels)
            rows.append(row)
    for h in horizons:
        t = totals[h]
        n = t["labels"]
        row = ["all", h, f"{n:,.0f}", num(t["model"] / n)]
        row += [num(t["service"] / n)] if service else []
        row += [num(t["beside"] / n)] if beside else []
        rows.append([*row, num(t["constant"] / n)])
    quantiles = figures.get("sets", {}).get("walk-forward", {}).get("quantiles", {})
    pinball = []
    if beside and beside.get("pinball") and quantiles:
        pinball = [
            "",
            "Pinball loss of the return quantiles on the same walk-forward test blocks (levels "
            f"{figures['model']['quantiles']}, lower is better), beside {beside['model']}'s and the EWMA-volatility "
            "baseline's:",
            "",
            table(
                ["horizon", "this model", beside["model"], "EWMA volatility x quantiles"],
                (
                    [
                        h,
                        f"{quantiles[h]['ensemble']['pinball']:.5f}",
                        f"{beside['pinball'][h]:.5f}",
                        f"{quantiles[h]['volatility']['pinball']:.5f}",
                    ]
                    for h in horizons
                    if h in quantiles and h in beside["pinball"]
                ),
            ),
        ]
    return [
        "Walk-forward test log loss on the same folds (the constant probability is each fold's training up rate"
        + (f"; {beside['model']}'s figures are from its model card" if beside else "")
        + (
            "; the step-history column scores each test window at the history the daemon's step path reads for "
            "it, the slots since its reader copy's restart, where the other columns read the longest the window "
            "allows"
            if service
            else ""
        )
        + "):",
        "",
        table(header, rows),
        *pinball,
    ]


def _render_costs(members: Json) -> list[str]:
    streaming = set(members["streaming_kinds"])
    rows = [
        [
            c["kind"],
            "yes" if c["kind"] in streaming else "no",
            f"{c['parameters']:,}",
            f"{c['window_ms']:.1f}",
            f"{c['step_ms']:.1f}" if c["step_ms"] is not None else "",
            f"{c['state_floats'] * 4:,} B" if c["state_floats"] else "",
        ]
        for c in members["costs"]
    ]
    options = members["options"]
    return [
        f"Scoring cost per member kind (default sizes, untrained: a forward's cost does not depend on the weights; "
        f"one thread; median of {options['rounds']} rounds of {options['repeats']} calls, the kinds alternated in "
        "each round, on a machine shared with other work: read the ratios, not the absolute times). A windowed "
        f"forward scores {members['batch']} windows; a step (`advance` and `emit`) scores {members['batch']} "
        "symbols' newest candles from their states:",
        "",
        table(
            [
                "member kind",
                "streams",
                "parameters",
                f"ms per {members['batch']}-window forward",
                f"ms per {members['batch']}-symbol step",
                "state per symbol (two copies)",
            ],
            rows,
        ),
    ]


def _render_contribution(members: Json, horizons: list[str]) -> list[str]:
    run = members["run"]
    config = members["train_config"]
    whole = members["subsets"][0]

    def label(subset: Json) -> str:
        kept = subset["members"]
        if kept == whole["members"]:
            return "all members"
        left = [m for m in whole["members"] if m not in kept]
        if len(left) == 1:
            return f"without {left[0]}"
        if set(kept) <= set(members["streaming_kinds"]):
            return "streaming members alone"
        return "windowed members alone"

    rows = []
    for subset in members["subsets"]:
        cells = [label(subset)]
        for j in range(len(horizons)):
            change = subset["change"][j]
            interval = f"[{change['low']:+.4f}, {change['high']:+.4f}]"
            delta = "" if subset is whole else f" ({change['estimate']:+.4f} {interval})"
            cells.append(num(subset["log_loss"][j]) + delta)
        rows.append(cells)
    weights = [[name, *(f"{w:.2f}" for w in row)] for name, row in zip(whole["members"], whole["weights"], strict=True)]
    weights.append(["calibration scale", *(f"{a:.3f}" for a in whole["scale"])])
    idle = all(a == 0.0 for subset in members["subsets"] for a in subset["scale"])
    finding = (
        [
            "",
            "No member earned a weight: the calibration scale is 0 at every horizon in every fit above, so no "
            "member moves the probability whichever set is kept, the changes are 0, and the choice rests on cost "
            "alone.",
        ]
        if idle
        else []
    )
    return [
        f"Contribution, from one training run with every kind as a member ({', '.join(run['members'])}; "
        f"{members['sizes']['folds']} walk-forward folds as this card's, {config['epochs']} epochs at most, patience "
        f"{config['patience']}, seed {config['seed']}; `python -m models.contribution`). Each member's ensemble "
        "weight per horizon in the last fold's combination, fitted on pooled out-of-fold predictions as this "
        "model's (a horizon with scale 0 has uniform weights that only average the quantiles):",
        "",
        table(["member", *(f"h{h}" for h in horizons)], weights),
        "",
        "Walk-forward test log loss pooled over the folds' test blocks when members are left out and every fold's "
        "combination is refitted without them as training fits it; in brackets the change against all members "
        f"with a paired 95% block-bootstrap interval over days ({members['options']['bootstrap']} resamples, "
        f"blocks of {members['options']['block']}):",
        "",
        table(["members", *(f"h{h}" for h in horizons)], rows),
        *finding,
        "",
        "The commands that trained the members' run and measured these figures (`--beside` reads the earlier "
        "version's card JSON, from the git history):",
        "",
        "```sh",
        *([members["commands"]["train"], members["commands"]["contribution"]] if "commands" in members else []),
        "```",
        "",
        "The choice rule (`models.contribution.chosen_members`): the streaming members alone when leaving the "
        "windowed ones out is not measurably worse at any horizon (the interval of the change reaches 0), else "
        "every member; then members with weight 0 at every horizon are left out. On these figures it chooses: "
        f"{', '.join(members['chosen'])}.",
    ]


def _render_member_comparison(comparison: Json, horizons: list[str]) -> list[str]:
    options = comparison["options"]
    pooled = comparison["pooled_log_loss"]
    windows = sum(f["test_windows"] for f in comparison["folds"])
    names = {
        "windowed": "windowed LSTM member",
        "streaming": "streaming LSTM member",
        "constant": "constant probability (training up rate)",
    }
    return [
        f"One streaming LSTM member beside the windowed `lstm` member of the same shape (hidden {options['hidden']}, "
        f"{options['layers']} layers), trained the same way (`models.training.train_member`, same seeds, loss and "
        f"early stopping, at most {options['epochs']} epochs, patience {options['patience']}) on each of "
        f"{options['folds']} walk-forward folds, judged by the member's own uncalibrated probability on each test "
        "block, the streaming member at the history the daemon reads for each window "
        f"(`python -m models.streaming_evaluation`; test log loss pooled over {windows:,} windows):",
        "",
        table(
            ["", *(f"h{h}" for h in horizons)],
            ([names[k], *(num(v) for v in pooled[k])] for k in ("windowed", "streaming", "constant")),
        ),
    ]
