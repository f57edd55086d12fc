"""Thinnable DFSMN: the backbone of BiFSMN, its full-precision teacher and an FP baseline.

Origin: Qin et al., "BiFSMN: Binary Neural Network for Keyword Spotting", IJCAI 2022,
https://arxiv.org/abs/2202.06483 (Thinnable Binarization Architecture, TBA); code
``htqin/BiFSMN`` commit f6d52a0, ``models/torch/bidfsmn.py`` (``BiDfsmnModel_thinnable``, the
student, and ``DfsmnModel_pre``, the teacher). The graph follows the code, summarised in
``shared/reference/bifsmn.md`` sections 3 and 6. The DFSMN block itself is Zhang et al., "Deep-FSMN
for Large Vocabulary Continuous Speech Recognition", ICASSP 2018, https://arxiv.org/abs/1803.05030.

Graph, input ``(batch, 1, n_mels, frames)``, ``C`` = ``frontend_channels``, ``k`` =
``frontend_kernel``, ``M`` = ``memory_size``, ``H`` = ``hidden_size``::

    conv1   Conv2d(1 -> C, k x k, stride 2, pad k//2) -> BN2d -> act     (batch, C, n_mels', frames')
    conv2   Conv2d(C -> 2C, k x k, stride 2, pad k//2) -> BN2d -> act    (batch, 2C, n_mels'', T)
    reshape channel-major per frame                                      (batch, T, 2C * n_mels'')
    fc1     Linear(2C * n_mels'' -> M) -> act (no BN), transposed        (batch, M, T)
    blocks  x num_blocks (the view selects which ones run), each:
              m   = PReLU(BN1d(DWConv1d_M(x)))  + x        look-back left, look-ahead right
              h   = Dropout(act(BN1d(Conv1d(M -> H, 1)(m))))
              f   = PReLU_v(BN1d_v(Conv1d(H -> M, 1)(h)))   one BN/PReLU pair per view v
              out = f + m
    head    flatten (batch, M * T) -> Dropout -> Linear(M * T -> num_classes)

``act`` is the ``activation`` param (PReLU in the student, ReLU in the teacher). As in the code,
the memory activation and the per-view output activation are PReLU in every variant, teacher
included; with ``activation="relu"`` the ReLUs are conv1, conv2, fc1 and the inner (expansion)
activation. This is what makes the teacher 600,252 parameters and the student 606,431 for 12
classes (bifsmn.md section 3, "Sizes"); PReLUs have one shared slope (init 0.25), all layers
have biases and PyTorch's default initialisation.

Views (TBA, bifsmn.md section 6): view ``"n"`` runs ``n`` of the ``num_blocks`` blocks, with the
interval ``d = num_blocks / n`` and blocks ``i*d - 1`` for ``i = 1..n`` (0-indexed), so the last
block always runs. For 8 blocks: ``"8"`` all, ``"4"`` 1,3,5,7, ``"2"`` 3,7, ``"1"`` 7. All weights
are shared between views; with ``thinnable=True`` the BN + PReLU after each block's second
pointwise conv is the only per-view part. ``view=None`` is the full network (the first of
``thin_levels``). The outputs of the blocks that ran are recorded as taps ``"block{i}"`` (``i`` the
original block index), which HED (:mod:`bifsmn_plugin.hed`) matches to the teacher's.

Variants (registered at the bottom):

* ``bifsmn``: the thinnable student (PReLU, dropout 0, per-view BN/PReLU; views 8/4/2 trained
  with weights 1/0.5/0.25, view 1 available with weight 0). Binarize it with the spec's policy.
* ``bifsmn_teacher``: ``DfsmnModel_pre``, the full-precision teacher (ReLU, dropout 0.2, one
  BN/PReLU pair, the single view "8"); its spec sets ``binarization.enabled = false``.
* ``dfsmn``: the student's shape as a full-precision baseline (same defaults as ``bifsmn``).

:func:`load_teacher_weights` initialises a student from a teacher's state dict the way the code's
``--pretrained`` does (the teacher's output pair goes to the student's full view).

Changed from the official code, and why:

* The classifier input ``M * T`` and fc1's input ``2C * n_mels''`` are derived from the feature
  shape (the code hard-codes 32 frames: bug #5 of bifsmn.md section 12), so 40x101 features work.
* The memory conv pads inside ``Conv1d`` (``padding=``) instead of ``F.pad`` before it. Both are
  the same function in full precision; binkit's binary layers quantize before padding, so padded
  taps stay exact zeros (the code's ``torch.sign`` kept them 0 only because sign(0) = 0 there;
  binkit's sign(0) = +1 would turn pre-padded zeros into +1). With ``left_order != right_order``
  the conv pads ``max(left, right)`` on both sides and the output is cropped.
* Thinness levels and their loss weights are params (``thin_levels``, ``view_weights``) checked
  against ``num_blocks``, instead of the hard-coded 4 options and ``thin_n`` (bug #12: thin_n 4
  raised IndexError); a wrong view name raises a ValueError listing the views.
* The teacher is run by binkit's trainer in eval mode under ``no_grad`` (bug #2) and is never
  binarized (bug #1); neither is a property of this module but of the specs that use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from binkit.entries import ArchitectureEntry, Capabilities
from binkit_kws.base import KWSModel

__all__ = [
    "DFSMNParams",
    "BiFSMNTeacherParams",
    "DFSMNBlock",
    "DFSMN",
    "view_blocks",
    "default_thin_levels",
    "load_teacher_weights",
    "ENTRIES",
]

_LEVEL_RE = re.compile(r"^[1-9][0-9]*$")


# --------------------------------------------------------------------------- utilities


def view_blocks(num_blocks: int, level: int) -> tuple[int, ...]:
    """Blocks (0-indexed) that thinness ``level`` runs: ``i * d - 1`` for ``i = 1..level``,
    ``d = num_blocks / level`` (bifsmn.md section 6).

    Raises:
        ValueError: ``level`` does not divide ``num_blocks``.
    """
    if level < 1 or level > num_blocks or num_blocks % level:
        raise ValueError(f"thinness {level} must divide num_blocks={num_blocks}")
    d = num_blocks // level
    return tuple(i * d - 1 for i in range(1, level + 1))


def default_thin_levels(num_blocks: int, thinnable: bool) -> list[str]:
    """``[num_blocks, num_blocks/2, ...]`` halving while even, or ``[num_blocks]`` if not thinnable."""
    if not thinnable:
        return [str(num_blocks)]
    levels, n = [str(num_blocks)], num_blocks
    while n % 2 == 0:
        n //= 2
        levels.append(str(n))
    return levels


def default_view_weights(levels: list[str]) -> dict[str, float]:
    """The first three levels weighted 1, 0.5, 0.25 (the code's ``weights``); the others untrained."""
    return {level: 0.5 ** k for k, level in enumerate(levels[:3])}


def _conv_out(size: int, kernel: int) -> int:
    """Output length of a stride-2 conv with padding ``kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // 2 + 1


def _activation(kind: str) -> nn.Module:
    return nn.PReLU() if kind == "prelu" else nn.ReLU()


# --------------------------------------------------------------------------- params


class DFSMNParams(BaseModel):
    """Params of the thinnable DFSMN (defaults: the BiFSMN student, bifsmn.md section 3).

    ``thin_levels`` and ``view_weights`` default from ``num_blocks`` and ``thinnable`` when not
    given: halving levels (8 -> 8, 4, 2, 1) weighted 1, 0.5, 0.25 for the first three, or the
    single full level when ``thinnable`` is false.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_blocks: int = Field(8, ge=1, le=256, description="number of DFSMN blocks")
    memory_size: int = Field(128, ge=1, le=65536, description="backbone (memory) width M")
    hidden_size: int = Field(256, ge=1, le=65536, description="width H of each block's expansion")
    left_order: int = Field(2, ge=0, le=64, description="memory look-back, in frames (x dilation)")
    right_order: int = Field(2, ge=0, le=64, description="memory look-ahead, in frames (x dilation)")
    dilation: int = Field(1, ge=1, le=64, description="dilation of the memory conv")
    frontend_channels: int = Field(16, ge=1, le=4096, description="channels C of conv1 (conv2 has 2C)")
    frontend_kernel: int = Field(5, ge=1, le=31, description="square kernel of conv1 and conv2 (stride 2)")
    thin_levels: list[str] = Field(
        default_factory=lambda: ["8", "4", "2", "1"],
        description="view names: view 'n' runs n blocks; the first is the full network "
        "(= num_blocks); each must divide num_blocks")
    view_weights: dict[str, float] = Field(
        default_factory=lambda: {"8": 1.0, "4": 0.5, "2": 0.25},
        description="default loss weight per view; views of thin_levels not listed get 0 "
        "(evaluated, not trained)")
    activation: Literal["prelu", "relu"] = Field(
        "prelu", description="activation of conv1, conv2, fc1 and each block's expansion; "
        "the memory and output activations are always PReLU, as in the code")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each expansion and before the classifier")
    thinnable: bool = Field(True, description="one BN + PReLU per view after each block's second "
                            "pointwise conv (TBA); false shares one pair across views")

    @model_validator(mode="before")
    @classmethod
    def _derive_views(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        num_blocks = data.get("num_blocks", cls.model_fields["num_blocks"].default)
        thinnable = data.get("thinnable", cls.model_fields["thinnable"].default)
        if "thin_levels" not in data and isinstance(num_blocks, int) and isinstance(thinnable, bool):
            data["thin_levels"] = default_thin_levels(num_blocks, thinnable)
        if "view_weights" not in data and isinstance(data.get("thin_levels"), list):
            data["view_weights"] = default_view_weights([str(v) for v in data["thin_levels"]])
        return data

    @model_validator(mode="after")
    def _check_views(self) -> DFSMNParams:
        levels = self.thin_levels
        if not levels:
            raise ValueError("thin_levels must name at least one view")
        bad = [v for v in levels if not _LEVEL_RE.match(v)]
        if bad:
            raise ValueError(f"thin_levels {bad} are not positive integers (view 'n' runs n blocks)")
        if len(set(levels)) != len(levels):
            raise ValueError(f"thin_levels {levels} has duplicates")
        if levels[0] != str(self.num_blocks):
            raise ValueError(f"thin_levels must start with the full network {str(self.num_blocks)!r} "
                             f"(num_blocks), got {levels}")
        wrong = [v for v in levels if self.num_blocks % int(v)]
        if wrong:
            raise ValueError(f"thin_levels {wrong} do not divide num_blocks={self.num_blocks}")
        unknown = [v for v in self.view_weights if v not in levels]
        if unknown:
            raise ValueError(f"view_weights names {unknown}, which are not in thin_levels {levels}")
        negative = {v: w for v, w in self.view_weights.items() if not w >= 0}
        if negative:
            raise ValueError(f"view_weights must be >= 0, got {negative}")
        if not any(w > 0 for w in self.view_weights.values()):
            raise ValueError(f"view_weights {self.view_weights} trains no view: give one a weight > 0")
        return self


class BiFSMNTeacherParams(DFSMNParams):
    """Params of ``bifsmn_teacher`` (the code's ``DfsmnModel_pre``): ReLU, dropout 0.2, one view."""

    activation: Literal["prelu", "relu"] = Field("relu", description=DFSMNParams.model_fields["activation"].description)
    dropout: float = Field(0.2, ge=0, lt=1, description=DFSMNParams.model_fields["dropout"].description)
    thinnable: bool = Field(False, description=DFSMNParams.model_fields["thinnable"].description)
    thin_levels: list[str] = Field(default_factory=lambda: ["8"],
                                   description=DFSMNParams.model_fields["thin_levels"].description)
    view_weights: dict[str, float] = Field(default_factory=lambda: {"8": 1.0},
                                           description=DFSMNParams.model_fields["view_weights"].description)


# --------------------------------------------------------------------------- blocks


class DFSMNBlock(nn.Module):
    """One DFSMN block with an optional per-view output BN + PReLU.

    ``(batch, memory_size, time) -> (batch, memory_size, time)``::

        m   = PReLU(BN(memory_conv(x))) + x
        h   = Dropout(act(BN(expand(m))))
        out = PReLU_v(BN_v(project(h))) + m

    Args:
        memory_size: channels ``M`` of input and output.
        hidden_size: channels ``H`` of the expansion.
        left_order, right_order, dilation: the memory conv sees frames ``t - left*dilation``
            to ``t + right*dilation`` in steps of ``dilation``.
        activation: ``"prelu"`` or ``"relu"`` for the expansion.
        dropout: after the expansion activation.
        views: view names with their own output BN + PReLU (``project_bn[v]``,
            ``project_act[v]``); ``None`` for one shared pair.
    """

    def __init__(self, memory_size: int, hidden_size: int, left_order: int, right_order: int,
                 dilation: int = 1, activation: str = "prelu", dropout: float = 0.0,
                 views: tuple[str, ...] | None = None) -> None:
        super().__init__()
        # Padding inside the conv, after the binary layer's input quantizer: exact zeros.
        pad = max(left_order, right_order) * dilation
        self.memory = nn.Conv1d(memory_size, memory_size, left_order + right_order + 1, padding=pad,
                                dilation=dilation, groups=memory_size)
        self._crop = pad - left_order * dilation  # first output frame whose window starts at t - left
        self.memory_bn = nn.BatchNorm1d(memory_size)
        self.memory_act = nn.PReLU()
        self.expand = nn.Conv1d(memory_size, hidden_size, 1)
        self.expand_bn = nn.BatchNorm1d(hidden_size)
        self.expand_act = _activation(activation)
        self.drop = nn.Dropout(dropout)
        self.project = nn.Conv1d(hidden_size, memory_size, 1)
        self.views = tuple(views) if views is not None else None
        if self.views is None:
            self.project_bn: nn.Module = nn.BatchNorm1d(memory_size)
            self.project_act: nn.Module = nn.PReLU()
        else:
            self.project_bn = nn.ModuleDict({v: nn.BatchNorm1d(memory_size) for v in self.views})
            self.project_act = nn.ModuleDict({v: nn.PReLU() for v in self.views})

    def memory_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise temporal conv with zero padding: ``(batch, M, T) -> (batch, M, T)``."""
        y = self.memory(x)  # (batch, M, T + 2*pad - (left + right)*dilation)
        if y.shape[-1] != x.shape[-1]:
            y = y[..., self._crop:self._crop + x.shape[-1]]
        return y

    def forward(self, x: torch.Tensor, view: str | None = None) -> torch.Tensor:
        m = self.memory_act(self.memory_bn(self.memory_conv(x))) + x  # (batch, M, T)
        h = self.drop(self.expand_act(self.expand_bn(self.expand(m))))  # (batch, H, T)
        f = self.project(h)  # (batch, M, T)
        if self.views is None:
            f = self.project_act(self.project_bn(f))
        else:
            if view not in self.project_bn:
                raise ValueError(f"block has per-view BN for {list(self.views)}, got view={view!r}")
            f = self.project_act[view](self.project_bn[view](f))
        return f + m


# --------------------------------------------------------------------------- model


class DFSMN(KWSModel):
    """Thinnable DFSMN: ``(batch, in_channels, n_mels, frames) -> (batch, num_classes)``.

    ``forward(x, view=None)``: ``view`` is one of :attr:`views` (a thinness level, e.g. ``"4"``);
    ``None`` runs the full network. ``taps`` holds ``"block{i}"`` for the blocks that ran.

    Args:
        params: :class:`DFSMNParams`.
        num_classes: classifier outputs.
        feature_shape: per-example input shape ``(in_channels, n_mels, frames)``.
    """

    def __init__(self, params: DFSMNParams, num_classes: int, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        feature_shape = tuple(int(s) for s in feature_shape)
        if len(feature_shape) != 3 or min(feature_shape) < 1:
            raise ValueError(f"DFSMN needs features (channels, n_mels, frames), got {feature_shape}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.feature_shape = feature_shape
        self.params = params
        in_ch, n_mels, frames = feature_shape
        c, k, mem = params.frontend_channels, params.frontend_kernel, params.memory_size
        self.conv1 = nn.Conv2d(in_ch, c, k, stride=2, padding=k // 2)
        self.bn1 = nn.BatchNorm2d(c)
        self.act1 = _activation(params.activation)
        self.conv2 = nn.Conv2d(c, 2 * c, k, stride=2, padding=k // 2)
        self.bn2 = nn.BatchNorm2d(2 * c)
        self.act2 = _activation(params.activation)
        self.num_mels_out = _conv_out(_conv_out(n_mels, k), k)
        self.num_frames_out = _conv_out(_conv_out(frames, k), k)  # T, frames seen by the backbone
        self.fc1 = nn.Linear(2 * c * self.num_mels_out, mem)
        self.fc1_act = _activation(params.activation)
        levels = tuple(params.thin_levels)
        self.blocks = nn.ModuleList(
            DFSMNBlock(mem, params.hidden_size, params.left_order, params.right_order, params.dilation,
                       params.activation, params.dropout, levels if params.thinnable else None)
            for _ in range(params.num_blocks)
        )
        self.head_drop = nn.Dropout(params.dropout)
        self.classifier = nn.Linear(mem * self.num_frames_out, num_classes)
        self._views = {v: view_blocks(params.num_blocks, int(v)) for v in levels}
        self.full_view = levels[0]

    @property
    def views(self) -> dict[str, tuple[int, ...]]:
        """View name -> indices of the blocks it runs; the first is the full network."""
        return dict(self._views)

    def _resolve_view(self, view: str | None) -> str:
        if view is None:
            return self.full_view
        if view not in self._views:
            raise ValueError(f"{type(self).__name__} has no view {view!r}; views are: "
                             f"{', '.join(self._views)} (or None for the full network)")
        return view

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.feature_shape:
            raise ValueError(f"{type(self).__name__} expects input (batch, "
                             f"{', '.join(map(str, self.feature_shape))}), got {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor, view: str | None = None) -> torch.Tensor:
        """``(batch, in_channels, n_mels, frames) -> (batch, memory_size, T)``; fills ``taps``."""
        key = self._resolve_view(view)
        self.taps = {}
        x = self.act1(self.bn1(self.conv1(x)))  # (batch, C, n_mels', frames')
        x = self.act2(self.bn2(self.conv2(x)))  # (batch, 2C, n_mels'', T)
        b, ch, mels, t = x.shape
        x = x.reshape(b, ch * mels, t).transpose(1, 2)  # (batch, T, 2C * n_mels''), channel-major
        x = self.fc1_act(self.fc1(x)).transpose(1, 2)  # (batch, T, M) -> (batch, M, T)
        for i in self._views[key]:
            x = self.blocks[i](x, key)
            self.taps[f"block{i}"] = x
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, M, T) -> (batch, num_classes)``; flattens memory-major like the code."""
        return self.classifier(self.head_drop(x.flatten(1)))  # (batch, M * T) -> (batch, classes)

    def forward(self, x: torch.Tensor, view: str | None = None) -> torch.Tensor:
        self._check_input(x)
        self._resolve_view(view)  # fail before any compute
        return self.forward_head(self.forward_features(x, view))


_PAIR_KEY = re.compile(r"^(blocks\.\d+\.project_(?:bn|act))\.(?!\d+\.)(.+)$")


def load_teacher_weights(student: DFSMN, teacher_state: Mapping[str, torch.Tensor]) -> list[str]:
    """Initialise ``student`` from a teacher's state dict, as the code's ``--pretrained``.

    The teacher's single output pair of each block (``blocks.i.project_bn.*``,
    ``blocks.i.project_act.*``) goes to the student's full-view pair; the other views' pairs, and
    PReLUs that are ReLUs in the teacher, keep their initialisation (bifsmn.md section 7). Works
    on a float or binarized student (binary layers share the float layers' parameter names).
    Tensors whose shape differs are skipped.

    Returns:
        The student's state-dict keys that were not loaded.
    """
    thinnable = any(isinstance(b.project_bn, nn.ModuleDict) for b in student.blocks)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in teacher_state.items():
        m = _PAIR_KEY.match(key)
        if thinnable and m:
            key = f"{m.group(1)}.{student.full_view}.{m.group(2)}"
        mapped[key] = value
    own = student.state_dict()
    loadable = {k: v for k, v in mapped.items() if k in own and own[k].shape == v.shape}
    student.load_state_dict(loadable, strict=False)
    return [k for k in own if k not in loadable]


def _create_dfsmn(params: DFSMNParams, num_classes: int, feature_shape: tuple[int, ...]) -> DFSMN:
    return DFSMN(params, num_classes, feature_shape)


def _capabilities(params: DFSMNParams) -> Capabilities:
    """Taps ``block0..block{n-1}``; every thinness level as a view, weight 0 if not trained.

    A view with weight 0 (by default ``"1"``, as in the code, which defines it but trains only
    8/4/2) stays selectable for evaluation and for ``training.views``.
    """
    return Capabilities(
        taps=tuple(f"block{i}" for i in range(params.num_blocks)),
        views={v: float(params.view_weights.get(v, 0.0)) for v in params.thin_levels},
    )


# --------------------------------------------------------------------------- variants

_REFERENCE = ("Qin et al., BiFSMN: Binary Neural Network for Keyword Spotting, IJCAI 2022, "
              "arXiv:2202.06483; code htqin/BiFSMN f6d52a0")

ENTRIES = [
    ArchitectureEntry(
        name="bifsmn", factory=_create_dfsmn, params=DFSMNParams, capabilities=_capabilities,
        load_pretrained=load_teacher_weights,
        description="thinnable DFSMN student of BiFSMN (views 8/4/2/1, per-view BN+PReLU, PReLU)",
        reference=_REFERENCE,
    ),
    ArchitectureEntry(
        name="bifsmn_teacher", factory=_create_dfsmn, params=BiFSMNTeacherParams,
        capabilities=_capabilities,
        description="BiFSMN's full-precision teacher (the code's DfsmnModel_pre: ReLU, dropout 0.2, one view)",
        reference=_REFERENCE,
    ),
    ArchitectureEntry(
        name="dfsmn", factory=_create_dfsmn, params=DFSMNParams, capabilities=_capabilities,
        load_pretrained=load_teacher_weights,
        description="the thinnable DFSMN student's shape as a full-precision baseline",
        reference="Zhang et al., Deep-FSMN, ICASSP 2018, arXiv:1803.05030; " + _REFERENCE,
    ),
]
