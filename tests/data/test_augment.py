"""Tests of binkit/data/augment.py: each operation exactly, the recipes' values, seeding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from binkit.data.augment import NUM_DRAWS, RECIPES, AugmentSpec, augment_batch, draw_uniforms

T = 1000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramp(batch: int, length: int = T) -> torch.Tensor:
    """Row b is 1 + b/1000 + t/1e5 (distinct, nonzero, easy to trace back)."""
    t = torch.arange(length, dtype=torch.float32)
    return 1 + torch.arange(batch, dtype=torch.float32)[:, None] / 1000 + t / 1e5


def only(**fields) -> AugmentSpec:
    return AugmentSpec(recipe="none", **fields)


NO_NOISE = torch.zeros(0)


class TestSpec:
    def test_recipe_defaults_are_the_reference_values(self):
        b = AugmentSpec(recipe="bifsmn")
        # bifsmn.md section 7
        assert (b.noise_prob, b.noise_mix, b.noise_level_min, b.noise_level_max) == (0.3, "blend", 0.0, 0.3)
        assert (b.gain_prob, b.gain_min, b.gain_max) == (0.5, 0.7, 1.1)
        assert (b.speed_prob, b.speed_max) == (0.5, 0.2)
        assert (b.shift_prob, b.shift_min_samples, b.shift_max_samples) == (0.5, -3200, 3200)
        assert b.order == "noise_gain_speed_shift" and not b.clip and not b.silence_noise
        t = AugmentSpec(recipe="tf")
        # speech_commands.md section 6: shift [-1600, 1600), noise p 0.8 volume U(0, 0.1), clip, silence U(0, 1)
        assert (t.shift_prob, t.shift_min_samples, t.shift_max_samples) == (1.0, -1600, 1599)
        assert (t.noise_prob, t.noise_mix, t.noise_level_min, t.noise_level_max) == (0.8, "add", 0.0, 0.1)
        assert t.clip and t.silence_noise and t.silence_volume_max == 1.0
        assert t.order == "gain_speed_shift_noise" and t.gain_prob == 0 and t.speed_prob == 0
        n = AugmentSpec()
        assert n.recipe == "none" and not n.active
        for name, values in RECIPES.items():
            spec = AugmentSpec(recipe=name)
            assert all(getattr(spec, k) == v for k, v in values.items())

    def test_per_field_override_keeps_the_rest_of_the_recipe(self):
        spec = AugmentSpec(recipe="bifsmn", noise_prob=0.5, shift_max_samples=100)
        assert spec.noise_prob == 0.5 and spec.shift_max_samples == 100
        assert spec.gain_prob == 0.5 and spec.shift_min_samples == -3200 and spec.noise_level_max == 0.3

    def test_round_trips_through_a_dict(self):
        spec = AugmentSpec(recipe="tf", noise_prob=0.1)
        assert AugmentSpec(**spec.model_dump()) == spec

    @pytest.mark.parametrize("bad", [
        {"nosie_prob": 0.3},  # unknown field
        {"recipe": "specaugment"},
        {"noise_prob": 1.5},
        {"gain_min": 1.2, "gain_max": 1.1},
        {"shift_min_samples": 10, "shift_max_samples": -10},
        {"noise_mix": "multiply"},
    ])
    def test_invalid_specs_are_rejected(self, bad):
        with pytest.raises(ValidationError):
            AugmentSpec(**{"recipe": "bifsmn", **bad})


class TestShift:
    @pytest.mark.parametrize("delay", [0, 1, 250, -1, -250, T - 1, -(T - 1)])
    def test_moves_and_zero_fills_exactly(self, delay):
        x = ramp(3)
        out = augment_batch(x, NO_NOISE, only(shift_prob=1, shift_min_samples=delay, shift_max_samples=delay), gen())
        expected = torch.zeros_like(x)
        if delay >= 0:
            expected[:, delay:] = x[:, :T - delay]
        else:
            expected[:, :T + delay] = x[:, -delay:]
        assert torch.equal(out, expected)

    def test_delays_cover_the_inclusive_range(self):
        x = torch.zeros(4000, T)
        x[:, T // 2] = 1.0  # an impulse: its new position is T/2 + delay
        spec = only(shift_prob=1, shift_min_samples=-3, shift_max_samples=2)
        out = augment_batch(x, NO_NOISE, spec, gen())
        delays = out.argmax(1) - T // 2
        assert set(delays.tolist()) == {-3, -2, -1, 0, 1, 2}

    def test_probability(self):
        x = ramp(4000)
        out = augment_batch(x, NO_NOISE, only(shift_prob=0.5, shift_min_samples=5, shift_max_samples=5), gen())
        moved = (out != x).any(1).float().mean().item()
        assert abs(moved - 0.5) < 0.04
        assert torch.equal(augment_batch(x, NO_NOISE, only(shift_prob=0, shift_max_samples=5), gen()), x)


class TestGain:
    def test_range_and_probability(self):
        x = ramp(4000)
        out = augment_batch(x, NO_NOISE, only(gain_prob=0.5, gain_min=0.7, gain_max=1.1), gen())
        ratio = out / x
        per_row = ratio[:, 0]
        assert torch.allclose(ratio, per_row[:, None].expand_as(ratio), atol=1e-6)  # one gain per clip
        changed = per_row != 1
        assert abs(changed.float().mean().item() - 0.5) < 0.04
        assert per_row.min() >= 0.7 - 1e-6 and per_row.max() <= 1.1 + 1e-6
        assert abs(per_row[changed].mean().item() - 0.9) < 0.01  # U(0.7, 1.1) has mean 0.9


class TestSpeed:
    def test_matches_nearest_interpolation_then_fix_length(self):
        x = torch.randn(64, T)
        spec = only(speed_prob=1, speed_max=0.2)
        out = augment_batch(x, NO_NOISE, spec, gen(3))
        u = draw_uniforms(64, gen(3)).double()
        s = -0.2 + 0.4 * u[:, 7]  # the speed column of the draw table
        for b in range(64):
            y = F.interpolate(x[b][None, None], scale_factor=1.0 / (1.0 + float(s[b])), mode="nearest")[0, 0]
            assert y.shape[0] == math.floor(T / (1 + float(s[b])))  # length before the fix
            ref = torch.zeros(T)
            ref[:min(T, y.shape[0])] = y[:T]
            assert torch.equal(out[b], ref), b

    def test_faster_clips_end_in_zeros_slower_ones_are_trimmed(self):
        x = ramp(2000)
        out = augment_batch(x, NO_NOISE, only(speed_prob=1, speed_max=0.2), gen())
        zeros = (out == 0).sum(1)
        # s > 0 shortens the clip to floor(T / (1 + s)) samples: up to T - floor(T / 1.2) zeros
        assert zeros.max() <= T - math.floor(T / 1.2) and zeros.max() > 0.9 * (T - T / 1.2)
        assert ((zeros == 0).float().mean() - 0.5).abs() < 0.05  # s < 0: longer, trimmed, no zeros


class TestNoise:
    def noise(self, files: int = 3, length: int = 3 * T) -> tuple[torch.Tensor, torch.Tensor]:
        """File f holds f*10 + t/1e4: a crop's first value tells its file and start."""
        t = torch.arange(length, dtype=torch.float64)
        bank = torch.cat([f * 10 + t / 1e4 for f in range(files)]).to(torch.float32)
        return bank, torch.arange(files + 1) * length

    def test_blend_formula_with_contiguous_crops_of_one_file(self):
        noise, offsets = self.noise()
        x = ramp(500)
        spec = only(noise_prob=1, noise_mix="blend", noise_level_min=0.25, noise_level_max=0.25)
        out = augment_batch(x, noise, spec, gen(), noise_offsets=offsets)
        crop = (out - 0.75 * x) / 0.25
        first = crop[:, 0].double()
        files = torch.round(first / 10)
        starts = (first - files * 10) * 1e4
        assert set(files.long().tolist()) == {0, 1, 2}  # uniform over the files
        assert starts.min() >= -0.5 and starts.max() <= 2 * T + 0.5  # crops fit inside their file
        expected = first[:, None] + torch.arange(T, dtype=torch.float64) / 1e4
        assert torch.allclose(crop.double(), expected, atol=3e-3)

    def test_additive_noise_level_range_and_clipping(self):
        noise, offsets = torch.full((5 * T,), 0.5), None
        x = torch.full((4000, T), 0.2)
        spec = only(noise_prob=0.8, noise_mix="add", noise_level_min=0.0, noise_level_max=0.1)
        out = augment_batch(x, noise, spec, gen(), noise_offsets=offsets)
        level = (out[:, 0] - 0.2) / 0.5
        assert torch.allclose(out, out[:, :1].expand_as(out))
        noisy = level > 1e-6
        assert abs(noisy.float().mean().item() - 0.8) < 0.03
        assert level.max() <= 0.1 + 1e-6 and abs(level[noisy].mean().item() - 0.05) < 0.005
        loud = augment_batch(torch.full((8, T), 0.99), noise, spec.model_copy(update={"clip": True}), gen(1),
                             noise_offsets=offsets)
        assert loud.max() == 1.0

    def test_tf_silence_entries_get_only_noise_at_volume_up_to_one(self):
        noise = torch.full((5 * T,), 0.5)
        x = ramp(400) - 1  # inside [-1, 1]: the recipe clips
        silence = torch.zeros(400, dtype=torch.bool)
        silence[::2] = True
        spec = AugmentSpec(recipe="tf", shift_prob=0, noise_prob=0)
        out = augment_batch(x, noise, spec, gen(), silence=silence)
        assert torch.equal(out[1::2], x[1::2])  # not silence: noise_prob 0 leaves them alone
        vol = out[::2, 0] / 0.5
        assert torch.allclose(out[::2], out[::2, :1].expand(-1, T))  # foreground x 0: only noise
        assert vol.min() >= 0 and vol.max() <= 1 and vol.max() > 0.9 and vol.min() < 0.1

    def test_bifsmn_shifts_the_noise_tf_does_not(self):
        noise = torch.full((5 * T,), 0.5)
        x = torch.zeros(4, T)
        kw = {"noise_prob": 1, "noise_level_min": 0.2, "noise_level_max": 0.2, "shift_prob": 1,
              "shift_min_samples": 100, "shift_max_samples": 100, "noise_mix": "add"}
        first = augment_batch(x, noise, only(order="noise_gain_speed_shift", **kw), gen())
        last = augment_batch(x, noise, only(order="gain_speed_shift_noise", **kw), gen())
        assert torch.all(first[:, :100] == 0) and torch.allclose(first[:, 100:], torch.tensor(0.1))
        assert torch.allclose(last, torch.tensor(0.1))

    def test_missing_noise_is_an_error(self):
        with pytest.raises(ValueError, match="noise_prob = 0"):
            augment_batch(ramp(4), NO_NOISE, only(noise_prob=1, noise_level_max=0.1), gen())
        with pytest.raises(ValueError, match="at least"):
            augment_batch(ramp(4), torch.ones(T // 2), only(noise_prob=1, noise_level_max=0.1), gen())


class TestSeeding:
    def noise(self) -> torch.Tensor:
        return torch.randn(20 * T, generator=gen(9)) * 0.1

    @pytest.mark.parametrize("recipe", ["bifsmn", "tf"])
    def test_same_seed_same_batch_other_seed_other_batch(self, recipe):
        x = torch.randn(32, T, generator=gen(1)) * 0.3
        spec = AugmentSpec(recipe=recipe)
        a = augment_batch(x, self.noise(), spec, gen(5))
        b = augment_batch(x, self.noise(), spec, gen(5))
        c = augment_batch(x, self.noise(), spec, gen(6))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert not torch.equal(a, x)

    def test_input_is_not_modified(self):
        x = torch.randn(16, T, generator=gen(1))
        before = x.clone()
        augment_batch(x, self.noise(), AugmentSpec(recipe="bifsmn"), gen())
        assert torch.equal(x, before)

    def test_none_returns_the_input(self):
        x = ramp(3)
        assert augment_batch(x, NO_NOISE, AugmentSpec(), gen()) is x

    def test_shards_of_the_draw_table_reproduce_the_whole_batch(self):
        x = torch.randn(10, T, generator=gen(1))
        spec = AugmentSpec(recipe="bifsmn", noise_prob=0.5)
        table = draw_uniforms(10, gen(4))
        assert table.shape == (10, NUM_DRAWS)
        whole = augment_batch(x, self.noise(), spec, None, draws=table)
        assert torch.equal(whole, augment_batch(x, self.noise(), spec, gen(4)))
        for rank in range(3):
            part = augment_batch(x[rank::3], self.noise(), spec, None, draws=table[rank::3])
            assert torch.equal(part, whole[rank::3])

    def test_probabilities_do_not_reshuffle_other_operations(self):
        x = ramp(64)
        a = augment_batch(x, NO_NOISE, only(gain_prob=1, gain_min=0.5, gain_max=2), gen(2))
        b = augment_batch(x, NO_NOISE, only(gain_prob=1, gain_min=0.5, gain_max=2, shift_prob=0.0001), gen(2))
        assert torch.equal(a, b)


class TestMixAtSnr:
    """``mix_at_snr``: the noisy test set of benchmarks/heldout_renders.py --snr."""

    @staticmethod
    def bank(length: int = T) -> tuple[torch.Tensor, torch.Tensor]:
        """Two noise files of exactly one clip each: a +-1 square wave and a sine (told apart by shape)."""
        t = torch.arange(length, dtype=torch.float32)
        square = torch.where(t % 2 == 0, 1.0, -1.0) * 0.2
        sine = 0.3 * torch.sin(t * 0.05)
        return torch.cat([square, sine]), torch.tensor([0, length, 2 * length])

    def test_each_clip_gets_one_files_crop_at_the_asked_snr(self):
        from binkit.data.augment import mix_at_snr

        noise, offsets = self.bank()
        x = 0.01 * torch.randn(64, T, generator=gen(3))
        before = x.clone()
        for snr in (20.0, 3.0, -5.0):
            y = mix_at_snr(x, noise, snr, gen(1), noise_offsets=offsets)
            assert torch.equal(x, before)  # the input is left alone
            added = (y - x).double()
            measured = 10 * torch.log10(x.double().pow(2).mean(1) / added.pow(2).mean(1))
            assert torch.allclose(measured, torch.full_like(measured, snr), atol=1e-3)
            # each added component is a scaled copy of one whole file (files hold exactly one clip)
            files = [noise[:T].double(), noise[T:].double()]
            which = []
            for row in added:
                g = [float(row @ f / (f @ f)) for f in files]
                k = max(range(2), key=lambda i: abs(g[i]))
                assert torch.allclose(row, g[k] * files[k], atol=1e-6)
                which.append(k)
            assert set(which) == {0, 1}  # the file is drawn, both occur among 64 clips

    def test_seeded_silence_and_zeros_untouched_and_clipped(self):
        from binkit.data.augment import mix_at_snr

        noise = 0.1 * torch.randn(5 * T, generator=gen(0))
        x = 0.2 * torch.randn(6, T, generator=gen(1)).clamp(-1, 1)
        x[2] = 0.0
        silence = torch.tensor([False, True, False, False, False, False])
        a = mix_at_snr(x, noise, 0.0, gen(7), silence=silence)
        assert torch.equal(a, mix_at_snr(x, noise, 0.0, gen(7), silence=silence))
        assert not torch.equal(a, mix_at_snr(x, noise, 0.0, gen(8), silence=silence))
        assert torch.equal(a[1], x[1]) and torch.equal(a[2], x[2])
        assert not torch.equal(a[0], x[0])
        loud = mix_at_snr(torch.full((2, T), 0.9), noise, -20.0, gen(0))
        assert float(loud.abs().max()) == 1.0  # the sum is clipped to [-1, 1]

    def test_bad_input_is_refused(self):
        from binkit.data.augment import mix_at_snr

        x = torch.ones(2, T) * 0.1
        noise = 0.1 * torch.randn(2 * T, generator=gen(0))
        with pytest.raises(ValueError, match="finite"):
            mix_at_snr(x, noise, math.inf, gen())
        with pytest.raises(ValueError, match="batch, samples"):
            mix_at_snr(x[0], noise, 10.0, gen())
        with pytest.raises(ValueError, match="no noise samples"):
            mix_at_snr(x, torch.zeros(0), 10.0, gen())
        with pytest.raises(ValueError, match="at least 1000 samples"):
            mix_at_snr(x, noise[: T // 2], 10.0, gen())
        with pytest.raises(ValueError, match="silent noise file"):
            mix_at_snr(x, torch.zeros(2 * T), 10.0, gen())
