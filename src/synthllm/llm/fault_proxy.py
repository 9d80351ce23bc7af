"""A fault-injecting HTTP proxy for OpenAI-compatible servers.

Real servers rarely fail on demand, so the behaviour of a client under rate
limits, server errors, hangs and broken bodies is checked by putting this
proxy in front of a real server (``upstream``) and telling it which request
numbers to break. Without an upstream it answers every request that is not
faulted with a canned chat completion at once, which makes it an instantly
answering server for overhead benchmarks.

Faults (``kind`` or ``kind:seconds``):

``pass``
    forward to the upstream (or answer with the canned completion).
``429`` / ``429:S``
    HTTP 429 with an OpenAI-style error body, and ``Retry-After: S`` if given.
``500``, ``502``, ``503``, ``503:S``, ``400``, ``401``, ``404``
    that HTTP status with an OpenAI-style error body (``Retry-After`` as above).
``hang``
    read the request and never answer; the connection closes when the client gives up.
``truncate``
    send the real headers (with the full ``Content-Length``) but half the body, then close.
``garbage``
    HTTP 200, ``Content-Type: application/json``, a body that is not JSON.
``html``
    HTTP 200 with an HTML page instead of JSON.
``leak_auth``
    HTTP 400 whose error message repeats the request's ``Authorization`` header,
    as a badly behaved server might; a client must not pass the key on.

Requests are numbered from 1 in arrival order. Command line::

    python -m synthllm.llm.fault_proxy --upstream http://127.0.0.1:8000 --port 9000 \\
        --fault 1=429:2 --fault 2=500 --fault 3=hang --default pass
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}
_STATUS_FAULTS = {"400", "401", "404", "429", "500", "502", "503", "504"}
_OTHER_FAULTS = {"pass", "hang", "truncate", "garbage", "html", "leak_auth"}


@dataclass(frozen=True)
class Fault:
    """One fault: its kind and, for status faults, an optional ``Retry-After`` in seconds."""

    kind: str
    retry_after: float | None = None

    @classmethod
    def parse(cls, spec: str) -> "Fault":
        """Read ``"kind"`` or ``"kind:seconds"`` (e.g. ``"429:2"``).

        Parameters
        ----------
        spec : the fault text.

        Returns
        -------
        Fault
        """
        kind, _, seconds = spec.strip().partition(":")
        if kind not in _STATUS_FAULTS | _OTHER_FAULTS:
            raise ValueError(f"unknown fault {spec!r}; expected one of {sorted(_STATUS_FAULTS | _OTHER_FAULTS)}")
        if seconds and kind not in _STATUS_FAULTS:
            raise ValueError(f"fault {kind!r} takes no ':seconds' (got {spec!r})")
        return cls(kind, float(seconds) if seconds else None)


@dataclass(frozen=True)
class ProxiedRequest:
    """What the proxy saw: request number, arrival time (``time.monotonic``), method, path, fault, body."""

    number: int
    arrived: float
    method: str
    path: str
    fault: str
    body: bytes


Schedule = Mapping[int, str] | Callable[[int], str]


class FaultProxy:
    """An HTTP/1.1 proxy that breaks chosen requests.

    Parameters
    ----------
    upstream : base URL of the real server (``http://host:port``); ``None``
        answers passed requests with a canned chat completion.
    schedule : ``{request_number: fault}`` or a function from request number
        to fault text; numbers not in the mapping get ``default``.
    default : the fault for requests the schedule does not name.
    host, port : where to listen; port 0 picks a free port.
    canned_text : the reply text of the canned completion.
    responder : without an upstream, a function from the request's chat messages to the reply text
        (e.g. the test suite's scripted model), so the proxy is a whole scripted OpenAI-compatible server.
    latency : seconds each passed request waits before its answer (a slow server), or a function
        from the request number to those seconds (stragglers).

    Use ``start()``/``stop()`` (or a ``with`` block) to run it in a background
    thread; ``url`` is then the base URL to give an OpenAI client, and
    ``requests`` lists every request seen.
    """

    def __init__(self, upstream: str | None = None, schedule: Schedule | None = None, default: str = "pass",
                 host: str = "127.0.0.1", port: int = 0, canned_text: str = "OK",
                 responder: Callable[[list[dict]], str] | None = None,
                 latency: float | Callable[[int], float] = 0.0):
        self.upstream = upstream.rstrip("/") if upstream else None
        self.responder = responder
        self.latency = latency
        self.in_flight = 0  # passed requests being answered now
        self.max_in_flight = 0
        self.host = host
        self.port = port
        self.canned_text = canned_text
        self.requests: list[ProxiedRequest] = []
        self._count = 0
        self.set_schedule(schedule or {}, default)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._client = None

    def set_schedule(self, schedule: Schedule, default: str = "pass") -> None:
        """Replace the fault schedule and restart request numbering at 1."""
        if not callable(schedule):
            parsed = {int(number): Fault.parse(spec) for number, spec in schedule.items()}
        else:
            parsed = schedule
        self._schedule = parsed
        self._default = Fault.parse(default)
        self._count = 0
        self.requests = []

    def fault_for(self, number: int) -> Fault:
        """The fault that request ``number`` gets."""
        if callable(self._schedule):
            return Fault.parse(self._schedule(number))
        return self._schedule.get(number, self._default)

    @property
    def url(self) -> str:
        """Base URL for an OpenAI client (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    # ----- running -----

    async def serve(self) -> None:
        """Start listening on the current event loop (``port`` is updated when it was 0)."""
        if self.upstream:
            import httpx2

            self._client = httpx2.AsyncClient(base_url=self.upstream, timeout=None,
                                              limits=httpx2.Limits(max_connections=None, max_keepalive_connections=256))
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> "FaultProxy":
        """Run the proxy in a daemon thread; returns once it listens."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("fault proxy did not start within 30 s")
        return self

    def stop(self) -> None:
        """Stop listening, close the upstream client and end the thread."""
        if self._loop is None:
            return

        async def shutdown() -> None:
            self._server.close()
            if self._client is not None:
                await self._client.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- one connection -----

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one connection carries many requests
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                if "content-length" not in headers and headers.get("transfer-encoding"):
                    await self._reply(writer, 411, {"error": {"message": "send a Content-Length"}})
                    return
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self._count += 1
                fault = self.fault_for(self._count)
                self.requests.append(ProxiedRequest(self._count, time.monotonic(), method, path, fault.kind, body))
                keep_open = await self._answer(fault, method, path, headers, body, reader, writer)
                if not keep_open or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _answer(self, fault: Fault, method: str, path: str, headers: dict, body: bytes,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Write the (possibly broken) response; False when the connection must close."""
        kind = fault.kind
        if kind in _STATUS_FAULTS:
            extra = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            error = {"error": {"message": f"injected HTTP {kind}", "type": "injected", "code": int(kind)}}
            await self._reply(writer, int(kind), error, extra)
            return True
        if kind == "leak_auth":
            error = {"error": {"message": f"bad request; you sent {headers.get('authorization', '')}"}}
            await self._reply(writer, 400, error)
            return True
        if kind == "hang":
            await reader.read()  # returns only when the client closes the connection
            return False
        if kind == "garbage":
            await self._reply_raw(writer, 200, b'{"id": "cmpl-broken", "choices": [', "application/json")
            return True
        if kind == "html":
            await self._reply_raw(writer, 200, b"<html><body>502 from a load balancer</body></html>", "text/html")
            return True
        status, content_type, payload = await self._pass(method, path, headers, body)
        if kind == "truncate":
            writer.write(self._head(status, content_type, len(payload)) + payload[: len(payload) // 2])
            await writer.drain()
            return False
        await self._reply_raw(writer, status, payload, content_type)
        return True

    async def _pass(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        """Forward to the upstream, or build the canned (or scripted) completion, after ``latency``."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.latency(self._count) if callable(self.latency) else self.latency
            if delay:
                await asyncio.sleep(delay)
            return await self._forward(method, path, headers, body)
        finally:
            self.in_flight -= 1

    async def _forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        if self._client is not None:
            forward = {k: v for k, v in headers.items() if k in ("content-type", "authorization", "accept")}
            response = await self._client.request(method, path, content=body, headers=forward)
            return response.status_code, response.headers.get("content-type", "application/json"), response.content
        request = json.loads(body) if body else {}
        prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
        text = self.responder(request.get("messages", [])) if self.responder else self.canned_text
        completion = {
            "id": f"cmpl-{self._count}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "canned"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text.split()),
                      "total_tokens": prompt_chars // 4 + 1 + len(text.split())},
        }
        return 200, "application/json", json.dumps(completion).encode()

    @staticmethod
    def _head(status: int, content_type: str, length: int, extra: Mapping[str, str] | None = None) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-type: {content_type}",
                 f"content-length: {length}"]
        lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _reply_raw(self, writer, status: int, payload: bytes, content_type: str,
                         extra: Mapping[str, str] | None = None) -> None:
        writer.write(self._head(status, content_type, len(payload), extra) + payload)
        await writer.drain()

    async def _reply(self, writer, status: int, data: dict, extra: Mapping[str, str] | None = None) -> None:
        await self._reply_raw(writer, status, json.dumps(data).encode(), "application/json", extra)


def main(argv: list[str] | None = None) -> None:
    """Command line: run a fault proxy (or an instant canned server) until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m synthllm.llm.fault_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", help="real server base URL, e.g. http://127.0.0.1:8000 (omit: canned replies)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--fault", action="append", default=[], metavar="N=FAULT",
                        help="fault for request number N, e.g. 3=429:2 (repeatable)")
    parser.add_argument("--default", default="pass", help="fault for all other requests (default: pass)")
    parser.add_argument("--responder", metavar="MODULE:FUNCTION",
                        help="without --upstream: reply with FUNCTION(messages) instead of a canned text")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each passed request is answered")
    args = parser.parse_args(argv)
    responder = None
    if args.responder:
        import importlib

        module, _, function = args.responder.partition(":")
        responder = getattr(importlib.import_module(module), function)
    schedule = {}
    for item in args.fault:
        number, sep, spec = item.partition("=")
        if not sep or not number.strip().isdigit():
            parser.error(f"--fault {item!r}: expected N=FAULT, e.g. 3=429:2")
        schedule[int(number)] = spec
    try:
        proxy = FaultProxy(args.upstream, schedule, args.default, args.host, args.port, responder=responder,
                           latency=args.latency)
    except ValueError as exc:
        parser.error(str(exc))

    async def run() -> None:
        await proxy.serve()
        print(f"fault proxy listening on {proxy.url} -> {proxy.upstream or 'canned replies'}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
