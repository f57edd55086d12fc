"""The compiled bit path (binkit_bits.h via binkit_neon._bits) agrees with the numpy mirror.

binkit/runtime/bits.py is the oracle: words must be bit-identical and integer dot products equal,
at channel counts around the 64-bit word boundary. Bad input is rejected in Python with a
ValueError that names the problem, before any C runs.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from binkit.runtime import bits

binkit_neon = pytest.importorskip("binkit_neon")
_bits = binkit_neon._bits

AWKWARD_CHANNELS = [1, 63, 64, 65, 127, 128, 129]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _random(rows: int, num_channels: int, seed: int) -> np.ndarray:
    x = _rng(seed).standard_normal((rows, num_channels)).astype(np.float32)
    # Sprinkle the awkward values: both zeros (both +1), infinities, subnormals.
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45], dtype=np.float32)
    mask = _rng(seed + 1).random(x.shape) < 0.1
    x[mask] = _rng(seed + 2).choice(specials, size=int(mask.sum()))
    return x


class TestConstants:
    def test_bits_per_word_from_header(self):
        assert _bits.BITS_PER_WORD == binkit_neon.BITS_PER_WORD == bits.BITS_PER_WORD == 64

    @pytest.mark.parametrize("num_channels", [0, *AWKWARD_CHANNELS, 10_000])
    def test_num_words(self, num_channels):
        assert binkit_neon.num_words(num_channels) == bits.num_words(num_channels)


class TestPack:
    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_one_hot(self, num_channels):
        # Row c has a single -1 at channel c: the C path sets exactly the mirror's bit.
        x = np.ones((num_channels, num_channels), dtype=np.float32)
        np.fill_diagonal(x, -1.0)
        words = binkit_neon.pack_signs(x)
        np.testing.assert_array_equal(words, bits.pack_signs(x))
        for channel in range(num_channels):
            expected = np.zeros(bits.num_words(num_channels), dtype=np.uint64)
            expected[channel // 64] = np.uint64(1) << np.uint64(channel % 64)
            np.testing.assert_array_equal(words[channel], expected, err_msg=f"channel {channel}")

    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_random_bit_identical(self, num_channels):
        x = _random(9, num_channels, seed=num_channels)
        words = binkit_neon.pack_signs(x)
        assert words.dtype == np.uint64
        assert words.shape == (9, bits.num_words(num_channels))
        np.testing.assert_array_equal(words, bits.pack_signs(x))

    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_padding_zero(self, num_channels):
        words = binkit_neon.pack_signs(-np.ones((2, num_channels), dtype=np.float32))
        tail = num_channels % 64
        if tail:
            assert not (words[:, -1] >> np.uint64(tail)).any()
        np.testing.assert_array_equal(bits.unpack_signs(words, num_channels), -np.ones((2, num_channels)))

    def test_zeros_both_signs_are_plus_one(self):
        x = np.array([[0.0, -0.0] * 40], dtype=np.float32)
        np.testing.assert_array_equal(binkit_neon.pack_signs(x), [[0, 0]])

    def test_out_is_overwritten(self):
        # pack_rows writes every word, padding included, whatever `out` held before.
        x = np.ones((3, 65), dtype=np.float32)
        out = np.full((3, 2), np.iinfo(np.uint64).max, dtype=np.uint64)
        _bits.pack_rows(x, out)
        np.testing.assert_array_equal(out, 0)

    @pytest.mark.parametrize("shape", [(0, 65), (4, 0), (0, 0)])
    def test_empty(self, shape):
        x = np.zeros(shape, dtype=np.float32)
        words = binkit_neon.pack_signs(x)
        assert words.shape == (shape[0], bits.num_words(shape[1]))
        np.testing.assert_array_equal(words, bits.pack_signs(x))

    def test_read_only_input(self):
        x = _random(3, 100, seed=5)
        x.flags.writeable = False
        np.testing.assert_array_equal(binkit_neon.pack_signs(x), bits.pack_signs(x))


class TestDot:
    @pytest.mark.parametrize("num_channels", [*AWKWARD_CHANNELS, 1000])
    def test_matches_mirror(self, num_channels):
        a = binkit_neon.pack_signs(_random(6, num_channels, seed=10 + num_channels))
        w = binkit_neon.pack_signs(_random(11, num_channels, seed=20 + num_channels))
        got = binkit_neon.dot_pm1(a, w, num_channels)
        assert got.dtype == np.int64
        assert got.shape == (6, 11)
        np.testing.assert_array_equal(got, bits.dot_pm1(a, w, num_channels))

    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_extremes(self, num_channels):
        plus = binkit_neon.pack_signs(np.ones((1, num_channels), dtype=np.float32))
        minus = binkit_neon.pack_signs(-np.ones((1, num_channels), dtype=np.float32))
        both = np.concatenate([plus, minus])
        expected = np.array([[num_channels, -num_channels], [-num_channels, num_channels]])
        np.testing.assert_array_equal(binkit_neon.dot_pm1(both, both, num_channels), expected)

    def test_empty_rows_count_zero(self):
        # Rows of zero channels have zero words, and a dot product over nothing is 0.
        a = binkit_neon.pack_signs(np.zeros((3, 0), dtype=np.float32))
        w = binkit_neon.pack_signs(np.zeros((2, 0), dtype=np.float32))
        got = binkit_neon.dot_pm1(a, w, 0)
        np.testing.assert_array_equal(got, np.zeros((3, 2), dtype=np.int64))
        np.testing.assert_array_equal(got, bits.dot_pm1(a, w, 0))

    @pytest.mark.parametrize(("rows_a", "rows_w"), [(0, 3), (3, 0), (0, 0)])
    def test_no_rows(self, rows_a, rows_w):
        a = np.zeros((rows_a, 2), dtype=np.uint64)
        w = np.zeros((rows_w, 2), dtype=np.uint64)
        assert binkit_neon.dot_pm1(a, w, 100).shape == (rows_a, rows_w)


class TestRejects:
    """Each bad input raises ValueError, from Python, naming what it received."""

    def test_pack_wrong_dtype(self):
        with pytest.raises(ValueError, match="x must have dtype float32, got dtype float64"):
            binkit_neon.pack_signs(np.zeros((2, 3)))

    def test_pack_not_ndarray(self):
        with pytest.raises(ValueError, match="x must be a numpy.ndarray, got list"):
            binkit_neon.pack_signs([[1.0, -1.0]])

    @pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
    def test_pack_wrong_rank(self, shape):
        with pytest.raises(ValueError, match="must be 2-D .*got shape " + re.escape(str(shape))):
            binkit_neon.pack_signs(np.zeros(shape, dtype=np.float32))

    def test_pack_non_contiguous(self):
        x = np.zeros((70, 4), dtype=np.float32).T
        with pytest.raises(ValueError, match=r"x must be C-contiguous, got shape \(4, 70\) with strides"):
            binkit_neon.pack_signs(x)

    def test_pack_nan(self):
        x = np.ones((3, 130), dtype=np.float32)
        x[2, 129] = np.nan
        with pytest.raises(ValueError, match="NaN.*first at row 2, channel 129"):
            binkit_neon.pack_signs(x)

    def test_pack_nan_with_infinities(self):
        # inf + -inf makes the quick sum NaN; the exact check must still pass clean input ...
        x = np.array([[np.inf, -np.inf, 1.0]], dtype=np.float32)
        np.testing.assert_array_equal(binkit_neon.pack_signs(x), bits.pack_signs(x))
        # ... and find a real NaN.
        x[0, 2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            binkit_neon.pack_signs(x)

    def test_dot_mismatched_words(self):
        a = np.zeros((2, 2), dtype=np.uint64)
        w = np.zeros((3, 1), dtype=np.uint64)
        with pytest.raises(ValueError, match=r"same number of words.*\(2, 2\).*\(3, 1\)"):
            binkit_neon.dot_pm1(a, w, 65)

    def test_dot_words_do_not_match_num_channels(self):
        a = np.zeros((2, 1), dtype=np.uint64)
        with pytest.raises(ValueError, match="num_channels=65 needs 2 words per row, got 1"):
            binkit_neon.dot_pm1(a, a, 65)

    def test_dot_nonzero_padding(self):
        a = np.zeros((2, 2), dtype=np.uint64)
        w = a.copy()
        w[1, 1] = np.uint64(1) << np.uint64(63)
        with pytest.raises(ValueError, match="w_packed has nonzero padding bits.*first row 1"):
            binkit_neon.dot_pm1(a, w, 65)

    def test_dot_wrong_dtype(self):
        a = np.zeros((2, 1), dtype=np.int64)
        with pytest.raises(ValueError, match="a_packed must have dtype uint64, got dtype int64"):
            binkit_neon.dot_pm1(a, np.zeros((2, 1), dtype=np.uint64), 64)

    def test_dot_non_contiguous(self):
        w = np.zeros((2, 4), dtype=np.uint64)[:, ::2]
        with pytest.raises(ValueError, match="w_packed must be C-contiguous"):
            binkit_neon.dot_pm1(np.zeros((2, 2), dtype=np.uint64), w, 128)

    @pytest.mark.parametrize("bad", [-1, 1.5, "64", True])
    def test_dot_bad_num_channels(self, bad):
        with pytest.raises(ValueError, match="num_channels must be"):
            binkit_neon.dot_pm1(np.zeros((1, 1), dtype=np.uint64), np.zeros((1, 1), dtype=np.uint64), bad)

    def test_cython_guards_out_shape(self):
        # The private Cython entries keep a fixed-message shape guard: a wrong `out` must never
        # be written out of bounds.
        with pytest.raises(ValueError, match="pack_rows"):
            _bits.pack_rows(np.zeros((2, 65), dtype=np.float32), np.zeros((2, 1), dtype=np.uint64))
        with pytest.raises(ValueError, match="dot_rows"):
            _bits.dot_rows(
                np.zeros((2, 2), dtype=np.uint64), np.zeros((3, 2), dtype=np.uint64), 65,
                np.zeros((3, 2), dtype=np.int64),
            )


def test_imports_without_torch():
    code = "import sys, binkit.runtime.bits, binkit_neon; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
