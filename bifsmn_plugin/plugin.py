"""Hook implementations of the BiFSMN plugin.

Modules that import torch are imported inside the hook bodies, so importing this module (and
listing plugins) stays torch-free.
"""

from __future__ import annotations

from binkit import hookimpl


@hookimpl
def binkit_quantizers():
    """``bifsmn`` (deployable, per output channel) and ``bifsmn_code`` (the official code's rule)."""
    from bifsmn_plugin import binarizer

    return [binarizer.DEPLOYABLE_ENTRY, binarizer.ENTRY]


@hookimpl
def binkit_architectures():
    """``bifsmn`` (thinnable student), ``bifsmn_teacher`` (FP teacher), ``dfsmn`` (FP baseline)."""
    from bifsmn_plugin import dfsmn

    return list(dfsmn.ENTRIES)


@hookimpl
def binkit_distillers():
    """``hed``: High-frequency Enhancement Distillation on the DFSMN block taps."""
    from bifsmn_plugin import hed

    return [hed.ENTRY]


@hookimpl
def binkit_lowerings():
    """Export lowering of the thinnable DFSMN (one plan per view)."""
    from bifsmn_plugin import export

    return [export.ENTRY]
