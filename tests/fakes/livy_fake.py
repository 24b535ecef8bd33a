#!/usr/bin/python3
"""A stand-in for Apache Livy 0.8's REST API (Python 3 stdlib only).

It follows the published contract (livy.apache.org/docs/latest/rest-api.html)
and the server's behaviour where the page is silent (SessionServlet,
SessionManager, CsrfFilter):

  GET    /batches?from=&size=         {"from", "total", "sessions": [Batch]}
  POST   /batches                     201 Batch; 400 {"msg"} for bad bodies and
                                      for a name Livy already has
  GET    /batches/{id}                Batch {id, name, owner, proxyUser, state,
                                      appId, appInfo, log (last 10 lines)}
  GET    /batches/{id}/state          {"id", "state"}
  GET    /batches/{id}/log?from=&size= {"id", "from", "total", "log"}; without
                                      `from` the last `size` lines
  DELETE /batches/{id}                {"msg": "deleted"}; gone afterwards
  GET|POST /sessions, GET|DELETE /sessions/{id}, /sessions/{id}/state|log
  GET|POST /sessions/{id}/statements, GET .../statements/{sid},
  POST   .../statements/{sid}/cancel  {"msg": "canceled"}
  unknown ids: 404 {"msg": "Session '7' not found."}

Batches go starting -> running -> their fate, chosen by conf (or an arg of
the form KEY=VALUE) of the batch:
  fake.fate         success (default) | dead | killed | error
  fake.starting_ms  default 300;  fake.duration_ms  default 1000
  fake.log_lines    default 20 (a failure's last line names the cause)
Sessions go starting -> idle (busy while a statement runs), or to dead with
conf fake.session_fate=dead; fake.starting_ms (default 500) and
fake.statement_ms (default 300) set the pace. A statement whose code
contains "raise" fails with an error output; others answer
"fake output of: CODE".

Options: --csrf (POST/DELETE need X-Requested-By, as with
livy.server.csrf-protection.enabled), --auth USER:PASS (HTTP basic).

Test control (never under auth or CSRF):
  POST   /_fault {"path_prefix": "/batches", "method": "POST", "count": 2,
                  "mode": "status", "status": 503, "retry_after": "1"}
         modes: status (answer `status`, do nothing), drop (close without
         an answer, do nothing), drop_after (do it, then close), slow (do
         it, answer after delay_ms), garbage (do it, answer non-JSON)
  DELETE /_fault                      removes every fault
  GET    /_stats                      counters: batches_created,
         sessions_created, statements_created, batch_deletes,
         session_deletes, statement_cancels, batch_bodies and
         session_bodies (what was created), requests {"METHOD /path": n},
         truncated_requests (requests discarded, below)
  GET    /_config, POST /_config      the timing knobs, below
  GET    /_effects[?dups=1]           the effect log, below

Timing (all off by default; the common rules are in fake_timing.py):
  effect_delay_ms {OP: [MIN, MAX]}. A request is known by two names, the
         first one configured (else "*") applies: its path with ids as {id},
         as /_stats counts it ("POST /sessions/{id}/statements", "GET
         /batches/{id}", "GET /batches"), then "METHOD /collection[/sub]":
           POST|GET /batches, GET|DELETE /batches (by id), GET /batches/state,
           GET /batches/log; the same for /sessions; POST|GET /statements
           (list or by id), POST /statements/cancel
         so "GET /batches" delays the list and the gets by id, unless "GET
         /batches/{id}" says otherwise. POST /batches, POST /sessions and
         POST /statements: a body Livy refuses (the 400s above, but not a
         duplicate name or a session not ready, which are decided at the
         effect) is answered at once; otherwise the request waits MIN..MAX
         ms, then takes effect, then is answered, even when the client hung
         up meanwhile (logged with client_gone). Other requests are answered
         MIN..MAX ms later.
  list_lag_ms N   a batch (session) shows in GET /batches (/sessions), and
         counts in its "total", only N ms after its effect; GET /batches/{id}
         sees it at once
  serial_creates  POST /batches and POST /sessions are processed one at a
         time (one lock for both, held across the effect delay and the
         effect, as Livy 0.8's session managers create them): 60 concurrent
         POSTs take 60 x the delay
  duplicate_names (default true) refuse a batch/session named like one Livy
         holds (400 "Duplicate session name"); false accepts twins, so a
         test can show that only the client prevents them
  body_timeout_ms N   give up on a body not complete within N ms
  CLI: --effect-delay OP=MIN-MAX (repeatable; OP may be *, quote the
  space: --effect-delay 'POST /batches=200-400'), --list-lag-ms N,
  --serial-creates, --allow-duplicate-names, --body-timeout-ms N

Effect log (GET /_effects): one entry per batch (op "POST /batches"),
session ("POST /sessions") and statement ("POST /statements") created. key
and name: the batch's or session's name (null when it has none);
statements have key and name null and id "SESSION/STATEMENT". state: the
state now, "deleted" once DELETEd (for a statement, once its session is).
DELETEs and statement cancels are not in it (see /_stats).

A request whose body is shorter than its Content-Length (the client closed
mid-body) is discarded: no effect, no answer, the connection closed, counted
as truncated_requests.

Usage: livy_fake.py --port N [--csrf] [--auth U:P] [--effect-delay OP=MIN-MAX ...]
                    [--list-lag-ms N] [--serial-creates] [--allow-duplicate-names]
                    [--body-timeout-ms N]
prints "listening PORT".
"""
import base64
import contextlib
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import fake_timing

