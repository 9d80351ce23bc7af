"""The study's configuration: one pydantic model, a description on every field.

Two recipes share one schema. ``training.preset: gpu`` is the SynthLLM paper's
(AdamW, lr 1e-5, linear schedule, 3 epochs, batch 512); ``cpu`` is a small
recipe that finishes on two cores (lr 1e-4, 2 epochs, batch 8, sequences cut to
384 tokens). ``auto`` (the default) picks ``gpu`` when CUDA is available. Any
field set explicitly wins over its preset. Relative paths are resolved against
the config file's folder, as in the pipeline's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import load_yaml_model

__all__ = ["BenchmarkSpec", "DataSource", "EvalConfig", "FitConfig", "SizesConfig", "StudyConfig",
           "TrainingConfig", "load_study_config", "PRESETS"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Section):
    """A set of training samples."""

    path: Path = Field(..., description="A synthllm run folder (its dataset), or a .parquet/.jsonl file whose rows have `messages` (chat format) or question/answer fields (question|problem|prompt|instruction and answer|solution|response|completion|output).")
    name: str | None = Field(None, description="Label of this set in the results table (default: 'train' for the training set, 'anchor' for the anchor set).")
    limit: int | None = Field(None, ge=1, description="Use at most this many rows of the file (the first ones), before the seeded shuffle.")


class SizesConfig(_Section):
    """The nested subset sizes."""

    unit: Literal["samples", "tokens"] = Field("samples", description="What the sizes count: samples, or training tokens (a token-sized subset is the shortest prefix of the shuffled set reaching that many tokens).")
    values: list[int] | None = Field(None, description="Explicit sizes (> 0); overrides the geometric series. Sizes above the data available are an error.")
    smallest: int = Field(32, ge=1, description="Geometric series: the smallest non-zero size.")
    factor: float = Field(2.0, gt=1, description="Geometric series: ratio between consecutive sizes.")
    count: int = Field(5, ge=1, description="Geometric series: how many non-zero sizes (cut at the data available, which is then the last size).")
    include_zero: bool = Field(True, description="Evaluate the untrained base model as size 0 (the rectified law's B/D_l + E point).")


PRESETS: dict[str, dict] = {
    # SynthLLM's recipe (SPEC §2): AdamW, lr 1e-5, batch 512, linear schedule, 3 epochs.
    "gpu": {"learning_rate": 1e-5, "epochs": 3.0, "batch_size": 512, "per_device_batch_size": 16, "max_length": 2048},
    # Small enough for two CPU cores: a few hundred samples train in minutes.
    "cpu": {"learning_rate": 1e-4, "epochs": 2.0, "batch_size": 8, "per_device_batch_size": 8, "max_length": 384},
}


class TrainingConfig(_Section):
    """Supervised fine-tuning of one unit with TRL's SFTTrainer (loss on the assistant turn only)."""

    preset: Literal["auto", "gpu", "cpu"] = Field("auto", description="Defaults for the fields left unset: 'gpu' is the SynthLLM paper's recipe, 'cpu' a small one for two cores; 'auto' picks gpu when CUDA is available.")
    method: Literal["full", "lora"] = Field("full", description="Full fine-tuning, or LoRA adapters through peft (merged into the checkpoint after training).")
    learning_rate: float | None = Field(None, gt=0, description="Peak learning rate of AdamW (preset: gpu 1e-5, cpu 1e-4).")
    epochs: float | None = Field(None, gt=0, description="Passes over the subset (preset: gpu 3, cpu 2).")
    batch_size: int | None = Field(None, ge=1, description="Effective batch size in samples: per-device batch x gradient accumulation x devices (preset: gpu 512, cpu 8). Small subsets use min(batch_size, subset size).")
    per_device_batch_size: int | None = Field(None, ge=1, description="Samples per forward pass on one device (preset: gpu 16, cpu 8).")
    max_length: int | None = Field(None, ge=16, description="Training sequences are cut to this many tokens (preset: gpu 2048, cpu 384).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs; for tests and quick looks).")
    lr_scheduler: str = Field("linear", description="transformers learning-rate schedule name (the paper: linear).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="Training precision; 'auto' is bf16 where the device supports it (CUDA bf16, or a CPU with AVX512-BF16/AMX, detected), else fp32.")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: all cores); 1 makes CPU training bit-reproducible across interruptions.")
    save_steps: int | None = Field(None, ge=1, description="Write a resumable checkpoint every this many steps (default: by time, see checkpoint_minutes).")
    checkpoint_minutes: float = Field(10.0, gt=0, description="Without save_steps: write a resumable checkpoint when this many minutes have passed since the last one (a kill loses at most that much training; a short unit writes none, so checkpoints cost nothing there).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (large models on small GPUs).")
    lora_r: int = Field(16, ge=1, description="LoRA rank (method: lora).")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha (method: lora).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout (method: lora).")
    lora_target_modules: list[str] | str = Field("all-linear", description="Modules that get LoRA adapters (peft's 'all-linear' or a list of names).")

    def resolved(self, cuda: bool) -> "TrainingConfig":
        """A copy with every preset-controlled field filled in."""
        preset = self.preset if self.preset != "auto" else ("gpu" if cuda else "cpu")
        values = {key: value for key, value in PRESETS[preset].items() if getattr(self, key) is None}
        return self.model_copy(update={"preset": preset, **values})


