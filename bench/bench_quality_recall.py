"""Recall and precision of dedup and decontamination on edited real data, before/after in one run.

The baseline is the quality code at commit ``BASELINE`` (read with ``git show``
and imported under another name), so both versions run on the same sets in
the same process.

1. **Dedup**: for each edit kind, 600 GSM8K-train questions (seeded choice,
   each with a number) get one edited copy each, appended after a pool of
   3,000 distinct GSM8K-train questions (the 600 among them). Recall: copies
   removed as duplicates of their own original. Precision: those, over
   everything removed (a removed original, or a copy pointing to another
   original, is a false positive). Default settings of each version.
2. **Decontamination**: all six SPEC benchmarks (what the new default
   checks) for the new code, GSM8K + MATH for the baseline (its default).
   Recall on 600 MATH-test and 600 GSM8K-test problems, verbatim, wrapped in
   other text, sentences reordered (the last sentence moved to the front),
   every number changed; then every MATH test problem with its numbers changed
   and every one of two sentences or more reordered. False positives
   on OpenStax sentences holding a formula, on OpenStax paragraphs and on
   all GSM8K-train questions and answers (with the flagged items listed).
3. **Throughput** (CPU s of this process, one thread): dedup signatures/s
   and decontamination MB/s, both versions (``after-2``: the new code on
   GSM8K + MATH only, the baseline's benchmarks); index build time and pickled size.

Run: ``nice -n 5 python -u bench/bench_quality_recall.py`` (needs ../shared/data
and a git checkout holding commit ``BASELINE``; ``--baseline REV`` compares
against another revision, e.g. the previous main).
"""

from __future__ import annotations

import os

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import pickle  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import best_of  # noqa: E402  (one timing helper for the quality benches)
from synthllm.io import read_jsonl  # noqa: E402
from synthllm.quality import dedup as new_dedup  # noqa: E402
from synthllm.quality import decontam as new_decontam  # noqa: E402

#: the commit whose dedup.py / decontam.py are the "before" column
BASELINE = "3587b59"
ROOT = Path(__file__).resolve().parents[1]

PREFIXES = ["Question: ", "Solve the following problem. ", "Problem: ", "Answer this question. "]
APPENDED = ["Show your work.", "Explain your reasoning step by step.", "Give the final answer as a number.",
            "Round to the nearest whole number if needed."]


def baseline_module(name: str):
    """The module ``synthllm.quality.<name>`` as it was at ``BASELINE`` (``--baseline`` sets it)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE}:src/synthllm/quality/{name}.py"],
                            check=True, capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp())
    path = folder / f"baseline_{name}.py"
    path.write_text(source.replace("from ..io import", "from synthllm.io import"))
    spec = importlib.util.spec_from_file_location(f"baseline_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- edits (seeded)

def edit_prefix(text: str, rng: random.Random) -> str:
    return rng.choice(PREFIXES) + text


def edit_append(text: str, rng: random.Random) -> str:
    return text + " " + rng.choice(APPENDED)


def edit_lower(text: str, rng: random.Random) -> str:
    return re.sub(r"[^\w\s]", "", text.lower())


def edit_number(text: str, rng: random.Random) -> str:
    """One number (digit run) changed to another value."""
    match = rng.choice(list(re.finditer(r"\d+", text)))
    return text[:match.start()] + str(int(match.group()) + rng.randint(1, 9)) + text[match.end():]


def edit_word(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """One word (3+ letters) replaced by another word of the GSM8K vocabulary."""
    match = rng.choice(list(re.finditer(r"[A-Za-z]{3,}", text)))
    word = rng.choice(vocabulary)
    while word.lower() == match.group().lower():
        word = rng.choice(vocabulary)
    return text[:match.start()] + word + text[match.end():]


def edit_swap(text: str, rng: random.Random) -> str:
    """Two words (space-separated tokens at random positions) exchanged."""
    words = text.split(" ")
    i, j = rng.sample(range(len(words)), 2)
    words[i], words[j] = words[j], words[i]
    return " ".join(words)


def change_numbers(text: str, rng: random.Random) -> str:
    """Every number of up to 5 digits changed (decontamination's 'numbers changed')."""
    return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)) if len(m.group()) < 6 else m.group(),
                  text)


