"""Registers the KWS architectures."""

from binkit import hookimpl


@hookimpl
def binkit_architectures():
    from binkit_kws import cnn, mlp

    return [*mlp.ENTRIES, *cnn.ENTRIES]
