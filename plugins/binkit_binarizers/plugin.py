"""Hook implementations of binkit's built-in binarizers.

Method modules import torch, so they are imported inside the hook body, not here: listing
plugins (or the torch-free runtime) must not pay for torch.
"""

from __future__ import annotations

from binkit import hookimpl


@hookimpl
def binkit_quantizers():
    """The seven built-in methods: bnn, xnor, dorefa, bireal, irnet, reactnet, residual."""
    from binkit_binarizers import bireal, bnn, dorefa, irnet, reactnet, residual, xnor

    return [bnn.ENTRY, xnor.ENTRY, dorefa.ENTRY, bireal.ENTRY, irnet.ENTRY, reactnet.ENTRY, residual.ENTRY]
