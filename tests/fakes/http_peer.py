#!/usr/bin/python3
"""A scriptable HTTP/1.1 peer for tests/unit/test_http.c (stdlib only).

Every request is counted under its `t=` query token, so a test can script
a sequence per token and later ask how many requests arrived:

  /ok                          200 "ok"
  /seq?t=T&codes=503,503,200   the n-th request of token T gets codes[n]
       [&ra=SECONDS|date:SECONDS]  (the last code repeats); a non-2xx answer
                               carries Retry-After (seconds, or an HTTP date
                               that many seconds ahead); with aws=throttle a
                               400 is an AWS ThrottlingException body
  /slow?ms=N                   answers 200 after N ms
  /drop?t=T&times=K            the first K requests of T: the connection is
                               closed without an answer; then 200
  /big?size=N                  200 with N bytes
  /echo                        200 with JSON {method, path, headers, body}
  /count?of=T                  how many requests token T has seen
  /stall?t=T&ms=N              reads the headers, never the body: the client's
                               writes stop once the buffers are full; closes
                               after N ms (default 3000)

Usage: http_peer.py [--port N]   prints "listening PORT" once ready.
"""
import email.utils
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

COUNTS = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is real

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body=b"", ctype="text/plain", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def serve(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/stall":
            with LOCK:
                COUNTS[q.get("t")] = COUNTS.get(q.get("t"), 0) + 1
            time.sleep(int(q.get("ms", "3000")) / 1000.0)
            self.close_connection = True
            return None
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        token = q.get("t")
        seen = 0
        if token:
            with LOCK:
                COUNTS[token] = seen = COUNTS.get(token, 0) + 1
        path = url.path
        if path == "/ok":
            return self.reply(200, b"ok")
        if path == "/seq":
            codes = [int(c) for c in q.get("codes", "200").split(",")]
            code = codes[min(seen, len(codes)) - 1]
            headers = []
            ra = q.get("ra")
            if ra and not 200 <= code < 300:
                if ra.startswith("date:"):
                    ra = email.utils.formatdate(time.time() + float(ra[5:]), usegmt=True)
                headers.append(("Retry-After", ra))
            if code == 400 and q.get("aws") == "throttle":
                return self.reply(code, b'{"__type": "ThrottlingException", "message": "Rate '
                                  b'exceeded"}', "application/x-amz-json-1.1", headers)
            return self.reply(code, ("answer %d to request %d" % (code, seen)).encode(),
                              headers=headers)
        if path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            return self.reply(200, b"slow")
        if path == "/drop":
            if seen <= int(q.get("times", "1")):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            return self.reply(200, b"after drop")
        if path == "/big":
            return self.reply(200, b"x" * int(q.get("size", "0")))
        if path == "/echo":
            doc = {"method": self.command, "path": self.path,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body.decode("utf-8", "replace")}
            return self.reply(200, json.dumps(doc).encode(), "application/json")
        if path == "/count":
            with LOCK:
                return self.reply(200, str(COUNTS.get(q.get("of"), 0)).encode())
        return self.reply(404, b"no such path")

    do_GET = do_POST = do_PUT = do_DELETE = serve


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # clients hang up on purpose (timeouts, cancels)


def main():
    port = 0
    if "--port" in sys.argv:
        port = int(sys.argv[sys.argv.index("--port") + 1])
    srv = Server(("127.0.0.1", port), Handler)
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
