"""Keyword-spotting architectures for binkit (one family per module).

Today: small reference models used by tests, the demo and the binarizer comparison (``mlp``,
``small_cnn``). DS-CNN, TC-ResNet and BC-ResNet join here (see the backbone issue).
"""
