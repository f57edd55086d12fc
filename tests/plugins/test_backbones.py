"""The published KWS backbones of plugins/binkit_kws: DS-CNN, TC-ResNet, BC-ResNet.

Shapes and sizes are written out here from the papers' layouts (Hello Edge arXiv:1711.07128 with
the TF code's size lists; TC-ResNet arXiv:1904.03814 Table 1; BC-ResNet arXiv:2106.04140
Table 1), independently of the plugin code. Also: binarization keeps exactly the first conv and
the classifier in full precision, HED and KD run on these backbones in the trainer, and a teacher
the distiller cannot compare with the student is refused before training, naming both.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from binkit import registry
from binkit.distill import DistillOutputs
from binkit.errors import SpecError
from binkit.nn.layers import BinaryLayerMixin
from binkit.nn.surgery import binarize, candidate_layers
from binkit.specs import parse_spec, resolve
from binkit.train import fit

FEATURES = [(1, 32, 32), (1, 40, 49)]

# (architecture, params) covering every size; the taps' shapes for input (batch, 1, F, T):
CASES = [
    ("dscnn", {"size": "S"}),
    ("dscnn", {"size": "M"}),
    ("dscnn", {"size": "L"}),
    ("tcresnet", {"depth": 8}),
    ("tcresnet", {"depth": 14}),
    ("tcresnet", {"depth": 8, "width": 1.5}),
    ("bcresnet", {"width": 1}),
    ("bcresnet", {"width": 8}),
    ("bcresnet", {"width": 1, "subspectral": False}),
]
IDS = [f"{a}-{'-'.join(f'{k}{v}' for k, v in p.items())}" for a, p in CASES]


def build(arch: str, params: dict, feature_shape=(1, 32, 32), num_classes: int = 12) -> nn.Module:
    entry = registry.get("architecture", arch)
    return entry.factory(entry.params.model_validate(params), num_classes, feature_shape)


def ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def expected_taps(arch: str, params: dict, f: int, t: int) -> list[tuple[int, ...]]:
    """Per-example tap shapes from the papers' layouts."""
    if arch == "dscnn":
        c, n, stem, first = {"S": (64, 4, (2, 2), (1, 1)), "M": (172, 4, (1, 2), (2, 2)),
                             "L": (276, 5, (1, 2), (2, 2))}[params["size"]]
        f, t = ceil_div(ceil_div(f, stem[0]), first[0]), ceil_div(ceil_div(t, stem[1]), first[1])
        return [(c, f, t)] * n
    if arch == "tcresnet":
        k, per_stage = params.get("width", 1.0), 1 if params["depth"] == 8 else 2
        out = []
        for stage, base in enumerate((24, 32, 48), start=1):
            out += [(round(base * k), ceil_div(t, 2 ** stage))] * per_stage
        return out
    tau = params["width"]
    out, freq = [], ceil_div(f, 2)
    for base, blocks, stride in ((8, 2, 1), (12, 2, 2), (16, 4, 2), (20, 4, 1)):
        freq = ceil_div(freq, stride)
        out += [(round(base * tau), freq, t)] * blocks
    return out


def params_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class TestShapes:
    @pytest.mark.parametrize("feature_shape", FEATURES)
    @pytest.mark.parametrize("arch,params", CASES, ids=IDS)
    def test_forward_and_taps(self, arch, params, feature_shape):
        torch.manual_seed(0)
        model = build(arch, params, feature_shape, num_classes=5).eval()
        with torch.no_grad():
            y = model(torch.randn(3, *feature_shape))
        assert y.shape == (3, 5) and torch.isfinite(y).all()
        entry = registry.get("architecture", arch)
        caps = entry.capabilities(entry.params.model_validate(params))
        assert tuple(model.taps) == caps.taps and caps.views == {}
        want = expected_taps(arch, params, *feature_shape[1:])
        assert [tuple(v.shape[1:]) for v in model.taps.values()] == want
        assert all(v.shape[0] == 3 for v in model.taps.values())

    @pytest.mark.parametrize("arch,params", CASES[::3], ids=IDS[::3])
    def test_wrong_input_and_view_refused(self, arch, params):
        model = build(arch, params)
        with pytest.raises(ValueError, match="expects input"):
            model(torch.zeros(2, 1, 40, 32))
        with pytest.raises(ValueError, match="no views"):
            model(torch.zeros(2, 1, 32, 32), view="4")

    def test_feature_shape_must_be_three_dimensional(self):
        for arch in ("dscnn", "tcresnet", "bcresnet"):
            with pytest.raises(ValueError, match=f"{arch} needs \\(channels, n_mels, frames\\)"):
                build(arch, {}, (32, 32))


