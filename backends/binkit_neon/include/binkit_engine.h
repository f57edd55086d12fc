/*
 * binkit_engine.h -- the plan executor of the compiled engine.
 *
 * Python (binkit_neon/engine.py) turns a validated artifact view into a flat array of bk_op
 * structs once at load time: values get physical layouts (a permutation of their axes, chosen
 * so that binary ops read their channels contiguously and transposes / reshapes are free),
 * reusable buffer slots (assigned by liveness), repacked weights and precomputed zero-padding
 * tables.  bk_run() then runs the whole plan for a batch of examples in C, without the GIL:
 * one block of run memory per call (the plan keeps one idle block that a call takes with an
 * atomic exchange; a concurrent call allocates its own), nothing shared between concurrent calls
 * but the read-only plan.
 *
 * Ops (kinds below):
 *   BK_OP_CONV_FP  float conv (1-D as H = 1) and linear_fp (as a 1x1 conv over rows); weights
 *                  transposed at load to [group][tap][out padded to 16] and vectorised across
 *                  output channels, so every lane runs the same float operations in the same order
 *                  whatever the vector width: results are bitwise identical across variants.
 *   BK_OP_BCONV    binary conv / linear: pack the input (x < 0 -> bit 1) into a zero-padded grid
 *                  of words, gather each output position's receptive field into one dense bit row
 *                  (im2col on bits; skipped for 1x1 stride-1 unpadded convs), XOR-popcount GEMM
 *                  (binkit_kernels.h), then the output transform
 *                      y = multiplier_o * (base[pattern(p)][o] - 2 * count) + offset_o
 *                  where base = C * (valid taps) + 2 * (popcount of the weight words of padded
 *                  taps): the exact-zero padding correction of binkit.runtime.reference;
 *                  or, for a sign-threshold op (artifact v2), y = +1 if dot >= threshold_o else -1;
 *                  when every consumer is a direct (1x1, unpadded) binary op, those signs are
 *                  written as packed bits that the consumer uses as its GEMM rows as they are.
 *   BK_OP_BDW      binary depthwise 1-D conv: signs as bytes (x < 0), per channel count of
 *                  disagreements over the valid taps (padded taps are skipped), vectorised across
 *                  channels; dot = valid taps - 2 * count.
 *   BK_OP_MBCONV   bit-serial multi-plane BCONV (artifact attrs weight_planes / input_planes): the
 *                  input decomposed into iplanes residual sign planes (in double), the pack, im2col
 *                  and GEMM of BCONV per (input plane, weight plane) pair, the integer dots combined
 *                  with the plane scales in double (binkit_engine_ops.h), then the float transform.
 *   BK_OP_MBDW     the same for the binary depthwise 1-D conv (integer per-channel dots).
 *   BK_OP_BDW2     binary depthwise 2-D conv (artifact bdwconv2d), as BDW over a (H, W) grid of
 *                  positions: per output position and channel the +-1 products of the valid taps
 *                  (padded taps skipped: exact zero padding) summed exactly, vectorised across
 *                  channels; the float transform or sign threshold, fused post-ops or packed bits.
 *   BK_OP_EPI      element-wise chain (affine, prelu, relu, add, silu) over a value seen as
 *                  (outer, channels, inner).
 *   BK_OP_GATHER   out[i] = in[idx[i]] (a layout change that no op could absorb; also the
 *                  broadcast of an operand of a broadcasting add to the full shape).
 *   BK_OP_POOL     index-mapped average (avgpool2d, mean): out[i] = (float)(acc_i / div_i), acc_i the
 *                  double sum of (double)in[idx_i(j)] in increasing j (idx -1 skipped), starting
 *                  from 0.0 (the map in blocks of 16 outputs, bk_op_pool); the planner orders j (kernel taps row-major; reduced axes
 *                  row-major) and gives the divisor per output. Scalar, the same in every variant.
 * Every producing op ends with up to BK_MAX_POST fused element-wise post-ops (the same float
 * operations, in the same order, as the unfused ops).
 *
 * Float code is instantiated once per variant (binkit_engine_ops.h) so that the float conv is
 * vectorised at the variant's width; it is written so that no reduction is reassociated and it
 * must be compiled without FMA contraction (-ffp-contract=off; gcc's ISO -std=c11 default), so
 * whole-model outputs are bitwise identical across variants (tested).
 */
