"""Decontamination catches planted benchmark copies and light edits, and leaves textbook text alone."""

from __future__ import annotations

import json
import random
import re

import pytest

from synthllm.quality import BenchmarkSpec, Decontaminator, read_jsonl, shared_benchmark_specs, tokenize


def clean_questions(n: int, seed: int = 0) -> list[dict]:
    """Synthetic word problems written for these tests (no benchmark text in them)."""
    rng = random.Random(seed)
    names = ["Avery", "Bruno", "Chidi", "Dana", "Emeka", "Farah", "Goran", "Hiro"]
    things = ["marbles", "stamps", "seashells", "pencils", "stickers", "postcards"]
    rows = []
    for i in range(n):
        name, thing = rng.choice(names), rng.choice(things)
        a, b, c = rng.randint(3, 90), rng.randint(2, 9), rng.randint(2, 40)
        rows.append({"id": f"clean-{i}",
                     "question": f"{name} sorts {a} {thing} into {b} equal boxes and then finds {c} more "
                                 f"{thing} under the sofa. How many {thing} are there altogether, and how "
                                 f"many would each box hold if they were shared again?",
                     "answer": f"There are {a} + {c} = {a + c} {thing}. Shared among {b} boxes that is "
                               f"{(a + c) / b:.2f} per box. #### {a + c}"})
    return rows


def change_numbers(text: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 3), text)


def swap_first_sentences(text: str) -> str:
    sentences = re.split(r"(?<=[.?!])\s+", text.strip())
    if len(sentences) >= 3:
        sentences[0], sentences[1] = sentences[1], sentences[0]
    return " ".join(sentences)


def prose_math_problems(shared_data, count: int) -> list[dict]:
    """MATH test problems that are mostly words (long enough for the n-gram index)."""
    rows = []
    for row in read_jsonl(shared_data / "math" / "test.jsonl"):
        tokens = tokenize(row["problem"])
        words = sum(len(t) >= 3 and t.isalpha() for t in tokens)
        if len(tokens) >= 30 and words >= 0.6 * len(tokens) and "$" not in row["problem"][:40]:
            rows.append(row)
        if len(rows) == count:
            break
    return rows


def test_planted_gsm8k_copies_and_edits_are_caught(decontaminator, shared_data):
    gsm8k = read_jsonl(shared_data / "gsm8k" / "test.jsonl")
    edits = {"verbatim": lambda t: t, "numbers": change_numbers, "reordered": swap_first_sentences,
             "sentence_added": lambda t: t + " Give the answer as a whole number and explain each step."}
    planted = []
    for i, item in enumerate(gsm8k[:120:6]):
        for name, edit in edits.items():
            planted.append({"id": f"leak-{name}-{i}", "question": edit(item["question"]), "answer": "42",
                            "source_line": gsm8k.index(item)})
    records = clean_questions(300) + planted
    random.Random(1).shuffle(records)
    kept, removed = decontaminator.filter(records)
    removed_ids = {r["id"] for r in removed}
    assert all(r["id"].startswith("clean-") for r in kept)
    assert removed_ids == {r["id"] for r in planted}
    by_id = {r["id"]: r for r in planted}
    for entry in removed:
        assert entry["benchmark"] == "gsm8k" and entry["field"] == "question"
        assert entry["benchmark_id"] == str(by_id[entry["id"]]["source_line"])
        assert entry["matched_text"] == gsm8k[by_id[entry["id"]]["source_line"]]["question"]
        assert entry["score"] >= decontaminator.min_coverage


def test_planted_math_problems_and_solutions_are_caught(decontaminator, shared_data):
    problems = prose_math_problems(shared_data, 10)
    assert len(problems) == 10
    planted = []
    for row in problems:
        planted.append({"id": f"q-{row['idx']}", "question": "Here is a challenge. " + row["problem"], "answer": "7"})
        planted.append({"id": f"a-{row['idx']}", "question": "Solve the problem below with care.",
                        "answer": row["solution"] + " That completes the argument."})
    records = clean_questions(100) + planted
    kept, removed = decontaminator.filter(records)
    assert {r["id"] for r in removed} == {r["id"] for r in planted}
    for entry in removed:
        assert entry["benchmark"] == "math" and entry["benchmark_id"] == entry["id"].split("-", 1)[1]
        assert entry["field"] == ("question" if entry["id"].startswith("q-") else "answer")
        assert entry["benchmark_field"] == ("problem" if entry["id"].startswith("q-") else "solution")
    assert len(kept) == 100


