"""High-frequency Enhancement Distillation (HED), BiFSMN v1.

Origin: Qin et al., "BiFSMN: Binary Neural Network for Keyword Spotting", IJCAI 2022,
https://arxiv.org/abs/2202.06483; code ``htqin/BiFSMN`` commit f6d52a0,
``train_valid_test.py`` (``pass_filter``, ``loss_term``, ``total_loss``,
``train_epoch_distill``), summarised in ``shared/reference/bifsmn.md`` section 5.

Features are the outputs of the DFSMN blocks, taps ``"block{i}"`` of shape
``(batch, channels, time)``, each treated as a one-channel image ``(batch, 1, channels, time)``.

High-pass filter (one-level 2-D Haar DWT, zero mode, over (channel, time), not audio frequency)::

    (LL, (LH, HL, HH)) = DWT(F)            F zero-padded to even sizes, as pywt mode 'zero'
    HP(F) = IDWT(0, (LH, HL, HH))          cropped to F's size
    LP(F) = IDWT(LL, (0, 0, 0))            = the mean of each 2x2 block; HP + LP = F

Teacher target (the student's features are used raw)::

    T^ = HP(T) / std(HP(T)) + T / std(T)   select_pass = "high" (default, the paper's HED)
    T^ = T / std(T)                        select_pass = "none" (ablation without the HF term)

``std`` is one unbiased scalar over the whole batch tensor, clamped below at ``eps`` so that a
constant feature (``std = 0``) gives a zero term instead of NaN. Because the distance is invariant
to a positive scale of either argument, ``"none"`` equals distilling the raw teacher features
(the code's ``select_pass='no'``).

Distance (attention transfer without channel pooling, batch-global normalisation)::

    D(A, B) = || A*A / ||A*A||_F  -  B*B / ||B*B||_F ||_F     (not squared, not averaged)

with ``||.||_F`` clamped below at ``eps``.

Loss, for a student view running ``L_S`` blocks against a teacher running ``L_T``::

    L_HED = sum_k D(S_k, T^_j(k)),   j(k) = (L_T / L_S) * (k + 1) - 1,   k = 0..L_S-1

with blocks of each side taken in order of their index ``i`` in ``"block{i}"``. For an 8-block
teacher: view 8 -> teacher 0..7, view 4 (blocks 1,3,5,7) -> 1,3,5,7, view 2 -> 3,7, view 1 -> 7.
The trainer weights it by ``distillation.weight`` (the code's ``--distill_alpha = 0.01``) and by
the view's weight (1, 0.5, 0.25).

Changed from the code: ``L_T % L_S != 0`` raises a ValueError (the code prints "Distiilation
Error" and silently drops the loss: bifsmn.md section 12, bug #13); the ``"low"`` option, a no-op
in the code (bug #11), is not offered; teacher features are detached here even though the
trainer already runs the teacher under ``no_grad`` (bug #2). The Haar transform is a direct torch
implementation (no pytorch_wavelets), tested against PyWavelets.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from binkit.distill import DistillOutputs
from binkit.entries import DistillerEntry

__all__ = [
    "haar_dwt2",
    "haar_idwt2",
    "haar_highpass",
    "haar_lowpass",
    "hed_target",
    "attention_distance",
    "match_blocks",
    "block_features",
    "hed_loss",
    "HEDParams",
    "HED",
    "ENTRY",
]

_BLOCK_RE = re.compile(r"^block(\d+)$")


# --------------------------------------------------------------------------- Haar transform


def haar_dwt2(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One-level 2-D Haar DWT over the last two axes, zero mode.

    Equal to ``pywt.dwt2(x, 'haar', mode='zero')``: ``(cA, (cH, cV, cD))``, where ``cH`` is the
    detail along axis -2 and ``cV`` along axis -1. Odd sizes are zero-padded at the end.

    Shapes: ``(..., H, W) -> 4 x (..., ceil(H/2), ceil(W/2))``.
    """
    h, w = x.shape[-2:]
    x = F.pad(x, (0, w % 2, 0, h % 2))  # zero mode: one zero row/column at the end if odd
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    ll = ((a + b) + (c + d)) * 0.5
    lh = ((a + b) - (c + d)) * 0.5  # detail along axis -2 (pywt cH)
    hl = ((a + c) - (b + d)) * 0.5  # detail along axis -1 (pywt cV)
    hh = ((a - b) - (c - d)) * 0.5
    return ll, (lh, hl, hh)