#ifndef BINKIT_ENGINE_H
#define BINKIT_ENGINE_H

/* clock_gettime(CLOCK_MONOTONIC) under strict -std=c11 (Python.h defines this already). */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "binkit_kernels.h"

enum { BK_OP_CONV_FP = 1, BK_OP_BCONV = 2, BK_OP_BDW = 3, BK_OP_EPI = 4, BK_OP_GATHER = 5, BK_OP_MBCONV = 6,
       BK_OP_MBDW = 7, BK_OP_BDW2 = 8, BK_OP_POOL = 9 };
enum { BK_POST_AFFINE = 1, BK_POST_PRELU = 2, BK_POST_RELU = 3, BK_POST_ADD = 4, BK_POST_SILU = 5 };

#define BK_MAX_POST 8

typedef struct {
    int32_t kind;        /* BK_POST_* */
    int32_t per_channel; /* parameters indexed by channel (else element 0 for every channel) */
    int32_t slot;        /* BK_POST_ADD: slot of the other operand (same layout as the output) */
    const float *a;      /* affine multiplier / prelu slope */
    const float *b;      /* affine offset */
} bk_post;

typedef struct {
    int32_t kind;
    int32_t in, out;                 /* buffer slots (slot 0 = the example's input, read-only) */
    /* input: C x H x W floats at strides (in_sc, in_sh, in_sw) */
    int64_t C, H, W, in_sc, in_sh, in_sw;
    /* output: O x Ho x Wo floats at strides (out_so, out_sh, out_sw) */
    int64_t O, Ho, Wo, out_so, out_sh, out_sw;
    /* kernel, stride, dilation, padding (top, bottom, left, right) */
    int64_t kh, kw, sh, sw, dh, dw, pt, pb, pl, pr;
    int64_t groups;
    int32_t input_sign;              /* CONV_FP: x -> sign(x) (sign(0) = +1) before padding */
    int32_t staged;                  /* CONV_FP: copy the input to a padded scratch first */
    int32_t direct;                  /* BCONV: GEMM rows are the packed input rows (1x1, s1, no pad) */
    int32_t prepacked;               /* BCONV (direct): the input slot already holds packed rows;
                                        BCONV (rowmode): it holds H dense rows of W * C bits, row i
                                        at word i * W * C / 64 (written by a CONV_FP with bits_out) */
    int32_t bits_out;                /* BCONV / BDW with a threshold: write packed sign bits, one row of
                                        owords words per output position, instead of floats;
                                        CONV_FP (groups 1, O % 16 == 0, no ADD post-op): the sign bits
                                        (v < 0) of its final values, bit p * O + o for position p */
    int64_t owords;
    int32_t ivec;                    /* CONV_FP, one row of a linear layer: vectorised over the inputs,
                                        wf is [opad][C rounded up to 16] (see bk_op_conv_fp) */
    int32_t rowmode;                 /* BCONV im2col from dense bit rows (C % 64 != 0, dilation_w 1):
                                        a run of kw taps is one contiguous kw * C bit window */
    int64_t rwords;                  /* BCONV rowmode: words per dense padded row (plus one of slack) */
    int64_t words;                   /* BCONV: words per packed input position */
    int64_t kwords;                  /* BCONV: words per GEMM row (dense receptive field) */
    int64_t nb;                      /* BCONV: output channel blocks of 8 */
    int64_t opad;                    /* CONV_FP: out channels per group padded to 16; BDW: C padded to 64; BDW2: C padded to 16 */
    const uint64_t *wb;              /* BCONV: blocked weights [nb][kwords][8] */
    const int32_t *base;             /* BCONV: [npat][nb * 8] */
    const int32_t *pat;              /* BCONV: [Ho * Wo] pattern row of base, or NULL (row 0) */
    const float *mult, *offs;        /* BCONV / BDW output transform */
    const int32_t *thr;              /* BCONV / BDW: sign threshold instead (y = dot >= thr ? 1 : -1) */
    const int32_t *cthr;             /* BCONV with bits_out: [npat][nb * 8] count thresholds, bit 1 (x < 0)
                                        iff count > cthr (= floor((base - thr) / 2); INT32_MAX for pad
                                        channels) */
    const int32_t *gsrc, *gthr;      /* BCONV writing a consumer's packed rows in its own bit order (the
                                        planner's _bits_map): bit i of word w of the output (grows rows of
                                        owords words) is (cnt[gsrc[64 w + i]] > gthr[64 w + i]) XOR bit i
                                        of ginv[w], cnt being the GEMM counts [position][nb * 8] */
    const uint64_t *ginv;
    int64_t grows;
    const int32_t *tpos, *tthr;      /* or NULL; set when that bit order is "byte c of row r = channel c at
                                        the 8 positions tpos[8 r + j], bit j" (a reshape (C * 8, W) +
                                        transpose after an 8-row conv, the DFSMN front-end): tthr
                                        [grows][8][O] = gthr in that order; the AVX-512 variant then keeps
                                        the counts of 8 positions x 8 channels in registers and transposes
                                        their compare masks into bytes (the same bits as the gather) */
    const float *wf, *bias;          /* CONV_FP: weights [groups][C/groups*kh*kw][opad], bias [O] */
    const float *fthr;               /* CONV_FP with bits_out, or NULL: the sign bit of channel o as an exact
                                        test on the raw sum (before bias and post-ops): bit 1 iff
                                        (flt[o] ? acc < fthr[o] : acc >= fthr[o]) (engine.py
                                        _float_sign_thresholds); [opad] */
    const int32_t *flt;              /* CONV_FP: -1 where the test is acc < fthr, else 0; [opad] */
    const float *ishift;             /* BCONV / BDW / BDW2 (one plane), or NULL: the input's bit of channel c is
                                        fl(x + ishift[c]) < 0 instead of x < 0 -- an affine (multiplier 1,
                                        offset ishift) folded into the packing (engine.py
                                        _fold_input_shift); [C rounded up to 64] */
    const uint32_t *wm;              /* BDW: weight signs as float sign-bit masks [kw][opad];
                                        BDW2: [kh][kw][opad] */
    int64_t outer, chans, inner;     /* EPI */
    const int32_t *idx;              /* GATHER: [n]; POOL: input offsets [ceil(n / 16)][taps][16], -1 = skipped */
    int64_t n;                       /* EPI / GATHER: element count; POOL: output count */
    int64_t taps;                    /* POOL: input offsets per output (mult: the divisor per output) */
    /* MBCONV / MBDW (multi-plane): wb / base (MBCONV) and wm (MBDW) hold wplanes planes, wb_plane
       words and base_plane ints apart; iscale [iplanes] = a_q; wscale [wplanes][O] = t_{p,o} */
    int32_t wplanes, iplanes;
    int64_t wb_plane, base_plane;
    const double *iscale, *wscale;
    int32_t npost;
    bk_post post[BK_MAX_POST];
} bk_op;

