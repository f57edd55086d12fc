"""Waveform augmentation as named, seeded recipes, applied to a whole batch at once.

A recipe is a set of defaults for :class:`AugmentSpec`; any field given explicitly wins, so
``AugmentSpec(recipe="bifsmn", noise_prob=0.5)`` is BiFSMN's recipe with more noise.

``bifsmn`` (BiFSMN / BiFSMNv2 official code; shared/reference/bifsmn.md section 7), in this order:

1. p = 0.3: blend a random background-noise crop ``n``: ``x * (1 - s) + n * s``, ``s ~ U(0, 0.3)``;
2. p = 0.5: gain ``g ~ U(0.7, 1.1)``: ``x * g``;
3. p = 0.5: speed and pitch by nearest-neighbour resampling with factor ``1 / (1 + s)``,
   ``s ~ U(-0.2, 0.2)``, as ``F.interpolate(mode="nearest", scale_factor=1 / (1 + s))``: the
   clip becomes ``floor(T / (1 + s))`` samples long, sample ``j`` taken from ``floor(j * (1 + s))``;
4. p = 0.5: time shift by a uniform integer delay ``d`` in [-3200, 3200] samples (+-0.2 s at
   16 kHz), zero-filled;
5. fix the length to ``T`` (zero-pad or trim the end).

``tf`` (TensorFlow speech_commands tutorial; shared/reference/speech_commands.md section 6):

1. always: time shift by a uniform integer delay in [-1600, 1600) samples (100 ms), zero-padded;
2. p = 0.8: add a random noise crop at volume ``v ~ U(0, 0.1)``: ``x + n * v``;
3. clip to [-1, 1];
4. entries flagged as silence: foreground ``x 0`` and always noise at volume ``U(0, 1)``.

``none`` turns every operation off (validation and test never augment).

:func:`mix_at_snr` is not a training recipe: it adds one noise crop to every clip at a fixed
signal-to-noise ratio, to build a noisy test set (``benchmarks/heldout_renders.py --snr``).

Definitions shared by every recipe: a noise crop is ``T`` consecutive samples of one noise file,
the file uniform over the files, the start uniform over the positions where the crop fits. A
shift by delay ``d`` maps ``y[t] = x[t - d]`` (``d > 0`` moves the clip later). Operations 3-5
of ``bifsmn`` are one gather with index arithmetic, so each batch costs a few passes over
``(batch, T)`` whatever the mix of operations.

Randomness: every batch draws the same fixed table of uniforms from the generator (one row per
clip, one column per random quantity, whether or not the operation fires), so a generator seed
fixes the batch, and changing one probability does not reshuffle the other operations' draws.

Deviations from the official BiFSMN code: it augments the raw, variable-length clip and fixes
the length at the end; here clips come from the decode cache already padded/trimmed to ``T``
(a clip shorter than 1 s therefore also gets noise in its padding, and a slowed-down clip keeps
its padding's zeros). Its noise crop drew ``randint(0, len - T - 1)`` (never the last position);
here every position is possible.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["NUM_DRAWS", "RECIPES", "AugmentSpec", "augment_batch", "draw_uniforms", "mix_at_snr"]


def _desc(text: str) -> dict[str, Any]:
    return {"json_schema_extra": {"description": text}}


# Recipe -> field values; a field given explicitly in the spec wins. Fields not listed keep the
# class defaults, which switch every operation off.
RECIPES: dict[str, dict[str, Any]] = {
    "none": {},
    # bifsmn.md section 7 (official BiFSMN/BiFSMNv2 code and README command)
    "bifsmn": {
        "order": "noise_gain_speed_shift",
        "noise_prob": 0.3, "noise_mix": "blend", "noise_level_min": 0.0, "noise_level_max": 0.3,
        "gain_prob": 0.5, "gain_min": 0.7, "gain_max": 1.1,
        "speed_prob": 0.5, "speed_max": 0.2,
        "shift_prob": 0.5, "shift_min_samples": -3200, "shift_max_samples": 3200,
        "clip": False, "silence_noise": False,
    },
    # speech_commands.md section 6 (TF tutorial input_data.py; MLCommons tiny kws_util.py)
    "tf": {
        "order": "gain_speed_shift_noise",
        "shift_prob": 1.0, "shift_min_samples": -1600, "shift_max_samples": 1599,
        "noise_prob": 0.8, "noise_mix": "add", "noise_level_min": 0.0, "noise_level_max": 0.1,
        "clip": True, "silence_noise": True, "silence_volume_max": 1.0,
    },
}


class AugmentSpec(BaseModel):
    """Training-time waveform augmentation: a named recipe plus per-field overrides.

    Unset fields take the recipe's values (:data:`RECIPES`); the module docstring defines each
    operation. Probabilities are per clip and independent.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    recipe: Literal["none", "bifsmn", "tf"] = Field("none", **_desc("none | bifsmn | tf: the defaults"))
    order: Literal["noise_gain_speed_shift", "gain_speed_shift_noise"] = Field(
        "noise_gain_speed_shift",
        **_desc("noise before gain/speed/shift (BiFSMN: the shift also moves the noise) or after (TF)"))
    noise_prob: float = Field(0.0, ge=0, le=1, **_desc("probability of mixing in a background-noise crop"))
    noise_mix: Literal["blend", "add"] = Field(
        "blend", **_desc("blend: x*(1-s) + n*s (BiFSMN); add: x + n*s (TF)"))
    noise_level_min: float = Field(0.0, ge=0, le=1, **_desc("s ~ U(noise_level_min, noise_level_max)"))
    noise_level_max: float = Field(0.0, ge=0, le=1, **_desc("upper bound of the noise level s"))
    gain_prob: float = Field(0.0, ge=0, le=1, **_desc("probability of a random gain"))
    gain_min: float = Field(1.0, gt=0, le=10, **_desc("gain ~ U(gain_min, gain_max)"))
    gain_max: float = Field(1.0, gt=0, le=10, **_desc("upper bound of the gain"))
    speed_prob: float = Field(0.0, ge=0, le=1, **_desc("probability of a speed/pitch change"))
    speed_max: float = Field(0.0, ge=0, le=0.9,
                             **_desc("s ~ U(-speed_max, speed_max); nearest-neighbour resampling by 1/(1+s)"))
    shift_prob: float = Field(0.0, ge=0, le=1, **_desc("probability of a time shift"))
    shift_min_samples: int = Field(0, ge=-1_000_000, le=1_000_000,
                                   **_desc("delay d ~ uniform integer in [min, max], inclusive; d > 0 is later"))
    shift_max_samples: int = Field(0, ge=-1_000_000, le=1_000_000, **_desc("largest delay, inclusive"))
    clip: bool = Field(False, **_desc("clip the result to [-1, 1] (TF)"))
    silence_noise: bool = Field(
        False, **_desc("silence entries: foreground x 0 and always noise at level U(0, silence_volume_max) "
                       "(TF); false treats them like any clip"))
    silence_volume_max: float = Field(1.0, ge=0, le=1, **_desc("upper bound of the silence noise level"))

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            defaults = RECIPES.get(data.get("recipe", "none"))
            if defaults is not None:
                data = {**defaults, **data}
        return data

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentSpec:
        for lo, hi in (("noise_level_min", "noise_level_max"), ("gain_min", "gain_max"),
                       ("shift_min_samples", "shift_max_samples")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) must be <= {hi} ({getattr(self, hi)})")
        return self

    @property
    def active(self) -> bool:
        """Whether any operation can change a clip."""
        return bool(self.noise_prob or self.gain_prob or self.speed_prob or self.shift_prob
                    or self.clip or self.silence_noise)


