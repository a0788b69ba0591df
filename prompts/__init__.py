"""The prompt files, shipped as package data so an installed `labeling.run` finds them."""
