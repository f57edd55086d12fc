"""Registers the numpy reference backend (``"reference"``) through the ``binkit_backends`` hook.

Torch-free, like every backend hook: the backend module is imported inside the hook body.
"""

from binkit import hookimpl


@hookimpl
def binkit_backends():
    """``reference``: the numpy oracle that runs any valid artifact (slow, obviously correct)."""
    from binkit.entries import BackendEntry
    from binkit.runtime.reference import ReferenceBackend

    return [BackendEntry(
        name="reference", factory=ReferenceBackend,
        description="numpy reference executor of the artifact plan (slow; the conformance oracle)",
        reference="binkit.runtime.reference",
    )]
