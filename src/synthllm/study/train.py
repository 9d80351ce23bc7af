"""Training one unit: TRL's ``SFTTrainer`` on one subset, resumable from its last checkpoint.

Loss on the assistant turn only: each sample is given to TRL as a
*prompt-completion* pair (the conversation before the answer, and the answer),
for which ``SFTTrainer`` masks the prompt tokens (``completion_only_loss``).
This works with any chat template, unlike ``assistant_only_loss``, which needs
``{% generation %}`` markers that SmolLM2's template lacks.

Nothing here wraps the trainer's inner loop: a unit *is* a plain
``SFTTrainer.train()`` call, so its throughput is TRL's (bench/bench_study.py
measures the ratio against a bare TRL script in the same run).

Checkpoints cost time (a full SmolLM2-135M checkpoint with its AdamW state
is about 1.6 GB), so by default one is written every ``checkpoint_minutes``
(10) rather than every N steps: a short CPU unit writes none, a long GPU unit
loses at most ten minutes to a kill. Resuming: checkpoints go to ``UNIT/trainer/checkpoint-N`` (model, optimizer,
scheduler, RNG states); a restarted unit passes the last one to
``train(resume_from_checkpoint=...)``, which restores them and skips the
batches already seen. With ``threads: 1`` on a CPU, the resumed weights equal
an uninterrupted run's bit for bit (tests/study/test_kill9.py). The final
model is saved to a staging folder and renamed to ``UNIT/model``, so a model
folder is either whole or absent.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import InputError, MissingDependency

__all__ = ["bf16_supported", "sft_config_kwargs", "train_unit"]


def _require():
    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
        import datasets  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"the study needs {exc.name}: pip install 'synthllm[study]'") from None


def bf16_supported(device: str) -> bool:
    """Whether ``device`` computes in bf16 natively (CUDA bf16, or a CPU with AVX512-BF16 or AMX)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def _precision_flags(precision: str, device: str) -> dict:
    if precision == "auto":
        precision = "bf16" if bf16_supported(device) else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def sft_config_kwargs(training, n_samples: int, seed: int, output_dir: Path, device: str) -> dict:
    """The ``SFTConfig`` arguments of a unit (shared with the benchmark's plain TRL script).

    Parameters
    ----------
    training : TrainingConfig
        Resolved training settings (``TrainingConfig.resolved``).
    n_samples : int
        Samples in the subset.
    seed : int
        Training seed (initialisation of LoRA, data order, dropout).
    output_dir : Path
        Where checkpoints go.
    device : str
        ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    dict
    """
    import torch

    devices = max(1, torch.cuda.device_count()) if device.startswith("cuda") else 1
    batch = min(training.batch_size, n_samples)
    per_device = min(training.per_device_batch_size, batch)
    accumulation = max(1, math.ceil(batch / (per_device * devices)))
    steps_per_epoch = math.ceil(n_samples / (per_device * devices * accumulation))
    total = training.max_steps or math.ceil(steps_per_epoch * training.epochs)
    return dict(
        output_dir=str(output_dir),
        learning_rate=training.learning_rate,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=training.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        weight_decay=training.weight_decay,
        optim="adamw_torch",
        max_length=training.max_length,
        packing=False,
        completion_only_loss=True,
        seed=seed,
        data_seed=seed,
        save_strategy="steps" if training.save_steps else "no",  # else TimedCheckpoints decides
        save_steps=training.save_steps or 500,
        save_total_limit=1,
        logging_steps=max(1, total // 20),
        report_to="none",
        disable_tqdm=True,
        use_cpu=not device.startswith("cuda"),
        dataloader_num_workers=0,
        **_precision_flags(training.precision, device),
        # TRL turns activation checkpointing on by default (~30% more compute); the study only when asked
        activation_checkpointing=training.gradient_checkpointing,
    )


def sft_dataset(samples):
    """A ``datasets.Dataset`` of prompt-completion conversations (TRL's format)."""
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": sample.prompt_dicts(), "completion": [{"role": "assistant", "content": sample.answer}]}
        for sample in samples
    ])


def timed_checkpoints(minutes: float):
    """A trainer callback that asks for a checkpoint when ``minutes`` have passed since the last one."""
    from transformers import TrainerCallback

    class TimedCheckpoints(TrainerCallback):
        def __init__(self):
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.last >= minutes * 60:
                control.should_save = True
                self.last = time.monotonic()
            return control

    return TimedCheckpoints()