typedef struct {
    const bk_op *ops;
    int64_t nops;
    int64_t nslots;                  /* slot 0 is the input */
    const int64_t *slot_floats;      /* capacity of each slot in floats (slot 0 ignored) */
    int64_t in_floats, out_floats;   /* per example */
    int64_t out_slot;
    int64_t scratch_bytes;           /* max over ops of bk_op_scratch_bytes */
    void *cache;                     /* one idle run memory block (bk_run_mem_bytes), or NULL; taken and
                                        returned with atomic exchanges so concurrent runs never share it */
} bk_plan;

/* silu(v) = v * sigmoid(v) = v / (1 + exp(-v)), in double through the scalar libm exp (never a
 * vector math library: the build has no -ffast-math), so every variant gives the same bits; for
 * v << 0, exp(-v) = inf and the result is -0 (the limit), as in the reference. */
static inline float bk_silu(float v) {
    const double d = (double)v;
    return (float)(d / (1.0 + exp(-d)));
}

/* Generic (GCC/Clang) vectors are loaded and stored through memcpy (any alignment). */
#define BK_LOADV(dst, ptr) memcpy(&(dst), (ptr), sizeof(dst))

#define BK_ALIGN(n) ((((size_t)(n)) + 63u) & ~(size_t)63u)

static inline double bk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* --- scratch layout per op: the ops and bk_op_scratch_bytes use the same functions ---------- */