BATCH_FIELDS = {"file": str, "proxyUser": str, "className": str, "args": list, "jars": list,
                "pyFiles": list, "files": list, "driverMemory": str, "driverCores": int,
                "executorMemory": str, "executorCores": int, "numExecutors": int,
                "archives": list, "queue": str, "name": str, "conf": dict}
SESSION_FIELDS = dict(BATCH_FIELDS, kind=str, heartbeatTimeoutInSecond=int)
for _k in ("file", "className", "args"):
    del SESSION_FIELDS[_k]
KINDS = ("spark", "pyspark", "sparkr", "sql")


class BadRequest(Exception):
    pass


class NotFound(Exception):
    pass


def now_ms():
    return time.monotonic() * 1000.0


PATH_RX = re.compile(r"/(batches|sessions)(?:/(\d+)(?:/(state|log|statements)"
                     r"(?:/(\d+)(?:/(cancel))?)?)?)?/?")


def op_keys(method, path):
    """The names effect_delay_ms knows a request by, most specific first:
    the path with its ids as {id} ("POST /sessions/{id}/statements", as
    /_stats counts requests), then "METHOD /collection[/sub]" ("POST
    /statements")."""
    full = "%s %s" % (method, re.sub(r"/\d+", "/{id}", path.rstrip("/") or "/"))
    m = PATH_RX.fullmatch(path)
    if not m:
        return (full,)
    coll, _, sub, _, cancel = m.groups()
    if sub == "statements":
        short = "/statements" + ("/cancel" if cancel else "")
    elif sub:
        short = "/%s/%s" % (coll, sub)
    else:
        short = "/" + coll
    return (full, "%s %s" % (method, short))


def check_body(raw, fields):
    """Livy reads bodies with Jackson: bad JSON, unknown fields and wrong
    types are 400s."""
    try:
        doc = json.loads(raw or b"{}")
    except ValueError as e:
        raise BadRequest("Malformed JSON: %s" % e)
    if not isinstance(doc, dict):
        raise BadRequest("Cannot deserialize: expected an object")
    for k, v in doc.items():
        want = fields.get(k)
        if want is None:
            raise BadRequest('Unrecognized field "%s"' % k)
        if v is None:
            continue
        if want is int and (not isinstance(v, int) or isinstance(v, bool)):
            raise BadRequest("Cannot deserialize value of type `int` for field %s" % k)
        if want is str and not isinstance(v, str):
            raise BadRequest("Cannot deserialize value of type `String` for field %s" % k)
        if want is list and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            raise BadRequest("Cannot deserialize field %s: expected a list of strings" % k)
        if want is dict and (not isinstance(v, dict) or
                             not all(isinstance(x, str) for x in v.values())):
            raise BadRequest("Cannot deserialize field %s: expected a map of strings" % k)
    return doc


