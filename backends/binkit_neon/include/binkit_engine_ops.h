/*
 * binkit_engine_ops.h -- the op implementations, instantiated once per kernel variant.
 *
 * Included by binkit_engine.h (only) with these macros defined:
 *   BK_V     the variant's suffix (scalar, popcnt, avx2, avx512, neon)
 *   BK_ATTR  its target attribute (empty for the baseline and NEON)
 *   BK_GEMM  its XOR-popcount GEMM (binkit_kernels.h)
 *   BK_PACK  its contiguous float -> bit packer
 * and undefines them at the end.  No include guard on purpose.
 *
 * Bitwise identity across variants: integer counts are exact; float code vectorises only
 * across independent outputs (channels), each output lane runs the same multiply and add
 * sequence in the same order, and the build disables FMA contraction (-ffp-contract=off): the
 * only fused multiply-adds are the explicit ones of the float convs (bk_fma, correctly rounded in
 * every variant).
 */

#define BK_CAT2(a, b) a##_##b
#define BK_CAT(a, b) BK_CAT2(a, b)
#define BK_FN(name) BK_CAT(name, BK_V)

/* Generic vectors at the variant's native width (BK_VBYTES): 16 floats are BK_VN of them.
 * Lane arithmetic is plain IEEE single, so every width gives the same bits. */
#define BK_VW (BK_VBYTES / 4)
#define BK_VN (16 / BK_VW)
typedef float BK_FN(bk_vf) __attribute__((vector_size(BK_VBYTES)));
typedef int32_t BK_FN(bk_vi) __attribute__((vector_size(BK_VBYTES)));
#define VF BK_FN(bk_vf)
#define VI BK_FN(bk_vi)
/* float conv: output positions per register block (accumulators: BK_NPOS * BK_VN vectors) */
#define BK_NPOS (BK_VN == 1 ? 8 : 4)

/* PReLU of a vector: v where v >= 0, else a * v (NaN takes a * v). AVX-512: one compare to a
 * mask and a masked multiply (the same product, the same bits). */
BK_ATTR static inline __attribute__((always_inline)) VF BK_FN(bk_prelu)(VF v, VF a) {
#ifdef BK_AVX512_OPS
    return (VF)_mm512_mask_mul_ps((__m512)v, _mm512_cmp_ps_mask((__m512)v, _mm512_setzero_ps(), _CMP_NGE_UQ),
                                  (__m512)a, (__m512)v);
#else
    const VF neg = a * v;
    const VI ge = v >= (VF){0};
    return (VF)((ge & (VI)v) | (~ge & (VI)neg));
#endif
}

/* Apply the op's post-ops to y[0..n): element i has channel ch0 + i * ch_step and sits at
 * offset off0 + i * ostride of the output (the ADD operand is read at the same offset). */
