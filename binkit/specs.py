"""Experiment specs: pydantic models of every config, loadable from TOML.

An experiment is ``data + features + model + binarization + distillation + training + export``.
Structural checks (types, bounds, closed choices, unknown keys) run when a spec is parsed;
plugin checks (a named quantizer/architecture/dataset/distiller exists, and its ``params``
satisfy the plugin's own pydantic model) run when the spec is *resolved*, which
:func:`load_spec` does by default. Both report every problem as ``field.path: message (got
value)`` in one :class:`binkit.errors.SpecError`.

Resolving normalises each ``params`` table to the plugin's full set of fields (defaults filled
in), so ``load -> dump -> load`` gives an identical spec.

Example::

    [data]
    dataset = "tones"

    [model]
    architecture = "small_cnn"
    params = { channels = 32 }

    [binarization]
    method = "irnet"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from binkit import registry
from binkit.atomic import atomic_write_text
from binkit.entries import Capabilities
from binkit.errors import PluginError, SpecError, UnknownNameError

__all__ = [
    "DataSpec",
    "FeaturesSpec",
    "ModelSpec",
    "LayerOverride",
    "BinarizationSpec",
    "DistillationSpec",
    "TrainingSpec",
    "ExportSpec",
    "ExperimentSpec",
    "ResolvedExperiment",
    "load_spec",
    "parse_spec",
    "resolve",
    "dump_spec",
    "spec_to_toml",
]

SPEC_VERSION = 1


def _desc(text: str) -> dict[str, Any]:
    return {"json_schema_extra": {"description": text}}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSpec(_Spec):
    """Which dataset, and how it is batched."""

    dataset: str = Field(..., min_length=1, **_desc("registered dataset name (`binkit plugins`)"))
    params: dict[str, Any] = Field(default_factory=dict, **_desc("the dataset plugin's params"))


# Kind-specific defaults of the front-end; a field given in the spec wins.
FRONTEND_DEFAULTS: dict[str, dict[str, Any]] = {
    # BiFSMN (bifsmn.md section 2): 128 ms Hann window, 32 ms hop, 32 mel, normalized STFT, dB.
    "bifsmn_logmel": {"n_fft": 2048, "win_length": 2048, "hop_length": 512, "n_mels": 32,
                      "n_mfcc": 32, "normalized": True},
    # Standard 40-dim log-mel, 25 ms / 10 ms (BC-ResNet style log(mel + 1e-6)).
    "logmel": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40, "n_mfcc": 40,
               "normalized": False},
    # 40 MFCC (TF speech_commands style): DCT-II (ortho) of the dB mel spectrogram, 25 ms / 10 ms.
    "mfcc": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40, "n_mfcc": 40,
             "normalized": False},
}


class FeaturesSpec(_Spec):
    """The audio front-end. Serialisable; travels with exported models.

    Every kind computes a centred STFT (reflect padding of ``n_fft // 2``, periodic Hann window
    of ``win_length`` zero-padded to ``n_fft``), the power spectrum (divided by the window's
    energy when ``normalized``), an HTK mel filterbank from ``f_min`` to ``f_max`` without
    filter normalisation, then:

    * ``bifsmn_logmel``: ``10 log10(max(P_mel, 1e-10))`` (torchaudio ``AmplitudeToDB``, no top_db);
    * ``logmel``: ``ln(P_mel + log_offset)``;
    * ``mfcc``: DCT-II (orthonormal) of the dB mel spectrogram, first ``n_mfcc`` coefficients.

    Unset fields take the kind's defaults (``FRONTEND_DEFAULTS``). Output per clip:
    ``(1, n_bins, frames)`` with ``n_bins = n_mfcc`` for mfcc else ``n_mels`` and
    ``frames = 1 + samples // hop_length``.
    """

    kind: Literal["bifsmn_logmel", "logmel", "mfcc"] = Field(
        "bifsmn_logmel", **_desc("bifsmn_logmel | logmel | mfcc (see the class docstring)"))
    sample_rate: int = Field(16000, ge=4000, le=96000, **_desc("Hz; audio is resampled to it"))
    clip_seconds: float = Field(1.0, gt=0, le=30, **_desc("clips are padded/trimmed to this"))
    n_fft: int = Field(2048, ge=16, le=16384)
    win_length: int = Field(2048, ge=16, le=16384, **_desc("samples; <= n_fft"))
    hop_length: int = Field(512, ge=1, le=16384, **_desc("samples"))
    n_mels: int = Field(32, ge=1, le=256)
    n_mfcc: int = Field(32, ge=1, le=256, **_desc("cepstra kept (kind='mfcc' only); <= n_mels"))
    f_min: float = Field(0.0, ge=0, **_desc("Hz, lowest mel filter edge"))
    f_max: float = Field(0.0, ge=0, **_desc("Hz, highest mel filter edge; 0 = sample_rate / 2"))
    normalized: bool = Field(True, **_desc("divide the power spectrum by the window energy"))
    log_offset: float = Field(1e-6, gt=0, **_desc("logmel: ln(P + log_offset)"))

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kind = data.get("kind", "bifsmn_logmel")
            defaults = FRONTEND_DEFAULTS.get(kind)
            if defaults is not None:
                data = {**defaults, **data}
        return data

    @model_validator(mode="after")
    def _check_windows(self) -> "FeaturesSpec":
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.n_fft % 2:
            # torchaudio places odd-n_fft bins off the rfft frequencies and its frame count differs
            raise ValueError(f"n_fft ({self.n_fft}) must be even")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must be <= n_mels ({self.n_mels})")
        nyquist = self.sample_rate / 2
        if self.f_max > nyquist:
            raise ValueError(f"f_max ({self.f_max}) must be <= sample_rate / 2 ({nyquist})")
        if self.f_min >= self.mel_f_max:
            raise ValueError(f"f_min ({self.f_min}) must be < f_max ({self.mel_f_max})")
        if self.n_fft // 2 >= self.num_samples:
            raise ValueError(f"n_fft // 2 ({self.n_fft // 2}) must be < the clip length "
                             f"({self.num_samples} samples) for reflect padding")
        return self

    @property
    def mel_f_max(self) -> float:
        """``f_max`` with 0 resolved to the Nyquist frequency."""
        return self.f_max or self.sample_rate / 2

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def num_frames(self) -> int:
        # centred STFT frames: 1 + floor(samples / hop)
        return 1 + self.num_samples // self.hop_length

    @property
    def num_bins(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-clip feature shape ``(1, n_bins, frames)``."""
        return (1, self.num_bins, self.num_frames)


