"""BiFSMN for keyword spotting (Qin et al., IJCAI 2022, arXiv:2202.06483) as a binkit plugin.

This package will hold the thinnable DFSMN architecture, High-frequency Enhancement
Distillation (HED) and the Thinnable Binarization Architecture (TBA) in later issues. For now it
holds the code-faithful binarizer :mod:`bifsmn_plugin.binarizer` (quantizer ``bifsmn_code``),
the official code's v1 "Vanilla" scale rule, which is kept for reproducing the paper and is not
deployable.

Importing the package is cheap: torch is imported only inside the hook bodies of
:mod:`bifsmn_plugin.plugin`.
"""
