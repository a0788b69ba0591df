"""Scoring reward sources against ground truth (metrics, bootstrap intervals, RewACT predictions)
and closed-loop evaluation of policies in the benchmark's simulator (rollouts, success intervals)."""
