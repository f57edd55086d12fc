"""Affine folding: an ``affine`` read by nothing else merges into the op that produced its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binkit.export.lower import PlanBuilder


def _builder(shape=(6,)):
    return PlanBuilder(torch.nn.Identity(), shape)


def _affine(b, x, name, m, c, axis=0):
    return b.emit("affine", [x], name=name, attrs={"axis": axis},
                  tensors={"multiplier": b.tensor(f"{name}.multiplier", np.asarray(m, np.float64)),
                           "offset": b.tensor(f"{name}.offset", np.asarray(c, np.float64))}, output=name)


def _run(b, view, x):
    from binkit.runtime.reference import _OPS

    values = {"input": x}
    for i in b.views[view]["ops"]:
        op = b.ops[i]
        t = {k: b.tensors[v] for k, v in op["tensors"].items()}
        values[op["outputs"][0]] = _OPS[op["op"]](op["attrs"], t, *[values[v] for v in op["inputs"]])
    return values[b.views[view]["output"]]


RNG = np.random.default_rng(0)
M1, C1, M2, C2 = (RNG.uniform(-2, 2, 6) for _ in range(4))


def test_a_chain_folds_into_one_transform():
    b = _builder()
    x = b.begin_view("v")
    y = _affine(b, _affine(b, x, "a", M1, C1), "b", M2, C2)
    b.end_view(b.emit("relu", [y], name="r"))
    x_in = RNG.standard_normal((3, 6))
    want = _run(b, "v", x_in)
    assert b.fold_affines() == ["b"]
    assert [op["op"] for op in b.ops] == ["affine", "relu"]
    (a,) = [op for op in b.ops if op["op"] == "affine"]
    np.testing.assert_allclose(b.tensors[a["tensors"]["multiplier"]], (M2 * M1).astype(np.float32))
    np.testing.assert_allclose(b.tensors[a["tensors"]["offset"]], (M2 * C1 + C2).astype(np.float32))
    assert a["outputs"] == ["b"] and b.ops[1]["inputs"] == ["b"]
    np.testing.assert_allclose(_run(b, "v", x_in), want, rtol=1e-5, atol=1e-6)


def test_a_value_with_another_reader_is_not_folded():
    b = _builder()
    x = b.begin_view("v")
    a = _affine(b, x, "a", M1, C1)
    y = _affine(b, a, "b", M2, C2)
    b.end_view(b.add(y, a, name="skip"))  # a is read twice: folding b would change what add sees
    assert b.fold_affines() == []
    assert len(b.ops) == 3


def test_a_view_output_is_not_folded():
    b = _builder()
    x = b.begin_view("v1")
    a = _affine(b, x, "a", M1, C1)
    _affine(b, a, "b", M2, C2)  # read only by an op whose result the view does not use
    b.end_view(a)
    assert b.fold_affines() == []


def test_other_channel_axes_are_not_folded():
    b = _builder((2, 3))
    x = b.begin_view("v")
    a = _affine(b, x, "a", [1.0, 2.0], [0.5, -0.5], axis=0)
    y = _affine(b, a, "b", [1.0, 2.0, 3.0], [0.0, 1.0, 2.0], axis=1)
    b.end_view(b.flatten(y, name="flat"))
    assert b.fold_affines() == []


def _two_views(shared: bool):
    """Views v1, v2: a view-specific affine producing "h", then an affine on "h" (one shared op
    when its tensors are the same in both views), then relu."""
    b = _builder()
    for view, sign in (("v1", 1), ("v2", -1)):
        x = b.begin_view(view)
        h = b.emit("affine", [x], name=f"p.{view}", attrs={"axis": 0}, output="h",
                   tensors={"multiplier": b.tensor(f"p.{view}.m", sign * M1), "offset": b.tensor(f"p.{view}.c", C1)})
        names = ("q", "q") if shared else (f"q.{view}", f"q.{view}")
        q = b.emit("affine", [h], name=names[0], attrs={"axis": 0},
                   tensors={"multiplier": b.tensor(f"{names[1]}.m", M2), "offset": b.tensor(f"{names[1]}.c", C2)})
        b.end_view(b.emit("relu", [q], name="r"))
    return b


@pytest.mark.parametrize("shared", [True, False])
def test_an_op_shared_by_views_folds_into_each_producer(shared):
    b = _two_views(shared)
    assert (b.views["v1"]["ops"][1] == b.views["v2"]["ops"][1]) is shared  # identical ops are shared
    x_in = RNG.standard_normal((2, 6))
    want = {v: _run(b, v, x_in) for v in b.views}
    # shared: the one op after two view-specific producers folds into both of them
    assert b.fold_affines() == (["q"] if shared else ["q.v1", "q.v2"])
    assert [op["op"] for op in b.ops].count("affine") == 2
    for view, sign in (("v1", 1), ("v2", -1)):
        (p,) = [op for op in b.ops if op["name"] == f"p.{view}"]
        np.testing.assert_allclose(b.tensors[p["tensors"]["multiplier"]], (M2 * sign * M1).astype(np.float32))
        np.testing.assert_allclose(b.tensors[p["tensors"]["offset"]], (M2 * C1 + C2).astype(np.float32))
    for v in b.views:
        np.testing.assert_allclose(_run(b, v, x_in), want[v], rtol=1e-5, atol=1e-6)


def test_a_producer_whose_value_another_view_reads_is_not_folded():
    """v3 runs v1's producer and reads its value directly: folding q into it would change v3."""
    b = _two_views(shared=True)
    x = b.begin_view("v3")
    h = b.emit("affine", [x], name="p.v1", attrs={"axis": 0}, output="h",
               tensors={"multiplier": "p.v1.m", "offset": "p.v1.c"})
    b.end_view(b.emit("relu", [h], name="r3"))
    assert b.views["v3"]["ops"][0] == b.views["v1"]["ops"][0]  # the same op as v1's producer
    x_in = RNG.standard_normal((2, 6))
    want = {v: _run(b, v, x_in) for v in b.views}
    assert b.fold_affines() == []
    for v in b.views:
        np.testing.assert_allclose(_run(b, v, x_in), want[v], rtol=1e-5, atol=1e-6)