def reorder_sentences(text: str, rng: random.Random) -> str | None:
    """The last sentence moved to the front (``None`` for a one-sentence text: nothing to reorder)."""
    sentences = [s for s in re.split(r"(?<=[.?!])\s+(?=[A-Z])", text.strip()) if s]
    if len(sentences) < 2:
        return None
    return " ".join(sentences[-1:] + sentences[:-1])


def wrap(text: str, rng: random.Random) -> str:
    return ("Here is a practice problem from my homework. " + text
            + " Please explain each step so that I can learn the method.")


def dedup_sets(questions: list[str], n_copies: int, n_pool: int, seed: int) -> dict[str, tuple[list, list]]:
    """Per edit kind: (pool of original questions, [(original index in pool, edited copy)])."""
    rng = random.Random(seed)
    vocabulary = sorted({w for q in questions for w in re.findall(r"[A-Za-z]{3,}", q)})
    with_numbers = [i for i, q in enumerate(questions) if re.search(r"\d", q) and len(q.split()) >= 3]
    pool_ids = rng.sample(with_numbers, n_pool)
    pool = [questions[i] for i in pool_ids]
    chosen = rng.sample(range(n_pool), n_copies)
    edits = {"prefix added": edit_prefix, "sentence appended": edit_append,
             "lower-cased, no punctuation": edit_lower, "one number changed": edit_number,
             "one word replaced": lambda t, r: edit_word(t, r, vocabulary), "two words swapped": edit_swap}
    sets = {}
    for name, edit in edits.items():
        edit_rng = random.Random(f"{seed}/{name}")
        sets[name] = (pool, [(i, edit(pool[i], edit_rng)) for i in chosen])
    return sets


def dedup_scores(deduplicate, pool: list[str], copies: list[tuple[int, str]]) -> tuple[float, float, int]:
    """Recall, precision and false positives of one dedup version on one edited set."""
    records = [{"id": f"o{i}", "question": q} for i, q in enumerate(pool)]
    records += [{"id": f"c{i}", "question": text} for i, text in copies]
    _, removed = deduplicate(records, text_key="question")
    true = sum(1 for r in removed if r["id"].startswith("c") and r["duplicate_of"] == "o" + r["id"][1:])
    false = len(removed) - true
    return true / len(copies), (true / len(removed) if removed else 1.0), false


