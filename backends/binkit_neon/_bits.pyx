# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin Cython over ``include/binkit_bits.h``: row packing and +-1 dot products.

Python decides, C computes: ``binkit_neon.pack_signs`` / ``binkit_neon.dot_pm1`` validate dtype,
contiguity, shapes and values and build every error message; the functions here take typed
C-contiguous memoryviews, run their whole loop inside one ``with nogil:`` block over the header's
static inline functions, and return nothing (results go to ``out``). They keep one guard of their
own, a shape check with a fixed message before the loop, because a wrong ``out`` shape here
would write out of bounds rather than fail.

The bit conventions (bit 1 = -1, LSB-first, zero padding, dot = K - 2*popcount(a XOR w)) live in
the header, next to the code that relies on them.
"""

from libc.stdint cimport int64_t, uint64_t


cdef extern from "binkit_bits.h" nogil:
    ctypedef uint64_t binkit_word_t
    enum:
        BINKIT_BITS_PER_WORD
    size_t binkit_num_words(size_t num_channels)
    void binkit_pack_row(const float *x, size_t num_channels, binkit_word_t *out)
    int64_t binkit_dot_pm1(const binkit_word_t *a, const binkit_word_t *w, size_t num_channels)


#: Bits per packed word, read from the header (``BINKIT_BITS_PER_WORD``).
BITS_PER_WORD = BINKIT_BITS_PER_WORD


def num_words(Py_ssize_t num_channels):
    """Private shim over ``binkit_num_words``: words holding ``num_channels`` bits (>= 0)."""
    if num_channels < 0:
        raise ValueError("num_channels must be >= 0")
    return binkit_num_words(<size_t>num_channels)


def pack_rows(const float[:, ::1] x, uint64_t[:, ::1] out):
    """Pack each row of ``x`` into ``out``: ``(rows, channels)`` float32 -> ``(rows, num_words)``.

    ``out`` is fully overwritten, padding bits included (they become 0).
    """
    cdef Py_ssize_t rows = x.shape[0]
    cdef size_t num_channels = <size_t>x.shape[1]
    cdef size_t words = binkit_num_words(num_channels)
    cdef Py_ssize_t i
    if out.shape[0] != rows or <size_t>out.shape[1] != words:
        raise ValueError("pack_rows: out must have shape (x.shape[0], num_words(x.shape[1]))")
    if rows == 0 or words == 0:
        return
    # Rows are contiguous: row i starts num_channels floats / words words after row 0.
    cdef const float *x_data = &x[0, 0]
    cdef binkit_word_t *out_data = &out[0, 0]
    with nogil:
        for i in range(rows):
            binkit_pack_row(x_data + <size_t>i * num_channels, num_channels,
                            out_data + <size_t>i * words)


def dot_rows(const uint64_t[:, ::1] a, const uint64_t[:, ::1] w, Py_ssize_t num_channels,
             int64_t[:, ::1] out):
    """All pairs of +-1 dot products: ``out[i, j] = a_i . w_j`` over ``num_channels`` channels.

    ``a``: ``(rows_a, num_words)``, ``w``: ``(rows_w, num_words)``, ``out``: ``(rows_a, rows_w)``
    int64, fully overwritten. Padding bits of ``a`` and ``w`` must be 0 (the caller checks).
    """
    cdef Py_ssize_t rows_a = a.shape[0]
    cdef Py_ssize_t rows_w = w.shape[0]
    cdef size_t words
    cdef Py_ssize_t i, j
    if num_channels < 0:
        raise ValueError("dot_rows: num_channels must be >= 0")
    words = binkit_num_words(<size_t>num_channels)
    if (<size_t>a.shape[1] != words or <size_t>w.shape[1] != words
            or out.shape[0] != rows_a or out.shape[1] != rows_w):
        raise ValueError("dot_rows: a, w must have num_words(num_channels) columns and out "
                         "shape (a.shape[0], w.shape[0])")
    if rows_a == 0 or rows_w == 0:
        return
    if words == 0:
        # No channels: every dot product is over nothing, i.e. 0 (no row pointer to take).
        out[:, :] = 0
        return
    cdef const binkit_word_t *a_data = &a[0, 0]
    cdef const binkit_word_t *w_data = &w[0, 0]
    cdef int64_t *out_data = &out[0, 0]
    with nogil:
        for i in range(rows_a):
            for j in range(rows_w):
                out_data[i * rows_w + j] = binkit_dot_pm1(
                    a_data + <size_t>i * words, w_data + <size_t>j * words, <size_t>num_channels)
