"""Registers the first-party distillers."""

from binkit import hookimpl


@hookimpl
def binkit_distillers():
    from binkit_distill import kd

    return [kd.ENTRY]
