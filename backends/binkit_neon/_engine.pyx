# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin Cython over ``include/binkit_engine.h``: plan storage, the nogil batch run, kernels.

Private: :mod:`binkit_neon.engine` builds plans (Python decides layouts, buffers, weight
layouts) and validates every input before calling here; this module only copies op
descriptions into C structs and runs them with the GIL released. Run-time errors come back
as return codes that the Python side turns into messages.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_Release,
                            PyObject_GetBuffer)
from libc.stdlib cimport calloc, free

from numpy import empty as _np_empty, float32 as _np_float32


cdef extern from "binkit_engine.h" nogil:
    enum:
        BK_NUM_VARIANTS
        BK_MAX_POST
        BK_NEON_SIMDE
    ctypedef struct bk_post:
        int32_t kind
        int32_t per_channel
        int32_t slot
        const float *a
        const float *b
    ctypedef struct bk_op:
        int32_t kind
        int32_t in_ "in"
        int32_t out
        int64_t C, H, W, in_sc, in_sh, in_sw
        int64_t O, Ho, Wo, out_so, out_sh, out_sw
        int64_t kh, kw, sh, sw, dh, dw, pt, pb, pl, pr
        int64_t groups
        int32_t input_sign, staged, direct, prepacked, bits_out
        int64_t owords
        int32_t rowmode
        int32_t ivec
        int64_t rwords
        int64_t words, kwords, nb, opad
        const uint64_t *wb
        const int32_t *base
        const int32_t *pat
        const float *mult
        const float *offs
        const int32_t *thr
        const int32_t *cthr
        const int32_t *gsrc
        const int32_t *gthr
        const uint64_t *ginv
        int64_t grows
        const int32_t *tpos
        const int32_t *tthr
        const float *wf
        const float *bias
        const float *fthr
        const int32_t *flt
        const float *ishift
        const uint32_t *wm
        int64_t outer, chans, inner
        const int32_t *idx
        int64_t n
        int64_t taps
        int32_t wplanes, iplanes
        int64_t wb_plane, base_plane
        const double *iscale
        const double *wscale
        int32_t npost
        bk_post post[8]
    ctypedef struct bk_plan:
        const bk_op *ops
        int64_t nops
        int64_t nslots
        const int64_t *slot_floats
        int64_t in_floats, out_floats, out_slot, scratch_bytes
        void *cache
    const char *bk_variant_names[]
    int bk_variant_compiled(int v)
    int bk_variant_supported(int v)
    int bk_best_variant()
    size_t bk_op_scratch_bytes(const bk_op *op)
    void bk_plan_release(bk_plan *plan)
    int bk_run(bk_plan *plan, int variant, const float *x, int64_t batch, float *y, double *prof)
    double bk_popcount_peak(int variant, double seconds)
    double bk_clock_overhead(int n)
    void bk_multiplane(int variant, const uint64_t *a, int64_t pa, const double *sa,
                       const uint64_t *wb, int64_t pw, const double *tw, int64_t M,
                       int64_t O, int64_t K, int32_t *cnt, double *out)
    ctypedef void (*bk_gemm_fn)(const uint64_t *A, size_t lda, size_t M, const uint64_t *Wb,
                                size_t K, size_t NB, int32_t *Cnt, size_t ldc)
    bk_gemm_fn bk_gemm_for(int v)
    void bk_pack_scalar(const float *x, size_t n, uint64_t *out)


NUM_VARIANTS = BK_NUM_VARIANTS
MAX_POST = BK_MAX_POST
#: True when the NEON variant is compiled through SIMDe (x86 test builds).
NEON_SIMDE = bool(BK_NEON_SIMDE)
VARIANT_NAMES = tuple(bk_variant_names[i].decode() for i in range(BK_NUM_VARIANTS))


def variant_compiled(int v):
    return bool(bk_variant_compiled(v))


def variant_supported(int v):
    return bool(bk_variant_supported(v))


def best_variant():
    return bk_best_variant()


def clock_overhead(int n=2001):
    """Seconds the profiler's clock reads add to each timed op (median of n empty intervals)."""
    cdef double r
    with nogil:
        r = bk_clock_overhead(n)
    return r


def popcount_peak(int variant, double seconds):
    cdef double r
    with nogil:
        r = bk_popcount_peak(variant, seconds)
    return r


cdef const float *_fptr(object arr) except? NULL:
    if arr is None:
        return NULL
    cdef const float[::1] mv = arr
    return &mv[0]


