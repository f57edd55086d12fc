/*
 * binkit_kernels.h -- the hot binary kernels of the engine, one copy per instruction set.
 *
 * Variants (chosen at run time, never by compiling for the host CPU):
 *
 *   BK_SCALAR  "scalar"  portable C, __builtin_popcountll, no target attribute (on x86-64 gcc's
 *                        baseline has no popcnt instruction, so this is a bit-trick sequence)
 *   BK_POPCNT  "popcnt"  x86: the same loops under __attribute__((target("popcnt")))
 *   BK_AVX2    "avx2"    x86: vpshufb nibble-table popcount, byte accumulation, vpsadbw
 *   BK_AVX512  "avx512"  x86: AVX-512 VPOPCNTDQ, 8 output channels per vpopcntq
 *   BK_NEON    "neon"    aarch64 (or x86 through SIMDe with -DBINKIT_USE_SIMDE): vcnt + vpadal
 *
 * Every variant computes the same exact integers: the counts are popcounts of the same words,
 * only the instructions differ.  Nothing here touches floats except the float -> bit packing,
 * whose result is exact bits too (bit = x < 0; -0.0 and +0.0 give 0, i.e. +1).
 *
 * The binary GEMM.  For M packed activation rows A[m][0..K) (K words each, row stride lda) and
 * output channels blocked by 8 with their words interleaved,
 *
 *     Wb[(ob * K + k) * 8 + j]   = word k of output channel o = 8 * ob + j,
 *
 * bk_gemm_<v> writes Cnt[m * ldc + 8 * ob + j] = sum_k popcount(A[m][k] XOR Wb[(ob*K+k)*8+j])
 * for ob < NB.  The caller turns counts into dot products (dot = K_bits - 2 * count, see
 * binkit_bits.h) and pads output channels up to a multiple of 8 with zero rows.  The kernel
 * vectorises across output channels (K is small in KWS models: 2-7 words), broadcasting one
 * activation word against 8 (AVX-512), 4+4 (AVX2) or 2 (NEON q-register) channels.
 *
 * Portability: plain C11 compiles everything but the x86 and NEON variants, which are guarded
 * by `defined(__x86_64__) || defined(__i386__)` and `defined(__aarch64__) ||
 * defined(BINKIT_USE_SIMDE)`.  No flag beyond -O3 is needed on x86-64 or aarch64.
 */
#ifndef BINKIT_KERNELS_H
#define BINKIT_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "binkit_bits.h"

#if defined(__x86_64__) || defined(__i386__)
#define BK_HAVE_X86 1
#include <immintrin.h>
#else
#define BK_HAVE_X86 0
#endif

#if defined(__aarch64__)
#define BK_HAVE_NEON 1
#define BK_NEON_SIMDE 0
#include <arm_neon.h>
#elif defined(BINKIT_USE_SIMDE)
#define BK_HAVE_NEON 1
#define BK_NEON_SIMDE 1
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#else
#define BK_HAVE_NEON 0
#define BK_NEON_SIMDE 0
#endif

/* Variant ids (the Python side keeps the same order: _engine.VARIANT_NAMES). */
enum { BK_SCALAR = 0, BK_POPCNT = 1, BK_AVX2 = 2, BK_AVX512 = 3, BK_NEON = 4, BK_NUM_VARIANTS = 5 };

#define BK_TARGET_POPCNT __attribute__((target("popcnt")))
#define BK_TARGET_AVX2 __attribute__((target("avx2,fma,popcnt")))
#define BK_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vpopcntdq,popcnt")))

/* ============================================================================================
 * Float -> bit packing of one contiguous run of n floats (bit i of word j = x[64 j + i] < 0).
 * Words are stored whole (padding bits 0).  Results are exact bits: variants may differ freely
 * in how they get there.
 * ========================================================================================== */

static inline void bk_pack_scalar(const float *x, size_t n, uint64_t *out) {
    binkit_pack_row(x, n, out);
}

/* Strided source (e.g. channel-first values where channels are T floats apart). */
static inline void bk_pack_strided(const float *x, int64_t stride, size_t n, uint64_t *out) {
    const size_t nw = binkit_num_words(n);
    for (size_t j = 0; j < nw; ++j) {
        const size_t first = j * 64, cnt = (n - first) < 64 ? (n - first) : 64;
        uint64_t w = 0;
        for (size_t i = 0; i < cnt; ++i) w |= (uint64_t)(x[(int64_t)(first + i) * stride] < 0.0f) << i;
        out[j] = w;
    }
}

