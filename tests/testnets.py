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