class ModelSpec(_Spec):
    """The architecture, by registered name, and its params."""

    architecture: str = Field(..., min_length=1, **_desc("registered architecture name"))
    params: dict[str, Any] = Field(default_factory=dict, **_desc("the architecture's params"))


class LayerOverride(_Spec):
    """Per-layer exception to the binarization policy, by qualified-name pattern."""

    pattern: str = Field(..., min_length=1, **_desc("fnmatch pattern on module names"))
    enabled: bool = Field(True, **_desc("false keeps matching layers full precision"))
    method: str = Field("", **_desc("quantizer for these layers; empty = the policy's"))
    params: dict[str, Any] = Field(default_factory=dict)
    weights: bool | None = Field(None, **_desc("override policy.weights"))
    inputs: bool | None = Field(None, **_desc("override policy.inputs"))


class BinarizationSpec(_Spec):
    """Which layers become binary, and with which quantizer method."""

    enabled: bool = Field(True, **_desc("false trains the full-precision model"))
    method: str = Field("xnor", min_length=1, **_desc("registered quantizer name"))
    params: dict[str, Any] = Field(default_factory=dict, **_desc("the quantizer's params"))
    weights: bool = Field(True, **_desc("quantize weights"))
    inputs: bool = Field(True, **_desc("quantize layer inputs (activations)"))
    layer_types: list[Literal["Linear", "Conv1d", "Conv2d"]] = Field(
        default_factory=lambda: ["Linear", "Conv1d", "Conv2d"], min_length=1)
    include: list[str] = Field(default_factory=lambda: ["*"], **_desc("name patterns to binarize"))
    exclude: list[str] = Field(default_factory=list, **_desc("name patterns to keep float"))
    keep_first: bool = Field(True, **_desc("keep the first candidate layer full precision"))
    keep_last: bool = Field(True, **_desc("keep the last candidate layer full precision"))
    replace_activations: bool = Field(
        True, **_desc("let methods with their own activation (ReActNet RPReLU) replace PReLUs"))
    activation_from: str = Field(
        "", **_desc("take the activation that replaces PReLUs from this registered method instead "
                    "of `method` (e.g. 'reactnet': RPReLU with any binarizer); empty = `method`'s own"))
    overrides: list[LayerOverride] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "BinarizationSpec":
        if self.enabled and not (self.weights or self.inputs):
            raise ValueError("weights and inputs are both false: set enabled = false instead")
        return self