#if BK_HAVE_X86
/* SSE2 is part of the x86-64 baseline: no target attribute needed. */
static inline void bk_pack_sse2(const float *x, size_t n, uint64_t *out) {
    const size_t nw = binkit_num_words(n);
    const __m128 zero = _mm_setzero_ps();
    for (size_t j = 0; j < nw; ++j) {
        const size_t first = j * 64;
        if (n - first >= 64) {
            uint64_t w = 0;
            for (int q = 0; q < 16; ++q) {
                const __m128 v = _mm_loadu_ps(x + first + 4 * q);
                w |= (uint64_t)_mm_movemask_ps(_mm_cmplt_ps(v, zero)) << (4 * q);
            }
            out[j] = w;
        } else {
            bk_pack_scalar(x + first, n - first, out + j);
        }
    }
}

BK_TARGET_AVX2 static inline void bk_pack_avx2(const float *x, size_t n, uint64_t *out) {
    const size_t nw = binkit_num_words(n);
    const __m256 zero = _mm256_setzero_ps();
    for (size_t j = 0; j < nw; ++j) {
        const size_t first = j * 64;
        if (n - first >= 64) {
            uint64_t w = 0;
            for (int q = 0; q < 8; ++q) {
                const __m256 v = _mm256_loadu_ps(x + first + 8 * q);
                w |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)) << (8 * q);
            }
            out[j] = w;
        } else {
            bk_pack_scalar(x + first, n - first, out + j);
        }
    }
}

BK_TARGET_AVX512 static inline void bk_pack_avx512(const float *x, size_t n, uint64_t *out) {
    const size_t nw = binkit_num_words(n);
    const __m512 zero = _mm512_setzero_ps();
    size_t j = 0;
    for (; (j + 1) * 64 <= n; ++j) { /* whole words: four compares, no masks */
        const float *s = x + j * 64;
        const uint64_t k0 = (uint16_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s), zero, _CMP_LT_OQ);
        const uint64_t k1 = (uint16_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + 16), zero, _CMP_LT_OQ);
        const uint64_t k2 = (uint16_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + 32), zero, _CMP_LT_OQ);
        const uint64_t k3 = (uint16_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + 48), zero, _CMP_LT_OQ);
        out[j] = k0 | (k1 << 16) | (k2 << 32) | (k3 << 48);
    }
    for (; j < nw; ++j) {
        const size_t first = j * 64;
        const size_t rest = n - first;
        uint64_t w = 0;
        for (int q = 0; q < 4; ++q) {
            const size_t off = (size_t)q * 16;
            if (off >= rest) break;
            const size_t cnt = rest - off < 16 ? rest - off : 16;
            const __mmask16 m = (__mmask16)((cnt >= 16) ? 0xFFFFu : ((1u << cnt) - 1u));
            const __m512 v = _mm512_maskz_loadu_ps(m, x + first + off);
            w |= (uint64_t)(uint16_t)_mm512_mask_cmp_ps_mask(m, v, zero, _CMP_LT_OQ) << off;
        }
        out[j] = w;
    }
}
#endif /* BK_HAVE_X86 */

#if BK_HAVE_NEON
static inline void bk_pack_neon(const float *x, size_t n, uint64_t *out) {
    const size_t nw = binkit_num_words(n);
    const float32x4_t zero = vdupq_n_f32(0.0f);
    const uint32_t wts[4] = {1u, 2u, 4u, 8u};
    const uint32x4_t weights = vld1q_u32(wts);
    for (size_t j = 0; j < nw; ++j) {
        const size_t first = j * 64;
        if (n - first >= 64) {
            uint64_t w = 0;
            for (int q = 0; q < 16; ++q) {
                const uint32x4_t lt = vcltq_f32(vld1q_f32(x + first + 4 * q), zero);
                w |= (uint64_t)vaddvq_u32(vandq_u32(lt, weights)) << (4 * q);
            }
            out[j] = w;
        } else {
            bk_pack_scalar(x + first, n - first, out + j);
        }
    }
}
#endif

/* ============================================================================================
 * Counts -> sign bits: bit i of the result = c[i] > t[i] for 16 int32 (exact integers, so every
 * variant gives the same bits).
 * ========================================================================================== */

