"""Scaling laws for fine-tuning data: fit, bootstrap, forecast and plot.

- Laws: :class:`RectifiedLaw` ``B/(D_l + D^beta) + E`` (Lin et al., 2024),
  :class:`VanillaLaw` ``B/D^beta + E`` and :class:`ChinchillaLaw`
  ``E + A/N^alpha + B/D^beta``.
- Fitting: :func:`fit_law` (multi-start Huber in log space, Lin et al.'s
  two-stage procedure, or ``method="forecast"``, made for extrapolation),
  :func:`fit_chinchilla` (Epoch AI's procedure), :func:`bootstrap_fit`
  (residual bootstrap), :func:`form_risk` (forecast bands from refits that
  leave out the largest sizes).
- Forecasts: :func:`predict_with_band`, :func:`size_for_target`,
  :func:`plateau_point`, :func:`compare_models`.
"""

from synthllm.scaling.fit import (
    BootstrapResult,
    ChinchillaFit,
    FitResult,
    FormRisk,
    bootstrap_fit,
    epoch_init_grid,
    fit_chinchilla,
    fit_law,
    form_risk,
    huber,
    rmsd_log,
    tail_weights,
)
from synthllm.scaling.forecast import (
    ModelComparison,
    Plateau,
    compare_models,
    plateau_point,
    predict_with_band,
    size_for_target,
)
from synthllm.scaling.laws import ChinchillaLaw, RectifiedLaw, VanillaLaw
from synthllm.scaling.reference import (
    EPOCH_CHINCHILLA_FIT,
    LIN_DATASETS,
    SYNTHLLM_TABLE1_ACCURACY,
    SYNTHLLM_TABLE1_TOKENS,
    load_chinchilla_epoch,
    load_lin_curves,
    load_lin_paper_rmsd,
)
from synthllm.scaling.results import ResultsError, ScalingResults, read_results_csv

__all__ = [
    "EPOCH_CHINCHILLA_FIT",
    "LIN_DATASETS",
    "SYNTHLLM_TABLE1_ACCURACY",
    "SYNTHLLM_TABLE1_TOKENS",
    "load_chinchilla_epoch",
    "load_lin_curves",
    "load_lin_paper_rmsd",
    "BootstrapResult",
    "ChinchillaFit",
    "ChinchillaLaw",
    "FitResult",
    "FormRisk",
    "ModelComparison",
    "Plateau",
    "RectifiedLaw",
    "ResultsError",
    "ScalingResults",
    "VanillaLaw",
    "bootstrap_fit",
    "compare_models",
    "epoch_init_grid",
    "fit_chinchilla",
    "fit_law",
    "form_risk",
    "huber",
    "plateau_point",
    "predict_with_band",
    "read_results_csv",
    "rmsd_log",
    "size_for_target",
    "tail_weights",
]
