"""Streaming members: the step path equals the windowed reference, and rebuilt state equals carried state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.recurrent_state import RecurrentStates, reader_copies, restart_slots
from models.artifact import BATCH_MULTIPLE, ModelOutputs, TimeRange, Training
from models.export import export_ensemble, reference_from
from models.stepping import StreamingScorer
from models.streaming import LOOKBACK, SPAN, StreamingEnsemble, fit_standardisation, streaming_ensemble
from models.torchscript import load_artifact
from tests.support.model import synthetic_windows

WINDOW = SPAN + LOOKBACK
HORIZONS = 3
QUANTILES = 3
TOLERANCE = 1e-5


def build(seed: int = 5) -> StreamingEnsemble:
    torch.manual_seed(seed)
    ensemble = streaming_ensemble(HORIZONS, QUANTILES, [(32, 2), (16, 1)])
    fit_standardisation(ensemble, torch.from_numpy(synthetic_windows(64, WINDOW, seed=seed)))
    return ensemble.eval()


@pytest.fixture(scope="module")
def scripted() -> torch.jit.ScriptModule:
    return torch.jit.script(build())


def series(symbols: int, candles: int, seed: int = 1) -> np.ndarray:
    """``[symbols, candles, 5]`` candles: one long random walk per symbol."""
    return synthetic_windows(symbols, candles, seed=seed)


def history(newest: int, slots: np.ndarray) -> int:
    """Candles of a window (its ``slots``) that the signal at its newest candle reads."""
    restarts = restart_slots(np.asarray([newest], dtype=np.int64), SPAN)
    start = int(restarts[0, reader_copies(restarts)[0]])
    return int(np.count_nonzero(slots >= start))


def reference(module: StreamingEnsemble, window: np.ndarray, steps: int) -> ModelOutputs:
    with torch.inference_mode():
        outputs = module.reference(torch.from_numpy(window), steps)
    p, q, d, m, f = (t.numpy() for t in outputs)
    return ModelOutputs(p, q, d, m, f)


def test_stepping_equals_the_windowed_reference_at_every_candle(scripted: torch.jit.ScriptModule) -> None:
    """Stepping a candle stream gives, at every candle, the windowed reference's outputs for the
    history that candle reads, within float tolerance."""
    candles = series(5, WINDOW + SPAN + 2)
    slots = np.arange(WINDOW + SPAN + 2, dtype=np.int64) + 11
    scorer = StreamingScorer(scripted, RecurrentStates(scripted.state_size, SPAN, LOOKBACK), torch.device("cpu"))
    keys = [f"S{i}" for i in range(5)]
    eager = build()  # the scripted fixture's weights; eager, so each history needs no new specialisation
    worst = 0.0
    for end in range(WINDOW, WINDOW + SPAN + 3):
        window = candles[:, end - WINDOW : end]
        window_slots = np.broadcast_to(slots[end - WINDOW : end], (5, WINDOW))
        got = scorer.score(keys, list(range(5)), window, window_slots)
        want = reference(eager, window, history(int(window_slots[0, -1]), window_slots[0]))
        for name in ("probabilities", "quantiles", "disagreement", "member_probabilities", "last_features"):
            worst = max(worst, float(np.max(np.abs(getattr(got, name) - getattr(want, name)))))
    assert worst < TOLERANCE


def stateless(module: torch.jit.ScriptModule, windows: np.ndarray, slots: np.ndarray) -> ModelOutputs:
    """What each window scores with no cached state at all: every key's states stepped from zero."""
    scorer = StreamingScorer(module, RecurrentStates(module.state_size, SPAN, LOOKBACK), torch.device("cpu"))
    return scorer.score([f"fresh{i}" for i in range(len(windows))], list(range(len(windows))), windows, slots)