static inline uint32_t bk_gtmask16_scalar(const int32_t *c, const int32_t *t) {
    uint32_t m = 0;
    for (int i = 0; i < 16; ++i) m |= (uint32_t)(c[i] > t[i]) << i;
    return m;
}

#if BK_HAVE_X86
static inline uint32_t bk_gtmask16_sse2(const int32_t *c, const int32_t *t) {
    uint32_t m = 0;
    for (int q = 0; q < 4; ++q) {
        const __m128i g = _mm_cmpgt_epi32(_mm_loadu_si128((const __m128i *)(c + 4 * q)),
                                          _mm_loadu_si128((const __m128i *)(t + 4 * q)));
        m |= (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(g)) << (4 * q);
    }
    return m;
}

BK_TARGET_AVX2 static inline uint32_t bk_gtmask16_avx2(const int32_t *c, const int32_t *t) {
    const __m256i g0 = _mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i *)c), _mm256_loadu_si256((const __m256i *)t));
    const __m256i g1 = _mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i *)(c + 8)),
                                          _mm256_loadu_si256((const __m256i *)(t + 8)));
    return (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(g0)) |
           ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(g1)) << 8);
}

/* acc + popcount(broadcast(a) ^ w) per 64-bit lane: one step of the binary dot products. */
BK_TARGET_AVX512 static inline __attribute__((always_inline)) __m512i bk_xpc_avx512(__m512i acc, uint64_t a,
                                                                                     __m512i w) {
    return _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64((long long)a), w)));
}

BK_TARGET_AVX512 static inline uint32_t bk_gtmask16_avx512(const int32_t *c, const int32_t *t) {
    return (uint32_t)_mm512_cmpgt_epi32_mask(_mm512_loadu_si512((const void *)c), _mm512_loadu_si512((const void *)t));
}

/* Gathered form: bit i = c[idx[i]] > t[i] (idx: 16 in-range int32 indices into c). */
BK_TARGET_AVX2 static inline uint32_t bk_gathergt16_avx2(const int32_t *c, const int32_t *idx, const int32_t *t) {
    const __m256i g0 = _mm256_cmpgt_epi32(_mm256_i32gather_epi32(c, _mm256_loadu_si256((const __m256i *)idx), 4),
                                          _mm256_loadu_si256((const __m256i *)t));
    const __m256i g1 = _mm256_cmpgt_epi32(_mm256_i32gather_epi32(c, _mm256_loadu_si256((const __m256i *)(idx + 8)), 4),
                                          _mm256_loadu_si256((const __m256i *)(t + 8)));
    return (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(g0)) |
           ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(g1)) << 8);
}

BK_TARGET_AVX512 static inline uint32_t bk_gathergt16_avx512(const int32_t *c, const int32_t *idx, const int32_t *t) {
    const __m512i g = _mm512_i32gather_epi32(_mm512_loadu_si512((const void *)idx), (const void *)c, 4);
    return (uint32_t)_mm512_cmpgt_epi32_mask(g, _mm512_loadu_si512((const void *)t));
}
#endif

#if BK_HAVE_NEON
static inline uint32_t bk_gtmask16_neon(const int32_t *c, const int32_t *t) {
    const uint32_t wts[4] = {1u, 2u, 4u, 8u};
    const uint32x4_t weights = vld1q_u32(wts);
    uint32_t m = 0;
    for (int q = 0; q < 4; ++q) {
        const uint32x4_t g = vcgtq_s32(vld1q_s32(c + 4 * q), vld1q_s32(t + 4 * q));
        m |= vaddvq_u32(vandq_u32(g, weights)) << (4 * q);
    }
    return m;
}
#endif

/* ============================================================================================
 * Binary GEMM (XOR-popcount counts), see the file comment for the layout.
 * ========================================================================================== */

#define BK_GEMM_ARGS                                                                              \
    const uint64_t *A, size_t lda, size_t M, const uint64_t *Wb, size_t K, size_t NB, int32_t *Cnt, \
        size_t ldc

