"""Tests of binkit/nn/surgery.py: ``binkit.binarize(model, policy)``.

Models come from the ``binkit_kws`` architectures (``mlp``: ``blocks.{0,1,2}.fc`` then
``classifier``; ``small_cnn``: ``stem.0``, ``blocks.{i}.conv``, ``classifier``) or are written
here when a test needs a particular structure. The parametrized test at the bottom runs over
every registered quantizer, so a new binarizer plugin is tested by registering it.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

import binkit
from binkit import registry
from binkit.errors import BinarizationError, UnknownNameError
from binkit.nn import BinarizationWarning, BinaryLayerMixin, candidate_layers
from binkit.nn.layers import BinaryConv1d, BinaryLinear
from binkit.specs import BinarizationSpec, LayerOverride

FEATURES = (1, 6, 6)
NUM_CLASSES = 5
MLP_LAYERS = ["blocks.0.fc", "blocks.1.fc", "blocks.2.fc", "classifier"]


def make_mlp(depth: int = 3, hidden: int = 16) -> nn.Module:
    torch.manual_seed(0)
    entry = registry.get("architecture", "mlp")
    return entry.factory(entry.params(hidden=hidden, depth=depth), NUM_CLASSES, FEATURES)


def make_cnn(blocks: int = 3, channels: int = 4) -> nn.Module:
    torch.manual_seed(0)
    entry = registry.get("architecture", "small_cnn")
    return entry.factory(entry.params(channels=channels, blocks=blocks), NUM_CLASSES, FEATURES)


def binary_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, BinaryLayerMixin)]


def float_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d)]


def batch(n: int = 4) -> torch.Tensor:
    return torch.randn(n, *FEATURES, generator=torch.Generator().manual_seed(1))


class Reordered(nn.Module):
    """Registration order mid_a, head, stem, mid_b; execution order stem, mid_a, mid_b, head."""

    def __init__(self) -> None:
        super().__init__()
        self.mid_a = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        self.stem = nn.Linear(4, 8)
        self.mid_b = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mid_b(self.mid_a(self.stem(x))))


class TestDefaultPolicy:
    def test_mlp_keeps_first_and_last(self):
        model = binkit.binarize(make_mlp())
        assert binary_names(model) == ["blocks.1.fc", "blocks.2.fc"]
        assert float_names(model) == ["blocks.0.fc", "classifier"]
        for n in binary_names(model):
            layer = model.get_submodule(n)
            assert isinstance(layer, BinaryLinear) and layer.is_binary and layer.method == "xnor"

    def test_cnn_keeps_first_and_last(self):
        model = binkit.binarize(make_cnn(blocks=3))
        assert binary_names(model) == ["blocks.0.conv", "blocks.1.conv", "blocks.2.conv"]
        assert float_names(model) == ["stem.0", "classifier"]
        assert all(model.get_submodule(n).is_binary for n in binary_names(model))

    def test_keep_first_false(self):
        model = binkit.binarize(make_mlp(), {"keep_first": False})
        assert binary_names(model) == ["blocks.0.fc", "blocks.1.fc", "blocks.2.fc"]

    def test_keep_last_false(self):
        model = binkit.binarize(make_mlp(), {"keep_last": False})
        assert binary_names(model) == ["blocks.1.fc", "blocks.2.fc", "classifier"]

    def test_keep_neither(self):
        model = binkit.binarize(make_cnn(blocks=2), {"keep_first": False, "keep_last": False})
        assert float_names(model) == []
        assert binary_names(model) == ["stem.0", "blocks.0.conv", "blocks.1.conv", "classifier"]

    def test_disabled_policy_returns_float_copy(self):
        model = make_mlp()
        out = binkit.binarize(model, {"enabled": False})
        assert out is not model and binary_names(out) == []

    def test_binarized_model_runs(self):
        model = binkit.binarize(make_cnn())
        assert model(batch()).shape == (4, NUM_CLASSES)

    def test_model_without_candidates_warns(self):
        model = nn.Sequential(nn.ReLU(), nn.Tanh())
        with pytest.warns(BinarizationWarning, match="no layer"):
            out = binkit.binarize(model)
        assert binary_names(out) == []


class TestPolicyForms:
    @pytest.mark.parametrize(
        "policy",
        ["bnn", {"method": "bnn"}, BinarizationSpec(method="bnn")],
        ids=["str", "dict", "spec"],
    )
    def test_str_dict_and_spec_agree(self, policy):
        model = binkit.binarize(make_mlp(), policy)
        assert binary_names(model) == ["blocks.1.fc", "blocks.2.fc"]
        assert {model.get_submodule(n).method for n in binary_names(model)} == {"bnn"}
        x = batch()
        reference = binkit.binarize(make_mlp(), BinarizationSpec(method="bnn")).eval()
        assert torch.equal(model.eval()(x), reference(x))

    def test_bad_policy_type(self):
        with pytest.raises(TypeError, match="policy"):
            binkit.binarize(make_mlp(), 42)

    def test_bad_dict_is_a_validation_error(self):
        with pytest.raises(ValidationError, match="keep_frist"):
            binkit.binarize(make_mlp(), {"keep_frist": False})


class TestSelection:
    def test_include_pattern(self):
        model = binkit.binarize(make_mlp(), {"include": ["blocks.1.*"]})
        assert binary_names(model) == ["blocks.1.fc"]

    def test_exclude_pattern(self):
        model = binkit.binarize(make_mlp(), {"exclude": ["blocks.2.*"]})
        assert binary_names(model) == ["blocks.1.fc"]

    def test_patterns_are_fnmatch_and_case_sensitive(self):
        model = binkit.binarize(make_mlp(), {"keep_first": False, "include": ["blocks.[01].fc"]})
        assert binary_names(model) == ["blocks.0.fc", "blocks.1.fc"]
        with pytest.warns(BinarizationWarning):
            model = binkit.binarize(make_mlp(), {"include": ["BLOCKS.*"]})
        assert binary_names(model) == []

    def test_include_does_not_override_keep_first(self):
        model = binkit.binarize(make_mlp(), {"include": ["blocks.0.fc", "blocks.1.fc"]})
        assert binary_names(model) == ["blocks.1.fc"]

    def test_layer_types_filter(self):
        # only Conv2d are candidates: first/last are the first/last *Conv2d*; Linear untouched
        model = binkit.binarize(make_cnn(blocks=3), {"layer_types": ["Conv2d"], "keep_last": False})
        assert binary_names(model) == ["blocks.0.conv", "blocks.1.conv", "blocks.2.conv"]
        assert type(model.classifier) is nn.Linear
        # the only Linear is both first and last candidate
        model = binkit.binarize(make_cnn(blocks=3), {"layer_types": ["Linear"], "keep_last": False})
        assert binary_names(model) == []
        model = binkit.binarize(make_cnn(blocks=3), {"layer_types": ["Linear"], "keep_first": False,
                                                     "keep_last": False})
        assert binary_names(model) == ["classifier"]

    def test_layer_types_matching_nothing_warns(self):
        with pytest.warns(BinarizationWarning, match="Conv1d"):
            model = binkit.binarize(make_mlp(), {"layer_types": ["Conv1d"]})
        assert binary_names(model) == []

    def test_conv1d_depthwise_model(self):
        model = nn.Sequential(
            nn.Conv1d(3, 6, 1), nn.Conv1d(6, 6, 5, padding=2, groups=6), nn.PReLU(),
            nn.Conv1d(6, 6, 1), nn.Conv1d(6, 2, 1),
        )
        out = binkit.binarize(model)
        assert binary_names(out) == ["1", "3"]
        assert isinstance(out[1], BinaryConv1d) and out[1].groups == 6
        assert out(torch.randn(2, 3, 10)).shape == (2, 2, 10)


class TestUnmatchedPatternsWarn:
    @pytest.mark.parametrize(
        "policy, what",
        [
            ({"include": ["nothing.*"]}, "include"),
            ({"exclude": ["nothing.*"]}, "exclude"),
            ({"overrides": [{"pattern": "nothing.*", "enabled": False}]}, "overrides"),
        ],
        ids=["include", "exclude", "override"],
    )
    def test_warns(self, policy, what):
        with pytest.warns(BinarizationWarning, match=rf"{what}.*nothing\.\*"):
            binkit.binarize(make_mlp(), policy)

    def test_matching_patterns_do_not_warn(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error", BinarizationWarning)
            binkit.binarize(make_mlp(), {"include": ["blocks.*"], "exclude": ["classifier"],
                                         "overrides": [{"pattern": "blocks.2.fc", "method": "bnn"}]})

    def test_warning_is_a_user_warning(self):
        assert issubclass(BinarizationWarning, UserWarning)


class TestOverrides:
    def test_disabled_override_keeps_float(self):
        model = binkit.binarize(make_mlp(), {"overrides": [{"pattern": "blocks.2.fc", "enabled": False}]})
        assert binary_names(model) == ["blocks.1.fc"]
        assert type(model.blocks[2].fc) is nn.Linear

    def test_other_method_for_a_pattern(self):
        policy = BinarizationSpec(method="xnor", overrides=[LayerOverride(pattern="blocks.2.*", method="bnn")])
        model = binkit.binarize(make_mlp(), policy)
        assert model.blocks[1].fc.method == "xnor"
        assert model.blocks[2].fc.method == "bnn"
        bnn = registry.get("quantizer", "bnn")
        assert type(model.blocks[2].fc.weight_quantizer) is bnn.weight
        assert type(model.blocks[2].fc.input_quantizer) is bnn.input

    def test_override_params(self):
        policy = {"method": "dorefa",
                  "overrides": [{"pattern": "blocks.2.fc", "params": {"weight_bits": 3, "input_bits": 2}}]}
        model = binkit.binarize(make_mlp(), policy)
        assert (model.blocks[1].fc.weight_bits, model.blocks[1].fc.input_bits) == (1, 1)
        assert (model.blocks[2].fc.weight_bits, model.blocks[2].fc.input_bits) == (3, 2)

    def test_weights_only(self):
        model = binkit.binarize(make_mlp(), {"overrides": [{"pattern": "blocks.1.fc", "inputs": False}]})
        layer = model.blocks[1].fc
        assert layer.input_quantizer is None and layer.weight_quantizer is not None
        assert (layer.weight_bits, layer.input_bits, layer.is_binary) == (1, 32, False)
        assert model.blocks[2].fc.is_binary

    def test_inputs_only(self):
        model = binkit.binarize(make_mlp(), {"overrides": [{"pattern": "blocks.1.fc", "weights": False}]})
        layer = model.blocks[1].fc
        assert layer.weight_quantizer is None and layer.input_quantizer is not None
        assert (layer.weight_bits, layer.input_bits, layer.is_binary) == (32, 1, False)

    def test_policy_level_weights_only(self):
        model = binkit.binarize(make_mlp(), {"inputs": False})
        for n in binary_names(model):
            assert model.get_submodule(n).input_quantizer is None
            assert model.get_submodule(n).weight_bits == 1

    def test_override_can_binarize_a_protected_layer(self):
        model = binkit.binarize(make_mlp(), {"overrides": [{"pattern": "classifier"}]})
        assert binary_names(model) == ["blocks.1.fc", "blocks.2.fc", "classifier"]

    def test_later_override_wins(self):
        policy = {"overrides": [{"pattern": "blocks.*", "method": "bnn"},
                                {"pattern": "blocks.2.fc", "method": "bireal"}]}
        model = binkit.binarize(make_mlp(), policy)
        assert [model.get_submodule(n).method for n in binary_names(model)] == ["bnn", "bnn", "bireal"]


class TestErrors:
    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_weights_name_the_layer(self, bad):
        model = make_mlp()
        with torch.no_grad():
            model.blocks[2].fc.weight[1, 3] = bad
        with pytest.raises(BinarizationError, match=r"blocks\.2\.fc.*non-finite"):
            binkit.binarize(model)

    def test_non_finite_weights_in_a_float_layer_are_allowed(self):
        model = make_mlp()
        with torch.no_grad():
            model.blocks[0].fc.weight[0, 0] = float("nan")  # first layer: kept full precision
        assert binary_names(binkit.binarize(model)) == ["blocks.1.fc", "blocks.2.fc"]

    def test_error_leaves_inplace_model_untouched(self):
        model = make_mlp()
        with torch.no_grad():
            model.blocks[2].fc.weight[0, 0] = float("nan")
        with pytest.raises(BinarizationError):
            binkit.binarize(model, inplace=True)
        assert binary_names(model) == []

    def test_unknown_method_lists_known_names(self):
        with pytest.raises(UnknownNameError) as info:
            binkit.binarize(make_mlp(), "xnorr")
        message = str(info.value)
        for name in registry.names("quantizer"):
            assert name in message
        assert "xnorr" in message and "did you mean 'xnor'" in message

    def test_unknown_override_method(self):
        with pytest.raises(UnknownNameError, match="bogus"):
            binkit.binarize(make_mlp(), {"overrides": [{"pattern": "blocks.1.fc", "method": "bogus"}]})

    def test_invalid_params(self):
        with pytest.raises(BinarizationError, match=r"(?s)dorefa.*weight_bits.*less than or equal to 8"):
            binkit.binarize(make_mlp(), {"method": "dorefa", "params": {"weight_bits": 99}})

    def test_unknown_param(self):
        with pytest.raises(BinarizationError, match="clip_valu"):
            binkit.binarize(make_mlp(), {"method": "bnn", "params": {"clip_valu": 2.0}})

    def test_invalid_override_params_name_the_override(self):
        policy = {"overrides": [{"pattern": "blocks.1.fc", "method": "dorefa", "params": {"input_bits": 0}}]}
        with pytest.raises(BinarizationError, match=r"overrides\[0\]"):
            binkit.binarize(make_mlp(), policy)

    def test_reflect_padding_is_refused(self):
        model = nn.Sequential(nn.Conv1d(2, 4, 1), nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"),
                              nn.Conv1d(4, 2, 1))
        with pytest.raises(ValueError, match="reflect"):
            binkit.binarize(model)

    def test_reflect_padding_error_names_the_layer(self):
        model = nn.Sequential(nn.Conv1d(2, 4, 1), nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"),
                              nn.Conv1d(4, 2, 1))
        with pytest.raises(BinarizationError, match=r"'1'.*reflect"):
            binkit.binarize(model)


class TestCopySemantics:
    def test_input_model_untouched(self):
        model = make_mlp()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        out = binkit.binarize(model)
        assert out is not model
        assert binary_names(model) == [] and float_names(model) == MLP_LAYERS
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert out.blocks[1].fc.weight is not model.blocks[1].fc.weight

    def test_inplace(self):
        model = make_mlp()
        weight = model.blocks[1].fc.weight
        out = binkit.binarize(model, inplace=True)
        assert out is model
        assert binary_names(model) == ["blocks.1.fc", "blocks.2.fc"]
        assert model.blocks[1].fc.weight is weight  # the same Parameter, not a copy

    def test_parameters_keep_their_values(self):
        model = make_mlp()
        out = binkit.binarize(model)
        float_sd, binary_sd = model.state_dict(), out.state_dict()
        assert set(float_sd) <= set(binary_sd)
        for k, v in float_sd.items():
            assert torch.equal(binary_sd[k], v), k

    def test_float_state_dict_loads_into_binary_model(self):
        out = binkit.binarize(make_mlp())
        other = make_mlp()
        with torch.no_grad():
            for p in other.parameters():
                p.add_(1.0)
        out.load_state_dict(other.state_dict())
        assert torch.equal(out.blocks[1].fc.weight, other.blocks[1].fc.weight)

    @pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
    def test_mode_preserved(self, training):
        model = make_mlp().train(training)
        out = binkit.binarize(model, example_input=batch())
        assert all(m.training is training for m in out.modules())

    def test_submodule_modes_preserved_with_example_input(self):
        model = make_mlp().train()
        model.blocks[0].bn.eval()  # a frozen BN inside a training model
        out = binkit.binarize(model, inplace=True, example_input=batch())
        assert out.blocks[0].bn.training is False


class TestActivations:
    def test_reactnet_replaces_prelu(self):
        from binkit_binarizers.reactnet import RPReLU

        model = make_mlp()
        out = binkit.binarize(model, "reactnet")
        assert not any(type(m) is nn.PReLU for m in out.modules())
        assert sum(type(m) is RPReLU for m in out.modules()) == 3
        # RPReLU starts equal to the PReLU it replaced (gamma = zeta = 0, beta = slope)
        x = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(out.blocks[0].act(x), model.blocks[0].act(x))
        out(batch()).sum().backward()

    def test_reactnet_keeps_prelu_when_disabled(self):
        out = binkit.binarize(make_mlp(), {"method": "reactnet", "replace_activations": False})
        assert sum(type(m) is nn.PReLU for m in out.modules()) == 3
        assert binary_names(out) == ["blocks.1.fc", "blocks.2.fc"]

    def test_activation_from_gives_rprelu_to_another_binarizer(self):
        from binkit_binarizers.reactnet import RPReLU, RSignInputQuantizer

        out = binkit.binarize(make_mlp(), {"method": "bifsmn", "activation_from": "reactnet"})
        assert sum(type(m) is RPReLU for m in out.modules()) == 3
        assert not any(isinstance(m, RSignInputQuantizer) for m in out.modules())  # bifsmn's inputs
        assert {m.method for m in out.modules() if isinstance(m, BinaryLayerMixin)} == {"bifsmn"}

    def test_activation_from_is_checked(self):
        with pytest.raises(BinarizationError, match="'xnor' has no activation"):
            binkit.binarize(make_mlp(), {"method": "bifsmn", "activation_from": "xnor"})
        with pytest.raises(BinarizationError, match="replace_activations = false"):
            binkit.binarize(make_mlp(), {"method": "bifsmn", "activation_from": "reactnet",
                                         "replace_activations": False})

    @pytest.mark.parametrize("name", ["xnor", "bireal"])
    def test_methods_without_activation_keep_prelu(self, name):
        out = binkit.binarize(make_cnn(), name)
        assert sum(type(m) is nn.PReLU for m in out.modules()) == 4  # stem + 3 blocks


class TestExecutionOrder:
    def test_candidate_layers_orders(self):
        model = Reordered()
        assert candidate_layers(model) == ["mid_a", "head", "stem", "mid_b"]
        assert candidate_layers(model, example_input=torch.zeros(2, 4)) == ["stem", "mid_a", "mid_b", "head"]

    def test_registration_order_without_example_input(self):
        out = binkit.binarize(Reordered())
        assert sorted(binary_names(out)) == ["head", "stem"]

    def test_execution_order_with_example_input(self):
        out = binkit.binarize(Reordered(), example_input=torch.randn(2, 4))
        assert sorted(binary_names(out)) == ["mid_a", "mid_b"]
        assert out(torch.randn(3, 4)).shape == (3, 3)

    def test_unused_layer_keeps_registration_order(self):
        model = Reordered()
        model.spare = nn.Linear(8, 8)  # never called
        assert candidate_layers(model, example_input=torch.zeros(1, 4))[-1] == "spare"


# ---------------------------------------------------------------------------------------------
# Every registered quantizer
# ---------------------------------------------------------------------------------------------

QUANTIZERS = [(name, {}) for name in registry.names("quantizer")] + [
    ("dorefa", {"weight_bits": 2, "input_bits": 2}),
    ("dorefa", {"weight_bits": 4, "input_bits": 1}),
]
QUANTIZER_IDS = [n if not p else f"{n}-w{p['weight_bits']}a{p['input_bits']}" for n, p in QUANTIZERS]


def weight_groups(q: torch.Tensor) -> torch.Tensor:
    """Groups sharing one scale at most: rows of a Linear weight, (out, in) slices of a conv."""
    if q.dim() == 2:
        return q  # (out, in)
    return q.reshape(q.shape[0] * q.shape[1], -1)  # (out * in/groups, taps)


class TestEveryQuantizer:
    @pytest.mark.parametrize("name, params", QUANTIZERS, ids=QUANTIZER_IDS)
    @pytest.mark.parametrize("make", [make_mlp, make_cnn], ids=["mlp", "small_cnn"])
    def test_binarize_train_step(self, make, name, params):
        entry = registry.get("quantizer", name)
        expected_bits = entry.precision_for(entry.params(**params))
        model = binkit.binarize(make(), {"method": name, "params": params})
        names = binary_names(model)
        assert len(names) >= 2

        model.train()
        labels = torch.arange(4) % NUM_CLASSES
        loss = F.cross_entropy(model(batch()), labels)
        assert torch.isfinite(loss)
        loss.backward()

        for n in names:
            layer = model.get_submodule(n)
            assert layer.method == name
            assert layer.weight_bits == expected_bits, n
            assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all(), n
            q = layer.quantized_weight().detach()
            assert q.shape == layer.weight.shape and torch.isfinite(q).all()
            # k-bit values: at most 2^k distinct values wherever one scale applies
            for group in weight_groups(q):
                assert group.unique().numel() <= 2**expected_bits, (n, group.unique())
            if entry.packing == "sign":
                # ±s_o per output channel (what export folds into the multiplier)
                scale = layer.weight_quantizer.export_scale(layer.weight)
                assert scale.shape == (q.shape[0],)
                expected = torch.where(q >= 0, 1.0, -1.0) * scale.reshape((-1,) + (1,) * (q.dim() - 1))
                torch.testing.assert_close(q, expected)
