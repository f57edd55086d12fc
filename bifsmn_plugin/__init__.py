"""BiFSMN for keyword spotting (Qin et al., IJCAI 2022, arXiv:2202.06483) as a binkit plugin.

Modules (reference: ``shared/reference/bifsmn.md``; official code htqin/BiFSMN f6d52a0):

* :mod:`bifsmn_plugin.dfsmn`: the thinnable DFSMN family, architectures ``bifsmn`` (the
  thinnable student of the Thinnable Binarization Architecture, TBA: views "8"/"4"/"2"/"1" with
  per-view BN + PReLU), ``bifsmn_teacher`` (the full-precision teacher, the code's
  ``DfsmnModel_pre``) and ``dfsmn`` (the student's shape as a full-precision baseline).
* :mod:`bifsmn_plugin.hed`: distiller ``hed``, High-frequency Enhancement Distillation (Haar
  high-pass teacher target, batch-global attention distance between block outputs).
* :mod:`bifsmn_plugin.binarizer`: quantizer ``bifsmn_code``, the official code's v1 "Vanilla"
  scale rule, kept for reproducing the paper and not deployable.

Importing the package is cheap: torch is imported only inside the hook bodies of
:mod:`bifsmn_plugin.plugin`.
"""