/* Portable body; instantiated without and with the popcnt target. */
#define BK_GEMM_PORTABLE_BODY                                                                     \
    for (size_t m = 0; m < M; ++m) {                                                              \
        const uint64_t *a = A + m * lda;                                                          \
        for (size_t ob = 0; ob < NB; ++ob) {                                                      \
            const uint64_t *w = Wb + ob * K * 8;                                                  \
            uint32_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                          \
            for (size_t k = 0; k < K; ++k) {                                                      \
                const uint64_t av = a[k];                                                         \
                for (int j = 0; j < 8; ++j)                                                       \
                    acc[j] += (uint32_t)__builtin_popcountll((unsigned long long)(av ^ w[k * 8 + j])); \
            }                                                                                     \
            for (int j = 0; j < 8; ++j) Cnt[m * ldc + ob * 8 + j] = (int32_t)acc[j];             \
        }                                                                                         \
    }

static void bk_gemm_scalar(BK_GEMM_ARGS) { BK_GEMM_PORTABLE_BODY }

#if BK_HAVE_X86
BK_TARGET_POPCNT static void bk_gemm_popcnt(BK_GEMM_ARGS) { BK_GEMM_PORTABLE_BODY }

/* Per-byte popcount of a 256-bit vector through the nibble table (Mula's method). */
BK_TARGET_AVX2 static inline __m256i bk_avx2_popcnt_bytes(__m256i v, __m256i lut, __m256i low) {
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* 4 x 64-bit counts -> 4 int32 stores. */
BK_TARGET_AVX2 static inline void bk_avx2_store4(int32_t *dst, __m256i s) {
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(s, idx)));
}

BK_TARGET_AVX2 static void bk_gemm_avx2(BK_GEMM_ARGS) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    size_t m = 0;
    /* Two rows at a time share the weight loads. Byte counters hold <= 8 per word, so they
     * are flushed into 64-bit sums (vpsadbw) every 31 words. */
    for (; m + 2 <= M; m += 2) {
        const uint64_t *a0 = A + m * lda, *a1 = a0 + lda;
        for (size_t ob = 0; ob < NB; ++ob) {
            const uint64_t *w = Wb + ob * K * 8;
            __m256i s00 = zero, s01 = zero, s10 = zero, s11 = zero;
            for (size_t k0 = 0; k0 < K; k0 += 31) {
                const size_t k1 = (K - k0) < 31 ? K : k0 + 31;
                __m256i c00 = zero, c01 = zero, c10 = zero, c11 = zero;
                for (size_t k = k0; k < k1; ++k) {
                    const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + k * 8));
                    const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + k * 8 + 4));
                    const __m256i x0 = _mm256_set1_epi64x((long long)a0[k]);
                    const __m256i x1 = _mm256_set1_epi64x((long long)a1[k]);
                    c00 = _mm256_add_epi8(c00, bk_avx2_popcnt_bytes(_mm256_xor_si256(x0, w0), lut, low));
                    c01 = _mm256_add_epi8(c01, bk_avx2_popcnt_bytes(_mm256_xor_si256(x0, w1), lut, low));
                    c10 = _mm256_add_epi8(c10, bk_avx2_popcnt_bytes(_mm256_xor_si256(x1, w0), lut, low));
                    c11 = _mm256_add_epi8(c11, bk_avx2_popcnt_bytes(_mm256_xor_si256(x1, w1), lut, low));
                }
                s00 = _mm256_add_epi64(s00, _mm256_sad_epu8(c00, zero));
                s01 = _mm256_add_epi64(s01, _mm256_sad_epu8(c01, zero));
                s10 = _mm256_add_epi64(s10, _mm256_sad_epu8(c10, zero));
                s11 = _mm256_add_epi64(s11, _mm256_sad_epu8(c11, zero));
            }
            bk_avx2_store4(Cnt + m * ldc + ob * 8, s00);
            bk_avx2_store4(Cnt + m * ldc + ob * 8 + 4, s01);
            bk_avx2_store4(Cnt + (m + 1) * ldc + ob * 8, s10);
            bk_avx2_store4(Cnt + (m + 1) * ldc + ob * 8 + 4, s11);
        }
    }
    for (; m < M; ++m) {
        const uint64_t *a0 = A + m * lda;
        for (size_t ob = 0; ob < NB; ++ob) {
            const uint64_t *w = Wb + ob * K * 8;
            __m256i s00 = zero, s01 = zero;
            for (size_t k0 = 0; k0 < K; k0 += 31) {
                const size_t k1 = (K - k0) < 31 ? K : k0 + 31;
                __m256i c00 = zero, c01 = zero;
                for (size_t k = k0; k < k1; ++k) {
                    const __m256i x0 = _mm256_set1_epi64x((long long)a0[k]);
                    c00 = _mm256_add_epi8(c00, bk_avx2_popcnt_bytes(
                        _mm256_xor_si256(x0, _mm256_loadu_si256((const __m256i *)(w + k * 8))), lut, low));
                    c01 = _mm256_add_epi8(c01, bk_avx2_popcnt_bytes(
                        _mm256_xor_si256(x0, _mm256_loadu_si256((const __m256i *)(w + k * 8 + 4))), lut, low));
                }
                s00 = _mm256_add_epi64(s00, _mm256_sad_epu8(c00, zero));
                s01 = _mm256_add_epi64(s01, _mm256_sad_epu8(c01, zero));
            }
            bk_avx2_store4(Cnt + m * ldc + ob * 8, s00);
            bk_avx2_store4(Cnt + m * ldc + ob * 8 + 4, s01);
        }
    }
}

