#!/usr/bin/python3
"""A TCP proxy that can hold a request part-way (stdlib only), to put a
request "in flight" for as long as a test wants: e.g. the first N bytes of
a RunJobFlow or a POST /batches reach the stand-in, the rest stays with the
client while a leader fails over, then the test lets it through (or drops
it) and sees, in the stand-in's /_effects, what took effect.

  hold_proxy.py --target HOST:PORT [--port 0] [--control-port 0]
                [--listen 127.0.0.1] [--rcvbuf 4096]

prints "listening PORT" (the proxy), then "control PORT" (the control API,
HTTP on 127.0.0.1). Every accepted connection is piped to the target, both
ways, unmodified; the client's EOF reaches the target as a half-close
(shutdown SHUT_WR) and the target's EOF reaches the client the same way.
Every client socket gets SO_RCVBUF --rcvbuf (also set on the listening
socket, so the window is small from the handshake on): when the proxy stops
reading, what the client writes piles up in the client's own buffers.

Control API (JSON bodies and answers; 400 {"error"} for a bad body):
  POST /hold {"match": "SUBSTRING", "after_bytes": N (default 0),
              "count": C (default 1, -1 = until DELETE /hold)}
      arms a hold for the next C new connections whose start contains
      SUBSTRING (e.g. "ElasticMapReduce.RunJobFlow", "POST /batches",
      "POST /api/v3/jobs", or a run key in the body). A connection's start is
      looked at without consuming it (MSG_PEEK: at most what the small
      receive buffer holds) once its first bytes arrive, until the match is
      found, or its first request is complete (headers and Content-Length
      bytes of body), or it stops growing for 0.5 s; only that first request
      is matched (clients open a fresh connection for a request that must
      not run twice). A matching connection reads and forwards exactly its
      first N bytes to the target, then stops reading from the client
      (client->target frozen; target->client still piped): the rest stays in
      the proxy's receive buffer and, beyond it, in the client's send
      buffer. Connections accepted before the rule was armed are matched
      too, if their first bytes arrive after it. Answers {"rule": RULE_ID}.
  DELETE /hold   disarms every rule not yet used up (held connections stay)
  GET  /state    {"held": [{"id", "match", "forwarded" (bytes sent to the
                 target so far: N once the client has sent that much),
                 "since" (unix seconds it matched)}],
                 "connections": accepted so far, "open": open now,
                 "released": holds released so far, "armed": [{"rule",
                 "match", "after_bytes", "count"}], "delay_ms": D}
  POST /release {"id": ID | "all", "mode": "forward" (default) | "drop"}
      forward: resume reading and piping everything: what is buffered, what
      the client sends later, and its EOF (as a half-close). A client that
      died while held still gets what it had written delivered (its kernel
      keeps sending an orphaned socket's buffer: 70 s held was fine here);
      only what it never wrote is missing, and the stand-in then discards
      the truncated request. The stand-in sees the client's hangup only as
      that half-close, so whether an effect is logged with client_gone
      depends on it arriving before the answer (an effect delay makes it
      so). drop: close both sides, forwarding nothing more (the target sees
      EOF mid-request; the client, EOF or a reset). Answers {"released":
      [ids]}; 404 when no held connection has that id.
  POST /delay {"ms": D}   every client->target chunk is forwarded D ms after
      it was read (a transit delay; 0 turns it off)

SIGTERM (or SIGINT) closes everything and exits 0.
"""
import argparse
import json
import queue
import re
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GATHER_MAX = 64 * 1024
GATHER_WAIT_S = 0.5
EOF = object()
STOP = object()


def _shut(sock, how=socket.SHUT_RDWR):
    try:
        sock.shutdown(how)
    except OSError:
        pass


class Rule:
    def __init__(self, rid, match, after_bytes, count):
        self.id, self.match, self.after_bytes, self.count = rid, match, after_bytes, count
        self.needle = match.encode("utf-8")


