"""A hand-written artifact using the ops the KWS backbones add (torch-free, numpy only), shared by
the artifact, reference and engine tests (the engine tests also run without torch on aarch64).

``(1, 10, 9)`` -> conv2d_fp stem (C) -> bdwconv2d 3x3 stride (2, 1) dilation (1, 2) padding
((1, 1), (2, 1)) -> prelu -> bconv2d 1x1 -> silu -> avgpool2d 2x2 stride 1 padding 1 (count_include_pad
per argument) -> mean over frequency (keepdims) -> bdwconv2d (1, 3) with a sign threshold -> add
(broadcast over frequency) -> relu -> mean over (H, W) -> linear_fp.
"""

from __future__ import annotations

import numpy as np

from binkit.runtime.bits import pack_signs

IN_SHAPE = (1, 10, 9)


def kws_ops_parts(c: int = 70, seed: int = 0, count_include_pad: bool = False):
    """``(tensors, meta)`` for :func:`binkit.runtime.artifact.save_artifact`."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    tensors = {
        "stem.weight": rng.standard_normal((c, 1, 3, 3)).astype(f32),
        "stem.bias": rng.standard_normal(c).astype(f32) * 0.1,
        "dw.weight": pack_signs(rng.standard_normal((3, 3, c))),
        "dw.multiplier": rng.uniform(0.05, 0.3, c).astype(f32),
        "dw.offset": rng.standard_normal(c).astype(f32) * 0.3,
        "act.slope": rng.uniform(-0.3, 0.5, c).astype(f32),
        "pw.weight": pack_signs(rng.standard_normal((c, 1, 1, c))),
        "pw.multiplier": rng.uniform(0.01, 0.1, c).astype(f32),
        "pw.offset": rng.standard_normal(c).astype(f32) * 0.3,
        "tdw.weight": pack_signs(rng.standard_normal((1, 3, c))),
        "tdw.threshold": rng.integers(-2, 3, c).astype(np.int32),
        "head.weight": rng.standard_normal((4, c)).astype(f32),
        "head.bias": rng.standard_normal(4).astype(f32),
    }

    def op(kind, name, inputs, attrs=None, **roles):
        return {"op": kind, "name": name, "inputs": inputs, "outputs": [name], "attrs": attrs or {},
                "tensors": roles}

    ops = [
        op("conv2d_fp", "stem", ["input"], {"stride": [1, 1], "padding": [[1, 1], [1, 1]], "dilation": [1, 1],
                                            "groups": 1, "input_sign": False}, weight="stem.weight", bias="stem.bias"),
        op("bdwconv2d", "dw", ["stem"], {"in_channels": c, "kernel_size": [3, 3], "stride": [2, 1],
                                         "padding": [[1, 1], [2, 1]], "dilation": [1, 2]},
           weight="dw.weight", multiplier="dw.multiplier", offset="dw.offset"),
        op("prelu", "act", ["dw"], {"axis": 0}, slope="act.slope"),
        op("bconv2d", "pw", ["act"], {"in_channels": c, "kernel_size": [1, 1], "stride": [1, 1],
                                      "padding": [[0, 0], [0, 0]], "dilation": [1, 1]},
           weight="pw.weight", multiplier="pw.multiplier", offset="pw.offset"),
        op("silu", "silu", ["pw"]),
        op("avgpool2d", "pool", ["silu"], {"kernel_size": [2, 2], "stride": [1, 1], "padding": [[1, 1], [1, 1]],
                                           "count_include_pad": count_include_pad}),
        op("mean", "freq", ["pool"], {"axes": [1], "keepdims": True}),
        op("bdwconv2d", "tdw", ["freq"], {"in_channels": c, "kernel_size": [1, 3], "stride": [1, 1],
                                          "padding": [[0, 0], [1, 1]], "dilation": [1, 1]},
           weight="tdw.weight", threshold="tdw.threshold"),
        op("add", "bcast", ["pool", "tdw"]),
        op("relu", "relu", ["bcast"]),
        op("mean", "gap", ["relu"], {"axes": [1, 2], "keepdims": False}),
        op("linear_fp", "head", ["gap"], {"input_sign": False}, weight="head.weight", bias="head.bias"),
    ]
    meta = {
        "producer": "test",
        "input": {"shape": list(IN_SHAPE), "dtype": "float32"},
        "plan": {"ops": ops},
        "views": {"full": {"ops": list(range(len(ops))), "output": "head"}},
        "default_view": "full",
        "labels": ["a", "b", "c", "d"],
        "frontend": None,
        "fallbacks": [],
    }
    return tensors, meta
