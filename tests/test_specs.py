"""binkit/specs.py: TOML loading, validation with field paths, plugin params, round trip."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

import binkit
from binkit import registry
from binkit.entries import ArchitectureEntry, Capabilities
from binkit.errors import SpecError
from binkit.specs import ExperimentSpec, dump_spec, load_spec, parse_spec, resolve, spec_to_toml

ALL_CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))
# grids (binkit compare) name a base spec; the rest are experiment specs
GRIDS = [p for p in ALL_CONFIGS if "base" in tomllib.loads(p.read_text())]
CONFIGS = [p for p in ALL_CONFIGS if p not in GRIDS]

MINIMAL = """
[data]
dataset = "tones"
[model]
architecture = "mlp"
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def spec_errors(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    return dict(info.value.errors)


class TestLoading:
    def test_minimal_spec_gets_real_defaults(self, tmp_path):
        spec = load_spec(write(tmp_path, MINIMAL))
        assert spec.binarization.method == "xnor" and spec.binarization.keep_first
        assert spec.features.shape == (1, 32, 32)  # BiFSMN front-end: 32 mel x 32 frames
        assert spec.training.epochs == 10
        # params normalised to the plugin's full field set
        assert spec.model.params == {"hidden": 256, "depth": 3, "dropout": 0.0, "norm": "batch"}
        xnor_defaults = registry.get("quantizer", "xnor").params().model_dump(mode="json")
        assert spec.binarization.params == xnor_defaults

    @pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
    def test_shipped_configs_resolve(self, path):
        spec = load_spec(path)
        assert isinstance(spec, ExperimentSpec)

    @pytest.mark.parametrize("path", GRIDS, ids=[p.name for p in GRIDS])
    def test_shipped_grids_resolve_every_cell(self, path):
        from binkit.train.compare import load_grid

        grid, cells, _ = load_grid(path)
        assert cells and all(r.spec.name.startswith(grid.name) for _, r in cells)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="spec file not found"):
            load_spec(tmp_path / "nope.toml")

    def test_malformed_toml_reports_line(self, tmp_path):
        errors = spec_errors(tmp_path, "[data]\ndataset = \"tones\n")
        assert "<toml>" in errors and "line 2" in errors["<toml>"]

    def test_not_utf8(self, tmp_path):
        p = tmp_path / "bin.toml"
        p.write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(SpecError, match="UTF-8"):
            load_spec(p)


class TestFieldErrors:
    def test_wrong_type_names_path_and_value(self, tmp_path):
        errors = spec_errors(tmp_path, MINIMAL + "[training]\nepochs = \"ten\"\nlr = -1\n")
        assert "training.epochs" in errors and "'ten'" in errors["training.epochs"]
        assert "training.lr" in errors and "-1" in errors["training.lr"]

    def test_unknown_key_is_rejected(self, tmp_path):
        errors = spec_errors(tmp_path, MINIMAL + "[training]\nepoch = 3\n")
        assert "training.epoch" in errors and "Extra inputs" in errors["training.epoch"]

    def test_closed_choice(self, tmp_path):
        errors = spec_errors(tmp_path, MINIMAL + "[training]\noptimizer = \"rmsprop\"\n")
        assert "'sgd', 'adam' or 'adamw'" in errors["training.optimizer"]

    def test_missing_section(self, tmp_path):
        errors = spec_errors(tmp_path, "[data]\ndataset = \"tones\"\n")
        assert "model" in errors and "required" in errors["model"].lower()

    def test_list_index_in_path(self, tmp_path):
        errors = spec_errors(tmp_path, MINIMAL + "[[binarization.overrides]]\npattern = 3\n")
        assert "binarization.overrides[0].pattern" in errors

    def test_cross_field_rules(self, tmp_path):
        errors = spec_errors(tmp_path, MINIMAL + "[distillation]\nenabled = true\n")
        assert "teacher" in errors["distillation"]
        errors = spec_errors(tmp_path, MINIMAL + "[binarization]\nweights = false\ninputs = false\n")
        assert "enabled = false" in errors["binarization"]
        errors = spec_errors(tmp_path, MINIMAL + "[features]\nn_fft = 256\nwin_length = 512\n")
        assert "win_length" in errors["features"]


