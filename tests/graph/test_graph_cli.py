"""`synthllm graph build|stats|walk` smoke tests through typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from synthllm.graph import ConceptGraph
from synthllm.graph.cli import app

runner = CliRunner()


def write_records(path, documents):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for doc_id, topics in documents:
            handle.write(json.dumps({"doc_id": doc_id, "topics": [
                {"topic": topic, "key_concepts": concepts} for topic, concepts in topics]}) + "\n")


def test_build_stats_walk_from_a_run_folder(tmp_path, documents):
    run = tmp_path / "run"
    write_records(run / "stages" / "concepts" / "part-00000.jsonl", documents[:2])
    write_records(run / "stages" / "concepts" / "part-00001.jsonl", documents[2:])
    result = runner.invoke(app, ["build", str(run), "--out", str(tmp_path / "graph")])
    assert result.exit_code == 0, result.output
    assert "4 documents, 3 topics" in result.output
    graph = ConceptGraph.load(tmp_path / "graph")
    assert graph.doc_ids == ["d0", "d1", "d2", "d3"]

    result = runner.invoke(app, ["stats", str(tmp_path / "graph")])
    assert result.exit_code == 0, result.output
    assert "topics 3" in result.output and "components       1" in result.output
    result = runner.invoke(app, ["stats", str(tmp_path / "graph"), "--json", "--top", "1"])
    assert json.loads(result.output)["top_topics"] == [{"name": "algebra", "documents": 3, "degree": 15}]

    result = runner.invoke(app, ["walk", str(tmp_path / "graph"), "--seed", "3", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    walks = [json.loads(line) for line in result.output.splitlines()]
    assert len(walks) == 6 and set(walks[0]) == {"walk_index", "epoch", "topics", "concepts"}
    out = tmp_path / "walks.jsonl"
    result = runner.invoke(app, ["walk", str(tmp_path / "graph"), "--seed", "3", "--epochs", "2",
                                 "--max-walks", "4", "--out", str(out), "--coverage"])
    assert result.exit_code == 0, result.output
    capped = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(capped) == 4 and all(walk in walks for walk in capped)


def test_build_with_workers_equals_single_process(tmp_path, documents):
    for index, document in enumerate(documents):
        write_records(tmp_path / "in" / f"part-{index}.jsonl", [document])
    for workers in ("1", "2"):
        result = runner.invoke(app, ["build", str(tmp_path / "in"), "-o", str(tmp_path / workers),
                                     "--workers", workers])
        assert result.exit_code == 0, result.output
    one, two = ConceptGraph.load(tmp_path / "1"), ConceptGraph.load(tmp_path / "2")
    assert one.concept_names == two.concept_names and (one.counts != two.counts).nnz == 0


def test_bad_input_gives_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc_id": "a", "topics": [{"topic": "x", "key_concepts": ["y"]}]}\n{"doc_id": "b"}\n')
    result = runner.invoke(app, ["build", str(bad), "--out", str(tmp_path / "g")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {bad}:2: no 'topics' field"
    result = runner.invoke(app, ["build", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "g")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    result = runner.invoke(app, ["stats", str(tmp_path)])
    assert result.exit_code == 2 and "not a graph folder" in result.output


def test_build_from_a_run_folder_skips_shard_rejects(tmp_path):
    from synthllm.graph import concept_record_files

    stage = tmp_path / "run" / "stages" / "concepts"
    stage.mkdir(parents=True)
    (stage / "part-00000.jsonl").write_text('{"doc_id": "d", "topics": [{"topic": "t", "concepts": ["a", "b"]}]}\n')
    (stage / "part-00000.rejects.jsonl").write_text('{"id": "e", "kind": "unparsable"}\n')
    assert concept_record_files([tmp_path / "run"]) == [stage / "part-00000.jsonl"]
    assert concept_record_files([stage]) == [stage / "part-00000.jsonl"]


def test_build_a_graph_without_any_node_pair(tmp_path):
    """One topic without concepts: no edges at all (this crashed with an IndexError in the pair count)."""
    write_records(tmp_path / "one.jsonl", [("a", [("lonely topic", [])])])
    result = runner.invoke(app, ["build", str(tmp_path / "one.jsonl"), "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    graph = ConceptGraph.load(tmp_path / "g")
    assert graph.n_topics == 1 and graph.n_concepts == 0 and sum(graph.edge_counts().values()) == 0
