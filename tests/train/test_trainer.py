"""binkit/train: spec-driven fit, run folder contents, checkpoints, teacher distillation."""

from __future__ import annotations

import json

import pytest
import torch

from binkit.specs import parse_spec, resolve
from binkit.train import build_model, evaluate, fit, load_checkpoint


def tiny_spec(**overrides):
    data = {
        "name": "tiny",
        "data": {"dataset": "tones", "params": {"num_classes": 3, "train_per_class": 24,
                                                  "val_per_class": 6, "test_per_class": 6}},
        "model": {"architecture": "mlp", "params": {"hidden": 32, "depth": 2}},
        "binarization": {"method": "xnor"},
        "training": {"epochs": 2, "batch_size": 16, "seed": 3},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return parse_spec(data)


@pytest.fixture(scope="module")
def tiny_data():
    resolved = resolve(tiny_spec())
    return resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)


class TestFit:
    def test_run_folder_contents(self, tmp_path, tiny_data):
        result = fit(tiny_spec(), tmp_path / "run", progress=False, data=tiny_data)
        run = tmp_path / "run"
        assert {"spec.toml", "metrics.jsonl", "metrics.csv", "model.pt", "result.json"} <= {p.name for p in run.iterdir()}
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 2 and json.loads(lines[0])["epoch"] == 1
        assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
        saved = json.loads((run / "result.json").read_text())
        assert saved["test_acc"] == result.test_acc and saved["best_epoch"] == result.best_epoch
        assert saved["feature_shape"] == list(tiny_data.feature_shape)  # rebuilds the model without its weights
        assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    def test_same_seed_same_result(self, tiny_data):
        a = fit(tiny_spec(), None, progress=False, data=tiny_data)
        b = fit(tiny_spec(), None, progress=False, data=tiny_data)
        assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]

    def test_binary_model_learns_above_chance(self, tiny_data):
        spec = tiny_spec(training={"epochs": 6, "lr": 0.01})
        result = fit(spec, None, progress=False, data=tiny_data)
        assert result.history[-1].train_loss < result.history[0].train_loss
        assert result.val_acc["full"] > 1 / 3

    def test_bnn_weight_constraint_applied_after_steps(self, tiny_data):
        result = fit(tiny_spec(binarization={"method": "bnn"}, training={"lr": 0.5, "epochs": 1}),
                     None, progress=False, data=tiny_data)
        layer = result.model.get_submodule("blocks.1.fc")
        assert layer.weight.abs().max() <= 1.0

    def test_irnet_schedule_reaches_last_epoch(self, tiny_data):
        result = fit(tiny_spec(binarization={"method": "irnet"}, training={"epochs": 3}),
                     None, progress=False, data=tiny_data)
        iq = result.model.get_submodule("blocks.1.fc").input_quantizer
        assert iq.t == pytest.approx(10 ** (-3 + 4 * 2 / 3))


class TestSelection:
    """training.select: which epoch's weights the run keeps."""

    def test_best_full_keeps_the_earliest_best_epoch(self, tiny_data):
        result = fit(tiny_spec(training={"epochs": 5, "lr": 0.01}), None, progress=False, data=tiny_data)
        accs = [h.val_acc["full"] for h in result.history]
        assert result.best_epoch == accs.index(max(accs)) + 1
        # a step too small to change any prediction: every epoch ties, and the first one is kept
        spec = tiny_spec(model={"params": {"hidden": 32, "depth": 2, "norm": "none"}},
                         training={"epochs": 3, "lr": 1e-9})
        frozen = fit(spec, None, progress=False, data=tiny_data)
        assert len({h.val_acc["full"] for h in frozen.history}) == 1
        assert frozen.best_epoch == 1 and [h.selected for h in frozen.history] == [True, False, False]

    def test_last_keeps_the_final_weights(self, tiny_data):
        spec = tiny_spec(training={"epochs": 5, "lr": 0.01, "select": "last"})
        result = fit(spec, None, progress=False, data=tiny_data)
        assert result.best_epoch == 5 and all(h.selected for h in result.history)
        assert result.val_acc["full"] == result.history[-1].val_acc["full"]
        # the same run selected by validation accuracy trains identically; only the kept epoch differs
        best = fit(tiny_spec(training={"epochs": 5, "lr": 0.01}), None, progress=False, data=tiny_data)
        assert [h.train_loss for h in best.history] == [h.train_loss for h in result.history]

    def test_unknown_rule_is_refused(self):
        with pytest.raises(Exception, match="select"):
            tiny_spec(training={"select": "best_loss"})


