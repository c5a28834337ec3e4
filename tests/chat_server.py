"""A real chat-completions HTTP server on 127.0.0.1 for the generation tests (OpenAI's wire
protocol, as vLLM, llama.cpp's server and TGI speak it); how it answers is the test's choice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def echo(text: str) -> str:
    return f"echo: {text}"


class ChatServer:
    """A chat-completions server: answers ``answer(last user message)`` (default "echo: …"); a
    message containing "flaky" fails with 429, then 500, then succeeds; "slow" sleeps 2 s;
    "broken" always fails."""

    def __init__(self, answer: Callable[[str], str] = echo):
        self.requests: list[str] = []
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["messages"][-1]["content"]
                with server.lock:
                    server.requests.append(text)
                    n = server.attempts[text] = server.attempts.get(text, 0) + 1
                if "slow" in text:
                    time.sleep(2)
                if ("flaky" in text and n <= 2) or "broken" in text:
                    status = 429 if n == 1 and "flaky" in text else 500
                    return self._reply(status, {"error": {"message": "try again", "type": "server_error"}})
                self._reply(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": answer(text)}}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("retry-after-ms", "10")  # the client's backoff: short, as the server asks
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
