"""Training, inference and visualisation entry points for RewACT."""