# Columns of the per-batch table of uniforms (batch, NUM_DRAWS): one per random quantity.
_NOISE_ON, _NOISE_FILE, _NOISE_POS, _NOISE_LEVEL = 0, 1, 2, 3
_GAIN_ON, _GAIN = 4, 5
_SPEED_ON, _SPEED = 6, 7
_SHIFT_ON, _SHIFT = 8, 9
_SILENCE_LEVEL = 10
NUM_DRAWS = 11


def draw_uniforms(batch: int, generator: torch.Generator) -> torch.Tensor:
    """The ``(batch, NUM_DRAWS)`` float64 table of U(0, 1) draws one batch consumes.

    A rank holding rows ``r::world_size`` of a global batch draws the global table and passes
    its rows as ``augment_batch(..., draws=table[r::world_size])``, so the ranks together
    augment exactly as one process would.
    """
    return torch.rand((batch, NUM_DRAWS), generator=generator, dtype=torch.float64)


def _warp(x: torch.Tensor, rows: torch.Tensor, ratio: torch.Tensor, kept: torch.Tensor,
          delay: torch.Tensor) -> torch.Tensor:
    """Speed change then shift then fix length, for ``rows`` of ``x``, as one gather.

    Row ``b`` becomes ``y[t] = x[b, min(floor((t - d) * r), T - 1)]`` where ``lo <= t < hi``,
    else 0, with ``r = ratio`` (1 + s, float32 as ``F.interpolate`` computes it), ``L = kept``
    (length after resampling, ``floor(T / r)``), ``d = delay``, ``lo = max(d, 0)`` (zeros
    shifted in) and ``hi = min(L, L + d, T)`` (end of the shifted clip and of the length fix).
    """
    length = x.shape[-1]
    t = torch.arange(length, device=x.device, dtype=torch.float32)  # (T,), exact integers
    pos = t - delay[:, None].to(torch.float32)  # (rows, T): time in the resampled clip
    src = pos.mul_(ratio[:, None]).floor_().clamp_(0, length - 1).to(torch.int64)
    lo = delay.clamp(min=0)
    hi = torch.minimum(torch.minimum(kept, kept + delay), torch.full_like(kept, length))
    outside = (t < lo[:, None].to(torch.float32)) | (t >= hi[:, None].to(torch.float32))  # (rows, T)
    return torch.gather(x[rows], 1, src).masked_fill_(outside, 0.0)