class Conn:
    def __init__(self, proxy, cid, client, target):
        self.proxy, self.id, self.client, self.target = proxy, cid, client, target
        self.q = queue.Queue()          # (due time, bytes | EOF) for the target
        self.forwarded = 0              # bytes sent to the target
        self.rule = None                # the Rule that holds it
        self.since = None
        self.release = None             # None (held) | "forward" | "drop"
        self.done = 0                   # directions finished (2: close)
        self.closed = False

    # ---------------------------------------------------------- plumbing
    def push(self, item, at):
        self.q.put((at + self.proxy.delay_s(), item))

    def finish(self):
        with self.proxy.lock:
            self.done += 1
            last = self.done == 2
        if last:
            self.close()

    def close(self):
        with self.proxy.lock:
            if self.closed:
                return
            self.closed = True
            self.proxy.conns.pop(self.id, None)
        for s in (self.client, self.target):
            _shut(s)
            s.close()
        self.q.put((0, STOP))

    def recv(self, n=65536):
        """b"" at EOF, a reset or a closed socket."""
        try:
            return self.client.recv(n)
        except OSError:
            return b""

    # ---------------------------------------------------------- threads
    def sender(self):
        """client->target: sends what the reader queued, when it is due."""
        while True:
            due, item = self.q.get()
            if item is STOP:
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if item is EOF:
                _shut(self.target, socket.SHUT_WR)
                return self.finish()
            try:
                self.target.sendall(item)
            except OSError:
                _shut(self.client)
                _shut(self.target)
                return self.finish()
            with self.proxy.lock:
                self.forwarded += len(item)

    def back(self):
        """target->client, always. When the client cannot take it any more,
        the target's answer is read and thrown away (a held request may
        still be forwarded for a client that is gone)."""
        client_ok = True
        while True:
            try:
                data = self.target.recv(65536)
            except OSError:
                data = b""
            if not data:
                _shut(self.client, socket.SHUT_WR)
                return self.finish()
            if client_ok:
                try:
                    self.client.sendall(data)
                except OSError:
                    client_ok = False

    def reader(self):
        """client->target: decides on a hold, holds, pipes."""
        rule = self.gather()
        if rule is None:
            return self.pipe()
        # held: forward the first after_bytes, then stop reading (what the
        # client sends next stays in the kernel's buffers, ours and then its)
        with self.proxy.lock:
            self.since = time.time()
            self.rule = rule
            self.proxy.held[self.id] = self
        n, got, eof = rule.after_bytes, 0, False
        while got < n:
            more = self.recv(n - got)
            if not more:
                eof = True
                break
            self.push(more, time.monotonic())
            got += len(more)
        with self.proxy.lock:
            while self.release is None and not self.proxy.stopping:
                self.proxy.cond.wait()
            mode = self.release
        if mode != "forward":   # drop, or the proxy is stopping
            return self.close()
        if eof:
            return self.push(EOF, time.monotonic())
        return self.pipe()

    def gather(self):
        """Looks at the start of the connection without consuming it
        (MSG_PEEK) until a rule matches (the claimed rule), or the first
        request is complete, or GATHER_MAX bytes, or it stops growing for
        GATHER_WAIT_S (None)."""
        try:
            poll = select.poll()
            poll.register(self.client, select.POLLIN | select.POLLERR | select.POLLHUP)
            poll.poll()   # the first bytes (or EOF)
        except (OSError, ValueError):
            return None
        seen, deadline = -1, None
        while True:
            if not self.proxy.armed():
                return None
            try:
                buf = self.client.recv(GATHER_MAX, socket.MSG_PEEK)
            except OSError:
                return None
            if not buf:
                return None   # EOF before any byte
            rule = self.proxy.claim(buf)
            if rule is not None:
                return rule
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                m = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", buf[:end], re.I)
                if len(buf) >= end + 4 + (int(m.group(1)) if m else 0):
                    return None   # the first request, complete
            if len(buf) >= GATHER_MAX:
                return None
            now = time.monotonic()
            if len(buf) != seen:
                seen, deadline = len(buf), now + GATHER_WAIT_S
            elif now >= deadline:
                return None
            time.sleep(0.005)   # a peek does not wait for more

    def pipe(self):
        while True:
            data = self.recv()
            at = time.monotonic()
            if not data:
                return self.push(EOF, at)
            self.push(data, at)

    def run(self):
        threading.Thread(target=self.sender, daemon=True).start()
        threading.Thread(target=self.back, daemon=True).start()
        self.reader()


