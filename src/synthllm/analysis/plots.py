"""The report's figures, drawn with matplotlib from the report dictionary alone.

Kept apart from :mod:`.report` (which computes the numbers) and from the page
template, so a figure can never show a number that ``report.json`` lacks.
Each figure is a base64 PNG (100 dpi, 7-10 x 3.2-3.4 inches: 20-60 kB each)
that the page embeds inline.
"""

from __future__ import annotations

import base64
import io

import numpy as np


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def stage_counts(stages: dict) -> str:
    """Bars of records in and out of each stage (``report["counts"]["stages"]``)."""
    import matplotlib.pyplot as plt

    names = list(stages)
    figure, axis = plt.subplots(figsize=(9, 3.2), constrained_layout=True)
    positions = np.arange(len(names))
    axis.bar(positions - 0.2, [stages[n].get("in", 0) or 0 for n in names], 0.4, label="in")
    axis.bar(positions + 0.2, [stages[n].get("out", 0) or 0 for n in names], 0.4, label="out")
    axis.set_xticks(positions, names, rotation=20)
    axis.set_ylabel("records")
    axis.legend()
    return _png(figure)


def lengths(levels: dict) -> str:
    """Histograms of question and answer lengths per level (``report["lengths"]["levels"]``)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.2), constrained_layout=True)
    for axis, part in zip(axes, ("question", "answer")):
        for level, parts in levels.items():
            hist = parts[part].get("hist")
            if hist:
                labels = [f"<{e}" for e in hist["edges"][1:]]
                axis.plot(labels, hist["counts"], marker="o", label=f"Level-{level}")
        axis.set_title(f"{part} length (tokens)")
        axis.set_ylabel("samples")
        axis.tick_params(axis="x", labelrotation=45)
        axis.legend()
    return _png(figure)


def within_source(levels: dict) -> str:
    """Density of same-source question similarities per level (``report["diversity"]["levels"]``)."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.4), constrained_layout=True)
    for level, data in levels.items():
        hist = data["within_source"]
        if hist["n_pairs"]:
            edges = np.asarray(hist["edges"])
            density = np.asarray(hist["counts"]) / (hist["n_pairs"] * np.diff(edges))
            axis.step(edges[:-1], density, where="post", label=f"Level-{level} ({hist['n_pairs']} pairs)")
    axis.set_xlabel("cosine similarity of two questions from the same source")
    axis.set_ylabel("density")
    axis.legend()
    return _png(figure)


def figures(report: dict) -> dict[str, str]:
    """Base64 PNGs of the report's figures, keyed by figure id; a figure without data is left out.

    Parameters
    ----------
    report : dict
        A report from :func:`~synthllm.analysis.report.build_report`.

    Returns
    -------
    dict
        ``{"stage_counts", "lengths", "diversity"}`` (those with data) to base64 PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    images: dict[str, str] = {}
    if report["counts"]["stages"]:
        images["stage_counts"] = stage_counts(report["counts"]["stages"])
    if report["lengths"]["levels"]:
        images["lengths"] = lengths(report["lengths"]["levels"])
    diversity_levels = report["diversity"]["levels"]
    if any(level["within_source"]["n_pairs"] for level in diversity_levels.values()):
        images["diversity"] = within_source(diversity_levels)
    return images