def knob(doc, key, default):
    """A fake.* setting from conf, or from an arg "key=value"."""
    conf = doc.get("conf") or {}
    if key in conf:
        return conf[key]
    for a in doc.get("args") or []:
        if a.startswith(key + "="):
            return a.split("=", 1)[1]
    return default


class Batch:
    def __init__(self, bid, doc, owner):
        self.id, self.doc, self.owner = bid, doc, owner
        self.name = doc.get("name")
        self.created = now_ms()
        self.visible_at = self.created   # in GET /batches from then (list_lag_ms)
        self.fate = knob(doc, "fake.fate", "success")
        self.starting_ms = float(knob(doc, "fake.starting_ms", 300))
        self.duration_ms = float(knob(doc, "fake.duration_ms", 1000))
        n = int(knob(doc, "fake.log_lines", 20))
        self.lines = ["stdout: fake spark-submit of %s, line %d" % (doc.get("file"), i + 1)
                      for i in range(n)]
        if self.fate != "success":
            self.lines.append("stderr: Exception in thread \"main\" java.lang.RuntimeException: "
                              "fake batch %d failed (%s)" % (bid, self.fate))

    def state(self):
        t = now_ms() - self.created
        if t < self.starting_ms:
            return "starting"
        if t < self.starting_ms + self.duration_ms:
            return "running"
        return self.fate

    def app_id(self):
        if self.state() == "starting":
            return None
        return "application_1700000000000_%04d" % self.id

    def view(self):
        return {"id": self.id, "name": self.name, "owner": self.owner,
                "proxyUser": self.doc.get("proxyUser") or self.owner, "state": self.state(),
                "appId": self.app_id(),
                "appInfo": {"driverLogUrl": None, "sparkUiUrl": None}, "log": self.lines[-10:]}


class Statement:
    def __init__(self, sid, code, kind, duration_ms):
        self.id, self.code, self.kind = sid, code, kind
        self.created, self.duration_ms = now_ms(), duration_ms
        self.cancelled = False

    def state(self):
        if self.cancelled:
            return "cancelled"
        t = now_ms() - self.created
        if t < 50:
            return "waiting"
        return "running" if t < self.duration_ms else "available"

    def view(self):
        st = self.state()
        out = None
        if st == "available" and "raise" in self.code:
            out = {"status": "error", "execution_count": self.id, "ename": "RuntimeError",
                   "evalue": "fake failure in statement %d" % self.id,
                   "traceback": ["Traceback (most recent call last):\n",
                                 '  File "<stdin>", line 1, in <module>\n',
                                 "RuntimeError: fake failure in statement %d\n" % self.id]}
        elif st == "available":
            out = {"status": "ok", "execution_count": self.id,
                   "data": {"text/plain": "fake output of: %s" % self.code}}
        return {"id": self.id, "code": self.code, "state": st, "output": out,
                "progress": 1.0 if st == "available" else 0.0}


class Session:
    def __init__(self, sid, doc, owner):
        self.id, self.doc, self.owner = sid, doc, owner
        self.name, self.kind = doc.get("name"), doc.get("kind")
        self.created = now_ms()
        self.visible_at = self.created   # in GET /sessions from then (list_lag_ms)
        self.starting_ms = float(knob(doc, "fake.starting_ms", 500))
        self.statement_ms = float(knob(doc, "fake.statement_ms", 300))
        self.fate = knob(doc, "fake.session_fate", "idle")
        self.statements = []
        self.lines = ["stdout: fake interactive session %d" % sid]

    def state(self):
        if now_ms() - self.created < self.starting_ms:
            return "starting"
        if self.fate != "idle":
            if len(self.lines) == 1:
                self.lines.append("stderr: fake session %d died" % self.id)
            return self.fate
        busy = any(s.state() in ("waiting", "running") for s in self.statements)
        return "busy" if busy else "idle"

    def view(self):
        return {"id": self.id, "name": self.name, "owner": self.owner,
                "proxyUser": self.doc.get("proxyUser") or self.owner, "kind": self.kind,
                "state": self.state(), "appId": "application_1700000000001_%04d" % self.id,
                "appInfo": {"driverLogUrl": None, "sparkUiUrl": None}, "log": self.lines[-10:]}


