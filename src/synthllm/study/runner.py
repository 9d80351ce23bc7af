"""The study loop: plan the units, train and evaluate each once, write the results as they finish.

Study folder layout::

    OUT/
      study.json                 the config the folder was made with (a different one is refused)
      plan.json                  datasets, subset sizes (samples and tokens), units, benchmark items
      units/<unit>/trainer/      resumable checkpoints while the unit trains
      units/<unit>/model/        the trained model (pruned per `checkpoints`)
      units/<unit>/train.json    training finished: steps, tokens, throughput, CPU time
      units/<unit>/eval/*.json   one cached measurement each, tagged with the checkpoint it measured
      units/<unit>/done.json     the unit is finished: its results (never pruned)
      results.csv, results.parquet   one row per (unit, benchmark), rewritten after every unit
      ggmi.csv                   with an anchor set: both generalization gaps and their difference
      fits.json, fit.png, study.html   the laws and forecasts (at the end)

Resumption rules: a unit with ``done.json`` is never trained or evaluated
again; one with ``train.json`` but no ``done.json`` is only evaluated, reusing
every cached measurement whose checkpoint tag matches; one with checkpoints in
``trainer/`` resumes training from the last. Every file is written atomically
(``synthllm.store.atomic_write_text``), so a kill at any moment leaves a
folder the same command continues from.

The table holds only quantities that do not depend on timing or on where the
study was interrupted, so an interrupted-and-resumed study writes the same
``results.csv`` byte for byte as an uninterrupted one (tests/study/test_kill9.py);
timings live in each unit's ``train.json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..store import atomic_write_text
from .config import StudyConfig
from .data import BenchItem, Sample, load_benchmark, load_samples, plan_sizes, shuffled

__all__ = ["RESULT_COLUMNS", "Study", "StudyOutcome", "run_study"]

RESULT_COLUMNS = (
    "model", "base_model", "dataset", "benchmark", "seed", "samples", "tokens", "metric",
    "accuracy", "error", "heldout_loss", "train_loss", "gen_gap", "h_anchor_given_w", "h_gen_given_w",
    "n_accuracy", "n_loss", "unit",
)

#: config fields that change what a unit measures: a folder made with other values is refused
_IDENTITY = ("train", "anchor", "model", "seeds", "subset_seed", "sizes", "training")
_EVAL_IDENTITY = ("benchmarks", "seed", "max_new_tokens", "system_prompt", "train_loss_items", "entropy_items",
                  "max_tokens")


@dataclass
class Unit:
    """One training run (or the untrained base model, size 0)."""

    name: str
    dataset: str | None  # None: the base model
    samples: int
    seed: int | None

    @property
    def is_base(self) -> bool:
        return self.samples == 0


@dataclass
class StudyOutcome:
    """What :meth:`Study.run` returns: the folder's main files and the units' results."""

    out_dir: Path
    results: list[dict]
    units_run: list[str] = field(default_factory=list)
    units_skipped: list[str] = field(default_factory=list)
    report: dict | None = None


def _device(requested: str | None) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def _json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


class Study:
    """A study over one folder.

    Parameters
    ----------
    config : StudyConfig
        What to train and evaluate.
    out_dir : str or Path
        The study folder (created; resumed when it exists).
    log : callable, optional
        Receives one human-readable line per event (default: print).
    """

    def __init__(self, config: StudyConfig, out_dir: str | Path, log: Callable[[str], None] | None = None):
        self.config = config
        self.out = Path(out_dir)
        self.log = log or print
        self.device = _device(config.eval.device)
        self.training = config.training.resolved(cuda=self.device.startswith("cuda"))

    # -- set-up ---------------------------------------------------------------------------
    def _identity(self) -> dict:
        data = self.config.model_dump(mode="json")
        identity = {key: data[key] for key in _IDENTITY}
        identity["eval"] = {key: data["eval"][key] for key in _EVAL_IDENTITY}
        return identity

    def _claim_folder(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        saved = _read_json(self.out / "study.json")
        identity = self._identity()
        if saved is not None and saved.get("identity") != identity:
            changed = sorted(k for k in identity if identity[k] != saved.get("identity", {}).get(k))
            raise InputError.at(self.out, f"holds a study made with another config (differs in: {', '.join(changed)}); "
                                "use a new --out folder")
        if saved is None:
            _json(self.out / "study.json", {"identity": identity, "config": self.config.model_dump(mode="json")})

    def _load(self) -> None:
        from transformers import AutoTokenizer

        from ..llm.embedded import resolve_model_path

        try:
            self.model_folder = resolve_model_path(self.config.model)
        except (FileNotFoundError, RuntimeError) as exc:
            raise InputError.at("model", str(exc)) from None
        self.model_label = self.config.model_label or (
            self.config.model if self.config.model == "smollm2-135m-instruct" else Path(self.config.model).name)
        tokenizer = AutoTokenizer.from_pretrained(self.model_folder)
        self.sets: dict[str, list[Sample]] = {}
        self.plans: dict[str, list[tuple[int, int]]] = {}
        sources = [(self.config.train.name or "train", self.config.train)]
        if self.config.anchor is not None:
            sources.append((self.config.anchor.name or "anchor", self.config.anchor))
        for name, source in sources:
            samples = shuffled(load_samples(source.path, source.limit), self.config.subset_seed)
            tokens = [len(tokenizer.apply_chat_template(
                s.prompt_dicts() + [{"role": "assistant", "content": s.answer}], tokenize=True, return_dict=False))
                for s in samples]
            self.sets[name] = samples
            self.plans[name] = plan_sizes(tokens, self.config.sizes, name)
        self.benchmarks: dict[str, list[BenchItem]] = {}
        self.bench_specs = {spec.name: spec for spec in self.config.eval.benchmarks}
        for spec in self.config.eval.benchmarks:
            wanted = max(spec.accuracy_items, spec.loss_items)
            items = shuffled(load_benchmark(spec), self.config.eval.seed)
            self.benchmarks[spec.name] = items[:wanted]

    def units(self) -> list[Unit]:
        """Every unit of the study, base model first, in the order they run."""
        units = []
        if self.config.sizes.include_zero:
            units.append(Unit("base", None, 0, None))
        for dataset, plan in self.plans.items():
            for samples, _ in plan:
                if samples == 0:
                    continue
                for seed in self.config.seeds:
                    units.append(Unit(f"{dataset}-n{samples}-s{seed}", dataset, samples, seed))
        return units

    def _write_plan(self) -> None:
        plan = {
            "model": self.model_label,
            "model_folder": str(self.model_folder),
            "device": self.device,
            "training": self.training.model_dump(mode="json"),
            "datasets": {name: {"available": len(self.sets[name]),
                                "sizes": [{"samples": s, "tokens": t} for s, t in plan]}
                         for name, plan in self.plans.items()},
            "units": [unit.name for unit in self.units()],
            "benchmarks": {name: {"items": len(items), "accuracy_items": min(self.bench_specs[name].accuracy_items,
                                                                             len(items)),
                                  "loss_items": min(self.bench_specs[name].loss_items, len(items))}
                           for name, items in self.benchmarks.items()},
        }
        _json(self.out / "plan.json", plan)

    # -- one unit ---------------------------------------------------------------------------
    def _unit_dir(self, unit: Unit) -> Path:
        return self.out / "units" / unit.name

    def _prompt(self, question: str) -> list[dict]:
        system = self.config.eval.system_prompt
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]

    def _train(self, unit: Unit, unit_dir: Path) -> tuple[Path, dict]:
        """The unit's model folder and its training record (training it first if needed)."""
        if unit.is_base:
            config_file = self.model_folder / "config.json"
            return self.model_folder, {"fingerprint": f"base:{self.model_folder}:{config_file.stat().st_size}"}
        record_path = unit_dir / "train.json"
        record = _read_json(record_path)
        if record is not None and (unit_dir / "model" / "config.json").is_file():
            return unit_dir / "model", record
        from .train import train_unit

        subset = self.sets[unit.dataset][: unit.samples]
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = train_unit(self.model_folder, subset, self.training, unit.seed, unit_dir, self.device)
        record["started"] = started
        record["fingerprint"] = hashlib.sha256(f"{unit.name}:{started}:{time.time_ns()}".encode()).hexdigest()[:16]
        _json(record_path, record)
        how = f"resumed from {record['resumed_from']}, " if record["resumed_from"] else ""
        speed = f", {record['tokens_per_s']:.0f} tokens/s" if record["tokens_per_s"] else ""
        self.log(f"  trained {unit.name}: {how}{record['steps']} steps, {record['train_tokens']} tokens in "
                 f"{record['runtime_s']:.0f} s (CPU {record['cpu_s']:.0f} s){speed}, trainer loss "
                 f"{record['train_loss']:.4f}")
        return unit_dir / "model", record

    def _cached(self, unit_dir: Path, name: str, fingerprint: str, compute: Callable[[], dict]) -> dict:
        path = unit_dir / "eval" / f"{name}.json"
        saved = _read_json(path)
        if saved is not None and saved.get("checkpoint") == fingerprint:
            return saved["value"]
        value = compute()
        _json(path, {"checkpoint": fingerprint, "value": value})
        return value

    def _evaluate(self, unit: Unit, unit_dir: Path, model_folder: Path, fingerprint: str) -> dict:
        from .evaluate import Scorer, generate_answers
        from .grading import is_correct

        ev = self.config.eval
        scorer: Scorer | None = None

        def nll(prompts, answers):
            nonlocal scorer
            if scorer is None:
                scorer = Scorer(model_folder, self.device, ev.max_tokens, ev.batch_size)
            return scorer.nll(prompts, answers)

        def sample_nll(samples: list[Sample]):
            return lambda: nll([s.prompt_dicts() for s in samples], [s.answer for s in samples])

        result: dict = {"benchmarks": {}, "train_loss": {}, "entropy": {}}
        datasets = list(self.sets) if unit.is_base else [unit.dataset]
        # Both are the NLL of the first samples of a set: named by set and count, so equal requests share one file.
        for dataset in datasets:
            count = min(ev.train_loss_items, unit.samples or ev.train_loss_items)
            result["train_loss"][dataset] = self._cached(
                unit_dir, f"nll-{dataset}-{count}", fingerprint, sample_nll(self.sets[dataset][:count]))
        for dataset, samples in self.sets.items():
            result["entropy"][dataset] = self._cached(
                unit_dir, f"nll-{dataset}-{ev.entropy_items}", fingerprint, sample_nll(samples[: ev.entropy_items]))
        for name, items in self.benchmarks.items():
            spec = self.bench_specs[name]
            loss_items = items[: spec.loss_items]
            result["benchmarks"][name] = {"loss": self._cached(
                unit_dir, f"loss-{name}", fingerprint,
                lambda: nll([self._prompt(i.question) for i in loss_items], [i.solution for i in loss_items]))}
        if scorer is not None:
            scorer.close()
        for name, items in self.benchmarks.items():
            acc_items = items[: self.bench_specs[name].accuracy_items]

            def accuracy(acc_items=acc_items):
                responses = generate_answers(model_folder, [self._prompt(i.question) for i in acc_items], ev,
                                             self.device)
                replies = [r.text if r.ok else None for r in responses]
                correct = [is_correct(reply, item.final) for reply, item in zip(replies, acc_items)]
                return {"accuracy": sum(correct) / len(correct) if correct else None, "n": len(correct),
                        "failed": sum(reply is None for reply in replies),
                        "capped": sum(r.finish_reason == "length" for r in responses),
                        "answers": [{"reply": t, "final": i.final, "correct": c, "tokens": r.completion_tokens,
                                     "finish": r.finish_reason}
                                    for t, r, i, c in zip(replies, responses, acc_items, correct)]}

            result["benchmarks"][name]["accuracy"] = self._cached(unit_dir, f"accuracy-{name}", fingerprint, accuracy)
        return result

    def _prune(self, unit: Unit, unit_dir: Path) -> None:
        if unit.is_base or self.config.checkpoints == "keep":
            return
        shutil.rmtree(unit_dir / "trainer", ignore_errors=True)
        if self.config.checkpoints == "none":
            shutil.rmtree(unit_dir / "model", ignore_errors=True)

    def run_unit(self, unit: Unit) -> tuple[dict, bool]:
        """Train and evaluate ``unit`` unless it is done; return (its result, whether work was done)."""
        unit_dir = self._unit_dir(unit)
        done = _read_json(unit_dir / "done.json")
        if done is not None:
            return done, False
        unit_dir.mkdir(parents=True, exist_ok=True)
        model_folder, record = self._train(unit, unit_dir)
        measured = self._evaluate(unit, unit_dir, model_folder, record["fingerprint"])
        done = {"unit": unit.name, "dataset": unit.dataset, "samples": unit.samples, "seed": unit.seed,
                **{key: value for key, value in measured.items()}}
        _json(unit_dir / "done.json", done)
        self._prune(unit, unit_dir)
        return done, True

    # -- the table ------------------------------------------------------------------------
    def result_rows(self, done: dict[str, dict]) -> list[dict]:
        """One row per (finished unit, benchmark) and per curve, in a fixed order."""
        rows = []
        several_seeds = len(self.config.seeds) > 1
        entropy_anchor = (self.config.anchor.name or "anchor") if self.config.anchor else None
        train_name = self.config.train.name or "train"
        for dataset, plan in self.plans.items():
            for seed in self.config.seeds:
                for samples, tokens in plan:
                    unit_name = "base" if samples == 0 else f"{dataset}-n{samples}-s{seed}"
                    result = done.get(unit_name)
                    if result is None:
                        continue
                    for bench in self.benchmarks:
                        measured = result["benchmarks"][bench]
                        accuracy = measured["accuracy"]["accuracy"]
                        loss = measured["loss"]["nats_per_token"]
                        train_loss = result["train_loss"][dataset]["nats_per_token"]
                        curve = f"{self.model_label}/{dataset}/{bench}" + (f"/seed{seed}" if several_seeds else "")
                        error = None if accuracy is None else 1.0 - accuracy
                        metric = loss if self.config.fit.metric == "heldout_loss" else error
                        rows.append({
                            "model": curve, "base_model": self.model_label, "dataset": dataset, "benchmark": bench,
                            "seed": seed, "samples": samples, "tokens": tokens, "metric": metric,
                            "accuracy": accuracy, "error": error, "heldout_loss": loss, "train_loss": train_loss,
                            "gen_gap": None if loss is None or train_loss is None else loss - train_loss,
                            "h_anchor_given_w": (result["entropy"][entropy_anchor]["nats_per_token"]
                                                 if entropy_anchor else None),
                            "h_gen_given_w": result["entropy"][train_name]["nats_per_token"],
                            "n_accuracy": measured["accuracy"]["n"], "n_loss": measured["loss"]["n"],
                            "unit": unit_name,
                        })
        return rows

    def write_table(self, rows: list[dict]) -> None:
        """``results.csv`` and ``results.parquet``, atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if row[key] is None else repr(row[key]) if isinstance(row[key], float)
                                   else row[key]) for key in RESULT_COLUMNS})
        atomic_write_text(self.out / "results.csv", buffer.getvalue())
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{key: row[key] for key in RESULT_COLUMNS} for row in rows],
                                     schema=_schema())
        tmp = self.out / ".results.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.out / "results.parquet")

    def ggmi_rows(self, rows: list[dict]) -> list[dict]:
        """The empirical GGMI (SPEC §3): anchor-trained gap minus synthetic-trained gap, per size, seed, benchmark."""
        if self.config.anchor is None:
            return []
        train_name, anchor_name = self.config.train.name or "train", self.config.anchor.name or "anchor"
        by_key = {(r["dataset"], r["seed"], r["samples"], r["benchmark"]): r for r in rows}
        out = []
        for (dataset, seed, samples, bench), gen in by_key.items():
            anchor = by_key.get((anchor_name, seed, samples, bench))
            if dataset != train_name or anchor is None or samples == 0:
                continue
            out.append({
                "benchmark": bench, "seed": seed, "samples": samples,
                "gap_gen": gen["gen_gap"], "gap_anchor": anchor["gen_gap"],
                "ggmi": None if gen["gen_gap"] is None or anchor["gen_gap"] is None
                else anchor["gen_gap"] - gen["gen_gap"],
                "h_anchor_given_w_gen": gen["h_anchor_given_w"], "h_gen_given_w_gen": gen["h_gen_given_w"],
                "h_anchor_given_w_anchor": anchor["h_anchor_given_w"],
                "alpha": (anchor["h_anchor_given_w"] / gen["h_anchor_given_w"]
                          if gen["h_anchor_given_w"] else None),
                "heldout_loss_gen": gen["heldout_loss"], "heldout_loss_anchor": anchor["heldout_loss"],
            })
        return out

    # -- the whole study ---------------------------------------------------------------------
    def run(self) -> StudyOutcome:
        """Run every unit not yet done, write the table after each, then fit and report."""
        self._claim_folder()
        self._load()
        self._write_plan()
        units = self.units()
        outcome = StudyOutcome(self.out, [])
        done: dict[str, dict] = {}
        for unit in units:
            existing = _read_json(self._unit_dir(unit) / "done.json")
            if existing is not None:
                done[unit.name] = existing
        self.write_table(self.result_rows(done))
        outcome.units_skipped = [unit.name for unit in units if unit.name in done]
        pending = [(index, unit) for index, unit in enumerate(units, start=1) if unit.name not in done]
        for unit, result, started, cpu in self._execute(pending, len(units)):
            done[unit.name] = result
            outcome.units_run.append(unit.name)
            self.write_table(self.result_rows(done))
            summary = ", ".join(
                f"{bench} acc {_fmt(r['accuracy']['accuracy'])}"
                + (f" ({r['accuracy']['capped']} of {r['accuracy']['n']} answers capped)"
                   if r["accuracy"].get("capped") else "")
                + f" loss {_fmt(r['loss']['nats_per_token'])}"
                for bench, r in done[unit.name]["benchmarks"].items())
            # CPU time next to wall time: on a shared machine the wall time says little
            self.log(f"✓ {unit.name}: {summary} ({time.perf_counter() - started:.0f} s, "
                     f"CPU {time.process_time() - cpu:.0f} s)")
        outcome.results = self.result_rows(done)
        ggmi = self.ggmi_rows(outcome.results)
        if ggmi:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(ggmi[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(ggmi)
            atomic_write_text(self.out / "ggmi.csv", buffer.getvalue())
        if self.config.report:
            from .report import write_study_report

            outcome.report = write_study_report(self.out, outcome.results, ggmi, self.config, self._plan_json())
        return outcome

    def _execute(self, pending: list[tuple[int, Unit]], total: int):
        """Run ``pending`` (position, unit) pairs; yield ``(unit, result, wall start, CPU start)`` as each finishes.

        Locally one after the other; with ``executor: ray`` as Ray tasks at once (each reserving
        ``ray.gpus_per_unit`` GPUs and ``ray.cpus_per_unit`` CPUs), in the order they finish. A unit
        task does what :meth:`run_unit` does here, in the same folder, so a killed study resumes
        the same way under either executor.
        """
        if self.config.executor == "local":
            for index, unit in pending:
                self.log(f"unit {index}/{total}: {unit.name}")
                started, cpu = time.perf_counter(), time.process_time()
                yield unit, self.run_unit(unit)[0], started, cpu
            return
        if not pending:
            return
        from ..executors.ray_executor import connect

        connect(self.config)  # the pipeline's own join: `ray.address` means the same in a study config
        import ray
        task = ray.remote(num_gpus=self.config.ray.gpus_per_unit, num_cpus=self.config.ray.cpus_per_unit,
                          max_retries=0)(_unit_task)
        config = self.config.model_dump(mode="json")
        started, cpu = time.perf_counter(), time.process_time()
        running = {task.remote(config, str(self.out.resolve()), unit.name): unit for _, unit in pending}
        self.log(f"{len(running)} units submitted to Ray ({self.config.ray.gpus_per_unit:g} GPUs, "
                 f"{self.config.ray.cpus_per_unit:g} CPUs each)")
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            unit = running.pop(ready[0])
            yield unit, ray.get(ready[0]), started, cpu

    def _plan_json(self) -> dict:
        plan = _read_json(self.out / "plan.json") or {}
        plan["train_records"] = {unit.name: _read_json(self._unit_dir(unit) / "train.json")
                                 for unit in self.units() if not unit.is_base}
        return plan


def _unit_task(config: dict, out_dir: str, unit_name: str) -> dict:
    """One unit in a Ray worker: the study's own ``run_unit`` in the shared study folder."""
    study = Study(StudyConfig.model_validate(config), out_dir)
    study._load()
    unit = next(unit for unit in study.units() if unit.name == unit_name)
    return study.run_unit(unit)[0]


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def _schema():
    import pyarrow as pa

    types = {"model": pa.string(), "base_model": pa.string(), "dataset": pa.string(), "benchmark": pa.string(),
             "seed": pa.int64(), "samples": pa.int64(), "tokens": pa.int64(), "n_accuracy": pa.int64(),
             "n_loss": pa.int64(), "unit": pa.string()}
    return pa.schema([(name, types.get(name, pa.float64())) for name in RESULT_COLUMNS])


def run_study(config: StudyConfig, out_dir: str | Path, log: Callable[[str], None] | None = None) -> StudyOutcome:
    """Run (or resume) a study.

    Parameters
    ----------
    config : StudyConfig
        The study (see :func:`synthllm.study.config.load_study_config`).
    out_dir : str or Path
        The study folder.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    StudyOutcome
    """
    return Study(config, out_dir, log).run()
