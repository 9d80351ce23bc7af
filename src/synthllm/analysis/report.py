"""The run report: ``report.json`` (every number) and a self-contained ``report.html``.

The HTML is rendered from the JSON dictionary alone, so every figure and table
in the page has its numbers in ``report.json``. Plots are embedded as base64
PNG; the page has inline CSS and no external URLs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from ..io import JsonlError, iter_jsonl
from . import diversity
from .divergence import classifier_tv, curation_tv, mmd_rbf

LEVELS = (1, 2, 3)
LENGTH_EDGES = [0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


class RunFolderError(InputError):
    """A run folder that cannot be read; the message names the file and what is wrong."""


# -- reading the run folder ---------------------------------------------------

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None


def _iter_jsonl(path: Path) -> Iterator[dict]:
    try:
        yield from iter_jsonl(path)
    except JsonlError as exc:
        raise RunFolderError(str(exc)) from None


def _optional_jsonl(path: Path) -> list[dict] | None:
    return list(_iter_jsonl(path)) if path.is_file() else None


def load_dataset(run_dir: Path) -> list[dict]:
    """Rows of the run's dataset (``dataset.parquet``, else ``dataset.jsonl``).

    Parameters
    ----------
    run_dir : Path
        The run folder.

    Returns
    -------
    list of dict
        One dict per sample, with at least ``level``, ``question`` and ``answer``.
    """
    parquet, jsonl = run_dir / "dataset.parquet", run_dir / "dataset.jsonl"
    if parquet.is_file():
        import pyarrow.parquet as pq

        rows = pq.read_table(parquet).to_pylist()
        source = parquet
    elif jsonl.is_file():
        rows = list(_iter_jsonl(jsonl))
        source = jsonl
    else:
        raise RunFolderError(f"{run_dir}: no dataset.parquet or dataset.jsonl (is this a finished run folder?)")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ("level", "question", "answer") if row.get(key) is None]
        if missing:
            raise RunFolderError(f"{source}: row {number}: missing {', '.join(missing)}")
    return rows


def load_documents(run_dir: Path) -> list[dict]:
    """Input documents of the run (``stages/documents/*.jsonl``, rejects excluded)."""
    folder = run_dir / "stages" / "documents"
    if not folder.is_dir():
        return []
    documents = []
    for path in sorted(folder.glob("*.jsonl")):
        if not path.name.endswith(".rejects.jsonl"):
            documents.extend(record for record in _iter_jsonl(path) if record.get("text"))
    return documents


# -- sections -------------------------------------------------------------------

def _summary(values: list[int]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    if not array.size:
        return {"n": 0}
    counts, _ = np.histogram(np.clip(array, 0, LENGTH_EDGES[-1] - 1), bins=LENGTH_EDGES)
    return {"n": int(array.size), "mean": float(array.mean()), "median": float(np.median(array)),
            "p90": float(np.percentile(array, 90)), "max": int(array.max()),
            "hist": {"edges": LENGTH_EDGES, "counts": [int(c) for c in counts]}}


def length_section(rows: list[dict]) -> dict:
    """Question and answer lengths per level, in word-and-punctuation tokens.

    Parameters
    ----------
    rows : list of dict
        Dataset rows.

    Returns
    -------
    dict
        ``{level: {"question": summary, "answer": summary}}`` with mean,
        median, p90, max and a histogram on fixed edges.
    """
    by_level: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"question": [], "answer": []})
    for row in rows:
        entry = by_level[str(row["level"])]
        entry["question"].append(len(diversity.tokenize(row["question"])))
        entry["answer"].append(len(diversity.tokenize(row["answer"])))
    return {"unit": "word and punctuation tokens",
            "levels": {level: {part: _summary(values) for part, values in parts.items()}
                       for level, parts in sorted(by_level.items())}}


def _sample_groups(keys: list[tuple], limit: int, rng: np.random.Generator) -> list[int]:
    """Positions of whole groups, taken in random order until ``limit`` positions are reached."""
    members: dict[tuple, list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        members[key].append(position)
    groups = list(members.values())
    chosen: list[int] = []
    for index in rng.permutation(len(groups)):
        if len(chosen) >= limit:
            break
        chosen.extend(groups[index])
    return sorted(chosen[:limit])


def diversity_section(rows: list[dict], *, max_per_level: int = 2000, max_per_group: int = 50,
                      seed: int = 0, embedder: str = "all-MiniLM-L6-v2") -> tuple[dict, dict]:
    """Diversity of the questions per level and overall.

    Questions are embedded with :func:`synthllm.embeddings.embed_texts`; at
    most ``max_per_level`` per level, taken as whole source-document groups so
    that within-source pairs survive the sampling.

    Parameters
    ----------
    rows : list of dict
        Dataset rows.
    max_per_level : int, default=2000
        Questions embedded per level.
    max_per_group : int, default=50
        Questions per source group in the within-source histogram (paper: 50).
    seed : int, default=0
        Seed of the sampling.
    embedder : str, default="all-MiniLM-L6-v2"
        Sentence-transformers model name or folder.

    Returns
    -------
    tuple of (dict, dict)
        The section, and ``{level: (row indices, embeddings)}`` for reuse.
    """
    from synthllm.embeddings import embed_texts

    rng = np.random.default_rng(seed)
    levels: dict[str, dict] = {}
    embedded: dict[str, tuple[list[int], np.ndarray]] = {}
    for level in LEVELS:
        indices = [i for i, row in enumerate(rows) if row["level"] == level]
        if not indices:
            continue
        # Questions of one document (Level-1/2) or of one pair of grounding documents (Level-3).
        keys = [tuple(rows[i].get("source_doc_ids") or [rows[i].get("id")]) for i in indices]
        picked = _sample_groups(keys, max_per_level, rng)
        chosen = [indices[i] for i in picked]
        vectors = embed_texts([rows[i]["question"] for i in chosen], model=embedder)
        similarities = diversity.within_group_similarities(vectors, [keys[i] for i in picked],
                                                           max_per_group=max_per_group, rng=rng)
        questions = [rows[i]["question"] for i in indices]
        levels[str(level)] = {
            "n_questions": len(indices),
            "n_embedded": len(chosen),
            "n_sources": len(set(keys)),
            "within_source": diversity.similarity_histogram(similarities),
            "mean_pairwise_cosine": diversity.mean_pairwise_cosine(vectors),
            "vendi": diversity.vendi_score(vectors),
            "distinct": {f"distinct_{n}": diversity.distinct_n(questions, n) for n in (1, 2, 3)},
        }
        embedded[str(level)] = (chosen, vectors)
    section: dict[str, Any] = {"embedder": embedder, "levels": levels}
    if embedded:
        everything = np.vstack([vectors for _, vectors in embedded.values()])
        questions = [row["question"] for row in rows]
        section["overall"] = {
            "n_embedded": int(everything.shape[0]),
            "mean_pairwise_cosine": diversity.mean_pairwise_cosine(everything),
            "vendi": diversity.vendi_score(everything),
            "distinct": {f"distinct_{n}": diversity.distinct_n(questions, n) for n in (1, 2, 3)},
        }
    return section, embedded


def _sample_texts(texts: list[str], limit: int, rng: np.random.Generator) -> list[str]:
    if len(texts) <= limit:
        return list(texts)
    return [texts[i] for i in sorted(rng.choice(len(texts), size=limit, replace=False))]


def _sample_text(row: dict) -> str:
    return f"{row['question']}\n\n{row['answer']}"


def divergence_section(rows: list[dict], documents: list[dict], removed: list[dict], *,
                       max_per_side: int = 500, seed: int = 0,
                       embedder: str = "all-MiniLM-L6-v2") -> dict:
    """TV (classifier two-sample test) and MMD estimates on sentence embeddings.

    ``anchor_vs_generated`` estimates ``D_TV(D, D_M)``: input documents vs
    generated samples (question and answer). ``raw_vs_curated`` estimates
    ``D_TV(D_M, D_gen)`` from the removed (dedup, decontamination) vs kept samples.

    Parameters
    ----------
    rows : list of dict
        Kept dataset rows.
    documents : list of dict
        Input documents (``text``).
    removed : list of dict
        Samples removed by curation (``question``, ``answer``).
    max_per_side : int, default=500
        Texts embedded per side of each test.
    seed : int, default=0
        Seed of the sampling and the tests.
    embedder : str, default="all-MiniLM-L6-v2"
        Sentence-transformers model name or folder.

    Returns
    -------
    dict
        Sections ``anchor_vs_generated`` and ``raw_vs_curated``, each either
        results or ``{"skipped": reason}``.
    """
    from synthllm.embeddings import embed_texts

    rng = np.random.default_rng(seed)
    generated = [_sample_text(row) for row in rows]
    section: dict[str, Any] = {"embedder": embedder,
                               "note": "texts are embedded as the embedder reads them (first 256 word pieces)"}
    kept_vectors = embed_texts(_sample_texts(generated, max_per_side, rng), model=embedder) if generated else None
    anchors = [document["text"] for document in documents]
    if len(anchors) >= 5 and len(generated) >= 5:
        anchor_vectors = embed_texts(_sample_texts(anchors, max_per_side, rng), model=embedder)
        section["anchor_vs_generated"] = {
            "classifier": classifier_tv(anchor_vectors, kept_vectors, seed=seed),
            "mmd": mmd_rbf(anchor_vectors, kept_vectors, seed=seed),
        }
    else:
        section["anchor_vs_generated"] = {"skipped": "needs at least 5 documents and 5 samples"}
    usable = [row for row in removed if row.get("question") and row.get("answer")]
    if len(usable) >= 5 and len(generated) >= 5:
        removed_vectors = embed_texts(_sample_texts([_sample_text(r) for r in usable], max_per_side, rng),
                                      model=embedder)
        # The removed share comes from the full counts, not from the embedded subsamples.
        share = len(usable) / (len(usable) + len(generated))
        section["raw_vs_curated"] = {
            **curation_tv(removed_vectors, kept_vectors, removed_share=share, seed=seed),
            "mmd_removed_vs_kept": mmd_rbf(removed_vectors, kept_vectors, seed=seed),
        }
    else:
        section["raw_vs_curated"] = {"skipped": f"needs at least 5 removed samples with text, found {len(usable)}"}
    return section


def quality_section(run_dir: Path) -> dict:
    """Summaries of ``quality/dedup.jsonl``, ``quality/decontam.jsonl`` and ``quality/filter.json``."""
    folder = run_dir / "quality"
    section: dict[str, Any] = {}
    dedup = _optional_jsonl(folder / "dedup.jsonl")
    if dedup is not None:
        by_level = Counter(str(r.get("level")) for r in dedup)
        section["dedup"] = {"removed": len(dedup), "by_level": dict(sorted(by_level.items())),
                            "examples": [{"id": r.get("id"), "duplicate_of": r.get("duplicate_of"),
                                          "question": (r.get("question") or "")[:200]} for r in dedup[:5]]}
    decontam = _optional_jsonl(folder / "decontam.jsonl")
    if decontam is not None:
        by_benchmark = Counter(str(r.get("benchmark")) for r in decontam)
        section["decontam"] = {"removed": len(decontam), "by_benchmark": dict(by_benchmark.most_common()),
                               "examples": [{"id": r.get("id"), "benchmark": r.get("benchmark"),
                                             "question": (r.get("question") or "")[:200]}
                                            for r in decontam[:5]]}
    if (folder / "filter.json").is_file():
        section["filter"] = _read_json(folder / "filter.json")
    return section


def build_report(run_dir: Path, *, lm: bool = True, lm_model: str | None = None, max_embed: int = 2000,
                 max_divergence: int = 500, max_lm_texts: int = 32, max_lm_tokens: int = 128,
                 seed: int = 0, embedder: str = "all-MiniLM-L6-v2") -> dict:
    """Compute every number of the report for one run folder.

    Parameters
    ----------
    run_dir : Path
        The run folder (``manifest.json`` and ``dataset.parquet``/``.jsonl``).
    lm : bool, default=True
        Compute the reference-LM entropy estimates (slow on CPU).
    lm_model : str, optional
        Reference LM: a local Hugging Face folder or ``.gguf``; ``None`` for the
        embedded SmolLM2-135M-Instruct.
    max_embed : int, default=2000
        Questions embedded per level for diversity.
    max_divergence : int, default=500
        Texts embedded per side of each two-sample test.
    max_lm_texts, max_lm_tokens : int, default=32, 128
        Texts per set and tokens per text scored by the reference LM.
    seed : int, default=0
        Seed of every sampling step.
    embedder : str, default="all-MiniLM-L6-v2"
        Sentence-transformers model for all embeddings.

    Returns
    -------
    dict
        The report (what ``report.json`` holds).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: run folder not found")
    manifest = _read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    rows = load_dataset(run_dir)
    documents = load_documents(run_dir)
    quality = quality_section(run_dir)
    removed = (_optional_jsonl(run_dir / "quality" / "dedup.jsonl") or []) + \
              (_optional_jsonl(run_dir / "quality" / "decontam.jsonl") or [])
    report: dict[str, Any] = {
        "run_dir": str(run_dir.resolve()),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"lm": lm, "lm_model": lm_model or "smollm2-135m-instruct (embedded)", "max_embed": max_embed,
                     "max_divergence": max_divergence, "max_lm_texts": max_lm_texts,
                     "max_lm_tokens": max_lm_tokens, "seed": seed},
        "counts": {
            "dataset_rows": len(rows),
            "manifest_dataset_rows": manifest.get("dataset_rows"),
            "by_level": {str(level): sum(1 for r in rows if r["level"] == level) for level in LEVELS},
            "documents": len(documents),
            "stages": manifest.get("stages", {}),
        },
        "versions": manifest.get("versions", {}),
        "lengths": length_section(rows),
    }
    report["diversity"], _ = diversity_section(rows, max_per_level=max_embed, seed=seed, embedder=embedder)
    coverage_path = run_dir / "graph" / "coverage.json"
    report["coverage"] = _read_json(coverage_path) if coverage_path.is_file() else None
    report["divergence"] = divergence_section(rows, documents, removed, max_per_side=max_divergence,
                                              seed=seed, embedder=embedder)
    if lm and rows and documents:
        from .entropy import entropy_estimates, load_lm

        model, tokenizer = load_lm(lm_model)
        report["entropy"] = entropy_estimates(
            model, tokenizer, [d["text"] for d in documents], [_sample_text(r) for r in rows],
            [r["question"] for r in rows], [r["answer"] for r in rows],
            max_texts=max_lm_texts, max_tokens=max_lm_tokens, seed=seed)
    else:
        report["entropy"] = {"skipped": "--no-lm" if not lm else "needs documents and samples"}
    report["quality"] = quality
    report["figures"] = [
        {"id": "stage_counts", "title": "Records in and out of each stage", "data": "counts.stages"},
        {"id": "lengths", "title": "Question and answer lengths per level", "data": "lengths.levels"},
        {"id": "diversity", "title": "Within-source question similarity per level",
         "data": "diversity.levels.*.within_source"},
    ]
    return _finite(report)


def _finite(value: Any) -> Any:
    """Replace NaN and infinities by None so that report.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


# -- rendering ------------------------------------------------------------------

def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(report: dict) -> dict[str, str]:
    """Base64 PNGs of the report's figures, drawn from the report dictionary only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, str] = {}
    stages = report["counts"]["stages"]
    if stages:
        names = list(stages)
        figure, axis = plt.subplots(figsize=(9, 3.2), constrained_layout=True)
        positions = np.arange(len(names))
        axis.bar(positions - 0.2, [stages[n].get("in", 0) or 0 for n in names], 0.4, label="in")
        axis.bar(positions + 0.2, [stages[n].get("out", 0) or 0 for n in names], 0.4, label="out")
        axis.set_xticks(positions, names, rotation=20)
        axis.set_ylabel("records")
        axis.legend()
        images["stage_counts"] = _png(figure)
    levels = report["lengths"]["levels"]
    if levels:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.2), constrained_layout=True)
        for axis, part in zip(axes, ("question", "answer")):
            for level, parts in levels.items():
                hist = parts[part].get("hist")
                if hist:
                    labels = [f"<{e}" for e in hist["edges"][1:]]
                    axis.plot(labels, hist["counts"], marker="o", label=f"Level-{level}")
            axis.set_title(f"{part} length (tokens)")
            axis.set_ylabel("samples")
            axis.tick_params(axis="x", labelrotation=45)
            axis.legend()
        images["lengths"] = _png(figure)
    diversity_levels = report["diversity"]["levels"]
    if any(level["within_source"]["n_pairs"] for level in diversity_levels.values()):
        figure, axis = plt.subplots(figsize=(7, 3.4), constrained_layout=True)
        for level, data in diversity_levels.items():
            hist = data["within_source"]
            if hist["n_pairs"]:
                edges = np.asarray(hist["edges"])
                density = np.asarray(hist["counts"]) / (hist["n_pairs"] * np.diff(edges))
                axis.step(edges[:-1], density, where="post", label=f"Level-{level} ({hist['n_pairs']} pairs)")
        axis.set_xlabel("cosine similarity of two questions from the same source")
        axis.set_ylabel("density")
        axis.legend()
        images["diversity"] = _png(figure)
    return images


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value, ensure_ascii=False)[:300])
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _key_values(data: dict) -> str:
    return _table(["quantity", "value"], [[key, value] for key, value in data.items()])


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2330;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d9dee8;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d9dee8;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f1f4f9}td{font-variant-numeric:tabular-nums}
.meta{color:#5b6475;font-size:.9em}.note{color:#5b6475;font-size:.85em;max-width:60em}
img{max-width:100%;border:1px solid #e5e8ef;margin:.4em 0}
"""


def render_html(report: dict) -> str:
    """Self-contained HTML page for a report dictionary from :func:`build_report`.

    Parameters
    ----------
    report : dict
        The report.

    Returns
    -------
    str
        The page (inline CSS, base64 PNG figures, no external URLs).
    """
    images = _plots(report)
    titles = {figure["id"]: figure["title"] for figure in report["figures"]}
    figure = lambda key: (f'<figure><img alt="{html.escape(titles[key])}" src="data:image/png;base64,'  # noqa: E731
                          f'{images[key]}"><figcaption class="note">{html.escape(titles[key])} '
                          f'(numbers: report.json)</figcaption></figure>') if key in images else ""
    counts = report["counts"]
    parts = [f"<h1>synthllm run report</h1><p class='meta'>{_fmt(report['run_dir'])} · "
             f"generated {_fmt(report['generated_at'])}</p>"]

    parts.append("<h2>Counts</h2>")
    parts.append(_table(["dataset rows", "Level-1", "Level-2", "Level-3", "input documents"],
                        [[counts["dataset_rows"], *counts["by_level"].values(), counts["documents"]]]))
    if counts["stages"]:
        keys = ["in", "ok", "out", "unsuitable", "unparsable", "failed", "prompt_tokens", "completion_tokens"]
        parts.append(_table(["stage", *keys], [[name, *(stage.get(k) for k in keys)]
                                               for name, stage in counts["stages"].items()]))
    parts.append(figure("stage_counts"))

    parts.append("<h2>Lengths</h2>")
    length_rows = [[f"Level-{level}", part, s.get("n"), s.get("mean"), s.get("median"), s.get("p90"), s.get("max")]
                   for level, partsummary in report["lengths"]["levels"].items()
                   for part, s in partsummary.items()]
    parts.append(_table(["level", "text", "n", "mean", "median", "p90", "max"], length_rows))
    parts.append(f"<p class='note'>Unit: {_fmt(report['lengths']['unit'])}.</p>")
    parts.append(figure("lengths"))

    div = report["diversity"]
    parts.append("<h2>Diversity</h2>")
    rows = [[f"Level-{level}", d["n_questions"], d["n_embedded"], d["n_sources"], d["within_source"]["n_pairs"],
             d["within_source"]["mean"], d["within_source"]["median"], d["mean_pairwise_cosine"], d["vendi"],
             *d["distinct"].values()] for level, d in div["levels"].items()]
    if "overall" in div:
        o = div["overall"]
        rows.append(["all", counts["dataset_rows"], o["n_embedded"], None, None, None, None,
                     o["mean_pairwise_cosine"], o["vendi"], *o["distinct"].values()])
    parts.append(_table(["level", "questions", "embedded", "sources", "same-source pairs", "same-source mean cos",
                         "same-source median cos", "mean pairwise cos", "Vendi", "distinct-1", "distinct-2",
                         "distinct-3"], rows))
    parts.append(f"<p class='note'>Embedder: {_fmt(div['embedder'])}. Vendi score with the cosine kernel "
                 "(effective number of distinct questions). Lower similarity = more diverse.</p>")
    parts.append(figure("diversity"))

    parts.append("<h2>Concept coverage</h2>")
    coverage = report["coverage"]
    if coverage:
        cov_rows = [[name, part.get("total"), part.get("used"), part.get("share"), part.get("gini")]
                    for name, part in coverage.items() if isinstance(part, dict) and "total" in part]
        parts.append(_table(["nodes", "total", "used", "share used", "Gini of use"], cov_rows))
        others = {k: v for k, v in coverage.items() if not (isinstance(v, dict) and "total" in v)}
        if others:
            parts.append(_key_values(others))
        most_used = (coverage.get("concepts") or {}).get("most_used")
        if most_used:
            parts.append(_table(["most used concept", "walks"], [[m.get("name"), m.get("walks")] for m in most_used]))
    else:
        parts.append("<p>No graph/coverage.json in this run.</p>")

    parts.append("<h2>Entropy and information (reference LM)</h2>")
    entropy = report["entropy"]
    if "skipped" in entropy:
        parts.append(f"<p>Skipped: {_fmt(entropy['skipped'])}.</p>")
    else:
        parts.append(_table(["quantity", "estimates", "value (nats/token)"], [
            ["H(anchor)", "H(S_anchor): NLL of input documents", entropy["H_anchor"]],
            ["H(generated)", "H(S_gen): NLL of question + answer", entropy["H_generated"]],
            ["ΔH", "faithfulness ΔH = H(S_anchor) − H(S_gen)", entropy["delta_H"]],
            ["H(answer)", "NLL of answers after 'Answer:'", entropy["H_answer"]],
            ["H(answer | question)", "ΔI proxy: information beyond the prompt", entropy["H_answer_given_question"]],
            ["PMI(answer; question)", "what the question explains of the answer", entropy["pmi_answer_question"]],
        ]))
        parts.append(f"<p class='note'>Reference LM: {_fmt(report['settings']['lm_model'])}; texts per set "
                     f"{_fmt(entropy['n_texts'])}, truncated to {entropy['max_tokens']} tokens; scored tokens "
                     f"{_fmt(entropy['tokens'])}.</p>")

    parts.append("<h2>Distribution divergence</h2>")
    divergence = report["divergence"]
    div_rows = []
    for name, label in (("anchor_vs_generated", "D_TV(D, D_M): documents vs generated"),
                        ("raw_vs_curated", "D_TV(D_M, D_gen): raw vs curated")):
        entry = divergence[name]
        if "skipped" in entry:
            div_rows.append([label, None, None, None, None, f"skipped: {entry['skipped']}"])
        elif name == "anchor_vs_generated":
            c, m = entry["classifier"], entry["mmd"]
            div_rows.append([label, c["tv"], f"[{c['tv_low']:.3f}, {c['tv_high']:.3f}]", c["accuracy"],
                             m["mmd2"], f"n={c['n_per_side']}/side, MMD p={_fmt(m['p_value'])}"])
        else:
            c, m = entry["removed_vs_kept"], entry["mmd_removed_vs_kept"]
            div_rows.append([label, entry["tv"], f"[{entry['tv_low']:.3f}, {entry['tv_high']:.3f}]",
                             c["accuracy"], m["mmd2"],
                             f"removed share {entry['removed_share']:.3f} × TV(removed, kept) {c['tv']:.3f}"])
    parts.append(_table(["term", "TV estimate", "95% interval", "classifier accuracy", "MMD²", "detail"], div_rows))
    parts.append("<p class='note'>TV ≈ max(0, 2·accuracy − 1) of a cross-validated logistic regression on "
                 "sentence embeddings (a lower bound); MMD² with an RBF kernel (median heuristic), unbiased, "
                 "with a permutation p-value. Documents and QA pairs differ in form, so the anchor-vs-generated "
                 "TV is large whenever the classifier can see the format.</p>")

    parts.append("<h2>Curation</h2>")
    quality = report["quality"]
    if not quality:
        parts.append("<p>No quality/ folder in this run.</p>")
    if "dedup" in quality:
        parts.append(_table(["near-duplicates removed", "by level"],
                            [[quality["dedup"]["removed"], quality["dedup"]["by_level"]]]))
    if "decontam" in quality:
        parts.append(_table(["contaminated removed", "by benchmark"],
                            [[quality["decontam"]["removed"], quality["decontam"]["by_benchmark"]]]))
    if "filter" in quality:
        filter_summary = quality["filter"]
        parts.append("<p class='note'>Document filter (quality/filter.json):</p>")
        parts.append(_key_values(filter_summary) if isinstance(filter_summary, dict) else f"<p>{_fmt(filter_summary)}</p>")

    body = "\n".join(parts)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>synthllm report</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


def write_report(run_dir: Path, *, lm: bool = True, out_dir: Path | None = None, **options) -> dict:
    """Compute the report of a run and write ``report.json`` and ``report.html``.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    lm : bool, default=True
        Include the reference-LM entropy estimates.
    out_dir : Path, optional
        Where to write the two files (default: ``run_dir``).
    **options
        Passed to :func:`build_report` (``lm_model``, ``max_embed``,
        ``max_divergence``, ``max_lm_texts``, ``max_lm_tokens``, ``seed``, ``embedder``).

    Returns
    -------
    dict
        The report.
    """
    report = build_report(Path(run_dir), lm=lm, **options)
    target = Path(out_dir) if out_dir else Path(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (target / "report.html").write_text(render_html(report), encoding="utf-8")
    return report