class Proxy:
    def __init__(self, target, rcvbuf):
        self.target, self.rcvbuf = target, rcvbuf
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.rules = []
        self.next_rule = 0
        self.conns = {}
        self.held = {}          # id -> Conn, until released
        self.accepted = 0
        self.released = 0
        self.delay_ms = 0
        self.stopping = False

    def delay_s(self):
        return self.delay_ms / 1000.0

    def armed(self):
        with self.lock:
            return any(r.count != 0 for r in self.rules)

    def claim(self, buf):
        with self.lock:
            for r in self.rules:
                if r.count != 0 and r.needle in buf:
                    if r.count > 0:
                        r.count -= 1
                    return Rule(r.id, r.match, r.after_bytes, 1)
        return None

    def accept(self, client):
        try:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = socket.create_connection(self.target, timeout=10)
            target.settimeout(None)
            target.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            _shut(client)
            client.close()
            return
        with self.lock:
            self.accepted += 1
            c = Conn(self, self.accepted, client, target)
            self.conns[c.id] = c
        c.run()

    # ---------------------------------------------------------- control
    def arm(self, doc):
        match = doc.get("match")
        n, count = doc.get("after_bytes", 0), doc.get("count", 1)
        if not isinstance(match, str) or not match:
            raise ValueError("match: a non-empty string")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("after_bytes: an integer >= 0")
        if not isinstance(count, int) or isinstance(count, bool) or count < -1 or count == 0:
            raise ValueError("count: an integer >= 1, or -1")
        with self.lock:
            self.next_rule += 1
            self.rules = [r for r in self.rules if r.count != 0]
            self.rules.append(Rule(self.next_rule, match, n, count))
            return {"rule": self.next_rule}

    def disarm(self):
        with self.lock:
            self.rules = []
        return {"armed": []}

    def state(self):
        with self.lock:
            return {"held": [{"id": c.id, "match": c.rule.match, "forwarded": c.forwarded,
                              "since": c.since} for c in sorted(self.held.values(),
                                                                key=lambda c: c.id)],
                    "connections": self.accepted, "open": len(self.conns),
                    "released": self.released,
                    "armed": [{"rule": r.id, "match": r.match, "after_bytes": r.after_bytes,
                               "count": r.count} for r in self.rules if r.count != 0],
                    "delay_ms": self.delay_ms}

    def do_release(self, doc):
        which, mode = doc.get("id"), doc.get("mode", "forward")
        if mode not in ("forward", "drop"):
            raise ValueError('mode: "forward" or "drop"')
        with self.lock:
            if which == "all":
                ids = sorted(self.held)
            elif isinstance(which, int) and not isinstance(which, bool) and which in self.held:
                ids = [which]
            else:
                return None
            for i in ids:
                self.held.pop(i).release = mode
                self.released += 1
            self.cond.notify_all()
        return {"released": ids}

    def set_delay(self, doc):
        ms = doc.get("ms")
        if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms < 0:
            raise ValueError("ms: a number >= 0")
        with self.lock:
            self.delay_ms = ms
        return {"delay_ms": ms}

    def stop(self):
        with self.lock:
            self.stopping = True
            conns = list(self.conns.values())
            self.cond.notify_all()
        for c in conns:
            c.close()


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy = None

    def log_message(self, fmt, *args):
        pass

    def send(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        p, route = self.proxy, (self.command, self.path.split("?")[0].rstrip("/"))
        try:
            doc = json.loads(raw or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("the body is a JSON object")
            if route == ("GET", "/state"):
                return self.send(200, p.state())
            if route == ("POST", "/hold"):
                return self.send(200, p.arm(doc))
            if route == ("DELETE", "/hold"):
                return self.send(200, p.disarm())
            if route == ("POST", "/release"):
                out = p.do_release(doc)
                if out is None:
                    return self.send(404, {"error": "no held connection %r" % (doc.get("id"),)})
                return self.send(200, out)
            if route == ("POST", "/delay"):
                return self.send(200, p.set_delay(doc))
        except ValueError as e:
            return self.send(400, {"error": str(e)})
        return self.send(404, {"error": "no such control endpoint"})

    do_GET = do_POST = do_DELETE = serve


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def main():
    ap = argparse.ArgumentParser(description="A TCP proxy that can hold a request part-way.")
    ap.add_argument("--target", required=True, metavar="HOST:PORT")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--listen", default="127.0.0.1", metavar="HOST")
    ap.add_argument("--rcvbuf", type=int, default=4096, help="SO_RCVBUF of client sockets")
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")
    if not host or not port.isdigit():
        ap.error("--target HOST:PORT")
    proxy = Proxy((host, int(port)), a.rcvbuf)
    Control.proxy = proxy

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)  # inherited by accepts
    lsock.bind((a.listen, a.port))
    lsock.listen(128)
    ctl = ControlServer(("127.0.0.1", a.control_port), Control)
    threading.Thread(target=ctl.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    print("listening %d" % lsock.getsockname()[1], flush=True)
    print("control %d" % ctl.server_address[1], flush=True)

    while not stop.is_set():
        try:
            ready, _, _ = select.select([lsock], [], [], 0.1)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            client, _ = lsock.accept()
        except OSError:
            continue
        threading.Thread(target=proxy.accept, args=(client,), daemon=True).start()
    lsock.close()
    proxy.stop()
    ctl.shutdown()
    ctl.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
