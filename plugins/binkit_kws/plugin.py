"""Registers the KWS architectures and the export lowerings of DS-CNN, TC-ResNet and BC-ResNet."""

from binkit import hookimpl


@hookimpl
def binkit_architectures():
    from binkit_kws import bcresnet, cnn, dscnn, mlp, tcresnet

    return [*mlp.ENTRIES, *cnn.ENTRIES, *dscnn.ENTRIES, *tcresnet.ENTRIES, *bcresnet.ENTRIES]


@hookimpl
def binkit_lowerings():
    """Export lowerings of DS-CNN, TC-ResNet and BC-ResNet (binkit_kws/export.py)."""
    from binkit_kws import export

    return list(export.ENTRIES)
