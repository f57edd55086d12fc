"""binkit/train/compare.py (`binkit compare`) and the demo built on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from binkit.cli import main
from binkit.errors import SpecError
from binkit.train.build import load_checkpoint
from binkit.train.compare import load_grid, run_grid
from binkit.train.report import evaluate_artifact, split_arrays

BASE = """
name = "base"
[data]
dataset = "tones"
params = { num_classes = 3, train_per_class = 12, val_per_class = 4, test_per_class = 4 }
[model]
architecture = "mlp"
params = { hidden = 16, depth = 2 }
[binarization]
method = "xnor"
[training]
epochs = 1
batch_size = 8
"""


def write_grid(tmp_path: Path, body: str) -> Path:
    (tmp_path / "base.toml").write_text(BASE)
    grid = tmp_path / "grid.toml"
    grid.write_text(f'name = "g"\nbase = "base.toml"\nout = "{tmp_path / "out"}"\n' + body)
    return grid


GRID = """
[[cells]]
name = "teacher"
overrides = { binarization = { enabled = false } }

[[cells]]
name = "student"
overrides = { distillation = { enabled = true, method = "kd", teacher = "{run:teacher}" }, training = { init_from = "{run:teacher}" } }

[product]
architectures = ["mlp"]
methods = ["bnn", "bireal"]
"""


def test_grid_cells_order_substitution_and_product(tmp_path):
    grid, cells, out = load_grid(write_grid(tmp_path, GRID))
    assert [c.name for c, _ in cells] == ["teacher", "student", "mlp-bnn", "mlp-bireal"]
    student = cells[1][1].spec
    assert student.distillation.teacher == str(out / "teacher" / "model.pt")
    assert cells[2][1].spec.binarization.method == "bnn"
    assert cells[0][1].spec.name == "g-teacher"


def test_a_borrowed_activation_is_named_in_the_method_column(tmp_path):
    path = write_grid(tmp_path, '[[cells]]\nname = "bnn-rprelu"\n'
                      'overrides = { binarization = { method = "bnn", activation_from = "reactnet" } }\n')
    rows, out = run_grid(path, progress=False)
    assert rows[0]["method"] == "bnn + reactnet activation"
    assert "| bnn-rprelu | mlp | bnn + reactnet activation |" in (out / "compare.md").read_text()


def test_run_grid_tables_and_skips_finished_cells(tmp_path, capsys):
    path = write_grid(tmp_path, GRID)
    rows, out = run_grid(path, progress=False)
    assert [r["cell"] for r in rows] == ["teacher", "student", "mlp-bnn", "mlp-bireal"]
    assert rows[0]["method"] == "fp32" and rows[1]["distiller"] == "kd"
    assert rows[2]["compression"] > 1 and rows[0]["compression"] == pytest.approx(1.0)
    md = (out / "compare.md").read_text()
    assert "| student | mlp | xnor | kd |" in md
    assert json.loads((out / "compare.json").read_text())[3]["method"] == "bireal"
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    rows2, _ = run_grid(path, progress=False)
    assert "finished earlier, skipped" in capsys.readouterr().out
    assert [r["test_acc"] for r in rows2] == [r["test_acc"] for r in rows]


@pytest.mark.parametrize("body,match", [
    ('[[cells]]\nname = "a"\noverrides = { training = { init_from = "{run:later}" } }\n', "not an earlier cell"),
    ('[[cells]]\nname = "a"\n[[cells]]\nname = "a"\n', "duplicate cell names"),
    ('[[cells]]\nname = "a"\noverrides = { training = { epochz = 3 } }\n', "cells.a: training.epochz"),
    ('', "needs \\[\\[cells\\]\\] or a \\[product\\]"),
    ('snr = [nan]\n[[cells]]\nname = "a"\n', "finite number of decibels"),
    ('snr = [10, 10]\n[[cells]]\nname = "a"\n', "snr values repeat"),
])
def test_bad_grids_fail_before_training(tmp_path, body, match):
    with pytest.raises(SpecError, match=match):
        load_grid(write_grid(tmp_path, body))


def test_compare_and_demo_commands(tmp_path, capsys):
    path = write_grid(tmp_path, GRID)
    assert main(["compare", str(path), "--only", "teacher", "-q"]) == 0
    assert "| teacher | mlp | fp32 |" in capsys.readouterr().out
    assert main(["demo", "--grid", str(path), "--epochs", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "expect about" in out and "## Per view" in out
    demo = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert {r["run"] for r in demo["per_view"]} == {"teacher", "student", "mlp-bnn", "mlp-bireal"}
    assert all(r["torch_latency_ms"] > 0 for r in demo["per_view"])
    rows = {r["run"]: r for r in demo["per_view"]}
    assert rows["teacher"]["engine_acc"] is None  # full precision: nothing to export
    for run in ("student", "mlp-bnn"):  # exported, then run on the engine over the test split
        assert (tmp_path / "out" / run / "model.bkm").is_file()
        assert rows[run]["artifact_bytes"] == (tmp_path / "out" / run / "model.bkm").stat().st_size
        assert rows[run]["engine_acc"] == pytest.approx(rows[run]["test_acc"], abs=0.1)
        assert rows[run]["engine_latency_us"] > 0
    assert rows["mlp-bireal"]["engine_acc"] is not None or "not exported" in out
    assert (tmp_path / "out" / "reports" / "student" / "confusion_test.png").is_file()
    assert main(["compare", str(tmp_path / "missing.toml")]) == 2


def test_report_tabulates_finished_cells_and_trains_nothing(tmp_path, capsys):
    path = write_grid(tmp_path, GRID)
    assert main(["compare", str(path), "--report", "-q"]) == 1  # nothing finished yet
    assert "no finished cell" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # a report of nothing leaves nothing behind
    assert main(["compare", str(path), "--only", "teacher,mlp-bnn", "-q"]) == 0
    capsys.readouterr()
    assert main(["compare", str(path), "--report", "-q"]) == 0
    out = capsys.readouterr().out
    assert "student: not finished, left out of the table" in out
    assert "mlp-bireal: not finished" in out
    assert not (tmp_path / "out" / "student").exists() and not (tmp_path / "out" / "mlp-bireal").exists()
    rows = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert [r["cell"] for r in rows] == ["teacher", "mlp-bnn"]


def test_report_rebuilds_the_counts_of_cells_whose_weights_stayed_elsewhere(tmp_path, capsys):
    path = write_grid(tmp_path, GRID)
    assert main(["compare", str(path), "--only", "teacher,mlp-bnn,mlp-bireal", "-q"]) == 0
    capsys.readouterr()
    full = {r["cell"]: r for r in json.loads((tmp_path / "out" / "compare.json").read_text())}
    # mlp-bnn's weights stayed on the machine that trained it; its result records the shape
    (tmp_path / "out" / "mlp-bnn" / "model.pt").unlink()
    # mlp-bireal's result predates feature_shape: it cannot be rebuilt and is left out, named
    (tmp_path / "out" / "mlp-bireal" / "model.pt").unlink()
    result = tmp_path / "out" / "mlp-bireal" / "result.json"
    result.write_text(json.dumps({k: v for k, v in json.loads(result.read_text()).items() if k != "feature_shape"}))
    assert main(["compare", str(path), "--report", "-q"]) == 0
    out = capsys.readouterr().out
    assert "mlp-bireal: finished, left out of the table" in out and "model.pt is missing" in out
    rows = {r["cell"]: r for r in json.loads((tmp_path / "out" / "compare.json").read_text())}
    assert list(rows) == ["teacher", "mlp-bnn"]
    for key in ("test_acc", "params", "memory_kib", "views"):
        assert rows["mlp-bnn"][key] == full["mlp-bnn"][key]


def test_seeds_expand_cells_and_the_table_gives_each_group_over_its_seeds(tmp_path):
    body = ('[[cells]]\nname = "fp"\nseeds = [0, 3]\noverrides = { binarization = { enabled = false } }\n'
            '[product]\narchitectures = ["mlp"]\nmethods = ["bnn"]\nname = "{method}"\nseeds = [1, 2, 5]\n')
    path = write_grid(tmp_path, body)
    grid, cells, out = load_grid(path)
    assert [c.name for c, _ in cells] == ["fp-seed0", "fp-seed3", "bnn-seed1", "bnn-seed2", "bnn-seed5"]
    assert [r.spec.training.seed for _, r in cells] == [0, 3, 1, 2, 5]
    assert cells[1][1].spec.binarization.enabled is False and cells[4][1].spec.binarization.method == "bnn"
    rows, _ = run_grid(path, progress=False)
    accs = [r["test_acc"] for r in rows[2:]]
    mean = sum(accs) / 3
    sd = (sum((a - mean) ** 2 for a in accs) / 2) ** 0.5
    md = (out / "compare.md").read_text()
    assert "Over seeds" in md
    assert f"| bnn | 3 | full | {mean:.4f} | {100 * sd:.2f} | {min(accs):.4f} | {max(accs):.4f} |" in md
    assert "| fp | 2 | full |" in md


def test_only_takes_a_seeded_group_by_its_name(tmp_path):
    body = ('[[cells]]\nname = "fp"\nseeds = [0, 3]\noverrides = { binarization = { enabled = false } }\n'
            '[[cells]]\nname = "bnn"\nseeds = [1]\noverrides = { binarization = { method = "bnn" } }\n')
    path = write_grid(tmp_path, body)
    rows, out = run_grid(path, progress=False, only=["fp", "bnn-seed1", "fp-seed3"])
    assert [r["cell"] for r in rows] == ["fp-seed0", "fp-seed3", "bnn-seed1"]
    with pytest.raises(ValueError, match=r"unknown cell\(s\) \['f'\].*'fp-seed0'.*'fp'"):
        run_grid(path, progress=False, only=["f"])


def test_snr_scores_every_cell_with_noise_and_the_groups_over_seeds(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "sc_dataset_tests", Path(__file__).resolve().parents[1] / "data" / "test_speech_commands_dataset.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    helpers.make_tree(tmp_path / "tree")
    (tmp_path / "sc.toml").write_text(helpers.mlp_spec(tmp_path / "tree", tmp_path / "cache"))
    grid = tmp_path / "grid.toml"
    grid.write_text(f'name = "g"\nbase = "sc.toml"\nout = "{tmp_path / "out"}"\nsnr = [300, 0]\n'
                    '[[cells]]\nname = "bnn"\nseeds = [0, 1]\noverrides = { binarization = { method = "bnn" } }\n')
    rows, out = run_grid(grid, progress=False)
    for r in rows:
        assert list(r["noisy"]) == ["300dB", "0dB"]
        # 300 dB: noise below float precision, the clean score; 0 dB: the clips of `binkit eval --snr`
        assert r["noisy"]["300dB"]["full"] == r["views"]["full"]["test_acc"]
        assert main(["eval", str(out / r["cell"]), "--snr", "0"]) == 0
        report = json.loads((out / r["cell"] / "reports" / "eval_test.json").read_text())
        assert r["noisy"]["0dB"] == report["noisy_accuracy"]["0dB"]
    md = (out / "compare.md").read_text()
    assert "| acc full | acc 300dB (full) | acc 0dB (full) |" in md
    noisy = [r["noisy"]["0dB"]["full"] for r in rows]
    assert f"| bnn-seed1 | mlp | bnn | - | full | {rows[1]['test_acc']:.4f} | {rows[1]['test_acc']:.4f} | " \
           f"{noisy[1]:.4f} |" in md
    assert f"| bnn | 2 | full @ 0dB | {sum(noisy) / 2:.4f} |" in md
    # a dataset without noise files: the cells are tabulated, with a note instead of the columns
    (tmp_path / "t").mkdir()
    tones = write_grid(tmp_path / "t", 'snr = [10]\n[[cells]]\nname = "a"\n')
    rows, out = run_grid(tones, progress=False)
    assert "needs cached waveforms and background-noise files" in rows[0]["noisy"]["note"]
    md = (out / "compare.md").read_text()
    assert "Not scored with noise:" in md and "acc 10dB" not in md


@pytest.mark.parametrize("seeds,match", [("[1, 1]", "seeds repeat"), ("[-1]", "non-negative")])
def test_bad_seeds_fail_before_training(tmp_path, seeds, match):
    with pytest.raises(SpecError, match=match):
        load_grid(write_grid(tmp_path, f'[[cells]]\nname = "a"\nseeds = {seeds}\n'))


def test_jobs_train_cells_in_processes_after_the_cells_they_need(tmp_path, capsys):
    path = write_grid(tmp_path, GRID)
    assert main(["compare", str(path), "--jobs", "3", "-q"]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "out"
    rows = json.loads((root / "compare.json").read_text())
    assert [r["cell"] for r in rows] == ["teacher", "student", "mlp-bnn", "mlp-bireal"]
    assert all("error" not in r for r in rows)
    for cell in ("teacher", "student", "mlp-bnn", "mlp-bireal"):
        assert "training" in (root / "logs" / f"{cell}.log").read_text()
        assert f"{cell}: finished in" in out and f"{cell}: trained above" in out
    assert "finished earlier" not in out
    # the student took the teacher's model.pt: it started only once the teacher had finished
    assert (root / "student" / "spec.toml").stat().st_mtime_ns >= (root / "teacher" / "result.json").stat().st_mtime_ns
    assert "teacher" in (root / "student" / "spec.toml").read_text()
    # a second call finds every cell finished and starts no process
    assert main(["compare", str(path), "--jobs", "3", "-q"]) == 0
    again = capsys.readouterr().out
    assert "started" not in again and again.count("finished earlier, skipped") == 4


def test_jobs_record_a_failed_cell_and_skip_the_cells_that_need_it(tmp_path, capsys):
    body = (f'[[cells]]\nname = "broken"\noverrides = {{ training = {{ init_from = "{tmp_path / "missing.pt"}" }} }}\n'
            '[[cells]]\nname = "after"\noverrides = { training = { init_from = "{run:broken}" } }\n'
            '[[cells]]\nname = "fine"\n')
    path = write_grid(tmp_path, body)
    assert main(["compare", str(path), "--jobs", "2", "-q"]) == 1
    captured = capsys.readouterr()
    assert "2 cell(s) failed: broken, after" in captured.err
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "- broken: exit status 2; see" in md and "- after: not trained: it needs cell(s) broken" in md
    assert "| fine |" in md and not (tmp_path / "out" / "after").exists()
    assert "missing.pt" in (tmp_path / "out" / "logs" / "broken.log").read_text()


def test_a_diverging_cell_is_recorded_and_the_grid_goes_on(tmp_path, capsys):
    body = ('[[cells]]\nname = "boom"\noverrides = { training = { lr = 10.0, optimizer = "sgd", momentum = 0.99 }, '
            'model = { params = { norm = "none" } } }\n[[cells]]\nname = "fine"\n')
    path = write_grid(tmp_path, body)
    import binkit.train.trainer as trainer

    real_fit = trainer.fit

    def fit(resolved, *a, **k):
        if resolved.spec.name.endswith("boom"):
            raise FloatingPointError("g-boom: loss became nan at epoch 1")
        return real_fit(resolved, *a, **k)

    import unittest.mock

    with unittest.mock.patch.object(trainer, "fit", fit):
        assert main(["compare", str(path), "-q"]) == 1
    captured = capsys.readouterr()
    assert "1 cell(s) failed: boom" in captured.err
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "- boom: FloatingPointError: g-boom: loss became nan" in md and "| fine |" in md


def test_deploy_exports_and_measures_every_cell(tmp_path):
    body = ('deploy = true\n[[cells]]\nname = "fp"\noverrides = { binarization = { enabled = false } }\n'
            '[[cells]]\nname = "bnn"\noverrides = { binarization = { method = "bnn" } }\n'
            '[[cells]]\nname = "dorefa"\noverrides = { binarization = { method = "dorefa" } }\n')
    rows, out = run_grid(write_grid(tmp_path, body), progress=False)
    by = {r["cell"]: r for r in rows}
    for cell in ("fp", "bnn"):
        d = by[cell]["deploy"]
        assert d["artifact_bytes"] == (out / cell / "model.bkm").stat().st_size
        view = next(iter(d["views"].values()))
        assert view["accuracy"] == pytest.approx(by[cell]["test_acc"], abs=0.1) and view["latency_us"] > 0
    assert by["bnn"]["deploy"]["artifact_bytes"] < by["fp"]["deploy"]["artifact_bytes"]
    assert "not exported" in by["dorefa"]["deploy"]["note"]  # {0, 1} activations: no binary op for them
    md = (out / "compare.md").read_text()
    assert "runtime us (full)" in md and "- dorefa: not exported" in md

    # the engine's input for a run's split: its own features, labels in class order
    _, meta = load_checkpoint(out / "bnn" / "model.pt")
    data = meta["resolved"].dataset.factory(meta["resolved"].dataset_params, meta["resolved"].spec.features)
    x, y, labels = split_arrays(out / "bnn")
    assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape[1:] == tuple(data.feature_shape)
    assert len(x) == len(y) == len(data.splits["test"]) and labels == list(data.labels)
    assert set(y.tolist()) <= set(range(len(labels)))
    # an artifact meets data whose classes differ: refused by name, before any accuracy is made up
    data.labels = list(reversed(data.labels))
    with pytest.raises(ValueError, match="differ from the data"):
        evaluate_artifact(out / "bnn" / "model.bkm", out / "bnn", data=data, latency_runs=1)
