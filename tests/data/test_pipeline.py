"""Tests of binkit/data/pipeline.py: the batch_fn over a decode cache (order, seeding, alignment, prefetch)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf
import torch

from binkit.data.augment import AugmentSpec
from binkit.data.cache import DecodedSplit, build_cache
from binkit.data.features import FrontEnd
from binkit.data.items import ClipRef
from binkit.data.features import BatchFrontEnd
from binkit.data.pipeline import make_batch_fn
from binkit.data.splits import LabeledSplits
from binkit.specs import FeaturesSpec

SR = 16000
T = 8000  # 0.5 s clips
FEATURES = FeaturesSpec(clip_seconds=0.5)  # BiFSMN front-end: (1, 32, 16)
TONES = (300.0, 1000.0, 2500.0, 5500.0)  # +-20% speed never moves one into another's band
N = 50


def tone_clip(i: int) -> np.ndarray:
    """Clip ``i``: a tone whose frequency encodes ``i % 4``, plus a little noise."""
    rng = np.random.default_rng(i)
    t = np.arange(T) / SR
    x = 0.4 * np.sin(2 * np.pi * TONES[i % 4] * t + rng.uniform(0, 6)) + rng.normal(0, 0.01, T)
    return x.astype(np.float32)


def tone_class(x: torch.Tensor) -> torch.Tensor:
    """Decode ``i % 4`` from features ``(B, 1, n_mels, frames)``: the band of the loudest mel bin."""
    edges = FrontEnd(FEATURES).mel.mel_scale.fb.argmax(0).float() * SR / FEATURES.n_fft  # bin centre Hz
    peak_hz = edges[x[:, 0].mean(-1).argmax(-1)]
    bounds = torch.tensor([(a * b) ** 0.5 for a, b in itertools.pairwise(TONES)])  # geometric midpoints
    return torch.bucketize(peak_hz, bounds)


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, DecodedSplit]:
    """train (with a noise bank), val, test; train_silence (+ two zero silence entries, labels N
    and N + 1) and train_quiet (no noise bank) share train's clips."""
    root = tmp_path_factory.mktemp("pipeline")
    noise = root / "noise.wav"
    sf.write(noise, np.random.default_rng(0).normal(0, 0.05, 3 * SR).astype(np.float32), SR, subtype="PCM_16")
    refs = {}
    for name, count in (("train", N), ("val", 21), ("test", 13)):
        refs[name] = []
        for i in range(count):
            path = root / f"{name}_{i}.wav"
            sf.write(path, tone_clip(i), SR, subtype="PCM_16")
            refs[name].append(ClipRef(str(path), label=i))  # label = row: batches can be traced back
    refs["train_silence"] = refs["train"] + [ClipRef(None, N, silence="zeros"), ClipRef(None, N + 1, silence="zeros")]
    out = {name: build_cache(r, [str(noise)], root / "cache", num_samples=T, progress=False, jobs=1)
           for name, r in refs.items()}
    out["train_quiet"] = build_cache(refs["train"], [], root / "cache", num_samples=T, progress=False, jobs=1)
    return out


def batch_fn(splits, recipe="bifsmn", prefetch=2, features=FEATURES, train="train"):
    chosen = {"train": splits[train], "val": splits["val"], "test": splits["test"]}
    return make_batch_fn(chosen, None, features, AugmentSpec(recipe=recipe), prefetch=prefetch)


def epoch(fn, split="train", batch_size=16, **kwargs):
    kwargs.setdefault("shuffle", split == "train")
    return list(fn(split, batch_size, **kwargs))


class TestOrder:
    def test_every_example_exactly_once_per_epoch(self, splits):
        batches = epoch(batch_fn(splits), epoch=3, seed=1)
        assert [len(y) for _, y in batches] == [16, 16, 16, 2]
        assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(N))

    def test_drop_last(self, splits):
        batches = epoch(batch_fn(splits), drop_last=True)
        assert [len(y) for _, y in batches] == [16, 16, 16]

    def test_same_seed_and_epoch_same_batches(self, splits):
        fn = batch_fn(splits)
        a, b = epoch(fn, epoch=2, seed=7), epoch(batch_fn(splits), epoch=2, seed=7)
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)

    def test_other_epoch_or_seed_other_order(self, splits):
        fn = batch_fn(splits)
        base = torch.cat([y for _, y in epoch(fn, epoch=0, seed=0)])
        assert not torch.equal(base, torch.cat([y for _, y in epoch(fn, epoch=1, seed=0)]))
        assert not torch.equal(base, torch.cat([y for _, y in epoch(fn, epoch=0, seed=1)]))

    def test_prefetch_on_and_off_identical(self, splits):
        on, off = batch_fn(splits, prefetch=3), batch_fn(splits, prefetch=0)
        for split in ("train", "val"):
            for (xa, ya), (xb, yb) in zip(epoch(on, split, epoch=4, seed=2), epoch(off, split, epoch=4, seed=2),
                                          strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)

    def test_ranks_together_see_the_single_process_batches(self, splits):
        fn = batch_fn(splits, prefetch=0)
        whole = epoch(fn, epoch=1, seed=3)
        shards = [epoch(fn, epoch=1, seed=3, rank=r, world_size=3) for r in range(3)]
        for i, (x, y) in enumerate(whole):
            for r in range(3):
                xs, ys = shards[r][i]
                assert torch.equal(ys, y[r::3])
                torch.testing.assert_close(xs, x[r::3], atol=1e-4, rtol=1e-5)