def augment_batch(waves: torch.Tensor, noise: torch.Tensor, spec: AugmentSpec, generator: torch.Generator | None,
                  *, noise_offsets: torch.Tensor | None = None, silence: torch.Tensor | None = None,
                  draws: torch.Tensor | None = None) -> torch.Tensor:
    """Augment a batch of clips; vectorised over the batch, deterministic given ``generator``.

    Args:
        waves: ``(batch, T)`` float32 clips; never modified.
        noise: ``(total_samples,)`` float32 background noise, files concatenated (may be empty
            when no operation needs noise).
        spec: the augmentation.
        generator: source of all randomness (a CPU generator; draws are moved to ``waves.device``).
        noise_offsets: ``(num_files + 1,)`` int64 file boundaries in ``noise``; ``None`` = one file.
            Each file must hold at least ``T`` samples.
        silence: ``(batch,)`` bool, True for synthetic silence entries (used by ``silence_noise``).
        draws: this batch's table of uniforms (:func:`draw_uniforms`) instead of drawing it from
            ``generator``.

    Returns:
        ``(batch, T)`` float32 (``waves`` itself when ``spec`` changes nothing).

    Raises:
        ValueError: the spec needs noise but ``noise`` is empty, or a noise file is shorter than ``T``.
    """
    if waves.ndim != 2:
        raise ValueError(f"waves must be (batch, samples), got shape {tuple(waves.shape)}")
    if not spec.active:
        return waves
    batch, length = waves.shape
    device = waves.device
    if draws is None:
        if generator is None:
            raise ValueError("augment_batch needs a generator or a table of draws")
        draws = draw_uniforms(batch, generator)
    if tuple(draws.shape) != (batch, NUM_DRAWS):
        raise ValueError(f"draws must have shape ({batch}, {NUM_DRAWS}), got {tuple(draws.shape)}")
    u = draws.to(device=device, dtype=torch.float64)

    # per-clip coefficients: result = warp(x * fg) + crop * nc (or warp(x * fg + crop * nc))
    is_silence = (silence.to(device=device, dtype=torch.bool) if (silence is not None and spec.silence_noise)
                  else torch.zeros(batch, dtype=torch.bool, device=device))
    noise_on = (u[:, _NOISE_ON] < spec.noise_prob) | is_silence
    level = spec.noise_level_min + (spec.noise_level_max - spec.noise_level_min) * u[:, _NOISE_LEVEL]
    level = torch.where(is_silence, spec.silence_volume_max * u[:, _SILENCE_LEVEL], level)
    level = torch.where(noise_on, level, torch.zeros_like(level))
    fg = torch.ones(batch, dtype=torch.float64, device=device)
    if spec.noise_mix == "blend":
        fg = fg - level
    fg = torch.where(is_silence, torch.zeros_like(fg), fg)
    nc = level
    gain_on = u[:, _GAIN_ON] < spec.gain_prob
    gain = torch.where(gain_on, spec.gain_min + (spec.gain_max - spec.gain_min) * u[:, _GAIN], torch.ones_like(fg))
    fg = fg * gain
    if spec.order == "noise_gain_speed_shift":
        nc = nc * gain  # the gain applies to the mix

    crops = None
    noise_rows = torch.nonzero(noise_on).flatten()
    if noise_rows.numel():
        crops = _noise_crops(noise, noise_offsets, length, u[noise_rows, _NOISE_FILE], u[noise_rows, _NOISE_POS])
        crops = crops.mul_(nc[noise_rows, None].to(torch.float32))

    speed_on = u[:, _SPEED_ON] < spec.speed_prob
    shift_on = u[:, _SHIFT_ON] < spec.shift_prob
    warp_rows = torch.nonzero(speed_on | shift_on).flatten()

    out = waves * fg.to(torch.float32)[:, None]
    if crops is not None and spec.order == "noise_gain_speed_shift":
        out.index_add_(0, noise_rows, crops)
    if warp_rows.numel():
        s = -spec.speed_max + 2.0 * spec.speed_max * u[warp_rows, _SPEED]
        ratio = torch.where(speed_on[warp_rows], 1.0 + s, torch.ones_like(s))
        # F.interpolate(scale_factor=1/(1+s)): output floor(T / (1+s)) samples, source scale in float32
        kept = torch.floor(length * (1.0 / ratio)).to(torch.int64)
        ratio32 = (1.0 / (1.0 / ratio)).to(torch.float32)
        span = spec.shift_max_samples - spec.shift_min_samples + 1
        delay = spec.shift_min_samples + torch.floor(u[warp_rows, _SHIFT] * span).to(torch.int64).clamp_(max=span - 1)
        delay = torch.where(shift_on[warp_rows], delay, torch.zeros_like(delay))
        out[warp_rows] = _warp(out, warp_rows, ratio32, kept, delay)
    if crops is not None and spec.order == "gain_speed_shift_noise":
        out.index_add_(0, noise_rows, crops)
    if spec.clip:
        out.clamp_(-1.0, 1.0)
    return out