def run_dedup(data_dir: Path, seed: int, n_copies: int, n_pool: int) -> None:
    questions = [row["question"] for row in read_jsonl(data_dir / "gsm8k" / "train.jsonl")]
    sets = dedup_sets(questions, n_copies, n_pool, seed)
    old = baseline_module("dedup")
    print(f"Dedup on GSM8K train: {n_copies} edited copies per edit kind after a pool of {n_pool} distinct "
          f"questions (seed {seed}); default settings of each version")
    print(f"  {'edit':<28} {'before recall':>13} {'precision':>9} {'FP':>3}   {'after recall':>12} "
          f"{'precision':>9} {'FP':>3}")
    for name, (pool, copies) in sets.items():
        before = dedup_scores(old.deduplicate, pool, copies)
        after = dedup_scores(new_dedup.deduplicate, pool, copies)
        print(f"  {name:<28} {before[0]:>13.3f} {before[1]:>9.3f} {before[2]:>3}   {after[0]:>12.3f} "
              f"{after[1]:>9.3f} {after[2]:>3}")
    # the false positives of the new version on the pool alone: pairs of distinct originals
    pool = sets["prefix added"][0]
    _, removed = new_dedup.deduplicate([{"id": i, "question": q} for i, q in enumerate(pool)])
    print(f"  distinct pool questions the new version flags ({len(removed)}):")
    for r in removed:
        print(f"    J={r['similarity']:.3f}  {pool[r['id']][:110]!r}\n             ~ {pool[r['duplicate_of']][:110]!r}")
    # LSH: pairs the exact rule accepts that banding misses (all edit kinds together, each version's default)
    def old_jaccard(a: str, b: str) -> float:
        first, second = (old.word_shingles(old.normalise_text(t), 5) for t in (a, b))
        return len(first & second) / len(first | second)

    def new_jaccard(a: str, b: str) -> float:
        first, second = new_dedup.char_shingles([a, b])
        shared = len(np.intersect1d(first, second))
        return shared / (len(first) + len(second) - shared)

    for label, deduplicate, jaccard, threshold in (("before", old.deduplicate, old_jaccard, 0.8),
                                                   ("after", new_dedup.deduplicate, new_jaccard, 0.7)):
        eligible = missed = 0
        for pool, copies in sets.values():
            pairs = [(i, text) for i, text in copies if jaccard(pool[i], text) >= threshold]
            records = [{"id": f"o{i}", "question": pool[i]} for i, _ in pairs]
            records += [{"id": f"c{k}", "question": text} for k, (_, text) in enumerate(pairs)]
            _, removed = deduplicate(records, text_key="question")
            found = {r["id"] for r in removed if r["id"].startswith("c")}
            eligible += len(pairs)
            missed += sum(f"c{k}" not in found for k in range(len(pairs)))
        print(f"  {label}: of {eligible} edited pairs whose exact Jaccard is >= {threshold}, LSH lost {missed} "
              f"({100 * missed / max(eligible, 1):.1f} %)")
    for threshold in (0.7, 0.8):
        bands, rows = new_dedup.lsh_params(threshold, 128)
        print(f"  threshold {threshold}: {bands} bands x {rows} rows (baseline {old.lsh_bands(threshold, 128)} "
              f"bands x {128 // old.lsh_bands(threshold, 128)} rows)")


# ---------------------------------------------------------------- decontamination

def decontam_items(data_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """(id, problem) of GSM8K test and MATH test."""
    gsm8k = read_jsonl(data_dir / "gsm8k" / "test.jsonl")
    math = read_jsonl(data_dir / "math" / "test.jsonl")
    return {"gsm8k": [(str(i), row["question"]) for i, row in enumerate(gsm8k)],
            "math": [(str(row["idx"]), row["problem"]) for row in math]}


def openstax_texts(data_dir: Path) -> tuple[list[str], list[str]]:
    """OpenStax paragraphs, and the sentences among them that hold a formula (a digit next to an operator)."""
    documents = [row["text"] for row in read_jsonl(data_dir / "corpus" / "openstax_math.jsonl")]
    paragraphs = [p.strip() for d in documents for p in re.split(r"\n\s*\n", d) if p.strip()]
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.?!])\s+", p) if s.strip()]
    formula = re.compile(r"[0-9a-z)]\s*[-+=*/^<>]\s*[0-9a-z(]|\\frac|\^")
    return paragraphs, [s for s in sentences if formula.search(s) and re.search(r"\d", s)]



def caught_as_math_item(decontaminator, pairs):
    """Share of ``(item_id, text)`` pairs caught as their own MATH item, and share flagged at all."""
    matches = decontaminator.check([text for _, text in pairs])
    caught = np.mean([m is not None and m["benchmark"] == "math" and m["benchmark_id"] == item_id
                      for m, (item_id, _) in zip(matches, pairs)])
    return caught, float(np.mean([m is not None for m in matches]))

