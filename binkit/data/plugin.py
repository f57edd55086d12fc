"""Registers binkit's built-in datasets through the same hook as any plugin."""

from binkit import hookimpl


@hookimpl
def binkit_datasets():
    from binkit.data import speech_commands_dataset

    return [speech_commands_dataset.ENTRY]
