"""synthllm: turn a pre-training corpus into diverse synthetic post-training data.

Python API::

    from synthllm import load_config, Pipeline
    config = load_config("run.yaml")
    pipeline = Pipeline(config, "runs/first")
    manifest = pipeline.run()

See the README for the command-line program.
"""

__version__ = "0.1.0"

from .config import Config, ConfigError, load_config  # noqa: E402
from .pipeline import Pipeline, reconcile  # noqa: E402

__all__ = ["Config", "ConfigError", "Pipeline", "load_config", "reconcile", "__version__"]