BK_ATTR static inline void BK_FN(bk_post_apply)(const bk_op *op, float *restrict y, int64_t n,
                                                 int64_t ch0, int64_t ch_step, float *const *slots,
                                                 int64_t off0, int64_t ostride) {
    for (int32_t k = 0; k < op->npost; ++k) {
        const bk_post *p = &op->post[k];
        const int vec = p->per_channel && ch_step;      /* parameter varies along y */
        const int64_t c = p->per_channel ? ch0 : 0;      /* else: one parameter for all of y */
        switch (p->kind) {
        case BK_POST_AFFINE:
            if (vec) {
                const float *restrict a = p->a + ch0, *restrict b = p->b + ch0;
                for (int64_t i = 0; i < n; ++i) y[i] = a[i] * y[i] + b[i];
            } else {
                const float a = p->a[c], b = p->b[c];
                for (int64_t i = 0; i < n; ++i) y[i] = a * y[i] + b;
            }
            break;
        case BK_POST_PRELU: {
            /* y = y >= 0 ? y : slope * y as a bitwise select on generic vectors (compilers turn
             * the scalar form into branches or conditional stores, which do not vectorise) */
            int64_t i = 0;
            for (; i + BK_VW <= n; i += BK_VW) {
                VF v, a;
                BK_LOADV(v, y + i);
                if (vec) {
                    BK_LOADV(a, p->a + ch0 + i);
                } else {
                    a = (VF){0} + p->a[c];
                }
                const VF neg = a * v;
                const VI m = v >= (VF){0};
                const VI r = (m & (VI)v) | (~m & (VI)neg);
                memcpy(y + i, &r, sizeof(r));
            }
            for (; i < n; ++i) {
                const float v = y[i], neg = p->a[vec ? ch0 + i : c] * v;
                y[i] = v >= 0.0f ? v : neg;
            }
            break;
        }
        case BK_POST_RELU: {
            int64_t i = 0;
            for (; i + BK_VW <= n; i += BK_VW) {
                VF v;
                BK_LOADV(v, y + i);
                const VI r = (v > (VF){0}) & (VI)v;
                memcpy(y + i, &r, sizeof(r));
            }
            for (; i < n; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
            break;
        }
        case BK_POST_ADD: {
            const float *restrict r = slots[p->slot] + off0;
            if (ostride == 1) {
                for (int64_t i = 0; i < n; ++i) y[i] = y[i] + r[i];
            } else {
                for (int64_t i = 0; i < n; ++i) y[i] = y[i] + r[i * ostride];
            }
            break;
        }
        case BK_POST_SILU: /* scalar libm exp in double (bk_silu): the same bits in every variant */
            for (int64_t i = 0; i < n; ++i) y[i] = bk_silu(y[i]);
            break;
        default:
            break;
        }
    }
}

BK_ATTR static inline void BK_FN(bk_store)(float *restrict out, const float *restrict y, int64_t n,
                                            int64_t stride) {
    if (stride == 1) {
        memcpy(out, y, (size_t)n * 4);
    } else {
        for (int64_t i = 0; i < n; ++i) out[i * stride] = y[i];
    }
}

/* 16 consecutive channels o..o+15 held in registers (BK_VN vectors): apply the post-ops and
 * store, at output offset off + (o + i) * so.  Needs o + 16 <= the channel count (full chunk);
 * the same float operations as bk_post_apply, so both paths give the same bits. */
BK_ATTR static inline void BK_FN(bk_post16)(const bk_op *op, VF v[BK_VN], int64_t o, float *const *slots,
                                            int64_t off, int64_t so) {
    for (int32_t k = 0; k < op->npost; ++k) {
        const bk_post *p = &op->post[k];
        const int64_t c = p->per_channel ? o : 0;
        switch (p->kind) {
        case BK_POST_AFFINE:
            for (int u = 0; u < BK_VN; ++u) {
                VF a, b;
                if (p->per_channel) {
                    BK_LOADV(a, p->a + c + u * BK_VW);
                    BK_LOADV(b, p->b + c + u * BK_VW);
                } else {
                    a = (VF){0} + p->a[0];
                    b = (VF){0} + p->b[0];
                }
                v[u] = a * v[u] + b;
            }
            break;
        case BK_POST_PRELU:
            for (int u = 0; u < BK_VN; ++u) {
                VF a;
                if (p->per_channel) {
                    BK_LOADV(a, p->a + c + u * BK_VW);
                } else {
                    a = (VF){0} + p->a[0];
                }
                v[u] = BK_FN(bk_prelu)(v[u], a);
            }
            break;
        case BK_POST_RELU:
            for (int u = 0; u < BK_VN; ++u) v[u] = (VF)((v[u] > (VF){0}) & (VI)v[u]);
            break;
        case BK_POST_ADD: {
            const float *r = slots[p->slot] + off + o * so;
            for (int u = 0; u < BK_VN; ++u) {
                VF rv;
                if (so == 1) {
                    BK_LOADV(rv, r + u * BK_VW);
                } else {
                    float t[BK_VW];
                    for (int i = 0; i < BK_VW; ++i) t[i] = r[(u * BK_VW + i) * so];
                    BK_LOADV(rv, t);
                }
                v[u] = v[u] + rv;
            }
            break;
        }
        case BK_POST_SILU: { /* per lane, as bk_post_apply */
            float t[16];
            memcpy(t, v, 64);
            for (int i = 0; i < 16; ++i) t[i] = bk_silu(t[i]);
            memcpy(v, t, 64);
            break;
        }
        default:
            break;
        }
    }
}

BK_ATTR static inline void BK_FN(bk_store16)(float *out, const VF v[BK_VN], int64_t so) {
    if (so == 1) {
        memcpy(out, v, 64);
    } else {
        float t[16];
        memcpy(t, v, 64);
        for (int i = 0; i < 16; ++i) out[i * so] = t[i];
    }
}

/* The common epilogue chains, applied in registers without a dispatch per chunk when the
 * channels of a position are contiguous (out_so == 1) and floats are written: a prelu, then an
 * affine, then an add, each optional, in that order (BiFSMN/BNN: prelu [+ add]; ReActNet's RPReLU:
 * prelu + affine [+ add]). The mode is BK_CHAIN_ON with a bit per post-op present; 0 = any other
 * chain (row-wise bk_post_apply / bk_post16). */
#ifndef BK_CHAIN_ON /* this header is included once per kernel variant */
#define BK_CHAIN_ON 1
#define BK_CHAIN_PRELU 2
#define BK_CHAIN_AFFINE 4
#define BK_CHAIN_ADD 8
/* The chain's affine parameters for channels c..c+BK_VW-1 (shared ones broadcast). */
#define BK_CHAIN_AFFINE_LOAD(fc, c, am_, ab_)      \
    do {                                             \
        if ((fc).apc) {                              \
            BK_LOADV(am_, (fc).am + (c));            \
            BK_LOADV(ab_, (fc).ab + (c));            \
        } else {                                     \
            am_ = (VF){0} + (fc).am0;                \
            ab_ = (VF){0} + (fc).ab0;                \
        }                                            \
    } while (0)
#endif

static inline int BK_FN(bk_fast_chain)(const bk_op *op) {
    if (op->out_so != 1 || op->bits_out) return 0;
    static const int order[3][2] = {{BK_POST_PRELU, BK_CHAIN_PRELU}, {BK_POST_AFFINE, BK_CHAIN_AFFINE},
                                    {BK_POST_ADD, BK_CHAIN_ADD}};
    int mode = BK_CHAIN_ON, k = 0;
    for (int j = 0; j < 3 && k < op->npost; ++j)
        if (op->post[k].kind == order[j][0]) {
            mode |= order[j][1];
            ++k;
        }
    return k == op->npost ? mode : 0;
}

/* The fast chain with its parameters hoisted out of the op (read once per op, kept in registers:
 * the stores through `out` may not alias them). */
typedef struct {
    int mode, pc;        /* bk_fast_chain; prelu slope per channel */
    const float *a;      /* prelu slopes (mode & BK_CHAIN_PRELU) */
    float a0;            /* the slope when shared */
    int apc;             /* affine parameters per channel (mode & BK_CHAIN_AFFINE) */
    const float *am, *ab; /* the affine's multiplier and offset */
    float am0, ab0;      /* ... when shared */
    const float *r;      /* mode & BK_CHAIN_ADD: the ADD operand (the output's layout) */
} BK_FN(bk_fastc);

static inline BK_FN(bk_fastc) BK_FN(bk_fastc_make)(const bk_op *op, int mode, float *const *slots) {
    BK_FN(bk_fastc) fc = {mode, 0, 0, 0.0f, 0, 0, 0, 1.0f, 0.0f, 0};
    int k = 0;
    if (mode & BK_CHAIN_PRELU) {
        fc.pc = op->post[k].per_channel != 0;
        fc.a = op->post[k].a;
        fc.a0 = op->post[k].a[0];
        ++k;
    }
    if (mode & BK_CHAIN_AFFINE) {
        fc.apc = op->post[k].per_channel != 0;
        fc.am = op->post[k].a;
        fc.ab = op->post[k].b;
        fc.am0 = op->post[k].a[0];
        fc.ab0 = op->post[k].b[0];
        ++k;
    }
    if (mode & BK_CHAIN_ADD) fc.r = slots[op->post[k].slot];
    return fc;
}


/* One vector of the fast chain after the output transform: prelu (slopes a), the affine (am, ab)
 * when `aff`, and the ADD operand read at r + off; the same float operations as bk_post16. With
 * `aff` a constant at the call, the affine compiles out. */
BK_ATTR static inline __attribute__((always_inline)) VF BK_FN(bk_chain_vec)(VF v, int mode, VF a, const int aff, VF am,
                                                                           VF ab, const float *r, int64_t off) {
    if (mode & BK_CHAIN_PRELU) v = BK_FN(bk_prelu)(v, a);
    if (aff) v = am * v + ab;
    if (mode & BK_CHAIN_ADD) {
        VF rv;
        BK_LOADV(rv, r + off);
        v = v + rv;
    }
    return v;
}

/* Channels o..o+15 of one position in v: the chain fc.mode (bk_fast_chain), then the store at
 * out + off + o (the same float operations as bk_post16 / bk_post_apply). */
BK_ATTR static inline __attribute__((always_inline)) void BK_FN(bk_fast16)(const BK_FN(bk_fastc) fc, VF v[BK_VN],
                                                                            int64_t o, int64_t off, float *out) {
    if (fc.mode & BK_CHAIN_PRELU) {
        for (int u = 0; u < BK_VN; ++u) {
            VF a;
            if (fc.pc) {
                BK_LOADV(a, fc.a + o + u * BK_VW);
            } else {
                a = (VF){0} + fc.a0;
            }
            v[u] = BK_FN(bk_prelu)(v[u], a);
        }
    }
    if (fc.mode & BK_CHAIN_AFFINE) {
        for (int u = 0; u < BK_VN; ++u) {
            VF am, ab;
            BK_CHAIN_AFFINE_LOAD(fc, o + u * BK_VW, am, ab);
            v[u] = am * v[u] + ab;
        }
    }
    if (fc.mode & BK_CHAIN_ADD) {
        const float *r = fc.r + off + o;
        for (int u = 0; u < BK_VN; ++u) {
            VF rv;
            BK_LOADV(rv, r + u * BK_VW);
            v[u] = v[u] + rv;
        }
    }
    memcpy(out + off + o, v, 64);
}

/* ---- float conv / linear ------------------------------------------------------------------ */

/* w * x + acc rounded once (fused multiply-add) in every lane: the multiply-accumulate of the
 * float convs and linear layers.  Correctly rounded by definition, so every variant gives the same
 * bits however it gets there: AVX-512 and AVX2 (with FMA) by their FMA instructions, NEON on
 * aarch64 by vfmaq_f32, the others (scalar, popcnt, NEON through SIMDe) by the C library's fmaf
 * per lane (hardware FMA behind it where the CPU has one). */
BK_ATTR static inline __attribute__((always_inline)) VF BK_FN(bk_fma)(VF w, VF x, VF acc) {
#if defined(BK_AVX512_OPS)
    return (VF)_mm512_fmadd_ps((__m512)w, (__m512)x, (__m512)acc);
#elif defined(BK_FMA_AVX2)
    return (VF)_mm256_fmadd_ps((__m256)w, (__m256)x, (__m256)acc);
#elif defined(BK_FMA_NEON) && defined(__aarch64__)
    return (VF)vfmaq_f32((float32x4_t)acc, (float32x4_t)w, (float32x4_t)x);
#else
    VF r;
    for (int l = 0; l < BK_VW; ++l) r[l] = __builtin_fmaf(w[l], x[l], acc[l]);
    return r;
#endif
}

/* bk_fma with x = v in every lane */
BK_ATTR static inline __attribute__((always_inline)) VF BK_FN(bk_fmas)(VF w, float v, VF acc) {
#if defined(BK_AVX512_OPS)
    const VF x = (VF)_mm512_set1_ps(v);
#elif defined(BK_FMA_AVX2)
    const VF x = (VF)_mm256_set1_ps(v);
#elif defined(BK_FMA_NEON) && defined(__aarch64__)
    const VF x = (VF)vdupq_n_f32(v);
#else
    VF x;
    for (int l = 0; l < BK_VW; ++l) x[l] = v;
#endif
    return BK_FN(bk_fma)(w, x, acc);
}

BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_conv_fp)(const bk_op *op, float *const *slots, uint8_t *scr) {
    const float *x = slots[op->in];
    float *out = slots[op->out];
    const int64_t C = op->C, H = op->H, W = op->W;
    const int64_t Hp = H + op->pt + op->pb, Wp = W + op->pl + op->pr;
    const int64_t G = op->groups, cg = C / G, og = op->O / G, opad = op->opad;
    const int64_t taps = op->kh * op->kw, ck = cg * taps;
    const float *src = x;
    int64_t ssc = op->in_sc, ssh = op->in_sh, ssw = op->in_sw;
    float *y = (float *)(void *)(scr + BK_ALIGN(bk_conv_fp_stage_floats(op) * 4));
    if (op->staged) {
        float *xp = (float *)(void *)scr;
        memset(xp, 0, (size_t)(C * Hp * Wp) * 4);
        for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < H; ++i) {
                const float *row = x + c * op->in_sc + i * op->in_sh;
                float *dst = xp + (c * Hp + i + op->pt) * Wp + op->pl;
                if (op->input_sign) {
                    for (int64_t j = 0; j < W; ++j) dst[j] = row[j * op->in_sw] < 0.0f ? -1.0f : 1.0f;
                } else if (op->in_sw == 1) {
                    memcpy(dst, row, (size_t)W * 4);
                } else {
                    for (int64_t j = 0; j < W; ++j) dst[j] = row[j * op->in_sw];
                }
            }
        src = xp;
        ssc = Hp * Wp;
        ssh = Wp;
        ssw = 1;
    }
    if (op->ivec) {
        /* one row of a linear layer, vectorised over the inputs (the planner's ivec: weights
         * [opad][Cv], Cv = C rounded up to 16 with zeros, input contiguous). Order of the float
         * sums, the same in every variant: 16 partial sums p_l over the inputs i = l mod 16 in
         * increasing i (p_l = ((w_l x_l + w_{l+16} x_{l+16}) + ...), the tail's missing inputs
         * read as 0), then p_l = p_l + p_{l+s} for s = 8, 4, 2, 1, then + bias. */
        const int64_t Cv = (C + 15) & ~(int64_t)15, C16 = C & ~(int64_t)15, O = op->O;
        float xt[16] = {0};
        for (int64_t i = C16; i < C; ++i) xt[i - C16] = src[i];
        for (int64_t o0 = 0; o0 < O; o0 += 16) {
            const int64_t n = (O - o0) < 16 ? (O - o0) : 16;
            float res[16] = {0};
            for (int64_t ob = 0; ob < n; ob += 4) { /* 4 outputs at a time: independent chains */
                VF acc[4][BK_VN];
                for (int q = 0; q < 4; ++q)
                    for (int u = 0; u < BK_VN; ++u) acc[q][u] = (VF){0};
                const float *w0 = op->wf + (o0 + ob) * Cv;
                for (int64_t i = 0; i < Cv; i += 16) {
                    const float *xi = i < C16 ? src + i : xt;
                    for (int u = 0; u < BK_VN; ++u) {
                        VF xv;
                        BK_LOADV(xv, xi + u * BK_VW);
                        for (int q = 0; q < 4; ++q) {
                            VF w;
                            BK_LOADV(w, w0 + q * Cv + i + u * BK_VW);
                            acc[q][u] = BK_FN(bk_fma)(w, xv, acc[q][u]);
                        }
                    }
                }
                for (int q = 0; q < 4; ++q) {
                    float pl[16];
                    memcpy(pl, acc[q], 64);
                    for (int st = 8; st >= 1; st >>= 1)
                        for (int l = 0; l < st; ++l) pl[l] = pl[l] + pl[l + st];
                    res[ob + q] = pl[0];
                }
            }
            float b[16] = {0};
            memcpy(b, op->bias + o0, (size_t)n * 4);
            VF r[BK_VN];
            for (int u = 0; u < BK_VN; ++u) {
                VF rv, bv;
                BK_LOADV(rv, res + u * BK_VW);
                BK_LOADV(bv, b + u * BK_VW);
                r[u] = rv + bv;
            }
            if (n == 16) {
                BK_FN(bk_post16)(op, r, o0, slots, 0, op->out_so);
                BK_FN(bk_store16)(out + o0 * op->out_so, r, op->out_so);
            } else {
                memcpy(y, r, 64);
                BK_FN(bk_post_apply)(op, y, n, o0, 1, slots, o0 * op->out_so, op->out_so);
                BK_FN(bk_store)(out + o0 * op->out_so, y, n, op->out_so);
            }
        }
        return;
    }
    const int64_t sh = op->sh, sw = op->sw, dh = op->dh, dw = op->dw, kh = op->kh, kw = op->kw;
    const int64_t Wo = op->Wo, xs = sw * ssw; /* input step between neighbouring outputs */
    /* packed sign bits of exactly 16 channels (the planner: no ADD post-op): the post-op
     * parameters loaded once, in registers (the same float operations as bk_post16) */
    int hn = -1, hk[4] = {0, 0, 0, 0};
    VF ha[4][BK_VN], hb[4][BK_VN];
    if (op->bits_out && op->O == 16 && op->groups == 1 && op->npost <= 4) {
        hn = op->npost;
        for (int k = 0; k < hn; ++k) {
            const bk_post *p = &op->post[k];
            hk[k] = p->kind;
            if (p->kind == BK_POST_ADD) hn = -1;
            for (int u = 0; u < BK_VN; ++u) {
                ha[k][u] = hb[k][u] = (VF){0};
                if (p->kind != BK_POST_AFFINE && p->kind != BK_POST_PRELU) continue;
                if (p->per_channel) {
                    BK_LOADV(ha[k][u], p->a + u * BK_VW);
                    if (p->kind == BK_POST_AFFINE) BK_LOADV(hb[k][u], p->b + u * BK_VW);
                } else {
                    ha[k][u] = (VF){0} + p->a[0];
                    if (p->kind == BK_POST_AFFINE) hb[k][u] = (VF){0} + p->b[0];
                }
            }
            if (hn < 0) break;
        }
    }
    /* Order of the float sums (the same in every variant, every lane):
     *   ksplit == 0: acc = ((w_0 x_0 + w_1 x_1) + w_2 x_2) + ... over k = (c, ky, kx), then + bias
     *   ksplit == 1 (a single output position: one row of a linear layer): four partial sums over
     *                k mod 4, combined as (s0 + s1) + (s2 + s3), then + bias. */
    const int ksplit = Wo * op->Ho == 1; /* (the block below computes one position) */
    for (int64_t g = 0; g < G; ++g) {
        const float *wg = op->wf + g * ck * opad;
        const float *sg = src + g * cg * ssc;
        for (int64_t oy = 0; oy < op->Ho; ++oy)
            for (int64_t ox0 = 0; ox0 < Wo; ox0 += BK_NPOS) {
                const int64_t npos = (Wo - ox0) < BK_NPOS ? (Wo - ox0) : BK_NPOS;
                for (int64_t o0 = 0; o0 < og; o0 += 16) {
                    VF acc[BK_NPOS][BK_VN];
                    const float *wrow = wg + o0;
                    if (ksplit) {
                        /* four partial sums over k mod 4, unrolled so they stay in registers */
                        VF s0[BK_VN], s1[BK_VN], s2[BK_VN], s3[BK_VN];
                        for (int u = 0; u < BK_VN; ++u) s0[u] = s1[u] = s2[u] = s3[u] = (VF){0};
                        const float *sp0 = sg + oy * sh * ssh + ox0 * xs;
                        if (kh == 1 && kw == 1) { /* linear: k = c */
                            int64_t c = 0;
                            for (; c + 4 <= cg; c += 4) {
                                const float v0 = sp0[c * ssc], v1 = sp0[(c + 1) * ssc];
                                const float v2 = sp0[(c + 2) * ssc], v3 = sp0[(c + 3) * ssc];
                                const float *wp = wrow + c * opad;
                                for (int u = 0; u < BK_VN; ++u) {
                                    VF w0, w1, w2, w3;
                                    BK_LOADV(w0, wp + u * BK_VW);
                                    BK_LOADV(w1, wp + opad + u * BK_VW);
                                    BK_LOADV(w2, wp + 2 * opad + u * BK_VW);
                                    BK_LOADV(w3, wp + 3 * opad + u * BK_VW);
                                    s0[u] = BK_FN(bk_fmas)(w0, v0, s0[u]);
                                    s1[u] = BK_FN(bk_fmas)(w1, v1, s1[u]);
                                    s2[u] = BK_FN(bk_fmas)(w2, v2, s2[u]);
                                    s3[u] = BK_FN(bk_fmas)(w3, v3, s3[u]);
                                }
                            }
                            for (; c < cg; ++c) { /* k mod 4 = c - (cg & ~3) for the tail */
                                const float v = sp0[c * ssc];
                                for (int u = 0; u < BK_VN; ++u) {
                                    VF w;
                                    BK_LOADV(w, wrow + c * opad + u * BK_VW);
                                    if ((c & 3) == 0) s0[u] = BK_FN(bk_fmas)(w, v, s0[u]);
                                    else if ((c & 3) == 1) s1[u] = BK_FN(bk_fmas)(w, v, s1[u]);
                                    else s2[u] = BK_FN(bk_fmas)(w, v, s2[u]);
                                }
                            }
                        } else {
                            int64_t k = 0;
                            for (int64_t c = 0; c < cg; ++c)
                                for (int64_t ky = 0; ky < kh; ++ky) {
                                    const float *srow = sp0 + c * ssc + ky * dh * ssh;
                                    for (int64_t kx = 0; kx < kw; ++kx, ++k) {
                                        const float v = srow[kx * dw * ssw];
                                        for (int u = 0; u < BK_VN; ++u) {
                                            VF w;
                                            BK_LOADV(w, wrow + k * opad + u * BK_VW);
                                            const int r = (int)(k & 3);
                                            if (r == 0) s0[u] = BK_FN(bk_fmas)(w, v, s0[u]);
                                            else if (r == 1) s1[u] = BK_FN(bk_fmas)(w, v, s1[u]);
                                            else if (r == 2) s2[u] = BK_FN(bk_fmas)(w, v, s2[u]);
                                            else s3[u] = BK_FN(bk_fmas)(w, v, s3[u]);
                                        }
                                    }
                                }
                        }
                        for (int u = 0; u < BK_VN; ++u) acc[0][u] = (s0[u] + s1[u]) + (s2[u] + s3[u]);
                    } else if (npos == BK_NPOS) {
                        for (int q = 0; q < BK_NPOS; ++q)
                            for (int u = 0; u < BK_VN; ++u) acc[q][u] = (VF){0};
                        for (int64_t c = 0; c < cg; ++c)
                            for (int64_t ky = 0; ky < kh; ++ky) {
                                const float *srow = sg + c * ssc + (oy * sh + ky * dh) * ssh + ox0 * xs;
                                const float *wk = wrow + ((c * kh + ky) * kw) * opad;
                                for (int64_t kx = 0; kx < kw; ++kx) {
                                    const float *spt = srow + kx * dw * ssw;
                                    for (int u = 0; u < BK_VN; ++u) {
                                        VF w;
                                        BK_LOADV(w, wk + kx * opad + u * BK_VW);
                                        for (int q = 0; q < BK_NPOS; ++q) acc[q][u] = BK_FN(bk_fmas)(w, spt[q * xs], acc[q][u]);
                                    }
                                }
                            }
                    } else {
                        for (int64_t q = 0; q < npos; ++q) {
                            for (int u = 0; u < BK_VN; ++u) acc[q][u] = (VF){0};
                            for (int64_t c = 0; c < cg; ++c)
                                for (int64_t ky = 0; ky < kh; ++ky) {
                                    const float *srow = sg + c * ssc + (oy * sh + ky * dh) * ssh + (ox0 + q) * xs;
                                    const float *wk = wrow + ((c * kh + ky) * kw) * opad;
                                    for (int64_t kx = 0; kx < kw; ++kx) {
                                        const float v = srow[kx * dw * ssw];
                                        for (int u = 0; u < BK_VN; ++u) {
                                            VF w;
                                            BK_LOADV(w, wk + kx * opad + u * BK_VW);
                                            acc[q][u] = BK_FN(bk_fmas)(w, v, acc[q][u]);
                                        }
                                    }
                                }
                        }
                    }
                    const int64_t n = (og - o0) < 16 ? (og - o0) : 16;
                    const int64_t o = g * og + o0;
                    float b[16] = {0};
                    memcpy(b, op->bias + o, (size_t)n * 4);
                    for (int64_t q = 0; q < npos; ++q) {
                        if (op->fthr) {
                            /* packed sign bits straight from the raw sums: the exact per-channel
                             * test the planner derived from bias + post-ops (same bits) */
#ifdef BK_AVX512_OPS
                            /* AVX-512: the two ordered compares straight into a 16-bit mask,
                             * each under its channels' direction mask (the same bits) */
                            const __mmask16 ltm = _mm512_test_epi32_mask(_mm512_loadu_si512((const void *)(op->flt + o)),
                                                                         _mm512_set1_epi32(-1));
                            const __m512 tv = _mm512_loadu_ps(op->fthr + o);
                            const uint64_t m = (uint16_t)(_mm512_mask_cmp_ps_mask(ltm, (__m512)acc[q][0], tv, _CMP_LT_OQ) |
                                                          _mm512_mask_cmp_ps_mask((__mmask16)~ltm, (__m512)acc[q][0], tv, _CMP_GE_OQ));
#else
                            int32_t lm[16];
                            for (int u = 0; u < BK_VN; ++u) {
                                VF tv;
                                VI lt;
                                BK_LOADV(tv, op->fthr + o + u * BK_VW);
                                BK_LOADV(lt, op->flt + o + u * BK_VW);
                                const VI mu = (lt & (acc[q][u] < tv)) | (~lt & (acc[q][u] >= tv));
                                memcpy(lm + u * BK_VW, &mu, sizeof(mu));
                            }
                            static const int32_t zero16t[16] = {0};
                            const uint64_t m = BK_GTMASK16(zero16t, lm);
#endif
                            const int64_t bit = (oy * Wo + ox0 + q) * op->O + o;
                            if (BK_BYTE_BITS) {
                                const uint16_t h = (uint16_t)m;
                                memcpy((uint8_t *)out + bit / 8, &h, 2);
                            } else {
                                uint64_t *wd = (uint64_t *)(void *)out + bit / 64;
                                *wd = (*wd & ~((uint64_t)0xffff << (bit & 63))) | (m << (bit & 63));
                            }
                            continue;
                        }
                        VF r[BK_VN];
                        for (int u = 0; u < BK_VN; ++u) {
                            VF bv;
                            BK_LOADV(bv, b + u * BK_VW);
                            r[u] = acc[q][u] + bv;
                        }
                        const int64_t off = oy * op->out_sh + (ox0 + q) * op->out_sw;
                        if (n == 16 && op->bits_out) {
                            /* packed sign rows for a binary consumer (planner: groups 1, O % 16 == 0):
                             * the same values, packed as the consumer would; bits p * O + o.. */
                            if (hn >= 0) {
                                for (int k = 0; k < hn; ++k)
                                    for (int u = 0; u < BK_VN; ++u) {
                                        if (hk[k] == BK_POST_AFFINE) {
                                            r[u] = ha[k][u] * r[u] + hb[k][u];
                                        } else if (hk[k] == BK_POST_PRELU) {
                                            r[u] = BK_FN(bk_prelu)(r[u], ha[k][u]);
                                        } else if (hk[k] == BK_POST_RELU) {
                                            r[u] = (VF)((r[u] > (VF){0}) & (VI)r[u]);
                                        }
                                    }
                            } else {
                                BK_FN(bk_post16)(op, r, o, slots, off, op->out_so);
                            }
                            /* bit 1 iff v < 0 (ordered: -0.0 and NaN give 0), as BK_PACK: the lane
                             * masks (-1 / 0) are turned into bits by 0 > mask */
                            int32_t lm[16];
                            for (int u = 0; u < BK_VN; ++u) {
                                const VI mu = r[u] < (VF){0};
                                memcpy(lm + u * BK_VW, &mu, sizeof(mu));
                            }
                            static const int32_t zero16[16] = {0};
                            const uint64_t m = BK_GTMASK16(zero16, lm);
                            const int64_t bit = (oy * Wo + ox0 + q) * op->O + o;
                            if (BK_BYTE_BITS) {
                                const uint16_t h = (uint16_t)m;
                                memcpy((uint8_t *)out + bit / 8, &h, 2);
                            } else {
                                uint64_t *wd = (uint64_t *)(void *)out + bit / 64;
                                *wd = (*wd & ~((uint64_t)0xffff << (bit & 63))) | (m << (bit & 63));
                            }
                        } else if (n == 16) {
                            BK_FN(bk_post16)(op, r, o, slots, off, op->out_so);
                            BK_FN(bk_store16)(out + off + o * op->out_so, r, op->out_so);
                        } else {
                            memcpy(y, r, 64);
                            BK_FN(bk_post_apply)(op, y, n, o, 1, slots, off + o * op->out_so, op->out_so);
                            BK_FN(bk_store)(out + off + o * op->out_so, y, n, op->out_so);
                        }
                    }
                }
            }
    }
}

