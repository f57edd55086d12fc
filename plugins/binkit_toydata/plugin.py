"""Registers the toy datasets."""

from binkit import hookimpl


@hookimpl
def binkit_datasets():
    from binkit_toydata import tones

    return [tones.ENTRY]
