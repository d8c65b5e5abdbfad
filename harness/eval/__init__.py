"""Evaluation: the protocol and metrics (``protocol``), saved-prediction scoring (``predictions``)
and corruption robustness (``robustness``)."""
