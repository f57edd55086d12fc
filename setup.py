"""Build script for binkit's compiled parts (Cython over C headers).

Metadata lives in pyproject.toml; this file only declares extension modules. Every ``.pyx``
under ``backends/`` becomes an extension. Flags are portable: no host-specific architecture flag (kernels
pick their instruction set at run time).
"""

from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).parent


def _extensions():
    from Cython.Build import cythonize

    exts = []
    for pyx in sorted((ROOT / "backends").rglob("*.pyx")):
        rel = pyx.relative_to(ROOT / "backends").with_suffix("")
        exts.append(
            Extension(
                ".".join(rel.parts),
                [str(pyx.relative_to(ROOT))],
                include_dirs=[str(pyx.parent.relative_to(ROOT)), str((pyx.parent / "include").relative_to(ROOT))],
                # rebuild when a kernel header changes (setuptools does not scan includes)
                depends=[str(h.relative_to(ROOT)) for h in sorted((pyx.parent / "include").glob("*.h"))],
                # -ffp-contract=off: no FMA contraction, so the float code gives the same bits
                # in every kernel variant (binkit_engine.h); -std=c11 already implies it on gcc.
                # The float convs' explicit fused multiply-adds fall back to libm's fmaf.
                extra_compile_args=["-O3", "-std=c11", "-ffp-contract=off"],
                libraries=["m"],
            )
        )
    if not exts:
        return []
    return cythonize(exts, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False})


setup(ext_modules=_extensions())
