"""Training throughput of a study unit vs a plain TRL SFTTrainer script, same data, model and settings.

A unit is one ``SFTTrainer.train()`` call plus the study's bookkeeping (the
prompt-completion dataset, the seeding, the checkpoint callback, saving the
final model, which is outside the timed region in both). The baseline is the
script a user would write by hand from TRL's documentation, with TRL's
default activation checkpointing turned off as in the unit (same settings). Runs alternate
(plain, unit, plain, unit, ...) so that load changes on a shared machine hit
both alike; the ratio is reported on wall-clock tokens/s and on tokens per
CPU-second (the latter is what to trust when other processes share the cores).

    python bench/bench_study.py --samples 32 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def plain_trl(model_folder: Path, records: list[dict], settings, out: Path) -> dict:
    """The hand-written TRL script: prompt-completion data, SFTConfig, SFTTrainer.train()."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["question"]}],
                                  "completion": [{"role": "assistant", "content": r["answer"]}]} for r in records])
    args = SFTConfig(output_dir=str(out), learning_rate=settings.learning_rate, num_train_epochs=settings.epochs,
                     per_device_train_batch_size=settings.per_device_batch_size,
                     gradient_accumulation_steps=settings.batch_size // settings.per_device_batch_size,
                     lr_scheduler_type="linear", max_length=settings.max_length, bf16=settings.bf16, seed=0,
                     save_strategy="no", report_to="none", activation_checkpointing=False, disable_tqdm=True, use_cpu=True, logging_steps=100)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * settings.epochs
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.train()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu}


def study_unit(model_folder: Path, records: list[dict], settings, out: Path) -> dict:
    from synthllm.study.config import TrainingConfig
    from synthllm.study.data import Sample
    from synthllm.study.train import train_unit

    training = TrainingConfig(preset="cpu", learning_rate=settings.learning_rate, epochs=settings.epochs,
                              batch_size=settings.batch_size, per_device_batch_size=settings.per_device_batch_size,
                              max_length=settings.max_length, precision="bf16" if settings.bf16 else "fp32"
                              ).resolved(cuda=False)
    samples = [Sample((("user", r["question"]),), r["answer"]) for r in records]
    record = train_unit(model_folder, samples, training, 0, out, "cpu")
    return {"tokens": record["train_tokens"], "wall_s": record["runtime_s"], "cpu_s": record["cpu_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32, help="GSM8K train samples (the first ones)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--per-device-batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    settings = parser.parse_args()
    from synthllm.io import read_jsonl
    from synthllm.llm.embedded import resolve_model_path
    from synthllm.study.train import bf16_supported
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()
    settings.bf16 = bf16_supported("cpu") if settings.precision == "auto" else settings.precision == "bf16"
    records = read_jsonl(DATA)[: settings.samples]
    model_folder = resolve_model_path()
    print(f"data: {settings.samples} GSM8K train samples; model {model_folder.name}; batch {settings.batch_size} "
          f"(per device {settings.per_device_batch_size}), max_length {settings.max_length}, epochs {settings.epochs}, "
          f"{'bf16' if settings.bf16 else 'fp32'}; torch threads {__import__('torch').get_num_threads()}; "
          f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    results: dict[str, list[dict]] = {"plain TRL": [], "study unit": []}
    for repeat in range(settings.repeats):
        for name, run in (("plain TRL", plain_trl), ("study unit", study_unit)):
            out = Path(tempfile.mkdtemp(prefix="bench-study-"))
            try:
                result = run(model_folder, records, settings, out)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            results[name].append(result)
            print(f"run {repeat + 1} {name:10s}: {result['tokens']:.0f} tokens, {result['wall_s']:.1f} s wall "
                  f"({result['tokens'] / result['wall_s']:.1f} tokens/s), {result['cpu_s']:.1f} s CPU "
                  f"({result['tokens'] / result['cpu_s']:.1f} tokens/CPU-s)", flush=True)
    summary = {}
    for name, runs in results.items():
        summary[name] = (statistics.median(r["tokens"] / r["wall_s"] for r in runs),
                         statistics.median(r["tokens"] / r["cpu_s"] for r in runs))
    plain, unit = summary["plain TRL"], summary["study unit"]
    print(f"median tokens/s:     plain {plain[0]:.1f}, unit {unit[0]:.1f}, ratio unit/plain {unit[0] / plain[0]:.3f}")
    print(f"median tokens/CPU-s: plain {plain[1]:.1f}, unit {unit[1]:.1f}, ratio unit/plain {unit[1] / plain[1]:.3f}")


if __name__ == "__main__":
    main()