class TestSizes:
    def test_classifier_input_is_derived_not_fixed(self):
        # pooled heads: classifier input = last width, for every feature shape
        for (arch, params), width in zip(CASES, [64, 172, 276, 48, 48, 72, 32, 256, 32]):
            for fs in FEATURES:
                assert build(arch, params, fs).classifier.in_features == width

    @pytest.mark.parametrize("arch,params,feature_shape,paper", [
        ("tcresnet", {"depth": 8}, (1, 40, 101), 66_000),      # TC-ResNet8, 40 MFCC
        ("tcresnet", {"depth": 14}, (1, 40, 101), 137_000),    # TC-ResNet14
        ("tcresnet", {"depth": 8, "width": 1.5}, (1, 40, 101), 145_000),
        ("bcresnet", {"width": 1}, (1, 40, 101), 9_200),       # BC-ResNet-1, 40 log-mel
        ("bcresnet", {"width": 8}, (1, 40, 101), 321_000),     # BC-ResNet-8
    ])
    def test_parameter_counts_match_the_papers(self, arch, params, feature_shape, paper):
        assert params_count(build(arch, params, feature_shape)) == pytest.approx(paper, rel=0.03)

    def test_dscnn_counts(self):
        # stem 4*10*C + BN 2C, per block 9C + 2C + C*C + 2C, classifier 12C + 12
        for size, (c, n) in {"S": (64, 4), "M": (172, 4), "L": (276, 5)}.items():
            want = 40 * c + 2 * c + n * (9 * c + c * c + 4 * c) + 12 * c + 12
            assert params_count(build("dscnn", {"size": size})) == want

    def test_subspectral_norm_statistics_per_band(self):
        from binkit_kws.bcresnet import SubSpectralNorm

        ssn = SubSpectralNorm(2, 20, 5).train()
        assert ssn.sub_bands == 5 and ssn.bn.num_features == 10
        x = torch.randn(4, 2, 20, 7) + torch.arange(20.0).view(1, 1, 20, 1)  # band means differ
        y = ssn(x).reshape(4, 2, 5, 4, 7)
        assert torch.allclose(y.mean((0, 3, 4)), torch.zeros(2, 5), atol=1e-5)
        # the largest divisor of the frequency size not above sub_bands
        assert SubSpectralNorm(2, 16, 5).sub_bands == 4 and SubSpectralNorm(2, 7, 5).sub_bands == 1
        bn = build("bcresnet", {"width": 1, "subspectral": False}).blocks[0].freq_norm
        assert type(bn) is nn.BatchNorm2d