static inline size_t bk_conv_fp_stage_floats(const bk_op *op) {
    return op->staged ? (size_t)(op->C * (op->H + op->pt + op->pb) * (op->W + op->pl + op->pr)) : 0;
}

static inline size_t bk_bconv_grid_words(const bk_op *op) {
    if (op->rowmode) return (size_t)((op->H + op->pt + op->pb) * op->rwords + 1);
    return (size_t)((op->H + op->pt + op->pb) * (op->W + op->pl + op->pr) * op->words);
}

static inline size_t bk_bconv_col_words(const bk_op *op) {
    return op->direct ? 0 : (size_t)(op->Ho * op->Wo * op->kwords);
}

static inline size_t bk_bconv_scratch_bytes(const bk_op *op) {
    return BK_ALIGN(bk_bconv_grid_words(op) * 8) + BK_ALIGN(bk_bconv_col_words(op) * 8) +
           BK_ALIGN((size_t)(op->Ho * op->Wo * op->nb * 8) * 4) + BK_ALIGN((size_t)(op->nb * 8) * 4) +
           (op->rowmode ? BK_ALIGN(((size_t)(op->W * op->C) / 64 + 2) * 8) : 0);
}

static inline size_t bk_op_scratch_bytes(const bk_op *op) {
    switch (op->kind) {
    case BK_OP_CONV_FP:
        return BK_ALIGN(bk_conv_fp_stage_floats(op) * 4) + BK_ALIGN(64 * 4);
    case BK_OP_BCONV:
        return bk_bconv_scratch_bytes(op);
    case BK_OP_MBCONV: /* BCONV's, then the residual (double), the sign plane, the sums (double) */
        return bk_bconv_scratch_bytes(op) + BK_ALIGN((size_t)(op->C * op->H * op->W) * 8) +
               BK_ALIGN((size_t)(op->C * op->H * op->W) * 4) + BK_ALIGN((size_t)(op->Ho * op->Wo * op->O) * 8);
    case BK_OP_BDW: /* signs [W (+ up to 8 padding rows)][opad], y [opad] */
        return BK_ALIGN((size_t)((op->W + 8) * op->opad) * 4) + BK_ALIGN((size_t)op->opad * 4);
    case BK_OP_BDW2:
        return BK_ALIGN((size_t)(op->H * op->W * op->opad) * 4) + BK_ALIGN((size_t)op->opad * 4);
    case BK_OP_MBDW:
        return BK_ALIGN((size_t)(op->W * op->C) * 8) + BK_ALIGN((size_t)(op->W * op->opad) * 4) +
               BK_ALIGN((size_t)(op->Wo * op->C) * 8) + 2 * BK_ALIGN((size_t)op->opad * 4);
    default:
        return 0;
    }
}

/* Packed words are LSB-first, so on a little-endian machine bit 8 i + j of a row is bit j of
 * byte i: rows whose bit runs start and end on byte boundaries are copied with memcpy. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BK_BYTE_BITS 1
#else
#define BK_BYTE_BITS 0
#endif

/* Append nbits (> 0) bits of src (whose bits above nbits are 0) at bit position pos of dst,
 * which is zeroed and long enough for every bit that is set. */
