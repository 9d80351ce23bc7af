"""Training sets, nested subsets, benchmark items and the study config (no model needed)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthllm.errors import ConfigError, InputError
from synthllm.store import RunStore
from synthllm.study.config import SizesConfig, TrainingConfig, load_study_config
from synthllm.study.data import BenchItem, load_benchmark, load_samples, plan_sizes, shuffled


def test_samples_from_a_run_folder_parquet_messages_and_question_answer_jsonl(tmp_path, shared_data):
    run = tmp_path / "run"
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    RunStore(run).write_jsonl("dataset.jsonl", [{"id": "a", "question": "What is 2+2?", "answer": "4",
                                                  "messages": messages}])
    (sample,) = load_samples(run)
    assert sample.prompt_dicts() == messages[:1] and sample.answer == "4"
    table = pa.Table.from_pylist([{"messages": [{"role": "system", "content": "Be brief."}] + messages}])
    pq.write_table(table, tmp_path / "d.parquet")
    (sample,) = load_samples(tmp_path / "d.parquet")
    assert [r for r, _ in sample.prompt] == ["system", "user"] and sample.question() == "What is 2+2?"
    gsm = load_samples(shared_data / "gsm8k" / "train.jsonl", limit=5)
    assert len(gsm) == 5 and gsm[0].answer.rstrip().endswith("72")


def test_unusable_rows_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: row has neither messages nor question"):
        load_samples(bad)
    with pytest.raises(InputError, match="no dataset yet"):
        load_samples(tmp_path)


def test_subsets_are_nested_seeded_and_sized_in_samples_or_tokens():
    items = list(range(100))
    order = shuffled(items, 3)
    assert order == shuffled(items, 3) and order != shuffled(items, 4) and sorted(order) == items
    tokens = [10] * 100
    plan = plan_sizes(tokens, SizesConfig(smallest=8, factor=2, count=5), "train")
    assert plan == [(0, 0), (8, 80), (16, 160), (32, 320), (64, 640), (100, 1000)]  # capped at what exists
    plan = plan_sizes(tokens, SizesConfig(unit="tokens", values=[95, 200], include_zero=False), "train")
    assert plan == [(10, 100), (20, 200)]  # the shortest prefixes reaching the token sizes
    with pytest.raises(InputError, match="101 samples requested but train has 100"):
        plan_sizes(tokens, SizesConfig(values=[101]), "train")


def test_benchmark_formats_of_the_shared_test_sets(shared_data):
    from synthllm.study.config import BenchmarkSpec

    gsm = load_benchmark(BenchmarkSpec(name="g", path=shared_data / "gsm8k" / "test.jsonl"))
    assert len(gsm) == 1319 and gsm[0].final == "18" and "####" in gsm[0].solution
    math500 = load_benchmark(BenchmarkSpec(name="m", path=shared_data / "math" / "math500_test.jsonl"))
    assert math500[0].final == "\\left( 3, \\frac{\\pi}{2} \\right)" and "\\boxed" in math500[0].solution
    olympiad = load_benchmark(BenchmarkSpec(name="o", path=shared_data / "olympiadbench" / "test.jsonl"))
    assert all(isinstance(item, BenchItem) and item.final for item in olympiad[:20])
    college = load_benchmark(BenchmarkSpec(name="c", path=shared_data / "college_math" / "test.jsonl"))
    assert college[0].final == college[0].solution  # plain final answers


def test_config_presets_and_one_line_errors(tmp_path):
    training = TrainingConfig().resolved(cuda=True)
    assert (training.learning_rate, training.epochs, training.batch_size, training.lr_scheduler) == (1e-5, 3.0, 512,
                                                                                                      "linear")
    cpu = TrainingConfig(learning_rate=3e-4).resolved(cuda=False)
    assert cpu.preset == "cpu" and cpu.learning_rate == 3e-4 and cpu.batch_size == 8
    path = tmp_path / "s.yaml"
    path.write_text("train: {path: data.jsonl}\neval: {benchmarks: [{name: g, path: t.jsonl}]}\n")
    config = load_study_config(path)
    assert config.train.path == tmp_path / "data.jsonl" and config.eval.benchmarks[0].path == tmp_path / "t.jsonl"
    path.write_text("train: {path: d.jsonl}\neval: {benchmarks: [{name: g, path: t.jsonl}]}\ntraining: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=r"s.yaml: training.epochs: Input should be greater than 0"):
        load_study_config(path)
    path.write_text("train: {path: d.jsonl}\n")
    with pytest.raises(ConfigError, match="eval: Field required"):
        load_study_config(path)


def test_every_config_field_has_a_description():
    from synthllm.study import config as module

    for model in (module.StudyConfig, module.DataSource, module.SizesConfig, module.TrainingConfig,
                  module.BenchmarkSpec, module.EvalConfig, module.FitConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"