def mix_at_snr(waves: torch.Tensor, noise: torch.Tensor, snr_db: float, generator: torch.Generator, *,
               noise_offsets: torch.Tensor | None = None, silence: torch.Tensor | None = None) -> torch.Tensor:
    """Add one background-noise crop to every clip at a fixed signal-to-noise ratio: a noisy test set.

    For clip ``x`` and crop ``n`` (file uniform over the files, start uniform where the crop fits,
    as in :func:`augment_batch`) the result is ``clip(x + g n, -1, 1)`` with ``g`` chosen so that
    ``10 log10(mean(x^2) / mean((g n)^2)) = snr_db``, both powers taken over the whole clip. Rows
    flagged in ``silence`` (already noise) and all-zero clips are returned unchanged.

    Args:
        waves: ``(batch, T)`` float32 clips; never modified.
        noise: ``(total_samples,)`` float32 background noise, files concatenated.
        snr_db: the signal-to-noise ratio in decibels (finite).
        generator: a CPU generator; it fixes the crops, so a seed fixes the noisy set.
        noise_offsets: ``(num_files + 1,)`` int64 file boundaries in ``noise``; ``None`` = one file.
        silence: ``(batch,)`` bool, True for synthetic silence entries.

    Returns:
        ``(batch, T)`` float32.

    Raises:
        ValueError: ``waves`` is not 2-D, ``snr_db`` is not finite, ``noise`` is empty, or a noise
            file is shorter than ``T`` or silent.
    """
    if waves.ndim != 2:
        raise ValueError(f"waves must be (batch, samples), got shape {tuple(waves.shape)}")
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number of decibels, got {snr_db}")
    batch, length = waves.shape
    u = torch.rand((batch, 2), generator=generator, dtype=torch.float64)
    if batch == 0:
        return waves.clone()
    crops = _noise_crops(noise, noise_offsets, length, u[:, 0].to(noise.device), u[:, 1].to(noise.device))
    crops = crops.to(device=waves.device, dtype=torch.float64)
    signal = waves.to(torch.float64).pow(2).mean(dim=1)
    power = crops.pow(2).mean(dim=1)
    keep = signal == 0
    if silence is not None:
        keep |= silence.to(device=waves.device, dtype=torch.bool)
    if bool(((power == 0) & ~keep).any()):
        raise ValueError("a background-noise crop is all zeros; a silent noise file cannot set an SNR")
    gain = torch.sqrt(signal / (power.clamp(min=1e-300) * 10 ** (snr_db / 10)))
    gain = torch.where(keep, torch.zeros_like(gain), gain)
    return (waves.to(torch.float64) + gain[:, None] * crops).clamp_(-1.0, 1.0).to(waves.dtype)


def _noise_crops(noise: torch.Tensor, offsets: torch.Tensor | None, length: int, u_file: torch.Tensor,
                 u_pos: torch.Tensor) -> torch.Tensor:
    """``(len(u_file), length)`` crops: file ``floor(u_file * F)``, start uniform where the crop fits."""
    if noise.numel() == 0:
        raise ValueError("the augmentation mixes in background noise but no noise samples were given; "
                         "provide noise files or set noise_prob = 0 (and silence_noise = false)")
    device = noise.device
    if offsets is None:
        offsets = torch.tensor([0, noise.numel()], dtype=torch.int64)
    offsets = offsets.to(device=device, dtype=torch.int64)
    num_files = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    if int(lengths.min()) < length:
        raise ValueError(f"every noise file must hold at least {length} samples; the shortest has "
                         f"{int(lengths.min())}")
    file = torch.floor(u_file * num_files).to(torch.int64).clamp_(max=num_files - 1)
    positions = (lengths[file] - length + 1).to(torch.float64)
    start = offsets[file] + torch.floor(u_pos * positions).to(torch.int64).clamp_(min=0)
    start = torch.minimum(start, offsets[file + 1] - length)
    # (total - T + 1, T) overlapping view of every crop, indexed by start: a row copy per crop
    return noise.unfold(0, length, 1)[start]