class DistillationSpec(_Spec):
    """An optional frozen teacher and the distiller comparing it with the student."""

    enabled: bool = False
    method: str = Field("kd", min_length=1, **_desc("registered distiller name"))
    params: dict[str, Any] = Field(default_factory=dict)
    teacher: str = Field("", **_desc("teacher checkpoint file (from `binkit train`)"))
    weight: float = Field(1.0, ge=0, **_desc("loss weight of the distillation term"))

    @model_validator(mode="after")
    def _check(self) -> "DistillationSpec":
        if self.enabled and not self.teacher:
            raise ValueError("distillation.enabled needs distillation.teacher (a checkpoint path)")
        return self


class TrainingSpec(_Spec):
    """Optimisation schedule."""

    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1, **_desc("SGD only"))
    weight_decay: float = Field(0.0, ge=0, le=1)
    grad_clip: float = Field(0.0, ge=0, **_desc("clip the global gradient norm to this; 0 = off"))
    schedule: Literal["cosine", "constant"] = "cosine"
    epochs: int = Field(10, ge=1, le=100000)
    batch_size: int = Field(64, ge=1, le=65536)
    seed: int = Field(0, ge=0)
    views: dict[str, float] = Field(
        default_factory=dict, **_desc("view name -> loss weight; empty = the architecture's defaults"))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = Field(0, ge=0, le=1024, **_desc("torch threads; 0 = torch's default"))
    select: Literal["best_full", "monotonic_views", "last"] = Field(
        "best_full",
        **_desc("checkpoint selection: best full-network validation accuracy (the earliest epoch "
                "on ties); or, as the BiFSMN reference, only epochs where it improves AND accuracy "
                "strictly decreases with thinness over the trained views; or the last epoch (the "
                "end of the schedule, for when the validation split is too small to rank epochs)"))
    tensorboard: bool = Field(False, **_desc("also log to TensorBoard (needs the tensorboard package)"))
    init_from: str = Field("", **_desc(
        "initialise the model from this checkpoint (e.g. the FP teacher, as BiFSMN's --pretrained); "
        "tensors whose name and shape match are loaded, or the architecture's own mapping is used"))


class ExportSpec(_Spec):
    """How a trained model becomes an artifact."""

    backend: str = Field("neon", min_length=1, **_desc("backend the artifact is checked against"))
    float16: bool = Field(True, **_desc("store full-precision first/last layers as float16"))
    allow_float_fallback: bool = Field(False, **_desc("run non-binarizable layers in float"))


class ExperimentSpec(_Spec):
    """A whole experiment."""

    version: Literal[1] = SPEC_VERSION
    name: str = Field("experiment", min_length=1)
    data: DataSpec
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    model: ModelSpec
    binarization: BinarizationSpec = Field(default_factory=BinarizationSpec)
    distillation: DistillationSpec = Field(default_factory=DistillationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)


