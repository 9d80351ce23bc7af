"""Loaders for the published reference data used to validate the fitters.

- Lin et al. (2024) fine-tuning curves (``lin2024_{flan,gigaword,wmt19}.csv``:
  30 models x 15 sizes 0, 200, ..., 1,638,400) and their fitter's in-sample RMSD
  (``lin2024_rmsd.csv``).
- Epoch AI's extraction of Chinchilla's points (``chinchilla_epoch.csv``), with
  tokens = FLOP / (6 N) as in Epoch's notebook.
- SynthLLM's Table 1 (predicted MATH accuracy of Llama-3.2-3B and Llama-3.1-8B).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = [
    "EPOCH_CHINCHILLA_FIT",
    "LIN_DATASETS",
    "SYNTHLLM_TABLE1_ACCURACY",
    "SYNTHLLM_TABLE1_TOKENS",
    "load_chinchilla_epoch",
    "load_lin_curves",
    "load_lin_paper_rmsd",
]

LIN_DATASETS = ("flan", "gigaword", "wmt19")

#: Epoch AI's published fit of ``E + A/N^alpha + B/D^beta`` (Besiroglu et al., 2024).
EPOCH_CHINCHILLA_FIT = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}

#: SynthLLM Table 1: tokens and predicted MATH accuracy (%).
SYNTHLLM_TABLE1_TOKENS = np.array([10e9, 50e9, 250e9, 300e9, 1e12, 4e12])
SYNTHLLM_TABLE1_ACCURACY = {
    "Llama-3.2-3B": np.array([64.6, 74.7, 80.5, 80.9, 83.1, 84.4]),
    "Llama-3.1-8B": np.array([73.2, 78.6, 81.4, 81.6, 82.6, 83.2]),
}


def load_lin_curves(folder: str | Path, dataset: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One Lin et al. benchmark file.

    Parameters
    ----------
    folder : str or Path
        The ``scaling`` data folder.
    dataset : {"flan", "gigaword", "wmt19"}

    Returns
    -------
    sizes : ndarray of shape (15,)
        Fine-tuning set sizes, starting at 0.
    curves : dict[str, ndarray]
        Model name -> test loss at each size.
    """
    with (Path(folder) / f"lin2024_{dataset}.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    sizes = np.array([float(value) for value in rows[0][1:16]])
    return sizes, {row[0]: np.array([float(value) for value in row[1:16]]) for row in rows[1:]}


def load_lin_paper_rmsd(folder: str | Path) -> dict[tuple[str, str], float]:
    """Lin et al.'s in-sample RMSD under log of their rectified fit, per (dataset, model).

    Parameters
    ----------
    folder : str or Path
        The ``scaling`` data folder.

    Returns
    -------
    dict
        ``(dataset in lower case, model) -> RMSD``.
    """
    with (Path(folder) / "lin2024_rmsd.csv").open(newline="", encoding="utf-8") as handle:
        return {
            (row["dataset"].lower(), row["model"]): float(row["our_rmsd_under_log"]) for row in csv.DictReader(handle)
        }


def load_chinchilla_epoch(folder: str | Path, drop_highest_loss: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch AI's Chinchilla points as (parameters, tokens, loss).

    Parameters
    ----------
    folder : str or Path
        The ``scaling`` data folder.
    drop_highest_loss : int, default=5
        Leave out this many points with the highest loss. With 5 (the smallest,
        worst-converged runs) the fit reproduces Epoch's published parameters;
        with all 245 points it does not (E = 1.89, beta = 0.45; see
        docs/scaling.md).

    Returns
    -------
    n_params, tokens, loss : ndarray
    """
    with (Path(folder) / "chinchilla_epoch.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    n_params = np.array([float(row["Model Size"]) for row in rows])
    tokens = np.array([float(row["Training FLOP"]) for row in rows]) / (6.0 * n_params)
    loss = np.array([float(row["loss"]) for row in rows])
    keep = np.sort(np.argsort(loss, kind="stable")[: loss.size - drop_highest_loss])
    return n_params[keep], tokens[keep], loss[keep]