/* ---- binary conv / linear ------------------------------------------------------------------ */

/* Float -> bits of a shifted input: bit i of the words at out is fl(x[i * stride] + b[i]) < 0, the
 * very float addition and test of the affine (multiplier 1, offset b) this replaces
 * (op->ishift, engine.py _fold_input_shift), one word of sums at a time on the stack and packed by
 * the variant's BK_PACK: the same bits without the affine's pass over memory. */
BK_ATTR static __attribute__((noinline)) void BK_FN(bk_pack_shift)(const float *x, int64_t stride, const float *b, size_t n,
                                                 uint64_t *out) {
    float t[64] __attribute__((aligned(64)));
    size_t first = 0;
#ifdef BK_AVX512_OPS
    if (stride == 1) /* whole words in registers: the same additions and compares as BK_PACK */
        for (; first + 64 <= n; first += 64) {
            uint64_t w = 0;
            for (int q = 0; q < 4; ++q) {
                const __m512 v = _mm512_add_ps(_mm512_loadu_ps(x + first + 16 * q), _mm512_loadu_ps(b + first + 16 * q));
                w |= (uint64_t)(uint16_t)_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ) << (16 * q);
            }
            out[first / 64] = w;
        }
#endif
    for (; first < n; first += 64) {
        const size_t cnt = n - first < 64 ? n - first : 64;
        size_t i = 0;
        if (stride == 1)
            for (; i + BK_VW <= cnt; i += BK_VW) {
                VF v, bv;
                BK_LOADV(v, x + first + i);
                BK_LOADV(bv, b + first + i);
                v = v + bv;
                memcpy(t + i, &v, sizeof(v));
            }
        for (; i < cnt; ++i) t[i] = x[(int64_t)(first + i) * stride] + b[first + i];
        BK_PACK(t, cnt, out + first / 64);
    }
}

/* Steps 1 and 2 of a binary conv: the packed input grid and (unless direct) the dense
 * receptive-field rows; returns the GEMM rows and their stride (words). x: the input floats at
 * the op's strides (or, prepacked, the packed rows); tmp_row: one packed row of scratch (rowmode). */
