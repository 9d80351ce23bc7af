"""Benchmark of the corpus reader: strict per-line UTF-8 decoding against the old text-mode reader.

``synthllm.io.read_documents`` now reads JSONL as bytes and decodes every line
strictly (so invalid UTF-8 is a counted, reported skip instead of a silent
U+FFFD). The baseline, measured in the same run, is the reader it replaced:
``open(path, "rt", encoding="utf-8", errors="replace")`` and ``json.loads``
per line, with the same id/text handling. Both read the same file, plain and
gzipped; the figure is the best of ``--repeat`` runs (CPU seconds of this
process) and the ratio new / baseline.

Input: the OpenStax corpus (../shared/data/corpus/openstax_math.jsonl, 3.5 MB)
written ``--copies`` times into one temporary file, with fresh ids.

Run: ``nice -n 5 python bench/bench_io.py`` (needs ../shared/data).
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

from synthllm.io import ReadStats, content_id, read_documents

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "corpus" / "openstax_math.jsonl"


def baseline_reader(path: Path) -> int:
    """The reader before the change: text mode with errors='replace' (same fields, same checks)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    count = 0
    seen: set[str] = set()
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                continue
            doc_id = record.get("id")
            doc_id = str(doc_id) if doc_id not in (None, "") else content_id(record["text"])
            if doc_id in seen:
                continue
            seen.add(doc_id)
            count += 1
    return count


def new_reader(path: Path) -> int:
    return sum(1 for _ in read_documents(path, stats=ReadStats()))


def best_time(function, path: Path, repeat: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.process_time()
        count = function(path)
        best = min(best, time.process_time() - start)
    return best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "corpus.jsonl"
        with open(plain, "w", encoding="utf-8") as handle:
            for copy in range(args.copies):
                for index, row in enumerate(rows):
                    handle.write(json.dumps({**row, "id": f"{copy}-{index}"}, ensure_ascii=False) + "\n")
        packed = Path(folder) / "corpus.jsonl.gz"
        packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
        size = plain.stat().st_size / 1e6
        print(f"corpus: {args.copies} copies of {CORPUS.name}: {size:.1f} MB, "
              f"{len(rows) * args.copies} documents; best of {args.repeat}, CPU seconds")
        print(f"{'file':<16} {'baseline s':>10} {'new s':>8} {'new/baseline':>13} {'MB/s new':>9}")
        for path in (plain, packed):
            base, base_count = best_time(baseline_reader, path, args.repeat)
            new, new_count = best_time(new_reader, path, args.repeat)
            assert base_count == new_count, (base_count, new_count)
            print(f"{path.name:<16} {base:>10.3f} {new:>8.3f} {new / base:>13.2f} {size / new:>9.1f}")


if __name__ == "__main__":
    main()
