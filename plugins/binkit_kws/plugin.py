"""Registers the KWS architectures."""

from binkit import hookimpl


@hookimpl
def binkit_architectures():
    from binkit_kws import bcresnet, cnn, dscnn, mlp, tcresnet

    return [*mlp.ENTRIES, *cnn.ENTRIES, *dscnn.ENTRIES, *tcresnet.ENTRIES, *bcresnet.ENTRIES]