def run_decontam(data_dir: Path, seed: int, n_items: int, repeats: int) -> None:
    old = baseline_module("decontam")
    specs_old = old.shared_benchmark_specs(data_dir)
    specs_new = new_decontam.shared_benchmark_specs(data_dir)
    versions = {}
    two = [spec for spec in specs_new if spec.name in ("gsm8k", "math")]
    for label, module, specs in (("before", old, specs_old), ("after", new_decontam, specs_new),
                                 ("after-2", new_decontam, two)):
        start = time.process_time()
        decontaminator = module.Decontaminator(specs)
        build = time.process_time() - start
        size = len(pickle.dumps(decontaminator, protocol=pickle.HIGHEST_PROTOCOL)) / 1e6
        versions[label] = decontaminator
        print(f"Decontamination index {label}: {[s.name for s in specs]}, built in {build:.2f} CPU s, "
              f"pickled {size:.1f} MB")
    rng = random.Random(seed)
    items = decontam_items(data_dir)
    def numbers_changed(text: str, rng: random.Random) -> str | None:
        changed = change_numbers(text, rng)
        return changed if changed != text else None  # a problem without numbers is not in this row

    edits = {"verbatim": lambda t, r: t, "wrapped": wrap, "reordered": reorder_sentences,
             "numbers changed": numbers_changed}
    print(f"\nRecall on {n_items} random test problems per benchmark (seed {seed}); caught = flagged as that item; "
          f"rows count only the problems an edit changes")
    print(f"  {'edit':<17} {'GSM8K before':>12} {'after':>6}   {'MATH before':>11} {'after':>6}")
    chosen = {name: rng.sample(rows, n_items) for name, rows in items.items()}
    for edit_name, edit in edits.items():
        cells, counts, flagged = [], {}, {}
        for bench in ("gsm8k", "math"):
            edit_rng = random.Random(f"{seed}/{edit_name}/{bench}")
            edited = [(item_id, edit(text, edit_rng)) for item_id, text in chosen[bench]]
            edited = [(item_id, text) for item_id, text in edited if text is not None]
            counts[bench] = len(edited)
            for label in ("before", "after"):
                matches = versions[label].check([text for _, text in edited])
                caught = [m is not None and m["benchmark"] == bench and m["benchmark_id"] == item_id
                          for m, (item_id, _) in zip(matches, edited)]
                cells.append(float(np.mean(caught)))
                if label == "after":
                    flagged[bench] = float(np.mean([m is not None for m in matches]))
        print(f"  {edit_name:<17} {cells[0]:>12.3f} {cells[1]:>6.3f}   {cells[2]:>11.3f} {cells[3]:>6.3f}   "
              f"(problems: GSM8K {counts['gsm8k']}, MATH {counts['math']}; after, flagged as any item: "
              f"GSM8K {flagged['gsm8k']:.3f}, MATH {flagged['math']:.3f})")
    full = [(item_id, change_numbers(text, random.Random(f"{seed}/all/{item_id}"))) for item_id, text in items["math"]]
    full = [(item_id, text) for (item_id, text), (_, original) in zip(full, items["math"]) if text != original]
    for label in ("before", "after"):
        caught, flagged_share = caught_as_math_item(versions[label], full)
        print(f"  all {len(full)} MATH test problems holding a number, every number changed, {label}: "
              f"{caught:.3f} caught as that item, {flagged_share:.3f} flagged")
    reordered = [(item_id, reorder_sentences(text, rng)) for item_id, text in items["math"]]
    reordered = [(item_id, text) for item_id, text in reordered if text is not None]
    for label in ("before", "after"):
        caught, _ = caught_as_math_item(versions[label], reordered)
        print(f"  all {len(reordered)} MATH test problems of two sentences or more, last sentence first, {label}: "
              f"{caught:.3f} caught as that item")
    paragraphs, formula_sentences = openstax_texts(data_dir)
    train = read_jsonl(data_dir / "gsm8k" / "train.jsonl")
    train_texts = [row[key] for row in train for key in ("question", "answer")]
    print("\nFalse positives (texts flagged):")
    for name, texts in (("OpenStax sentences with a formula", formula_sentences),
                        ("OpenStax paragraphs", paragraphs), ("GSM8K train questions+answers", train_texts)):
        flagged = {label: [(i, m) for i, m in enumerate(versions[label].check(texts)) if m is not None]
                   for label in ("before", "after")}
        print(f"  {name:<34} {len(texts):>6} texts   before {len(flagged['before']):>3}   after "
              f"{len(flagged['after']):>3}")
        for i, match in flagged["after"]:
            print(f"      after: {texts[i][:100]!r}\n        ~ {match['benchmark']} #{match['benchmark_id']} "
                  f"({match['benchmark_field']}, score {match['score']}): {match['matched_text'][:100]!r}")
    print("\nThroughput (CPU s, best of %d):" % repeats)
    for name, texts in (("GSM8K train Q+A", train_texts), ("OpenStax paragraphs", paragraphs)):
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        for label in ("before", "after", "after-2"):
            seconds = best_of(repeats, lambda: versions[label].check(texts))
            print(f"  decontam {label:<7} {name:<20} {megabytes:.2f} MB  {seconds:.3f} s  "
                  f"{megabytes / seconds:5.1f} MB/s")


