"""Registers the compiled engine as backend ``"neon"`` through the ``binkit_backends`` hook.

Torch-free, like every backend hook: the engine is imported inside the hook body, so listing
plugins costs nothing and a missing compiled extension fails only when the backend is used.
"""

from binkit import hookimpl


@hookimpl
def binkit_backends():
    """``neon``: the compiled bit-serial engine (NEON / AVX-512 / AVX2 / POPCNT / scalar kernels)."""
    from binkit.entries import BackendEntry
    from binkit_neon.engine import NeonBackend

    return [BackendEntry(
        name="neon", factory=NeonBackend,
        description="compiled engine: XOR-popcount kernels (NEON on aarch64; AVX-512 VPOPCNTDQ, AVX2, "
                    "POPCNT or portable scalar on x86, chosen at run time), whole plan in C per batch",
        reference="binkit_neon.engine (backends/binkit_neon); BiFSMN (Qin et al., IJCAI 2022) section 3.3",
    )]
