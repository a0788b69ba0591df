"""Matplotlib for figures written to files.

Imported only when a figure is drawn (matplotlib is slow to import) and always on the Agg backend,
so every plot also works on a machine with no display (CI, a cluster node)."""


def pyplot():
    """`matplotlib.pyplot`, on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