def run_throughput(data_dir: Path, repeats: int) -> None:
    old = baseline_module("dedup")
    questions = [row["question"] for row in read_jsonl(data_dir / "gsm8k" / "train.jsonl")]
    records = [{"id": i, "question": q} for i, q in enumerate(questions)]
    print(f"\nDedup throughput on {len(questions)} GSM8K-train questions (CPU s, best of {repeats}):")
    for label, module in (("before", old), ("after", new_dedup)):
        sign = best_of(repeats, lambda: module.text_signatures(questions))
        signatures = module.text_signatures(questions)
        whole = best_of(repeats, lambda: module.deduplicate(records, signatures=signatures))
        print(f"  {label:<6} signatures {sign:.3f} s ({len(questions) / sign:,.0f} texts/s)   "
              f"deduplicate given signatures {whole:.3f} s ({len(questions) / whole:,.0f} texts/s)")


def run_semantic(data_dir: Path, seed: int, n_copies: int, n_pool: int) -> None:
    """The optional semantic pass alone, on MiniLM embeddings of the 'one word replaced' set."""
    from synthllm.embeddings import embed_texts

    questions = [row["question"] for row in read_jsonl(data_dir / "gsm8k" / "train.jsonl")]
    sets = dedup_sets(questions, n_copies, n_pool, seed)
    print(f"\nSemantic pass (MiniLM cosine, SimHash LSH + exact cosine) alone, {n_pool} pool + {n_copies} copies:")
    for name in ("one word replaced", "two words swapped", "sentence appended"):
        pool, copies = sets[name]
        texts = pool + [text for _, text in copies]
        start = time.process_time()
        embeddings = embed_texts(texts)
        embed_s = time.process_time() - start
        for threshold in (0.9, 0.95):
            start = time.process_time()
            removed = new_dedup.semantic_duplicates(embeddings, threshold)
            seconds = time.process_time() - start
            true = sum(1 for row, kept, _ in removed if row >= n_pool and kept == copies[row - n_pool][0])
            exact = embeddings[n_pool:] @ embeddings[[i for i, _ in copies]].T
            above = int((np.diag(exact) >= threshold).sum())
            print(f"  {name:<18} cos >= {threshold}: recall {true / len(copies):.3f} (exact cosine >= threshold: "
                  f"{above / len(copies):.3f}), precision {true / max(len(removed), 1):.3f}, "
                  f"{len(removed) - true} false; LSH+verify {seconds:.2f} CPU s, embedding {embed_s:.1f} CPU s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies", type=int, default=600)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["dedup", "decontam", "throughput", "semantic"], default=None)
    parser.add_argument("--baseline", default=BASELINE,
                        help="git revision whose quality code is the 'before' column (default: %(default)s)")
    args = parser.parse_args()
    globals()["BASELINE"] = args.baseline
    data_dir = new_decontam.shared_data_dir()
    if data_dir is None:
        raise SystemExit("shared data folder not found ($SYNTHLLM_DATA or ../shared/data)")
    if args.only in (None, "dedup"):
        run_dedup(data_dir, args.seed, args.copies, args.pool)
    if args.only in (None, "throughput"):
        run_throughput(data_dir, args.repeats)
    if args.only in (None, "decontam"):
        run_decontam(data_dir, args.seed, args.items, args.repeats)
    if args.only == "semantic":  # needs sentence-transformers and the packaged MiniLM
        run_semantic(data_dir, args.seed, args.copies, args.pool)


if __name__ == "__main__":
    main()
