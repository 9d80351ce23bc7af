"""The SynthLLM study in one command: nested subsets → training → evaluation → law → forecast.

SPEC §4. :func:`run_study` trains a base model on nested subsets of a dataset
(one TRL ``SFTTrainer`` run per size and seed, a *unit*), evaluates every
checkpoint and the untrained model (size 0) on held-out benchmarks (greedy
accuracy graded with math-verify, held-out loss, training loss, generalization
gap), writes a results table as units finish, and fits the rectified and
vanilla laws with :mod:`synthllm.scaling` to forecast the plateau and the data
a target needs. With an anchor set it measures the empirical GGMI (SPEC §3).
Heavy dependencies (trl, peft, datasets, math-verify) load lazily:
``pip install 'synthllm[study]'``.
"""

from .config import StudyConfig, load_study_config
from .runner import RESULT_COLUMNS, Study, StudyOutcome, run_study

__all__ = ["RESULT_COLUMNS", "Study", "StudyConfig", "StudyOutcome", "load_study_config", "run_study"]
