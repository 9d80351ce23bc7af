"""Measuring synthetic data: diversity, entropy, divergence, the GMM study and the run report.

Heavy dependencies (sentence-transformers, transformers, scikit-learn,
matplotlib) are imported inside the functions that need them.
"""

from .diversity import distinct_n, mean_pairwise_cosine, vendi_score, within_group_similarities
from .divergence import classifier_tv, curation_tv, mmd_rbf
from .gmm import gmm_study, plot_gmm
from .report import build_report, render_html, write_report

__all__ = [
    "build_report",
    "classifier_tv",
    "curation_tv",
    "distinct_n",
    "gmm_study",
    "mean_pairwise_cosine",
    "mmd_rbf",
    "plot_gmm",
    "render_html",
    "vendi_score",
    "within_group_similarities",
    "write_report",
]
