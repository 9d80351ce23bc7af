"""A tiny real study (SmolLM2, GSM8K): the table, `synthllm fit` on it, and kill -9 in the middle of a unit.

One reference study runs once per module (base model + two LoRA units); the
kill test runs the same config again, kills it with SIGKILL while the second
unit is training (after its first checkpoint), and resumes it with the same
command. Training is single-threaded and seeded, so the resumed study must
write the same results.csv byte for byte.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("trl")
pytest.importorskip("math_verify")

from synthllm.cli import app
from synthllm.study import RESULT_COLUMNS

pytestmark = pytest.mark.study


def tiny_config(shared_data, folder, **extra) -> dict:
    config = {
        "train": {"path": str(shared_data / "gsm8k" / "train.jsonl"), "limit": 16},
        "sizes": {"values": [2, 4]},
        "training": {"preset": "cpu", "method": "lora", "max_length": 128, "per_device_batch_size": 1,
                     "batch_size": 1, "epochs": 1, "threads": 1, "save_steps": 1, "lora_r": 4},
        "eval": {"benchmarks": [{"name": "gsm8k", "path": str(shared_data / "gsm8k" / "test.jsonl"),
                                 "accuracy_items": 2, "loss_items": 3}],
                 "max_new_tokens": 8, "batch_size": 4, "train_loss_items": 2, "entropy_items": 2, "max_tokens": 128,
                 "device": "cpu"},
        "fit": {"holdout_last": 0, "bootstrap": 0},
        "checkpoints": "none",
        **extra,
    }
    path = folder / "study.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def study_command(config, out):
    return [sys.executable, "-m", "synthllm.cli", "study", str(config), "--out", str(out)]


def run_study_process(config, out):
    result = subprocess.run(study_command(config, out), env=child_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]


def child_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    src = str(__import__("synthllm").__path__[0].rsplit("/synthllm", 1)[0])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from testdata import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    folder = tmp_path_factory.mktemp("reference")
    config = tiny_config(SHARED_DATA, folder)
    run_study_process(config, folder / "out")
    return folder / "out"


def test_results_table_has_one_row_per_unit_and_benchmark(reference):
    import pyarrow.parquet as pq

    rows = pq.read_table(reference / "results.parquet").to_pylist()
    assert [(r["samples"], r["unit"]) for r in rows] == [(0, "base"), (2, "train-n2-s0"), (4, "train-n4-s0")]
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert all(r["model"] == "smollm2-135m-instruct/train/gsm8k" and r["n_accuracy"] == 2 and r["n_loss"] == 3
               for r in rows)
    assert all(r["heldout_loss"] > 0 and r["metric"] == r["heldout_loss"] for r in rows)
    assert rows[0]["tokens"] == 0 and 0 < rows[1]["tokens"] < rows[2]["tokens"]
    assert all(abs(r["gen_gap"] - (r["heldout_loss"] - r["train_loss"])) < 1e-12 for r in rows)
    assert (reference / "results.csv").read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    for name in ("fits.json", "study.html", "plan.json"):
        assert (reference / name).is_file()
    assert not (reference / "units" / "train-n2-s0" / "model").exists()  # checkpoints: none prunes the model
    record = json.loads((reference / "units" / "train-n4-s0" / "train.json").read_text())
    assert record["steps"] == 4 and record["resumed_from"] is None and record["tokens_per_s"] > 0


def test_results_table_round_trips_through_synthllm_fit(reference, tmp_path):
    out = tmp_path / "fit.json"
    # the study fits with the multistart fitter; `synthllm fit` defaults to the forecast fitter
    result = CliRunner().invoke(app, ["fit", str(reference / "results.csv"), "--method", "multistart", "--bootstrap", "0",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    from_cli = json.loads(out.read_text())["models"]["smollm2-135m-instruct/train/gsm8k"]
    from_study = json.loads((reference / "fits.json").read_text())["curves"]["smollm2-135m-instruct/train/gsm8k"]
    assert from_cli["n_fit"] == from_study["rectified"]["n_fit"] == 3
    for name, value in from_study["rectified"]["params"].items():
        assert from_cli["params"][name] == pytest.approx(value, rel=1e-9)


def test_kill_minus_9_mid_unit_then_the_same_command_completes_it(reference, tmp_path, shared_data):
    config = tiny_config(shared_data, tmp_path)
    out = tmp_path / "out"
    process = subprocess.Popen(study_command(config, out), env=child_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    unit = out / "units" / "train-n4-s0"
    deadline = time.monotonic() + 900
    try:
        while not list((unit / "trainer").glob("checkpoint-*/.complete")):  # a whole checkpoint to resume from
            assert process.poll() is None, "the study ended before the second unit checkpointed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (unit / "done.json").exists() and not (unit / "train.json").exists()
    finished = {name: (out / "units" / name / "done.json") for name in ("base", "train-n2-s0")}
    before = {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in finished.items()}
    run_study_process(config, out)
    assert {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in finished.items()} == before
    record = json.loads((unit / "train.json").read_text())
    assert record["resumed_from"].startswith("checkpoint-") and record["steps"] == 4
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()


def test_bad_config_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {path: x.jsonl}\neval: {benchmarks: []}\n")
    result = CliRunner().invoke(app, ["study", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "error: " in result.output and "eval.benchmarks" in result.output and "Traceback" not in result.output


def test_a_folder_made_with_another_config_is_refused(reference, tmp_path):
    from synthllm.errors import InputError
    from synthllm.study import Study, load_study_config

    config = load_study_config(reference.parent / "study.yaml", {"sizes": {"values": [2, 3]}})
    with pytest.raises(InputError, match="another config .*sizes"):
        Study(config, reference).run()


def test_every_unit_has_graded_greedy_answers_to_real_gsm8k_items(reference):
    """The accuracy path of every unit: answers from the backend layer, each with its reference final answer,
    its grade, its length and why it ended; the accuracy is the mean of the grades."""
    from synthllm.study.grading import is_correct

    for unit in ("base", "train-n2-s0", "train-n4-s0"):
        record = json.loads((reference / "units" / unit / "eval" / "accuracy-gsm8k.json").read_text())["value"]
        answers = record["answers"]
        assert record["n"] == len(answers) == 2 and record["failed"] == 0
        assert record["accuracy"] == sum(a["correct"] for a in answers) / 2
        assert record["capped"] == sum(a["finish"] == "length" for a in answers)
        for answer in answers:
            assert isinstance(answer["reply"], str) and answer["reply"].strip()
            assert answer["final"].replace(",", "").lstrip("-").isdigit()  # GSM8K's `#### n`
            assert 0 < answer["tokens"] <= 8 and answer["finish"] in ("stop", "length")
            assert answer["correct"] == is_correct(answer["reply"], answer["final"])


def test_generate_answers_grades_through_the_backend_layer(shared_data):
    """Two real GSM8K test items through `generate_answers` (the embedded backend, greedy), graded."""
    from synthllm.study.config import EvalConfig
    from synthllm.study.data import load_benchmark
    from synthllm.study.evaluate import generate_answers
    from synthllm.study.grading import is_correct

    spec = {"name": "gsm8k", "path": str(shared_data / "gsm8k" / "test.jsonl")}
    evaluation = EvalConfig(benchmarks=[spec], max_new_tokens=24, batch_size=2)
    items = load_benchmark(evaluation.benchmarks[0])[:2]
    responses = generate_answers("smollm2-135m-instruct", [[{"role": "user", "content": i.question}] for i in items],
                                 evaluation, "cpu")
    assert len(responses) == 2 and all(r.ok and r.text.strip() for r in responses)
    assert all(0 < r.completion_tokens <= 24 and r.finish_reason in ("stop", "length") for r in responses)
    # the grader on the same items: a reply that ends with the reference's final answer is right, another is not
    assert all(is_correct(f"So the answer is {i.final}.", i.final) for i in items)
    assert not any(is_correct(f"So the answer is {int(i.final.replace(',', '')) + 1}.", i.final) for i in items)


def test_units_as_ray_tasks_give_the_same_table(reference, tmp_path):
    """executor: ray runs each unit as a Ray task (here a local Ray, 2 at once) in the same folder."""
    pytest.importorskip("ray")
    from testdata import SHARED_DATA

    config = tiny_config(SHARED_DATA, tmp_path, executor="ray", ray={"cpus_per_unit": 1})
    result = subprocess.run(study_command(config, tmp_path / "out"), env=child_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "3 units submitted to Ray" in result.stdout
    assert (tmp_path / "out" / "results.csv").read_text() == (reference / "results.csv").read_text()
