"""Runs the pipeline with a slow scripted backend that logs every model call; killed by test_kill9 and test_ray."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scripted import respond  # noqa: E402

from synthllm import Pipeline, load_config  # noqa: E402
from synthllm.llm.scripted import ScriptedBackend  # noqa: E402


class LoggingBackend(ScriptedBackend):
    """Appends one line per request to a log (flushed), and takes a little time per batch."""

    def __init__(self, log: Path):
        super().__init__(respond, batch_size=4)
        self.log = log

    def generate(self, requests):
        time.sleep(0.02)
        replies = super().generate(requests)
        with open(self.log, "a") as handle:
            handle.write("x\n" * len(requests))
            handle.flush()
        return replies


if __name__ == "__main__":
    config_path, out, log = sys.argv[1:4]
    config = load_config(config_path)
    import functools

    # a factory: the local executor builds it once, Ray workers build their own
    pipeline = Pipeline(config, out, backend_factory=functools.partial(LoggingBackend, Path(log)), show_progress=False)
    pipeline.run()
    pipeline.close()