class TestBinarization:
    @pytest.mark.parametrize("method", ["bnn", "bifsmn"])
    @pytest.mark.parametrize("arch,params", [CASES[0], CASES[4], CASES[6]], ids=[IDS[0], IDS[4], IDS[6]])
    def test_binary_everywhere_but_first_and_last(self, arch, params, method):
        model = build(arch, {**params, "activation": "prelu"})
        x = torch.randn(2, 1, 32, 32)
        order = candidate_layers(model, example_input=x)
        assert order[0] == "stem" and order[-1] == "classifier"
        assert order == candidate_layers(model)  # registration order = execution order
        binary = binarize(model, method)
        layers = {n: m for n, m in binary.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
        assert len(layers) == len(order)
        for n, m in layers.items():
            if n in ("stem", "classifier"):
                assert not isinstance(m, BinaryLayerMixin), n
            else:
                assert isinstance(m, BinaryLayerMixin) and m.is_binary and m.method == method, n
        binary.train()
        loss = binary(x).logsumexp(-1).sum()
        loss.backward()
        assert binary.stem.weight.grad.abs().sum() > 0

    def test_prelu_activation_param(self):
        relu = build("tcresnet", {"depth": 8})
        prelu = build("tcresnet", {"depth": 8, "activation": "prelu"})
        assert not any(isinstance(m, nn.PReLU) for m in relu.modules())
        assert sum(isinstance(m, nn.PReLU) for m in prelu.modules()) == 1 + 3 * 3  # stem; 3 per block


class TestParams:
    @pytest.mark.parametrize("arch,params,field,allowed", [
        ("dscnn", {"size": "XL"}, "size", "'S', 'M' or 'L'"),
        ("tcresnet", {"depth": 10}, "depth", "8 or 14"),
        ("bcresnet", {"width": 4}, "width", "1, 1.5, 2, 3, 6 or 8"),
        ("tcresnet", {"width": 0}, "width", "greater than 0"),
        ("bcresnet", {"activation": "gelu"}, "activation", "'relu' or 'prelu'"),
        ("dscnn", {"sizes": "S"}, "sizes", "Extra inputs"),
    ])
    def test_bad_params_refused_at_resolve(self, arch, params, field, allowed):
        spec = parse_spec({"data": {"dataset": "tones"}, "model": {"architecture": arch, "params": params}})
        with pytest.raises(SpecError) as info:
            resolve(spec)
        errors = dict(info.value.errors)
        assert f"model.params.{field}" in errors
        assert allowed in errors[f"model.params.{field}"] and arch in errors[f"model.params.{field}"]

    def test_registered(self):
        names = registry.entries("architecture")
        for arch in ("dscnn", "tcresnet", "bcresnet"):
            entry = registry.get("architecture", arch)
            assert arch in names and entry.provider.endswith(":kws") and "arXiv" in entry.reference


class TestHEDOnModels:
    @pytest.mark.parametrize("arch,params", [CASES[0], CASES[3], CASES[6]], ids=[IDS[0], IDS[3], IDS[6]])
    def test_hed_between_same_backbones(self, arch, params):
        torch.manual_seed(0)
        hed = registry.get("distiller", "hed").factory(None)
        teacher = build(arch, params).eval()
        student = binarize(build(arch, {**params, "activation": "prelu"}), "bnn")
        x = torch.randn(4, 1, 32, 32)
        with torch.no_grad():
            t_out = DistillOutputs(teacher(x), dict(teacher.taps))
        loss = hed(DistillOutputs(student(x), dict(student.taps)), t_out)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
        loss.backward()
        assert student.stem.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- trainer


def tiny_spec(arch: str, params: dict, **overrides):
    data = {
        "name": "tiny",
        "data": {"dataset": "tones", "params": {"num_classes": 3, "train_per_class": 8,
                                                  "val_per_class": 2, "test_per_class": 2}},
        "model": {"architecture": arch, "params": params},
        "binarization": {"enabled": False},
        "training": {"epochs": 1, "batch_size": 12, "seed": 1},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return parse_spec(data)


TEACHER = ("tcresnet", {"depth": 8, "width": 0.5})


@pytest.fixture(scope="module")
def tiny_data():
    resolved = resolve(tiny_spec(*TEACHER))
    return resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("teacher")
    fit(tiny_spec(*TEACHER), out, progress=False, data=tiny_data)
    return str(out / "model.pt")


def distil(arch, params, distiller, teacher, binarization=None):
    return tiny_spec(arch, params, binarization=binarization or {"enabled": False},
                     distillation={"enabled": True, "method": distiller, "teacher": teacher, "weight": 0.5})


class TestDistillationInTrainer:
    def test_hed_same_backbone_binary_student(self, teacher_path, tiny_data):
        spec = distil(TEACHER[0], {**TEACHER[1], "activation": "prelu"}, "hed", teacher_path,
                      {"enabled": True, "method": "bnn"})
        result = fit(spec, None, progress=False, data=tiny_data)
        assert math.isfinite(result.history[0].train_loss) and result.history[0].train_loss > 0

    @pytest.mark.parametrize("arch,params", [("dscnn", {"size": "S"}), ("bcresnet", {"width": 1})])
    def test_kd_across_backbones_is_accepted(self, teacher_path, tiny_data, arch, params):
        result = fit(distil(arch, params, "kd", teacher_path), None, progress=False, data=tiny_data)
        assert math.isfinite(result.history[0].train_loss)

    @pytest.mark.parametrize("arch,params", [("bcresnet", {"width": 1}), ("tcresnet", {"depth": 8, "width": 1.0}),
                                             ("tcresnet", {"depth": 14, "width": 0.5})])
    def test_hed_with_mismatched_taps_refused_before_training(self, teacher_path, tiny_data, tmp_path,
                                                              arch, params):
        with pytest.raises(ValueError) as info:
            fit(distil(arch, params, "hed", teacher_path), tmp_path / "run", progress=False, data=tiny_data)
        msg = str(info.value)
        assert "distiller 'hed' cannot compare" in msg
        assert f"student {arch!r}" in msg and "teacher 'tcresnet'" in msg
        assert not (tmp_path / "run").exists()  # refused before the run folder was started

    def test_hed_with_a_tapless_teacher_refused_before_training(self, tmp_path, tiny_data, clean_registry):
        from binkit.entries import ArchitectureEntry

        clean_registry.register_architecture(ArchitectureEntry(
            name="opaque", factory=lambda p, n, fs: nn.Sequential(nn.Flatten(), nn.Linear(math.prod(fs), n))))
        fit(tiny_spec("opaque", {}), tmp_path / "teacher", progress=False, data=tiny_data)
        spec = distil(*TEACHER, "hed", str(tmp_path / "teacher" / "model.pt"))
        with pytest.raises(ValueError, match="'hed' needs feature taps, but the teacher .*'opaque'.* exposes "
                                             "none; student is 'tcresnet'"):
            fit(spec, tmp_path / "run", progress=False, data=tiny_data)
        assert not (tmp_path / "run").exists()
        # logit KD needs no taps: the same teacher is fine
        assert fit(distil(*TEACHER, "kd", str(tmp_path / "teacher" / "model.pt")), None, progress=False,
                   data=tiny_data).history
