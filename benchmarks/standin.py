"""An OpenAI-compatible stand-in model on loopback: the mutator's edits, after a fixed latency, over real HTTP.

    python benchmarks/standin.py --port 0 --latency 1.0     # prints "ready PORT", serves until killed
    python benchmarks/standin.py --port 0 --garbage         # a useless model: answers that are no edit at all

It runs as its own process, so its CPU is not counted as the framework's:
what a benchmark measures through it is the real client path (litellm and
openai, HTTP on loopback, parsing, retries) without a real model's cost.
Every answer is a SEARCH/REPLACE edit of the prompt's program made by the
built-in mutator, so the candidates are real programs that evaluate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.llm.mutator import MutatorTransport

GARBAGE = "Here is an improved version of the program, much faster and more accurate than before."


def _handler(latency: float, *, garbage: bool = False) -> type[BaseHTTPRequestHandler]:
    mutator = MutatorTransport()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections, as with a real provider

        def do_POST(self) -> None:
            started = time.monotonic()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            count[0] += 1
            answer = asyncio.run(mutator.call(body["messages"], temperature=0.0, seed=count[0], max_tokens=4096, timeout_s=60))
            if garbage:
                answer = dataclasses.replace(answer, text=GARBAGE, completion_tokens=len(GARBAGE) // 4)
            time.sleep(max(0.0, latency - (time.monotonic() - started)))
            payload = json.dumps({
                "id": f"chatcmpl-{count[0]}", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "m"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                          "total_tokens": answer.prompt_tokens + answer.completion_tokens},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def running(latency: float = 0.0, *, garbage: bool = False, name: str = "standin") -> Iterator[dict[str, Any]]:
    """A stand-in in a process of its own (outside every measured run's tree); yields its model settings."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--latency", str(latency), *(["--garbage"] if garbage else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        yield {"name": f"openai/{name}", "api_base": f"http://127.0.0.1:{port}/v1", "timeout_s": 60, "max_in_flight": 64,
               "input_usd_per_mtok": 0.0, "output_usd_per_mtok": 0.0}
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer takes")
    parser.add_argument("--garbage", action="store_true", help="answer with text that is no edit (a useless model)")
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(args.latency, garbage=args.garbage))
    httpd.daemon_threads = True
    httpd.request_queue_size = 256
    print(f"ready {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