def test_short_math_problem_copied_verbatim_is_caught(decontaminator, shared_data):
    short = next(row for row in read_jsonl(shared_data / "math" / "test.jsonl") if len(tokenize(row["problem"])) < 6)
    _, removed = decontaminator.filter([{"id": 1, "question": short["problem"]}])
    assert removed and removed[0]["benchmark_id"] == str(short["idx"])


#: the one OpenStax text the six default benchmarks match: a CollegeMath system of equations that the
#: textbook prints with the same numbers (a real overlap). Two same-template exercises with other numbers
#: ("Find the product: $(5m - 9n)(5m + 9n)$" ~ #416, a summation-notation drill ~ #1165) matched before
#: template families were told apart from copies.
KNOWN_TEXTBOOK_TWINS = {("college_math", "332")}


def test_openstax_formulas_and_sentences_raise_no_false_hits(decontaminator, shared_data):
    documents = [json.loads(line)["text"] for line in open(shared_data / "corpus" / "openstax_math.jsonl")]
    assert len(documents) == 583
    pieces = [p.strip() for doc in documents for p in re.split(r"\n\s*\n", doc) if p.strip()]
    sentences = [s for p in pieces for s in re.split(r"(?<=[.?!])\s+", p) if len(s) > 20]
    records = [{"id": f"p{i}", "question": text} for i, text in enumerate(pieces + sentences)]
    kept, removed = decontaminator.filter(records, fields=("question",))
    assert {(r["benchmark"], r["benchmark_id"]) for r in removed} == KNOWN_TEXTBOOK_TWINS
    assert len(removed) <= 2  # the same text as a paragraph and as a sentence


def test_candidates_exist_but_are_rejected_on_textbook_text(decontaminator, shared_data):
    from synthllm.quality.decontam import _TokenStream

    documents = [json.loads(line)["text"] for line in open(shared_data / "corpus" / "openstax_math.jsonl")]
    pair_texts, _ = decontaminator._candidates(_TokenStream(documents))
    assert len(set(pair_texts.tolist())) > 50  # many documents share some n-gram with a benchmark text
    flagged = [match for match in decontaminator.check(documents) if match is not None]
    assert {(m["benchmark"], m["benchmark_id"]) for m in flagged} <= KNOWN_TEXTBOOK_TWINS


def test_custom_benchmark_by_config(tmp_path):
    bench = tmp_path / "mybench.jsonl"
    items = [{"uid": "x1", "prompt": "A train leaves the station at noon travelling at 60 miles per hour while a "
                                     "second train leaves two hours later at 80 miles per hour on the same track."},
             {"uid": "x2", "prompt": "Compute the number of lattice points strictly inside the triangle with "
                                     "vertices at the origin, the point on the x axis and the point on the y axis."}]
    bench.write_text("\n".join(json.dumps(item) for item in items) + "\n")
    decontaminator = Decontaminator([BenchmarkSpec("mine", bench, ["prompt"], id_field="uid")])
    records = [{"id": "ok", "question": "How many primes are smaller than one hundred?"},
               {"id": "leak", "question": "Answer this: " + change_numbers(items[0]["prompt"])}]
    kept, removed = decontaminator.filter(records, fields=("question",))
    assert [r["id"] for r in kept] == ["ok"]
    assert removed[0]["benchmark"] == "mine" and removed[0]["benchmark_id"] == "x1"
    assert decontaminator.n_items == {"mine": 2}


def test_benchmark_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "fine"}\n{"q": oops}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        Decontaminator([BenchmarkSpec("bad", bad, ["q"])])
    missing_field = tmp_path / "nofield.jsonl"
    missing_field.write_text('{"other": "text"}\n')
    with pytest.raises(ValueError, match=r"nofield.jsonl:1: no field 'q'"):
        Decontaminator([BenchmarkSpec("nf", missing_field, ["q"])])
    with pytest.raises(ValueError, match="no benchmarks"):
        Decontaminator([])


