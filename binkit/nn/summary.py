"""Model summary: parameters by bit width, memory, and MACs split into binary and float.

Modelled on ``larq.models.summary`` with what its users asked for (binarizers.md §6): MACs for
every layer type binkit knows (never "?" when an input shape is known), nested models counted,
and machine-readable output (``to_dict``, ``to_markdown``).

Counting rules:

* A binary layer's weight counts at its weight quantizer's precision; every other parameter
  (biases, BatchNorm, PReLU, full-precision layers) at 32 bits. Memory is ``bits / 8`` bytes.
* MACs are per example: ``Linear``: ``positions * in * out``; ``ConvNd``:
  ``output elements * in/groups * prod(kernel)``. A layer **runs binary** when both its weights
  and inputs are quantized (XNOR-popcount, bit-serial if multi-bit); its MACs count as binary,
  all other MACs as float. Element-wise layers (BN, activations) are not counted.
* The compression ratio is FP32 bytes of all parameters over their quantized bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from binkit.nn._modes import eval_mode
from binkit.nn.layers import BinaryLayerMixin

__all__ = ["summary", "ModelSummary", "LayerSummary"]


@dataclass
class LayerSummary:
    name: str
    type: str
    params_by_bits: dict[int, int]
    output_shape: tuple[int, ...] | None
    macs: int | None
    runs_binary: bool
    weight_bits: int
    input_bits: int
    method: str = ""

    @property
    def params(self) -> int:
        return sum(self.params_by_bits.values())

    @property
    def memory_bytes(self) -> float:
        return sum(bits * n for bits, n in self.params_by_bits.items()) / 8

    @property
    def binary_macs(self) -> int:
        return (self.macs or 0) if self.runs_binary else 0

    @property
    def float_macs(self) -> int:
        return 0 if self.runs_binary else (self.macs or 0)


@dataclass
class ModelSummary:
    """Per-layer rows plus totals. ``str()`` gives the table; see also ``to_markdown``."""

    layers: list[LayerSummary]
    input_shape: tuple[int, ...] | None
    other_params: int = 0  # parameters owned by non-leaf modules
    macs_known: bool = field(default=True)

    @property
    def params_by_bits(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for layer in self.layers:
            for bits, n in layer.params_by_bits.items():
                out[bits] = out.get(bits, 0) + n
        if self.other_params:
            out[32] = out.get(32, 0) + self.other_params
        return dict(sorted(out.items()))

    @property
    def total_params(self) -> int:
        return sum(self.params_by_bits.values())

    @property
    def memory_bytes(self) -> float:
        return sum(bits * n for bits, n in self.params_by_bits.items()) / 8

    @property
    def fp32_memory_bytes(self) -> int:
        return 4 * self.total_params

    @property
    def compression_ratio(self) -> float:
        return self.fp32_memory_bytes / self.memory_bytes if self.memory_bytes else 1.0

    @property
    def binary_macs(self) -> int:
        return sum(layer.binary_macs for layer in self.layers)

    @property
    def float_macs(self) -> int:
        return sum(layer.float_macs for layer in self.layers)

    @property
    def binary_layers(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.runs_binary]

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for layer in self.layers:
            d = asdict(layer)
            d["params_by_bits"] = {str(k): v for k, v in layer.params_by_bits.items()}
            d.update(params=layer.params, memory_bytes=layer.memory_bytes,
                     binary_macs=layer.binary_macs, float_macs=layer.float_macs)
            layers.append(d)
        return {
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "layers": layers,
            "totals": {
                "params": self.total_params,
                "params_by_bits": {str(k): v for k, v in self.params_by_bits.items()},
                "memory_bytes": self.memory_bytes,
                "fp32_memory_bytes": self.fp32_memory_bytes,
                "compression_ratio": self.compression_ratio,
                "binary_macs": self.binary_macs if self.macs_known else None,
                "float_macs": self.float_macs if self.macs_known else None,
            },
        }

    def _rows(self) -> tuple[list[str], list[list[str]], list[str]]:
        head = ["layer", "type", "w/a bits", "params 1-bit", "params 32-bit", "memory KiB",
                "output", "MACs binary", "MACs float", "runs binary"]
        rows = []
        for layer in self.layers:
            low = sum(n for b, n in layer.params_by_bits.items() if b < 32)
            rows.append([
                layer.name, layer.type,
                f"{layer.weight_bits}/{layer.input_bits}" if layer.weight_bits < 32 or layer.input_bits < 32 else "-",
                f"{low:,}", f"{layer.params_by_bits.get(32, 0):,}", f"{layer.memory_bytes / 1024:.2f}",
                "x".join(map(str, layer.output_shape)) if layer.output_shape else "?",
                f"{layer.binary_macs:,}" if layer.macs is not None else "?",
                f"{layer.float_macs:,}" if layer.macs is not None else "?",
                "yes" if layer.runs_binary else "no",
            ])
        low_total = sum(n for b, n in self.params_by_bits.items() if b < 32)
        total = ["total", "", "", f"{low_total:,}", f"{self.params_by_bits.get(32, 0):,}",
                 f"{self.memory_bytes / 1024:.2f}", "",
                 f"{self.binary_macs:,}" if self.macs_known else "?",
                 f"{self.float_macs:,}" if self.macs_known else "?",
                 f"{len(self.binary_layers)}/{len(self.layers)}"]
        return head, rows, total

    def _footer(self) -> list[str]:
        return [
            f"Total params: {self.total_params:,}   Memory: {self.memory_bytes / 1024:.2f} KiB "
            f"(FP32: {self.fp32_memory_bytes / 1024:.2f} KiB)   Compression: {self.compression_ratio:.2f}x",
        ]

    def __str__(self) -> str:
        head, rows, total = self._rows()
        table = [head] + rows + [total]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]

        def fmt(r: list[str]) -> str:
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

        rule = "-" * len(fmt(head))
        return "\n".join([fmt(head), rule, *map(fmt, rows), rule, fmt(total), *self._footer()])

    def to_markdown(self) -> str:
        head, rows, total = self._rows()
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows + [total]]
        return "\n".join(lines + ["", *self._footer()]) + "\n"


def _layer_bits(module: nn.Module) -> tuple[int, int, bool, str]:
    if isinstance(module, BinaryLayerMixin):
        return module.weight_bits, module.input_bits, (
            module.weight_quantizer is not None and module.input_quantizer is not None
        ), module.method
    return 32, 32, False, ""


def _macs(module: nn.Module, out: torch.Tensor, batch: int) -> int | None:
    if isinstance(module, nn.Linear):
        return out.numel() // batch * module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        k = 1
        for s in module.kernel_size:
            k *= s
        return out.numel() // batch * (module.in_channels // module.groups) * k
    return 0  # element-wise layers (BN, activations, pooling) are not counted


def summary(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_input: torch.Tensor | None = None,
    forward_kwargs: dict[str, Any] | None = None,
    print_fn: Callable[[str], Any] | None = print,
) -> ModelSummary:
    """Print and return a per-layer summary of ``model``.

    Args:
        model: any torch model; binary layers are recognised by type.
        input_shape: per-example input shape without batch (e.g. ``(1, 32, 32)``); defaults to
            ``model.feature_shape`` when the model has it (binkit architectures do). Without a
            shape, MACs and output shapes are reported as unknown.
        example_input: a batch to run instead of zeros of ``input_shape``.
        forward_kwargs: extra keyword arguments for ``model(...)`` (e.g. ``view="4"``).
        print_fn: called with the table; ``None`` prints nothing.
    """
    if input_shape is None and example_input is None:
        shape = getattr(model, "feature_shape", None)
        input_shape = tuple(shape) if shape is not None else None
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) or isinstance(m, BinaryLayerMixin)]
    # quantizer submodules belong to their layer's row
    quantizer_ids = {id(q) for _, m in leaves if isinstance(m, BinaryLayerMixin)
                     for q in m.modules() if q is not m}
    leaves = [(n, m) for n, m in leaves if id(m) not in quantizer_ids]

    outputs: dict[int, torch.Tensor] = {}  # first output per module (for its shape)
    macs_sum: dict[int, int] = {}  # MACs summed over every call (reused modules count per call)
    if example_input is not None or input_shape is not None:
        x = example_input
        if x is None:
            try:
                p = next(model.parameters())
                device, dtype = p.device, p.dtype
            except StopIteration:
                device, dtype = torch.device("cpu"), torch.float32
            x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
        x.shape[0]
        hooks = []
        for _, m in leaves:
            def hook(mod, _inp, out, key=id(m)):
                if isinstance(out, torch.Tensor):
                    outputs.setdefault(key, out.detach())
                    macs_sum[key] = macs_sum.get(key, 0) + _macs(mod, out, out.shape[0])
            hooks.append(m.register_forward_hook(hook))
        try:
            with torch.no_grad(), eval_mode(model):
                model(x, **(forward_kwargs or {}))
        finally:
            for h in hooks:
                h.remove()
        input_shape = tuple(x.shape[1:])

    macs_known = example_input is not None or input_shape is not None
    rows = []
    counted: set[int] = set()
    for name, module in leaves:
        wbits, ibits, binary, method = _layer_bits(module)
        by_bits: dict[int, int] = {}
        for pname, p in module.named_parameters(recurse=True):
            if id(p) in counted:
                continue  # shared parameters count once
            counted.add(id(p))
            bits = wbits if (pname == "weight" and isinstance(module, BinaryLayerMixin)
                             and module.weight_quantizer is not None) else 32
            by_bits[bits] = by_bits.get(bits, 0) + p.numel()
        out = outputs.get(id(module))
        macs = macs_sum.get(id(module)) if out is not None else None
        if not by_bits and macs is None:
            continue
        rows.append(LayerSummary(
            name=name or type(module).__name__, type=type(module).__name__,
            params_by_bits=by_bits, output_shape=tuple(out.shape[1:]) if out is not None else None,
            macs=macs, runs_binary=binary, weight_bits=wbits, input_bits=ibits, method=method,
        ))
    other = sum(p.numel() for p in model.parameters() if id(p) not in counted)
    result = ModelSummary(rows, input_shape, other_params=other, macs_known=macs_known)
    if print_fn is not None:
        print_fn(str(result))
    return result
