"""Small torch networks and helpers shared by the export, reference, engine and bench tests.

On the test path through ``[tool.pytest.ini_options] pythonpath``; imports torch, so only
torch-dependent test modules import it (after ``pytest.importorskip("torch")`` where needed).
"""

from __future__ import annotations

import torch
from torch import nn


def randomize_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking BatchNorm statistics (some negative gammas) and PReLU slopes in
    [-0.5, 0.5); returns ``model`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 3 - 1.5)
                m.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.num_parameters, generator=g) - 0.5)
    return model.eval()


class ConvBNPReLU(nn.Module):
    """(1, 6, 6): float stem, one binary-able conv + BN + PReLU, float head (3 classes)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.PReLU(16)
        self.flat = nn.Flatten()
        self.head = nn.Linear(16 * 6 * 6, 3)

    def forward(self, x):
        return self.head(self.flat(self.act(self.bn(self.conv(self.stem(x))))))


class EveryBinaryOpNet(nn.Module):
    """(1, 8, 8) -> stem (float) -> bconv2d 63->65 s2 -> (65, 16) -> bdwconv1d -> bconv1d 65->63
    -> flatten -> blinear 1008->65 -> head (float): every binary op kind, partial words."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 63, 3, padding=1)
        self.bn0, self.act0 = nn.BatchNorm2d(63), nn.PReLU(63)
        self.conv = nn.Conv2d(63, 65, 3, stride=2, padding=1)
        self.bn1, self.act1 = nn.BatchNorm2d(65), nn.PReLU(65)
        self.dw = nn.Conv1d(65, 65, 5, padding=2, groups=65)
        self.bn2, self.act2 = nn.BatchNorm1d(65), nn.PReLU(65)
        self.pw = nn.Conv1d(65, 63, 3, padding=1)
        self.bn3, self.act3 = nn.BatchNorm1d(63), nn.PReLU(63)
        self.fc = nn.Linear(63 * 16, 65)
        self.bn4, self.act4 = nn.BatchNorm1d(65), nn.PReLU(65)
        self.head = nn.Linear(65, 5)

    def forward(self, x):
        x = self.act0(self.bn0(self.stem(x)))
        x = self.act1(self.bn1(self.conv(x))).flatten(2)
        x = self.act2(self.bn2(self.dw(x)))
        x = self.act3(self.bn3(self.pw(x))).flatten(1)
        return self.head(self.act4(self.bn4(self.fc(x))))


class KwsOpsNet(nn.Module):
    """(1, 12, 10) -> float stem -> binary depthwise 3x3 s2 (bdwconv2d) -> binary 1x1 (bconv2d)
    -> SiLU -> AvgPool2d 2 (padding 1, count_include_pad off) -> binary 3x3 -> global average
    (mean) -> head: the ops the KWS backbones (DS-CNN, TC-ResNet, BC-ResNet) add; 65 channels
    (a partial second word)."""

    def __init__(self, c: int = 65):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.bn0, self.act0 = nn.BatchNorm2d(c), nn.PReLU(c)
        self.dw = nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(c), nn.PReLU(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(c), nn.SiLU()
        self.pool = nn.AvgPool2d(2, padding=1, count_include_pad=False)
        self.conv = nn.Conv2d(c, c, (3, 1), padding=(1, 0), bias=False)
        self.bn3, self.act3 = nn.BatchNorm2d(c), nn.PReLU(c)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(c, 4)

    def forward(self, x):
        x = self.act0(self.bn0(self.stem(x)))
        x = self.act1(self.bn1(self.dw(x)))
        x = self.pool(self.act2(self.bn2(self.pw(x))))
        x = self.act3(self.bn3(self.conv(x)))
        return self.head(self.flat(self.gap(x)))


class BroadcastNet(nn.Module):
    """(1, 8, 12) -> float stem (C, 8, 12) -> binary 3x3 -> frequency mean (C, 1, 12) -> binary
    depthwise (1, 3) dilation 2 -> SiLU -> broadcast add over frequency -> ReLU -> global mean
    -> head: BC-ResNet's broadcast residual in miniature, lowered by ``lower_for_export``."""

    def __init__(self, c: int = 40):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.bn0, self.act0 = nn.BatchNorm2d(c), nn.PReLU(c)
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(c), nn.PReLU(c)
        self.tconv = nn.Conv2d(c, c, (1, 3), padding=(0, 2), dilation=(1, 2), groups=c, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(c), nn.SiLU()
        self.relu = nn.ReLU()
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv(self.act0(self.bn0(self.stem(x))))))
        f = self.act2(self.bn2(self.tconv(x.mean(2, keepdim=True))))
        return self.head(self.relu(x + f).mean((2, 3)))

    def lower_for_export(self, b, views):
        for view in views:
            x = b.begin_view(view)
            x = b.module(self.act0, b.module(self.bn0, b.module(self.stem, x)))
            x = b.module(self.act1, b.module(self.bn1, b.module(self.conv, x)))
            f = b.module(self.act2, b.module(self.bn2, b.module(self.tconv, b.mean(x, [1], True, name="freq"))))
            y = b.module(self.relu, b.add(x, f, name="broadcast"))
            b.end_view(b.module(self.head, b.mean(y, [1, 2], False, name="pool")))
