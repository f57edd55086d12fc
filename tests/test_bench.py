"""binkit/bench: plan statistics, the FP32 twin, `binkit bench` and `binkit summary MODEL.bkm`.

No timing assertions: the numbers depend on the machine. What is checked is that every view x
backend and both FP32 baselines are measured, that the storage ratio and MACs agree with counts
made independently (torch modules, binkit.nn.summary), and that bad input fails cleanly.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import binkit
from binkit import registry
from binkit.bench import BINARY_OPS, fp32_parameter_count, plan_rows, storage, view_macs
from binkit.bench.float_model import build_float_model, export_onnx
from binkit.cli import main
from binkit.export import export_model
from binkit.nn.summary import summary
from binkit.runtime.artifact import load_artifact, save_artifact
from kwsparts import kws_ops_parts
from testnets import ConvBNPReLU

FAST = ["--runs", "5", "--warmup", "1", "--reference-runs", "2", "--throughput-runs", "2", "--batch", "4",
        "--profile-repeats", "2", "--peak-seconds", "0.01", "--onnx-exporter", "torchscript", "-q"]


@pytest.fixture(scope="module", autouse=True)
def _reference_backend():
    if "reference" not in registry.names("backend"):
        registry.register_plugin("binkit.runtime.plugin")


@pytest.fixture(autouse=True)
def _thread_env(monkeypatch):
    """`binkit bench` pins BLAS/OpenMP to one thread in os.environ; undo it after each test."""
    from binkit.bench.runner import THREAD_ENV

    for var in THREAD_ENV:
        monkeypatch.setenv(var, "1")


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.num_parameters, generator=g) * 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def dfsmn(tmp_path_factory):
    """A tiny thinnable DFSMN (views 2 and 1) with the BiFSMN front-end, exported."""
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

    torch.manual_seed(0)
    params = DFSMNParams(num_blocks=2, memory_size=16, hidden_size=32, frontend_channels=4,
                         thin_levels=["2", "1"], view_weights={"2": 1.0})
    model = _randomize(binkit.binarize(DFSMN(params, 5, (1, 32, 32)), "bifsmn"))
    path = tmp_path_factory.mktemp("bench") / "dfsmn.bkm"
    export_model(model, path, labels=[f"c{i}" for i in range(5)], feature_spec={"kind": "bifsmn_logmel"},
                 float16=False)
    return model, path


def _small(tmp_path, method="bifsmn", **kw):
    torch.manual_seed(0)
    net = _randomize(binkit.binarize(ConvBNPReLU(), method))
    net.feature_shape = (1, 6, 6)
    path = tmp_path / f"{method}.bkm"
    export_model(net, path, labels=list("abc"), float16=False, **kw)
    return net, path


# ---------------------------------------------------------------------------------------------
# plan statistics and the FP32 twin
# ---------------------------------------------------------------------------------------------


def test_plan_macs_match_the_torch_model(dfsmn):
    model, path = dfsmn
    art = load_artifact(path)
    for view in art.views:
        want = summary(model, forward_kwargs={"view": view}, print_fn=None)
        assert view_macs(art, view) == {"binary": want.binary_macs, "float": want.float_macs}
    rows = plan_rows(art, "2")
    assert [r.index for r in rows] == art.views["2"]["ops"]
    assert {r.op for r in rows if r.runs_binary} == {"bconv2d", "blinear", "bdwconv1d", "bconv1d"}
    assert all(r.binary_macs > 0 for r in rows if r.runs_binary)
    assert all(r.binary_macs == 0 for r in rows if not r.runs_binary)


def test_float_twin_shapes_macs_and_parameters(dfsmn):
    _, path = dfsmn
    art = load_artifact(path)
    fp = build_float_model(art)
    x = torch.randn(3, *art.input_shape)
    for view in art.views:
        with torch.no_grad():
            assert tuple(fp(x, view).shape) == (3, len(art.labels))
        # binkit.nn.summary counts the twin's nn.Conv/nn.Linear modules: all float, same MACs as the plan
        s = summary(fp, forward_kwargs={"view": view}, print_fn=None)
        macs = view_macs(art, view)
        assert s.binary_macs == 0 and s.float_macs == macs["binary"] + macs["float"]
    assert sum(p.numel() for p in fp.parameters()) == fp32_parameter_count(art)
    # the twin's binary-layer weights are the unpacked +-1 weights
    conv = [m for m in fp.modules() if isinstance(m, nn.Conv1d) and m.groups == 1][0]
    assert set(conv.weight.unique().tolist()) <= {-1.0, 1.0}


def test_float_twin_of_a_reactnet_plan_counts_shifts_by_their_offsets(tmp_path):
    """ReActNet's RSign thresholds and RPReLU shifts export as affines sharing one tensor of ones
    as multiplier: the twin and the plan count only their offsets, and agree (they did not:
    `binkit bench` refused every ReActNet artifact). The extra parameters over the BNN export of
    the same network are exactly those offsets."""
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

    params = DFSMNParams(num_blocks=2, memory_size=16, hidden_size=32, frontend_channels=4,
                         thin_levels=["2", "1"], view_weights={"2": 1.0})
    arts = {}
    for method in ("bnn", "reactnet"):
        torch.manual_seed(0)
        model = _randomize(binkit.binarize(DFSMN(params, 5, (1, 32, 32)), method))
        export_model(model, tmp_path / f"{method}.bkm", labels=[f"c{i}" for i in range(5)], float16=False)
        arts[method] = load_artifact(tmp_path / f"{method}.bkm")
    art = arts["reactnet"]
    shifts = {op["tensors"]["offset"] for v in art.views for op in art.view_ops(v) if op["op"] == "affine"
              and np.all(art.tensors[op["tensors"]["multiplier"]] == 1)}
    assert len(shifts) >= 8 and any(n.startswith("ones.") for n in art.tensors)
    want = fp32_parameter_count(arts["bnn"]) + sum(art.tensors[n].size for n in shifts)
    assert fp32_parameter_count(art) == want
    fp = build_float_model(art)
    assert sum(p.numel() for p in fp.parameters()) == want
    x = torch.randn(2, *art.input_shape)
    from binkit.runtime.reference import ReferenceProgram
    for view in art.views:  # the twin's float pass follows the plan (signs aside, it is the same graph)
        with torch.no_grad():
            assert tuple(fp(x, view).shape) == (2, 5)
    assert ReferenceProgram(art).run(x.numpy(), "2").shape == (2, 5)


def test_float_twin_of_a_float_free_input_runs_real_arithmetic(tmp_path):
    """On +-1 inputs (where sign(x) = x) the twin's binary conv equals the artifact's binary op."""
    net, path = _small(tmp_path)
    art = load_artifact(path)
    fp = build_float_model(art)
    (op,) = [o for o in art.ops if o["op"] == "bconv2d"]
    from binkit.runtime.reference import _OPS

    x = np.where(np.random.default_rng(0).standard_normal((2, 8, 6, 6)) < 0, -1.0, 1.0)
    want = _OPS["bconv2d"](op["attrs"], {k: art.tensors[v] for k, v in op["tensors"].items()}, x)
    conv, affine = [fp.layers[k] for k in fp._plans["default"][1][1]]
    with torch.no_grad():
        got = affine(conv(torch.from_numpy(x).float())).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_storage_ratio_against_an_independent_count(tmp_path):
    net, path = _small(tmp_path)
    art = load_artifact(path)
    # FP32 parameters of the same network: the torch model's, less the binary conv's bias (folded
    # with BN into the 2-per-channel scale and shift, which the BN weight and bias already count)
    want = sum(p.numel() for p in net.parameters()) - net.conv.bias.numel()
    assert want == 8 * 9 + 8 + 16 * 8 * 9 + 2 * 16 + 16 + 16 * 36 * 3 + 3
    assert fp32_parameter_count(art) == want
    st = storage(art)
    assert st["artifact_bytes"] == path.stat().st_size
    assert st["fp32_bytes"] == 4 * want
    assert st["ratio"] == pytest.approx(4 * want / path.stat().st_size)
    assert st["packed_weight_bytes"] == 16 * 3 * 3 * 8  # (out, kh, kw, 1 word) uint64
    assert st["header_bytes"] > 0


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_onnx_twin_matches_torch(tmp_path, exporter):
    import onnxruntime as ort

    net, path = _small(tmp_path)
    art = load_artifact(path)
    fp = build_float_model(art)
    assert export_onnx(fp, "default", tmp_path / "m.onnx", exporter) == exporter
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 1, 6, 6)).astype(np.float32)  # batch is dynamic
    with torch.no_grad():
        want = fp(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# binkit bench
# ---------------------------------------------------------------------------------------------


def test_bench_measures_every_view_backend_and_baseline(dfsmn, tmp_path, capsys):
    _, path = dfsmn
    out_json, out_md = tmp_path / "r" / "bench.json", tmp_path / "r" / "bench.md"
    assert main(["bench", str(path), *FAST, "--json", str(out_json), "--markdown", str(out_md)]) == 0
    text = capsys.readouterr().out
    res = json.loads(out_json.read_text())
    art = load_artifact(path)
    backends = binkit.runtime.backend_names()
    got = {(r["backend"], r["view"]) for r in res["latency"]}
    want = {(b, v) for b in backends + ["pytorch-fp32", "onnxruntime-fp32"] for v in art.views}
    assert got == want
    for r in res["latency"]:
        assert r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] and r["clips_per_s"] > 0
        assert r["runs"] == (2 if r["backend"] == "reference" else 5)
        assert r["speedup_vs_ort"] > 0
    assert res["macs"] == {v: view_macs(art, v) for v in art.views}
    # storage: the bench's count (torch twin) against the plan's and the file
    fp_params = sum(p.numel() for p in build_float_model(art).parameters())
    st = res["storage"]
    assert st["fp32_bytes"] == 4 * fp_params and st["artifact_bytes"] == path.stat().st_size
    assert st["ratio"] == pytest.approx(4 * fp_params / path.stat().st_size)
    # per-layer rows: every op of every view on the reference (timed op by op), binary ops flagged
    ref_rows = [r for r in res["layers"] if r["backend"] == "reference"]
    for v in art.views:
        rows = [r for r in ref_rows if r["view"] == v]
        assert [r["index"] for r in rows] == art.views[v]["ops"]
        binary = [r for r in rows if r["runs_binary"]]
        assert binary and all(r["seconds"] > 0 and r["binary_ops_per_s"] > 0 for r in binary)
        assert sum(r["binary_macs"] for r in binary) == view_macs(art, v)["binary"]
    assert res["frontend"]["kind"] == "bifsmn_logmel" and res["frontend"]["median_ms"] > 0
    assert res["baselines"]["onnxruntime-fp32"]["max_rel_vs_torch"] < 1e-3
    assert res["machine"]["cpu"] and res["settings"]["threads"] == 1
    storage_target = [t for t in res["targets"] if t["name"] == "artifact vs FP32 weights"][0]
    assert storage_target["measured"] == pytest.approx(st["ratio"])
    assert storage_target["status"] == ("PASS" if st["ratio"] >= 15.5 else "MISS")
    for t in res["targets"]:
        assert t["status"] in ("PASS", "MISS", "n/a")
    for b in res["backends"]:  # a compiled engine: measured against ONNX Runtime and its own popcount peak
        if b["backend"] != "reference":
            mine = [t for t in res["targets"] if t["name"].startswith(b["label"] + " ")]
            assert len(mine) == 2 and mine[0]["measured"] > 0
            if b["popcount_peak_ops_per_s"]:
                assert 0 < mine[1]["measured"]
    md = out_md.read_text()
    assert "| backend |" in md and "onnxruntime-fp32" in md and "targets" in md
    assert "targets (reported, not asserted)" in text and "pytorch-fp32" in text and "x smaller" in text


def test_bench_selects_backends_and_views_without_torch(dfsmn, tmp_path):
    """--no-torch runs where torch cannot be imported (a Raspberry Pi)."""
    _, path = dfsmn
    out = tmp_path / "r.json"
    code = f"""
        import sys, json
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from binkit.cli import main
        rc = main(["bench", {str(path)!r}, "--backends", "reference", "--views", "1", "--no-torch",
                   "--runs", "3", "--reference-runs", "3", "--warmup", "0", "--throughput-runs", "2",
                   "--batch", "2", "--profile-repeats", "2", "-q", "--json", {str(out)!r}])
        print("rc", rc)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "rc 0" in proc.stdout, proc.stderr
    res = json.loads(out.read_text())
    assert {(r["backend"], r["view"]) for r in res["latency"]} == {("reference", "1")}
    assert res["baselines"] == {} and any("--no-torch" in n for n in res["notes"])