def test_thin_views_fold_rprelu_shifts_into_every_copy_of_a_block(tmp_path):
    """A thinnable DFSMN on plain sign inputs with RPReLU (reactnet, learn_thresholds = false):
    block 1 reads block 0's output in view 4 and the front-end's in view 2, so its memory conv is
    lowered twice. RPReLU's -gamma after it folds into both copies, as in the other blocks, and
    every view still computes what torch does."""
    import binkit
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams
    from binkit.export import export_model
    from binkit.runtime import load
    from binkit_binarizers.reactnet import RPReLU

    torch.manual_seed(0)
    params = DFSMNParams(num_blocks=4, thin_levels=["4", "2"], view_weights={"4": 1.0, "2": 0.5})
    model = binkit.binarize(DFSMN(params, 12, (1, 32, 32)),
                            {"method": "reactnet", "params": {"learn_thresholds": False}})
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RPReLU):
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) - 0.5)
                m.zeta.copy_(torch.rand(m.zeta.shape, generator=g) - 0.5)
    model.eval()
    path = tmp_path / "m.bkm"
    report = export_model(model, path, labels=[str(i) for i in range(12)], float16=False)
    from binkit.runtime.artifact import load_artifact

    art = load_artifact(path)
    copies = [op for op in art.ops if op["name"] == "blocks.1.memory" and op["op"] == "bdwconv1d"]
    assert len(copies) == 2 and copies[0]["inputs"] != copies[1]["inputs"]
    assert report.affine_folded.count("blocks.1.memory_act") == 1
    for block in range(4):  # -gamma folded everywhere: one affine (+zeta) left per memory activation
        assert [op["op"] for op in art.ops if op["name"] == f"blocks.{block}.memory_act"] == ["prelu", "affine"]
    x = torch.randn(16, 1, 32, 32)
    ref, neon = load(path, backend="reference"), load(path, backend="neon")
    for view in ("4", "2"):
        with torch.no_grad():
            want = model(x, view=view).numpy()
        np.testing.assert_allclose(ref.logits(x.numpy(), view=view), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(neon.logits(x.numpy(), view=view), want, rtol=1e-4, atol=1e-4)
    assert all(e["max_rel"] < 1e-4 for e in report.conformance.values())
