"""Entropy and information estimates under a fixed reference language model.

Proxies for Gan & Liu's quantities (SPEC §3), in nats per token:

- ``H(S)``: mean negative log-likelihood per token of texts of S under the
  reference LM (a cross-entropy, so an upper bound on the true entropy rate;
  the same LM and truncation are used for every set compared).
- ``ΔH = H(S_anchor) − H(S_gen)`` (faithfulness).
- ``H(a | q)``: NLL of answers given their question; ``I(a; q) = H(a) − H(a | q)``
  is the pointwise mutual information (how much the prompt explains), and the
  information gain proxy is ``ΔI ≈ H(a) − I(a; q) = H(a | q)``: what the
  generation carries beyond what its prompt determines.

CPU cost is kept bounded: at most ``max_texts`` texts per set, each truncated
to ``max_tokens`` tokens, scored in batches.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ANSWER_CUE = "Answer:"
QUESTION_CUE = "Question:"


def load_lm(model: str | None = None):
    """Load the reference LM as (model, tokenizer) on CPU.

    Parameters
    ----------
    model : str, optional
        A local Hugging Face folder, a ``.gguf`` file, or ``None`` for the
        embedded SmolLM2-135M-Instruct.

    Returns
    -------
    tuple
        ``(model, tokenizer)`` from :func:`synthllm.llm.embedded.load_reference_model`.
    """
    from synthllm.llm.embedded import DEFAULT_MODEL, load_reference_model

    return load_reference_model(model or DEFAULT_MODEL)


def _score_batch(lm, pad_id: int, contexts: list[list[int]], targets: list[list[int]]):
    """Summed NLL and token count of each target sequence given its context."""
    import torch

    sequences = [c + t for c, t in zip(contexts, targets)]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    scored = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, (context, target) in enumerate(zip(contexts, targets)):
        # Right padding: positions stay 0..len-1 without position-id bookkeeping.
        ids[row, : len(context) + len(target)] = torch.tensor(context + target)
        attention[row, : len(context) + len(target)] = 1
        scored[row, len(context): len(context) + len(target)] = True
    mask = scored[:, 1:]
    with torch.inference_mode():
        logits = lm(input_ids=ids, attention_mask=attention).logits[:, :-1]
        # Only the scored positions go to float32 and log-softmax (the same values per position):
        # the whole [batch, width, vocab] tensor in float32, and its log-softmax, took 10.9 GB and a
        # third of a study's CPU time in page faults at batch 25, width 512, SmolLM2's 49,152 tokens.
        log_probs = torch.log_softmax(logits[mask].float(), dim=-1)
    token_log_probs = torch.zeros(mask.shape, dtype=log_probs.dtype)
    token_log_probs[mask] = log_probs.gather(-1, ids[:, 1:][mask][:, None]).squeeze(-1)
    nll = -token_log_probs.sum(dim=1)  # summed over the whole row, as before: the same float32 sums
    return nll.tolist(), mask.sum(dim=1).tolist()


def conditional_nll(lm, tokenizer, targets: Sequence[str], contexts: Sequence[str] | None = None,
                    *, max_tokens: int = 256, batch_size: int = 8) -> dict:
    """Mean NLL per token of each target text given its context, under ``lm``.

    Parameters
    ----------
    lm, tokenizer
        A causal LM and its tokenizer (from :func:`load_lm`).
    targets : sequence of str
        Texts whose tokens are scored.
    contexts : sequence of str, optional
        One conditioning text per target (not scored). Without contexts, the
        first target token is conditioned on the tokenizer's BOS token when it
        has one, otherwise it is not scored.
    max_tokens : int, default=256
        Targets are truncated to this many tokens; contexts to this many too.
    batch_size : int, default=8
        Sequences per forward pass.

    Returns
    -------
    dict
        ``per_text`` (nats/token for each target), ``nats_per_token`` (token-
        weighted mean over all targets), ``tokens`` (scored tokens), ``n_texts``.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    target_ids = [encode(text)[:max_tokens] for text in targets]
    if contexts is None:
        context_ids = [list(bos) for _ in targets]
    else:
        if len(contexts) != len(targets):
            raise ValueError(f"{len(contexts)} contexts for {len(targets)} targets")
        # Keep the end of a long context: it is what the target continues.
        context_ids = [bos + encode(text)[-max_tokens:] for text in contexts]
    # A target with no context loses its first token (nothing predicts it).
    pairs = [(c, t) if c else (t[:1], t[1:]) for c, t in zip(context_ids, target_ids)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = np.argsort([len(c) + len(t) for c, t in pairs])  # similar lengths batch together
    nll = np.zeros(len(pairs))
    counts = np.zeros(len(pairs), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        rows = [int(i) for i in order[start: start + batch_size] if pairs[int(i)][1]]
        if not rows:
            continue
        sums, tokens = _score_batch(lm, pad_id, [pairs[i][0] for i in rows], [pairs[i][1] for i in rows])
        nll[rows] = sums
        counts[rows] = tokens
    per_text = np.divide(nll, counts, out=np.full(len(pairs), np.nan), where=counts > 0)
    total = int(counts.sum())
    return {
        "per_text": [float(v) for v in per_text],
        "nats_per_token": float(nll.sum() / total) if total else float("nan"),
        "tokens": total,
        "n_texts": len(pairs),
    }


def _subsample(items: Sequence, limit: int, rng: np.random.Generator) -> list:
    """At most ``limit`` items, drawn without replacement, in their original order."""
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), size=limit, replace=False))]


