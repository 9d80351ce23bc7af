"""A small OpenAI Batch API server on loopback, for tests of batch mode's failure handling.

It speaks the real protocol the ``openai`` client uses (multipart ``POST
/v1/files``, ``POST/GET /v1/batches``, ``GET /v1/files/{id}/content``) over
real HTTP, and answers each request line with a deterministic chat completion
(``"reply to: <last user message>"``). What happens to each submitted batch is
scripted by ``outcomes``, one entry per submission in order (the last repeats):

- ``"complete"``: every line answered;
- ``("expire", k)``: the first ``k`` lines answered, then the batch expires;
- ``("fail_lines", {i: status})``: line ``i`` gets an error line with that HTTP status;
- ``"running"``: the batch stays in progress (until the outcome list is changed).

A batch ends on its second retrieve (the first shows it in progress), so polling is exercised.
"""

from __future__ import annotations

import email.parser
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(body: dict) -> dict:
    """The chat completion the fake answers ``body`` with."""
    last = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    text = f"reply to: {last}"
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(last.split()) + 5, "completion_tokens": len(text.split()),
                      "total_tokens": len(last.split()) + 5 + len(text.split())}}


class FakeBatchAPI:
    """The server; ``submissions`` lists the custom_ids of each submitted batch, in order."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.retrieves: dict[str, int] = {}
        self.submissions: list[list[str]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload, raw: bool = False):
                data = payload if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake.lock:
                    if self.path == "/v1/files":
                        return self._send(200, fake._upload(self.headers["Content-Type"], body))
                    if self.path == "/v1/batches":
                        return self._send(200, fake._create(json.loads(body)))
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_GET(self):
                with fake.lock:
                    match = re.fullmatch(r"/v1/files/([\w-]+)/content", self.path)
                    if match and match.group(1) in fake.files:
                        return self._send(200, fake.files[match.group(1)], raw=True)
                    match = re.fullmatch(r"/v1/batches/([\w-]+)", self.path)
                    if match and match.group(1) in fake.batches:
                        return self._send(200, fake._retrieve(match.group(1)))
                    if self.path.startswith("/v1/batches"):
                        return self._send(200, {"object": "list", "data": list(fake.batches.values()),
                                                "has_more": False})
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> "FakeBatchAPI":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _upload(self, content_type: str, body: bytes) -> dict:
        message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        content = next(part.get_payload(decode=True) for part in message.get_payload()
                       if part.get_param("name", header="content-disposition") == "file")
        file_id = f"file-{len(self.files)}"
        self.files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": "requests.jsonl", "purpose": "batch", "status": "processed"}

    def _create(self, request: dict) -> dict:
        lines = [json.loads(line) for line in self.files[request["input_file_id"]].decode().splitlines() if line]
        index = len(self.submissions)
        self.submissions.append([line["custom_id"] for line in lines])
        batch_id = f"batch_{index}"
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
            "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": request.get("metadata"), "_index": index}
        self.retrieves[batch_id] = 0
        return self._public(self.batches[batch_id])

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _retrieve(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        self.retrieves[batch_id] += 1
        outcome = self.outcomes[min(batch["_index"], len(self.outcomes) - 1)]
        if batch["status"] in ("validating", "in_progress"):
            if self.retrieves[batch_id] < 2 or outcome == "running":
                batch["status"] = "in_progress"
            else:
                self._finish(batch, outcome)
        return self._public(batch)

    def _finish(self, batch: dict, outcome) -> None:
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].decode().splitlines() if line]
        answered, failures, status = len(lines), {}, "completed"
        if isinstance(outcome, tuple) and outcome[0] == "expire":
            answered, status = outcome[1], "expired"
        elif isinstance(outcome, tuple) and outcome[0] == "fail_lines":
            failures = outcome[1]
        out, err = [], []
        for i, line in enumerate(lines[:answered]):
            if i in failures:
                err.append({"id": f"req_{i}", "custom_id": line["custom_id"], "error": None,
                            "response": {"status_code": failures[i], "request_id": f"r{i}",
                                         "body": {"error": {"message": f"fake failure {failures[i]}"}}}})
            else:
                out.append({"id": f"req_{i}", "custom_id": line["custom_id"], "error": None,
                            "response": {"status_code": 200, "request_id": f"r{i}", "body": completion(line["body"])}})
        for records, field in ((out, "output_file_id"), (err, "error_file_id")):
            if records:
                file_id = f"file-{len(self.files)}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in records).encode()
                batch[field] = file_id
        batch["status"] = status
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
