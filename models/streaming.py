"""Streaming members: an LSTM that scores a new candle with one step from per-symbol state.

The definition (the windowed reference): a streaming member's output at candle ``t`` with a history
of ``n`` candles is its LSTM run from a zero state over the feature rows of candles ``t-n+1 .. t``,
then its head. The feature row of candle ``u`` is the newest row of
``models.features.window_features`` over the ``lookback + 1`` candles ending at ``u``
(``newest_features``): scale-free by
that lookback's own volatility, so a row depends on a bounded past and never on where the window
starts. ``reference`` computes this from a window; ``advance`` carries ``(h, c)`` one candle
forward and ``emit`` reads the outputs from a state, which is what the daemon runs per candle. Both
agree within float tolerance (``tests/models/test_streaming.py``).

A window of ``span + lookback`` candles holds every candle the output at its newest candle needs
for any history up to ``span``: the daemon rebuilds a lost state exactly from the window it keeps
(``daemon.recurrent_state``), stepping at most ``span`` candles.

The state of a symbol is one float32 row: per member, per layer, ``h`` then ``c`` (``state_size``
values in all). The LSTM layers are separate one-layer ``nn.LSTM``s: the reference runs them whole
over the sequence (fast to train), the step reads the same weights (``F.linear`` and the gate
functions), so there is one set of parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.networks import N_FEATURES, Ensemble, Member, WindowFeatures, lane_sigmoid, window_volatility

SPAN = 48
"""Longest history a streaming member reads, in candles (``W``): copies of the state reset every
``SPAN`` candles, staggered by half, so a signal reads a history of ``SPAN/2 + 1 .. SPAN`` candles."""
LOOKBACK = 16
"""Candles before a candle that its feature row reads (``SPAN + LOOKBACK`` = the bundled 64-candle window)."""


def lookbacks(x: Tensor, lookback: int) -> Tensor:
    """``[B, T, 5]`` candles to ``[B * (T - lookback), lookback + 1, 5]``: for each candle from
    ``lookback`` on, the ``lookback + 1`` candles ending at it."""
    b, t = x.shape[0], x.shape[1]
    return x.unfold(1, lookback + 1, 1).permute(0, 1, 3, 2).reshape(b * (t - lookback), lookback + 1, 5)


def newest_features(x: Tensor, sigma_floor: float, volume_floor: float, position_floor: float, rolling: int) -> Tensor:
    """Raw features ``[B, F]`` of the newest candle of ``[B, lookback + 1, 5]`` candles: the newest
    row of ``models.features.window_features`` over them, computed for that row only."""
    o, h, lo, c, v = x[..., 0], x[..., 1], x[..., 2], x[..., 3], x[..., 4]
    prev_close = torch.cat([o[:, :1], c[:, :-1]], dim=1)
    ret = torch.log(c / prev_close)
    sigma = ret.std(dim=1, unbiased=False) + sigma_floor
    log_volume = torch.log1p(v)
    volume_z = (log_volume[:, -1] - log_volume.mean(dim=1)) / (log_volume.std(dim=1, unbiased=False) + volume_floor)
    log_close = torch.log(c)
    low_close = log_close.min(dim=1).values
    high_close = log_close.max(dim=1).values
    o1, h1, l1, c1, p1 = o[:, -1], h[:, -1], lo[:, -1], c[:, -1], prev_close[:, -1]
    columns = [
        ret[:, -1] / sigma,
        torch.log(o1 / p1) / sigma,
        torch.log(c1 / o1) / sigma,
        torch.log(h1 / l1) / sigma,
        torch.log(h1 / torch.maximum(o1, c1)) / sigma,
        torch.log(torch.minimum(o1, c1) / l1) / sigma,
        log_volume[:, -1] - log_volume[:, -2],
        volume_z,
        ret[:, ret.shape[1] - rolling :].std(dim=1, unbiased=False) / sigma,
        (log_close[:, -1] - low_close) / (high_close - low_close + position_floor),
        torch.log(sigma),
    ]
    return torch.stack(columns, dim=-1)


def raw_features(features: WindowFeatures, x: Tensor) -> Tensor:
    """``newest_features`` with the floors and rolling length of ``features``."""
    return newest_features(x, features.sigma_floor, features.volume_floor, features.position_floor, features.rolling)


class StreamingLstmMember(Member):
    """An LSTM of one or two layers over lookback features, runnable a candle at a time."""

    def __init__(
        self,
        horizons: int,
        quantiles: int,
        hidden: int = 64,
        layers: int = 1,
        *,
        span: int = SPAN,
        lookback: int = LOOKBACK,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(hidden, horizons, quantiles)
        if layers not in (1, 2):
            raise ValueError("a streaming member has 1 or 2 layers")
        if span < 2 or span % 2:
            raise ValueError("span must be even (the two state copies are staggered by span / 2)")
        self.hidden = hidden
        self.depth = layers
        self.span = span
        self.lookback = lookback
        self.dropout = dropout
        self.state_size = 2 * layers * hidden
        self.cells = nn.ModuleList(
            [nn.LSTM(N_FEATURES if i == 0 else hidden, hidden, 1, batch_first=True) for i in range(layers)]
        )

    def standardise(self, raw: Tensor) -> Tensor:
        return (raw - self.features.mean) / self.features.std

    def predict(self, x: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """Its own lookback features, not the ensemble's window features: beside windowed members
        in an ``Ensemble`` it scores as ``forward`` does."""
        return self.forward(x)

    def run(self, rows: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs after running from a zero state over standardised rows ``[B, n, F]``."""
        out = rows
        for i, cell in enumerate(self.cells):
            if i > 0:
                out = F.dropout(out, self.dropout, self.training)
            out, _ = cell(out)
        logits, quantiles = self.head(out[:, -1], sigma)
        return logits, quantiles

    def reference(self, x: Tensor, history: int) -> tuple[Tensor, Tensor]:
        """The windowed reference: outputs at the newest candle of ``x`` for a history of ``history``
        candles (``x`` holds at least ``history + lookback`` candles)."""
        t = x.shape[1]
        recent = x[:, t - history - self.lookback :]
        raw = raw_features(self.features, lookbacks(recent, self.lookback))
        rows = self.standardise(raw.reshape(x.shape[0], history, raw.shape[1]))
        return self.run(rows, window_volatility(x[:, t - self.lookback - 1 :], self.features.sigma_floor))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Training draws one history per batch from those the service reads (``span/2 + 1 .. span``);
        evaluation reads the longest the window allows, up to ``span``."""
        longest = min(self.span, x.shape[1] - self.lookback)
        history = longest
        if self.training:
            shortest = min(longest, self.span // 2 + 1)
            history = int(torch.randint(shortest, longest + 1, (1,)).item())
        return self.reference(x, history)

    def advance(self, state: Tensor, raw: Tensor) -> Tensor:
        """The state ``[B, state_size]`` after one candle whose raw feature row is ``raw [B, F]``."""
        x = self.standardise(raw)
        h_size = self.hidden
        parts: list[Tensor] = []
        for i, cell in enumerate(self.cells):
            base = 2 * i * h_size
            h = state[:, base : base + h_size]
            c = state[:, base + h_size : base + 2 * h_size]
            gates = F.linear(x, cell.weight_ih_l0, cell.bias_ih_l0) + F.linear(h, cell.weight_hh_l0, cell.bias_hh_l0)
            squashed = torch.sigmoid(gates)
            candidate = torch.tanh(gates[:, 2 * h_size : 3 * h_size])
            c = squashed[:, h_size : 2 * h_size] * c + squashed[:, :h_size] * candidate
            x = squashed[:, 3 * h_size :] * torch.tanh(c)
            parts.append(x)
            parts.append(c)
        return torch.cat(parts, dim=1)

    def readout(self, state: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs from a state: the head on the top layer's ``h``."""
        base = 2 * (self.depth - 1) * self.hidden
        logits, quantiles = self.head(state[:, base : base + self.hidden], sigma)
        return logits, quantiles


