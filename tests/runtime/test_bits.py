"""Bit conventions of the numpy mirror, binkit/runtime/bits.py (torch-free).

Bit order is checked as in Larq Compute Engine's bitpack tests: one-hot inputs at awkward sizes,
exactly one set bit at the expected word and bit index.
"""

from __future__ import annotations

import numpy as np
import pytest

from binkit.runtime import bits

# Around the word boundary: one word, exactly full, one bit over, and again at two words.
AWKWARD_CHANNELS = [1, 63, 64, 65, 127, 128, 129]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _bit_at(words: np.ndarray, channel: int) -> int:
    return int((int(words[..., channel // 64]) >> (channel % 64)) & 1)


class TestConstants:
    def test_word_width(self):
        assert bits.BITS_PER_WORD == 64
        assert np.dtype(bits.WORD_DTYPE) == np.dtype(np.uint64)
        assert np.dtype(bits.WORD_DTYPE).itemsize * 8 == bits.BITS_PER_WORD

    @pytest.mark.parametrize(
        ("num_channels", "expected"), [(0, 0), (1, 1), (63, 1), (64, 1), (65, 2), (127, 2), (128, 2), (129, 3)]
    )
    def test_num_words(self, num_channels, expected):
        assert bits.num_words(num_channels) == expected

    @pytest.mark.parametrize("bad", [-1, 2.0, "64", None, True])
    def test_num_words_rejects(self, bad):
        with pytest.raises(ValueError, match="num_channels"):
            bits.num_words(bad)


class TestPackBitOrder:
    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_one_hot_negative(self, num_channels):
        # One -1 among +1s: exactly one bit set, at word c // 64, bit c % 64 (LSB-first).
        for channel in range(num_channels):
            x = np.ones(num_channels, dtype=np.float32)
            x[channel] = -1.0
            words = bits.pack_signs(x)
            assert words.shape == (bits.num_words(num_channels),)
            assert words.dtype == np.uint64
            expected = np.zeros_like(words)
            expected[channel // 64] = np.uint64(1) << np.uint64(channel % 64)
            np.testing.assert_array_equal(words, expected, err_msg=f"channel {channel}")

    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_one_hot_positive_among_negatives(self, num_channels):
        # The complement: every true channel set except one, padding still 0.
        words_all = bits.pack_signs(-np.ones(num_channels, dtype=np.float32))
        for channel in range(num_channels):
            x = -np.ones(num_channels, dtype=np.float32)
            x[channel] = 1.0
            words = bits.pack_signs(x)
            diff = words ^ words_all
            assert int(sum(bin(int(w)).count("1") for w in diff)) == 1
            assert _bit_at(diff, channel) == 1

    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_padding_bits_zero(self, num_channels):
        words = bits.pack_signs(-np.ones(num_channels, dtype=np.float32))
        # All true channels are -1 (bit 1); the bits past num_channels must be 0.
        total = sum(bin(int(w)).count("1") for w in words)
        assert total == num_channels
        tail = num_channels % 64
        if tail:
            assert int(words[-1]) >> tail == 0

    def test_zero_packs_as_plus_one(self):
        np.testing.assert_array_equal(bits.pack_signs(np.zeros(65, dtype=np.float32)), [0, 0])

    def test_negative_zero_packs_as_plus_one(self):
        # sign(0) = +1 is decided by `x < 0`, not by the IEEE sign bit: -0.0 has its sign bit set
        # (np.signbit is True) yet must pack as +1, exactly like +0.0.
        x = np.full(65, -0.0, dtype=np.float32)
        assert np.signbit(x).all()
        np.testing.assert_array_equal(bits.pack_signs(x), [0, 0])

    def test_tiny_and_infinite_values(self):
        x = np.array([-np.inf, np.inf, -1e-45, 1e-45, -np.finfo(np.float32).max], dtype=np.float32)
        assert int(bits.pack_signs(x)[0]) == 0b10101

    @pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int32, np.uint8])
    def test_real_dtypes(self, dtype):
        x = np.array([-2, 0, 3, -1], dtype=np.float64)
        expected = 0b1001 if np.dtype(dtype).kind != "u" else 0
        if np.dtype(dtype).kind == "u":
            x = np.abs(x)
        assert int(bits.pack_signs(x.astype(dtype))[0]) == expected

    def test_empty_channels(self):
        words = bits.pack_signs(np.zeros((3, 0), dtype=np.float32))
        assert words.shape == (3, 0)
        assert words.dtype == np.uint64


class TestPackShapes:
    def test_leading_batch_dims(self):
        x = _rng(0).standard_normal((2, 3, 4, 129)).astype(np.float32)
        words = bits.pack_signs(x)
        assert words.shape == (2, 3, 4, 3)
        # Same as packing each row on its own.
        for idx in np.ndindex(2, 3, 4):
            np.testing.assert_array_equal(words[idx], bits.pack_signs(x[idx]))

    def test_non_contiguous_input(self):
        x = _rng(1).standard_normal((65, 130)).astype(np.float32)
        np.testing.assert_array_equal(bits.pack_signs(x.T), bits.pack_signs(np.ascontiguousarray(x.T)))
        np.testing.assert_array_equal(bits.pack_signs(x[:, ::2]), bits.pack_signs(x[:, ::2].copy()))

    def test_empty_leading_dim(self):
        assert bits.pack_signs(np.zeros((0, 5, 70), dtype=np.float32)).shape == (0, 5, 2)


class TestPackRejects:
    @pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
    def test_nan(self, dtype):
        x = np.ones((2, 70), dtype=dtype)
        x[1, 66] = np.nan
        with pytest.raises(ValueError, match=r"NaN.*\(1, 66\)"):
            bits.pack_signs(x)

    @pytest.mark.parametrize("dtype", [np.bool_, np.complex64, object])
    def test_non_real_dtype(self, dtype):
        with pytest.raises(ValueError, match="dtype"):
            bits.pack_signs(np.zeros(3, dtype=dtype))

    def test_scalar(self):
        with pytest.raises(ValueError, match="0-d"):
            bits.pack_signs(np.float32(1.0))


class TestUnpack:
    @pytest.mark.parametrize("num_channels", [0, *AWKWARD_CHANNELS])
    def test_round_trip(self, num_channels):
        x = _rng(num_channels).standard_normal((3, num_channels)).astype(np.float32)
        signs = np.where(x < 0, -1.0, 1.0).astype(np.float32)
        words = bits.pack_signs(x)
        unpacked = bits.unpack_signs(words, num_channels)
        assert unpacked.dtype == np.float32
        assert unpacked.shape == (3, num_channels)
        np.testing.assert_array_equal(unpacked, signs)
        # Packing +-1 values gives the same words back.
        np.testing.assert_array_equal(bits.pack_signs(unpacked), words)

    def test_leading_dims(self):
        x = _rng(7).standard_normal((2, 3, 100)).astype(np.float32)
        np.testing.assert_array_equal(bits.unpack_signs(bits.pack_signs(x), 100), np.where(x < 0, -1, 1))

    def test_rejects_wrong_word_count(self):
        with pytest.raises(ValueError, match=r"num_channels=65 needs 2 words.*\(4, 1\)"):
            bits.unpack_signs(np.zeros((4, 1), dtype=np.uint64), 65)

    def test_rejects_wrong_dtype(self):
        with pytest.raises(ValueError, match="dtype int64"):
            bits.unpack_signs(np.zeros((4, 1), dtype=np.int64), 64)


def _float_dot(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Reference: the +-1 dot products of the signs, in float64 (exact for these sizes)."""
    sa = np.where(a < 0, -1.0, 1.0)
    sw = np.where(w < 0, -1.0, 1.0)
    return (sa @ sw.T).astype(np.int64)


class TestDot:
    @pytest.mark.parametrize("num_channels", [0, *AWKWARD_CHANNELS, 1000])
    def test_matches_float_dot(self, num_channels):
        rng = _rng(100 + num_channels)
        a = rng.standard_normal((5, num_channels)).astype(np.float32)
        w = rng.standard_normal((7, num_channels)).astype(np.float32)
        got = bits.dot_pm1(bits.pack_signs(a), bits.pack_signs(w), num_channels)
        assert got.dtype == np.int64
        assert got.shape == (5, 7)
        np.testing.assert_array_equal(got, _float_dot(a, w))

    @pytest.mark.parametrize("num_channels", AWKWARD_CHANNELS)
    def test_extremes(self, num_channels):
        ones = bits.pack_signs(np.ones((1, num_channels), dtype=np.float32))
        neg = bits.pack_signs(-np.ones((1, num_channels), dtype=np.float32))
        # Identical vectors give +K, opposite ones -K; padding does not count.
        assert bits.dot_pm1(ones, ones, num_channels)[0, 0] == num_channels
        assert bits.dot_pm1(neg, neg, num_channels)[0, 0] == num_channels
        assert bits.dot_pm1(ones, neg, num_channels)[0, 0] == -num_channels

    def test_leading_batch_dims(self):
        rng = _rng(3)
        a = rng.standard_normal((2, 4, 129)).astype(np.float32)
        w = rng.standard_normal((6, 129)).astype(np.float32)
        got = bits.dot_pm1(bits.pack_signs(a), bits.pack_signs(w), 129)
        assert got.shape == (2, 4, 6)
        np.testing.assert_array_equal(got, _float_dot(a.reshape(8, 129), w).reshape(2, 4, 6))

    def test_single_row(self):
        a = _rng(4).standard_normal(65).astype(np.float32)
        w = _rng(5).standard_normal((3, 65)).astype(np.float32)
        got = bits.dot_pm1(bits.pack_signs(a), bits.pack_signs(w), 65)
        np.testing.assert_array_equal(got, _float_dot(a[None], w)[0])

    def test_popcount_fallback_agrees(self, monkeypatch):
        words = _rng(6).integers(0, 2**64, size=(4, 3), dtype=np.uint64)
        expected = bits._popcount(words).astype(np.int64)
        monkeypatch.delattr(np, "bitwise_count", raising=False)
        np.testing.assert_array_equal(bits._popcount(words), expected)

    def test_rejects_mismatched_words(self):
        a = np.zeros((2, 2), dtype=np.uint64)
        w = np.zeros((3, 1), dtype=np.uint64)
        with pytest.raises(ValueError, match=r"w_words.shape=\(3, 1\)"):
            bits.dot_pm1(a, w, 65)

    def test_rejects_nonzero_padding(self):
        a = np.zeros((2, 2), dtype=np.uint64)
        a[1, 1] = np.uint64(1) << np.uint64(5)
        with pytest.raises(ValueError, match=r"a_words has nonzero padding bits.*first at index \(1,\)"):
            bits.dot_pm1(a, np.zeros((1, 2), dtype=np.uint64), 65)

    def test_rejects_w_not_2d(self):
        with pytest.raises(ValueError, match="w_words must be 2-D"):
            bits.dot_pm1(np.zeros((2, 1), dtype=np.uint64), np.zeros((2, 2, 1), dtype=np.uint64), 64)

    def test_rejects_wrong_dtype(self):
        with pytest.raises(ValueError, match="a_words must have dtype uint64, got dtype int64"):
            bits.dot_pm1(np.zeros((2, 1), dtype=np.int64), np.zeros((2, 1), dtype=np.uint64), 64)
