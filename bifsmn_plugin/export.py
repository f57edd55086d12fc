"""Export lowering of the thinnable DFSMN (:class:`bifsmn_plugin.dfsmn.DFSMN`), one plan per view.

Registered through the plugin's ``binkit_lowerings`` hook (bifsmn_plugin/plugin.py). The graph
(bifsmn.md section 3) maps to artifact ops as::

    conv1, bn1, act1            conv2d_fp (or bconv2d) [+ affine] + prelu/relu   (C, n_mels', frames')
    conv2, bn2, act2            bconv2d (BN folded) + prelu                      (2C, n_mels'', T)
    channel-major reshape       reshape (2C * n_mels'', T), transpose (T, 2C * n_mels'')
    fc1, fc1_act                blinear + prelu, transpose                       (M, T)
    block i of the view:        bdwconv1d (padding [left*d, right*d]: the module's symmetric pad
                                  and crop), memory_bn folded, prelu, add x       m
                                bconv1d 1x1 (expand_bn folded), prelu/relu          h
                                bconv1d 1x1 (the view's project_bn folded), the view's prelu, add m
    head                        flatten (M * T), linear_fp                        (classes,)

Ops shared by views (the front end) are stored once; each view lists its own op sequence. The
blocks' ops are lowered per view, since the view decides both which blocks run and which
output BN/PReLU each uses.
"""

from __future__ import annotations

from binkit.entries import LoweringEntry
from bifsmn_plugin.dfsmn import DFSMN, DFSMNBlock

__all__ = ["lower_dfsmn"]


def _block(b, blk: DFSMNBlock, x: str, view: str) -> str:
    # torch pads `pad` frames on both sides, then crops `_crop` frames: the same as padding
    # pad - _crop = left*d before and span - that = right*d after (exact zeros either way)
    pad = blk.memory.padding[0]
    span = blk.memory.dilation[0] * (blk.memory.kernel_size[0] - 1)
    before = pad - blk._crop  # noqa: SLF001
    m = b.module(blk.memory, x, padding=[[before, span - before]])  # (M, T): pad [left*d, right*d]
    m = b.module(blk.memory_act, b.module(blk.memory_bn, m))
    m = b.add(m, x, name=b.names[id(blk)] + ".memory")
    h = b.module(blk.expand_act, b.module(blk.expand_bn, b.module(blk.expand, m)))  # (H, T)
    f = b.module(blk.project, h)  # (M, T)
    if blk.views is None:
        f = b.module(blk.project_act, b.module(blk.project_bn, f))
    else:
        f = b.module(blk.project_act[view], b.module(blk.project_bn[view], f))
    return b.add(f, m, name=b.names[id(blk)])


def lower_dfsmn(model: DFSMN, b, views: list[str]) -> None:
    """Lower ``model`` for each name in ``views`` (thinness levels, e.g. ``["8", "4", "2", "1"]``)."""
    for view in views:
        key = model._resolve_view(view)  # noqa: SLF001 - raises the model's own message on a bad view
        x = b.begin_view(view)
        x = b.module(model.act1, b.module(model.bn1, b.module(model.conv1, x)))
        x = b.module(model.act2, b.module(model.bn2, b.module(model.conv2, x)))
        ch, mels, t = b.shape(x)
        x = b.reshape(x, [ch * mels, t], name="reshape")  # channel-major per frame
        x = b.transpose(x, [1, 0], name="frames")  # (T, 2C * n_mels'')
        x = b.module(model.fc1_act, b.module(model.fc1, x))  # (T, M)
        x = b.transpose(x, [1, 0], name="memory")  # (M, T)
        for i in model.views[key]:
            x = _block(b, model.blocks[i], x, key)
        x = b.flatten(x, name="head")  # (M * T,), memory-major like forward_head
        b.end_view(b.module(model.classifier, b.module(model.head_drop, x)))


ENTRY = LoweringEntry(name="dfsmn", model_class=DFSMN, fn=lower_dfsmn,
                      description="thinnable DFSMN: one plan per view (bifsmn.md section 3)")
