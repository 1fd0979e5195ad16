"""A real HTTP receiver for outgoing notifications (threading http.server), and the README's verify snippet."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


class Receiver:
    """Listens on 127.0.0.1; answers ``status`` (changeable) and keeps every request (headers, raw body)."""

    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[tuple[dict[str, str], bytes, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append((dict(self.headers), body, self.path))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/paydesk?from=test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def readme_verify():
    """The ``verify`` function exactly as README.md's Notifications section shows it."""
    text = README.read_text()
    section = text.split("\n## Notifications\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md (Notifications)", "exec"), namespace)  # noqa: S102
    return namespace["verify"]