class TestContent:
    @pytest.mark.parametrize("kind", ["bifsmn_logmel", "logmel", "mfcc"])
    def test_shapes_follow_the_features_spec(self, splits, kind):
        features = FeaturesSpec(kind=kind, clip_seconds=0.5)
        for split in ("train", "val", "test"):
            x, y = next(iter(batch_fn(splits, features=features)(split, 8, shuffle=True)))
            assert x.shape == (8, *features.shape) and x.dtype == torch.float32
            assert y.shape == (8,) and y.dtype == torch.int64
            assert torch.isfinite(x).all()

    def test_labels_stay_with_their_waveforms_through_augmentation(self, splits):
        for recipe in ("bifsmn", "none"):
            for x, y in epoch(batch_fn(splits, recipe=recipe), epoch=5, seed=5):
                assert torch.equal(tone_class(x), y % 4), recipe

    def test_train_is_augmented_val_and_test_are_not(self, splits):
        fn = batch_fn(splits)
        plain = batch_fn(splits, recipe="none")
        aug = torch.cat([x for x, _ in epoch(fn, epoch=0)])
        ref = torch.cat([x for x, _ in epoch(plain, epoch=0)])
        assert not torch.allclose(aug, ref, atol=1e-3)
        frontend = BatchFrontEnd(FEATURES)
        for split in ("val", "test"):
            data = splits[split]
            expected = frontend(torch.from_numpy(data.batch(np.arange(len(data)))))
            first = epoch(fn, split, batch_size=8, epoch=0)
            x = torch.cat([x for x, _ in first])
            assert torch.equal(torch.cat([y for _, y in first]), torch.arange(len(data)))
            torch.testing.assert_close(x, expected, atol=1e-4, rtol=1e-5)
            again = torch.cat([x for x, _ in epoch(fn, split, batch_size=5, epoch=9, seed=4)])
            assert torch.equal(x, again)  # computed once, identical every epoch

    def test_tf_recipe_renders_fresh_noise_into_silence_entries(self, splits):
        fn = batch_fn(splits, recipe="tf", train="train_silence")
        found = 0
        for x, y in epoch(fn, epoch=0):
            silent = y >= N
            found += int(silent.sum())
            # zero clips + noise at volume U(0, 1): finite and not the floor value of all-zero input
            assert (x[silent].amax(dim=(1, 2, 3)) > -90).all()
        assert found == 2

    def test_labeled_splits_contract(self, splits):
        fn = batch_fn(splits)
        data = LabeledSplits([str(i) for i in range(N)], {k: splits[k] for k in ("train", "val", "test")},
                             FEATURES.shape, batch_fn=fn)
        x, y = next(iter(data.batches("train", 10, shuffle=True, epoch=0, seed=0, drop_last=True)))
        assert x.shape == (10, *FEATURES.shape) and y.shape == (10,)

    def test_mismatched_cache_settings_are_rejected(self, splits):
        with pytest.raises(ValueError, match="rebuild the cache"):
            batch_fn(splits, features=FeaturesSpec())  # 1 s features over 0.5 s clips
        with pytest.raises(KeyError):
            batch_fn(splits)("dev", 4)


class TestFrontEnd:
    @pytest.mark.parametrize("kwargs", [{}, {"kind": "logmel"}, {"kind": "mfcc", "n_mfcc": 13},
                                        {"normalized": False, "f_min": 20.0, "f_max": 7000.0}])
    def test_equals_torchaudio_front_end(self, kwargs):
        spec = FeaturesSpec(**kwargs)
        x = torch.randn(5, spec.num_samples, generator=torch.Generator().manual_seed(0)) * 0.1
        fast, ref = BatchFrontEnd(spec, chunk=2), FrontEnd(spec)
        torch.testing.assert_close(fast(x), ref(x), atol=2e-3, rtol=1e-4)
        torch.testing.assert_close(fast(x[None]), ref(x)[None], atol=2e-3, rtol=1e-4)  # leading dims


class TestPrefetchThread:
    def test_stopping_early_cancels_the_work_ahead(self, splits, monkeypatch):
        fn = batch_fn(splits, prefetch=2)
        made = []
        real = fn._train_batch
        monkeypatch.setattr(fn, "_train_batch", lambda *a: made.append(1) or real(*a))
        it = iter(fn("train", 4, shuffle=True))
        next(it)
        it.close()  # returns once the job in flight, if any, is done
        count = len(made)
        assert count <= 3  # the batch taken and at most `prefetch` ahead, of 13
        next(iter(fn("val", 4)))  # the thread is free for the next consumer
        assert len(made) == count

    def test_a_forked_child_starts_its_own_thread(self, monkeypatch):
        from binkit.data import pipeline

        parent = pipeline._executor()
        monkeypatch.setattr(pipeline, "_EXECUTOR", parent)  # restored after the test
        pipeline._forget_executor_in_child()  # what os.register_at_fork runs in a child
        child = pipeline._executor()
        try:
            assert child is not parent and child.submit(lambda: 42).result(timeout=10) == 42
        finally:
            child.shutdown()

    def test_errors_surface_in_the_consumer(self, splits):
        fn = batch_fn(splits, recipe="tf", train="train_quiet")  # no noise bank
        with pytest.raises(ValueError, match="noise"):
            epoch(fn)