def test_shared_benchmark_specs_cover_the_six_spec_benchmarks(shared_data, tmp_path):
    specs = shared_benchmark_specs(shared_data)
    assert [(s.name, list(s.text_fields)) for s in specs] == [
        ("gsm8k", ["question", "answer"]), ("math", ["problem", "solution"]),
        ("minerva_math", ["problem", "solution"]), ("olympiadbench", ["question", "solution", "final_answer"]),
        ("college_math", ["question", "answer"]), ("gaokao2023en", ["question", "answer"])]
    assert shared_benchmark_specs(tmp_path) == []
    (tmp_path / "minerva_math").mkdir()
    (tmp_path / "minerva_math" / "test.jsonl").write_text('{"problem": "p", "solution": "s", "idx": 0}\n')
    assert [s.name for s in shared_benchmark_specs(tmp_path)] == ["minerva_math"]


def test_new_benchmarks_are_indexed_and_caught(decontaminator, shared_data):
    assert set(decontaminator.n_items) == {"gsm8k", "math", "minerva_math", "olympiadbench", "college_math",
                                           "gaokao2023en"}
    minerva = read_jsonl(shared_data / "minerva_math" / "test.jsonl")[3]
    olympiad = read_jsonl(shared_data / "olympiadbench" / "test.jsonl")[5]
    gaokao = read_jsonl(shared_data / "gaokao2023en" / "test.jsonl")[10]
    matches = decontaminator.check(["Please help: " + minerva["problem"], olympiad["question"],
                                    "Homework. " + gaokao["question"] + " Thanks!"])
    assert [(m["benchmark"], m["benchmark_id"]) for m in matches] == [
        ("minerva_math", str(minerva["idx"])), ("olympiadbench", str(olympiad["id"])), ("gaokao2023en", "10")]


#: MATH test problems, mostly formula, that the numbers-kept check missed once their numbers changed
FORMULA_PROBLEMS = ["929", "251", "2887", "240", "3404"]


def test_math_problem_with_numbers_changed_is_caught(decontaminator, shared_data):
    rows = {str(row["idx"]): row for row in read_jsonl(shared_data / "math" / "test.jsonl")}
    texts = [change_numbers(rows[idx]["problem"]) for idx in FORMULA_PROBLEMS]
    assert all(text != rows[idx]["problem"] for text, idx in zip(texts, FORMULA_PROBLEMS))
    matches = decontaminator.check(texts)
    assert [(m["benchmark"], m["benchmark_id"]) if m else None for m in matches] == [
        ("math", idx) for idx in FORMULA_PROBLEMS]


#: short MATH problems the old rules missed with their last sentence moved to the front (bench seeds 0-2):
#: moving a sentence breaks every 13-gram of a problem of ~12-23 tokens, and a last sentence under 6 tokens
#: ("What is $f(g(2))$?") lies in no 6-gram of its own
REORDERED_MISSES = ["148", "1050", "3248", "1165", "3718", "971", "1117", "4042", "803", "3420"]


def move_last_sentence_first(text: str) -> str:
    sentences = re.split(r"(?<=[.?!])\s+(?=[A-Z])", text.strip())
    assert len(sentences) >= 2
    return " ".join(sentences[-1:] + sentences[:-1])


def test_short_math_problems_with_sentences_reordered_are_caught(decontaminator, shared_data):
    rows = {str(row["idx"]): row for row in read_jsonl(shared_data / "math" / "test.jsonl")}
    texts = [move_last_sentence_first(rows[idx]["problem"]) for idx in REORDERED_MISSES]
    assert texts[0] == "What is $f(g(2))$? Let $f(x)=2x-4$ and $g(x)=x^2+3$."
    matches = decontaminator.check(texts)
    assert [(m["benchmark"], m["benchmark_id"], m["score"]) if m else None for m in matches] == [
        ("math", idx, 1.0) for idx in REORDERED_MISSES]


def test_a_short_sentence_counts_only_when_held_whole(tmp_path):
    """A problem sentence under 6 tokens covers its tokens only as a whole sentence of the sample, numbers kept."""
    bench = tmp_path / "problems.jsonl"
    bench.write_text(json.dumps({"question": "Let $f(x)=3x+1$. What is $f(4)$?"}) + "\n")
    decontaminator = Decontaminator([BenchmarkSpec("problems", bench, ["question"])])
    matches = decontaminator.check(["What is $f(4)$? Let $f(x)=3x+1$.",
                                    "What is $f(4)+1$? Let $f(x)=3x+1$.",  # another question
                                    "Let $f(x)=3x+1$."])
    assert matches[0] is not None and matches[0]["score"] == 1.0
    assert matches[1:] == [None, None]


