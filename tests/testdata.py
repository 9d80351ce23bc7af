"""Paths of the repository and of the shared real data, for tests in every folder.

(A module with its own name: importing ``conftest`` by name picks whichever
folder's conftest was loaded first.)
"""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MATH_DOCS = SHARED_DATA / "corpus" / "openstax_math.jsonl"
NONMATH_DOCS = SHARED_DATA / "corpus" / "nonmath.jsonl"
GSM8K_TRAIN = SHARED_DATA / "gsm8k" / "train.jsonl"


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """The first ``limit`` JSON records of a file."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(records) >= limit:
                break
            records.append(json.loads(line))
    return records