BK_ATTR static inline __attribute__((always_inline)) const uint64_t *BK_FN(bk_bconv_rows)(
    const bk_op *op, float *x, uint64_t *grid, uint64_t *col, uint64_t *tmp_row, size_t *lda_out) {
    const int64_t C = op->C, H = op->H, W = op->W, words = op->words;
    const int64_t Wp = W + op->pl + op->pr;
    /* 1. pack the input into the zero-padded grid of words (padding positions: 0 bits) */
    const int padded = (op->pt | op->pb | op->pl | op->pr) != 0;
    if (padded) memset(grid, 0, bk_bconv_grid_words(op) * 8);
    if (op->prepacked && !op->rowmode) {
        grid = (uint64_t *)(void *)x; /* direct: the rows as they are */
    } else if (op->rowmode && op->prepacked) {
        /* dense packed rows from the producer (W * C bits each, word aligned): copied in place */
        if (!padded) memset(grid, 0, bk_bconv_grid_words(op) * 8);
        const uint64_t *src = (const uint64_t *)(const void *)x;
        const int64_t sw = W * C / 64;
        for (int64_t i = 0; i < H; ++i) {
            uint64_t *row = grid + (i + op->pt) * op->rwords;
            if (BK_BYTE_BITS && (C & 7) == 0)
                memcpy((uint8_t *)row + op->pl * C / 8, src + i * sw, (size_t)(W * C / 8));
            else
                bk_bits_copy(row, (size_t)(op->pl * C), src + i * sw, 0, (size_t)(W * C));
        }
    } else if (op->rowmode) {
        /* dense rows: bit ((x + pl) * C + c) of padded row y + pt is channel c of pixel (y, x) */
        if (!padded) memset(grid, 0, bk_bconv_grid_words(op) * 8);
        uint64_t *tmp = tmp_row; /* a packed row */
        const int contiguous = op->in_sc == 1 && op->in_sw == C && !op->ishift;
        for (int64_t i = 0; i < H; ++i) {
            uint64_t *row = grid + (i + op->pt) * op->rwords;
            const float *s = x + i * op->in_sh;
            if (contiguous) { /* channels-last row: W * C floats in bit order */
                BK_PACK(s, (size_t)(W * C), tmp);
                if (BK_BYTE_BITS && (C & 7) == 0)
                    memcpy((uint8_t *)row + op->pl * C / 8, tmp, (size_t)(W * C / 8));
                else
                    bk_bits_copy(row, (size_t)(op->pl * C), tmp, 0, (size_t)(W * C));
            } else {
                for (int64_t j = 0; j < W; ++j) {
                    if (op->ishift)
                        BK_FN(bk_pack_shift)(s + j * op->in_sw, op->in_sc, op->ishift, (size_t)C, tmp);
                    else if (op->in_sc == 1)
                        BK_PACK(s + j * op->in_sw, (size_t)C, tmp);
                    else
                        bk_pack_strided(s + j * op->in_sw, op->in_sc, (size_t)C, tmp);
                    tmp[words] = 0;
                    if (BK_BYTE_BITS && (C & 7) == 0)
                        memcpy((uint8_t *)row + (j + op->pl) * C / 8, tmp, (size_t)(C / 8));
                    else
                        bk_bits_copy(row, (size_t)((j + op->pl) * C), tmp, 0, (size_t)C);
                }
            }
        }
    } else {
        for (int64_t i = 0; i < H; ++i)
            for (int64_t j = 0; j < W; ++j) {
                const float *s = x + i * op->in_sh + j * op->in_sw;
                uint64_t *d = grid + ((i + op->pt) * Wp + j + op->pl) * words;
                if (op->ishift)
                    BK_FN(bk_pack_shift)(s, op->in_sc, op->ishift, (size_t)C, d);
                else if (op->in_sc == 1)
                    BK_PACK(s, (size_t)C, d);
                else
                    bk_pack_strided(s, op->in_sc, (size_t)C, d);
            }
    }

    /* 2. dense receptive-field rows (im2col on bits) */
    const uint64_t *A = grid;
    size_t lda = (size_t)words;
    if (!op->direct) {
        const int64_t kw = op->kw, kwords = op->kwords;
        if (op->rowmode && BK_BYTE_BITS && (C & 7) == 0) {
            /* whole bytes: each kernel row's window is kw * C / 8 contiguous bytes, copied in
             * 8-byte pieces in increasing address order (a piece may run up to 7 bytes past its
             * window: the next window, the next position's row or the slack word of a grid row
             * absorb it; the col row's last word is masked afterwards). */
            const size_t run = (size_t)(kw * C / 8), step = (size_t)(op->sw * C / 8);
            const size_t used = (size_t)(op->kh * kw * C) - (size_t)(kwords - 1) * 64; /* bits in the last word */
            const uint64_t last = used >= 64 ? ~(uint64_t)0 : (((uint64_t)1) << used) - 1;
            for (int64_t oy = 0; oy < op->Ho; ++oy)
                for (int64_t ox = 0; ox < op->Wo; ++ox) {
                    uint64_t *row = col + (oy * op->Wo + ox) * kwords;
                    uint8_t *dst = (uint8_t *)row;
                    for (int64_t ky = 0; ky < op->kh; ++ky) {
                        const uint8_t *g = (const uint8_t *)(grid + (oy * op->sh + ky * op->dh) * op->rwords) + ox * step;
                        for (size_t i = 0; i < run; i += 8) {
                            uint64_t v;
                            memcpy(&v, g + i, 8);
                            memcpy(dst + ky * run + i, &v, 8);
                        }
                    }
                    row[kwords - 1] &= last;
                }
        } else if (op->rowmode) {
            memset(col, 0, bk_bconv_col_words(op) * 8);
            const size_t run = (size_t)(kw * C);
            for (int64_t oy = 0; oy < op->Ho; ++oy)
                for (int64_t ox = 0; ox < op->Wo; ++ox) {
                    uint64_t *row = col + (oy * op->Wo + ox) * kwords;
                    for (int64_t ky = 0; ky < op->kh; ++ky)
                        bk_bits_copy(row, (size_t)ky * run, grid + (oy * op->sh + ky * op->dh) * op->rwords,
                                     (size_t)(ox * op->sw * C), run);
                }
        } else {
        memset(col, 0, bk_bconv_col_words(op) * 8);
        for (int64_t oy = 0; oy < op->Ho; ++oy)
            for (int64_t ox = 0; ox < op->Wo; ++ox) {
                uint64_t *row = col + (oy * op->Wo + ox) * kwords;
                for (int64_t ky = 0; ky < op->kh; ++ky) {
                    const uint64_t *g = grid + ((oy * op->sh + ky * op->dh) * Wp + ox * op->sw) * words;
                    for (int64_t kx = 0; kx < kw; ++kx) {
                        const uint64_t *s = g + kx * op->dw * words;
                        const int64_t t = ky * kw + kx;
                        if ((C & 63) == 0) {
                            for (int64_t w = 0; w < words; ++w) row[t * words + w] = s[w];
                        } else {
                            bk_bits_append(row, (size_t)(t * C), s, (size_t)C);
                        }
                    }
                }
            }
        }
        A = col;
        lda = (size_t)kwords;
    }

    *lda_out = lda;
    return A;
}

#ifdef BK_AVX512_OPS
/* AVX-512: a BCONV writing its consumer's rows in the tpos/tthr order (binkit_engine.h): per
 * output row r and block of 8 channels, the counts of the row's 8 positions stay in registers
 * (8 accumulators sharing each weight load), each compare mask (count > threshold, 8 channels)
 * sets bit j of its channels' lanes, and the lanes narrow to the 8 bytes of the row; XOR ginv as
 * in the gather.  The same counts and tests as GEMM + gather: the same bits. */
BK_ATTR static void BK_FN(bk_bconv_trans8)(const bk_op *op, const uint64_t *A, size_t lda, uint64_t *out) {
    const int64_t rows = op->grows, nb = op->nb, O = op->O, owords = op->owords;
    const size_t K = lda;
    for (int64_t r = 0; r < rows; ++r) {
        const int32_t *pp = op->tpos + r * 8;
        const uint64_t *a0 = A + pp[0] * lda, *a1 = A + pp[1] * lda, *a2 = A + pp[2] * lda, *a3 = A + pp[3] * lda;
        const uint64_t *a4 = A + pp[4] * lda, *a5 = A + pp[5] * lda, *a6 = A + pp[6] * lda, *a7 = A + pp[7] * lda;
        for (int64_t ob = 0; ob < nb; ++ob) {
            const uint64_t *w = op->wb + ob * (int64_t)K * 8;
            __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
            for (size_t k = 0; k < K; ++k) {
                const __m512i wv = _mm512_loadu_si512((const void *)(w + k * 8));
                c0 = bk_xpc_avx512(c0, a0[k], wv);
                c1 = bk_xpc_avx512(c1, a1[k], wv);
                c2 = bk_xpc_avx512(c2, a2[k], wv);
                c3 = bk_xpc_avx512(c3, a3[k], wv);
                c4 = bk_xpc_avx512(c4, a4[k], wv);
                c5 = bk_xpc_avx512(c5, a5[k], wv);
                c6 = bk_xpc_avx512(c6, a6[k], wv);
                c7 = bk_xpc_avx512(c7, a7[k], wv);
            }
            const int32_t *t = op->tthr + r * 8 * O + ob * 8;
#define BK_T8(j, c)                                                                                                  \
    res = _mm512_mask_or_epi64(res, _mm512_cmpgt_epi64_mask(c, _mm512_cvtepi32_epi64(_mm256_loadu_si256(          \
                                                                   (const __m256i *)(const void *)(t + (j) * O)))), \
                               res, _mm512_set1_epi64(1LL << (j)))
            __m512i res = _mm512_setzero_si512();
            BK_T8(0, c0); BK_T8(1, c1); BK_T8(2, c2); BK_T8(3, c3);
            BK_T8(4, c4); BK_T8(5, c5); BK_T8(6, c6); BK_T8(7, c7);
#undef BK_T8
            const uint64_t bytes = (uint64_t)_mm_cvtsi128_si64(_mm512_cvtepi64_epi8(res));
            out[r * owords + ob] = bytes ^ op->ginv[r * owords + ob];
        }
    }
}
#endif

/* Step 4 of a binary conv with one base row (no padding patterns), a float transform and the
 * fast chain: 16 channels at a time through every position, their parameters in registers (the
 * same float operations as bk_op_bconv's general loop). `aff` (a constant where it is called:
 * fc.mode & BK_CHAIN_AFFINE) compiles the chain's affine in or out. */
BK_ATTR static inline __attribute__((always_inline)) void BK_FN(bk_bconv_hoisted)(
    const bk_op *op, const BK_FN(bk_fastc) fc, const int32_t *cnt, int64_t ldc, float *out, const int aff) {
    /* hoisted: the float stores below may alias the op as far as the compiler knows */
    const int32_t *const base = op->base;
    const float *const mult = op->mult, *const offs = op->offs;
    const int64_t O = op->O, Ho = op->Ho, Wo = op->Wo, out_sh = op->out_sh, out_sw = op->out_sw;
    const float *rr = fc.r; /* may be the output slot itself (in place): not restrict */
    const int pc = fc.pc, mode = fc.mode;
    for (int64_t o = 0; o < O; o += 16) {
        VI bv[BK_VN];
        VF m[BK_VN], f[BK_VN], a[BK_VN], am[BK_VN], ab[BK_VN];
        for (int u = 0; u < BK_VN; ++u) {
            BK_LOADV(bv[u], base + o + u * BK_VW);
            BK_LOADV(m[u], mult + o + u * BK_VW);
            BK_LOADV(f[u], offs + o + u * BK_VW);
            a[u] = (VF){0} + fc.a0;
            if ((mode & BK_CHAIN_PRELU) && pc) BK_LOADV(a[u], fc.a + o + u * BK_VW);
            am[u] = ab[u] = (VF){0};
            if (aff) BK_CHAIN_AFFINE_LOAD(fc, o + u * BK_VW, am[u], ab[u]);
        }
        for (int64_t oy = 0; oy < Ho; ++oy)
            for (int64_t ox = 0; ox < Wo; ++ox) {
                const int32_t *c = cnt + (oy * Wo + ox) * ldc + o;
                const int64_t off = oy * out_sh + ox * out_sw + o;
                for (int u = 0; u < BK_VN; ++u) {
                    VI cv;
                    BK_LOADV(cv, c + u * BK_VW);
                    const VI d = bv[u] - (cv + cv);
                    VF v = m[u] * __builtin_convertvector(d, VF) + f[u];
                    v = BK_FN(bk_chain_vec)(v, mode, a[u], aff, am[u], ab[u], rr, off + u * BK_VW);
                    memcpy(out + off + u * BK_VW, &v, sizeof(v));
                }
            }
    }
}

BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_bconv)(const bk_op *op, float *const *slots, uint8_t *scr) {
    float *out = slots[op->out];
    const int64_t P = op->Ho * op->Wo, ldc = op->nb * 8;
    uint64_t *grid = (uint64_t *)(void *)scr;
    uint8_t *q = scr + BK_ALIGN(bk_bconv_grid_words(op) * 8);
    uint64_t *col = (uint64_t *)(void *)q;
    q += BK_ALIGN(bk_bconv_col_words(op) * 8);
    int32_t *cnt = (int32_t *)(void *)q;
    q += BK_ALIGN((size_t)(P * ldc) * 4);
    float *y = (float *)(void *)q;

    size_t lda;
    const uint64_t *A = BK_FN(bk_bconv_rows)(op, slots[op->in], grid, col,
                                             (uint64_t *)(void *)((uint8_t *)y + BK_ALIGN((size_t)(op->nb * 8) * 4)), &lda);

#ifdef BK_AVX512_OPS
    if (op->tpos) {
        BK_FN(bk_bconv_trans8)(op, A, lda, (uint64_t *)(void *)out);
        return;
    }
#endif
    /* 3. counts */
    BK_GEMM(A, lda, (size_t)P, op->wb, lda, (size_t)op->nb, cnt, (size_t)ldc);

    /* 4. output transform + post-ops, one position (one row of O channels) at a time */
    const int64_t O = op->O, O16 = O & ~(int64_t)15;
    if (op->gsrc) {
        /* a consumer's packed rows in its bit order: counts gathered by index, thresholded */
        const int32_t *restrict gsrc = op->gsrc, *restrict gthr = op->gthr;
        const uint64_t *restrict ginv = op->ginv;
        uint64_t *restrict dst = (uint64_t *)(void *)out;
        const int64_t nw = op->grows * op->owords;
#ifdef BK_GATHERGT16 /* hardware gathers (AVX2 / AVX-512): integer compares, the same bits */
        for (int64_t w = 0; w < nw; ++w) {
            const int32_t *s = gsrc + w * 64, *t = gthr + w * 64;
            dst[w] = ((uint64_t)BK_GATHERGT16(cnt, s, t) | ((uint64_t)BK_GATHERGT16(cnt, s + 16, t + 16) << 16) |
                      ((uint64_t)BK_GATHERGT16(cnt, s + 32, t + 32) << 32) |
                      ((uint64_t)BK_GATHERGT16(cnt, s + 48, t + 48) << 48)) ^
                     ginv[w];
        }
#else
        int32_t g[64];
        for (int64_t w = 0; w < nw; ++w) {
            const int32_t *s = gsrc + w * 64, *t = gthr + w * 64;
            for (int i = 0; i < 64; ++i) g[i] = cnt[s[i]];
            dst[w] = ((uint64_t)BK_GTMASK16(g, t) | ((uint64_t)BK_GTMASK16(g + 16, t + 16) << 16) |
                      ((uint64_t)BK_GTMASK16(g + 32, t + 32) << 32) | ((uint64_t)BK_GTMASK16(g + 48, t + 48) << 48)) ^
                     ginv[w];
        }
#endif
        return;
    }
    if (op->bits_out && op->cthr) {
        /* sign bits straight from the counts: bit 1 (x < 0) iff count > cthr */
        const int32_t *const cthr = op->cthr, *const pat = op->pat;
        const int64_t owords = op->owords;
        uint64_t *const dst0 = (uint64_t *)(void *)out;
        if ((ldc & 63) == 0 && owords * 64 == ldc) { /* whole words: four masks each */
            for (int64_t p = 0; p < P; ++p) {
                const int32_t *restrict ct = cthr + (pat ? (int64_t)pat[p] * ldc : 0);
                const int32_t *restrict c = cnt + p * ldc;
                uint64_t *restrict dst = dst0 + p * owords;
                for (int64_t w = 0; w < owords; ++w) {
                    const int32_t *cw = c + w * 64, *tw = ct + w * 64;
                    dst[w] = (uint64_t)BK_GTMASK16(cw, tw) | ((uint64_t)BK_GTMASK16(cw + 16, tw + 16) << 16) |
                             ((uint64_t)BK_GTMASK16(cw + 32, tw + 32) << 32) |
                             ((uint64_t)BK_GTMASK16(cw + 48, tw + 48) << 48);
                }
            }
            return;
        }
        for (int64_t p = 0; p < P; ++p) {
            const int32_t *restrict ct = cthr + (pat ? (int64_t)pat[p] * ldc : 0);
            const int32_t *restrict c = cnt + p * ldc;
            uint64_t *restrict dst = dst0 + p * owords;
            int64_t o = 0;
            for (int64_t w = 0; w < owords; ++w) {
                uint64_t word = 0;
                for (int sh = 0; sh < 64 && o < ldc; sh += 16, o += 16) {
                    uint32_t m;
                    if (o + 16 <= ldc) {
                        m = BK_GTMASK16(c + o, ct + o);
                    } else {
                        m = 0;
                        for (int64_t i = o; i < ldc; ++i) m |= (uint32_t)(c[i] > ct[i]) << (i - o);
                    }
                    word |= (uint64_t)m << sh;
                }
                dst[w] = word;
            }
        }
        return;
    }
    const int fast = BK_FN(bk_fast_chain)(op);
    const BK_FN(bk_fastc) fc = BK_FN(bk_fastc_make)(op, fast, slots);
    /* hoisted: the float stores below may alias the op as far as the compiler knows */
    const int32_t *const base = op->base, *const pat = op->pat, *const thr = op->thr;
    const float *const mult = op->mult, *const offs = op->offs;
    const int64_t Ho = op->Ho, Wo = op->Wo, out_sh = op->out_sh, out_sw = op->out_sw;
    if (fast && !pat && !thr && O16 == O) {
        if (fast & BK_CHAIN_AFFINE)
            BK_FN(bk_bconv_hoisted)(op, fc, cnt, ldc, out, 1);
        else
            BK_FN(bk_bconv_hoisted)(op, fc, cnt, ldc, out, 0);
        return;
    }
    for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
            const int64_t p = oy * Wo + ox;
            const int32_t *restrict b = base + (pat ? (int64_t)pat[p] * ldc : 0);
            const int32_t *restrict c = cnt + p * ldc;
            const int64_t off = oy * out_sh + ox * out_sw;
            for (int64_t o = 0; o < O16; o += 16) {
                VF vv[BK_VN];
                for (int u = 0; u < BK_VN; ++u) {
                    VI bv, cv;
                    BK_LOADV(bv, b + o + u * BK_VW);
                    BK_LOADV(cv, c + o + u * BK_VW);
                    const VI d = bv - (cv + cv);
                    VF v;
                    if (thr) {
                        VI tv;
                        BK_LOADV(tv, thr + o + u * BK_VW);
                        const VI ge = d >= tv; /* +1.0f or -1.0f: the sign bit where d < thr */
                        v = (VF)((VI)((VF){0} + 1.0f) | (~ge & ((VI){0} + (int32_t)0x80000000)));
                    } else {
                        VF m, f;
                        BK_LOADV(m, mult + o + u * BK_VW);
                        BK_LOADV(f, offs + o + u * BK_VW);
                        v = m * __builtin_convertvector(d, VF) + f;
                    }
                    vv[u] = v;
                }
                if (fast) {
                    BK_FN(bk_fast16)(fc, vv, o, off, out);
                } else if (!op->bits_out) { /* any chain, any output stride: in registers */
                    BK_FN(bk_post16)(op, vv, o, slots, off, op->out_so);
                    BK_FN(bk_store16)(out + off + o * op->out_so, vv, op->out_so);
                } else {
                    memcpy(y + o, vv, 64);
                }
            }
            if (!op->bits_out && O16 == O) continue;
            if (op->thr) { /* sign output: +1 iff dot >= threshold (exact integers) */
                const int32_t *restrict th = op->thr;
                for (int64_t o = O16; o < O; ++o) y[o] = (b[o] - 2 * c[o]) >= th[o] ? 1.0f : -1.0f;
            } else {
                const float *restrict m = op->mult, *restrict f = op->offs;
                for (int64_t o = O16; o < O; ++o) y[o] = m[o] * (float)(b[o] - 2 * c[o]) + f[o];
            }
            if (op->bits_out) {
                BK_PACK(y, (size_t)O, (uint64_t *)(void *)out + p * op->owords);
                continue;
            }
            const int64_t o0 = O16; /* floats out: only the channel tail is left */
            BK_FN(bk_post_apply)(op, y + o0, O - o0, o0, 1, slots, off + o0 * op->out_so, op->out_so);
            BK_FN(bk_store)(out + off + o0 * op->out_so, y + o0, O - o0, op->out_so);
        }
}

/* ---- binary depthwise 1-D conv --------------------------------------------------------------- */

/* Channels c0..c0+15 of one output position of a depthwise op, their exact dots in v: for a full
 * chunk (c0 + 16 <= C16) the output transform (sign threshold or m * dot + f) and then, unless the
 * op packs bits, the post-ops and the store in registers (fast: the hoisted common chain); the
 * channel tail and packed-bit outputs go to y for bk_dw_tail. */
BK_ATTR static inline __attribute__((always_inline)) void BK_FN(bk_dw_chunk16)(
    const bk_op *op, const VF d[BK_VN], int64_t c0, int64_t C16, float *y, int fast, const BK_FN(bk_fastc) *fc,
    float *const *slots, float *out, int64_t off) {
    const VI one = (VI)((VF){0} + 1.0f), signbit = (VI){0} + (int32_t)0x80000000;
    VF vv[BK_VN];
    for (int u = 0; u < BK_VN; ++u) {
        VF v = d[u];
        if (c0 + 16 <= C16) {
            if (op->thr) {
                VI tv;
                BK_LOADV(tv, op->thr + c0 + u * BK_VW);
                const VI ge = v >= __builtin_convertvector(tv, VF);
                v = (VF)(one | (~ge & signbit));
            } else {
                VF m, f;
                BK_LOADV(m, op->mult + c0 + u * BK_VW);
                BK_LOADV(f, op->offs + c0 + u * BK_VW);
                v = m * v + f;
            }
        }
        vv[u] = v;
    }
    if (c0 + 16 > C16 || op->bits_out) {
        memcpy(y + c0, vv, 64);
    } else if (fast) {
        BK_FN(bk_fast16)(*fc, vv, c0, off, out);
    } else { /* any chain, any output stride: in registers */
        BK_FN(bk_post16)(op, vv, c0, slots, off, op->out_so);
        BK_FN(bk_store16)(out + off + c0 * op->out_so, vv, op->out_so);
    }
}

/* The rest of a depthwise op's output position `row` after its chunks: the scalar transform of
 * the channel tail's exact dots in y, then the packed row (bits out: all C channels of y) or the
 * tail's post-ops and store. */
BK_ATTR static inline void BK_FN(bk_dw_tail)(const bk_op *op, float *y, int64_t C16, int64_t row, float *const *slots,
                                              float *out, int64_t off) {
    const int64_t C = op->C;
    const int32_t *thr = op->thr;
    for (int64_t ch = C16; ch < C; ++ch)
        y[ch] = thr ? (y[ch] >= (float)thr[ch] ? 1.0f : -1.0f) : op->mult[ch] * y[ch] + op->offs[ch];
    if (op->bits_out) {
        BK_PACK(y, (size_t)C, (uint64_t *)(void *)out + row * op->owords);
        return;
    }
    BK_FN(bk_post_apply)(op, y + C16, C - C16, C16, 1, slots, off + C16 * op->out_so, op->out_so);
    BK_FN(bk_store)(out + off + C16 * op->out_so, y + C16, C - C16, op->out_so);
}

#ifdef BK_AVX512_OPS
/* AVX-512 (BW) form of bk_op_bdw's 5-tap path for channels in whole 64s, contiguous input: 64
 * channels per int8 vector.  Signs staged as bytes n = -1 (x < 0) or 0, with pl rows of 0 before
 * and pr after; the weights' bytes w8 = -1 (bit 1) or 0 follow the sign-bit masks in op->wm.  Per
 * tap, x XOR w is -1 exactly when the product is -1, so the five byte sums give s = -(negative
 * products) in [-5, 0]; a padded tap read a 0 row, i.e. added w8, which is taken back, so s counts
 * the valid taps only and dot = valid - 2 * count = valid + 2 * s.  That exact integer comes as a
 * float from a 16-entry table indexed by s (low 4 bits), then the same float chain as the
 * generic path (m * dot + f, prelu, affine, add; multiply and add separately): the same bits. */