@pytest.mark.skipif("neon" not in binkit.runtime.backend_names(), reason="the compiled engine is not installed")
def test_bench_every_kernel_variant(dfsmn, tmp_path, capsys):
    _, path = dfsmn
    out = tmp_path / "k.json"
    assert main(["bench", str(path), "--backends", "neon", "--kernel", "all", "--views", "1", "--no-torch",
                 *FAST, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    import binkit_neon

    kernels = binkit_neon.available_kernels()
    assert [b["label"] for b in res["backends"]] == [f"neon[{k}]" for k in kernels]
    assert {r["kernel"] for r in res["latency"]} == set(kernels)
    assert all(b["popcount_peak_ops_per_s"] > 0 for b in res["backends"])
    assert "neon[" in capsys.readouterr().out


def test_bench_bad_input_fails_cleanly(dfsmn, tmp_path, capsys):
    _, path = dfsmn
    outs = ["--json", str(tmp_path / "o" / "r.json"), "--markdown", str(tmp_path / "o" / "r.md")]

    assert main(["bench", str(tmp_path / "missing.bkm"), *FAST, *outs]) == 2
    err = capsys.readouterr().err
    assert "binkit: error:" in err and "not found" in err and "Traceback" not in err

    tampered = tmp_path / "tampered.bkm"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the last tensor
    tampered.write_bytes(bytes(data))
    assert main(["bench", str(tampered), *FAST, *outs]) == 2
    assert "checksum mismatch" in capsys.readouterr().err

    assert main(["bench", str(path), "--backends", "reference,nosuch", *FAST, *outs]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "reference" in err

    assert main(["bench", str(path), "--views", "7", *FAST, *outs]) == 2
    assert "no view '7'" in capsys.readouterr().err

    assert main(["bench", str(path), "--kernel", "avx2", "--backends", "reference", *FAST, *outs]) == 2
    assert "kernel variants" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        main(["bench", str(path), "--runs", "0"])
    assert exc.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # no partial output anywhere


# ---------------------------------------------------------------------------------------------
# binkit summary MODEL.bkm
# ---------------------------------------------------------------------------------------------


def test_summary_of_artifact_lists_ops_with_runs_binary(dfsmn, capsys):
    _, path = dfsmn
    art = load_artifact(path)
    assert main(["summary", str(path), "--view", "1", "--no-latency", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["view"] == "1" and [r["index"] for r in s["rows"]] == art.views["1"]["ops"]
    assert s["totals"]["binary_macs"] == view_macs(art, "1")["binary"]
    assert all(r["seconds"] is None for r in s["rows"])
    assert main(["summary", str(path), "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert "runs binary" in out and "bytes packed binary weights" in out and "bconv1d" in out
    assert "x smaller" in out


def test_summary_of_artifact_measures_latency_and_flags_fallbacks(tmp_path, capsys):
    _, path = _small(tmp_path, "bifsmn_code", allow_float_fallback=True)
    assert main(["summary", str(path), "--latency", "--backend", "reference", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| op # | layer | op | output | runs binary |" in out and "us/call" in out
    line = [ln for ln in out.splitlines() if "| conv |" in ln][0]
    assert "no (float fallback)" in line and "conv2d_fp" in line
    assert "Float fallbacks" in out and "bifsmn_code" in out
    assert main(["summary", str(path), "--latency", "--backend", "reference", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert all(r["seconds"] > 0 for r in rows)
    assert [r["fallback"] != "" for r in rows] == [r["name"] == "conv" for r in rows]
    assert math.isclose(sum(r["float_macs"] for r in rows), 8 * 36 * 9 + 16 * 36 * 8 * 9 + 3 * 576)


def test_multiplane_artifact_macs_parameters_and_float_twin(tmp_path):
    """A bit-serial (residual, P weight x Q input planes) artifact: binary MACs count every plane
    pair, the FP32 twin holds one float weight per layer (the scaled sum of the planes)."""
    torch.manual_seed(0)
    single = _randomize(binkit.binarize(ConvBNPReLU(), "xnor"))
    multi = _randomize(binkit.binarize(ConvBNPReLU(), {"method": "residual",
                                                       "params": {"weight_planes": 3, "input_planes": 2}}))
    for net, name in ((single, "one"), (multi, "multi")):
        net.feature_shape = (1, 6, 6)
        export_model(net, tmp_path / f"{name}.bkm", labels=list("abc"), float16=False)
    a1, a3 = load_artifact(tmp_path / "one.bkm"), load_artifact(tmp_path / "multi.bkm")
    (op,) = [o for o in a3.ops if o["op"] == "bconv2d"]
    assert op["attrs"]["weight_planes"] == 3 and op["attrs"]["input_planes"] == 2
    view = a3.default_view
    assert view_macs(a3, view)["binary"] == 6 * view_macs(a1, view)["binary"]
    assert view_macs(a3, view)["float"] == view_macs(a1, view)["float"]
    assert fp32_parameter_count(a3) == fp32_parameter_count(a1)  # same architecture in FP32
    fp = build_float_model(a3)
    assert sum(p.numel() for p in fp.parameters()) == fp32_parameter_count(a3)
    conv = [m for m in fp.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 8][0]
    w = multi.conv.weight_quantizer(multi.conv.weight).detach()  # the quantized weight: sum of scaled planes
    np.testing.assert_allclose(conv.weight.detach().numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def test_bench_skips_backends_without_a_needed_feature(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    net = _randomize(binkit.binarize(ConvBNPReLU(), {"method": "residual", "params": {"weight_planes": 2}}))
    net.feature_shape = (1, 6, 6)
    path = tmp_path / "mp.bkm"
    export_model(net, path, labels=list("abc"), float16=False)
    from binkit.runtime.reference import ReferenceBackend

    monkeypatch.setattr(ReferenceBackend, "features", frozenset())  # as a backend without planes
    assert main(["bench", str(path), "--backends", "reference", "--no-torch", *FAST]) != 0
    err = capsys.readouterr().err
    assert "skipping backend 'reference'" in err and "multiplane" in err


# ---------------------------------------------------------------------------------------------
# the KWS ops: bdwconv2d, avgpool2d, mean, silu, broadcasting add
# ---------------------------------------------------------------------------------------------


def _kws_artifact(tmp_path, name="k", pool_padding=None, count_include_pad=False):
    """The hand-written artifact of ``kwsparts`` (optionally with another avgpool padding)."""
    tensors, meta = kws_ops_parts(count_include_pad=count_include_pad)
    if pool_padding is not None:
        next(op for op in meta["plan"]["ops"] if op["name"] == "pool")["attrs"]["padding"] = pool_padding
    path = tmp_path / f"{name}.bkm"
    save_artifact(path, tensors, meta)
    return path


def _signed_twin_logits(fp, art, x):
    """The twin run as the artifact runs: ``sign(x)`` (sign(0) = +1) into every binary layer, and
    ``sign(dot - threshold)`` out of a thresholded one (the twin keeps ``dot - threshold``)."""
    def sign(v):
        return torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))

    handles = []
    for (kind, keys, *_), i in zip(fp._plans[art.default_view], art.views[art.default_view]["ops"]):
        if kind in BINARY_OPS:
            handles.append(fp.layers[keys[0]].register_forward_pre_hook(lambda m, a: (sign(a[0]),)))
            if "threshold" in art.ops[i]["tensors"]:
                handles.append(fp.layers[keys[1]].register_forward_hook(lambda m, a, out: sign(out)))
    try:
        with torch.no_grad():
            return fp.double()(torch.from_numpy(x)).numpy()
    finally:
        for h in handles:
            h.remove()
        fp.float()


def test_kws_ops_plan_rows_macs_and_parameters(tmp_path):
    art = load_artifact(_kws_artifact(tmp_path))
    rows = {r.name: r for r in plan_rows(art)}
    c = 70
    assert rows["dw"].op == "bdwconv2d" and rows["dw"].runs_binary and rows["dw"].output_shape == (c, 5, 8)
    assert rows["dw"].binary_macs == c * 5 * 8 * 3 * 3 and rows["dw"].float_macs == 0  # padded taps counted
    assert rows["tdw"].runs_binary and rows["tdw"].binary_macs == c * 1 * 9 * 1 * 3
    assert rows["pw"].binary_macs == c * 5 * 8 * c  # bconv2d 1x1 on (C, 5, 8)
    for name in ("silu", "pool", "freq", "bcast", "relu", "gap", "act"):
        assert not rows[name].runs_binary and rows[name].binary_macs == rows[name].float_macs == 0, name
    assert view_macs(art, "full") == {"binary": sum(r.binary_macs for r in rows.values()),
                                      "float": c * 10 * 9 * 9 + 4 * c}  # stem 3x3 on (1, 10, 9), head
    # FP32: stem w+b, dw (C, 1, 3, 3) + 2/channel, slopes, pw (C, C) + 2/channel, tdw (C, 1, 1, 3) + 2/channel
    # (threshold), head w+b
    want = c * 9 + c + c * 9 + 2 * c + c + c * c + 2 * c + 3 * c + 2 * c + 4 * c + 4
    assert fp32_parameter_count(art) == want
    assert storage(art)["fp32_params"] == want


@pytest.mark.parametrize("pool_padding, count_include_pad", [
    (None, False), (None, True), ([[1, 0], [0, 1]], False), ([[0, 1], [1, 1]], True)])
def test_kws_ops_float_twin_runs_the_plan(tmp_path, pool_padding, count_include_pad):
    """The FP32 twin of the new ops: shapes, parameters and MACs as the plan counts them, and, run
    with the artifact's signs put back (sign into binary layers, out of thresholded ones), the
    reference backend's logits: so avgpool2d (asymmetric padding, both divisors), mean, silu,
    broadcasting add and the depthwise 2-D conv (asymmetric padding, stride, dilation) are exact."""
    from binkit.runtime.reference import ReferenceBackend

    path = _kws_artifact(tmp_path, pool_padding=pool_padding, count_include_pad=count_include_pad)
    art = load_artifact(path)
    fp = build_float_model(art)
    x = np.random.default_rng(0).standard_normal((6, *art.input_shape))
    x[0] = np.round(x[0])  # exact zeros and ties
    with torch.no_grad():
        assert tuple(fp(torch.from_numpy(x).float()).shape) == (6, 4)
    assert sum(p.numel() for p in fp.parameters()) == fp32_parameter_count(art)
    s = summary(fp, forward_kwargs={"view": "full"}, print_fn=None)
    macs = view_macs(art, "full")
    assert s.binary_macs == 0 and s.float_macs == macs["binary"] + macs["float"]
    dw = [m for m in fp.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(dw) == 2 and all(m.groups == m.in_channels == 70 for m in dw)
    assert all(set(m.weight.unique().tolist()) <= {-1.0, 1.0} for m in dw)
    want = ReferenceBackend().load(art).run(x.astype(np.float32), "full")
    got = _signed_twin_logits(fp, art, x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the plain twin (no signs) differs from the artifact: it is a float baseline, not a replica
    with torch.no_grad():
        assert not np.allclose(fp(torch.from_numpy(x).float()).numpy(), want, atol=1e-3)


@pytest.mark.parametrize("net_name, shape", [("KwsOpsNet", (1, 12, 10)), ("BroadcastNet", (1, 8, 12))])
def test_kws_nets_plan_macs_match_the_torch_model(tmp_path, net_name, shape):
    import testnets

    torch.manual_seed(0)
    net = testnets.randomize_stats(binkit.binarize(getattr(testnets, net_name)(), "bifsmn"), seed=3)
    path = tmp_path / "n.bkm"
    export_model(net, path, labels=[str(i) for i in range(net.head.out_features)], float16=False,
                 feature_shape=shape)
    art = load_artifact(path)
    rows = plan_rows(art)
    dw = [r for r in rows if r.op == "bdwconv2d"]
    assert dw and all(r.runs_binary and r.binary_macs > 0 for r in dw)
    want = summary(net, shape, print_fn=None)
    assert view_macs(art, art.default_view) == {"binary": want.binary_macs, "float": want.float_macs}
    fp = build_float_model(art)
    assert sum(p.numel() for p in fp.parameters()) == fp32_parameter_count(art)
    with torch.no_grad():
        assert tuple(fp(torch.randn(2, *shape)).shape) == (2, net.head.out_features)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_kws_ops_onnx_twin_matches_torch(tmp_path, exporter):
    import onnxruntime as ort

    art = load_artifact(_kws_artifact(tmp_path, pool_padding=[[1, 0], [0, 1]]))  # asymmetric pool
    fp = build_float_model(art)
    assert export_onnx(fp, "full", tmp_path / "m.onnx", exporter) == exporter
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, *art.input_shape)).astype(np.float32)
    with torch.no_grad():
        want = fp(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-4, atol=1e-4)


def test_bench_and_summary_of_a_kws_ops_artifact(tmp_path, capsys):
    path = _kws_artifact(tmp_path)
    art = load_artifact(path)
    out = tmp_path / "r.json"
    assert main(["bench", str(path), *FAST, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    backends = binkit.runtime.backend_names()
    assert {(r["backend"], r["view"]) for r in res["latency"]} == {
        (b, "full") for b in backends + ["pytorch-fp32", "onnxruntime-fp32"]}
    assert res["macs"] == {"full": view_macs(art, "full")}
    assert res["storage"]["fp32_params"] == fp32_parameter_count(art)
    assert res["baselines"]["onnxruntime-fp32"]["max_rel_vs_torch"] < 1e-3
    ref_rows = [r for r in res["layers"] if r["backend"] == "reference"]
    assert [r["index"] for r in ref_rows] == art.views["full"]["ops"]
    binary = [r for r in ref_rows if r["runs_binary"]]
    assert {r["op"] for r in binary} == {"bdwconv2d", "bconv2d"}
    assert all(r["seconds"] > 0 and r["binary_ops_per_s"] > 0 for r in binary)
    capsys.readouterr()
    assert main(["summary", str(path), "--no-latency", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["dw"]["runs_binary"] and rows["dw"]["binary_macs"] == 70 * 5 * 8 * 9
    assert main(["summary", str(path), "--no-latency"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if " dw " in f" {ln} " and "bdwconv2d" in ln)
    assert "yes" in line and "25,200" in line


def test_time_blocks_alternates_and_settles_each_block():
    """Blocks alternate between candidates; each block starts with untimed calls of its own
    candidate (at least one, for settle_ns), so a block never times the aftermath of another."""
    from binkit.bench.runner import time_blocks

    log: list[str] = []
    calls = {name: (lambda name=name: log.append(name)) for name in ("a", "b")}
    times = time_blocks(calls, runs=7, warmup=2, block=3, settle_ns=0)
    assert {k: len(v) for k, v in times.items()} == {"a": 7, "b": 7}
    assert all(isinstance(ns, int) and ns >= 0 for v in times.values() for ns in v)
    # warm-up, then blocks of 1 settle call + 3, 3, 1 timed calls, alternating
    blocks = [1 + 3, 1 + 3, 1 + 1]
    assert log == ["a", "a", "b", "b"] + [x for m in blocks for x in ["a"] * m + ["b"] * m]
    log.clear()
    time_blocks({"a": calls["a"]}, runs=2, warmup=0, block=2, settle_ns=2_000_000)
    assert len(log) > 3  # the settle period repeats the call until 2 ms have passed
