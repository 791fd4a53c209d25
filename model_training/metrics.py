"""Classification metrics in the metrics.json schema, with bootstrap 95% intervals.

One implementation serves `evaluate` here and `python -m classifier.batch score --labelled` (which runs
without scikit-learn): classifier.batch_metrics; tests/batch/test_batch_metrics.py checks it against
scikit-learn.
"""

from classifier.batch_metrics import MALIGNANT, bootstrap_ci, compute

__all__ = ["MALIGNANT", "bootstrap_ci", "compute"]