class StreamingEnsemble(Ensemble):
    """An ensemble of streaming members: the windowed ``forward`` (the reference at the longest
    history the window allows) and, as further TorchScript methods of the same artifact,
    ``reference`` (any history), ``advance`` and ``emit``.

    ``self.features`` standardises the newest lookback row (``last_features``, for drift metrics);
    ``trailing_rates`` reads the whole window, as the windowed ensemble's does.
    """

    def __init__(self, members: list[StreamingLstmMember], horizons: int, steps: list[int] | None = None) -> None:
        if not members:
            raise ValueError("a streaming ensemble needs members")
        spans = {(m.span, m.lookback) for m in members}
        if len(spans) != 1:
            raise ValueError(f"members disagree on span and lookback: {sorted(spans)}")
        super().__init__(list(members), horizons, steps)
        self.span, self.lookback = spans.pop()
        self.sizes = [m.state_size for m in members]
        self.state_size = sum(self.sizes)

    def _lookback(self, window: Tensor) -> Tensor:
        return window[:, window.shape[1] - self.lookback - 1 :]

    @torch.jit.export
    def advance(self, state: Tensor, lookback: Tensor) -> Tensor:
        """States ``[C * B, state_size]`` after the newest candle of each ``lookback [B, lookback + 1, 5]``,
        rows ``C * i .. C * i + C - 1`` of the state (``C`` copies) reading lookback ``i``."""
        raw = raw_features(self.features, lookback)
        copies = state.shape[0] // lookback.shape[0]
        if copies > 1:
            raw = raw.repeat_interleave(copies, dim=0)
        parts: list[Tensor] = []
        start = 0
        for i, member in enumerate(self.members):
            size = self.sizes[i]
            parts.append(member.advance(state[:, start : start + size], raw))
            start += size
        return torch.cat(parts, dim=1)

    @torch.jit.export
    def emit(self, state: Tensor, window: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The ensemble's five outputs (as ``forward``'s) from states that have stepped each window's
        newest candle; ``window [B, T, 5]`` gives the trailing up rates and the newest lookback."""
        lookback = self._lookback(window)
        sigma = window_volatility(lookback, self.features.sigma_floor)
        logits: list[Tensor] = []
        quantiles: list[Tensor] = []
        start = 0
        for i, member in enumerate(self.members):
            size = self.sizes[i]
            z, q = member.readout(state[:, start : start + size], sigma)
            logits.append(z)
            quantiles.append(q)
            start += size
        return self._outputs(torch.stack(logits, dim=1), torch.stack(quantiles, dim=1), window)

    @torch.jit.export
    def reference(self, window: Tensor, history: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The five outputs at each window's newest candle for a history of ``history`` candles."""
        logits: list[Tensor] = []
        quantiles: list[Tensor] = []
        for member in self.members:
            z, q = member.reference(window, history)
            logits.append(z)
            quantiles.append(q)
        return self._outputs(torch.stack(logits, dim=1), torch.stack(quantiles, dim=1), window)

    def member_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """As ``Ensemble.member_outputs`` at the longest history, with the newest lookback row's
        standardised features (``[B, 1, F]``: what ``emit`` reports for drift metrics)."""
        logits: list[Tensor] = []
        quantiles: list[Tensor] = []
        for member in self.members:
            z, q = member(x)
            logits.append(z)
            quantiles.append(q)
        last = (raw_features(self.features, self._lookback(x)) - self.features.mean) / self.features.std
        return torch.stack(logits, dim=1), torch.stack(quantiles, dim=1), last[:, None, :]

    def _outputs(
        self, logits: Tensor, quantiles: Tensor, window: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        probabilities, q, disagreement = self.combine(logits, quantiles, self.trailing_rates(window))
        last = (raw_features(self.features, self._lookback(window)) - self.features.mean) / self.features.std
        return probabilities, q, disagreement, lane_sigmoid(logits), last

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return self.reference(x, min(self.span, x.shape[1] - self.lookback))


STREAMING_KINDS: dict[str, tuple[int, int]] = {"streaming-lstm": (64, 1), "streaming-stacked": (32, 2)}
"""Member kinds that stream, with their default (hidden, layers): one wide layer, or two narrow ones."""


def build_streaming_member(
    kind: str, horizons: int, quantiles: int, window: int, hidden: int | None = None
) -> StreamingLstmMember:
    """A fresh streaming member of ``kind`` (one of ``STREAMING_KINDS``) for ``window``-candle
    windows: it reads histories up to ``window - LOOKBACK`` candles."""
    default_hidden, layers = STREAMING_KINDS[kind]
    return StreamingLstmMember(
        horizons, quantiles, hidden or default_hidden, layers, span=window - LOOKBACK, lookback=LOOKBACK
    )


def streaming_ensemble(
    horizons: int, quantiles: int, shapes: list[tuple[int, int]], *, span: int = SPAN, lookback: int = LOOKBACK
) -> StreamingEnsemble:
    """A fresh ensemble with one streaming member per ``(hidden, layers)`` shape."""
    members = [
        StreamingLstmMember(horizons, quantiles, hidden, layers, span=span, lookback=lookback)
        for hidden, layers in shapes
    ]
    return StreamingEnsemble(members, horizons)


def lookback_features(windows: Tensor, lookback: int) -> Tensor:
    """Raw feature rows ``[N, F]`` of every candle of ``[B, T, 5]`` windows that has ``lookback``
    candles before it (what the streaming members standardise)."""
    return raw_features(WindowFeatures(), lookbacks(windows, lookback))


def fit_standardisation(ensemble: Ensemble, windows: Tensor, floor: float = 1e-6) -> None:
    """Set the streaming members' feature statistics (and a streaming ensemble's own) from the
    lookback rows of training windows; windowed members keep theirs."""
    streaming = [m for m in ensemble.members if isinstance(m, StreamingLstmMember)]
    if not streaming:
        return
    targets = [m.features for m in streaming]
    if isinstance(ensemble, StreamingEnsemble):
        targets.append(ensemble.features)
    rows = lookback_features(windows, streaming[0].lookback).double()
    mean = rows.mean(dim=0).float()
    std = (rows.std(dim=0, unbiased=False) + floor).float()
    with torch.no_grad():
        for features in targets:
            features.mean.copy_(mean)
            features.std.copy_(std)
