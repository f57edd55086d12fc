/*
 * binkit_bits.h -- the bit conventions of binkit, written once.
 *
 * Every kernel of the engine and every Python mirror of it (binkit/runtime/bits.py) agrees with
 * this file bit for bit; tests/backends/binkit_neon/test_bits_conformance.py binds the two.
 * Nothing else may hard-code the word width or the bit order: include this header.
 *
 * Conventions (see shared/DESIGN.md, "Conventions contract"):
 *
 *   1. sign(0) = +1.  A value x binarizes to -1 iff x < 0, so +0.0 AND -0.0 give +1: the
 *      decision is the comparison `x < 0`, never the IEEE sign bit.  NaN has no sign; the Python
 *      boundary rejects it before anything here runs (NaN < 0 is false, so it would pack as +1).
 *   2. Packed bit 1 means -1, bit 0 means +1.  So bit = (x < 0).
 *   3. Bits are packed LSB-first along the channel (last, innermost) axis into 64-bit words:
 *      bit i of word j is channel BINKIT_BITS_PER_WORD * j + i.
 *   4. A row of num_channels values occupies binkit_num_words(num_channels) words; the bits past
 *      num_channels in the last word ("padding bits") are 0 in weights and activations alike.
 *   5. The +-1 dot product over the K = num_channels TRUE channels is
 *          dot = K - 2 * popcount(a XOR w)
 *      (derived next to binkit_dot_pm1 below); padding bits cancel in the XOR because they are
 *      0 in both operands, which is why convention 4 is not optional.
 *
 * Everything is static inline C11 with no intrinsics: this is the portable scalar reference
 * that the NEON / x86 variants of later kernels must reproduce exactly.  Callers (the Cython
 * layer) validate shapes, dtypes and contiguity; functions here trust their inputs.
 */
#ifndef BINKIT_BITS_H
#define BINKIT_BITS_H

#include <stddef.h>
#include <stdint.h>

/* The packed word.  Unsigned, so shifts are well defined and bit 63 is an ordinary bit. */
typedef uint64_t binkit_word_t;

/* Bits per packed word; the Python mirror has BITS_PER_WORD = 64 and WORD_DTYPE = np.uint64. */
#define BINKIT_BITS_PER_WORD 64

_Static_assert(sizeof(binkit_word_t) * 8 == BINKIT_BITS_PER_WORD,
               "binkit_word_t must be exactly BINKIT_BITS_PER_WORD bits");
/* __builtin_popcountll takes unsigned long long: it must hold a whole word. */
_Static_assert(sizeof(unsigned long long) >= sizeof(binkit_word_t),
               "unsigned long long must hold a binkit_word_t for __builtin_popcountll");

/* Number of words holding num_channels packed bits: ceil(num_channels / 64); 0 for 0. */
static inline size_t binkit_num_words(size_t num_channels) {
    return (num_channels + BINKIT_BITS_PER_WORD - 1) / BINKIT_BITS_PER_WORD;
}

/* Number of set bits in one word, in 0..64.
 * Portable builtin.  Note (engine_design_notes.md section 7): at gcc's default x86-64 baseline
 * this compiles to a bit-trick sequence, not the popcnt instruction; fast variants are chosen
 * at run time by later kernels, never by building for the host CPU (no host-specific build flags). */
static inline int binkit_popcount(binkit_word_t word) {
    return __builtin_popcountll((unsigned long long)word);
}

/* Pack one row of num_channels floats into binkit_num_words(num_channels) words at out.
 *
 *   x:   num_channels floats, contiguous (one row of a (rows, channels) C-contiguous array)
 *   out: binkit_num_words(num_channels) words, contiguous; fully overwritten
 *
 * Each word is assembled in a register starting from 0 and stored whole, so the padding bits
 * of the last word are 0 (convention 4) without pre-zeroing out.
 */
static inline void binkit_pack_row(const float *x, size_t num_channels, binkit_word_t *out) {
    const size_t num_words = binkit_num_words(num_channels);
    for (size_t j = 0; j < num_words; ++j) {
        const size_t first = j * BINKIT_BITS_PER_WORD;
        const size_t rest = num_channels - first;
        /* The last word holds fewer than 64 channels; the bits above them stay 0. */
        const size_t count = rest < BINKIT_BITS_PER_WORD ? rest : BINKIT_BITS_PER_WORD;
        binkit_word_t word = 0;
        for (size_t i = 0; i < count; ++i) {
            /* Conventions 1-3: bit 1 (= -1) iff x < 0, so -0.0f packs as 0 (= +1);
             * channel first + i goes to bit i (LSB-first). */
            const binkit_word_t bit = (binkit_word_t)(x[first + i] < 0.0f);
            word |= bit << i;
        }
        out[j] = word;
    }
}

/* +-1 dot product of two packed rows over their num_channels true channels.
 *
 * Derivation.  Let a_k, w_k in {+1, -1} for k < K = num_channels, and let the bits be
 * A_k = (a_k == -1), W_k = (w_k == -1) (convention 2).  Then
 *     a_k * w_k = +1  if A_k == W_k,   i.e. (A_k XOR W_k) == 0
 *     a_k * w_k = -1  if A_k != W_k,   i.e. (A_k XOR W_k) == 1
 * so with x = number of k < K where A_k XOR W_k = 1 (the disagreements):
 *     dot = (#agreements) - (#disagreements) = (K - x) - x = K - 2 * x.
 * Summing popcount(a_j XOR w_j) over all words also visits the padding bits k >= K; those are 0
 * in both operands (convention 4), so their XOR is 0 and they add nothing: the popcount over the
 * whole words IS x.  K must be the true channel count, not 64 * num_words: padding positions
 * agree (both +1) and would otherwise each add +1.
 * x lies in 0..K, so the result lies in -K..K.
 */
static inline int64_t binkit_dot_pm1(const binkit_word_t *a, const binkit_word_t *w,
                                     size_t num_channels) {
    const size_t num_words = binkit_num_words(num_channels);
    int64_t disagreements = 0; /* x = popcount(a XOR w), over true channels only (see above) */
    for (size_t j = 0; j < num_words; ++j) {
        disagreements += binkit_popcount(a[j] ^ w[j]);
    }
    return (int64_t)num_channels - 2 * disagreements;
}

#endif /* BINKIT_BITS_H */