class BenchmarkSpec(_Section):
    """One evaluation set."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Label in the results table (letters, digits, _ . -).")
    path: Path = Field(..., description="JSONL (or Parquet) test set: GSM8K (question, answer with '#### n'), MATH/MATH500/Minerva (problem, solution with \\boxed{}, optional answer), OlympiadBench (question, solution list, final_answer list), or any file with question and answer fields.")
    accuracy_items: int = Field(50, ge=0, description="Items whose greedy answers are graded (0: no accuracy).")
    loss_items: int = Field(100, ge=0, description="Items whose reference solutions give the held-out loss (0: no loss).")
    question_field: str | None = Field(None, description="Field holding the question (default: question, then problem).")
    answer_field: str | None = Field(None, description="Field holding the reference solution (default: solution, then answer).")
    final_answer_field: str | None = Field(None, description="Field holding the final answer to grade against (default: answer/final_answer when a separate solution exists, else extracted from the solution: '#### n', \\boxed{}, or the whole text).")


class EvalConfig(_Section):
    """How every unit (and the base model) is evaluated."""

    benchmarks: list[BenchmarkSpec] = Field(..., min_length=1, description="Held-out test sets (at least one).")
    seed: int = Field(0, description="Seed of the benchmark item sample (the same items for every unit).")
    backend: Literal["embedded", "openai"] = Field("embedded", description="Who generates the answers: the embedded transformers backend loading the checkpoint, or an OpenAI-compatible server (vLLM, SGLang, ...) that serves it (see base_url).")
    base_url: str | None = Field(None, description="backend openai: the server's URL; the request's model name is the checkpoint folder's path (serve it under that name, e.g. `vllm serve CKPT`).")
    device: str | None = Field(None, description="Device for evaluation with the embedded backend and for losses ('cpu' or 'cuda'; default cuda when available).")
    max_new_tokens: int = Field(256, ge=1, description="Longest greedy answer.")
    batch_size: int = Field(16, ge=1, description="Answers generated (and sequences scored) together.")
    system_prompt: str | None = Field(None, description="Optional system message before each benchmark question (default: none, as in training).")
    train_loss_items: int = Field(64, ge=1, description="Training samples (the first of the subset, so the same for every size that contains them) whose NLL is the training loss of the generalization gap.")
    entropy_items: int = Field(64, ge=1, description="Samples of the anchor and training sets scored for H(S_anchor|W) and H(S_gen|W) (the first items of each shuffled set).")
    max_tokens: int = Field(512, ge=16, description="Prompts and reference solutions are cut to this many tokens when scored.")


class FitConfig(_Section):
    """The scaling-law fits at the end of the study."""

    metric: Literal["heldout_loss", "error"] = Field("heldout_loss", description="What the table's `metric` column (the one `synthllm fit` reads) holds: the held-out loss (nats/token; smooth even when accuracy is near zero) or the error rate 1 - accuracy.")
    size_column: Literal["tokens", "samples"] = Field("tokens", description="Data size axis of the fits (SynthLLM: tokens).")
    holdout_last: int = Field(1, ge=0, description="Fit on all but each curve's K largest sizes and report the prediction error on those K (skipped when fewer than 3 points would remain).")
    target: float | None = Field(None, gt=0, description="Target metric value for the data-needed forecast (default: 90% of the best observed value).")
    plateau_threshold: float | None = Field(None, gt=0, description="Plateau: where one more doubling of data improves the metric by less than this (default: 1% of the size-0 value).")
    bootstrap: int = Field(100, ge=0, description="Bootstrap replicates for parameter uncertainty and bands (0: none).")
    huber_delta: float = Field(0.01, ge=0, description="Huber switch point on log residuals (0: least squares); as in `synthllm fit`.")
    forecast_at: list[float] = Field(default_factory=list, description="Also forecast the metric at these data sizes.")


class StudyRayConfig(_Section):
    """Where units run with ``executor: ray``: one Ray task per unit, each reserving its resources."""

    address: str | None = Field(None, description="Ray cluster to join ('auto' for a running one, or ray://host:10001); default: start a local Ray on this machine.")
    gpus_per_unit: float = Field(0.0, ge=0, description="GPUs each unit's task reserves (e.g. 8 for a unit that trains on a whole node); 0 on CPUs.")
    cpus_per_unit: float = Field(1.0, gt=0, description="CPUs each unit's task reserves.")


class StudyConfig(_Section):
    """A whole study: data, model, subsets, training, evaluation, fits."""

    train: DataSource = Field(..., description="The training set (typically a synthllm run folder).")
    anchor: DataSource | None = Field(None, description="Optional anchor set (real data, e.g. GSM8K train): the same sizes are trained on it and the empirical GGMI is reported.")
    model: str = Field("smollm2-135m-instruct", description="Base model: 'smollm2-135m-instruct' (the packaged model), a Hugging Face model folder, or a .gguf file.")
    model_label: str | None = Field(None, description="Name of the base model in the results table (default: the model's name).")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="Training seeds; each (dataset, size, seed) is one unit. The subset order is seeded by `subset_seed`, not by these.")
    subset_seed: int = Field(0, description="Seed of the shuffle that orders each set; subset n is the first n samples, so subsets are nested.")
    sizes: SizesConfig = Field(default_factory=SizesConfig, description="The nested subset sizes (geometric by default).")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="How each unit is fine-tuned.")
    eval: EvalConfig = Field(..., description="Benchmarks and how checkpoints are evaluated.")
    fit: FitConfig = Field(default_factory=FitConfig, description="The scaling-law fits and forecasts at the end.")
    checkpoints: Literal["keep", "final", "none"] = Field("final", description="What stays on disk after a unit is evaluated: every resumable checkpoint ('keep'), only the final model ('final'), or nothing ('none'). Results are never pruned.")
    report: bool = Field(True, description="Fit the laws and write study.html at the end.")
    executor: Literal["local", "ray"] = Field("local", description="Where units run: one after the other in this process ('local'), or as Ray tasks at once, each reserving `ray.gpus_per_unit` GPUs ('ray'; pip install 'synthllm[ray]'); the study folder must be on a filesystem every Ray node sees. Results are the same either way.")
    ray: StudyRayConfig = Field(default_factory=StudyRayConfig, description="Ray settings for executor 'ray'.")

    @model_validator(mode="after")
    def _distinct_names(self) -> "StudyConfig":
        names = [b.name for b in self.eval.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("eval.benchmarks: two benchmarks share a name")
        if self.anchor is not None and (self.anchor.name or "anchor") == (self.train.name or "train"):
            raise ValueError("anchor.name: must differ from train.name")
        return self


def load_study_config(path: str | Path | None = None, overrides: dict | None = None) -> StudyConfig:
    """Read and validate a study YAML file.

    Parameters
    ----------
    path : str or Path, optional
        YAML file; relative paths inside it are resolved against its folder.
    overrides : dict, optional
        Nested values merged on top of the file's (used by tests and the Python API).

    Returns
    -------
    StudyConfig

    Raises
    ------
    ConfigError
        One line naming the file and the field.
    """
    config, base = load_yaml_model(StudyConfig, path, overrides)
    for source in (config.train, config.anchor):
        if source is not None and not source.path.is_absolute():
            source.path = base / source.path
    for bench in config.eval.benchmarks:
        if not bench.path.is_absolute():
            bench.path = base / bench.path
    model_path = Path(config.model).expanduser()
    if config.model != "smollm2-135m-instruct" and not model_path.is_absolute() and (base / model_path).exists():
        config.model = str(base / model_path)
    return config
