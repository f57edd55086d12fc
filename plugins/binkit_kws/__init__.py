"""Keyword-spotting architectures for binkit (one family per module).

Small reference models used by tests, the demo and the binarizer comparison (``mlp``,
``small_cnn``), and the published KWS backbones ``dscnn`` (Hello Edge DS-CNN S/M/L),
``tcresnet`` (TC-ResNet8/14) and ``bcresnet`` (BC-ResNet-tau).
"""