static inline void bk_bits_append(uint64_t *dst, size_t pos, const uint64_t *src, size_t nbits) {
    const size_t nw = (nbits + 63) >> 6;
    const size_t wi = pos >> 6, sh = pos & 63;
    if (sh == 0) {
        for (size_t i = 0; i < nw; ++i) dst[wi + i] |= src[i];
    } else {
        for (size_t i = 0; i < nw; ++i) {
            const uint64_t v = src[i];
            dst[wi + i] |= v << sh;
            const uint64_t hi = v >> (64 - sh);
            if (hi) dst[wi + i + 1] |= hi;
        }
    }
}

/* 64 bits of a bit stream starting at bit pos (the word after the last one read must exist). */
static inline uint64_t bk_bits_read(const uint64_t *src, size_t pos) {
    const size_t wi = pos >> 6, sh = pos & 63;
    return sh ? (src[wi] >> sh) | (src[wi + 1] << (64 - sh)) : src[wi];
}

/* Copy n bits of src starting at bit spos to bit dpos of dst (zeroed where it is written; only
 * words holding copied bits are touched). */
static inline void bk_bits_copy(uint64_t *dst, size_t dpos, const uint64_t *src, size_t spos, size_t n) {
    for (size_t i = 0; i < n; i += 64) {
        const size_t cnt = (n - i) < 64 ? (n - i) : 64;
        uint64_t w = bk_bits_read(src, spos + i);
        if (cnt < 64) w &= (((uint64_t)1) << cnt) - 1;
        const size_t pos = dpos + i, wi = pos >> 6, sh = pos & 63;
        dst[wi] |= w << sh;
        if (sh) {
            const uint64_t hi = w >> (64 - sh);
            if (hi) dst[wi + 1] |= hi;
        }
    }
}

/* --- per-variant instances of the executor ------------------------------------------------- */

#define BK_V scalar
#define BK_VBYTES 16
#define BK_ATTR
#define BK_GEMM bk_gemm_scalar
#define BK_PACK bk_pack_scalar
#define BK_GTMASK16 bk_gtmask16_scalar
#include "binkit_engine_ops.h"

#if BK_HAVE_X86
#define BK_V popcnt
#define BK_VBYTES 16
#define BK_ATTR BK_TARGET_POPCNT
#define BK_GEMM bk_gemm_popcnt
#define BK_PACK bk_pack_sse2
#define BK_GTMASK16 bk_gtmask16_sse2
#include "binkit_engine_ops.h"

#define BK_V avx2
#define BK_VBYTES 32
#define BK_ATTR BK_TARGET_AVX2
#define BK_GEMM bk_gemm_avx2
#define BK_PACK bk_pack_avx2
#define BK_GTMASK16 bk_gtmask16_avx2
#define BK_GATHERGT16 bk_gathergt16_avx2
#define BK_FMA_AVX2 1
#include "binkit_engine_ops.h"
#undef BK_FMA_AVX2

#define BK_V avx512
#define BK_VBYTES 64
#define BK_ATTR BK_TARGET_AVX512
#define BK_GEMM bk_gemm_avx512
#define BK_PACK bk_pack_avx512
#define BK_GTMASK16 bk_gtmask16_avx512
#define BK_GATHERGT16 bk_gathergt16_avx512
#define BK_AVX512_OPS 1 /* the ops' AVX-512-only paths (intrinsics) */
#include "binkit_engine_ops.h"
#undef BK_AVX512_OPS
#endif

#if BK_HAVE_NEON
#define BK_V neon
#define BK_VBYTES 16
#define BK_ATTR
#define BK_GEMM bk_gemm_neon
#define BK_PACK bk_pack_neon
#define BK_GTMASK16 bk_gtmask16_neon
#define BK_FMA_NEON 1
#include "binkit_engine_ops.h"
#undef BK_FMA_NEON
#endif

typedef void (*bk_run_ops_fn)(const bk_plan *, float *const *, uint8_t *, double *);
typedef int (*bk_nonfinite_fn)(const float *, int64_t);

