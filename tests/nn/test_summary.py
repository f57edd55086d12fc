"""Tests of binkit/nn/summary.py: params by bit width, memory, MACs (binary vs float).

Every expected number is worked out by hand below from the counting rules in the module
docstring: Linear MACs = positions * in * out, ConvNd MACs = output elements * in/groups *
prod(kernel), a binary layer's weight at its quantizer's precision, everything else 32-bit.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import binkit
from binkit import registry
from binkit.nn import summary

INPUT = (1, 8, 8)

# Hand counts for ``make_model`` on a (1, 8, 8) input:
#   stem: Conv2d(1, 4, 3, stride 2, pad 1, no bias): out (4, 4, 4) = 64 elems
#         params 4*1*3*3 = 36;  MACs 64 * 1 * 9 = 576
#   bn:   BatchNorm2d(4): params 4 + 4 = 8 (running stats are buffers)
#   act:  PReLU(): 1 param
#   body: Conv2d(4, 4, 3, pad 1): out (4, 4, 4); params 144 + 4 = 148; MACs 64 * 4 * 9 = 2304
#   flat: Flatten -> 64
#   head: Linear(64, 5): params 320 + 5 = 325; MACs 64 * 5 = 320
STEM_MACS, BODY_MACS, HEAD_MACS = 576, 2304, 320
TOTAL_PARAMS = 36 + 8 + 1 + 148 + 325  # 518
BODY_WEIGHT = 144


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False),
        bn=nn.BatchNorm2d(4),
        act=nn.PReLU(),
        body=nn.Conv2d(4, 4, 3, padding=1),
        flat=nn.Flatten(),
        head=nn.Linear(4 * 4 * 4, 5),
    ))


def rows(s) -> dict:
    return {layer.name: layer for layer in s.layers}


class TestFloatModel:
    def test_params_and_memory(self):
        s = summary(make_model(), INPUT, print_fn=None)
        assert s.total_params == TOTAL_PARAMS
        assert s.params_by_bits == {32: TOTAL_PARAMS}
        assert s.memory_bytes == 4 * TOTAL_PARAMS
        assert s.fp32_memory_bytes == 4 * TOTAL_PARAMS
        assert s.compression_ratio == 1.0
        r = rows(s)
        assert [r[n].params for n in ("stem", "bn", "act", "body", "flat", "head")] == [36, 8, 1, 148, 0, 325]

    def test_macs_per_layer(self):
        s = summary(make_model(), INPUT, print_fn=None)
        r = rows(s)
        assert r["stem"].macs == STEM_MACS
        assert r["body"].macs == BODY_MACS
        assert r["head"].macs == HEAD_MACS
        assert r["bn"].macs == r["act"].macs == r["flat"].macs == 0
        assert s.float_macs == STEM_MACS + BODY_MACS + HEAD_MACS
        assert s.binary_macs == 0 and s.binary_layers == []

    def test_output_shapes(self):
        r = rows(summary(make_model(), INPUT, print_fn=None))
        assert r["stem"].output_shape == (4, 4, 4)
        assert r["flat"].output_shape == (64,)
        assert r["head"].output_shape == (5,)

    def test_macs_are_per_example(self):
        s = summary(make_model(), example_input=torch.randn(3, *INPUT), print_fn=None)
        assert s.float_macs == STEM_MACS + BODY_MACS + HEAD_MACS
        assert s.input_shape == INPUT

    def test_linear_over_time_counts_positions(self):
        # (batch, 7 positions, 6) -> Linear(6, 3): 7 * 6 * 3 = 126 MACs
        s = summary(nn.Linear(6, 3), (7, 6), print_fn=None)
        assert s.layers[0].macs == 126

    def test_conv1d_stride_and_dilation(self):
        # Conv1d(3, 5, 4, stride 2, dilation 2) on T = 20: T' = (20 - 2*3 - 1)//2 + 1 = 7
        # MACs = 5 * 7 * 3 * 4 = 420
        s = summary(nn.Conv1d(3, 5, 4, stride=2, dilation=2), (3, 20), print_fn=None)
        assert s.layers[0].output_shape == (5, 7)
        assert s.layers[0].macs == 420

    def test_summary_does_not_touch_batchnorm_statistics(self):
        model = make_model().train()
        before = model.bn.running_mean.clone(), int(model.bn.num_batches_tracked)
        summary(model, example_input=torch.randn(4, *INPUT), print_fn=None)
        assert torch.equal(model.bn.running_mean, before[0])
        assert int(model.bn.num_batches_tracked) == before[1]
        assert model.training


class TestBinarizedModel:
    @pytest.fixture
    def binary(self):
        model = binkit.binarize(make_model(), "xnor")
        assert type(model.body).__name__ == "BinaryConv2d"  # only the middle conv
        return model

    def test_params_by_bits(self, binary):
        s = summary(binary, INPUT, print_fn=None)
        assert s.params_by_bits == {1: BODY_WEIGHT, 32: TOTAL_PARAMS - BODY_WEIGHT}
        assert rows(s)["body"].params_by_bits == {1: 144, 32: 4}
        assert s.total_params == TOTAL_PARAMS

    def test_memory_and_compression(self, binary):
        s = summary(binary, INPUT, print_fn=None)
        quantized = BODY_WEIGHT / 8 + 4 * (TOTAL_PARAMS - BODY_WEIGHT)  # 18 + 1496 = 1514 bytes
        assert s.memory_bytes == quantized == 1514
        assert s.fp32_memory_bytes == 4 * TOTAL_PARAMS == 2072
        assert s.compression_ratio == pytest.approx(2072 / 1514)
        assert rows(s)["body"].memory_bytes == 144 / 8 + 4 * 4

    def test_binary_and_float_macs(self, binary):
        s = summary(binary, INPUT, print_fn=None)
        assert s.binary_macs == BODY_MACS
        assert s.float_macs == STEM_MACS + HEAD_MACS
        assert s.binary_layers == ["body"]
        r = rows(s)
        assert r["body"].runs_binary and r["body"].method == "xnor"
        assert (r["body"].weight_bits, r["body"].input_bits) == (1, 1)
        assert (r["body"].binary_macs, r["body"].float_macs) == (BODY_MACS, 0)
        assert not r["stem"].runs_binary and r["stem"].weight_bits == 32

    def test_weights_only_layer_runs_float(self):
        model = binkit.binarize(make_model(), {"inputs": False})
        s = summary(model, INPUT, print_fn=None)
        assert s.binary_macs == 0
        assert s.float_macs == STEM_MACS + BODY_MACS + HEAD_MACS
        assert s.params_by_bits[1] == BODY_WEIGHT  # weights still count at one bit

    def test_multibit_weights(self):
        model = binkit.binarize(make_model(), {"method": "dorefa", "params": {"weight_bits": 4, "input_bits": 2}})
        s = summary(model, INPUT, print_fn=None)
        assert s.params_by_bits == {4: BODY_WEIGHT, 32: TOTAL_PARAMS - BODY_WEIGHT}
        assert s.memory_bytes == BODY_WEIGHT * 4 / 8 + 4 * (TOTAL_PARAMS - BODY_WEIGHT)
        assert s.binary_macs == BODY_MACS  # bit-serial: both operands quantized
        assert "4/2" in str(s)

    def test_quantizer_parameters_belong_to_their_layer(self):
        # ReActNet's RSign threshold (one per input channel) is a 32-bit parameter of the layer
        model = binkit.binarize(make_model(), {"method": "reactnet", "replace_activations": False})
        s = summary(model, INPUT, print_fn=None)
        assert rows(s)["body"].params_by_bits == {1: 144, 32: 4 + 4}
        assert s.total_params == TOTAL_PARAMS + 4
        assert not any("quantizer" in layer.name for layer in s.layers)


class TestStructure:
    def test_depthwise_conv_macs(self):
        # Conv1d(6, 6, 5, groups 6, pad 2) on T = 20: 6 * 20 outputs * (6/6) * 5 = 600 MACs
        # Conv1d(6, 12, 1): 12 * 20 * 6 = 1440 MACs
        model = nn.Sequential(nn.Conv1d(6, 6, 5, padding=2, groups=6, bias=False), nn.Conv1d(6, 12, 1))
        s = summary(model, (6, 20), print_fn=None)
        assert [layer.macs for layer in s.layers] == [600, 1440]
        assert [layer.params for layer in s.layers] == [30, 84]

    def test_shared_parameters_counted_once(self):
        a, b = nn.Linear(8, 8), nn.Linear(8, 8)
        b.weight = a.weight  # tied weights
        model = nn.Sequential(a, nn.ReLU(), b)
        s = summary(model, (8,), print_fn=None)
        assert s.total_params == 64 + 8 + 8 == sum(p.numel() for p in model.parameters())
        r = rows(s)
        assert r["0"].params == 72 and r["2"].params == 8

    def test_reused_module_params_counted_once(self):
        lin = nn.Linear(8, 8)
        model = nn.Sequential(lin, nn.ReLU(), lin)
        s = summary(model, (8,), print_fn=None)
        assert s.total_params == 72

    def test_reused_module_macs_counted_per_call(self):
        lin = nn.Linear(8, 8)
        model = nn.Sequential(lin, nn.ReLU(), lin)
        s = summary(model, (8,), print_fn=None)
        assert s.float_macs == 2 * 64

    def test_nested_modules_counted(self):
        class Inner(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv1d(2, 3, 3, padding=1)  # 18 + 3 params; 3*10*2*3 = 180 MACs
                self.scale = nn.Parameter(torch.ones(3))  # owned by a non-leaf module

            def forward(self, x):
                return self.conv(x) * self.scale[:, None]

        class Outer(nn.Module):
            def __init__(self):
                super().__init__()
                self.block = nn.Sequential(Inner(), nn.ReLU())
                self.head = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(30, 4)))  # 124; 120 MACs

            def forward(self, x):
                return self.head(self.block(x))

        s = summary(Outer(), (2, 10), print_fn=None)
        r = rows(s)
        assert r["block.0.conv"].macs == 180
        assert r["head.1.0"].macs == 120
        assert s.float_macs == 300
        assert s.other_params == 3
        assert s.total_params == 21 + 3 + 124 == sum(p.numel() for p in Outer().parameters())

    def test_kws_architecture_nested_blocks(self):
        entry = registry.get("architecture", "small_cnn")
        model = binkit.binarize(entry.factory(entry.params(channels=4, blocks=2), 3, INPUT))
        s = summary(model, print_fn=None)  # feature_shape is the default input shape
        # stem (4,4,4): 576; each block conv 4->4 3x3 on (4,4,4): 2304; classifier 4*3 = 12
        assert s.binary_layers == ["blocks.0.conv", "blocks.1.conv"]
        assert s.binary_macs == 2 * 2304
        assert s.float_macs == 576 + 12
        assert s.total_params == sum(p.numel() for p in model.parameters())

    def test_submodule_modes_preserved(self):
        model = make_model().train()
        model.bn.eval()
        summary(model, INPUT, print_fn=None)
        assert model.bn.training is False


class TestUnknownShape:
    def test_macs_unknown_without_input_shape(self):
        s = summary(binkit.binarize(make_model()), print_fn=None)
        assert all(layer.macs is None and layer.output_shape is None for layer in s.layers)
        assert not s.macs_known
        totals = s.to_dict()["totals"]
        assert totals["binary_macs"] is None and totals["float_macs"] is None
        assert totals["params"] == TOTAL_PARAMS  # params are known regardless
        assert "?" in str(s) and "?" in s.to_markdown()

    def test_table_marks_unknown_macs(self):
        text = str(summary(make_model(), print_fn=None))
        body = next(line for line in text.splitlines() if line.startswith("body"))
        assert body.split()[-4:-1] == ["?", "?", "?"]  # output, MACs binary, MACs float
        total = next(line for line in text.splitlines() if line.startswith("total"))
        assert "?" in total

    def test_feature_shape_is_the_default_input_shape(self):
        model = make_model()
        model.feature_shape = INPUT
        s = summary(model, print_fn=None)
        assert s.macs_known and s.input_shape == INPUT
        assert s.float_macs == STEM_MACS + BODY_MACS + HEAD_MACS

    def test_explicit_shape_beats_feature_shape(self):
        model = nn.Sequential(nn.Conv1d(2, 2, 3, padding=1))
        model.feature_shape = (2, 10)
        assert summary(model, (2, 20), print_fn=None).layers[0].macs == 2 * 20 * 2 * 3


class TestOutput:
    def test_to_dict(self):
        s = summary(binkit.binarize(make_model()), INPUT, print_fn=None)
        d = s.to_dict()
        assert d["input_shape"] == list(INPUT)
        assert [layer["name"] for layer in d["layers"]] == ["stem", "bn", "act", "body", "flat", "head"]
        body = d["layers"][3]
        assert body["params_by_bits"] == {"1": 144, "32": 4}
        assert (body["binary_macs"], body["float_macs"], body["runs_binary"]) == (BODY_MACS, 0, True)
        t = d["totals"]
        assert t["params"] == TOTAL_PARAMS and t["params_by_bits"] == {"1": 144, "32": 374}
        assert (t["binary_macs"], t["float_macs"]) == (BODY_MACS, STEM_MACS + HEAD_MACS)
        assert t["memory_bytes"] == 1514 and t["fp32_memory_bytes"] == 2072

    def test_to_dict_is_json_serializable(self):
        import json

        json.dumps(summary(binkit.binarize(make_model()), INPUT, print_fn=None).to_dict())

    @pytest.mark.parametrize("render", [str, lambda s: s.to_markdown()], ids=["str", "markdown"])
    def test_text_contains_layers_and_totals(self, render):
        text = render(summary(binkit.binarize(make_model()), INPUT, print_fn=None))
        for name in ("stem", "bn", "act", "body", "head", "BinaryConv2d"):
            assert name in text
        assert "2,304" in text and "896" in text  # binary / float MAC totals
        assert f"Total params: {TOTAL_PARAMS}" in text
        assert "Compression: 1.37x" in text

    def test_markdown_is_a_table(self):
        md = summary(make_model(), INPUT, print_fn=None).to_markdown()
        lines = md.splitlines()
        assert lines[0].startswith("| layer |") and lines[1].startswith("|---|")
        assert sum(line.startswith("| ") for line in lines) == 1 + 6 + 1  # head, rows, total

    def test_print_fn_none_prints_nothing(self, capsys):
        summary(make_model(), INPUT, print_fn=None)
        assert capsys.readouterr().out == ""

    def test_prints_by_default(self, capsys):
        s = summary(make_model(), INPUT)
        assert capsys.readouterr().out == str(s) + "\n"

    def test_custom_print_fn(self):
        got: list[str] = []
        s = summary(make_model(), INPUT, print_fn=got.append)
        assert got == [str(s)]

    def test_top_level_export(self):
        assert binkit.summary is summary
