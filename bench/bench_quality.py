"""Benchmarks of the quality part: MinHash signatures and decontamination throughput.

1. MinHash signatures of 20,000 documents of ~1.3 KB (windows of the OpenStax
   corpus), same word 5-gram shingles and num_perm for both libraries:
   rensa (R-MinHash, bulk API) against datasketch (``MinHash.bulk``), in the
   same run. Target: rensa >= 15x datasketch.
2. Decontamination throughput (CPU seconds of this process, one thread)
   against the full GSM8K test + MATH test index, on (a) the same 20,000
   textbook windows (math-dense: many candidates to verify) and (b) GSM8K
   *train* questions and answers (question/answer records like the
   pipeline's output). Target: >= 10 MB/s per core.
3. Decontamination recall on planted copies and light edits of 600 random
   GSM8K/MATH test items (questions and answers), and its false hits on
   the OpenStax corpus split into documents, paragraphs and sentences.

Run: ``nice -n 5 python bench/bench_quality.py`` (needs ../shared/data).
"""

from __future__ import annotations

import os

# one thread for every numeric library: the figures are per core
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from synthllm.quality import Decontaminator, normalise_text, shared_benchmark_specs, shared_data_dir, word_shingles  # noqa: E402
from synthllm.quality.dedup import MINHASH_SEED  # noqa: E402


def textbook_windows(data_dir: Path, n_docs: int, size: int, seed: int) -> list[str]:
    """``n_docs`` windows of ``size`` characters at random offsets of the OpenStax math corpus."""
    texts = [json.loads(line)["text"] for line in open(data_dir / "corpus" / "openstax_math.jsonl", encoding="utf-8")]
    rng = random.Random(seed)
    windows = []
    for _ in range(n_docs):
        text = texts[rng.randrange(len(texts))]
        start = rng.randrange(max(1, len(text) - size))
        windows.append(text[start:start + size])
    return windows


