"""The artifact loader: round trip, and every kind of bad file gives ArtifactError (never a crash)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binkit import registry
from binkit.runtime.artifact import ArtifactError, describe, load_artifact, save_artifact
from binkit.runtime.bits import pack_signs
from binkit.runtime.reference import ReferenceProgram

C, T, O = 65, 9, 70


def _parts():
    """A small hand-written artifact: (3, 9) -> bconv1d 70 -> prelu -> bdwconv1d -> flatten -> linear."""
    rng = np.random.default_rng(0)
    tensors = {
        "pre.weight": rng.standard_normal((C, 3, 1)).astype(np.float32),
        "pre.bias": rng.standard_normal(C).astype(np.float32),
        "conv.weight": pack_signs(rng.standard_normal((O, 3, C))),
        "conv.multiplier": rng.uniform(0.01, 0.1, O).astype(np.float32),
        "conv.offset": rng.standard_normal(O).astype(np.float32),
        "act.slope": np.array([0.25], np.float32),
        "dw.weight": pack_signs(rng.standard_normal((5, O))),
        "dw.multiplier": rng.uniform(0.1, 1, O).astype(np.float32),
        "dw.offset": rng.standard_normal(O).astype(np.float32),
        "head.weight": rng.standard_normal((4, O * T)).astype(np.float16),
        "head.bias": np.zeros(4, np.float32),
    }
    ops = [
        {"op": "conv1d_fp", "name": "pre", "inputs": ["input"], "outputs": ["pre"],
         "attrs": {"stride": [1], "padding": [[0, 0]], "dilation": [1], "groups": 1, "input_sign": False},
         "tensors": {"weight": "pre.weight", "bias": "pre.bias"}},
        {"op": "bconv1d", "name": "conv", "inputs": ["pre"], "outputs": ["conv"],
         "attrs": {"in_channels": C, "kernel_size": [3], "stride": [1], "padding": [[1, 1]], "dilation": [1]},
         "tensors": {"weight": "conv.weight", "multiplier": "conv.multiplier", "offset": "conv.offset"}},
        {"op": "prelu", "name": "act", "inputs": ["conv"], "outputs": ["act"], "attrs": {"axis": 0},
         "tensors": {"slope": "act.slope"}},
        {"op": "bdwconv1d", "name": "dw", "inputs": ["act"], "outputs": ["dw"],
         "attrs": {"in_channels": O, "kernel_size": [5], "stride": [1], "padding": [[2, 2]], "dilation": [1]},
         "tensors": {"weight": "dw.weight", "multiplier": "dw.multiplier", "offset": "dw.offset"}},
        {"op": "add", "name": "res", "inputs": ["dw", "act"], "outputs": ["res"], "attrs": {}, "tensors": {}},
        {"op": "flatten", "name": "flat", "inputs": ["res"], "outputs": ["flat"], "attrs": {}, "tensors": {}},
        {"op": "linear_fp", "name": "head", "inputs": ["flat"], "outputs": ["logits"], "attrs": {"input_sign": False},
         "tensors": {"weight": "head.weight", "bias": "head.bias"}},
        {"op": "flatten", "name": "flat2", "inputs": ["act"], "outputs": ["flat"], "attrs": {}, "tensors": {}},
    ]
    meta = {
        "producer": "test",
        "input": {"shape": [3, T], "dtype": "float32"},
        "plan": {"ops": ops},
        "views": {"full": {"ops": [0, 1, 2, 3, 4, 5, 6], "output": "logits"},
                  "short": {"ops": [0, 1, 2, 7, 6], "output": "logits"}},
        "default_view": "full",
        "labels": ["a", "b", "c", "d"],
        "frontend": None,
        "fallbacks": [],
    }
    return tensors, meta


def _mp_parts():
    """``_parts()`` with bit-serial ops: conv with 3 weight planes and 2 input planes, dw with 2
    weight planes (one input plane)."""
    tensors, meta = _parts()
    rng = np.random.default_rng(5)
    tensors["conv.weight"] = np.stack([pack_signs(rng.standard_normal((O, 3, C))) for _ in range(3)])
    tensors["conv.weight_scales"] = rng.uniform(0.01, 0.5, (3, O)).astype(np.float32)
    tensors["conv.input_scales"] = np.array([1.0, 0.4], np.float32)
    tensors["dw.weight"] = np.stack([pack_signs(rng.standard_normal((5, O))) for _ in range(2)])
    tensors["dw.weight_scales"] = rng.uniform(0.1, 1.0, (2, O)).astype(np.float32)
    conv, dw = meta["plan"]["ops"][1], meta["plan"]["ops"][3]
    conv["attrs"].update(weight_planes=3, input_planes=2)
    conv["tensors"].update(weight_scales="conv.weight_scales", input_scales="conv.input_scales")
    dw["attrs"]["weight_planes"] = 2
    dw["tensors"]["weight_scales"] = "dw.weight_scales"
    return tensors, meta


@pytest.fixture
def good(tmp_path):
    tensors, meta = _parts()
    path = tmp_path / "good.bkm"
    save_artifact(path, tensors, meta)
    return path


def _write(tmp_path, tensors, meta, name="bad.bkm"):
    path = tmp_path / name
    save_artifact(path, tensors, meta)
    return path


def test_round_trip_and_run(good):
    art = load_artifact(good)
    assert art.labels == ["a", "b", "c", "d"] and art.input_shape == (3, T)
    assert art.shapes["full"]["conv"] == (O, T)
    prog = ReferenceProgram(art)
    x = np.random.default_rng(1).standard_normal((5, 3, T)).astype(np.float32)
    for view in ("full", "short"):
        out = prog.run(x, view)
        assert out.shape == (5, 4) and out.dtype == np.float32 and np.isfinite(out).all()
    assert "bconv1d" in describe(art)


def test_truncated_file(good, tmp_path):
    data = good.read_bytes()
    for cut in (0, 7, 100, len(data) // 2, len(data) - 1):
        p = tmp_path / f"cut{cut}.bkm"
        p.write_bytes(data[:cut])
        with pytest.raises(ArtifactError, match="not a readable safetensors file|checksum"):
            load_artifact(p)


def test_flipped_bytes_anywhere(good, tmp_path):
    data = bytearray(good.read_bytes())
    header = int.from_bytes(data[:8], "little") + 8
    for pos in (header + 3, len(data) - 5, header // 2, 9):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        p = tmp_path / "flip.bkm"
        p.write_bytes(bytes(bad))
        with pytest.raises(ArtifactError):
            load_artifact(p)
    bad = bytearray(data)
    bad[-3] ^= 0x01  # in the tensor data: only the checksum can see it
    p = tmp_path / "flip.bkm"
    p.write_bytes(bytes(bad))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(p)


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "nope.bkm")


@pytest.mark.parametrize("key, value, match", [
    ("format", "onnx", "not a binkit artifact"),
    ("format_version", "3", "format_version is '3'; this binkit reads versions 1, 2"),
])
def test_wrong_format_or_version(tmp_path, key, value, match):
    tensors, meta = _parts()
    meta[key] = value
    with pytest.raises(ArtifactError, match=match):
        load_artifact(_write(tmp_path, tensors, meta))


def _mutated(mutate):
    tensors, meta = _parts()
    mutate(tensors, meta)
    return tensors, meta


def _op(meta, i):
    return meta["plan"]["ops"][i]


CASES = {
    "missing tensor": (lambda t, m: t.pop("conv.multiplier"), "tensor 'conv.multiplier' \\(multiplier\\) is missing"),
    "wrong dtype": (lambda t, m: t.__setitem__("conv.weight", t["conv.weight"].astype(np.int64)),
                    "'conv.weight' \\(weight\\) has dtype int64, expected uint64"),
    "wrong shape": (lambda t, m: t.__setitem__("conv.offset", np.zeros(O + 1, np.float32)),
                    "'conv.offset' \\(offset\\) has shape \\(71,\\), expected \\(70,\\)"),
    "packed shape": (lambda t, m: t.__setitem__("conv.weight", t["conv.weight"][:, :2]), "packed weight must be"),
    "padding bits": (lambda t, m: t["conv.weight"].__setitem__((0, 0, 1), np.uint64(1) << np.uint64(63)),
                     "nonzero padding bits"),
    "nan tensor": (lambda t, m: t["dw.offset"].__setitem__(3, np.nan), "non-finite"),
    "bad stride": (lambda t, m: _op(m, 1)["attrs"].__setitem__("stride", [0]), "attribute 'stride'"),
    "bad padding": (lambda t, m: _op(m, 1)["attrs"].__setitem__("padding", [[5, 1]]), "padding"),
    "bad in_channels": (lambda t, m: _op(m, 1)["attrs"].__setitem__("in_channels", 64), "in_channels=64"),
    "bool attr": (lambda t, m: _op(m, 0)["attrs"].__setitem__("input_sign", "yes"), "input_sign"),
    "unknown op": (lambda t, m: _op(m, 2).__setitem__("op", "softmax"), "unknown op 'softmax'"),
    "bad axis": (lambda t, m: _op(m, 2)["attrs"].__setitem__("axis", 2), "attribute 'axis'"),
    "undefined value": (lambda t, m: _op(m, 4).__setitem__("inputs", ["dw", "nothing"]), "reads value\\(s\\) \\['nothing'\\]"),
    "view index": (lambda t, m: m["views"]["full"]["ops"].append(99), "op index 99"),
    "view output": (lambda t, m: m["views"]["short"].__setitem__("output", "act"), "output 'act' has shape"),
    "default view": (lambda t, m: m.__setitem__("default_view", "tiny"), "default_view 'tiny'"),
    "extra tensor": (lambda t, m: t.__setitem__("stowaway", np.zeros(3, np.float32)), "referenced by no op"),
    "labels": (lambda t, m: m.__setitem__("labels", ["a", "b"]), "expected \\(2,\\)"),
    "input": (lambda t, m: m.__setitem__("input", {"shape": [3, -1]}), "metadata 'input'"),
    "frontend": (lambda t, m: m.__setitem__("frontend", {"kind": "bifsmn_logmel"}), "front-end gives features"),
    "orphan op": (lambda t, m: m["plan"]["ops"].append({**_op(m, 2), "outputs": ["spare"]}), "belong to no view"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_specific_errors(tmp_path, case):
    mutate, match = CASES[case]
    tensors, meta = _mutated(mutate)
    with pytest.raises(ArtifactError, match=match):
        load_artifact(_write(tmp_path, tensors, meta))


def _one_plane_dw_with(t, m, role, tensor):
    _op(m, 3)["attrs"].pop("weight_planes")
    t["dw.weight"] = t["dw.weight"][0]
    t.pop("dw.weight_scales")
    _op(m, 3)["tensors"].pop("weight_scales")
    t[f"dw.{role}"] = tensor
    _op(m, 3)["tensors"][role] = f"dw.{role}"


def _threshold_on_dw(t, m):
    for role in ("multiplier", "offset"):
        t.pop(f"dw.{role}")
        _op(m, 3)["tensors"].pop(role)
    t["dw.threshold"] = np.zeros(O, np.int16)
    _op(m, 3)["tensors"]["threshold"] = "dw.threshold"


MP_CASES = {
    "plane count vs weight": (lambda t, m: _op(m, 1)["attrs"].__setitem__("weight_planes", 2),
                              "weight_planes=2 needs a packed weight with a leading plane axis \\(2, ...\\)"),
    "one-plane weight with planes": (lambda t, m: t.__setitem__("dw.weight", t["dw.weight"][0]),
                                     "weight_planes=2 needs a packed weight with a leading plane axis"),
    "plane shape": (lambda t, m: t.__setitem__("conv.weight", t["conv.weight"][:, :, :2]),
                    "packed weight must be \\(3, out, 3, 2\\)"),
    "dw plane shape": (lambda t, m: t.__setitem__("dw.weight", t["dw.weight"][:, :4]),
                       "packed weight must be \\(2, 5, 2\\)"),
    "missing weight_scales": (lambda t, m: _op(m, 3)["tensors"].pop("weight_scales") and t.pop("dw.weight_scales"),
                              "needs tensor role 'weight_scales'"),
    "weight_scales shape": (lambda t, m: t.__setitem__("conv.weight_scales", np.ones((3, O + 1), np.float32)),
                            "'conv.weight_scales' \\(weight_scales\\) has shape \\(3, 71\\), expected \\(3, 70\\)"),
    "weight_scales dtype": (lambda t, m: t.__setitem__("dw.weight_scales", t["dw.weight_scales"].astype(np.float16)),
                            "\\(weight_scales\\) has dtype float16, expected float32"),
    "weight_scales nan": (lambda t, m: t["conv.weight_scales"].__setitem__((1, 2), np.inf), "non-finite"),
    "zero input scale": (lambda t, m: t["conv.input_scales"].__setitem__(1, 0.0),
                         "\\(input_scales\\) must be > 0, got \\[1.0, 0.0\\]"),
    "negative input scale": (lambda t, m: t["conv.input_scales"].__setitem__(0, -1.0), "must be > 0"),
    "nan input scale": (lambda t, m: t["conv.input_scales"].__setitem__(0, np.nan), "non-finite"),
    "input_scales shape": (lambda t, m: t.__setitem__("conv.input_scales", np.ones(3, np.float32)),
                           "\\(input_scales\\) has shape \\(3,\\), expected \\(2,\\)"),
    "missing input_scales": (lambda t, m: _op(m, 1)["tensors"].pop("input_scales") and t.pop("conv.input_scales"),
                             "needs tensor role 'input_scales'"),
    "weight_planes range": (lambda t, m: _op(m, 1)["attrs"].__setitem__("weight_planes", 5),
                            "attribute 'weight_planes' must be an int in \\[1, 4\\], got 5"),
    "input_planes zero": (lambda t, m: _op(m, 1)["attrs"].__setitem__("input_planes", 0),
                          "attribute 'input_planes' must be an int in \\[1, 4\\], got 0"),
    "input_planes bool": (lambda t, m: _op(m, 1)["attrs"].__setitem__("input_planes", True), "'input_planes'"),
    "input_planes float": (lambda t, m: _op(m, 1)["attrs"].__setitem__("input_planes", 2.0), "'input_planes'"),
    "weight_scales without planes": (lambda t, m: _one_plane_dw_with(t, m, "weight_scales", np.ones((1, O), np.float32)),
                                     "'weight_scales' needs weight_planes > 1"),
    "input_scales without planes": (lambda t, m: _one_plane_dw_with(t, m, "input_scales", np.ones(1, np.float32)),
                                    "'input_scales' needs input_planes > 1"),
    "threshold with planes": (_threshold_on_dw, "a sign threshold needs weight_planes = input_planes = 1"),
    "padding bits in a later plane": (lambda t, m: t["conv.weight"].__setitem__((2, 0, 0, 1), np.uint64(1) << np.uint64(63)),
                                      "nonzero padding bits"),
}


@pytest.mark.parametrize("case", sorted(MP_CASES))
def test_multi_plane_specific_errors(tmp_path, case):
    mutate, match = MP_CASES[case]
    tensors, meta = _mp_parts()
    mutate(tensors, meta)
    with pytest.raises(ArtifactError, match=match):
        load_artifact(_write(tmp_path, tensors, meta))


def test_multi_plane_round_trip_and_formula(tmp_path):
    """The reference's bit-serial conv against the format's formula written out independently:
    greedy input planes, zero padding after the decomposition, sum_{p,q} t_{p,o} a_q dot."""
    from binkit.runtime.artifact import required_features
    from binkit.runtime.bits import unpack_signs
    from binkit.runtime.reference import _OPS

    tensors, meta = _mp_parts()
    art = load_artifact(_write(tmp_path, tensors, meta))
    assert required_features(art) == {"multiplane"}
    prog = ReferenceProgram(art)
    x = np.random.default_rng(1).standard_normal((4, 3, T)).astype(np.float32)
    for view in ("full", "short"):
        assert np.isfinite(prog.run(x, view)).all()

    conv = art.ops[1]
    t = {k: art.tensors[v] for k, v in conv["tensors"].items()}
    h = np.random.default_rng(2).standard_normal((3, C, T)) * 1.5
    h[0] = 0.0
    h[1, :, :2] = 1.0  # on a residual decision point: r_2 = 0 -> b_2 = +1
    got = _OPS["bconv1d"](conv["attrs"], t, h)
    a, ws = t["input_scales"].astype(np.float64), t["weight_scales"].astype(np.float64)
    w = unpack_signs(t["weight"], C).astype(np.float64)  # (P, O, k, C)
    planes, r = [], h.copy()
    for aq in a:
        b = np.where(r < 0, -1.0, 1.0)
        planes.append(np.pad(b, ((0, 0), (0, 0), (1, 1))))  # exact zero padding
        r = r - aq * b
    dot = np.zeros((3, O, T))
    for p in range(3):
        for q in range(2):
            for j in range(3):
                dot += ws[p][None, :, None] * a[q] * np.einsum("oc,nct->not", w[p, :, j], planes[q][:, :, j:j + T])
    want = t["multiplier"].astype(np.float64)[None, :, None] * dot + t["offset"].astype(np.float64)[None, :, None]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)

    dw = art.ops[3]
    t = {k: art.tensors[v] for k, v in dw["tensors"].items()}
    h = np.random.default_rng(3).standard_normal((3, O, T))
    h[0] = 0.0
    got = _OPS["bdwconv1d"](dw["attrs"], t, h)
    w = unpack_signs(t["weight"], O).astype(np.float64)  # (P, k, C)
    hp = np.pad(np.where(h < 0, -1.0, 1.0), ((0, 0), (0, 0), (2, 2)))
    dot = sum(t["weight_scales"][p].astype(np.float64)[None, :, None] *
              sum(w[p, j][None, :, None] * hp[:, :, j:j + T] for j in range(5)) for p in range(2))
    want = t["multiplier"].astype(np.float64)[None, :, None] * dot + t["offset"].astype(np.float64)[None, :, None]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_bad_json_metadata(good, tmp_path):
    from safetensors.numpy import save_file
    from binkit.runtime.artifact import compute_checksum

    art = load_artifact(good)
    meta = dict(art.metadata)
    meta["plan"] = "{not json"
    meta["checksum"] = compute_checksum(meta, art.tensors)
    p = tmp_path / "json.bkm"
    save_file(art.tensors, str(p), metadata=meta)
    with pytest.raises(ArtifactError, match="'plan' is not valid JSON"):
        load_artifact(p)


def _rewrite_plan(good, tmp_path, plan_value, version="2"):
    from safetensors.numpy import save_file
    from binkit.runtime.artifact import compute_checksum

    art = load_artifact(good)
    meta = dict(art.metadata, plan=plan_value, format_version=version)
    meta["checksum"] = compute_checksum(meta, art.tensors)
    p = tmp_path / "plan.bkm"
    save_file(art.tensors, str(p), metadata=meta)
    return p


def test_plan_is_stored_compressed_and_version_1_still_loads(good, tmp_path):
    import json

    art = load_artifact(good)
    assert art.metadata["format_version"] == "2" and art.metadata["plan"].startswith("zlib:")
    plain = json.dumps({"ops": art.ops})
    assert len(art.metadata["plan"]) < len(plain)
    old = load_artifact(_rewrite_plan(good, tmp_path, plain, version="1"))  # a version 1 file
    assert old.ops == art.ops


@pytest.mark.parametrize("value, match", [
    ("zlib:not base64!", "compressed value is corrupt"),
    ("zlib:" + __import__("base64").b64encode(b"\x78\x9cgarbage").decode(), "compressed value is corrupt"),
    ("zlib:" + __import__("base64").b64encode(__import__("zlib").compress(b'{"ops": []}')[:-6]).decode(),
     "truncated or inflates past"),
    ("zlib:" + __import__("base64").b64encode(__import__("zlib").compress(b" " * (17 << 20))).decode(),
     "truncated or inflates past"),
])
def test_corrupt_or_oversized_compressed_plan(good, tmp_path, value, match):
    with pytest.raises(ArtifactError, match=match):
        load_artifact(_rewrite_plan(good, tmp_path, value))


def test_compressed_plan_refused_in_version_1(good, tmp_path):
    art = load_artifact(good)
    with pytest.raises(ArtifactError, match="'plan' is not valid JSON"):
        load_artifact(_rewrite_plan(good, tmp_path, art.metadata["plan"], version="1"))


# --- fuzzing: structured mutations of metadata and tensors, re-checksummed so that validation
# --- (not the checksum) has to catch them; loading must succeed (and then run) or raise ArtifactError.

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=True),
                  st.text(max_size=4), st.lists(st.integers(-2, 80), max_size=4),
                  st.lists(st.lists(st.integers(-1, 6), max_size=3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("parts", [_parts, _mp_parts], ids=["one-plane", "multi-plane"])
def test_fuzz_only_artifact_errors(tmp_path, parts, data):
    tensors, meta = parts()
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(["meta", "meta", "tensor"]))
        if target == "meta":
            paths = [p for p in _paths(meta) if p]
            path = data.draw(st.sampled_from(paths))
            parent = meta
            for k in path[:-1]:
                parent = parent[k]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1])
            else:
                parent[path[-1]] = data.draw(_JUNK)
        else:
            name = data.draw(st.sampled_from(sorted(tensors)))
            how = data.draw(st.sampled_from(["drop", "dtype", "shape", "value"]))
            a = tensors[name]
            if how == "drop":
                tensors.pop(name)
            elif how == "dtype":
                with np.errstate(over="ignore", invalid="ignore"):
                    tensors[name] = a.astype(data.draw(st.sampled_from([np.float16, np.float32, np.float64, np.uint64, np.int32])))
            elif how == "shape":
                tensors[name] = a.reshape(-1)[: max(1, a.size - data.draw(st.integers(0, 3)))]
            else:
                flat = a.reshape(-1).copy()
                flat.view(np.uint8)[data.draw(st.integers(0, flat.nbytes - 1))] ^= np.uint8(data.draw(st.integers(1, 255)))
                tensors[name] = flat.reshape(a.shape)
    path = tmp_path / "fuzz.bkm"
    try:
        save_artifact(path, tensors, meta)
    except (TypeError, ValueError):  # e.g. NaN or non-string keys that json/safetensors refuse to write
        return
    try:
        art = load_artifact(path)
    except ArtifactError:
        return
    prog = ReferenceProgram(art)
    x = np.random.default_rng(0).standard_normal((2, *art.input_shape)).astype(np.float32)
    for view in art.views:
        out = prog.run(x, view)
        assert out.shape == (2, len(art.labels))


def test_loader_and_backend_are_torch_free(good):
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from binkit import registry
        import binkit.runtime
        if "reference" not in registry.names("backend"):
            registry.register_plugin("binkit.runtime.plugin")
        m = binkit.runtime.load({str(good)!r}, backend="reference")
        s, labels = m.predict(np.zeros((2, 3, {T}), np.float32))
        assert s.shape == (2, 4), s.shape
        assert "torch" not in sys.modules, sorted(k for k in sys.modules if k.startswith("torch"))
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_backend_registered():
    if "reference" not in registry.names("backend"):
        registry.register_plugin("binkit.runtime.plugin")
    from binkit.runtime import get_backend

    assert get_backend("reference").name == "reference"


def test_auto_backend_prefers_the_engine(good, monkeypatch):
    import binkit.runtime as rt
    from binkit.runtime.model import load, resolve_backend

    assert resolve_backend("reference") == "reference"
    monkeypatch.setattr(rt, "backend_names", lambda: ["reference"])
    assert resolve_backend("auto") == "reference"  # engine not built: numpy fallback
    assert load(good).backend == "reference"
    monkeypatch.setattr(rt, "backend_names", lambda: ["neon", "reference"])
    assert resolve_backend("auto") == "neon"
