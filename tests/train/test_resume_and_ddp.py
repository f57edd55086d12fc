"""Killing a run and resuming it ends with the same metrics; 2-process DDP matches 1 process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch

SPEC = """
name = "resume"
[data]
dataset = "tones"
params = {{ num_classes = 4, train_per_class = {n}, val_per_class = 8, test_per_class = 8 }}
[model]
architecture = "mlp"
params = {{ hidden = 64, depth = 3, norm = "{norm}", dropout = {dropout} }}
[binarization]
method = "xnor"
[training]
epochs = {epochs}
batch_size = 16
lr = 0.01
seed = 7
num_threads = 1
"""


def write_spec(tmp_path: Path, *, n=48, epochs=5, norm="batch", dropout=0.1) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(SPEC.format(n=n, epochs=epochs, norm=norm, dropout=dropout))
    return p


def binkit(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "binkit", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def history(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_killed_run_resumes_to_the_same_result(tmp_path):
    spec = write_spec(tmp_path, n=160, epochs=6)
    straight = tmp_path / "straight"
    proc = binkit("train", str(spec), "-o", str(straight), "-q")
    assert proc.returncode == 0, proc.stderr

    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-m", "binkit", "train", str(spec), "-o", str(killed), "-q"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    metrics = killed / "metrics.jsonl"
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        if child.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (killed / "result.json").exists()
    done_before = len(history(killed))
    assert 2 <= done_before < 6

    # the epochs before the kill claim 1,000 s each in the saved state: the resumed run's wall
    # time must include them (a resumed process alone takes seconds)
    state_path = killed / "checkpoints" / "last.pt"
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    before = json.loads(state["history"])
    state["history"] = json.dumps([{**h, "seconds": 1000.0} for h in before])
    torch.save(state, state_path)

    proc = binkit("train", str(spec), "-o", str(killed), "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert history(killed) == history(straight)
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert (a["test_acc"], a["val_acc"], a["best_epoch"]) == (b["test_acc"], b["val_acc"], b["best_epoch"])
    assert "resuming after epoch" in (killed / "train.log").read_text()
    # wall time counts the epochs before the kill too (not only the resumed process)
    assert 1000.0 * len(before) <= b["seconds"] < 1000.0 * len(before) + 300


def test_resume_with_a_different_spec_is_refused(tmp_path):
    spec = write_spec(tmp_path, epochs=1)
    run = tmp_path / "run"
    assert binkit("train", str(spec), "-o", str(run), "-q").returncode == 0
    spec.write_text(spec.read_text().replace("lr = 0.01", "lr = 0.02"))
    proc = binkit("train", str(spec), "-o", str(run), "--resume", "-q")
    assert proc.returncode == 2 and "different spec" in proc.stderr


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    spec = write_spec(tmp_path, epochs=2)
    run = tmp_path / "run"
    assert binkit("train", str(spec), "-o", str(run), "-q").returncode == 0
    before = json.loads((run / "result.json").read_text())
    assert binkit("train", str(spec), "-o", str(run), "--resume", "-q").returncode == 0
    after = json.loads((run / "result.json").read_text())
    assert before["test_acc"] == after["test_acc"] and before["best_epoch"] == after["best_epoch"]


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_ddp_matches_single_process(tmp_path):
    # No BatchNorm and no dropout: two half-batches with averaged gradients are then the same
    # optimisation as one full batch, up to float summation order. Full precision, because a sign
    # flip of a near-zero latent weight would amplify that rounding difference.
    spec = write_spec(tmp_path, n=32, epochs=3, norm="none", dropout=0.0)
    spec.write_text(spec.read_text().replace('method = "xnor"', "enabled = false"))
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert binkit("train", str(spec), "-o", str(single), "-q").returncode == 0
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--nproc_per_node=2", "--standalone", "-m", "binkit", "train", str(spec),
                           "-o", str(ddp), "-q"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((ddp / "result.json").read_text())
    assert result["world_size"] == 2
    a = torch.load(single / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(ddp / "model.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-3, msg=k)  # float summation order
    hs, hd = history(single), history(ddp)
    for rs, rd in zip(hs, hd):
        assert rs["train_loss"] == pytest.approx(rd["train_loss"], rel=1e-2)
        assert rs["val_acc"] == rd["val_acc"]
