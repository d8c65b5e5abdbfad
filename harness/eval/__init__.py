"""Evaluation: protocols, crops, resizing (``protocol``), the metric formula table and its torch /
NumPy front-ends (``metrics``), the sparse-GT path (``sparse``), the one split-evaluation loop
(``loop``), saved-prediction scoring (``predictions``) and corruption robustness (``robustness``)."""