def best_of(repeats: int, function) -> float:
    """Smallest CPU time of ``repeats`` calls (the machine is shared; the minimum is the least disturbed)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def bench_minhash(docs: list[str], num_perm: int, ngram: int, repeats: int) -> dict:
    import rensa
    from datasketch import MinHash

    shingles = [sorted(word_shingles(normalise_text(doc), ngram)) for doc in docs]
    encoded = [[s.encode("utf-8") for s in doc] for doc in shingles]
    shingling = best_of(1, lambda: [sorted(word_shingles(normalise_text(doc), ngram)) for doc in docs])
    rensa_time = best_of(repeats, lambda: rensa.RMinHash.digests_from_token_sets(shingles, num_perm, MINHASH_SEED))
    datasketch_time = best_of(1, lambda: MinHash.bulk(encoded, num_perm=num_perm, seed=1))
    return {"docs": len(docs), "mean_bytes": round(float(np.mean([len(d.encode()) for d in docs]))),
            "shingles": sum(map(len, shingles)), "num_perm": num_perm, "shingling_s": round(shingling, 3),
            "rensa_s": round(rensa_time, 3), "datasketch_s": round(datasketch_time, 3),
            "rensa_docs_per_s": round(len(docs) / rensa_time), "datasketch_docs_per_s": round(len(docs) / datasketch_time),
            "speedup": round(datasketch_time / rensa_time, 1)}


def bench_decontam(decontaminator: Decontaminator, name: str, texts: list[str], repeats: int) -> dict:
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    hits = sum(match is not None for match in decontaminator.check(texts))
    seconds = best_of(repeats, lambda: decontaminator.check(texts))
    return {"data": name, "texts": len(texts), "MB": round(megabytes, 2), "cpu_s": round(seconds, 3),
            "MB_per_s": round(megabytes / seconds, 1), "flagged": hits}


def _change_numbers(text: str, rng: random.Random) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)) if len(m.group()) < 6 else m.group(), text)


def _swap_sentences(text: str, rng: random.Random) -> str:
    sentences = re.split(r"(?<=[.?!])\s+", text.strip())
    if len(sentences) >= 3:
        i = rng.randrange(len(sentences) - 2)
        sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
        return " ".join(sentences)
    words = text.split()
    for _ in range(2 if len(words) >= 2 else 0):
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _swap_words(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(max(1, len(words) // 15) if len(words) >= 2 else 0):
        i = rng.randrange(len(words) - 1)
        words[i:i + 2] = words[i:i + 2][::-1]
    return " ".join(words)


def decontam_recall(decontaminator: Decontaminator, data_dir: Path, n_items: int, seed: int) -> None:
    """Print the share of planted, lightly edited benchmark items caught, per benchmark, field and edit."""
    rng = random.Random(seed)
    edits = {
        "verbatim": lambda t: t,
        "numbers changed": lambda t: _change_numbers(t, rng),
        "sentence added": lambda t: "Read carefully. " + t + " Show all your work.",
        "sentences/words reordered": lambda t: _swap_sentences(t, rng),
        "adjacent words swapped": lambda t: _swap_words(t, rng),
        "all three edits": lambda t: "Read carefully. " + _swap_words(_change_numbers(t, rng), rng) + " Show all your work.",
    }
    gsm8k = [json.loads(line) for line in open(data_dir / "gsm8k" / "test.jsonl", encoding="utf-8")]
    math = [json.loads(line) for line in open(data_dir / "math" / "test.jsonl", encoding="utf-8")]
    items = ([("gsm8k", str(i), row["question"], row["answer"]) for i, row in enumerate(gsm8k)]
             + [("math", str(row["idx"]), row["problem"], row["solution"]) for row in math])
    chosen = [items[i] for i in rng.sample(range(len(items)), n_items)]
    print(f"\nDecontamination recall on {n_items} planted test items (share caught at the defaults)")
    print(f"  {'edit':<27} {'GSM8K q':>8} {'GSM8K a':>8} {'MATH q':>8} {'MATH a':>8}")
    for name, edit in edits.items():
        cells = []
        for benchmark in ("gsm8k", "math"):
            subset = [item for item in chosen if item[0] == benchmark]
            for field in (2, 3):
                matches = decontaminator.check([edit(item[field]) for item in subset])
                caught = [m is not None and m["benchmark"] == benchmark and m["benchmark_id"] == item[1]
                          for m, item in zip(matches, subset)]
                cells.append(f"{100 * np.mean(caught):.1f}%")
        print(f"  {name:<27} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8} {cells[3]:>8}")
    documents = [json.loads(line)["text"] for line in open(data_dir / "corpus" / "openstax_math.jsonl", encoding="utf-8")]
    paragraphs = [p.strip() for d in documents for p in re.split(r"\n\s*\n", d) if p.strip()]
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.?!])\s+", p) if s.strip()]
    print("False hits on the OpenStax math corpus (textbook formulas and exercises):")
    for name, texts in (("documents", documents), ("paragraphs", paragraphs), ("sentences", sentences)):
        flagged = sum(m is not None for m in decontaminator.check(texts))
        print(f"  {name:<11} {len(texts):>6} texts  flagged {flagged}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1300)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recall-items", type=int, default=600)
    args = parser.parse_args()
    data_dir = shared_data_dir()
    if data_dir is None:
        raise SystemExit("shared data folder not found ($SYNTHLLM_DATA or ../shared/data)")
    docs = textbook_windows(data_dir, args.docs, args.size, args.seed)

    result = bench_minhash(docs, args.num_perm, 5, args.repeats)
    print(f"MinHash signatures: {result['docs']} docs x {result['mean_bytes']} B, {result['shingles']} shingles, "
          f"num_perm={result['num_perm']}")
    print(f"  shingling (shared by both):   {result['shingling_s']:.3f} s")
    print(f"  rensa RMinHash (bulk):        {result['rensa_s']:.3f} s  ({result['rensa_docs_per_s']:,} docs/s)")
    print(f"  datasketch MinHash.bulk:      {result['datasketch_s']:.3f} s  ({result['datasketch_docs_per_s']:,} docs/s)")
    print(f"  speedup rensa / datasketch:   {result['speedup']}x  (target >= 15x)")

    start = time.process_time()
    decontaminator = Decontaminator(shared_benchmark_specs(data_dir))
    build = time.process_time() - start
    print(f"\nDecontamination index: {decontaminator.n_items} items, {decontaminator.n_ngrams:,} (n-gram, text) "
          f"pairs, built in {build:.2f} CPU s")
    gsm8k_train = [json.loads(line) for line in open(data_dir / "gsm8k" / "train.jsonl", encoding="utf-8")]
    qa_texts = [row[key] for row in gsm8k_train for key in ("question", "answer")]
    for name, texts in (("textbook windows", docs), ("GSM8K train Q+A", qa_texts)):
        row = bench_decontam(decontaminator, name, texts, args.repeats)
        print(f"  {row['data']:<17} {row['texts']:>6} texts {row['MB']:>6.2f} MB  {row['cpu_s']:.3f} CPU s  "
              f"{row['MB_per_s']:>5.1f} MB/s per core  (target >= 10)  flagged {row['flagged']}")
    decontam_recall(decontaminator, data_dir, args.recall_items, args.seed)


if __name__ == "__main__":
    main()
