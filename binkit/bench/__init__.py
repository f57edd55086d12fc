"""Benchmarks of exported models: ``binkit bench`` and the per-op table of ``binkit summary MODEL.bkm``.

* :mod:`binkit.bench.plan`: what a plan computes op by op (MACs, binary or not, FP32 size);
  torch-free.
* :mod:`binkit.bench.float_model`: the same architecture in full precision, built from the plan,
  as a torch module and an ONNX file (the FP32 baselines); needs torch.
* :mod:`binkit.bench.runner`: the timing harness, the targets and the reports; torch only for
  the baselines, so ``binkit bench --no-torch`` runs on a device without it.
"""

from binkit.bench.plan import BINARY_OPS, OpRow, fp32_parameter_count, op_macs, plan_rows, storage, view_macs
from binkit.bench.runner import (
    BenchOptions,
    render_markdown,
    render_summary,
    render_text,
    run_bench,
    summarize_artifact,
)

__all__ = [
    "BINARY_OPS",
    "BenchOptions",
    "OpRow",
    "fp32_parameter_count",
    "op_macs",
    "plan_rows",
    "render_markdown",
    "render_summary",
    "render_text",
    "run_bench",
    "storage",
    "summarize_artifact",
    "view_macs",
]