static inline bk_run_ops_fn bk_run_ops_for(int v) {
    switch (v) {
#if BK_HAVE_X86
    case BK_POPCNT: return bk_run_ops_popcnt;
    case BK_AVX2: return bk_run_ops_avx2;
    case BK_AVX512: return bk_run_ops_avx512;
#endif
#if BK_HAVE_NEON
    case BK_NEON: return bk_run_ops_neon;
#endif
    default: return bk_run_ops_scalar;
    }
}

static inline bk_nonfinite_fn bk_nonfinite_for(int v) {
    switch (v) {
#if BK_HAVE_X86
    case BK_POPCNT: return bk_any_nonfinite_popcnt;
    case BK_AVX2: return bk_any_nonfinite_avx2;
    case BK_AVX512: return bk_any_nonfinite_avx512;
#endif
#if BK_HAVE_NEON
    case BK_NEON: return bk_any_nonfinite_neon;
#endif
    default: return bk_any_nonfinite_scalar;
    }
}

/* Index of the first NaN/inf among n floats, or -1. */
static inline int64_t bk_first_nonfinite(const float *x, int64_t n) {
    const uint32_t *u = (const uint32_t *)(const void *)x;
    for (int64_t i = 0; i < n; ++i)
        if ((u[i] & 0x7f800000u) == 0x7f800000u) return i;
    return -1;
}

/* Bytes of one run's memory: the slot pointers, every slot, the scratch. */
static inline size_t bk_run_mem_bytes(const bk_plan *plan) {
    size_t total = BK_ALIGN(sizeof(float *) * (size_t)plan->nslots);
    for (int64_t s = 1; s < plan->nslots; ++s) total += BK_ALIGN((size_t)plan->slot_floats[s] * 4 + 64);
    total += BK_ALIGN((size_t)plan->scratch_bytes) + 64;
    return BK_ALIGN(total);
}

/* Free the cached run memory (the plan's owner calls this once no run is in flight). */
static inline void bk_plan_release(bk_plan *plan) {
    void *m = __atomic_exchange_n(&plan->cache, (void *)0, __ATOMIC_ACQ_REL);
    free(m);
}

/* Run the plan on `batch` examples: x (batch, in_floats) -> y (batch, out_floats).
 * prof: NULL, or nops doubles to which each op's seconds (summed over the batch) are added.
 * Returns 0, -1 if memory could not be allocated, -2 if x holds a NaN/inf (nothing run),
 * -3 for an unknown or unsupported variant.  The run memory is the plan's cached block when
 * no other run holds it (an atomic exchange takes it), else a fresh allocation; afterwards it
 * goes back to the cache if that is empty, else it is freed. */