class TestCheckpoints:
    def test_reload_gives_identical_predictions(self, tmp_path, tiny_data):
        result = fit(tiny_spec(), tmp_path / "run", progress=False, data=tiny_data)
        model, meta = load_checkpoint(tmp_path / "run" / "model.pt")
        x = tiny_data.splits["test"].tensors[0]
        with torch.no_grad():
            assert torch.equal(model(x), result.model.eval()(x))
        assert meta["labels"] == tiny_data.labels

    def test_corrupt_checkpoint(self, tmp_path):
        bad = tmp_path / "model.pt"
        bad.write_bytes(b"not a checkpoint")
        with pytest.raises(ValueError, match="not a readable binkit checkpoint"):
            load_checkpoint(bad)
        torch.save({"state_dict": {}}, bad)
        with pytest.raises(ValueError, match="expected keys"):
            load_checkpoint(bad)
        with pytest.raises(FileNotFoundError):
            load_checkpoint(tmp_path / "missing.pt")

    def test_checkpoint_with_wrong_shapes(self, tmp_path, tiny_data):
        fit(tiny_spec(), tmp_path / "run", progress=False, data=tiny_data)
        ckpt = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
        ckpt["spec_toml"] = ckpt["spec_toml"].replace("hidden = 32", "hidden = 16")
        torch.save(ckpt, tmp_path / "tampered.pt")
        with pytest.raises(ValueError, match="weights do not fit"):
            load_checkpoint(tmp_path / "tampered.pt")


class TestDistillation:
    def test_student_distils_from_a_frozen_teacher(self, tmp_path, tiny_data):
        teacher_result = fit(tiny_spec(binarization={"enabled": False}), tmp_path / "teacher",
                             progress=False, data=tiny_data)
        before = {k: v.clone() for k, v in teacher_result.model.state_dict().items()}
        spec = tiny_spec(distillation={"enabled": True, "method": "kd",
                                       "teacher": str(tmp_path / "teacher" / "model.pt")})
        result = fit(spec, None, progress=False, data=tiny_data)
        assert result.history[0].train_loss > 0
        # the teacher file is untouched
        model, _ = load_checkpoint(tmp_path / "teacher" / "model.pt")
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k])

    def test_teacher_with_other_labels_is_refused(self, tmp_path, tiny_data):
        other = tiny_spec(data={"params": {"num_classes": 4, "train_per_class": 4,
                                           "val_per_class": 2, "test_per_class": 2}})
        fit(other, tmp_path / "teacher", progress=False)
        spec = tiny_spec(distillation={"enabled": True, "teacher": str(tmp_path / "teacher" / "model.pt")})
        with pytest.raises(ValueError, match="trained on labels"):
            fit(spec, None, progress=False, data=tiny_data)


def test_evaluate_counts_exactly(tiny_data):
    resolved = resolve(tiny_spec(binarization={"enabled": False}))
    model = build_model(resolved, tiny_data.num_classes, tiny_data.feature_shape)
    x, y = tiny_data.splits["val"].tensors
    with torch.no_grad():
        expected = (model.eval()(x).argmax(-1) == y).float().mean().item()
    assert evaluate(model, tiny_data.splits["val"], [None], batch_size=5) == {"full": pytest.approx(expected)}


def test_grad_clip_limits_the_update(tiny_data):
    from binkit.train.build import build_model

    def moved(clip: float) -> float:
        spec = tiny_spec(binarization={"enabled": False}, training={"epochs": 1, "grad_clip": clip, "lr": 0.1,
                                                                     "optimizer": "sgd", "momentum": 0.0})
        torch.manual_seed(spec.training.seed)  # fit seeds the same way before building its model
        start = build_model(resolve(spec), tiny_data.num_classes, tiny_data.feature_shape)
        result = fit(spec, None, progress=False, data=tiny_data)
        # parameters only: BatchNorm running statistics move with every forward pass
        return sum(float((a - b).detach().norm()) for a, b in zip(result.model.parameters(), start.parameters()))

    assert moved(1e-6) < 0.01 * moved(0.0)
