"""A chat-completions server on loopback for tests of HTTP clients (the teachers, the judge reward): replies
come from a plan, every request is recorded."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatStub:
    """A loopback chat-completions server: ``plan(attempt, body)`` -> (status, reply text); records every request."""

    def __init__(self, plan, delay_s: float = 0.0, hold: bool = False, gather: int = 0):
        # hold: a request is answered only after close() (a client timeout always fires first, however loaded
        # the machine); gather: a request waits until `gather` requests were in flight at once (at most 30 s),
        # so a concurrency limit is certainly reached rather than reached if the threads happen to overlap.
        self.plan, self.delay_s, self.gather = plan, delay_s, gather
        self.attempts, self.bodies, self.headers = 0, [], []
        self.active = self.max_active = 0
        self.lock = threading.Condition()
        self.release = threading.Event()
        self.hold = hold
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.attempts += 1
                    attempt = stub.attempts
                    stub.bodies.append(body)
                    stub.headers.append(dict(self.headers))
                    stub.active += 1
                    stub.max_active = max(stub.max_active, stub.active)
                    stub.lock.notify_all()
                    stub.lock.wait_for(lambda: stub.max_active >= stub.gather, timeout=30)
                if stub.hold:
                    stub.release.wait(30)
                time.sleep(stub.delay_s)
                with stub.lock:
                    stub.active -= 1
                status, text = stub.plan(attempt, body)
                reply = ({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                       "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
                         if status == 200 else {"error": {"message": text, "type": "x", "code": None}})
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
