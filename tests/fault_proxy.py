"""A fault-injecting HTTP proxy on loopback, in front of the loopback S3 server.

Point a job's ``AWS_ENDPOINT_URL`` at it, and a share of its requests fail the way S3 fails under load:
``500 InternalError``, ``503 SlowDown``, or a connection dropped before or after the server acted on the
request (so the client cannot tell whether a write happened). The rest pass through unchanged. A share of
requests can also be delayed (a slow or distant store), and every request for one key answered ``503
SlowDown`` (a hot key the store never stops throttling). Seeded: the same run of requests meets the same faults.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("500", "503", "drop-before", "drop-after")
_ERROR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
          "<RequestId>fault-proxy</RequestId></Error>")


@contextmanager
def fault_proxy(upstream: str, rate: float, seed: int = 0, kinds: tuple[str, ...] = FAULTS, delay_rate: float = 0,
                delay_s: float = 0, throttled: str | None = None, log: list | None = None
                ) -> Iterator[tuple[str, Counter]]:
    """Serve on 127.0.0.1; yields (the proxy's URL, a Counter of what it did: pass, 500, 503, drop-...,
    delayed, throttled). ``rate``: the share of requests that meet a fault, drawn from ``kinds`` (repeat one to
    weigh it); ``delay_rate``: the share delayed by ``delay_s`` first; ``throttled``: a URL path whose every
    request is answered 503 SlowDown. ``log``: a list that gets (method, path, the server's status) for every
    request the server acted on (what the store really did, whether or not the client heard of it)."""
    target = urlsplit(upstream)
    rng, lock, counts = random.Random(seed), threading.Lock(), Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with lock:
                fault = rng.choice(kinds) if rng.random() < rate else "pass"
                if throttled is not None and self.path.split("?")[0] == throttled:
                    fault = "throttled"
                delay = delay_s if rng.random() < delay_rate else 0
                counts[fault] += 1
                counts["delayed"] += bool(delay)
            time.sleep(delay)
            if fault == "drop-before":
                self.close_connection = True
                self.connection.close()
                return
            if fault in ("500", "503", "throttled"):
                code, message = ("InternalError", "injected") if fault == "500" else ("SlowDown", "Reduce rate")
                data = _ERROR.format(code=code, message=message).encode()
                self.send_response(500 if fault == "500" else 503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has no body (the client would read it as the next)
                    self.wfile.write(data)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            if log is not None:
                log.append((self.command, self.path.split("?")[0], response.status))
            if fault == "drop-after":  # the server acted; the client never hears
                self.close_connection = True
                self.connection.close()
                return
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                    self.send_header(key, value)
            # a HEAD answer has no body but the object's length
            self.send_header("Content-Length", response.getheader("Content-Length", "0") if self.command == "HEAD"
                             else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()
