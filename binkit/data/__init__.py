"""Data: dataset protocol and feature front-ends (training side).

A dataset plugin's factory returns :class:`LabeledSplits`: fixed label order plus one torch
``Dataset`` per split yielding ``(features, label_index)`` with features shaped like
``FeaturesSpec.shape``.
"""

from __future__ import annotations

from binkit.data.splits import LabeledSplits

__all__ = ["LabeledSplits"]
