"""Scoring reward sources against ground truth: metrics, bootstrap intervals, RewACT predictions."""
