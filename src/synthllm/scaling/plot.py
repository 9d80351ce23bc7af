"""Log-log plot of fitted scaling curves with confidence bands (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthllm.scaling.fit import FitResult
from synthllm.scaling.forecast import predict_with_band

__all__ = ["plot_fits"]


def plot_fits(
    fits: dict[str, FitResult],
    path: str | Path,
    *,
    heldout: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    size_label: str = "tokens",
    error_label: str = "error",
    extend_to: float | None = None,
) -> Path:
    """Draw data points, fitted curves and 95% bands on log-log axes.

    Parameters
    ----------
    fits : dict[str, FitResult]
        Model name -> fit (bands as in :func:`predict_with_band`: form-risk
        intervals where :func:`form_risk` ran, else bootstrap bands).
    path : str or Path
        Output image file (PNG).
    heldout : dict[str, (sizes, errors)], optional
        Held-out points per model, drawn as hollow markers.
    size_label, error_label : str
        Axis labels.
    extend_to : float, optional
        Draw the curves up to this size (default: 4x the largest size shown).

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heldout = heldout or {}
    figure, axes = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    positive = [fit.sizes[fit.sizes > 0] for fit in fits.values()]
    positive += [sizes[sizes > 0] for sizes, _ in heldout.values()]
    smallest = min(sizes.min() for sizes in positive if sizes.size)
    largest = max(sizes.max() for sizes in positive if sizes.size)
    grid = np.geomspace(smallest / 2.0, extend_to or largest * 4.0, 300)
    for index, (name, fit) in enumerate(fits.items()):
        colour = colours[index % len(colours)]
        shown = fit.sizes > 0  # D = 0 has no place on a log axis
        axes.scatter(fit.sizes[shown], fit.errors[shown], color=colour, s=28, zorder=3, label=f"{name} (fitted)")
        axes.plot(grid, fit.predict(grid), color=colour, linewidth=1.6)
        band = predict_with_band(fit, grid)
        if "low" in band:
            axes.fill_between(grid, band["low"], band["high"], color=colour, alpha=0.18, linewidth=0)
        if name in heldout:
            sizes, errors = heldout[name]
            axes.scatter(
                sizes, errors, facecolors="none", edgecolors=colour, marker="o", s=60, linewidths=1.6, zorder=4,
                label=f"{name} (held out)",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(size_label)
    axes.set_ylabel(error_label)
    law = next(iter(fits.values())).law.name
    kind = "forecast interval" if any(fit.form_risk is not None for fit in fits.values()) else "bootstrap band"
    axes.set_title(f"{law} law fit; shaded: 95% {kind}")
    axes.grid(True, which="both", alpha=0.25)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