def assert_bitwise(got: ModelOutputs, want: ModelOutputs) -> None:
    for name in ("probabilities", "quantiles", "disagreement", "member_probabilities", "last_features"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_state_rebuilt_after_a_restart_equals_the_carried_state_bit_for_bit(scripted: torch.jit.ScriptModule) -> None:
    """A scorer that loses its states midway (a restart) rebuilds them from the window, and from then on
    its states and outputs equal, bit for bit, those of a scorer that carried them through."""
    candles = series(3, 130, seed=4)
    slots = np.arange(130, dtype=np.int64)
    keys = ["A", "B", "C"]
    carried = StreamingScorer(scripted, RecurrentStates(scripted.state_size, SPAN, LOOKBACK), torch.device("cpu"))
    restarted = StreamingScorer(scripted, RecurrentStates(scripted.state_size, SPAN, LOOKBACK), torch.device("cpu"))
    for end in range(WINDOW, 131):
        if end == 90:
            restarted.states = RecurrentStates(scripted.state_size, SPAN, LOOKBACK)
        window = candles[:, end - WINDOW : end]
        window_slots = np.broadcast_to(slots[end - WINDOW : end], (3, WINDOW))
        want = carried.score(keys, [0, 1, 2], window, window_slots)
        if end >= 90:
            assert_bitwise(restarted.score(keys, [0, 1, 2], window, window_slots), want)
    assert np.array_equal(restarted.states.states[:3], carried.states.states[:3])
    assert restarted.steps > 0


@settings(max_examples=12, deadline=None)
@given(
    data=st.data(),
    symbols=st.integers(2, 4),
    candles=st.integers(WINDOW + 3, WINDOW + 40),
)
def test_any_schedule_of_batches_gaps_and_restarts_scores_as_if_stateless(
    scripted: torch.jit.ScriptModule, data: st.DataObject, symbols: int, candles: int
) -> None:
    """Whatever the batches (which symbols share one, in which order, a symbol twice), the gaps in the
    candle slots, the restarts (all states lost) and the rebalances (a symbol's state lost, its row
    reused by another), every output equals bit for bit that of the key's window scored with no state."""
    prices = series(symbols, candles, seed=data.draw(st.integers(0, 9), label="seed"))
    gaps = data.draw(st.lists(st.integers(1, 4), min_size=candles, max_size=candles), label="slot steps")
    slots = np.cumsum(np.asarray(gaps, dtype=np.int64)) + data.draw(st.integers(0, 100), label="first slot")
    store = RecurrentStates(scripted.state_size, SPAN, LOOKBACK, rows=2)
    scorer = StreamingScorer(scripted, store, torch.device("cpu"))
    row_of = {f"S{i}": i for i in range(symbols)}
    ends = dict.fromkeys(row_of, WINDOW)
    scored: list[tuple[int, int, ModelOutputs, int]] = []
    while any(end <= candles for end in ends.values()):
        event = data.draw(st.sampled_from(["batch", "batch", "batch", "restart", "rebalance"]), label="event")
        if event == "restart":
            scorer.states = store = RecurrentStates(scripted.state_size, SPAN, LOOKBACK, rows=2)
            continue
        if event == "rebalance":
            a, b = data.draw(st.permutations(list(row_of)), label="swap")[:2]
            row_of[a], row_of[b] = row_of[b], row_of[a]
            continue
        open_keys = [key for key, end in ends.items() if end <= candles]
        chosen = data.draw(st.lists(st.sampled_from(open_keys), min_size=1, max_size=8), label="batch")
        batch_keys, batch_rows, windows, window_slots, batch_ends = [], [], [], [], []
        for key in chosen:
            end = ends[key]
            if end > candles:
                continue
            index = int(key[1:])
            batch_keys.append(key)
            batch_rows.append(row_of[key])
            windows.append(prices[index, end - WINDOW : end])
            window_slots.append(slots[end - WINDOW : end])
            batch_ends.append(end)
            ends[key] = end + 1
        got = scorer.score(batch_keys, batch_rows, np.stack(windows), np.stack(window_slots))
        scored.extend((int(key[1:]), batch_ends[i], got, i) for i, key in enumerate(batch_keys))
    assert scored
    windows_all = np.stack([prices[index, end - WINDOW : end] for index, end, _, _ in scored])
    want = stateless(scripted, windows_all, np.stack([slots[end - WINDOW : end] for _, end, _, _ in scored]))
    for j, (_, _, got, i) in enumerate(scored):
        for name in ("probabilities", "quantiles", "member_probabilities"):
            assert np.array_equal(getattr(got, name)[i], getattr(want, name)[j]), (j, name)


@pytest.mark.parametrize("threads", [1, 2])
def test_padded_steps_and_emits_do_not_depend_on_the_batch(scripted: torch.jit.ScriptModule, threads: int) -> None:
    """Padded to a multiple of ``BATCH_MULTIPLE`` rows, a row's step and outputs are bitwise the same
    whatever else is in the batch, from 1 to about 600 real rows, on one thread or two."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        windows = torch.from_numpy(synthetic_windows(700, WINDOW, seed=9))
        state = torch.randn(700, scripted.state_size, generator=torch.Generator().manual_seed(2)) * 0.5
        lookbacks = windows[:, -LOOKBACK - 1 :]

        def padded(rows: torch.Tensor) -> torch.Tensor:
            missing = -rows.shape[0] % BATCH_MULTIPLE
            return torch.cat([rows, rows[:1].expand(missing, *rows.shape[1:])])

        with torch.inference_mode():
            stepped = scripted.advance(state, lookbacks)
            emitted = scripted.emit(stepped, windows)[0]
            for size in [*range(1, 41), 64, 255, 256, 513, 600]:
                for start in (0, 99):
                    rows = slice(start, start + size)
                    got = scripted.advance(padded(state[rows]), padded(lookbacks[rows]))[:size]
                    assert torch.equal(got, stepped[rows]), (size, start)
                    out = scripted.emit(padded(stepped[rows]), padded(windows[rows]))[0][:size]
                    assert torch.equal(out, emitted[rows]), (size, start)
    finally:
        torch.set_num_threads(previous)


def test_a_streaming_artifact_says_so_and_its_steps_are_verified_at_load(tmp_path: Path) -> None:
    """The exported artifact carries the windowed forward and the step methods; its manifest says
    every member streams, with the span, lookback and state size, and loading it checks the step path
    against the golden outputs."""
    ensemble = build(seed=8)
    windows = synthetic_windows(16, WINDOW, seed=3)
    with torch.inference_mode():
        p, _, _, _, last = ensemble(torch.from_numpy(windows))
    span = TimeRange(start="n/a", end="n/a", windows=0)
    training = Training([], [], span, span, None, 0, 8, {"purpose": "test"})
    model = export_ensemble(
        ensemble,
        tmp_path / "stream.pt",
        name="stream",
        version="0.0.1",
        window=WINDOW,
        interval="1d",
        calendar="weekdays",
        gap_policy="tolerate",
        max_missing=3,
        horizons=[1, 5, 20],
        quantiles=[0.1, 0.5, 0.9],
        member_names=["s32x2", "s16"],
        member_kinds=["stream", "stream"],
        training=training,
        metrics={},
        reference=reference_from(last.numpy(), p[:, 0].double().numpy(), hit_rate=0.5, brier=0.25, ece=0.0),
        golden_windows=windows[:4],
    )
    assert model.manifest.streaming is not None
    assert (model.manifest.streaming.span, model.manifest.streaming.lookback) == (SPAN, LOOKBACK)
    assert model.manifest.streaming.state_size == 2 * (2 * 32 + 16)
    assert all(member.streams for member in model.manifest.members)
    scorer = StreamingScorer(
        model.module, RecurrentStates(model.manifest.streaming.state_size, SPAN, LOOKBACK), model.device
    )
    stepped = scorer.score(["X"], [0], windows[:1], np.arange(WINDOW, dtype=np.int64)[None] + SPAN - LOOKBACK)
    assert np.max(np.abs(stepped.probabilities - model.score(windows[:1]).probabilities)) < TOLERANCE
    assert load_artifact(tmp_path / "stream.pt").manifest.streaming == model.manifest.streaming


def test_bundled_artifacts_say_whether_they_stream() -> None:
    """Bundled artifacts exported before streaming members still load and say they do not stream;
    equities-1d 2.0.0's members all stream and its manifest has the step path's section."""
    paths = sorted((Path(__file__).parents[2] / "models" / "bundled").glob("*/*/model.pt"))
    assert len(paths) >= 4
    streaming = set()
    for path in paths:
        manifest = load_artifact(path).manifest
        streams = [member.streams for member in manifest.members]
        assert (manifest.streaming is not None) == all(streams)
        assert all(streams) or not any(streams)
        if manifest.streaming is not None:
            streaming.add(f"{manifest.name}/{manifest.version}")
    assert "equities-1d/2.0.0" in streaming
    assert {"equities-1d/1.2.0", "crypto-1h/1.0.0"}.isdisjoint(streaming)
