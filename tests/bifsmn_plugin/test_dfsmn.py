"""Tests of the thinnable DFSMN family (bifsmn_plugin/dfsmn.py).

Expected values come from shared/reference/bifsmn.md: the graph of section 3 (conv1, conv2,
channel-major reshape, fc1, DFSMN blocks, classifier over memory x frames), the parameter counts of
its "Sizes" table (teacher 600,252 and thinnable student 606,431 for 12 classes), the view rule of
section 6 (blocks ``i*d - 1``), and the layer selection of section 4 (26 of 28 layers binarized,
conv1 and the classifier kept full precision).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from bifsmn_plugin.dfsmn import (
    DFSMN,
    BiFSMNTeacherParams,
    DFSMNBlock,
    DFSMNParams,
    default_thin_levels,
    load_teacher_weights,
    view_blocks,
)
from binkit import registry
from binkit.nn.layers import BinaryConv1d, BinaryLayerMixin
from binkit.nn.surgery import binarize

VARIANTS = ["bifsmn", "bifsmn_teacher", "dfsmn"]
EXPECTED_BLOCKS_8 = {"8": [0, 1, 2, 3, 4, 5, 6, 7], "4": [1, 3, 5, 7], "2": [3, 7], "1": [7]}



def build(name: str, num_classes: int = 12, feature_shape=(1, 32, 32), **params) -> DFSMN:
    entry = registry.get("architecture", name)
    torch.manual_seed(0)
    return entry.factory(entry.params(**params), num_classes, feature_shape)


def features(shape, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed))


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class TestShapes:
    @pytest.mark.parametrize("name", VARIANTS)
    @pytest.mark.parametrize("feature_shape, frames_out, fc1_in", [
        ((1, 32, 32), 8, 32 * 8),      # the code's 32 mel x 32 frames
        ((1, 40, 101), 26, 32 * 10),   # 40 log-mel at 10 ms hop: not possible in the code (bug #5)
        ((1, 7, 5), 2, 32 * 2),        # odd sizes: ceil(ceil(n/2)/2)
    ])
    def test_logits_and_taps(self, name, feature_shape, frames_out, fc1_in):
        model = build(name, 12, feature_shape)
        assert model.num_frames_out == frames_out
        assert model.fc1.in_features == fc1_in
        assert model.classifier.in_features == 128 * frames_out
        model.eval()
        out = model(features(feature_shape))
        assert out.shape == (3, 12)
        assert list(model.taps) == [f"block{i}" for i in range(8)]
        for t in model.taps.values():
            assert t.shape == (3, 128, frames_out)

    def test_forward_features_and_head_compose(self):
        model = build("bifsmn").eval()
        x = features((1, 32, 32))
        with torch.no_grad():
            torch.testing.assert_close(model.forward_head(model.forward_features(x, "2")), model(x, "2"))

    def test_reshape_is_channel_major_per_frame(self):
        # fc1 sees, for frame t, the conv2 output ordered (channel, mel): index c * mels + m.
        model = build("bifsmn").eval()
        x = features((1, 32, 32), batch=2)
        seen = {}
        model.fc1.register_forward_hook(lambda _m, inp, _o: seen.update(x=inp[0]))  # returns None
        with torch.no_grad():
            model(x)
            conv = model.act2(model.bn2(model.conv2(model.act1(model.bn1(model.conv1(x))))))  # (2, 32, 8, 8)
        expected = torch.stack([conv[:, :, :, t].reshape(2, -1) for t in range(8)], dim=1)
        torch.testing.assert_close(seen["x"], expected)

    @pytest.mark.parametrize("bad", [(3, 1, 32), (3, 1, 32, 31), (3, 2, 32, 32), (1, 32, 32)])
    def test_wrong_input_shape(self, bad):
        model = build("bifsmn")
        with pytest.raises(ValueError, match=r"expects input \(batch, 1, 32, 32\)"):
            model(torch.zeros(bad))

    def test_bad_feature_shape(self):
        with pytest.raises(ValueError, match="channels, n_mels, frames"):
            build("bifsmn", 12, (32, 32))


class TestViews:
    def test_rule_for_eight_blocks(self):
        assert {v: list(view_blocks(8, int(v))) for v in EXPECTED_BLOCKS_8} == EXPECTED_BLOCKS_8

    @pytest.mark.parametrize("num_blocks, level, blocks", [
        (4, 4, [0, 1, 2, 3]), (4, 2, [1, 3]), (4, 1, [3]),  # the v2 4-block backbone
        (6, 3, [1, 3, 5]), (6, 2, [2, 5]), (12, 3, [3, 7, 11]), (1, 1, [0]),
    ])
    def test_rule_other_sizes(self, num_blocks, level, blocks):
        assert list(view_blocks(num_blocks, level)) == blocks

    @pytest.mark.parametrize("level", [3, 5, 9, 0])
    def test_rule_rejects_non_divisors(self, level):
        with pytest.raises(ValueError, match="must divide num_blocks=8"):
            view_blocks(8, level)

    @pytest.mark.parametrize("view, blocks", [(None, EXPECTED_BLOCKS_8["8"]), *EXPECTED_BLOCKS_8.items()])
    def test_taps_are_the_executed_blocks(self, view, blocks):
        model = build("bifsmn").eval()
        executed = []
        for i, block in enumerate(model.blocks):
            block.register_forward_hook(lambda _m, _i, _o, i=i: executed.append(i))
        model(features((1, 32, 32)), view)
        assert executed == blocks
        assert list(model.taps) == [f"block{i}" for i in blocks]

    def test_views_property(self):
        assert build("bifsmn").views == {v: tuple(b) for v, b in EXPECTED_BLOCKS_8.items()}
        assert build("bifsmn_teacher").views == {"8": tuple(range(8))}

    def test_unknown_view_lists_views(self):
        model = build("bifsmn")
        with pytest.raises(ValueError, match=r"no view '3'; views are: 8, 4, 2, 1"):
            model(features((1, 32, 32)), "3")
        with pytest.raises(ValueError, match=r"no view '4'; views are: 8 "):
            build("bifsmn_teacher")(features((1, 32, 32)), "4")

    def test_full_view_equals_none(self):
        model = build("bifsmn").eval()
        x = features((1, 32, 32))
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(x, "8"))

    def test_views_give_different_logits(self):
        model = build("bifsmn").eval()
        x = features((1, 32, 32))
        with torch.no_grad():
            outs = [model(x, v) for v in EXPECTED_BLOCKS_8]
        for i in range(len(outs)):
            for j in range(i + 1, len(outs)):
                assert not torch.allclose(outs[i], outs[j])


class TestPerViewNorm:
    def test_distinct_modules_per_view(self):
        model = build("bifsmn")
        for block in model.blocks:
            bns = [block.project_bn[v] for v in EXPECTED_BLOCKS_8]
            acts = [block.project_act[v] for v in EXPECTED_BLOCKS_8]
            assert len({id(m) for m in bns + acts}) == 8
            assert all(type(m) is nn.BatchNorm1d for m in bns)
            assert all(type(m) is nn.PReLU and m.weight.numel() == 1 for m in acts)

    def test_only_per_view_parameters_are_not_shared(self):
        # Every parameter/buffer name outside project_bn.<view>/project_act.<view> is used by all
        # views; the per-view ones are the only names that carry a view key.
        model = build("bifsmn")
        per_view = [k for k in model.state_dict() if ".project_bn." in k or ".project_act." in k]
        assert all(k.split(".")[3] in EXPECTED_BLOCKS_8 for k in per_view)
        # 8 blocks x 4 views x (BN: weight, bias, running_mean, running_var, num_batches_tracked; PReLU: weight)
        assert len(per_view) == 8 * 4 * 6

    def test_block_views_differ_only_by_their_pair(self):
        model = build("bifsmn")
        block = model.blocks[2]
        with torch.no_grad():
            for v in ("4", "2", "1"):
                block.project_bn[v].weight.uniform_(0.5, 1.5)
                block.project_bn[v].bias.uniform_(-0.5, 0.5)
                block.project_bn[v].running_mean.uniform_(-0.2, 0.2)
                block.project_act[v].weight.fill_(0.1 * int(v))
        block.eval()
        x = torch.randn(2, 128, 8)
        with torch.no_grad():
            ref = block(x, "8")
            assert not torch.allclose(block(x, "4"), ref)
            for v in ("4", "2", "1"):
                block.project_bn[v].load_state_dict(block.project_bn["8"].state_dict())
                block.project_act[v].load_state_dict(block.project_act["8"].state_dict())
                torch.testing.assert_close(block(x, v), ref)

    def test_changing_another_views_pair_leaves_a_view_unchanged(self):
        model = build("bifsmn").eval()
        x = features((1, 32, 32))
        with torch.no_grad():
            before = {v: model(x, v) for v in EXPECTED_BLOCKS_8}
            for block in model.blocks:
                block.project_act["4"].weight.fill_(-3.0)
            after = {v: model(x, v) for v in EXPECTED_BLOCKS_8}
        assert not torch.allclose(before["4"], after["4"])
        for v in ("8", "2", "1"):
            torch.testing.assert_close(before[v], after[v])

    def test_not_thinnable_shares_one_pair(self):
        model = build("bifsmn", thinnable=False, thin_levels=["8", "4", "2"])
        for block in model.blocks:
            assert type(block.project_bn) is nn.BatchNorm1d and type(block.project_act) is nn.PReLU
        model.eval()
        assert model(features((1, 32, 32)), "2").shape == (3, 12)
        assert list(model.taps) == ["block3", "block7"]


class TestSizes:
    def test_teacher_parameter_count(self):
        assert count(build("bifsmn_teacher")) == 600_252

    def test_student_parameter_count(self):
        assert count(build("bifsmn")) == 606_431

    def test_fp_baseline_is_the_students_shape(self):
        assert count(build("dfsmn")) == 606_431

    def test_teacher_activations_follow_the_code(self):
        # DfsmnModel_pre: ReLU in conv1/conv2/fc1 and the expansion, PReLU for memory and output.
        model = build("bifsmn_teacher")
        assert [type(m) for m in (model.act1, model.act2, model.fc1_act)] == [nn.ReLU] * 3
        for block in model.blocks:
            assert type(block.expand_act) is nn.ReLU
            assert type(block.memory_act) is nn.PReLU and type(block.project_act) is nn.PReLU
            assert block.drop.p == 0.2
        assert model.head_drop.p == 0.2

    def test_student_is_all_prelu_without_dropout(self):
        model = build("bifsmn")
        assert sum(type(m) is nn.ReLU for m in model.modules()) == 0
        assert sum(type(m) is nn.PReLU for m in model.modules()) == 3 + 8 * (2 + 4)
        assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))

    def test_binarized_weight_count(self):
        # bifsmn.md: 12,800 + 32,768 + 8 x (2 x 32,768 + 640) = 574,976 weights in binarized layers.
        model = binarize(build("bifsmn"))
        n = sum(m.weight.numel() for m in model.modules() if isinstance(m, BinaryLayerMixin))
        assert n == 574_976


class TestBinarize:
    def test_default_policy_layers(self):
        model = binarize(build("bifsmn"))
        binary = [n for n, m in model.named_modules() if isinstance(m, BinaryLayerMixin)]
        expected = ["conv2", "fc1"] + [f"blocks.{i}.{layer}" for i in range(8)
                                       for layer in ("memory", "expand", "project")]
        assert binary == expected and len(binary) == 26
        assert type(model.conv1) is nn.Conv2d and type(model.classifier) is nn.Linear

    def test_binarized_model_runs_every_view_after_a_forward(self):
        model = build("bifsmn")
        x = features((1, 32, 32))
        model(x)  # taps now hold non-leaf tensors: binarize's deepcopy must still work
        model = binarize(model).eval()
        for v in EXPECTED_BLOCKS_8:
            assert torch.isfinite(model(x, v)).all()

    @pytest.mark.parametrize("left, right, dilation", [(2, 2, 1), (3, 1, 1), (0, 2, 1), (1, 2, 2), (4, 0, 1)])
    def test_memory_conv_is_exact_zero_padding(self, left, right, dilation):
        torch.manual_seed(1)
        block = DFSMNBlock(6, 4, left, right, dilation)
        x = torch.randn(2, 6, 9)
        x[:, :, 0] = 0.0  # zeros inside the signal still binarize to +1
        fp = block.memory_conv(x)
        # Full precision: the code's F.pad-then-valid-conv.
        manual_fp = F.conv1d(F.pad(x, (left * dilation, right * dilation)), block.memory.weight,
                             block.memory.bias, dilation=dilation, groups=6)
        torch.testing.assert_close(fp, manual_fp)
        binary = binarize(nn.Sequential(nn.Linear(1, 1), block, nn.Linear(1, 1)), "xnor")[1]
        assert isinstance(binary.memory, BinaryConv1d)
        q = binary.memory.quantized_input(x)
        assert set(q.unique().tolist()) == {-1.0, 1.0}
        manual = F.conv1d(F.pad(q, (left * dilation, right * dilation)), binary.memory.quantized_weight(),
                          binary.memory.bias, dilation=dilation, groups=6)
        torch.testing.assert_close(binary.memory_conv(x), manual)
        # Padding before quantizing would turn the padded zeros into +1 and change the edges.
        wrong = F.conv1d(binary.memory.quantized_input(F.pad(x, (left * dilation, right * dilation))),
                         binary.memory.quantized_weight(), binary.memory.bias, dilation=dilation, groups=6)
        if left or right:
            assert not torch.allclose(wrong, manual)

    def test_memory_window_is_left_past_right_future(self):
        block = DFSMNBlock(1, 1, 2, 1)
        with torch.no_grad():
            block.memory.weight.copy_(torch.tensor([[[1.0, 10.0, 100.0, 1000.0]]]))  # taps t-2, t-1, t, t+1
            block.memory.bias.zero_()
        x = torch.zeros(1, 1, 6)
        x[0, 0, 3] = 1.0
        assert block.memory_conv(x)[0, 0].tolist() == [0.0, 0.0, 1000.0, 100.0, 10.0, 1.0]


class TestTeacherInit:
    def test_teacher_weights_fill_the_full_view(self):
        teacher, student = build("bifsmn_teacher"), build("bifsmn")
        with torch.no_grad():
            for p in teacher.parameters():
                p.uniform_(-0.3, 0.3)
            for name, buf in teacher.named_buffers():
                if name.endswith("running_var"):
                    buf.uniform_(0.5, 2.0)
        left = load_teacher_weights(student, teacher.state_dict())
        per_view = [f"blocks.{i}.project_bn.{v}.{k}" for i in range(8) for v in ("4", "2", "1")
                    for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
        per_view += [f"blocks.{i}.project_act.{v}.weight" for i in range(8) for v in ("4", "2", "1")]
        relu_in_teacher = ["act1.weight", "act2.weight", "fc1_act.weight"] + [
            f"blocks.{i}.expand_act.weight" for i in range(8)]
        assert sorted(left) == sorted(per_view + relu_in_teacher)
        # With the student's extra PReLUs at slope 0 (= ReLU), view "8" is the teacher.
        with torch.no_grad():
            for name in relu_in_teacher:
                student.get_parameter(name).zero_()
        teacher.eval(), student.eval()
        x = features((1, 32, 32))
        with torch.no_grad():
            torch.testing.assert_close(student(x, "8"), teacher(x))

    def test_binarized_student(self):
        teacher = build("bifsmn_teacher")
        student = binarize(build("bifsmn"), "bifsmn_code")
        left = load_teacher_weights(student, teacher.state_dict())
        assert "blocks.0.project_bn.8.weight" not in left and "conv2.weight" not in left
        torch.testing.assert_close(student.blocks[3].project.weight, teacher.blocks[3].project.weight)


class TestParams:
    def test_defaults(self):
        p = DFSMNParams()
        assert (p.num_blocks, p.memory_size, p.hidden_size, p.left_order, p.right_order, p.dilation,
                p.frontend_channels, p.frontend_kernel) == (8, 128, 256, 2, 2, 1, 16, 5)
        assert p.thin_levels == ["8", "4", "2", "1"]
        assert p.view_weights == {"8": 1.0, "4": 0.5, "2": 0.25}
        assert (p.activation, p.dropout, p.thinnable) == ("prelu", 0.0, True)

    def test_teacher_defaults(self):
        p = BiFSMNTeacherParams()
        assert (p.activation, p.dropout, p.thinnable) == ("relu", 0.2, False)
        assert p.thin_levels == ["8"] and p.view_weights == {"8": 1.0}

    def test_levels_follow_num_blocks(self):
        p = DFSMNParams(num_blocks=4)
        assert p.thin_levels == ["4", "2", "1"] and p.view_weights == {"4": 1.0, "2": 0.5, "1": 0.25}
        assert DFSMNParams(num_blocks=6).thin_levels == ["6", "3"]
        assert BiFSMNTeacherParams(num_blocks=4).thin_levels == ["4"]
        assert default_thin_levels(8, True) == ["8", "4", "2", "1"]

    def test_explicit_levels_derive_weights(self):
        p = DFSMNParams(thin_levels=["8", "2"])
        assert p.view_weights == {"8": 1.0, "2": 0.5}

    @pytest.mark.parametrize("kwargs, message", [
        ({"thin_levels": ["8", "3"]}, r"\['3'\] do not divide num_blocks=8"),
        ({"thin_levels": ["4", "2"]}, "must start with the full network '8'"),
        ({"thin_levels": ["8", "x"]}, "not positive integers"),
        ({"thin_levels": ["8", "4", "4"]}, "duplicates"),
        ({"thin_levels": []}, "at least one view"),
        ({"view_weights": {"8": 1.0, "16": 0.5}}, r"names \['16'\], which are not in thin_levels"),
        ({"view_weights": {"8": -1.0}}, ">= 0"),
        ({"view_weights": {"8": 0.0}}, "trains no view"),
        ({"num_blocks": 6, "thin_levels": ["6", "4"]}, "do not divide num_blocks=6"),
        ({"dropout": 1.0}, "dropout"),
        ({"activation": "gelu"}, "activation"),
        ({"memory": 128}, "memory"),
    ])
    def test_invalid(self, kwargs, message):
        with pytest.raises(ValidationError, match=message):
            DFSMNParams(**kwargs)

    def test_frozen(self):
        with pytest.raises(ValidationError):
            DFSMNParams().num_blocks = 4  # type: ignore[misc]


class TestRegistry:
    @pytest.mark.parametrize("name", VARIANTS)
    def test_lookup(self, name):
        entry = registry.get("architecture", name)
        assert entry.provider.endswith(":bifsmn")
        assert "arXiv:2202.06483" in entry.reference

    def test_student_capabilities(self):
        entry = registry.get("architecture", "bifsmn")
        caps = entry.capabilities(entry.params())
        assert caps.taps == tuple(f"block{i}" for i in range(8))
        assert caps.views == {"8": 1.0, "4": 0.5, "2": 0.25, "1": 0.0}
        assert next(iter(caps.views)) == "8"  # the first view is the full network

    def test_teacher_capabilities(self):
        entry = registry.get("architecture", "bifsmn_teacher")
        caps = entry.capabilities(entry.params())
        assert caps.views == {"8": 1.0}
        assert len(caps.taps) == 8

    def test_capabilities_follow_params(self):
        entry = registry.get("architecture", "bifsmn")
        caps = entry.capabilities(entry.params(num_blocks=4, view_weights={"4": 1.0, "1": 0.5}))
        assert caps.taps == ("block0", "block1", "block2", "block3")
        assert caps.views == {"4": 1.0, "2": 0.0, "1": 0.5}

    def test_plugin_module_is_torch_free(self):
        code = ("import sys, bifsmn_plugin.plugin, bifsmn_plugin; "
                "assert 'torch' not in sys.modules, 'torch imported'")
        subprocess.run([sys.executable, "-c", code], check=True)