def entropy_estimates(lm, tokenizer, anchor_texts: Sequence[str], generated_texts: Sequence[str],
                      questions: Sequence[str], answers: Sequence[str], *, max_texts: int = 64,
                      max_tokens: int = 256, batch_size: int = 8, seed: int = 0) -> dict:
    """ΔH and the ΔI proxy for one dataset under a fixed reference LM.

    Parameters
    ----------
    lm, tokenizer
        The reference LM (kept fixed across everything compared).
    anchor_texts : sequence of str
        Anchor data (the input documents).
    generated_texts : sequence of str
        Synthetic samples as text (question and answer).
    questions, answers : sequence of str
        Paired questions and answers, for the conditional estimates.
    max_texts : int, default=64
        Texts scored per set (sampled with ``seed``).
    max_tokens : int, default=256
        Tokens per text.
    batch_size : int, default=8
        Sequences per forward pass.
    seed : int, default=0
        Seed of the subsampling.

    Returns
    -------
    dict
        ``H_anchor``, ``H_generated``, ``delta_H``, ``H_answer``,
        ``H_answer_given_question``, ``pmi_answer_question``, ``delta_I_proxy``
        (all nats/token) plus token counts and settings.
    """
    rng = np.random.default_rng(seed)
    options = {"max_tokens": max_tokens, "batch_size": batch_size}
    anchor = conditional_nll(lm, tokenizer, _subsample(anchor_texts, max_texts, rng), **options)
    generated = conditional_nll(lm, tokenizer, _subsample(generated_texts, max_texts, rng), **options)
    pairs = _subsample(list(zip(questions, answers)), max_texts, rng)
    # Both conditions end their context with "Answer:" so that only the
    # question differs; the answer keeps its leading space as in running text.
    answer_targets = [" " + a for _, a in pairs]
    alone = conditional_nll(lm, tokenizer, answer_targets, [ANSWER_CUE] * len(pairs), **options)
    given = conditional_nll(lm, tokenizer, answer_targets,
                            [f"{QUESTION_CUE} {q}\n{ANSWER_CUE}" for q, _ in pairs], **options)
    pmi = np.array(alone["per_text"]) - np.array(given["per_text"])
    return {
        "H_anchor": anchor["nats_per_token"],
        "H_generated": generated["nats_per_token"],
        "delta_H": anchor["nats_per_token"] - generated["nats_per_token"],
        "H_answer": alone["nats_per_token"],
        "H_answer_given_question": given["nats_per_token"],
        "pmi_answer_question": alone["nats_per_token"] - given["nats_per_token"],
        "pmi_per_sample_std": float(np.nanstd(pmi)) if len(pmi) else None,
        "delta_I_proxy": given["nats_per_token"],
        "tokens": {"anchor": anchor["tokens"], "generated": generated["tokens"],
                   "answers": alone["tokens"]},
        "n_texts": {"anchor": anchor["n_texts"], "generated": generated["n_texts"],
                    "pairs": alone["n_texts"]},
        "max_texts": max_texts,
        "max_tokens": max_tokens,
        "unit": "nats/token",
    }