cdef const double *_dptr(object arr) except? NULL:
    if arr is None:
        return NULL
    cdef const double[::1] mv = arr
    return &mv[0]


cdef const int32_t *_iptr(object arr) except? NULL:
    if arr is None:
        return NULL
    cdef const int32_t[::1] mv = arr
    return &mv[0]


_INT_FIELDS = ("C", "H", "W", "in_sc", "in_sh", "in_sw", "O", "Ho", "Wo", "out_so", "out_sh",
               "out_sw", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pb", "pl", "pr", "groups",
               "words", "kwords", "nb", "opad", "outer", "chans", "inner", "n", "owords", "rwords",
               "wb_plane", "base_plane", "grows", "taps")


cdef class Plan:
    """A plan in C structs. ``ops``: list of dicts (see engine.py); arrays stay referenced here."""

    cdef bk_plan plan
    cdef bk_op *ops
    cdef int64_t *slot_floats
    cdef list keep
    cdef public object scratch_bytes
    cdef int in_ndim                 # run1: the expected per-example shape (set_input_shape)
    cdef Py_ssize_t in_shape[16]

    def __cinit__(self):
        self.ops = NULL
        self.slot_floats = NULL
        self.plan.cache = NULL

    def __init__(self, list ops, list slot_floats, int64_t in_floats, int64_t out_floats, int64_t out_slot):
        cdef Py_ssize_t i, k
        cdef bk_op *op
        cdef const uint64_t[::1] wb
        cdef const uint32_t[::1] wm
        cdef size_t scratch = 0, s
        self.keep = []
        self.ops = <bk_op *>calloc(max(len(ops), 1), sizeof(bk_op))
        self.slot_floats = <int64_t *>calloc(max(len(slot_floats), 1), sizeof(int64_t))
        if self.ops == NULL or self.slot_floats == NULL:
            raise MemoryError()
        for i in range(len(slot_floats)):
            self.slot_floats[i] = slot_floats[i]
        for i, d in enumerate(ops):
            op = &self.ops[i]
            op.kind = d["kind"]
            op.in_ = d.get("in", 0)
            op.out = d.get("out", 0)
            for name in _INT_FIELDS:
                if name in d:
                    _set_int(op, name, d[name])
            op.input_sign = d.get("input_sign", 0)
            op.staged = d.get("staged", 0)
            op.direct = d.get("direct", 0)
            op.prepacked = d.get("prepacked", 0)
            op.bits_out = d.get("bits_out", 0)
            op.rowmode = d.get("rowmode", 0)
            op.ivec = d.get("ivec", 0)
            op.wplanes = d.get("wplanes", 1)
            op.iplanes = d.get("iplanes", 1)
            for key in ("wb", "base", "pat", "mult", "offs", "thr", "cthr", "gsrc", "gthr", "ginv", "tpos", "tthr", "wf", "bias", "fthr", "flt", "ishift", "wm", "idx",
                        "iscale", "wscale"):
                if d.get(key) is not None:
                    self.keep.append(d[key])
            if d.get("wb") is not None:
                wb = d["wb"]
                op.wb = &wb[0]
            if d.get("ginv") is not None:
                wb = d["ginv"]
                op.ginv = &wb[0]
            if d.get("wm") is not None:
                wm = d["wm"]
                op.wm = &wm[0]
            op.base = _iptr(d.get("base"))
            op.pat = _iptr(d.get("pat"))
            op.idx = _iptr(d.get("idx"))
            op.thr = _iptr(d.get("thr"))
            op.cthr = _iptr(d.get("cthr"))
            op.gsrc = _iptr(d.get("gsrc"))
            op.gthr = _iptr(d.get("gthr"))
            op.tpos = _iptr(d.get("tpos"))
            op.tthr = _iptr(d.get("tthr"))
            op.mult = _fptr(d.get("mult"))
            op.offs = _fptr(d.get("offs"))
            op.wf = _fptr(d.get("wf"))
            op.bias = _fptr(d.get("bias"))
            op.fthr = _fptr(d.get("fthr"))
            op.flt = _iptr(d.get("flt"))
            op.ishift = _fptr(d.get("ishift"))
            op.iscale = _dptr(d.get("iscale"))
            op.wscale = _dptr(d.get("wscale"))
            posts = d.get("post", [])
            if len(posts) > BK_MAX_POST:
                raise ValueError("too many fused post-ops")
            op.npost = len(posts)
            for k, p in enumerate(posts):
                op.post[k].kind = p["kind"]
                op.post[k].per_channel = p.get("per_channel", 0)
                op.post[k].slot = p.get("slot", 0)
                for key in ("a", "b"):
                    if p.get(key) is not None:
                        self.keep.append(p[key])
                op.post[k].a = _fptr(p.get("a"))
                op.post[k].b = _fptr(p.get("b"))
            s = bk_op_scratch_bytes(op)
            if s > scratch:
                scratch = s
        self.plan.ops = self.ops
        self.plan.nops = len(ops)
        self.plan.nslots = len(slot_floats)
        self.plan.slot_floats = self.slot_floats
        self.plan.in_floats = in_floats
        self.plan.out_floats = out_floats
        self.plan.out_slot = out_slot
        self.plan.scratch_bytes = scratch
        self.scratch_bytes = scratch

    def __dealloc__(self):
        bk_plan_release(&self.plan)
        free(self.ops)
        free(self.slot_floats)

    @property
    def nops(self):
        return self.plan.nops

    cdef int _call(self, object x, object y, int variant, double *prof) except -9:
        """bk_run over the C-contiguous float32 buffers x (batch, ...) and y (batch, ...)."""
        cdef Py_buffer bx, by
        cdef int rc = 0
        cdef int64_t batch
        PyObject_GetBuffer(x, &bx, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        try:
            PyObject_GetBuffer(y, &by, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
            try:
                if (bx.itemsize != 4 or by.itemsize != 4 or bx.format == NULL or by.format == NULL
                        or bx.format[0] != b"f" or by.format[0] != b"f" or bx.format[1] != 0
                        or by.format[1] != 0 or bx.ndim < 1 or by.ndim < 1):
                    raise ValueError("Plan.run: x and y must be float32 buffers")
                batch = bx.shape[0]
                if (by.shape[0] != batch or bx.len != batch * self.plan.in_floats * 4
                        or by.len != batch * self.plan.out_floats * 4):
                    raise ValueError("Plan.run: shape mismatch")
                if batch == 0:
                    return 0
                with nogil:
                    rc = bk_run(&self.plan, variant, <const float *>bx.buf, batch, <float *>by.buf, prof)
            finally:
                PyBuffer_Release(&by)
        finally:
            PyBuffer_Release(&bx)
        return rc

    def set_input_shape(self, tuple shape):
        """The per-example input shape that :meth:`run1` accepts."""
        if len(shape) > 15:
            raise ValueError("input shape has too many axes")
        self.in_ndim = len(shape)
        for i, v in enumerate(shape):
            self.in_shape[i] = v

    def run1(self, x, int variant):
        """The whole call for an input that fits exactly: a C-contiguous float32 buffer of shape
        (batch >= 1, *input_shape) -> a new (batch, out_floats) float32 ndarray; or bk_run's nonzero
        code (an int); or None when ``x`` does not fit (the caller validates and calls run)."""
        cdef Py_buffer bx, by
        cdef int rc = 0, i
        cdef Py_ssize_t batch, expect
        try:
            PyObject_GetBuffer(x, &bx, PyBUF_STRIDES | PyBUF_FORMAT)
        except (BufferError, TypeError, ValueError):
            return None
        try:
            if (bx.itemsize != 4 or bx.format == NULL or bx.format[0] != b"f" or bx.format[1] != 0
                    or bx.ndim != self.in_ndim + 1 or bx.shape[0] < 1):
                return None
            expect = 4
            for i in range(self.in_ndim, -1, -1):
                if i > 0 and bx.shape[i] != self.in_shape[i - 1]:
                    return None
                if bx.shape[i] != 1 and bx.strides[i] != expect:
                    return None
                expect *= bx.shape[i]
            batch = bx.shape[0]
            y = _np_empty((batch, self.plan.out_floats), _np_float32)
            PyObject_GetBuffer(y, &by, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
            with nogil:
                rc = bk_run(&self.plan, variant, <const float *>bx.buf, batch, <float *>by.buf, NULL)
            PyBuffer_Release(&by)
        finally:
            PyBuffer_Release(&bx)
        return y if rc == 0 else rc

    def run(self, x, y, int variant):
        """Run the plan on every example (row) of ``x`` into ``y``; returns bk_run's code.
        ``x``: C-contiguous float32, (batch, ...) of batch * in_floats values; ``y``: (batch, out)."""
        return self._call(x, y, variant, NULL)

    def profile(self, x, y, int variant, double[::1] prof):
        """As run, adding each op's seconds (summed over the batch) to ``prof``."""
        if prof.shape[0] != self.plan.nops:
            raise ValueError("Plan.profile: shape mismatch")
        return self._call(x, y, variant, &prof[0])


cdef void _set_int(bk_op *op, str name, int64_t v):
    if name == "C": op.C = v
    elif name == "H": op.H = v
    elif name == "W": op.W = v
    elif name == "in_sc": op.in_sc = v
    elif name == "in_sh": op.in_sh = v
    elif name == "in_sw": op.in_sw = v
    elif name == "O": op.O = v
    elif name == "Ho": op.Ho = v
    elif name == "Wo": op.Wo = v
    elif name == "out_so": op.out_so = v
    elif name == "out_sh": op.out_sh = v
    elif name == "out_sw": op.out_sw = v
    elif name == "kh": op.kh = v
    elif name == "kw": op.kw = v
    elif name == "sh": op.sh = v
    elif name == "sw": op.sw = v
    elif name == "dh": op.dh = v
    elif name == "dw": op.dw = v
    elif name == "pt": op.pt = v
    elif name == "pb": op.pb = v
    elif name == "pl": op.pl = v
    elif name == "pr": op.pr = v
    elif name == "groups": op.groups = v
    elif name == "words": op.words = v
    elif name == "kwords": op.kwords = v
    elif name == "nb": op.nb = v
    elif name == "opad": op.opad = v
    elif name == "outer": op.outer = v
    elif name == "chans": op.chans = v
    elif name == "inner": op.inner = v
    elif name == "n": op.n = v
    elif name == "owords": op.owords = v
    elif name == "rwords": op.rwords = v
    elif name == "wb_plane": op.wb_plane = v
    elif name == "base_plane": op.base_plane = v
    elif name == "grows": op.grows = v
    elif name == "taps": op.taps = v
    else:
        raise KeyError(name)


# --- kernel-level entry points (tests and the benchmark) ---------------------------------------


def gemm_counts(int variant, const uint64_t[:, ::1] a, const uint64_t[::1] wb, Py_ssize_t nb,
                int32_t[:, ::1] out):
    """``out[m, o] = sum_k popcount(a[m, k] ^ w[o, k])`` with ``w`` blocked as in the header."""
    cdef Py_ssize_t M = a.shape[0], K = a.shape[1]
    if wb.shape[0] != nb * K * 8 or out.shape[0] != M or out.shape[1] != nb * 8:
        raise ValueError("gemm_counts: shape mismatch")
    if not bk_variant_supported(variant):
        raise RuntimeError("gemm_counts: variant not supported")
    if M == 0 or K == 0 or nb == 0:
        return
    cdef bk_gemm_fn fn = bk_gemm_for(variant)
    with nogil:
        fn(&a[0, 0], K, M, &wb[0], K, nb, &out[0, 0], nb * 8)


def multiplane(int variant, const uint64_t[:, :, ::1] a, const double[::1] sa,
               const uint64_t[:, ::1] wb, const double[:, ::1] tw, Py_ssize_t num_channels,
               double[:, ::1] out):
    """Bit-serial dot products, see ``bk_multiplane`` (a: (pa, M, words), wb: (pw, nb*words*8),
    tw: (pw, O), out: (M, O))."""
    cdef Py_ssize_t pa = a.shape[0], M = a.shape[1], words = a.shape[2]
    cdef Py_ssize_t pw = wb.shape[0], O = out.shape[1], nb = (out.shape[1] + 7) // 8
    if (sa.shape[0] != pa or tw.shape[0] != pw or tw.shape[1] != O or out.shape[0] != M
            or wb.shape[1] != nb * words * 8 or words != (num_channels + 63) // 64):
        raise ValueError("multiplane: shape mismatch")
    if not bk_variant_supported(variant):
        raise RuntimeError("multiplane: variant not supported")
    if M == 0 or O == 0 or pa == 0 or pw == 0 or words == 0:
        out[:, :] = 0
        return
    cdef int32_t *cnt = <int32_t *>calloc(M * nb * 8, sizeof(int32_t))
    if cnt == NULL:
        raise MemoryError()
    with nogil:
        bk_multiplane(variant, &a[0, 0, 0], pa, &sa[0], &wb[0, 0], pw, &tw[0, 0], M, O,
                      num_channels, cnt, &out[0, 0])
    free(cnt)