/* The body, inlined per word count below: with K a constant the k loops unroll and the first
 * add (to zero) folds away; the KWS layers have K = 2 and 4 (1x1 convs of 128 / 256 channels). */
BK_TARGET_AVX512 static inline __attribute__((always_inline)) void bk_gemm_avx512_body(BK_GEMM_ARGS) {
    size_t m = 0;
    /* 4 rows x 2 channel blocks: weight loads shared by 4 rows (M is the positions: 8 in KWS) */
    for (; m + 4 <= M && NB >= 2; m += 4) {
        const uint64_t *a0 = A + m * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        int32_t *c0 = Cnt + m * ldc;
        size_t ob = 0;
        for (; ob + 2 <= NB; ob += 2) {
            const uint64_t *w = Wb + ob * K * 8;
            const size_t bs = K * 8;
            __m512i r00 = _mm512_setzero_si512(), r01 = r00, r10 = r00, r11 = r00;
            __m512i r20 = r00, r21 = r00, r30 = r00, r31 = r00;
            for (size_t k = 0; k < K; ++k) {
                const __m512i w0 = _mm512_loadu_si512((const void *)(w + k * 8));
                const __m512i w1 = _mm512_loadu_si512((const void *)(w + bs + k * 8));
                const __m512i x0 = _mm512_set1_epi64((long long)a0[k]);
                const __m512i x1 = _mm512_set1_epi64((long long)a1[k]);
                const __m512i x2 = _mm512_set1_epi64((long long)a2[k]);
                const __m512i x3 = _mm512_set1_epi64((long long)a3[k]);
                r00 = _mm512_add_epi64(r00, _mm512_popcnt_epi64(_mm512_xor_si512(x0, w0)));
                r01 = _mm512_add_epi64(r01, _mm512_popcnt_epi64(_mm512_xor_si512(x0, w1)));
                r10 = _mm512_add_epi64(r10, _mm512_popcnt_epi64(_mm512_xor_si512(x1, w0)));
                r11 = _mm512_add_epi64(r11, _mm512_popcnt_epi64(_mm512_xor_si512(x1, w1)));
                r20 = _mm512_add_epi64(r20, _mm512_popcnt_epi64(_mm512_xor_si512(x2, w0)));
                r21 = _mm512_add_epi64(r21, _mm512_popcnt_epi64(_mm512_xor_si512(x2, w1)));
                r30 = _mm512_add_epi64(r30, _mm512_popcnt_epi64(_mm512_xor_si512(x3, w0)));
                r31 = _mm512_add_epi64(r31, _mm512_popcnt_epi64(_mm512_xor_si512(x3, w1)));
            }
            /* two blocks of 8 x 64-bit counts -> 16 int32 (counts < 2^31) in one permute */
            const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            _mm512_storeu_si512((void *)(c0 + ob * 8), _mm512_permutex2var_epi32(r00, idx, r01));
            _mm512_storeu_si512((void *)(c0 + ldc + ob * 8), _mm512_permutex2var_epi32(r10, idx, r11));
            _mm512_storeu_si512((void *)(c0 + 2 * ldc + ob * 8), _mm512_permutex2var_epi32(r20, idx, r21));
            _mm512_storeu_si512((void *)(c0 + 3 * ldc + ob * 8), _mm512_permutex2var_epi32(r30, idx, r31));
        }
        for (; ob < NB; ++ob) {
            const uint64_t *w = Wb + ob * K * 8;
            __m512i r0 = _mm512_setzero_si512(), r1 = r0, r2 = r0, r3 = r0;
            for (size_t k = 0; k < K; ++k) {
                const __m512i wv = _mm512_loadu_si512((const void *)(w + k * 8));
                r0 = bk_xpc_avx512(r0, a0[k], wv);
                r1 = bk_xpc_avx512(r1, a1[k], wv);
                r2 = bk_xpc_avx512(r2, a2[k], wv);
                r3 = bk_xpc_avx512(r3, a3[k], wv);
            }
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8), _mm512_cvtepi64_epi32(r0));
            _mm256_storeu_si256((__m256i *)(c0 + ldc + ob * 8), _mm512_cvtepi64_epi32(r1));
            _mm256_storeu_si256((__m256i *)(c0 + 2 * ldc + ob * 8), _mm512_cvtepi64_epi32(r2));
            _mm256_storeu_si256((__m256i *)(c0 + 3 * ldc + ob * 8), _mm512_cvtepi64_epi32(r3));
        }
    }
    /* 2 rows x 4 channel blocks: 8 independent accumulators, weight loads shared by the rows. */
    for (; m + 2 <= M; m += 2) {
        const uint64_t *a0 = A + m * lda, *a1 = a0 + lda;
        int32_t *c0 = Cnt + m * ldc, *c1 = c0 + ldc;
        size_t ob = 0;
        for (; ob + 4 <= NB; ob += 4) {
            const uint64_t *w = Wb + ob * K * 8;
            const size_t bs = K * 8;
            __m512i r00 = _mm512_setzero_si512(), r01 = r00, r02 = r00, r03 = r00;
            __m512i r10 = r00, r11 = r00, r12 = r00, r13 = r00;
            for (size_t k = 0; k < K; ++k) {
                const __m512i x0 = _mm512_set1_epi64((long long)a0[k]);
                const __m512i x1 = _mm512_set1_epi64((long long)a1[k]);
                const __m512i w0 = _mm512_loadu_si512((const void *)(w + k * 8));
                const __m512i w1 = _mm512_loadu_si512((const void *)(w + bs + k * 8));
                const __m512i w2 = _mm512_loadu_si512((const void *)(w + 2 * bs + k * 8));
                const __m512i w3 = _mm512_loadu_si512((const void *)(w + 3 * bs + k * 8));
                r00 = _mm512_add_epi64(r00, _mm512_popcnt_epi64(_mm512_xor_si512(x0, w0)));
                r01 = _mm512_add_epi64(r01, _mm512_popcnt_epi64(_mm512_xor_si512(x0, w1)));
                r02 = _mm512_add_epi64(r02, _mm512_popcnt_epi64(_mm512_xor_si512(x0, w2)));
                r03 = _mm512_add_epi64(r03, _mm512_popcnt_epi64(_mm512_xor_si512(x0, w3)));
                r10 = _mm512_add_epi64(r10, _mm512_popcnt_epi64(_mm512_xor_si512(x1, w0)));
                r11 = _mm512_add_epi64(r11, _mm512_popcnt_epi64(_mm512_xor_si512(x1, w1)));
                r12 = _mm512_add_epi64(r12, _mm512_popcnt_epi64(_mm512_xor_si512(x1, w2)));
                r13 = _mm512_add_epi64(r13, _mm512_popcnt_epi64(_mm512_xor_si512(x1, w3)));
            }
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8), _mm512_cvtepi64_epi32(r00));
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8 + 8), _mm512_cvtepi64_epi32(r01));
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8 + 16), _mm512_cvtepi64_epi32(r02));
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8 + 24), _mm512_cvtepi64_epi32(r03));
            _mm256_storeu_si256((__m256i *)(c1 + ob * 8), _mm512_cvtepi64_epi32(r10));
            _mm256_storeu_si256((__m256i *)(c1 + ob * 8 + 8), _mm512_cvtepi64_epi32(r11));
            _mm256_storeu_si256((__m256i *)(c1 + ob * 8 + 16), _mm512_cvtepi64_epi32(r12));
            _mm256_storeu_si256((__m256i *)(c1 + ob * 8 + 24), _mm512_cvtepi64_epi32(r13));
        }
        for (; ob < NB; ++ob) {
            const uint64_t *w = Wb + ob * K * 8;
            __m512i r0 = _mm512_setzero_si512(), r1 = r0;
            for (size_t k = 0; k < K; ++k) {
                const __m512i wv = _mm512_loadu_si512((const void *)(w + k * 8));
                r0 = bk_xpc_avx512(r0, a0[k], wv);
                r1 = bk_xpc_avx512(r1, a1[k], wv);
            }
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8), _mm512_cvtepi64_epi32(r0));
            _mm256_storeu_si256((__m256i *)(c1 + ob * 8), _mm512_cvtepi64_epi32(r1));
        }
    }
    for (; m < M; ++m) {
        const uint64_t *a0 = A + m * lda;
        int32_t *c0 = Cnt + m * ldc;
        size_t ob = 0;
        for (; ob + 4 <= NB; ob += 4) {
            const uint64_t *w = Wb + ob * K * 8;
            const size_t bs = K * 8;
            __m512i r0 = _mm512_setzero_si512(), r1 = r0, r2 = r0, r3 = r0;
            for (size_t k = 0; k < K; ++k) {
                const __m512i x0 = _mm512_set1_epi64((long long)a0[k]);
                r0 = _mm512_add_epi64(r0, _mm512_popcnt_epi64(_mm512_xor_si512(x0, _mm512_loadu_si512((const void *)(w + k * 8)))));
                r1 = _mm512_add_epi64(r1, _mm512_popcnt_epi64(_mm512_xor_si512(x0, _mm512_loadu_si512((const void *)(w + bs + k * 8)))));
                r2 = _mm512_add_epi64(r2, _mm512_popcnt_epi64(_mm512_xor_si512(x0, _mm512_loadu_si512((const void *)(w + 2 * bs + k * 8)))));
                r3 = _mm512_add_epi64(r3, _mm512_popcnt_epi64(_mm512_xor_si512(x0, _mm512_loadu_si512((const void *)(w + 3 * bs + k * 8)))));
            }
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8), _mm512_cvtepi64_epi32(r0));
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8 + 8), _mm512_cvtepi64_epi32(r1));
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8 + 16), _mm512_cvtepi64_epi32(r2));
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8 + 24), _mm512_cvtepi64_epi32(r3));
        }
        for (; ob < NB; ++ob) {
            const uint64_t *w = Wb + ob * K * 8;
            __m512i r0 = _mm512_setzero_si512();
            for (size_t k = 0; k < K; ++k)
                r0 = _mm512_add_epi64(r0, _mm512_popcnt_epi64(_mm512_xor_si512(
                    _mm512_set1_epi64((long long)a0[k]), _mm512_loadu_si512((const void *)(w + k * 8)))));
            _mm256_storeu_si256((__m256i *)(c0 + ob * 8), _mm512_cvtepi64_epi32(r0));
        }
    }
}
BK_TARGET_AVX512 static void bk_gemm_avx512(BK_GEMM_ARGS) {
    switch (K) {
    case 1: bk_gemm_avx512_body(A, lda, M, Wb, 1, NB, Cnt, ldc); break;
    case 2: bk_gemm_avx512_body(A, lda, M, Wb, 2, NB, Cnt, ldc); break;
    case 4: bk_gemm_avx512_body(A, lda, M, Wb, 4, NB, Cnt, ldc); break;
    default: bk_gemm_avx512_body(A, lda, M, Wb, K, NB, Cnt, ldc); break;
    }
}
#endif /* BK_HAVE_X86 */

