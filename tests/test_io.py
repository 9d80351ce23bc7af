import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthllm.io import InputError, ReadStats, content_id, read_documents, truncate_text


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_malformed_lines_are_reported_with_line_numbers_and_counted(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [
        json.dumps({"id": "a", "text": "first document with enough text"}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"id": "b", "body": "wrong field"}),
        json.dumps({"id": "c", "text": "third document with enough text"}),
    ])
    problems = []
    stats = ReadStats()
    docs = list(read_documents(path, stats=stats, on_problem=problems.append))
    assert [d["id"] for d in docs] == ["a", "c"]
    assert stats.read == 5 and stats.yielded == 2 and sum(stats.skipped.values()) == 3
    assert problems[0].startswith(f"{path}:2: not valid JSON")
    assert problems[1] == f"{path}:3: not a JSON object"
    assert problems[2] == f"{path}:4: no string field 'text'"


def test_ids_come_from_content_when_absent_and_duplicates_are_skipped(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [
        json.dumps({"body": "same text twice, long enough"}),
        json.dumps({"body": "same text twice, long enough"}),
    ])
    stats = ReadStats()
    docs = list(read_documents(path, text_field="body", id_field="id", stats=stats))
    assert [d["id"] for d in docs] == [content_id("same text twice, long enough")]
    assert stats.skipped == {"duplicate_id": 1}


def test_gzip_parquet_and_text_folder_inputs(tmp_path):
    rows = [{"doc": f"d{i}", "content": f"document number {i} " * 5, "book": "x"} for i in range(5)]
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha text " * 10)
    (folder / "sub" / "b.md").write_text("# beta\n" + "beta text " * 10)
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    for source in (tmp_path / "c.jsonl.gz", tmp_path / "c.parquet"):
        docs = list(read_documents(source, text_field="content", id_field="doc"))
        assert [d["id"] for d in docs] == [f"d{i}" for i in range(5)]
        assert docs[0]["meta"] == {"book": "x"}
    docs = list(read_documents(folder))
    assert [d["id"] for d in docs] == ["a.txt", "sub/b.md"]


def test_limit_and_min_chars(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [json.dumps({"text": "short"})] +
                       [json.dumps({"text": f"long enough document {i} " * 4}) for i in range(10)])
    stats = ReadStats()
    docs = list(read_documents(path, limit=3, min_chars=20, stats=stats))
    assert len(docs) == 3 and stats.skipped == {"too_short": 1}


def test_reading_is_streaming(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [json.dumps({"text": f"document {i} " * 5}) for i in range(1000)] + ["{bad"])
    reader = read_documents(path)
    first = next(reader)  # a generator: the bad last line has not been read yet
    assert first["text"].startswith("document 0")


def test_missing_input_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="input not found"):
        list(read_documents(tmp_path / "nope.jsonl"))
    (tmp_path / "corpus.csv").write_text("a,b")
    with pytest.raises(InputError, match="cannot tell the format"):
        list(read_documents(tmp_path / "corpus.csv"))


def test_truncate_prefers_paragraph_then_sentence_ends():
    text = "A" * 80 + "\n\n" + "B" * 50
    assert truncate_text(text, 100) == "A" * 80
    text = "First sentence here. " * 10
    cut = truncate_text(text, 100)
    assert cut.endswith(".") and len(cut) <= 100
    assert truncate_text("short", 100) == "short"