class TestPluginResolution:
    def test_unknown_plugin_names_list_known_ones(self, tmp_path):
        errors = spec_errors(tmp_path, """
            [data]
            dataset = "tonez"
            [model]
            architecture = "mlp"
            [binarization]
            method = "xnor-net"
        """)
        assert "did you mean 'tones'" in errors["data.dataset"]
        assert "known quantizers" in errors["binarization.method"] and "xnor" in errors["binarization.method"]

    def test_activation_from_must_name_a_method_with_an_activation(self, tmp_path):
        spec = load_spec(write(tmp_path, MINIMAL + '[binarization]\nmethod = "bifsmn"\nactivation_from = "reactnet"\n'))
        assert spec.binarization.activation_from == "reactnet"
        errors = spec_errors(tmp_path, MINIMAL + '[binarization]\nactivation_from = "reactnett"\n')
        assert "known quantizers" in errors["binarization.activation_from"]
        errors = spec_errors(tmp_path, MINIMAL + '[binarization]\nactivation_from = "xnor"\n')
        assert "'xnor' has no activation" in errors["binarization.activation_from"]
        errors = spec_errors(tmp_path, MINIMAL + '[binarization]\nactivation_from = "reactnet"\n'
                             'replace_activations = false\n')
        assert "replace_activations = false" in errors["binarization.activation_from"]

    def test_plugin_params_validated_by_the_plugins_model(self, tmp_path):
        errors = spec_errors(tmp_path, """
            [data]
            dataset = "tones"
            [model]
            architecture = "mlp"
            params = { hidden = "wide", depthh = 2 }
            [binarization]
            method = "dorefa"
            params = { weight_bits = 12 }
        """)
        assert "'wide'" in errors["model.params.hidden"]
        assert "architecture 'mlp' from binkit:kws" in errors["model.params.hidden"]
        assert "model.params.depthh" in errors
        assert "12" in errors["binarization.params.weight_bits"]
        assert "quantizer 'dorefa'" in errors["binarization.params.weight_bits"]

    def test_all_errors_reported_together(self, tmp_path):
        errors = spec_errors(tmp_path, """
            [data]
            dataset = "nope"
            [model]
            architecture = "nope"
        """)
        assert {"data.dataset", "model.architecture"} <= set(errors)

    def test_disabled_binarization_does_not_resolve_method(self, tmp_path):
        spec = load_spec(write(tmp_path, MINIMAL + "[binarization]\nenabled = false\nmethod = \"whatever\"\n"))
        assert spec.binarization.method == "whatever"

    def test_distiller_needing_taps_vs_architecture_without_taps(self, tmp_path, clean_registry):
        binkit.register_architecture(ArchitectureEntry(name="opaque", factory=lambda *a: None,
                                                       capabilities=lambda p: Capabilities()))
        from binkit.entries import DistillerEntry

        binkit.register_distiller(DistillerEntry(name="tapdist", factory=lambda p: None, needs_taps=True))
        errors = spec_errors(tmp_path, """
            [data]
            dataset = "tones"
            [model]
            architecture = "opaque"
            [distillation]
            enabled = true
            method = "tapdist"
            teacher = "t.pt"
        """)
        assert "'tapdist' needs feature taps" in errors["distillation.method"]
        assert "'opaque'" in errors["distillation.method"]

    def test_views_the_architecture_lacks(self, tmp_path):
        errors = spec_errors(tmp_path, MINIMAL + "[training]\nviews = { \"4\" = 0.5 }\n")
        assert "has no view" in errors["training.views"] and "'mlp'" in errors["training.views"]

    def test_resolve_without_load(self):
        spec = parse_spec({"data": {"dataset": "tones"}, "model": {"architecture": "small_cnn"}})
        resolved = resolve(spec)
        assert resolved.architecture.name == "small_cnn"
        assert resolved.quantizer.name == "xnor"
        assert resolved.architecture_params.channels == 64


class TestRoundTrip:
    FULL = """
        name = "rt"
        [data]
        dataset = "tones"
        params = { num_classes = 4 }
        [features]
        kind = "mfcc"
        n_mels = 40
        n_mfcc = 13
        n_fft = 400
        win_length = 400
        hop_length = 160
        [model]
        architecture = "small_cnn"
        params = { channels = 8 }
        [binarization]
        method = "irnet"
        exclude = ["blocks.0.*"]
        [[binarization.overrides]]
        pattern = "blocks.1.conv"
        method = "bireal"
        [[binarization.overrides]]
        pattern = "blocks.2.conv"
        enabled = false
        [distillation]
        enabled = true
        teacher = "runs/teacher/model.pt"
        params = { temperature = 2.0 }
        [training]
        optimizer = "sgd"
        lr = 0.005
        weight_decay = 1e-4
        epochs = 3
        [export]
        float16 = false
    """

    def test_load_dump_load_is_exact(self, tmp_path):
        first = load_spec(write(tmp_path, self.FULL))
        dumped = dump_spec(first, tmp_path / "dumped.toml")
        second = load_spec(dumped)
        assert second == first
        assert second.model_dump() == first.model_dump()
        # and the text is a fixed point
        assert spec_to_toml(second) == dumped.read_text()
        assert second.binarization.overrides[1].weights is None  # None survives (omitted in TOML)

    def test_dump_is_atomic(self, tmp_path, monkeypatch):
        spec = load_spec(write(tmp_path, MINIMAL))
        target = tmp_path / "out.toml"
        target.write_text("old")
        import binkit.atomic

        def boom(*_a, **_k):
            raise OSError("disk full")

        monkeypatch.setattr(binkit.atomic.os, "replace", boom)
        with pytest.raises(OSError, match="disk full"):
            dump_spec(spec, target)
        assert target.read_text() == "old"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.toml")] == []
