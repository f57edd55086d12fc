"""``binkit.runtime.load(path, backend=...)``: an artifact plus a backend plus the numpy front-end.

Torch-free. :class:`RuntimeModel` validates what ``predict`` receives (dtype, shape, NaN/inf),
turns waveforms into features with :class:`binkit.runtime.frontend.NumpyFrontEnd`, and runs the
backend's program for the chosen view.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from binkit.runtime.artifact import Artifact, ArtifactError, load_artifact, required_features

__all__ = ["RuntimeModel", "load", "infer_file"]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class RuntimeModel:
    """A loaded model: ``predict(waveform_or_features, view=None) -> (scores, labels)``.

    Attributes:
        artifact: the validated :class:`binkit.runtime.artifact.Artifact`.
        labels: class names, in score order.
        views: view names; ``default_view`` is run when ``view`` is None.
        frontend: a :class:`NumpyFrontEnd`, or ``None`` for a model fed features directly.
        input_shape: per-clip feature shape, e.g. ``(1, 32, 32)``.
        backend: the backend's name.
    """

    def __init__(self, artifact: Artifact, program: Any, backend: str) -> None:
        self.artifact = artifact
        self.program = program
        self.backend = backend
        self.labels = list(artifact.labels)
        self.views = list(artifact.views)
        self.default_view = artifact.default_view
        self.input_shape = tuple(artifact.input_shape)
        self.fallbacks = list(artifact.fallbacks)
        self.frontend = None
        if artifact.frontend is not None:
            from binkit.runtime.frontend import NumpyFrontEnd

            self.frontend = NumpyFrontEnd(artifact.frontend)

    def __repr__(self) -> str:
        return (f"RuntimeModel(backend={self.backend!r}, input={self.input_shape}, "
                f"labels={len(self.labels)}, views={self.views})")

    def resolve_view(self, view: str | int | None) -> str:
        """The artifact's view key for ``view`` (``None``: the default view).

        Raises:
            ValueError: the artifact has no such view (the message lists its views).
        """
        if view is None:
            return self.default_view
        key = str(view)
        if key not in self.artifact.views:
            raise ValueError(f"no view {view!r}; views are: {', '.join(self.views)}")
        return key

    def features(self, x: Any) -> tuple[np.ndarray, bool]:
        """``(batch, *input_shape)`` float32 features of ``x`` and whether ``x`` was a single clip.

        ``x`` is features ``input_shape`` or ``(batch, *input_shape)``, or (with a front-end) a
        waveform ``(samples,)`` or ``(batch, samples)``, float, finite.
        """
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise ValueError(f"input must be float32/float64 (scale PCM audio to [-1, 1]), got dtype {x.dtype}")
        n = len(self.input_shape)
        if x.shape == self.input_shape or (x.ndim == n + 1 and x.shape[1:] == self.input_shape):
            single = x.shape == self.input_shape
            feats = x.reshape(-1, *self.input_shape)
        elif self.frontend is not None and x.ndim in (1, 2) and x.shape[-1] == self.frontend.spec.num_samples:
            single = x.ndim == 1
            self._check_finite(x, "waveform")
            feats = self.frontend(x.reshape(-1, x.shape[-1]))
        else:
            wave = (f" or a waveform (samples,) / (batch, samples) with samples = {self.frontend.spec.num_samples}"
                    if self.frontend is not None else "")
            raise ValueError(f"input of shape {x.shape} fits neither features {self.input_shape} / "
                             f"(batch, {', '.join(map(str, self.input_shape))}){wave}")
        if feats.shape[0] == 0:
            raise ValueError("input holds no clips (batch size 0)")
        self._check_finite(feats, "features")
        return np.ascontiguousarray(feats, dtype=np.float32), single

    @staticmethod
    def _check_finite(x: np.ndarray, what: str) -> None:
        bad = ~np.isfinite(x)
        if bad.any():
            first = tuple(int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"{what} hold {int(bad.sum())} NaN/inf value(s), first at index {first} "
                             f"(value {x[first]}) in shape {x.shape}")

    def logits(self, x: Any, view: str | int | None = None) -> np.ndarray:
        """Raw scores ``(batch, num_labels)`` (``(num_labels,)`` for a single clip)."""
        key = self.resolve_view(view)
        feats, single = self.features(x)
        out = self.program.run(feats, key)
        return out[0] if single else out

    def predict(self, x: Any, view: str | int | None = None) -> tuple[np.ndarray, list[str] | str]:
        """Class probabilities and the most likely label.

        Args:
            x: a waveform ``(samples,)`` / ``(batch, samples)`` (needs a front-end) or features
                ``input_shape`` / ``(batch, *input_shape)``; float, finite.
            view: a view name (e.g. ``"4"`` or ``4``); ``None`` for :attr:`default_view`.

        Returns:
            ``(scores, labels)``: softmax scores ``(batch, num_labels)`` and a list of the argmax
            labels; for a single clip ``(num_labels,)`` and one label string.

        Raises:
            ValueError: wrong dtype or shape (both quoted), NaN/inf values, unknown view.
        """
        logits = self.logits(x, view)
        scores = _softmax(logits)
        top = scores.argmax(axis=-1)
        if scores.ndim == 1:
            return scores, self.labels[int(top)]
        return scores, [self.labels[int(i)] for i in top]


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"neon"`` when the compiled engine is registered, else ``"reference"``."""
    if backend != "auto":
        return backend
    from binkit.runtime import backend_names

    return "neon" if "neon" in backend_names() else "reference"


def load(path: str | os.PathLike[str], backend: str = "auto") -> RuntimeModel:
    """Load and validate the artifact at ``path`` and prepare it on ``backend`` (``"auto"``: the
    compiled ``neon`` engine when installed, else the numpy ``reference``; also the reference when
    the artifact needs a format feature the engine does not declare, see
    :func:`binkit.runtime.artifact.required_features`).

    Raises:
        ArtifactError: the file is missing, unreadable, tampered with or inconsistent, or needs a
            feature the named backend does not run.
        UnknownNameError: ``backend`` is not registered (the message lists those that are).
    """
    from binkit.runtime import get_backend

    requested, backend = backend, resolve_backend(backend)
    impl = get_backend(backend)  # fail on a wrong name before reading the file
    artifact = load_artifact(path)
    missing = required_features(artifact) - frozenset(getattr(impl, "features", ()))
    if missing and requested == "auto" and backend != "reference":
        backend, impl = "reference", get_backend("reference")  # e.g. multi-plane ops before the engine has them
    elif missing:
        raise ArtifactError(f"{path}: backend {backend!r} does not run the artifact feature(s) "
                            f"{', '.join(sorted(missing))} (optional format features, see "
                            "binkit.runtime.artifact.required_features); use backend='reference' or 'auto'")
    return RuntimeModel(artifact, impl.load(artifact), backend)


def infer_file(model_path: str | os.PathLike[str], audio_path: str | os.PathLike[str], *,
               backend: str = "auto", view: str | None = None, top: int = 3) -> list[tuple[str, float]]:
    """``binkit infer``: the ``top`` labels with their scores for one audio file."""
    from binkit.runtime.audio import load_clip

    model = load(model_path, backend=backend)
    if model.frontend is None:
        raise ValueError(f"{model_path}: the model has no front-end spec; it takes features, not audio")
    spec = model.frontend.spec
    clip = load_clip(audio_path, spec.sample_rate, spec.num_samples)
    scores, _ = model.predict(clip, view=view)
    order = np.argsort(-scores)[: max(1, int(top))]
    return [(model.labels[int(i)], float(scores[i])) for i in order]