class Livy:
    def __init__(self, timing=None):
        self.lock = threading.Lock()
        self.serial = threading.Lock()   # serial_creates: one create at a time
        self.timing = timing
        self.batches, self.sessions = {}, {}
        self.next_batch = self.next_session = 0
        self.faults = []
        self.stats = {"batches_created": 0, "sessions_created": 0, "statements_created": 0,
                      "batch_deletes": [], "session_deletes": [], "statement_cancels": [],
                      "batch_bodies": [], "session_bodies": [], "requests": {}}

    def fault_for(self, method, path):
        with self.lock:
            for f in self.faults:
                if f["count"] != 0 and path.startswith(f.get("path_prefix", "/")) and \
                        f.get("method", method) == method:
                    f["count"] -= 1
                    return dict(f)
        return None

    # -------------------------------------------------------- the API
    def route(self, method, path, q, body, user, effect=None):
        """effect(op, key, id, name, state): called (lock held) for what a
        request creates."""
        m = PATH_RX.fullmatch(path)
        if not m:
            raise NotFound('Requesting "%s %s" on a path Livy does not have' % (method, path))
        coll, sid, sub, stid, cancel = m.groups()
        table = self.batches if coll == "batches" else self.sessions
        with self.lock:
            if sid is None:
                if method == "GET":
                    frm, size = int(q.get("from", 0)), int(q.get("size", 100))
                    t = now_ms()
                    items = [x for x in table.values() if x.visible_at <= t]
                    return 200, {"from": frm, "total": len(items),
                                 "sessions": [x.view() for x in items[frm:frm + size]]}
                if method == "POST":
                    return self.create(coll, body, user, effect)
                raise NotFound("Method %s not allowed" % method)
            obj = table.get(int(sid))
            if obj is None:
                raise NotFound("Session '%s' not found." % sid)
            if sub is None and method == "GET":
                return 200, obj.view()
            if sub is None and method == "DELETE":
                del table[obj.id]
                kind = "batch_deletes" if coll == "batches" else "session_deletes"
                self.stats[kind].append(obj.id)
                return 200, {"msg": "deleted"}
            if sub == "state" and method == "GET":
                return 200, {"id": obj.id, "state": obj.state()}
            if sub == "log" and method == "GET":
                obj.state()  # a dying session writes its last words first
                size = int(q.get("size", 100))
                frm = int(q.get("from", -1))
                size = len(obj.lines) if size < 0 else size
                frm = max(0, len(obj.lines) - size) if frm < 0 else frm
                return 200, {"id": obj.id, "from": frm, "total": len(obj.lines),
                             "log": obj.lines[frm:frm + size]}
            if sub == "statements" and coll == "sessions":
                return self.statements(obj, method, stid, cancel, body, effect)
        raise NotFound("Method %s not allowed on %s" % (method, path))

    @staticmethod
    def check_create(coll, body):
        """What POST /batches or /sessions checks in the body alone."""
        doc = check_body(body, BATCH_FIELDS if coll == "batches" else SESSION_FIELDS)
        if coll == "batches" and not doc.get("file"):
            raise BadRequest("File is required.")
        if coll == "sessions" and doc.get("kind") not in (None,) + KINDS:
            raise BadRequest("Invalid kind: %s" % doc.get("kind"))
        return doc

    @staticmethod
    def check_statement(body):
        doc = check_body(body, {"code": str, "kind": str})
        if not isinstance(doc.get("code"), str):
            raise BadRequest("code is required")
        if doc.get("kind") not in (None,) + KINDS:
            raise BadRequest("Invalid kind: %s" % doc.get("kind"))
        return doc

    def precheck(self, method, path):
        """The check_* for a request that creates something, else None."""
        m = PATH_RX.fullmatch(path) if method == "POST" else None
        if not m:
            return None
        coll, sid, sub, stid, cancel = m.groups()
        if sid is None:
            return lambda body: self.check_create(coll, body)
        if sub == "statements" and coll == "sessions" and stid is None:
            return self.check_statement
        return None

    def create(self, coll, body, user, effect=None):
        doc = self.check_create(coll, body)
        table = self.batches if coll == "batches" else self.sessions
        name = doc.get("name")
        refuse = self.timing is None or self.timing.get("duplicate_names")
        if refuse and name is not None and any(x.name == name for x in table.values()):
            raise BadRequest("Duplicate session name: Some(%s)" % name)
        if coll == "batches":
            obj = Batch(self.next_batch, doc, user)
            self.next_batch += 1
            self.stats["batches_created"] += 1
            self.stats["batch_bodies"].append(doc)
        else:
            obj = Session(self.next_session, doc, user)
            self.next_session += 1
            self.stats["sessions_created"] += 1
            self.stats["session_bodies"].append(doc)
        table[obj.id] = obj
        if self.timing is not None:
            obj.visible_at = obj.created + self.timing.lag_s() * 1000.0
        if effect:
            effect("POST /" + coll, name, obj.id, name,
                   lambda: obj.state() if table.get(obj.id) is obj else "deleted")
        return 201, obj.view()

    def statements(self, sess, method, stid, cancel, body, effect=None):
        if stid is None and method == "GET":
            return 200, {"total_statements": len(sess.statements),
                         "statements": [s.view() for s in sess.statements]}
        if stid is None and method == "POST":
            doc = self.check_statement(body)
            if sess.state() not in ("idle", "busy"):
                return 500, {"msg": "Session is in state %s" % sess.state()}
            st = Statement(len(sess.statements), doc["code"], doc.get("kind") or sess.kind,
                           sess.statement_ms)
            sess.statements.append(st)
            self.stats["statements_created"] += 1
            if effect:
                effect("POST /statements", None, "%d/%d" % (sess.id, st.id), None,
                       lambda: st.state() if self.sessions.get(sess.id) is sess else "deleted")
            return 201, st.view()
        if stid is None or int(stid) >= len(sess.statements):
            raise NotFound("Statement not found")
        st = sess.statements[int(stid)]
        if cancel and method == "POST":
            if st.state() in ("waiting", "running"):
                st.cancelled = True
            self.stats["statement_cancels"].append([sess.id, st.id])
            return 200, {"msg": "canceled"}
        if not cancel and method == "GET":
            return 200, st.view()
        raise NotFound("Method %s not allowed" % method)