#if BK_HAVE_NEON
/* 2 channels per q-register: veor, vcnt (bytes), vpadal into 16-bit lanes (each 16-bit lane
 * gains <= 16 per word, so K < 4096 words per flush), then widen to 64-bit per channel. */
static void bk_gemm_neon(BK_GEMM_ARGS) {
    for (size_t m = 0; m < M; ++m) {
        const uint64_t *a = A + m * lda;
        for (size_t ob = 0; ob < NB; ++ob) {
            const uint64_t *w = Wb + ob * K * 8;
            uint64x2_t t0 = vdupq_n_u64(0), t1 = t0, t2 = t0, t3 = t0;
            for (size_t k0 = 0; k0 < K; k0 += 4000) {
                const size_t k1 = (K - k0) < 4000 ? K : k0 + 4000;
                uint16x8_t h0 = vdupq_n_u16(0), h1 = h0, h2 = h0, h3 = h0;
                for (size_t k = k0; k < k1; ++k) {
                    const uint64x2_t x = vdupq_n_u64(a[k]);
                    const uint64_t *wk = w + k * 8;
                    h0 = vpadalq_u8(h0, vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x, vld1q_u64(wk)))));
                    h1 = vpadalq_u8(h1, vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x, vld1q_u64(wk + 2)))));
                    h2 = vpadalq_u8(h2, vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x, vld1q_u64(wk + 4)))));
                    h3 = vpadalq_u8(h3, vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x, vld1q_u64(wk + 6)))));
                }
                t0 = vaddq_u64(t0, vpaddlq_u32(vpaddlq_u16(h0)));
                t1 = vaddq_u64(t1, vpaddlq_u32(vpaddlq_u16(h1)));
                t2 = vaddq_u64(t2, vpaddlq_u32(vpaddlq_u16(h2)));
                t3 = vaddq_u64(t3, vpaddlq_u32(vpaddlq_u16(h3)));
            }
            int32_t *c = Cnt + m * ldc + ob * 8;
            c[0] = (int32_t)vgetq_lane_u64(t0, 0); c[1] = (int32_t)vgetq_lane_u64(t0, 1);
            c[2] = (int32_t)vgetq_lane_u64(t1, 0); c[3] = (int32_t)vgetq_lane_u64(t1, 1);
            c[4] = (int32_t)vgetq_lane_u64(t2, 0); c[5] = (int32_t)vgetq_lane_u64(t2, 1);
            c[6] = (int32_t)vgetq_lane_u64(t3, 0); c[7] = (int32_t)vgetq_lane_u64(t3, 1);
        }
    }
}
#endif /* BK_HAVE_NEON */