BK_ATTR static inline __attribute__((always_inline)) void BK_FN(bk_dw5_i8_body)(
    const bk_op *op, const float *x, float *out, uint8_t *scr, const BK_FN(bk_fastc) *fcp, const int aff) {
    const BK_FN(bk_fastc) fc = *fcp;
    const int64_t C = op->C, T = op->W, Cp = op->opad, pl = op->pl, pr = op->pr;
    const int64_t Wo = op->Wo, sw = op->sw, dw = op->dw, out_sw = op->out_sw, in_sw = op->in_sw;
    int8_t *S = (int8_t *)(void *)scr;
    memset(S, 0, (size_t)(pl * Cp));
    memset(S + (pl + T) * Cp, 0, (size_t)(pr * Cp));
    const __m512 zero = _mm512_setzero_ps();
    const float *sh = op->ishift; /* a folded input shift: fl(x + sh) < 0, as the affine */
    for (int64_t t = 0; t < T; ++t) {
        const float *s = x + t * in_sw;
        int8_t *d = S + (pl + t) * Cp;
        for (int64_t c = 0; c < C; c += 64) {
            __m512 v0 = _mm512_loadu_ps(s + c), v1 = _mm512_loadu_ps(s + c + 16);
            __m512 v2 = _mm512_loadu_ps(s + c + 32), v3 = _mm512_loadu_ps(s + c + 48);
            if (sh) {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(sh + c));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(sh + c + 16));
                v2 = _mm512_add_ps(v2, _mm512_loadu_ps(sh + c + 32));
                v3 = _mm512_add_ps(v3, _mm512_loadu_ps(sh + c + 48));
            }
            const __mmask64 k0 = _mm512_cmp_ps_mask(v0, zero, _CMP_LT_OQ);
            const __mmask64 k1 = _mm512_cmp_ps_mask(v1, zero, _CMP_LT_OQ);
            const __mmask64 k2 = _mm512_cmp_ps_mask(v2, zero, _CMP_LT_OQ);
            const __mmask64 k3 = _mm512_cmp_ps_mask(v3, zero, _CMP_LT_OQ);
            _mm512_storeu_si512((void *)(d + c), _mm512_movm_epi8(k0 | (k1 << 16) | (k2 << 32) | (k3 << 48)));
        }
    }
    const int8_t *w8 = (const int8_t *)(const void *)(op->wm + 5 * Cp);
    /* 2 * s for s = table index as a signed 4-bit value (indices 11..15 -> -5..-1, 0 -> 0) */
    const __m512 twice = _mm512_setr_ps(0.0f, 2.0f, 4.0f, 6.0f, 8.0f, 10.0f, 12.0f, 14.0f, -16.0f, -14.0f, -12.0f,
                                        -10.0f, -8.0f, -6.0f, -4.0f, -2.0f);
    const int mode = fc.mode, pc = fc.pc;
    const float *rr = fc.r; /* may be the output itself (in place): loaded before the store */
    const int64_t ds = dw * Cp;
    int8_t tmp[64] __attribute__((aligned(64)));
    for (int64_t c = 0; c < C; c += 64) {
        __m512i w[5];
        for (int j = 0; j < 5; ++j) w[j] = _mm512_loadu_si512((const void *)(w8 + j * Cp + c));
        __m512 m[4], f[4], a[4], am[4], ab[4];
        for (int u = 0; u < 4; ++u) {
            m[u] = _mm512_loadu_ps(op->mult + c + 16 * u);
            f[u] = _mm512_loadu_ps(op->offs + c + 16 * u);
            a[u] = _mm512_set1_ps(fc.a0);
            if ((mode & BK_CHAIN_PRELU) && pc) a[u] = _mm512_loadu_ps(fc.a + c + 16 * u);
            am[u] = ab[u] = zero;
            if (aff) {
                am[u] = fc.apc ? _mm512_loadu_ps(fc.am + c + 16 * u) : _mm512_set1_ps(fc.am0);
                ab[u] = fc.apc ? _mm512_loadu_ps(fc.ab + c + 16 * u) : _mm512_set1_ps(fc.ab0);
            }
        }
        for (int64_t t = 0; t < Wo; ++t) {
            const int8_t *s0 = S + t * sw * Cp + c;
            __m512i acc = _mm512_xor_si512(_mm512_loadu_si512((const void *)s0), w[0]);
            acc = _mm512_add_epi8(acc, _mm512_xor_si512(_mm512_loadu_si512((const void *)(s0 + ds)), w[1]));
            acc = _mm512_add_epi8(acc, _mm512_xor_si512(_mm512_loadu_si512((const void *)(s0 + 2 * ds)), w[2]));
            acc = _mm512_add_epi8(acc, _mm512_xor_si512(_mm512_loadu_si512((const void *)(s0 + 3 * ds)), w[3]));
            acc = _mm512_add_epi8(acc, _mm512_xor_si512(_mm512_loadu_si512((const void *)(s0 + 4 * ds)), w[4]));
            int valid = 0;
            for (int j = 0; j < 5; ++j) {
                const int64_t r = t * sw + j * dw - pl;
                if (r >= 0 && r < T)
                    ++valid;
                else
                    acc = _mm512_sub_epi8(acc, w[j]);
            }
            const __m512 lut = _mm512_add_ps(_mm512_set1_ps((float)valid), twice);
            _mm512_store_si512((void *)tmp, acc);
            float *o = out + t * out_sw + c;
            const float *r = rr + t * out_sw + c;
            for (int u = 0; u < 4; ++u) {
                const __m512i si = _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(const void *)(tmp + 16 * u)));
                __m512 v = _mm512_add_ps(_mm512_mul_ps(m[u], _mm512_permutexvar_ps(si, lut)), f[u]);
                if (mode & BK_CHAIN_PRELU) v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_NGE_UQ), a[u], v);
                if (aff) v = _mm512_add_ps(_mm512_mul_ps(am[u], v), ab[u]);
                if (mode & BK_CHAIN_ADD) v = _mm512_add_ps(v, _mm512_loadu_ps(r + 16 * u));
                _mm512_storeu_ps(o + 16 * u, v);
            }
        }
    }
}

/* bk_dw5_i8_body with the chain's affine compiled in or out */
BK_ATTR static void BK_FN(bk_dw5_i8)(const bk_op *op, const float *x, float *out, uint8_t *scr,
                                     const BK_FN(bk_fastc) *fcp) {
    if (fcp->mode & BK_CHAIN_AFFINE)
        BK_FN(bk_dw5_i8_body)(op, x, out, scr, fcp, 1);
    else
        BK_FN(bk_dw5_i8_body)(op, x, out, scr, fcp, 0);
}
#endif

/* bk_op_bdw's 5-tap path (see there); Sp: the staged signs with their pl leading rows. `aff` (a
 * constant where it is called) compiles the chain's affine in or out. */
BK_ATTR static inline __attribute__((always_inline)) void BK_FN(bk_bdw_five)(
    const bk_op *op, const BK_FN(bk_fastc) fc, const float *Sp, float *out, const int aff) {
    /* hoisted: the float stores below may alias the op as far as the compiler knows */
    const int64_t C = op->C, Cp = op->opad, Wo = op->Wo, out_sw = op->out_sw, sw = op->sw, dw = op->dw;
    const uint32_t *const wm = op->wm;
    const float *const mult = op->mult, *const offs = op->offs;
    /* the DFSMN memory (5 taps), the common chain, channels contiguous: signs staged with pl
     * rows of +0.0 before and pr after, so a padded tap adds +-0.0 (exactly nothing: the
     * sum starts at +0.0 and the valid taps' +-1 are exact) and every frame takes all five
     * taps unrolled; 16 channels at a time through every frame, the taps' weight masks and
     * the chain's parameters in registers (the same float values and operations as the
     * general path of bk_op_bdw) */
    const int32_t *restrict wmr = (const int32_t *)(const void *)wm;
    const float *rr = fc.r; /* may be the output slot itself (in place): not restrict */
    const int pc = fc.pc, mode = fc.mode;
    for (int64_t c = 0; c < C; c += 16) {
        VI w0[BK_VN], w1[BK_VN], w2[BK_VN], w3[BK_VN], w4[BK_VN];
        VF m[BK_VN], f[BK_VN], a[BK_VN], am[BK_VN], ab[BK_VN];
        for (int u = 0; u < BK_VN; ++u) {
            const int64_t cu = c + u * BK_VW;
            BK_LOADV(w0[u], wmr + cu);
            BK_LOADV(w1[u], wmr + Cp + cu);
            BK_LOADV(w2[u], wmr + 2 * Cp + cu);
            BK_LOADV(w3[u], wmr + 3 * Cp + cu);
            BK_LOADV(w4[u], wmr + 4 * Cp + cu);
            BK_LOADV(m[u], mult + cu);
            BK_LOADV(f[u], offs + cu);
            a[u] = (VF){0} + fc.a0;
            if ((mode & BK_CHAIN_PRELU) && pc) BK_LOADV(a[u], fc.a + cu);
            am[u] = ab[u] = (VF){0};
            if (aff) BK_CHAIN_AFFINE_LOAD(fc, cu, am[u], ab[u]);
        }
        for (int64_t t = 0; t < Wo; ++t) {
            const float *s0 = Sp + (t * sw) * Cp + c; /* padded row t * sw + j * dw - pl + pl */
            const int64_t ds = dw * Cp;
            for (int u = 0; u < BK_VN; ++u) {
                VI x0, x1, x2, x3, x4;
                BK_LOADV(x0, s0 + u * BK_VW);
                BK_LOADV(x1, s0 + ds + u * BK_VW);
                BK_LOADV(x2, s0 + 2 * ds + u * BK_VW);
                BK_LOADV(x3, s0 + 3 * ds + u * BK_VW);
                BK_LOADV(x4, s0 + 4 * ds + u * BK_VW);
                VF d = (VF){0};
                d = d + (VF)(x0 ^ w0[u]);
                d = d + (VF)(x1 ^ w1[u]);
                d = d + (VF)(x2 ^ w2[u]);
                d = d + (VF)(x3 ^ w3[u]);
                d = d + (VF)(x4 ^ w4[u]);
                VF v = m[u] * d + f[u];
                v = BK_FN(bk_chain_vec)(v, mode, a[u], aff, am[u], ab[u], rr, t * out_sw + c + u * BK_VW);
                memcpy(out + t * out_sw + c + u * BK_VW, &v, sizeof(v));
            }
        }
    }
}

/* bk_op_bdw's fast-chain path for channels in whole 16s (see there); S: the staged signs. */
BK_ATTR static inline __attribute__((always_inline)) void BK_FN(bk_bdw_fastgen)(
    const bk_op *op, const BK_FN(bk_fastc) fc, const float *S, float *out, const int aff) {
    /* hoisted: the float stores below may alias the op as far as the compiler knows */
    const int64_t C = op->C, T = op->W, Cp = op->opad;
    const int64_t Wo = op->Wo, out_sw = op->out_sw, sw = op->sw, dw = op->dw, pl = op->pl, kw = op->kw;
    const uint32_t *const wm = op->wm;
    const float *const mult = op->mult, *const offs = op->offs;
    /* the common chain (transform, then [prelu] [affine] [add]), channels contiguous:
     * one vector of channels at a time through every valid tap, the chain in registers
     * (the same float operations as the general path of bk_op_bdw) */
    const float *restrict Sr = S;
    const int32_t *restrict wmr = (const int32_t *)(const void *)wm;
    const float *restrict mr = mult, *restrict fr = offs;
    const float *restrict ar = fc.a;
    const float *rr = fc.r; /* may be the output slot itself (in place): not restrict */
    const int pc = fc.pc, mode = fc.mode;
    const VF a0 = (VF){0} + fc.a0;
    for (int64_t t = 0; t < Wo; ++t) {
        int64_t jlo = 0, jhi = kw;
        while (jlo < jhi && t * sw + jlo * dw - pl < 0) ++jlo;
        while (jhi > jlo && t * sw + (jhi - 1) * dw - pl >= T) --jhi;
        const float *s0 = Sr + (t * sw - pl) * Cp;
        float *o = out + t * out_sw;
        const float *r = (mode & BK_CHAIN_ADD) ? rr + t * out_sw : o;
        for (int64_t c64 = 0; c64 < C; c64 += 64) {
            /* 64 channels (S pads with +1, wm with 0 up to Cp): independent accumulators */
            VF dd[64 / BK_VW];
            for (int u = 0; u < 64 / BK_VW; ++u) dd[u] = (VF){0};
            for (int64_t j = jlo; j < jhi; ++j) {
                const float *sp = s0 + j * dw * Cp + c64;
                const int32_t *wp = wmr + j * Cp + c64;
                for (int u = 0; u < 64 / BK_VW; ++u) {
                    VI sv, wv;
                    BK_LOADV(sv, sp + u * BK_VW);
                    BK_LOADV(wv, wp + u * BK_VW);
                    dd[u] = dd[u] + (VF)(sv ^ wv);
                }
            }
        for (int u = 0; u < 64 / BK_VW && c64 + u * BK_VW < C; ++u) {
            const int64_t c = c64 + u * BK_VW;
            const VF d = dd[u];
            VF m, f;
            BK_LOADV(m, mr + c);
            BK_LOADV(f, fr + c);
            VF a = a0, am = (VF){0}, ab = (VF){0};
            if ((mode & BK_CHAIN_PRELU) && pc) BK_LOADV(a, ar + c);
            if (aff) BK_CHAIN_AFFINE_LOAD(fc, c, am, ab);
            VF v = BK_FN(bk_chain_vec)(m * d + f, mode, a, aff, am, ab, r, c);
            memcpy(o + c, &v, sizeof(v));
        }
        }
    }
}

BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_bdw)(const bk_op *op, float *const *slots, uint8_t *scr) {
    /* Signs as floats +-1.0 (S), weights as sign-bit masks: S XOR mask = the product +-1, and
     * sums of a few +-1 are exact in float, so dot = sum over valid taps needs no counting. */
    const float *x = slots[op->in];
    float *out = slots[op->out];
    const int64_t C = op->C, T = op->W, Cp = op->opad;
    /* scratch: [signs, with op->pl rows of +0.0 before and op->pr after in the 5-tap path (at most
     * T + 8 rows) | y] */
    const VI one = (VI)((VF){0} + 1.0f), signbit = (VI){0} + (int32_t)0x80000000;
    const int fast = op->thr ? 0 : BK_FN(bk_fast_chain)(op);
    const BK_FN(bk_fastc) fc = BK_FN(bk_fastc_make)(op, fast, slots);
    const int five = fast && (C & 15) == 0 && op->kw == 5 && op->pl + op->pr <= 8;
    float *Sp = (float *)(void *)scr;
    float *S = five ? Sp + op->pl * Cp : Sp;
    float *y = (float *)(void *)(scr + BK_ALIGN((size_t)((T + 8) * Cp) * 4));
#ifdef BK_AVX512_OPS
    if (five && (C & 63) == 0 && op->in_sc == 1 && op->wplanes <= 1) {
        BK_FN(bk_dw5_i8)(op, x, out, scr, &fc);
        return;
    }
#endif
    if (five) {
        memset(Sp, 0, (size_t)(op->pl * Cp) * 4);
        memset(S + T * Cp, 0, (size_t)(op->pr * Cp) * 4);
    }
    for (int64_t t = 0; t < T; ++t) {
        float *restrict st = S + t * Cp;
        const float *s = x + t * op->in_sw;
        int64_t c = 0;
        const float *sh = op->ishift; /* a folded input shift: fl(x + sh) < 0, as the affine */
        if (op->in_sc == 1) {
            for (; c + BK_VW <= C; c += BK_VW) {
                VF v;
                BK_LOADV(v, s + c);
                if (sh) {
                    VF bv;
                    BK_LOADV(bv, sh + c);
                    v = v + bv;
                }
                const VI r = one | ((v < (VF){0}) & signbit);
                memcpy(st + c, &r, sizeof(r));
            }
        }
        if (sh)
            for (; c < C; ++c) st[c] = s[c * op->in_sc] + sh[c] < 0.0f ? -1.0f : 1.0f;
        else
            for (; c < C; ++c) st[c] = s[c * op->in_sc] < 0.0f ? -1.0f : 1.0f;
        for (; c < Cp; ++c) st[c] = 1.0f;
    }
    /* hoisted: the float stores below may alias the op as far as the compiler knows */
    const int64_t Wo = op->Wo, out_sw = op->out_sw, sw = op->sw, dw = op->dw, pl = op->pl, kw = op->kw;
    const uint32_t *const wm = op->wm;
    const int bits_out = op->bits_out;
    if (five) {
        if (fast & BK_CHAIN_AFFINE)
            BK_FN(bk_bdw_five)(op, fc, Sp, out, 1);
        else
            BK_FN(bk_bdw_five)(op, fc, Sp, out, 0);
        return;
    }
    if (fast && (C & 15) == 0) {
        if (fast & BK_CHAIN_AFFINE)
            BK_FN(bk_bdw_fastgen)(op, fc, S, out, 1);
        else
            BK_FN(bk_bdw_fastgen)(op, fc, S, out, 0);
        return;
    }
    for (int64_t t = 0; t < Wo; ++t) {
        const int64_t off = t * out_sw;
        /* valid taps (input inside [0, T)) form one range [jlo, jhi): ti grows with j */
        int64_t jlo = 0, jhi = kw;
        while (jlo < jhi && t * sw + jlo * dw - pl < 0) ++jlo;
        while (jhi > jlo && t * sw + (jhi - 1) * dw - pl >= T) --jhi;
        const int64_t t0 = t * sw - pl;
        const int64_t C16 = C & ~(int64_t)15;
        /* dots of every channel (padded to Cp, a multiple of 64: S pads with +1, wm with 0) -> y,
         * transformed; 64 channels at a time (4 x BK_VN independent accumulators: the tap sums
         * are exact small integers, so the order is free) */
        for (int64_t c64 = 0; c64 < Cp; c64 += 64) {
            VF d[4][BK_VN];
            for (int q = 0; q < 4; ++q)
                for (int u = 0; u < BK_VN; ++u) d[q][u] = (VF){0};
            for (int64_t j = jlo; j < jhi; ++j) { /* padded taps contribute exactly 0: skipped */
                const float *sp = S + (t0 + j * dw) * Cp + c64;
                const uint32_t *wp = wm + j * Cp + c64;
                for (int q = 0; q < 4; ++q)
                    for (int u = 0; u < BK_VN; ++u) {
                        VI sv, wv;
                        BK_LOADV(sv, sp + q * 16 + u * BK_VW);
                        BK_LOADV(wv, wp + q * 16 + u * BK_VW);
                        d[q][u] = d[q][u] + (VF)(sv ^ wv);
                    }
            }
            for (int q = 0; q < 4; ++q)
                BK_FN(bk_dw_chunk16)(op, d[q], c64 + q * 16, C16, y, fast, &fc, slots, out, off);
        }
        if (bits_out || C16 != C) BK_FN(bk_dw_tail)(op, y, C16, t, slots, out, off);
    }
}

/* ---- binary depthwise 2-D conv ----------------------------------------------------------------
 * As bk_op_bdw over a grid of H x W positions (S: [H][W][Cp] signs as floats +-1, padded channels
 * +1; wm: [kh][kw][Cp] sign-bit masks, padded channels 0; Cp = C rounded up to 16). For each output position the valid taps
 * form one rectangle [ilo, ihi) x [jlo, jhi) (input rows / columns grow with the tap index); padded
 * taps are skipped (exact zero padding). The dots are exact small integers in float, so the tap
 * order is free; the transform (m * dot + f, or the sign threshold) and the post-ops run per
 * channel with the float operations of bk_post16 / bk_post_apply, in registers for full chunks of
 * 16 channels and through y for the channel tail, as in bk_op_bdw's general path. */
BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_bdw2)(const bk_op *op, float *const *slots, uint8_t *scr) {
    const float *x = slots[op->in];
    float *out = slots[op->out];
    const int64_t C = op->C, H = op->H, W = op->W, Cp = op->opad;
    float *S = (float *)(void *)scr;
    float *y = (float *)(void *)(scr + BK_ALIGN((size_t)(H * W * Cp) * 4));
    const VI one = (VI)((VF){0} + 1.0f), signbit = (VI){0} + (int32_t)0x80000000;
    for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
            float *restrict st = S + (i * W + j) * Cp;
            const float *s = x + i * op->in_sh + j * op->in_sw;
            const float *sh = op->ishift; /* a folded input shift: fl(x + sh) < 0, as the affine */
            int64_t c = 0;
            if (op->in_sc == 1) {
                for (; c + BK_VW <= C; c += BK_VW) {
                    VF v;
                    BK_LOADV(v, s + c);
                    if (sh) {
                        VF bv;
                        BK_LOADV(bv, sh + c);
                        v = v + bv;
                    }
                    const VI r = one | ((v < (VF){0}) & signbit);
                    memcpy(st + c, &r, sizeof(r));
                }
            }
            if (sh)
                for (; c < C; ++c) st[c] = s[c * op->in_sc] + sh[c] < 0.0f ? -1.0f : 1.0f;
            else
                for (; c < C; ++c) st[c] = s[c * op->in_sc] < 0.0f ? -1.0f : 1.0f;
            for (; c < Cp; ++c) st[c] = 1.0f;
        }
    /* hoisted: the float stores below may alias the op as far as the compiler knows */
    const int64_t Ho = op->Ho, Wo = op->Wo, out_sh = op->out_sh, out_sw = op->out_sw;
    const int64_t sh = op->sh, sw = op->sw, dh = op->dh, dw = op->dw, pt = op->pt, pl = op->pl;
    const int64_t kh = op->kh, kw = op->kw;
    const uint32_t *const wm = op->wm;
    const int bits_out = op->bits_out;
    const int64_t C16 = C & ~(int64_t)15;
    for (int64_t oy = 0; oy < Ho; ++oy) {
        int64_t ilo = 0, ihi = kh;
        while (ilo < ihi && oy * sh + ilo * dh - pt < 0) ++ilo;
        while (ihi > ilo && oy * sh + (ihi - 1) * dh - pt >= H) --ihi;
        const int64_t y0 = oy * sh - pt;
        for (int64_t ox = 0; ox < Wo; ++ox) {
            int64_t jlo = 0, jhi = kw;
            while (jlo < jhi && ox * sw + jlo * dw - pl < 0) ++jlo;
            while (jhi > jlo && ox * sw + (jhi - 1) * dw - pl >= W) --jhi;
            const int64_t x0 = ox * sw - pl;
            const int64_t off = oy * out_sh + ox * out_sw, p = oy * Wo + ox;
            for (int64_t c64 = 0; c64 < Cp; c64 += 64) {
                const int nq = Cp - c64 >= 64 ? 4 : (int)((Cp - c64) / 16); /* chunks of 16 channels */
                VF d[4][BK_VN];
                for (int q = 0; q < 4; ++q)
                    for (int u = 0; u < BK_VN; ++u) d[q][u] = (VF){0};
                for (int64_t ki = ilo; ki < ihi; ++ki)
                    for (int64_t kj = jlo; kj < jhi; ++kj) { /* padded taps contribute exactly 0: skipped */
                        const float *sp = S + ((y0 + ki * dh) * W + x0 + kj * dw) * Cp + c64;
                        const uint32_t *wp = wm + (ki * kw + kj) * Cp + c64;
                        if (nq == 4) {
                            for (int q = 0; q < 4; ++q)
                                for (int u = 0; u < BK_VN; ++u) {
                                    VI sv, wv;
                                    BK_LOADV(sv, sp + q * 16 + u * BK_VW);
                                    BK_LOADV(wv, wp + q * 16 + u * BK_VW);
                                    d[q][u] = d[q][u] + (VF)(sv ^ wv);
                                }
                        } else {
                            for (int q = 0; q < nq; ++q)
                                for (int u = 0; u < BK_VN; ++u) {
                                    VI sv, wv;
                                    BK_LOADV(sv, sp + q * 16 + u * BK_VW);
                                    BK_LOADV(wv, wp + q * 16 + u * BK_VW);
                                    d[q][u] = d[q][u] + (VF)(sv ^ wv);
                                }
                        }
                    }
                for (int q = 0; q < nq; ++q)
                    BK_FN(bk_dw_chunk16)(op, d[q], c64 + q * 16, C16, y, 0, NULL, slots, out, off);
            }
            if (bits_out || C16 != C) BK_FN(bk_dw_tail)(op, y, C16, p, slots, out, off);
        }
    }
}

