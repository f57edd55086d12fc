"""The ``speech_commands`` dataset: a Speech Commands tree -> task -> decode cache -> batches.

This is binkit's default dataset. With no tree at ``root`` it builds the embedded default, the
synthetic corpus (``binkit synth``), there first (``synthesize = true``); with
``download = true`` it fetches the official archive instead. Either way the same loader, cache and
training pipeline run, so a model trained on the synthetic corpus and one trained on the real data
differ only in ``root``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from binkit.data.augment import AugmentSpec
from binkit.data.splits import LabeledSplits
from binkit.entries import DatasetEntry
from binkit.errors import DatasetError
from binkit.specs import FeaturesSpec

__all__ = ["SpeechCommandsParams", "make_speech_commands", "ENTRY", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$BINKIT_CACHE``, else ``$XDG_CACHE_HOME/binkit``, else ``~/.cache/binkit``."""
    if os.environ.get("BINKIT_CACHE"):
        return Path(os.environ["BINKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "binkit"


class SpeechCommandsParams(BaseModel):
    """Params of the ``speech_commands`` dataset (``[data.params]`` in a spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field("data/speech_commands_synth", description="the Speech Commands tree (V1 or V2 layout)")
    synthesize: bool = Field(True, description="if root holds no tree, build the synthetic corpus there")
    synth_size: Literal["small", "full"] = Field("small", description="size of the synthetic corpus")
    synth_seed: int = Field(0, ge=0)
    download: bool = Field(False, description="if root holds no tree, download the official archive")
    version: Literal["v1", "v2"] = Field("v2", description="archive to download (download = true)")
    task: Literal["12", "35"] = Field("12", description="12: 10 keywords + silence + unknown; 35: all V2 words")
    protocol: Literal["tf", "bifsmn"] = Field(
        "tf", description="tf: 10% sampled unknown + 10% noise silence; bifsmn: all unknowns, zero silence")
    test_archive: str = Field("", description="folder of the official 12-class test archive (test split)")
    seed: int = Field(59185, ge=0, description="unknown sampling and silence rendering seed")
    on_error: Literal["raise", "skip"] = Field("raise", description="corrupt/empty audio: fail, or skip and count")
    cache_dir: str = Field("", description="decode cache folder; empty = $BINKIT_CACHE or ~/.cache/binkit")
    jobs: int = Field(2, ge=1, le=64, description="decode / synthesis processes")
    augment: AugmentSpec = Field(default_factory=lambda: AugmentSpec(recipe="bifsmn"),
                                 description="training augmentation (recipe + per-field overrides)")


def _has_tree(root: Path) -> bool:
    from binkit.data.speech_commands import scan

    try:
        scan(root)
    except DatasetError:
        return False
    return True


def _ensure_tree(params: SpeechCommandsParams, progress: bool) -> Path:
    root = Path(params.root).expanduser()
    if _has_tree(root):
        return root
    if params.download:
        from binkit.data.download import download_speech_commands

        return download_speech_commands(root, version=params.version, progress=progress)
    if params.synthesize:
        from binkit.data.synth import synthesize

        if root.exists() and any(root.iterdir()):
            raise DatasetError(f"{root} is not empty but holds no Speech Commands tree; "
                               "point data.params.root at a tree or an empty folder")
        print(f"speech_commands: no tree at {root}; synthesizing the '{params.synth_size}' corpus there", flush=True)
        synthesize(root, size=params.synth_size, seed=params.synth_seed, jobs=params.jobs, progress=progress,
                   overwrite=root.exists())
        return root
    raise DatasetError(f"no Speech Commands tree at {root}: set data.params.root to one, or "
                       "data.params.download = true (official archive) or synthesize = true (synthetic corpus)")


def make_speech_commands(params: SpeechCommandsParams, features: FeaturesSpec, *,
                         progress: bool = True) -> LabeledSplits:
    """Build (or reuse) the tree, the task and the decode caches; return batched splits."""
    from binkit.data.cache import build_cache
    from binkit.data.pipeline import make_batch_fn
    from binkit.data.speech_commands import build_task, scan

    root = _ensure_tree(params, progress)
    task = build_task(scan(root), task=params.task, protocol=params.protocol,
                      test_archive=params.test_archive or None, seed=params.seed, on_error=params.on_error)
    cache_dir = Path(params.cache_dir).expanduser() if params.cache_dir else default_cache_dir()
    decoded = {
        split: build_cache(refs, task.noise_files, cache_dir, sample_rate=features.sample_rate,
                           num_samples=features.num_samples, progress=progress, jobs=params.jobs)
        for split, refs in task.splits.items()
    }
    empty = [s for s, d in decoded.items() if len(d) == 0]
    if empty:
        raise DatasetError(f"{root}: split(s) {empty} are empty for task {params.task!r} "
                           f"protocol {params.protocol!r}; counts: {task.info.get('counts')}")
    batch_fn = make_batch_fn(decoded, None, features, params.augment)
    info = {**task.info, "dataset": "speech_commands", "root": str(root), "augment": params.augment.recipe}
    return LabeledSplits(labels=list(task.labels), splits=decoded, feature_shape=tuple(features.shape),
                         batch_fn=batch_fn, info=info)


ENTRY = DatasetEntry(
    name="speech_commands",
    factory=make_speech_commands,
    params=SpeechCommandsParams,
    description="Google Speech Commands V1/V2 (or the synthetic corpus): tf/bifsmn 12-class, 35-class",
    reference="Warden, Speech Commands, 2018, arXiv:1804.03209",
)
