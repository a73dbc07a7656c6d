"""The ensemble's members and the ensemble itself, written to compile with TorchScript.

Every member takes a raw OHLCV window ``[B, T, 5]`` and computes its features in the graph
(``WindowFeatures``, specified by ``models.features``). Each predicts, per horizon, the logit of
an up move and quantiles of the log return.

Attention is written with plain matmul and softmax rather than ``nn.MultiheadAttention`` or
``nn.TransformerEncoderLayer``: their fused inference kernels give results that depend on which
other windows share the batch, and the daemon promises that a window scores the same whatever
batch it lands in (see ``docs/design.md``, batch invariance).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.features import (
    FEATURE_NAMES,
    POSITION_FLOOR,
    ROLLING,
    SIGMA_FLOOR,
    VOLUME_FLOOR,
)

N_FEATURES = len(FEATURE_NAMES)
MEMBER_KINDS = ("lstm", "bilstm", "stacked", "attention", "transformer", "multiscale")


class WindowFeatures(nn.Module):
    """``models.features.window_features`` in the graph, then standardised with training statistics."""

    mean: Tensor
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        # Attributes, not globals: TorchScript cannot read module-level floats.
        self.sigma_floor = SIGMA_FLOOR
        self.volume_floor = VOLUME_FLOOR
        self.position_floor = POSITION_FLOOR
        self.rolling = ROLLING
        self.register_buffer("mean", torch.zeros(N_FEATURES))
        self.register_buffer("std", torch.ones(N_FEATURES))

    def raw(self, x: Tensor) -> Tensor:
        o, h, lo, c, v = x[..., 0], x[..., 1], x[..., 2], x[..., 3], x[..., 4]
        prev_close = torch.cat([o[:, :1], c[:, :-1]], dim=1)
        ret = torch.log(c / prev_close)
        sigma = ret.std(dim=1, keepdim=True, unbiased=False) + self.sigma_floor
        log_volume = torch.log1p(v)
        prev_log_volume = torch.cat([log_volume[:, :1], log_volume[:, :-1]], dim=1)
        volume_z = (log_volume - log_volume.mean(dim=1, keepdim=True)) / (
            log_volume.std(dim=1, keepdim=True, unbiased=False) + self.volume_floor
        )
        log_close = torch.log(c)
        low_close = log_close.min(dim=1, keepdim=True).values
        high_close = log_close.max(dim=1, keepdim=True).values
        columns = [
            ret / sigma,
            torch.log(o / prev_close) / sigma,
            torch.log(c / o) / sigma,
            torch.log(h / lo) / sigma,
            torch.log(h / torch.maximum(o, c)) / sigma,
            torch.log(torch.minimum(o, c) / lo) / sigma,
            log_volume - prev_log_volume,
            volume_z,
            _rolling_std(ret, self.rolling) / sigma,
            (log_close - low_close) / (high_close - low_close + self.position_floor),
            torch.log(sigma).expand_as(ret),
        ]
        return torch.stack(columns, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return (self.raw(x) - self.mean) / self.std


def _rolling_std(values: Tensor, k: int) -> Tensor:
    """Causal standard deviation over the last ``k`` steps, from cumulative sums."""
    n = values.shape[1]
    zeros = torch.zeros_like(values[:, :1])
    s1 = torch.cat([zeros, torch.cumsum(values, dim=1)], dim=1)
    s2 = torch.cat([zeros, torch.cumsum(values * values, dim=1)], dim=1)
    ends = torch.arange(1, n + 1, device=values.device)
    starts = torch.clamp(ends - k, min=0)
    count = (ends - starts).to(values.dtype)
    mean = (s1[:, ends] - s1[:, starts]) / count
    var = (s2[:, ends] - s2[:, starts]) / count - mean * mean
    return torch.sqrt(torch.clamp(var, min=0.0))


def _lanes(x: Tensor) -> Tensor:
    """``x`` as rows ``[B, n]`` zero-padded to a multiple of 16 columns.

    Elementwise exp/log kernels compute the elements past the last full SIMD vector with a
    scalar routine that can differ in the last bit; whole rows of 16 lanes leave no such tail,
    so every element is computed the same way whatever the batch size.
    """
    rows = x.reshape(x.shape[0], -1)
    pad = (-rows.shape[1]) % 16
    return F.pad(rows, [0, pad])


def lane_sigmoid(x: Tensor) -> Tensor:
    """``torch.sigmoid`` that is bitwise independent of the batch size (see ``_lanes``)."""
    n = x[0].numel()
    return torch.sigmoid(_lanes(x))[:, :n].reshape(x.shape)


def lane_softplus(x: Tensor) -> Tensor:
    """``F.softplus`` that is bitwise independent of the batch size (see ``_lanes``)."""
    n = x[0].numel()
    return F.softplus(_lanes(x))[:, :n].reshape(x.shape)


def pool(x: Tensor, factor: int) -> Tensor:
    """Coarser candles from ``[B, T, 5]``: first open, max high, min low, last close, summed volume."""
    b, t = x.shape[0], x.shape[1]
    g = x.reshape(b, t // factor, factor, 5)
    return torch.stack(
        [
            g[:, :, 0, 0],
            g[:, :, :, 1].max(dim=2).values,
            g[:, :, :, 2].min(dim=2).values,
            g[:, :, -1, 3],
            g[:, :, :, 4].sum(dim=2),
        ],
        dim=-1,
    )


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention of ``query`` over ``memory``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError("dim must be divisible by heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: Tensor, memory: Tensor) -> Tensor:
        b, tq, d = query.shape
        tk = memory.shape[1]
        hd = d // self.heads
        q = self.q(query).reshape(b, tq, self.heads, hd).transpose(1, 2)
        k, v = self.kv(memory).chunk(2, dim=-1)
        k = k.reshape(b, tk, self.heads, hd).transpose(1, 2)
        v = v.reshape(b, tk, self.heads, hd).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        attended: Tensor = self.out((weights @ v).transpose(1, 2).reshape(b, tq, d))
        return attended


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer (attention, then a GELU feed-forward)."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.drop(self.attention(x, x)))
        out: Tensor = self.norm2(x + self.drop(self.ff(x)))
        return out


class Head(nn.Module):
    """Per horizon: the logit of an up move and monotone log-return quantiles.

    Quantiles come out in units of the window's own volatility (``sigma``, as the features use it)
    times a per-horizon ``return_scale`` fitted on training windows: the features are scale-free,
    so the network predicts scale-free quantiles and volatility clustering carries through.
    """

    return_scale: Tensor

    def __init__(self, dim: int, horizons: int, quantiles: int) -> None:
        super().__init__()
        self.horizons = horizons
        self.quantiles = quantiles
        self.net = nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Linear(32, horizons * (1 + quantiles)))
        self.register_buffer("return_scale", torch.ones(horizons))

    def forward(self, z: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(z)
        logits = out[:, : self.horizons]
        raw = out[:, self.horizons :].reshape(-1, self.horizons, self.quantiles)
        steps = torch.cat([raw[:, :, :1], lane_softplus(raw[:, :, 1:])], dim=2)
        scale = self.return_scale[None, :, None] * sigma[:, None, None]
        quantiles = torch.cumsum(steps, dim=2) * scale
        return logits, quantiles


def window_volatility(x: Tensor, floor: float) -> Tensor:
    """``[B]`` the realised volatility ``sigma`` of each window (``models.features.window_volatility``)."""
    o, c = x[..., 0], x[..., 3]
    prev_close = torch.cat([o[:, :1], c[:, :-1]], dim=1)
    return torch.log(c / prev_close).std(dim=1, unbiased=False) + floor


class Member(nn.Module):
    """Base of the members: features in the graph, an encoder, a head."""

    def __init__(self, dim: int, horizons: int, quantiles: int) -> None:
        super().__init__()
        self.features = WindowFeatures()
        self.head = Head(dim, horizons, quantiles)

    def encode(self, x: Tensor, features: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, x: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        sigma = window_volatility(x, self.features.sigma_floor)
        logits, quantiles = self.head(self.encode(x, features), sigma)
        return logits, quantiles

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.predict(x, self.features(x))


class LstmMember(Member):
    """Standard LSTM: two layers with dropout between them; the last hidden state feeds the head."""

    def __init__(self, horizons: int, quantiles: int, hidden: int = 48, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__(hidden, horizons, quantiles)
        self.lstm = nn.LSTM(N_FEATURES, hidden, layers, batch_first=True, dropout=dropout)

    def encode(self, x: Tensor, features: Tensor) -> Tensor:
        out, _ = self.lstm(features)
        last: Tensor = out[:, -1]
        return last


class StackedLstmMember(LstmMember):
    """Stacked LSTM: three narrower layers."""

    def __init__(self, horizons: int, quantiles: int, hidden: int = 32) -> None:
        super().__init__(horizons, quantiles, hidden=hidden, layers=3, dropout=0.1)


class BiLstmMember(Member):
    """Bidirectional LSTM: the forward pass's last state and the backward pass's first state."""

    def __init__(self, horizons: int, quantiles: int, hidden: int = 32) -> None:
        super().__init__(2 * hidden, horizons, quantiles)
        self.hidden = hidden
        self.lstm = nn.LSTM(N_FEATURES, hidden, 1, batch_first=True, bidirectional=True)

    def encode(self, x: Tensor, features: Tensor) -> Tensor:
        out, _ = self.lstm(features)
        return torch.cat([out[:, -1, : self.hidden], out[:, 0, self.hidden :]], dim=1)


class AttentionLstmMember(Member):
    """LSTM whose last state attends, with several heads, over all its hidden states."""

    def __init__(self, horizons: int, quantiles: int, hidden: int = 48, heads: int = 4) -> None:
        super().__init__(2 * hidden, horizons, quantiles)
        self.lstm = nn.LSTM(N_FEATURES, hidden, 1, batch_first=True)
        self.attention = SelfAttention(hidden, heads)

    def encode(self, x: Tensor, features: Tensor) -> Tensor:
        out, _ = self.lstm(features)
        last = out[:, -1:]
        context = self.attention(last, out)
        return torch.cat([last[:, 0], context[:, 0]], dim=1)


class TransformerLstmMember(Member):
    """LSTM-Transformer hybrid: an LSTM encoder followed by Transformer encoder layers."""

    def __init__(self, horizons: int, quantiles: int, hidden: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__(hidden, horizons, quantiles)
        self.lstm = nn.LSTM(N_FEATURES, hidden, 1, batch_first=True)
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, 2 * hidden, 0.1) for _ in range(layers)])

    def encode(self, x: Tensor, features: Tensor) -> Tensor:
        out, _ = self.lstm(features)
        for layer in self.layers:
            out = layer(out)
        last: Tensor = out[:, -1]
        return last


class Pathway(nn.Module):
    """One timeframe of the multi-timeframe member: the window pooled by ``scale``, standardised
    with statistics of training windows pooled the same way (coarser candles have wider ranges and
    larger volatility), then an LSTM."""

    def __init__(self, scale: int, hidden: int) -> None:
        super().__init__()
        self.scale = scale
        self.features = WindowFeatures()
        self.lstm = nn.LSTM(N_FEATURES, hidden, 1, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        coarse = x if self.scale == 1 else pool(x, self.scale)
        out, _ = self.lstm(self.features(coarse))
        last: Tensor = out[:, -1]
        return last


class MultiTimeframeMember(Member):
    """The window pooled to coarser timeframes in the graph, one LSTM pathway each, fused."""

    def __init__(self, horizons: int, quantiles: int, hidden: int = 24, scales: tuple[int, ...] = (1, 4, 16)) -> None:
        super().__init__(hidden * len(scales), horizons, quantiles)
        self.paths = nn.ModuleList([Pathway(scale, hidden) for scale in scales])

    def encode(self, x: Tensor, features: Tensor) -> Tensor:
        return torch.cat([path(x) for path in self.paths], dim=1)


def build_member(kind: str, horizons: int, quantiles: int, hidden: int | None = None) -> Member:
    """A fresh, untrained member of the given kind (one of ``MEMBER_KINDS``), with its own default
    hidden size unless ``hidden`` is given (a multiple of 4, for the attention heads)."""
    builders = {
        "lstm": LstmMember,
        "bilstm": BiLstmMember,
        "stacked": StackedLstmMember,
        "attention": AttentionLstmMember,
        "transformer": TransformerLstmMember,
        "multiscale": MultiTimeframeMember,
    }
    if kind not in builders:
        raise ValueError(f"unknown member kind {kind!r}; known: {', '.join(MEMBER_KINDS)}")
    member: Member = (
        builders[kind](horizons, quantiles) if hidden is None else builders[kind](horizons, quantiles, hidden)
    )
    return member


class Ensemble(nn.Module):
    """Weighted members, calibrated per horizon.

    ``forward`` returns, for ``[B, T, 5]`` windows:
    ``probabilities [B, H]`` (calibrated), ``quantiles [B, H, Q]`` (log returns),
    ``disagreement [B, H]`` (std of member probabilities), ``member_probabilities [B, M, H]``
    and ``last_features [B, F]`` (standardised features of the newest candle, for drift metrics).
    """

    weights: Tensor
    calibration_scale: Tensor
    calibration_bias: Tensor
    drift_steps: Tensor
    drift_coef: Tensor
    drift_centre: Tensor

    def __init__(self, members: list[Member], horizons: int, steps: list[int] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.features = WindowFeatures()
        count = len(members)
        self.register_buffer("weights", torch.full((count, horizons), 1.0 / count))
        self.register_buffer("calibration_scale", torch.ones(horizons))
        self.register_buffer("calibration_bias", torch.zeros(horizons))
        # Calibration-in-the-large from the window's own realised up moves (models.calibration);
        # a step of 0 turns it off for that horizon.
        self.register_buffer("drift_steps", torch.tensor(steps or [0] * horizons, dtype=torch.long))
        self.register_buffer("drift_coef", torch.zeros(horizons))
        self.register_buffer("drift_centre", torch.zeros(horizons))

    def member_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Member logits ``[B, M, H]``, member quantiles ``[B, M, H, Q]`` and standardised features."""
        features = self.features(x)
        logits: list[Tensor] = []
        quantiles: list[Tensor] = []
        for member in self.members:
            z, q = member.predict(x, features)
            logits.append(z)
            quantiles.append(q)
        return torch.stack(logits, dim=1), torch.stack(quantiles, dim=1), features

    def trailing_rates(self, x: Tensor) -> Tensor:
        """``[B, H]`` share of ``close[t+h] > close[t]`` over the pairs inside each window
        (``models.calibration.trailing_rates``); the centre where ``h`` is off or too long. Sums of
        0/1 values are exact, so the result does not depend on the batch."""
        close = x[:, :, 3]
        length = close.shape[1]
        columns: list[Tensor] = []
        for j in range(self.drift_steps.shape[0]):
            h = int(self.drift_steps[j].item())
            if h < 1 or h >= length:
                columns.append(self.drift_centre[j].expand(close.shape[0]))
            else:
                up = (close[:, h:] > close[:, : length - h]).float()
                columns.append(up.sum(dim=1) / float(length - h))
        return torch.stack(columns, dim=1)

    def combine(self, logits: Tensor, quantiles: Tensor, trailing: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Calibrated probabilities, weighted quantiles and disagreement from member outputs and
        the windows' trailing up rates.

        Sums over members run as explicit elementwise accumulation in member order: a reduction
        kernel over the member axis vectorises differently for different batch sizes, which
        would make a window's score depend on its batch.
        """
        count = logits.shape[1]
        z = logits[:, 0] * self.weights[0]
        q = quantiles[:, 0] * self.weights[0][None, :, None]
        member_p = lane_sigmoid(logits)
        mean_p = member_p[:, 0]
        for m in range(1, count):
            z = z + logits[:, m] * self.weights[m]
            q = q + quantiles[:, m] * self.weights[m][None, :, None]
            mean_p = mean_p + member_p[:, m]
        mean_p = mean_p / count
        var_p = (member_p[:, 0] - mean_p) ** 2
        for m in range(1, count):
            var_p = var_p + (member_p[:, m] - mean_p) ** 2
        drift = self.drift_coef * (trailing - self.drift_centre)
        probabilities = lane_sigmoid(self.calibration_scale * z + self.calibration_bias + drift)
        return probabilities, q, torch.sqrt(var_p / count)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        logits, quantiles, features = self.member_outputs(x)
        probabilities, q, disagreement = self.combine(logits, quantiles, self.trailing_rates(x))
        return probabilities, q, disagreement, lane_sigmoid(logits), features[:, -1]