/* ============================================================================================
 * Variant table and run-time detection.
 * ========================================================================================== */

typedef void (*bk_gemm_fn)(BK_GEMM_ARGS);

static const char *const bk_variant_names[BK_NUM_VARIANTS] = {"scalar", "popcnt", "avx2", "avx512", "neon"};

/* 1 if the variant was compiled into this build. */
static inline int bk_variant_compiled(int v) {
    switch (v) {
    case BK_SCALAR: return 1;
    case BK_POPCNT: case BK_AVX2: case BK_AVX512: return BK_HAVE_X86;
    case BK_NEON: return BK_HAVE_NEON;
    default: return 0;
    }
}

/* 1 if the variant is compiled in and this CPU can run it (never executes an unsupported
 * instruction: the check is CPUID through __builtin_cpu_supports). */
static inline int bk_variant_supported(int v) {
    if (!bk_variant_compiled(v)) return 0;
    switch (v) {
    case BK_SCALAR: return 1;
#if BK_HAVE_X86
    case BK_POPCNT: __builtin_cpu_init(); return __builtin_cpu_supports("popcnt") ? 1 : 0;
    case BK_AVX2:
        __builtin_cpu_init();
        return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt")) ? 1 : 0;
    case BK_AVX512:
        __builtin_cpu_init();
        return (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("popcnt")) ? 1 : 0;
#endif
    case BK_NEON: return BK_HAVE_NEON; /* baseline on aarch64; emulated by SIMDe elsewhere */
    default: return 0;
    }
}

/* The fastest supported variant: avx512 > avx2 > popcnt > scalar on x86, neon on aarch64. */
static inline int bk_best_variant(void) {
#if defined(__aarch64__)
    return BK_NEON;
#else
    static const int order[4] = {BK_AVX512, BK_AVX2, BK_POPCNT, BK_SCALAR};
    for (int i = 0; i < 4; ++i)
        if (bk_variant_supported(order[i])) return order[i];
    return BK_SCALAR;
#endif
}

static inline bk_gemm_fn bk_gemm_for(int v) {
    switch (v) {
#if BK_HAVE_X86
    case BK_POPCNT: return bk_gemm_popcnt;
    case BK_AVX2: return bk_gemm_avx2;
    case BK_AVX512: return bk_gemm_avx512;
#endif
#if BK_HAVE_NEON
    case BK_NEON: return bk_gemm_neon;
#endif
    default: return bk_gemm_scalar;
    }
}

#endif /* BINKIT_KERNELS_H */