/* ---- bit-serial multi-plane binary ops ------------------------------------------------------
 * Q input planes (greedy residual signs in double: r_1 = x, b_q = sign(r_q) with sign(0) = +1,
 * r_{q+1} = r_q - a_q b_q) against P weight planes:
 *     dot_o = sum_q sum_p a_q * (t_{p,o} * dot_pm1(b_q, W_p)[o])    (double, q outer, p inner)
 *     y_o   = (float)(multiplier_o * dot_o + offset_o)             (double)
 * then the post-ops in float.  The integer dots are the one-plane ones (exact zero padding per
 * plane); the double arithmetic is scalar per output and the same in every variant (no FMA). */

BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_mbconv)(const bk_op *op, float *const *slots, uint8_t *scr) {
    const float *x = slots[op->in];
    float *out = slots[op->out];
    const int64_t C = op->C, H = op->H, W = op->W, N = C * H * W, O = op->O;
    const int64_t P = op->Ho * op->Wo, ldc = op->nb * 8;
    uint64_t *grid = (uint64_t *)(void *)scr;
    uint8_t *q = scr + BK_ALIGN(bk_bconv_grid_words(op) * 8);
    uint64_t *col = (uint64_t *)(void *)q;
    q += BK_ALIGN(bk_bconv_col_words(op) * 8);
    int32_t *cnt = (int32_t *)(void *)q;
    q += BK_ALIGN((size_t)(P * ldc) * 4);
    float *y = (float *)(void *)q;
    uint64_t *tmp = (uint64_t *)(void *)((uint8_t *)y + BK_ALIGN((size_t)(op->nb * 8) * 4));
    uint8_t *e = scr + bk_bconv_scratch_bytes(op);
    double *R = (double *)(void *)e;
    e += BK_ALIGN((size_t)N * 8);
    float *S = (float *)(void *)e;
    e += BK_ALIGN((size_t)N * 4);
    double *acc = (double *)(void *)e;
    for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
            const float *s = x + i * op->in_sh + j * op->in_sw;
            double *r = R + (i * W + j) * C;
            for (int64_t c = 0; c < C; ++c) r[c] = (double)s[c * op->in_sc];
        }
    for (int64_t i = 0; i < P * O; ++i) acc[i] = 0.0;
    bk_op sub = *op; /* the sign plane S: channels-last, contiguous */
    sub.in_sc = 1;
    sub.in_sw = C;
    sub.in_sh = W * C;
    sub.prepacked = 0;
    for (int32_t iq = 0; iq < op->iplanes; ++iq) {
        const double a = op->iscale[iq];
        for (int64_t n = 0; n < N; ++n) S[n] = R[n] < 0.0 ? -1.0f : 1.0f;
        if (iq + 1 < op->iplanes)
            for (int64_t n = 0; n < N; ++n) R[n] = R[n] - a * (R[n] < 0.0 ? -1.0 : 1.0);
        size_t lda;
        const uint64_t *A = BK_FN(bk_bconv_rows)(&sub, S, grid, col, tmp, &lda);
        for (int32_t ip = 0; ip < op->wplanes; ++ip) {
            BK_GEMM(A, lda, (size_t)P, op->wb + ip * op->wb_plane, lda, (size_t)op->nb, cnt, (size_t)ldc);
            const int32_t *bp = op->base + ip * op->base_plane;
            const double *t = op->wscale + ip * O;
            for (int64_t p = 0; p < P; ++p) {
                const int32_t *restrict b = bp + (op->pat ? (int64_t)op->pat[p] * ldc : 0);
                const int32_t *restrict c = cnt + p * ldc;
                double *restrict ac = acc + p * O;
                for (int64_t o = 0; o < O; ++o) ac[o] = ac[o] + a * (t[o] * (double)(b[o] - 2 * c[o]));
            }
        }
    }
    for (int64_t oy = 0; oy < op->Ho; ++oy)
        for (int64_t ox = 0; ox < op->Wo; ++ox) {
            const int64_t p = oy * op->Wo + ox;
            const int64_t off = oy * op->out_sh + ox * op->out_sw;
            const double *ac = acc + p * O;
            for (int64_t o = 0; o < O; ++o) y[o] = (float)((double)op->mult[o] * ac[o] + (double)op->offs[o]);
            BK_FN(bk_post_apply)(op, y, O, 0, 1, slots, off, op->out_so);
            BK_FN(bk_store)(out + off, y, O, op->out_so);
        }
}

BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_mbdw)(const bk_op *op, float *const *slots, uint8_t *scr) {
    const float *x = slots[op->in];
    float *out = slots[op->out];
    const int64_t C = op->C, T = op->W, Cp = op->opad, Wo = op->Wo;
    double *R = (double *)(void *)scr;
    uint8_t *e = scr + BK_ALIGN((size_t)(T * C) * 8);
    uint32_t *S = (uint32_t *)(void *)e; /* sign-bit masks of the plane (0x80000000 = -1) */
    e += BK_ALIGN((size_t)(T * Cp) * 4);
    double *acc = (double *)(void *)e;
    e += BK_ALIGN((size_t)(Wo * C) * 8);
    int32_t *D = (int32_t *)(void *)e;
    e += BK_ALIGN((size_t)Cp * 4);
    float *y = (float *)(void *)e;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) R[t * C + c] = (double)x[t * op->in_sw + c * op->in_sc];
    for (int64_t i = 0; i < Wo * C; ++i) acc[i] = 0.0;
    for (int32_t iq = 0; iq < op->iplanes; ++iq) {
        const double a = op->iscale[iq];
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < C; ++c) {
                const double r = R[t * C + c];
                S[t * Cp + c] = r < 0.0 ? 0x80000000u : 0u;
                if (iq + 1 < op->iplanes) R[t * C + c] = r - a * (r < 0.0 ? -1.0 : 1.0);
            }
        for (int32_t ip = 0; ip < op->wplanes; ++ip) {
            const uint32_t *wm = op->wm + ip * op->kw * Cp;
            const double *ts = op->wscale + ip * C;
            for (int64_t t = 0; t < Wo; ++t) {
                for (int64_t c = 0; c < C; ++c) D[c] = 0;
                for (int64_t j = 0; j < op->kw; ++j) {
                    const int64_t ti = t * op->sw + j * op->dw - op->pl;
                    if (ti < 0 || ti >= T) continue; /* padded taps contribute exactly 0 */
                    const uint32_t *restrict sp = S + ti * Cp, *restrict wp = wm + j * Cp;
                    for (int64_t c = 0; c < C; ++c) D[c] += 1 - 2 * (int32_t)((sp[c] ^ wp[c]) >> 31);
                }
                double *restrict ac = acc + t * C;
                for (int64_t c = 0; c < C; ++c) ac[c] = ac[c] + a * (ts[c] * (double)D[c]);
            }
        }
    }
    for (int64_t t = 0; t < Wo; ++t) {
        const int64_t off = t * op->out_sw;
        const double *ac = acc + t * C;
        for (int64_t c = 0; c < C; ++c) y[c] = (float)((double)op->mult[c] * ac[c] + (double)op->offs[c]);
        BK_FN(bk_post_apply)(op, y, C, 0, 1, slots, off, op->out_so);
        BK_FN(bk_store)(out + off, y, C, op->out_so);
    }
}

/* ---- element-wise chain --------------------------------------------------------------------- */

BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_epi)(const bk_op *op, float *const *slots) {
    const float *x = slots[op->in];
    float *out = slots[op->out];
    float y[256];
    const int64_t C = op->chans, inner = op->inner;
    for (int64_t o = 0; o < op->outer; ++o) {
        if (inner == 1) {
            const int64_t base = o * C;
            for (int64_t c0 = 0; c0 < C; c0 += 256) {
                const int64_t n = (C - c0) < 256 ? (C - c0) : 256;
                memcpy(y, x + base + c0, (size_t)n * 4);
                BK_FN(bk_post_apply)(op, y, n, c0, 1, slots, base + c0, 1);
                memcpy(out + base + c0, y, (size_t)n * 4);
            }
        } else {
            for (int64_t c = 0; c < C; ++c) {
                const int64_t base = (o * C + c) * inner;
                for (int64_t i0 = 0; i0 < inner; i0 += 256) {
                    const int64_t n = (inner - i0) < 256 ? (inner - i0) : 256;
                    memcpy(y, x + base + i0, (size_t)n * 4);
                    BK_FN(bk_post_apply)(op, y, n, c, 0, slots, base + i0, 1);
                    memcpy(out + base + i0, y, (size_t)n * 4);
                }
            }
        }
    }
}

BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_gather)(const bk_op *op, float *const *slots) {
    const float *restrict x = slots[op->in];
    float *restrict out = slots[op->out];
    const int32_t *restrict idx = op->idx;
    for (int64_t i = 0; i < op->n; ++i) out[i] = x[idx[i]];
}

/* Index-mapped average (avgpool2d, mean): out[i] = (float)(acc_i / div_i), acc_i the double sum,
 * in increasing j from 0.0, of in[idx_i(j)] over the j with idx_i(j) >= 0 (the planner's order:
 * kernel taps row-major for avgpool2d, the reduced axes row-major for mean). The map is stored in
 * blocks of 16 outputs, idx[((i / 16) * taps + j) * 16 + i % 16] (outputs past n: -1), so 16
 * independent sums advance together (each still in its own order). Scalar double code: the same
 * bits in every variant. */
BK_ATTR static __attribute__((noinline)) void BK_FN(bk_op_pool)(const bk_op *op, float *const *slots) {
    const float *restrict x = slots[op->in];
    float *restrict out = slots[op->out];
    const int32_t *restrict idx = op->idx;
    const float *restrict div = op->mult;
    const int64_t K = op->taps, n = op->n;
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int32_t *restrict r = idx + i0 * K;
        double acc[16];
        for (int b = 0; b < 16; ++b) acc[b] = 0.0;
        for (int64_t j = 0; j < K; ++j, r += 16)
            for (int b = 0; b < 16; ++b)
                if (r[b] >= 0) acc[b] = acc[b] + (double)x[r[b]];
        const int64_t nb = n - i0 < 16 ? n - i0 : 16;
        for (int64_t b = 0; b < nb; ++b) out[i0 + b] = (float)(acc[b] / (double)div[i0 + b]);
    }
}

/* 1 if any of the n floats is NaN or inf (exponent all ones); vectorised at the variant's width. */
BK_ATTR static int BK_FN(bk_any_nonfinite)(const float *x, int64_t n) {
    const uint32_t *u = (const uint32_t *)(const void *)x;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad |= (uint32_t)((u[i] & 0x7f800000u) == 0x7f800000u);
    return bad != 0;
}

/* ---- the plan ----------------------------------------------------------------------------- */

BK_ATTR static void BK_FN(bk_run_ops)(const bk_plan *plan, float *const *slots, uint8_t *scratch,
                                       double *prof) {
    for (int64_t i = 0; i < plan->nops; ++i) {
        const bk_op *op = &plan->ops[i];
        const double t0 = prof ? bk_now() : 0.0;
        switch (op->kind) {
        case BK_OP_CONV_FP: BK_FN(bk_op_conv_fp)(op, slots, scratch); break;
        case BK_OP_BCONV: BK_FN(bk_op_bconv)(op, slots, scratch); break;
        case BK_OP_BDW: BK_FN(bk_op_bdw)(op, slots, scratch); break;
        case BK_OP_MBCONV: BK_FN(bk_op_mbconv)(op, slots, scratch); break;
        case BK_OP_MBDW: BK_FN(bk_op_mbdw)(op, slots, scratch); break;
        case BK_OP_EPI: BK_FN(bk_op_epi)(op, slots); break;
        case BK_OP_GATHER: BK_FN(bk_op_gather)(op, slots); break;
        case BK_OP_BDW2: BK_FN(bk_op_bdw2)(op, slots, scratch); break;
        case BK_OP_POOL: BK_FN(bk_op_pool)(op, slots); break;
        default: break;
        }
        if (prof) prof[i] += bk_now() - t0;
    }
}

#undef VF
#undef VI
#undef BK_VW
#undef BK_VN
#undef BK_NPOS
#undef BK_VBYTES
#undef BK_FN
#undef BK_CAT
#undef BK_CAT2
#undef BK_V
#undef BK_ATTR
#undef BK_GEMM
#undef BK_PACK
#undef BK_GTMASK16
#undef BK_GATHERGT16
