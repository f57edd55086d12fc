"""binkit's built-in binarizers: one method per module, registered through the ``binkit`` hook.

Modules, each a pure function (forward plus surrogate gradient) and two thin quantizer classes:

* :mod:`.bnn` -- BNN / BinaryNet: ``sign`` with the clipped straight-through estimator.
* :mod:`.xnor` -- XNOR-Net: per-output-channel ``mean |W_o|`` weight scale.
* :mod:`.dorefa` -- DoReFa-Net: k-bit weights and ``{0, 1}``-based k-bit activations.
* :mod:`.bireal` -- Bi-Real Net: ApproxSign activations, magnitude-aware weights.
* :mod:`.irnet` -- IR-Net: Libra-PB weights and the EDE gradient schedule.
* :mod:`.reactnet` -- ReActNet: RSign (learnable thresholds), RPReLU, Bi-Real weights.
* :mod:`.residual` -- residual bit-planes (Network Sketching weights, ReBNet inputs): 1 to 4
  scaled sign planes each for weights and activations, exported as bit-serial binary ops.

Every binary output follows binkit's convention sign(0) = +1. Importing this package is cheap:
torch is imported only when :func:`binkit_binarizers.plugin.binkit_quantizers` runs.
"""
