"""Closed-loop evaluation of policies in the benchmark's simulator."""