def haar_idwt2(ll: torch.Tensor, details: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`haar_dwt2` (``pywt.idwt2(..., 'haar', mode='zero')``).

    Shapes: 4 x ``(..., h, w) -> (..., 2h, 2w)`` (not cropped; see :func:`haar_highpass`).
    """
    lh, hl, hh = details
    a = ((ll + lh) + (hl + hh)) * 0.5
    b = ((ll + lh) - (hl + hh)) * 0.5
    c = ((ll - lh) + (hl - hh)) * 0.5
    d = ((ll - lh) - (hl - hh)) * 0.5
    top = torch.stack((a, b), dim=-1).flatten(-2)  # (..., h, 2w): a b a b ...
    bottom = torch.stack((c, d), dim=-1).flatten(-2)
    return torch.stack((top, bottom), dim=-2).flatten(-3, -2)  # (..., 2h, 2w)


def haar_highpass(x: torch.Tensor) -> torch.Tensor:
    """``HP(x)``: Haar DWT, approximation band zeroed, inverse, cropped to ``x``'s size.

    ``(..., H, W) -> (..., H, W)``; a ``(batch, channels, time)`` tap is one image per example.
    """
    ll, details = haar_dwt2(x)
    y = haar_idwt2(torch.zeros_like(ll), details)
    return y[..., : x.shape[-2], : x.shape[-1]]


def haar_lowpass(x: torch.Tensor) -> torch.Tensor:
    """``LP(x)``: Haar DWT, detail bands zeroed, inverse, cropped; ``HP(x) + LP(x) = x``."""
    ll, _ = haar_dwt2(x)
    zero = torch.zeros_like(ll)
    y = haar_idwt2(ll, (zero, zero, zero))
    return y[..., : x.shape[-2], : x.shape[-1]]


# --------------------------------------------------------------------------- loss pieces


def _std_normalized(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / max(std(x), eps)`` with one unbiased std over the whole tensor."""
    return x / torch.std(x).clamp_min(eps)


def hed_target(t: torch.Tensor, select_pass: str = "high", eps: float = 1e-12) -> torch.Tensor:
    """The enhanced teacher feature ``HP(t)/std(HP(t)) + t/std(t)`` (``"high"``) or ``t/std(t)``
    (``"none"``); shape unchanged."""
    if select_pass == "high":
        return _std_normalized(haar_highpass(t), eps) + _std_normalized(t, eps)
    if select_pass == "none":
        return _std_normalized(t, eps)
    raise ValueError(f"select_pass must be 'high' or 'none', got {select_pass!r}")


def attention_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``|| a^2/||a^2||_F - b^2/||b^2||_F ||_F`` over the whole batch tensor; a scalar."""
    if a.shape != b.shape:
        raise ValueError(f"HED compares features of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    qa, qb = a * a, b * b
    qa = qa / torch.linalg.vector_norm(qa).clamp_min(eps)
    qb = qb / torch.linalg.vector_norm(qb).clamp_min(eps)
    return torch.linalg.vector_norm(qa - qb)


def match_blocks(num_student: int, num_teacher: int) -> list[int]:
    """Teacher block position for each student block: ``(L_T / L_S) * (k + 1) - 1``.

    Raises:
        ValueError: ``num_teacher`` is not a multiple of ``num_student`` (or either is 0).
    """
    if num_student < 1 or num_teacher < 1 or num_teacher % num_student:
        raise ValueError(f"HED needs the teacher's block count to be a multiple of the student's: "
                         f"teacher has {num_teacher} block tap(s), student {num_student}")
    step = num_teacher // num_student
    return [step * (k + 1) - 1 for k in range(num_student)]


def block_features(taps: dict[str, torch.Tensor], who: str) -> list[torch.Tensor]:
    """The ``"block{i}"`` taps, ordered by ``i``; other taps are ignored."""
    found = sorted((int(m.group(1)), v) for k, v in taps.items() if (m := _BLOCK_RE.match(k)))
    if not found:
        raise ValueError(f"HED reads the {who}'s taps named 'block{{i}}', but it recorded "
                         f"{sorted(taps) or 'none'}; use an architecture with block taps (bifsmn)")
    return [v for _, v in found]


def hed_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], select_pass: str = "high",
             eps: float = 1e-12) -> torch.Tensor:
    """``sum_k D(student[k], T^(teacher[j(k)]))``; features ``(batch, channels, time)`` in block order.

    Teacher features are detached.
    """
    pairs = match_blocks(len(student), len(teacher))
    loss = student[0].new_zeros(())
    for s, j in zip(student, pairs):
        loss = loss + attention_distance(s, hed_target(teacher[j].detach(), select_pass, eps), eps)
    return loss


# --------------------------------------------------------------------------- distiller


class HEDParams(BaseModel):
    """Params of the ``hed`` distiller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    select_pass: Literal["high", "none"] = Field(
        "high", description="'high': teacher target HP(T)/std(HP(T)) + T/std(T) (HED); "
        "'none': T/std(T) only, the ablation without the high-frequency term")
    eps: float = Field(1e-12, gt=0, le=1e-3, description="lower bound of std and norms (guards division by 0)")


class HED:
    """Callable distiller: :func:`hed_loss` on the ``"block{i}"`` taps of student and teacher."""

    def __init__(self, params: HEDParams | None = None) -> None:
        params = params or HEDParams()
        self.select_pass = params.select_pass
        self.eps = params.eps

    def __call__(self, student: DistillOutputs, teacher: DistillOutputs) -> torch.Tensor:
        return hed_loss(block_features(student.taps, "student"), block_features(teacher.taps, "teacher"),
                        self.select_pass, self.eps)


ENTRY = DistillerEntry(
    name="hed",
    factory=HED,
    params=HEDParams,
    needs_taps=True,
    description="BiFSMN's High-frequency Enhancement Distillation on block outputs (Haar high-pass "
    "teacher target, batch-global attention distance)",
    reference="Qin et al., BiFSMN: Binary Neural Network for Keyword Spotting, IJCAI 2022, "
    "arXiv:2202.06483; code htqin/BiFSMN f6d52a0",
)