def test_sentences_of_the_token_stream():
    from synthllm.quality.decontam import _TokenStream

    stream = _TokenStream(["It costs 3.50 dollars. What is $20!$? Done", "no stop here", ""])
    # a decimal point is not a sentence end; '!' and '?' are; every text starts a sentence
    assert stream.sentence_lengths.tolist() == [4, 3, 1, 3]
    hashes, starts, lengths = stream.sentence_runs(4)
    assert starts.tolist() == [4, 7, 8] and lengths.tolist() == [3, 1, 3]
    assert hashes[0] == _TokenStream(["What is 20"]).sentence_runs(4)[0][0]


def test_same_template_with_other_formula_is_not_a_leak(decontaminator):
    # tokens match CollegeMath's "Simplify: $\\frac{x^{-2}-6 x^{-1}+9}{x^{2}-9}$" with numbers replaced,
    # but the formula is another one
    assert decontaminator.check([r"Simplify $\frac{x^{2} - 4x - 32}{64 - x^{2}}.$"]) == [None]


def test_template_family_sibling_is_not_a_leak_but_a_distinctive_copy_is(tmp_path):
    """A numbers-masked match is a copy only when the benchmark does not itself hold a family of that form.

    Three "Find the product" items share one form once numbers and one-letter variables are masked, and
    three "Rewrite the sum using summation notation" items one wording outside their formulas: a textbook
    exercise of either template with other numbers is a sibling. A distinctive problem with its numbers
    changed is still a copy, and so is a family member matched completely (same wording, same formula).
    """
    problems = ["Find the product: $(4 m-8 n)(4 m+8 n)$", "Find the product: $(7 a+7 b)(7 a-7 b)$",
                "Find the product: $(2 u+3 v)(8 u-7 v)$",
                "Rewrite the sum using summation notation: $2+\\frac{3}{2}+\\frac{4}{3}+\\frac{5}{4}+\\frac{6}{5}$",
                "Rewrite the sum using summation notation: $8+11+14+17+20$",
                "Rewrite the sum using summation notation: $1+2+4+\\cdots+2^{29}$",
                "Let $f(x) = 3x^{2} - 7x + 12$ and $g(x) = \\sqrt{x + 5}$. Compute $f(g(4)) + g(f(1))$."]
    bench = tmp_path / "exercises.jsonl"
    bench.write_text("".join(json.dumps({"question": text}) + "\n" for text in problems))
    decontaminator = Decontaminator([BenchmarkSpec("exercises", bench, ["question"])])
    siblings = ["Find the product: $(5m - 9n)(5m + 9n).$",
                "Write the sum using summation notation: "
                "$1 + \\frac{1}{2} + \\frac{1}{3} + \\frac{1}{4} + \\frac{1}{5}.$"]
    copies = [change_numbers(problems[6]), change_numbers(problems[3])]
    matches = decontaminator.check(siblings + copies)
    assert matches[:2] == [None, None]
    assert [m["benchmark_id"] if m else None for m in matches[2:]] == ["6", "3"]


def test_generic_short_answer_does_not_match_alone(decontaminator, shared_data):
    gsm8k = read_jsonl(shared_data / "gsm8k" / "test.jsonl")
    short = gsm8k[579]["answer"]
    assert "Together, they have 5 + 2" in short
    # the GSM8K-train answer the old rules flagged against it (other numbers, another problem)
    train_answer = next(row["answer"] for row in read_jsonl(shared_data / "gsm8k" / "train.jsonl")
                        if row["answer"].startswith("Jenny has 6 cards."))
    assert decontaminator.check([train_answer, "$x=2$", "There is no solution."]) == [None, None, None]
    # with its question, the same item is still caught
    _, removed = decontaminator.filter([{"id": 1, "question": gsm8k[579]["question"], "answer": short}])
    assert removed and removed[0]["benchmark_id"] == "579"


def test_tokenize_keeps_latex_names_and_joins_decimals():
    assert tokenize(r"Janet’s 1,000 eggs cost $3.50; \frac{x}{2}") == ["janet", "s", "1,000", "eggs", "cost",
                                                                      "3.50", "frac", "x", "2"]