# ---------------------------------------------------------------------------------------------
# parsing, resolution, dumping
# ---------------------------------------------------------------------------------------------


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _errors_from(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    errors = []
    for e in exc.errors():
        path = _loc(tuple(e["loc"]))
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        msg = e["msg"]
        if e["type"] not in ("missing",) and "input" in e:
            value = e["input"]
            if not isinstance(value, dict):
                msg += f" (got {value!r})"
        errors.append((path, msg))
    return errors


def parse_spec(data: dict[str, Any], source: str = "") -> ExperimentSpec:
    """Structural validation only (no plugin lookups)."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_errors_from(exc), source) from None


@dataclass
class ResolvedExperiment:
    """A spec whose plugin names were looked up and params validated by their own models."""

    spec: ExperimentSpec
    dataset: Any
    dataset_params: BaseModel
    architecture: Any
    architecture_params: BaseModel
    capabilities: Capabilities
    quantizer: Any | None = None
    quantizer_params: BaseModel | None = None
    distiller: Any | None = None
    distiller_params: BaseModel | None = None
    views: dict[str, float] = field(default_factory=dict)


def _plugin(kind: str, name: str, params: dict[str, Any], path: str,
            errors: list[tuple[str, str]]) -> tuple[Any, BaseModel | None]:
    try:
        entry = registry.get(kind, name)
    except UnknownNameError as exc:
        errors.append((f"{path}", str(exc)))
        return None, None
    try:
        return entry, entry.params.model_validate(params)
    except ValidationError as exc:
        for p, m in _errors_from(exc, prefix=f"{path.rsplit('.', 1)[0]}.params"):
            errors.append((p, f"{m} [{kind} {name!r} from {entry.provider}]"))
        return entry, None


def activation_entry(policy: BinarizationSpec) -> Any:
    """The quantizer entry whose ``activation`` replaces PReLUs under ``policy``:
    ``activation_from``'s when set, else ``method``'s.

    Raises:
        UnknownNameError: ``activation_from`` (or ``method``) is not registered.
        ValueError: ``activation_from`` names a method without an activation, or
            ``replace_activations`` is false beside it.
    """
    name = policy.activation_from or policy.method
    entry = registry.get("quantizer", name)
    if policy.activation_from:
        if entry.activation is None:
            raise ValueError(f"quantizer {name!r} has no activation to replace PReLUs with "
                             "(its entry's `activation` is empty)")
        if not policy.replace_activations:
            raise ValueError(f"names {name!r}, but replace_activations = false keeps the PReLUs: "
                             "set one or the other")
    return entry


def resolve(spec: ExperimentSpec, source: str = "") -> ResolvedExperiment:
    """Look up every plugin the spec names and validate its params.

    Normalises the spec's ``params`` tables in place to the validated values (defaults filled).

    Raises:
        SpecError: listing every unknown name and invalid param, with field paths, and any
            incompatible combination (a distiller needing taps the architecture lacks, views
            the architecture does not have).
    """
    errors: list[tuple[str, str]] = []
    try:
        ds, ds_params = _plugin("dataset", spec.data.dataset, spec.data.params, "data.dataset", errors)
        arch, arch_params = _plugin("architecture", spec.model.architecture, spec.model.params,
                                    "model.architecture", errors)
        quant = quant_params = None
        if spec.binarization.enabled:
            quant, quant_params = _plugin("quantizer", spec.binarization.method,
                                          spec.binarization.params, "binarization.method", errors)
            if spec.binarization.activation_from:
                try:
                    activation_entry(spec.binarization)
                except (UnknownNameError, ValueError) as exc:
                    errors.append(("binarization.activation_from", str(exc)))
        for i, ov in enumerate(spec.binarization.overrides):
            if ov.method:
                _, p = _plugin("quantizer", ov.method, ov.params,
                               f"binarization.overrides[{i}].method", errors)
                if p is not None:
                    ov.params = p.model_dump(mode="json")
        dist = dist_params = None
        if spec.distillation.enabled:
            dist, dist_params = _plugin("distiller", spec.distillation.method,
                                        spec.distillation.params, "distillation.method", errors)
    except PluginError as exc:  # a plugin failed to load: report it as the spec's problem
        raise SpecError([("<plugins>", str(exc))], source) from exc

    caps = Capabilities()
    if arch is not None and arch_params is not None:
        caps = arch.capabilities(arch_params)
        if dist is not None and dist.needs_taps and not caps.taps:
            errors.append(("distillation.method",
                           f"distiller {dist.name!r} needs feature taps, but architecture "
                           f"{arch.name!r} exposes none"))
        unknown_views = [v for v in spec.training.views if v not in caps.views]
        if unknown_views:
            have = ", ".join(caps.views) or "(no views: single network)"
            errors.append(("training.views",
                           f"architecture {arch.name!r} has no view(s) {unknown_views}; it has: {have}"))
    if errors:
        raise SpecError(errors, source)

    # normalise params to the plugin models' full field sets (exact round trip)
    spec.data.params = ds_params.model_dump(mode="json")
    spec.model.params = arch_params.model_dump(mode="json")
    if quant_params is not None:
        spec.binarization.params = quant_params.model_dump(mode="json")
    if dist_params is not None:
        spec.distillation.params = dist_params.model_dump(mode="json")
    views = dict(spec.training.views) or dict(caps.views)
    return ResolvedExperiment(spec, ds, ds_params, arch, arch_params, caps, quant, quant_params,
                              dist, dist_params, views)


def load_spec(path: str | os.PathLike[str], *, resolve_plugins: bool = True) -> ExperimentSpec:
    """Read a TOML spec, validate it and (by default) resolve its plugins.

    Raises:
        FileNotFoundError: the file does not exist.
        SpecError: malformed TOML (with line and column) or any invalid field.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"spec file not found: {source}") from None
    except UnicodeDecodeError as exc:
        raise SpecError([("<file>", f"not UTF-8 text: {exc}")], source) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([("<toml>", f"malformed TOML: {exc}")], source) from None
    spec = parse_spec(data, source)
    if resolve_plugins:
        resolve(spec, source)
    return spec


def spec_to_toml(spec: ExperimentSpec) -> str:
    """The spec as TOML text (every field, ``None`` values omitted)."""
    return tomli_w.dumps(spec.model_dump(mode="json", exclude_none=True))


def dump_spec(spec: ExperimentSpec, path: str | os.PathLike[str]) -> Path:
    """Write the spec as TOML atomically (temp file + rename); returns the path."""
    return atomic_write_text(Path(path), spec_to_toml(spec))