class Handler(fake_timing.HandlerMixin, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    livy = None
    csrf = False
    auth = None

    def log_message(self, fmt, *args):
        pass

    def send(self, code, doc=None, raw=None, ctype="application/json;charset=utf-8", headers=()):
        body = raw if raw is not None else json.dumps(doc).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def control(self, method, path, body, q=None):
        lv = self.livy
        if path == "/_config" and method == "GET":
            return self.send(200, self.timing.snapshot())
        if path == "/_config" and method == "POST":
            try:
                return self.send(200, self.timing.merge(json.loads(body or b"{}")))
            except ValueError as e:   # bad JSON, or fake_timing.ConfigError
                return self.send(400, {"error": str(e)})
        if path == "/_effects" and method == "GET":
            with lv.lock:
                return self.send(200, self.timing.effects.view(fake_timing.want_dups(q or {})))
        if path == "/_fault" and method == "POST":
            f = json.loads(body or b"{}")
            f.setdefault("count", 1)
            f.setdefault("mode", "status")
            with lv.lock:
                lv.faults.append(f)
            return self.send(200, {"faults": len(lv.faults)})
        if path == "/_fault" and method == "DELETE":
            with lv.lock:
                lv.faults.clear()
            return self.send(200, {"faults": 0})
        if path == "/_stats" and method == "GET":
            with lv.lock:
                return self.send(200, lv.stats)
        return self.send(404, {"msg": "no such control endpoint"})

    def user(self):
        """None: refused (answered already); "" when auth is off."""
        if not self.auth:
            return ""
        h = self.headers.get("Authorization", "")
        if h.startswith("Basic "):
            try:
                u, p = base64.b64decode(h[6:]).decode().split(":", 1)
                if "%s:%s" % (u, p) == self.auth:
                    return u
            except (ValueError, UnicodeDecodeError):
                pass
        self.send(401, raw=b"<html><head><title>Error 401 Unauthorized</title></head></html>",
                  ctype="text/html", headers=[("WWW-Authenticate", 'Basic realm="livy"')])
        return None

    def serve(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self.read_body_checked()
        if body is None:   # cut short: discarded
            return None
        method, path = self.command, url.path
        if path.startswith("/_"):
            return self.control(method, path, body, q)
        lv = self.livy
        key = "%s %s" % (method, re.sub(r"/\d+", "/{id}", path))
        with lv.lock:
            lv.stats["requests"][key] = lv.stats["requests"].get(key, 0) + 1
        user = self.user()
        if user is None:
            return None
        if self.csrf and method not in ("GET", "OPTIONS", "HEAD") and \
                self.headers.get("X-Requested-By") is None:
            return self.send(400, raw=b"<html><head><title>Error 400 Missing Required Header "
                             b"for CSRF protection.</title></head><body></body></html>",
                             ctype="text/html;charset=iso-8859-1")
        fault = lv.fault_for(method, path)
        mode = fault["mode"] if fault else None
        if mode == "status":
            hdrs = [("Retry-After", str(fault["retry_after"]))] if "retry_after" in fault else []
            return self.send(int(fault.get("status", 503)), {"msg": "injected fault"},
                             headers=hdrs)
        if mode == "drop":
            return self.drop()
        keys = op_keys(method, path)
        check = lv.precheck(method, path)
        serial = bool(self.timing is not None and self.timing.get("serial_creates") and
                      check is not None and "/statements" not in path)
        if check and (serial or self.has_delay(*keys)):
            try:   # what the body alone shows wrong is answered at once
                check(body)
            except BadRequest as e:
                return self.send(400, {"msg": str(e)})
        # serial_creates: Livy's BatchSessionManager creates one at a time
        with lv.serial if serial else contextlib.nullcontext():
            self.effect_delay(*keys)
            try:
                code, doc = lv.route(method, path, q, body, user or None, self.log_effect)
            except BadRequest as e:
                code, doc = 400, {"msg": str(e)}
            except NotFound as e:
                code, doc = 404, {"msg": str(e)}
            except ValueError as e:
                code, doc = 400, {"msg": "Bad parameter: %s" % e}
        if mode == "slow":
            time.sleep(float(fault.get("delay_ms", 1000)) / 1000.0)
        if mode == "drop_after":
            return self.drop()
        if mode == "garbage":
            return self.answer(self.send, code, raw=b"this is not json{",
                               ctype="application/json")
        hdrs = [("Location", "%s/%d" % (path.rstrip("/"), doc["id"]))] if code == 201 else []
        return self.answer(self.send, code, doc, headers=hdrs)

    do_GET = do_POST = do_DELETE = do_PUT = serve


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        pass  # clients hang up on purpose (takeover tests kill them)


def main():
    import argparse
    ap = argparse.ArgumentParser(description="A stateful stand-in for Apache Livy's REST API.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1",
                    help="the address to listen on (a cluster master's, for the EMR stand-in)")
    ap.add_argument("--csrf", action="store_true",
                    help="POST/DELETE need X-Requested-By (livy.server.csrf-protection)")
    ap.add_argument("--auth", metavar="USER:PASS", help="require HTTP basic auth")
    fake_timing.add_arguments(ap, livy=True)
    a = ap.parse_args()
    port = a.port
    timing = fake_timing.Timing.from_args(a, livy=True)
    Handler.livy = Livy(timing)
    timing.bind(Handler.livy.stats, Handler.livy.lock)
    Handler.timing = timing
    Handler.csrf = a.csrf
    Handler.auth = a.auth
    srv = Server((a.host, port), Handler)
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