COMPLETE = ".complete"


def checkpoint_markers():
    """A trainer callback that marks a checkpoint complete once the trainer has written all of it.

    transformers writes ``checkpoint-N/`` file by file; a kill during the save leaves a folder
    that ``get_last_checkpoint`` still returns and ``train(resume_from_checkpoint=...)`` rejects
    (found by tests/study/test_study.py's kill -9). Only marked checkpoints are resumed from.
    """
    from transformers import TrainerCallback

    from ..store import atomic_write_text

    class CheckpointMarkers(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                atomic_write_text(folder / COMPLETE, f"{state.global_step}\n")
            return control

    return CheckpointMarkers()


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint in ``folder``; incomplete ones (a kill during a save) are removed."""
    if not folder.is_dir():
        return None
    found = sorted((int(path.name.split("-")[1]), path) for path in folder.glob("checkpoint-*")
                   if path.name.split("-")[1].isdigit())
    complete = [path for _, path in found if (path / COMPLETE).is_file()]
    for _, path in found:
        if not (path / COMPLETE).is_file():
            shutil.rmtree(path, ignore_errors=True)
    return str(complete[-1]) if complete else None


def train_unit(model_folder: Path, samples, training, seed: int, unit_dir: Path, device: str = "cpu") -> dict:
    """Fine-tune ``model_folder`` on ``samples``; resume from ``unit_dir/trainer`` if a checkpoint is there.

    Parameters
    ----------
    model_folder : Path
        The base model (a Hugging Face folder).
    samples : list of Sample
        The subset, in training order.
    training : TrainingConfig
        Resolved training settings.
    seed : int
        Training seed.
    unit_dir : Path
        The unit's folder; the final model is written to ``unit_dir/model``.
    device : str
        ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    dict
        ``steps``, ``train_loss`` (the trainer's mean over this call's steps),
        ``train_tokens`` (non-padding tokens processed, all epochs),
        ``runtime_s``, ``tokens_per_s``, ``cpu_s``, ``resumed_from``.
    """
    _require()
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed
    from transformers.utils import logging as transformers_logging
    from trl import SFTConfig, SFTTrainer

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()  # TRL's per-step dataset bars are noise in the study's log
    set_seed(seed)  # SFTTrainer wraps LoRA adapters before Trainer seeds: seed their initialisation here
    if training.threads:
        torch.set_num_threads(training.threads)
    trainer_dir = unit_dir / "trainer"
    resume = _last_checkpoint(trainer_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    peft_config = None
    if training.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=training.lora_r, lora_alpha=training.lora_alpha, lora_dropout=training.lora_dropout,
                                 target_modules=training.lora_target_modules, task_type="CAUSAL_LM")
    args = SFTConfig(**sft_config_kwargs(training, len(samples), seed, trainer_dir, device))
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(samples), processing_class=tokenizer,
                         peft_config=peft_config)
    if len(trainer.train_dataset) == 0:
        raise InputError.at("training.max_length", f"every sample of {unit_dir.name} has a prompt of "
                            f"{training.max_length} tokens or more, so no answer token is left to train on")
    trainer.add_callback(checkpoint_markers())
    if not training.save_steps:
        trainer.add_callback(timed_checkpoints(training.checkpoint_minutes))
    trainer.remove_callback(PrinterCallback)  # the study logs one line per unit; the loss curve is in trainer_state.json
    per_epoch = int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]))
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    runtime = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    trained = trainer.model
    if training.method == "lora":
        trained = trained.merge_and_unload()
    staging = Path(tempfile.mkdtemp(dir=unit_dir, prefix=".model-"))
    try:
        trained.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        target = unit_dir / "model"
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    steps = int(trainer.state.global_step)
    epochs_done = float(trainer.state.epoch or 0.0)
    tokens = int(round(per_epoch * epochs_done))
    return {
        "steps": steps,
        "train_loss": float(result.training_loss),
        "train_tokens": tokens,
        "runtime_s": runtime,
        "cpu_s": cpu,
        "tokens_per_s": tokens / runtime if runtime > 0 and not resume else None,
        "resumed_from": Path(resume).name if resume else None,
        "settings": {k: v for k, v in args.to_dict().items()
                     if k in ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                              "gradient_accumulation_steps", "lr_scheduler_type", "max_length", "bf16", "fp16")},
    }
