"""Bit conventions in numpy: the torch-free mirror of ``backends/binkit_neon/include/binkit_bits.h``.

The export path packs weights with these functions, the numpy reference backend runs on them, and
conformance tests (``tests/backends/binkit_neon/test_bits_conformance.py``) check that the compiled
engine gives bit-identical words and identical integer dot products. The conventions
(shared/DESIGN.md, "Conventions contract") are:

- sign(0) = +1. A value packs as -1 iff ``x < 0``: the comparison, not the IEEE sign bit, so
  ``-0.0`` packs as +1 like ``+0.0`` (``np.signbit(-0.0)`` is True, which is why it is not used).
  NaN has no sign and is rejected with ``ValueError``; ``+-inf`` pack by their sign.
- Packed bit 1 means -1, bit 0 means +1.
- Bits are packed LSB-first along the channel (last) axis into 64-bit words: bit ``i`` of word
  ``j`` is channel ``64 * j + i``.
- Padding bits (past the true channel count in the last word) are 0.
- The +-1 dot product over ``K`` true channels is ``K - 2 * popcount(a XOR w)``; padding bits are
  0 in both operands, so they cancel in the XOR.

Words are ``np.uint64`` in native byte order; the bit numbering above is about values, not bytes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BITS_PER_WORD", "WORD_DTYPE", "dot_pm1", "num_words", "pack_signs", "unpack_signs"]

#: Bits per packed word (``BINKIT_BITS_PER_WORD`` in the engine header).
BITS_PER_WORD = 64
#: Dtype of a packed word (``binkit_word_t`` = ``uint64_t`` in the engine header).
WORD_DTYPE = np.uint64

_BYTES_PER_WORD = BITS_PER_WORD // 8


def num_words(num_channels: int) -> int:
    """Number of words holding ``num_channels`` packed bits: ``ceil(num_channels / 64)``, 0 for 0.

    Raises:
        ValueError: if ``num_channels`` is not an int >= 0.
    """
    if isinstance(num_channels, (bool, np.bool_)) or not isinstance(num_channels, (int, np.integer)):
        raise ValueError(f"num_channels must be an int, got {num_channels!r}")
    if num_channels < 0:
        raise ValueError(f"num_channels must be >= 0, got {num_channels}")
    return -(-int(num_channels) // BITS_PER_WORD)


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Pack the signs of ``x`` along its last axis into 64-bit words.

    Bit ``i`` of word ``j`` is 1 iff ``x[..., 64 * j + i] < 0``; padding bits are 0.

    Args:
        x: real array (floating or integer dtype), any layout, no NaN. Shape ``(..., channels)``.

    Returns:
        ``WORD_DTYPE`` array of shape ``(..., num_words)``, ``num_words = ceil(channels / 64)``.

    Raises:
        ValueError: if ``x`` is 0-d, has a non-real dtype (bool, complex, object, ...), or
            contains NaN (the message gives the count and the first index).
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"pack_signs: x must have a real floating or integer dtype, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"pack_signs: x must have a channel axis, got a 0-d array {x!r}")
    if x.dtype.kind == "f":
        nan_mask = np.isnan(x)
        if nan_mask.any():
            first = tuple(int(v) for v in np.argwhere(nan_mask)[0])
            raise ValueError(
                f"pack_signs: x contains NaN ({int(nan_mask.sum())} value(s); first at index {first}); "
                f"NaN has no sign to pack"
            )
    *lead, num_channels = x.shape
    words = num_words(num_channels)
    # (..., channels) bool, True = -1; `<` not signbit, so -0.0 -> False (+1).
    bits = x < 0
    # (..., channels) -> (..., ceil(channels / 8)) bytes; bit m of byte k is channel 8k + m, and
    # packbits zero-fills the last byte's unused bits.
    packed = np.packbits(bits, axis=-1, bitorder="little")
    # (..., ceil(channels / 8)) -> (..., 8 * words) bytes: whole zero bytes of padding.
    as_bytes = np.zeros((*lead, words * _BYTES_PER_WORD), dtype=np.uint8)
    as_bytes[..., : packed.shape[-1]] = packed
    # (..., 8 * words) bytes -> (..., words): byte b of a little-endian word holds its bits
    # 8b..8b+7, so bit 8b + m of word j is channel 64j + 8b + m, i.e. LSB-first.
    return as_bytes.view("<u8").astype(WORD_DTYPE, copy=False)


def unpack_signs(words: np.ndarray, num_channels: int) -> np.ndarray:
    """Unpack words into +-1 values: the inverse of :func:`pack_signs` on signs.

    Args:
        words: ``WORD_DTYPE`` array. Shape ``(..., num_words)`` with
            ``num_words == ceil(num_channels / 64)``.
        num_channels: the true channel count.

    Returns:
        float32 array of shape ``(..., num_channels)``: -1.0 where the bit is 1, +1.0 where it is 0.
        Padding bits are dropped, not checked.

    Raises:
        ValueError: on a wrong dtype, a 0-d input or a word count that does not match ``num_channels``.
    """
    words = _check_words("unpack_signs", "words", words, num_channels)
    # (..., words) -> (..., 8 * words) bytes, little-endian so byte b holds bits 8b..8b+7.
    as_bytes = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    # (..., 8 * words) -> (..., num_channels) bits; bit m of byte k is channel 8k + m.
    bits = np.unpackbits(as_bytes, axis=-1, count=num_channels, bitorder="little")
    # bit 1 -> -1, bit 0 -> +1
    return (1.0 - 2.0 * bits).astype(np.float32)


def dot_pm1(a_words: np.ndarray, w_words: np.ndarray, num_channels: int) -> np.ndarray:
    """+-1 dot products of packed rows against every row of ``w_words``, like ``a @ w.T``.

    ``out[..., j] = K - 2 * popcount(a[...] XOR w[j])`` with ``K = num_channels``: the dot product
    of the unpacked +-1 vectors over the true channels. For 2-D ``a_words`` this is the same
    all-pairs product as the engine's ``binkit_neon.dot_pm1``.

    Args:
        a_words: ``WORD_DTYPE``. Shape ``(..., num_words)`` (e.g. activations, one row per frame).
        w_words: ``WORD_DTYPE``. Shape ``(rows_w, num_words)`` (e.g. weights, one row per output).
        num_channels: true channel count ``K``; ``num_words`` must equal ``ceil(K / 64)``.

    Returns:
        int64 array of shape ``(..., rows_w)``, values in ``[-K, K]``.

    Raises:
        ValueError: on a wrong dtype or rank, mismatched word counts, or nonzero padding bits.
    """
    a_words = _check_words("dot_pm1", "a_words", a_words, num_channels)
    w_words = _check_words("dot_pm1", "w_words", w_words, num_channels)
    if w_words.ndim != 2:
        raise ValueError(f"dot_pm1: w_words must be 2-D (rows_w, num_words), got shape {w_words.shape}")
    _check_padding("dot_pm1", "a_words", a_words, num_channels)
    _check_padding("dot_pm1", "w_words", w_words, num_channels)
    # (..., 1, words) ^ (rows_w, words) -> (..., rows_w, words)
    xor = a_words[..., None, :] ^ w_words
    # (..., rows_w, words) -> (..., rows_w): disagreements x = popcount(a XOR w)
    disagreements = _popcount(xor).sum(axis=-1, dtype=np.int64)
    return np.int64(num_channels) - 2 * disagreements


def _popcount(words: np.ndarray) -> np.ndarray:
    """Per-word popcount of a ``WORD_DTYPE`` array, same shape, small unsigned dtype."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    # numpy < 2.0: (..., words) -> (..., words, 8) bytes -> table lookup -> sum over bytes
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, _BYTES_PER_WORD)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.int64)