static inline int bk_run(bk_plan *plan, int variant, const float *x, int64_t batch, float *y,
                         double *prof) {
    if (!bk_variant_supported(variant)) return -3;
    if (bk_nonfinite_for(variant)(x, batch * plan->in_floats)) return -2;
    uint8_t *mem = (uint8_t *)__atomic_exchange_n(&plan->cache, (void *)0, __ATOMIC_ACQ_REL);
    if (!mem) mem = (uint8_t *)aligned_alloc(64, bk_run_mem_bytes(plan));
    if (!mem) return -1;
    float **slots = (float **)(void *)mem;
    uint8_t *p = mem + BK_ALIGN(sizeof(float *) * (size_t)plan->nslots);
    for (int64_t s = 1; s < plan->nslots; ++s) {
        slots[s] = (float *)(void *)p;
        p += BK_ALIGN((size_t)plan->slot_floats[s] * 4 + 64);
    }
    uint8_t *scratch = p;
    const bk_run_ops_fn run = bk_run_ops_for(variant);
    for (int64_t b = 0; b < batch; ++b) {
        slots[0] = (float *)(x + b * plan->in_floats); /* never written: the planner guarantees it */
        run(plan, slots, scratch, prof);
        memcpy(y + b * plan->out_floats, slots[plan->out_slot], (size_t)plan->out_floats * 4);
    }
    void *expected = (void *)0;
    if (!__atomic_compare_exchange_n(&plan->cache, &expected, (void *)mem, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        free(mem);
    return 0;
}

/* The profiler's own cost in each op's time: the median of n empty intervals between two
 * bk_now() calls (what bk_run_ops adds to every timed op besides the op itself). */
static inline double bk_clock_overhead(int n) {
    enum { MAXN = 4097 };
    double d[MAXN];
    if (n < 1) n = 1;
    if (n > MAXN) n = MAXN;
    for (int i = 0; i < n; ++i) {
        const double t0 = bk_now();
        d[i] = bk_now() - t0;
    }
    for (int i = 1; i < n; ++i) { /* insertion sort: n is small and this runs once per profile */
        const double v = d[i];
        int j = i - 1;
        while (j >= 0 && d[j] > v) {
            d[j + 1] = d[j];
            --j;
        }
        d[j + 1] = v;
    }
    return d[n / 2];
}

/* Measured binary ops per second (64 per word XOR + popcount) of the variant's GEMM on
 * in-L1 data: 8 rows x 16 words against 8 blocks of 8 channels (8 KB of weights), the same
 * broadcast-against-channel-blocks instruction mix the engine runs. */
static inline double bk_popcount_peak(int variant, double seconds) {
    enum { M = 8, K = 16, NB = 8 };
    static uint64_t A[M * K];
    static uint64_t Wb[NB * K * 8];
    int32_t cnt[M * NB * 8];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < M * K; ++i) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; A[i] = s; }
    for (int i = 0; i < NB * K * 8; ++i) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; Wb[i] = s; }
    const bk_gemm_fn gemm = bk_gemm_for(variant);
    volatile int32_t sink = 0;
    int64_t calls = 0;
    const double t0 = bk_now();
    double t1 = t0;
    do {
        for (int r = 0; r < 64; ++r) {
            gemm(A, K, M, Wb, K, NB, cnt, NB * 8);
            sink += cnt[r & 7];
        }
        calls += 64;
        t1 = bk_now();
    } while (t1 - t0 < seconds);
    (void)sink;
    return (double)calls * M * K * NB * 8 * 64.0 / (t1 - t0);
}

/* Multi-plane (bit-serial) dot products.
 *   a: pa planes of M rows x words (plane stride M * words), scales sa[pa] (one per plane)
 *   wb: pw planes of blocked weights [nb][words][8] (plane stride nb * words * 8),
 *       scales tw[pw][O] (per plane and output channel)
 *   out[m * O + o] = sum_p sum_q sa[p] * tw[q][o] * (K - 2 * popcount(a_p[m] XOR w_q[o]))
 * accumulated in double in the order p, then q.  cnt: scratch of M * nb * 8 int32. */
static inline void bk_multiplane(int variant, const uint64_t *a, int64_t pa, const double *sa,
                                 const uint64_t *wb, int64_t pw, const double *tw, int64_t M,
                                 int64_t O, int64_t K, int32_t *cnt, double *out) {
    const int64_t words = (int64_t)binkit_num_words((size_t)K), nb = (O + 7) / 8;
    const bk_gemm_fn gemm = bk_gemm_for(variant);
    for (int64_t i = 0; i < M * O; ++i) out[i] = 0.0;
    for (int64_t p = 0; p < pa; ++p) {
        for (int64_t q = 0; q < pw; ++q) {
            gemm(a + p * M * words, (size_t)words, (size_t)M, wb + q * nb * words * 8, (size_t)words,
                 (size_t)nb, cnt, (size_t)(nb * 8));
            for (int64_t m = 0; m < M; ++m)
                for (int64_t o = 0; o < O; ++o)
                    out[m * O + o] += sa[p] * tw[q * O + o] * (double)(K - 2 * (int64_t)cnt[m * nb * 8 + o]);
        }
    }
}

#endif /* BINKIT_ENGINE_H */