_BYTE_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)


def _check_words(func: str, name: str, words: np.ndarray, num_channels: int) -> np.ndarray:
    words = np.asarray(words)
    if words.dtype != WORD_DTYPE:
        raise ValueError(f"{func}: {name} must have dtype {np.dtype(WORD_DTYPE)}, got dtype {words.dtype}")
    if words.ndim == 0:
        raise ValueError(f"{func}: {name} must have a word axis, got a 0-d array")
    expected = num_words(num_channels)
    if words.shape[-1] != expected:
        raise ValueError(
            f"{func}: num_channels={num_channels} needs {expected} words on the last axis, "
            f"got {name}.shape={words.shape}"
        )
    return words


def _check_padding(func: str, name: str, words: np.ndarray, num_channels: int) -> None:
    tail = num_channels % BITS_PER_WORD
    if tail == 0 or words.size == 0:
        return
    # Bits tail..63 of the last word are padding and must be 0, or they would count in the XOR.
    bad = words[..., -1] >> np.uint64(tail)
    if bad.any():
        first = tuple(int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{func}: {name} has nonzero padding bits (above channel {num_channels - 1}) in "
            f"{int(np.count_nonzero(bad))} row(s), first at index {first}; "
            f"was it packed with num_channels={num_channels}?"
        )
