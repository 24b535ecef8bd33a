#!/usr/bin/python3
"""A stateful stand-in for Netflix Genie 3's REST API (stdlib only), for the
Genie operator tests (tests/integration/t4200_genie.py, t4400_transient.py)
and scripts/demo.

What it follows from the published contract (netflix.github.io/genie/docs,
the 3.x REST docs and genie-web's controllers):

  POST   /api/v3/jobs                 JobRequest JSON (Content-Type
                                      application/json); 202 + Location;
                                      409 when the id is taken; 400 with
                                      Spring's error body when name, user,
                                      version, clusterCriterias or
                                      commandCriteria is missing; 412 when
                                      no UP cluster matches (below)
  GET    /api/v3/jobs/{id}            the job (HAL-ish): the request's
                                      fields, status, statusMsg (when one
                                      was set), clusterName once resolved,
                                      _links.cluster
  GET    /api/v3/jobs/{id}/status     {"status": INIT|RUNNING|SUCCEEDED|FAILED|KILLED}
  GET    /api/v3/jobs/{id}/cluster    the cluster the job resolved to; 404
                                      when it resolved to none
  GET    /api/v3/jobs/{id}/output/{stdout,stderr}
                                      text; Range (bytes=a-b, a-, -n): 206,
                                      416 when unsatisfiable; 404 before the
                                      job runs
  DELETE /api/v3/jobs/{id}            202 (a finished job stays as it is)
  POST   /api/v3/clusters             Cluster JSON; 201 + Location; 409; 400.
                                      The stored tags get "genie.id:<id>"
                                      and "genie.name:<name>" added, as
                                      Genie 3 does (JpaBaseService
                                      .setFinalTags)
  GET    /api/v3/clusters/{id}        the cluster; 404
  GET    /api/v3/clusters?name=&status=&tag=&size=
                                      HAL page {"_embedded": {"clusterList":
                                      [...]}, "page": {...}}; name is a SQL
                                      LIKE pattern; no _embedded when empty
  PATCH  /api/v3/clusters/{id}        JSON Patch (Content-Type
                                      application/json, as Genie consumes
                                      it; 415 otherwise); 204

Cluster resolution at submission, as Genie 3 does it
(JobCoordinatorServiceImpl.coordinateJob, JpaClusterServiceImpl
.findClustersAndCommandsForJob): the job's clusterCriterias are tried in
order; a cluster satisfies one when its status is UP and its tags (with the
genie.id/genie.name ones) contain every tag of the criterion; the first
criterion that some cluster satisfies wins (Genie's default load balancer
then picks at random among them; the fake takes the oldest registration, to
stay deterministic). The job is recorded with that cluster (clusterName,
/cluster). When no criterion matches, Genie 3 has already stored the job
(status INIT), then marks it FAILED with the exception's message as its
statusMsg and answers the POST with GeniePreconditionException, i.e. 412:
  {"timestamp": ..., "status": 412, "error": "Precondition Failed",
   "exception": "com.netflix.genie.common.exceptions.GeniePreconditionException",
   "message": "No cluster/command combination found for the given criteria.
               Unable to continue", "path": "/api/v3/jobs"}
so the id stays taken (a second POST of it gets 409) and the job never runs
(no output: 404). Commands are resolved as Genie 3 resolves them: a cluster
satisfies a criterion only when it also has a linked ACTIVE command whose
tags contain every tag of the job's commandCriteria (the job records it:
command_id in /_jobs).

  POST   /api/v3/commands             Command JSON (name, user, version,
                                      status ACTIVE|DEPRECATED|INACTIVE,
                                      executable or executableAndArguments,
                                      tags); 201 + Location; 409; 400
  GET    /api/v3/commands/{id}        the command; 404
  GET    /api/v3/commands?name=&status=&tag=&size=
                                      HAL page, _embedded.commandList
  GET    /api/v3/clusters/{id}/commands   the linked commands (a JSON list)
  POST   /api/v3/clusters/{id}/commands   ["id", ...]: adds links; 204
  PUT    /api/v3/clusters/{id}/commands   ["id", ...]: sets the links; 204
  DELETE /api/v3/clusters/{id}/commands   removes every link; 204
         (404 for an unknown cluster or command)

Job life: INIT for 100 ms, then RUNNING for the job's duration, then its
fate. Both come from the job's tags: "fake.duration_ms:800" (default 500)
and "fake.fate:failed|killed|invalid" (default: succeeded). A job past its
`timeout` (seconds) is KILLED, as Genie does.

Auth (every /api/ path): --auth basic:USER:PASSWORD or --token TOKEN; 401
otherwise.

Test controls (no auth):
  POST   /_fault  {"path_prefix": "/api/v3/jobs", "method": "POST",
                   "status": 503, "count": 2}
                  or {"mode": "drop"|"lost"|"slow"|"garbage"|"body",
                   "delay_ms": N, "body": "..."}; count defaults to 1, -1 is
                  forever. drop closes the connection unanswered before doing
                  anything; lost does the work, then closes it unanswered (an
                  unknown outcome); slow does the work, then waits delay_ms
                  before answering; garbage answers 200 with a body that is
                  not JSON; body answers 200 with `body`.
                  or {"mode": "fate", "fate": "failed"|"killed"|"invalid",
                   "job_name": "..."}: the next job created (whose name is
                   job_name, when given) ends that way, as if the tag
                   fake.fate said so; the request is answered normally.
  DELETE /_fault  clears every fault
  GET    /_stats  counters: jobs_created (every job stored, resolved or
                  not), jobs_unresolved (answered 412), job_posts, kills,
                  kill_requests, clusters_created, cluster_posts,
                  cluster_patches, faults_fired, requests {"METHOD /path": n},
                  truncated_requests (requests discarded, below)
  GET    /_jobs   by id: status, request, killed, cluster_id and
                  cluster_name (null when unresolved), status_msg
  GET    /_clusters   every cluster, by id
  GET    /_config, POST /_config   the timing knobs, below
  GET    /_effects[?dups=1]        the effect log, below

Timing (all off by default; the common rules are in fake_timing.py):
  effect_delay_ms {OP: [MIN, MAX]}. A request is known by two names, the
                  first one configured (else "*") applies: its path with ids
                  as {id}, as /_stats counts it ("POST /api/v3/jobs", "GET
                  /api/v3/jobs/{id}/status"), then "METHOD /collection[/sub]":
                    POST|GET|DELETE /jobs, GET /jobs/status, GET /jobs/cluster,
                    GET /jobs/output, POST|GET|PATCH /clusters
                  ("GET /jobs" is the get by id; "GET /clusters" the search
                  and the get by id). POST /api/v3/jobs and POST
                  /api/v3/clusters: auth, Content-Type and body errors (415,
                  400) are answered at once; otherwise the request waits
                  MIN..MAX ms, then takes effect (stored, resolved; or a 409
                  when the id is taken by then), then is answered, even when
                  the client hung up meanwhile (logged with client_gone). Other
                  requests wait MIN..MAX ms once auth passed, then are served.
                  Faults that do no work (drop, status, garbage, body) answer
                  at once; slow and lost wait the delay, then their own.
  list_lag_ms N   a cluster shows in the GET /api/v3/clusters search only N
                  ms after its effect; GET /api/v3/clusters/{id} sees it at
                  once
  body_timeout_ms N   give up on a body not complete within N ms
  CLI: --effect-delay OP=MIN-MAX (repeatable; OP may be *, quote spaces:
  --effect-delay 'POST /jobs=200-400'), --list-lag-ms N, --body-timeout-ms N

Effect log (GET /_effects): one entry per job stored (op "POST /jobs",
including one answered 412 since Genie stores it first) and per cluster
registered (op "POST /clusters"): id the job's or cluster's id, name its
name, key the value of its tag "baton.run_key:<key>" (null without one),
state the job's status (INIT, RUNNING, ...) or the cluster's (UP, ...) now.
Kills (DELETE) and PATCHes are not in it (see /_stats).

A request whose body is shorter than its Content-Length (the client closed
mid-body) is discarded: no effect, no answer, the connection closed, counted
as truncated_requests.

Usage: genie_fake.py [--port N] [--auth basic:U:P] [--token T]
                     [--effect-delay OP=MIN-MAX ...] [--list-lag-ms N]
                     [--body-timeout-ms N]
prints "listening PORT" once ready. It starts with no clusters: register
them (POST /api/v3/clusters) before submitting jobs, as on a real Genie.
"""
import argparse
import base64
import json
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import fake_timing

ACTIVE = ("INIT", "RUNNING")
CLUSTER_STATUSES = ("UP", "OUT_OF_SERVICE", "TERMINATED")
COMMAND_STATUSES = ("ACTIVE", "DEPRECATED", "INACTIVE")


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.jobs = {}
        self.clusters = {}
        self.commands = {}    # id -> command
        self.links = {}       # cluster id -> [command id...], in link order
        self.listed_at = {}   # cluster id -> when the search shows it (list_lag_ms)
        self.faults = []
        self.stats = {"jobs_created": 0, "jobs_unresolved": 0, "job_posts": 0, "kills": 0,
                      "kill_requests": 0,
                      "clusters_created": 0, "cluster_posts": 0, "cluster_patches": 0,
                      "commands_created": 0, "link_sets": 0, "link_deletes": 0,
                      "faults_fired": 0, "requests": {}}

    def job_status(self, j):
        """The job's status now (lazily advanced). Call with the lock held."""
        if j["status"] not in ACTIVE:
            return j["status"]
        age = (time.time() - j["created"]) * 1000
        if j["timeout_s"] and age > j["timeout_s"] * 1000:
            j["status"] = "KILLED"
        elif age >= 100 + j["duration_ms"]:
            j["status"] = j["fate"]
        elif age >= 100:
            j["status"] = "RUNNING"
        return j["status"]


NO_CLUSTER = "No cluster/command combination found for the given criteria. Unable to continue"
FATES = ("SUCCEEDED", "FAILED", "KILLED", "INVALID")


def resolve_cluster(st, criterias, command_tags):
    """(cluster, command) a job runs on (see the top of the file), or
    (None, None). Call with the lock held."""
    want_cmd = set(command_tags)
    for crit in criterias:
        want = set(crit["tags"])
        found = []
        for c in st.clusters.values():
            if c["status"] != "UP" or not want <= set(c["tags"]):
                continue
            cmds = [st.commands[x] for x in st.links.get(c["id"], []) if x in st.commands]
            cmds = [m for m in cmds if m["status"] == "ACTIVE" and want_cmd <= set(m["tags"])]
            if cmds:
                found.append((c, cmds[0]))
        if found:
            return min(found, key=lambda cc: cc[0]["seq"])
    return None, None


def final_tags(tags, cid, name):
    """The tags Genie 3 stores for a resource: the caller's, with exactly one
    genie.id and one genie.name tag, both the system's."""
    out = [t for t in tags if not (t.startswith("genie.id:") or t.startswith("genie.name:"))]
    return out + ["genie.id:" + cid, "genie.name:" + name]


def tag_value(tags, key, default):
    for t in tags:
        if isinstance(t, str) and t.startswith(key + ":"):
            return t[len(key) + 1:]
    return default


def job_files(j):
    """stdout and stderr of a job that has started: long enough (> 4 KiB)
    that only a tail fits in an error detail."""
    args = j["request"].get("commandArgs")
    args = " ".join(args) if isinstance(args, list) else str(args or "")
    out = "".join("stdout line %d of job %s\n" % (i, j["id"]) for i in range(300))
    out += "ARGS: %s\nFAKE_STDOUT_END\n" % args
    err = ""
    if j["status"] in ("FAILED", "KILLED", "INVALID"):
        err = "".join("stderr noise %d\n" % i for i in range(300))
        err += "Exception: fake failure of %s\nFAKE_STDERR_END\n" % j["request"].get("name")
    return {"stdout": out.encode(), "stderr": err.encode()}


def op_keys(method, path):
    """The names effect_delay_ms knows a request by, most specific first:
    the path with its ids as {id}, as /_stats counts requests ("GET
    /api/v3/jobs/{id}/status"), then "METHOD /collection[/sub]" ("GET
    /jobs/status")."""
    full = "%s %s" % (method, re.sub(r"/api/v3/(jobs|clusters)/[^/]+", r"/api/v3/\1/{id}", path))
    m = re.fullmatch(r"/api/v3/(jobs|clusters)(?:/[^/]+(?:/([^/]+).*)?)?/?", path)
    if not m:
        return (full,)
    return (full, "%s /%s%s" % (method, m.group(1), "/" + m.group(2) if m.group(2) else ""))


RUN_KEY_TAG = "baton.run_key"
CREATES = ("POST /api/v3/jobs", "POST /api/v3/clusters")


def like(pattern, s):
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, s) is not None


class Handler(fake_timing.HandlerMixin, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None
    auth = None     # the exact Authorization header wanted, or None
    raw_body = b""  # the request's body, read before anything else
    keys = ()       # op_keys of the request

    def log_message(self, fmt, *args):
        pass

    # ------------------------------------------------------------ replies
    def reply(self, code, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if body or code not in (204,):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error_body(self, code, message):
        """Spring Boot's error body, which Genie 3 answers with."""
        reasons = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict",
                   412: "Precondition Failed", 415: "Unsupported Media Type",
                   503: "Service Unavailable"}
        return {"timestamp": int(time.time() * 1000), "status": code,
                "error": reasons.get(code, "Error"),
                "exception": "com.netflix.genie.common.exceptions.GenieException",
                "message": message, "path": urlsplit(self.path).path}

    def error(self, code, message):
        self.reply(code, self.error_body(code, message))

    def body_json(self):
        try:
            return json.loads(self.raw_body.decode())
        except Exception:
            return None

    # ------------------------------------------------------------ dispatch
    def handle_any(self, method):
        u = urlsplit(self.path)
        path, q = u.path, parse_qs(u.query)
        st = self.state
        self.raw_body = self.read_body_checked()
        if self.raw_body is None:   # cut short: discarded
            return
        with st.lock:
            key = "%s %s" % (method, re.sub(r"/api/v3/(jobs|clusters)/[^/]+", r"/api/v3/\1/{id}", path))
            st.stats["requests"][key] = st.stats["requests"].get(key, 0) + 1
        if path.startswith("/_"):
            return self.control(method, path, q)
        fault = self.take_fault(method, path)
        if fault and fault.get("mode") == "drop":
            self.body_json()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault and fault.get("status"):
            self.body_json()
            return self.error(int(fault["status"]), "injected fault")
        if fault and fault.get("mode") in ("garbage", "body"):
            self.body_json()
            body = fault.get("body", "<html>this is not JSON {") if fault["mode"] == "body" \
                else "<html>this is not JSON {"
            return self.reply(200, body)
        if self.auth and self.headers.get("Authorization") != self.auth:
            self.body_json()
            return self.error(401, "Full authentication is required to access this resource")
        self.delay = fault.get("delay_ms", 0) / 1000.0 if fault and fault.get("mode") == "slow" else 0
        self.lost = bool(fault and fault.get("mode") == "lost")
        self.keys = op_keys(method, path)
        if self.keys[0] not in CREATES:
            self.effect_delay(*self.keys)   # creates wait after their validation
        m = re.fullmatch(r"/api/v3/jobs(?:/([^/]+)(/status|/cluster|/output/(stdout|stderr))?)?",
                         path)
        if m:
            return self.jobs(method, m.group(1) and unquote(m.group(1)), m.group(2), m.group(3))
        m = re.fullmatch(r"/api/v3/clusters/([^/]+)/commands", path)
        if m:
            return self.cluster_commands(method, unquote(m.group(1)))
        m = re.fullmatch(r"/api/v3/clusters(?:/([^/]+))?", path)
        if m:
            return self.clusters(method, m.group(1) and unquote(m.group(1)), q)
        m = re.fullmatch(r"/api/v3/commands(?:/([^/]+))?", path)
        if m:
            return self.commands(method, m.group(1) and unquote(m.group(1)), q)
        self.body_json()
        self.error(404, "no handler for %s %s" % (method, path))

    def take_fault(self, method, path):
        st = self.state
        with st.lock:
            for f in st.faults:
                if f["count"] == 0 or f.get("mode") == "fate":
                    continue
                if not path.startswith(f.get("path_prefix", "/")):
                    continue
                if f.get("method") and f["method"].upper() != method:
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                st.stats["faults_fired"] += 1
                return f
        return None

    def take_fate(self, name):
        """The fate a "fate" fault gives the job being created, or None. Call
        with the lock held."""
        for f in self.state.faults:
            if f.get("mode") != "fate" or f["count"] == 0:
                continue
            if f.get("job_name") not in (None, name):
                continue
            if f["count"] > 0:
                f["count"] -= 1
            self.state.stats["faults_fired"] += 1
            return str(f.get("fate", "failed")).upper()
        return None

    def slow_reply(self, *args, **kw):
        """Replies after the fault's delay: the work is already done, as when
        a real server is slow to answer."""
        if self.delay:
            time.sleep(self.delay)
        if self.lost:  # the work is done, the answer never arrives
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.answer(self.reply, *args, **kw)

    def control(self, method, path, q=None):
        st = self.state
        if path == "/_config" and method == "GET":
            return self.reply(200, self.timing.snapshot())
        if path == "/_config" and method == "POST":
            try:
                return self.reply(200, self.timing.merge(json.loads(self.raw_body or b"{}")))
            except ValueError as e:   # bad JSON, or fake_timing.ConfigError
                return self.reply(400, {"error": str(e)})
        if path == "/_effects" and method == "GET":
            with st.lock:
                return self.reply(200, self.timing.effects.view(fake_timing.want_dups(q or {})))
        if path == "/_fault" and method == "POST":
            f = self.body_json()
            if not isinstance(f, dict):
                return self.error(400, "fault: a JSON object")
            f.setdefault("count", 1)
            with st.lock:
                st.faults.append(f)
            return self.reply(200, {"ok": True})
        if path == "/_fault" and method == "DELETE":
            with st.lock:
                st.faults = []
            return self.reply(200, {"ok": True})
        if method != "GET":
            return self.error(404, "unknown control")
        with st.lock:
            body = None
            if path == "/_stats":
                body = json.dumps(st.stats)
            elif path == "/_jobs":
                for j in st.jobs.values():
                    st.job_status(j)
                body = json.dumps({k: {"status": v["status"], "request": v["request"],
                                       "killed": v["killed"], "cluster_id": v["cluster_id"],
                                       "cluster_name": v["cluster_name"],
                                       "command_id": v.get("command_id"),
                                       "status_msg": v["status_msg"]}
                                   for k, v in st.jobs.items()})
            elif path == "/_clusters":
                body = json.dumps({k: dict(v, commands=st.links.get(k, []))
                                   for k, v in st.clusters.items()})
        if body is None:
            return self.error(404, "unknown control")
        return self.reply(200, body)

    # ------------------------------------------------------------ jobs
    def validate_job(self, r):
        if not isinstance(r, dict):
            return "JobRequest: a JSON object is required"
        for k in ("name", "user", "version"):
            if not isinstance(r.get(k), str) or not r[k].strip():
                return "%s: must not be empty" % k
        cc = r.get("clusterCriterias")
        if not isinstance(cc, list) or not cc:
            return "clusterCriterias: At least one cluster criteria is required"
        for c in cc:
            if not isinstance(c, dict) or not isinstance(c.get("tags"), list) or not c["tags"]:
                return "clusterCriterias: every criteria needs tags"
            if not all(isinstance(t, str) for t in c["tags"]):
                return "clusterCriterias: tags are strings"
        cmd = r.get("commandCriteria")
        if not isinstance(cmd, list) or not [t for t in cmd if isinstance(t, str) and t.strip()]:
            return "commandCriteria: At least one valid (e.g. non-blank) command criteria is required"
        args = r.get("commandArgs")
        if args is not None and not (isinstance(args, str) or
                                     (isinstance(args, list) and all(isinstance(a, str) for a in args))):
            return "commandArgs: a list of strings"
        if "id" in r and not isinstance(r["id"], str):
            return "id: a string"
        if "tags" in r and not (isinstance(r["tags"], list) and all(isinstance(t, str) for t in r["tags"])):
            return "tags: a list of strings"
        if "timeout" in r and (not isinstance(r["timeout"], int) or r["timeout"] < 1):
            return "timeout: The timeout must be at least 1 second"
        return None

    def jobs(self, method, jid, sub, fname):
        st = self.state
        if jid is None and method == "POST":
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                self.body_json()
                return self.error(415, "Content-Type must be application/json")
            r = self.body_json()
            with st.lock:
                st.stats["job_posts"] += 1
            bad = self.validate_job(r)
            if bad:
                return self.error(400, bad)
            self.effect_delay(*self.keys)
            jid = r.get("id") or str(uuid.uuid4())
            tags = r.get("tags") or []
            with st.lock:
                dup = jid in st.jobs
                cluster = None
                if not dup:
                    # stored before resolution, as Genie 3 does: the id is
                    # taken even when no cluster is found
                    fate = (self.take_fate(r["name"]) or
                            tag_value(tags, "fake.fate", "succeeded").upper())
                    j = st.jobs[jid] = {
                        "id": jid, "request": r, "created": time.time(), "status": "INIT",
                        "killed": False, "timeout_s": r.get("timeout") or 0,
                        "duration_ms": int(tag_value(tags, "fake.duration_ms", "500")),
                        "fate": fate if fate in FATES else "SUCCEEDED",
                        "cluster_id": None, "cluster_name": None, "status_msg": None}
                    st.stats["jobs_created"] += 1
                    self.log_effect("POST /jobs", tag_value(tags, RUN_KEY_TAG, None), jid,
                                    r["name"], lambda j=j: st.job_status(j))
                    cluster, command = resolve_cluster(st, r["clusterCriterias"],
                                                       r["commandCriteria"])
                    if command is not None:
                        j["command_id"] = command["id"]
                    if cluster is None:
                        j["status"], j["status_msg"] = "FAILED", NO_CLUSTER
                        st.stats["jobs_unresolved"] += 1
                    else:
                        j["cluster_id"], j["cluster_name"] = cluster["id"], cluster["name"]
            if dup:
                return self.slow_reply(409, self.error_body(409, "A job with id %s already exists" % jid))
            if cluster is None:
                body = self.error_body(412, NO_CLUSTER)
                body["exception"] = "com.netflix.genie.common.exceptions.GeniePreconditionException"
                return self.slow_reply(412, body)
            loc = "http://%s/api/v3/jobs/%s" % (self.headers.get("Host", "localhost"), jid)
            return self.slow_reply(202, b"", headers=[("Location", loc)])
        if jid is None:
            self.body_json()
            return self.error(404, "no job listing here")
        self.body_json()
        # decide under the lock, answer outside it (a slow answer must not
        # hold up other requests)
        with st.lock:
            j = st.jobs.get(jid)
            status = st.job_status(j) if j else None
            data = None
            if j and method == "DELETE" and sub is None:
                st.stats["kill_requests"] += 1
                if status in ACTIVE:
                    j["status"], j["killed"] = "KILLED", True
                    st.stats["kills"] += 1
            elif j and method == "GET" and fname and status != "INIT" and j["cluster_id"]:
                data = job_files(j)[fname]
            request = dict(j["request"]) if j else None
            cluster = st.clusters.get(j["cluster_id"]) if j and j["cluster_id"] else None
            cluster = dict(cluster) if cluster else None
            extra = {"statusMsg": j["status_msg"], "clusterName": j["cluster_name"]} if j else {}
        if j is None:
            return self.error(404, "No job with id %s exists" % jid)
        if method == "DELETE" and sub is None:
            return self.slow_reply(202, b"")
        if method != "GET":
            return self.error(404, "unsupported")
        if sub is None:
            base = "http://%s/api/v3/jobs/%s" % (self.headers.get("Host", "localhost"), jid)
            view = dict(request, id=jid, status=status,
                        _links={"self": {"href": base}, "cluster": {"href": base + "/cluster"}},
                        **{k: v for k, v in extra.items() if v is not None})
            return self.slow_reply(200, view, ctype="application/hal+json")
        if sub == "/status":
            return self.slow_reply(200, {"status": status})
        if sub == "/cluster":
            if cluster is None:
                return self.error(404, "No cluster found for job %s" % jid)
            return self.slow_reply(200, cluster, ctype="application/hal+json")
        if data is None:
            return self.error(404, "No output directory for job %s yet" % jid)
        return self.send_file(data)

    def send_file(self, data):
        rng = self.headers.get("Range")
        if not rng:
            return self.reply(200, data, ctype="text/plain")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if not m or (not m.group(1) and not m.group(2)):
            return self.reply(200, data, ctype="text/plain")
        n = len(data)
        if m.group(1):
            a = int(m.group(1))
            b = min(int(m.group(2)), n - 1) if m.group(2) else n - 1
        else:
            a, b = max(0, n - int(m.group(2))), n - 1
        if n == 0 or a >= n or a > b:
            return self.reply(416, b"", ctype="text/plain",
                              headers=[("Content-Range", "bytes */%d" % n)])
        return self.reply(206, data[a:b + 1], ctype="text/plain",
                          headers=[("Content-Range", "bytes %d-%d/%d" % (a, b, n))])

    # ------------------------------------------------------------ clusters
    def clusters(self, method, cid, q):
        st = self.state
        if cid is None and method == "POST":
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                self.body_json()
                return self.error(415, "Content-Type must be application/json")
            c = self.body_json()
            with st.lock:
                st.stats["cluster_posts"] += 1
            if not isinstance(c, dict):
                return self.error(400, "Cluster: a JSON object is required")
            for k in ("name", "user", "version"):
                if not isinstance(c.get(k), str) or not c[k].strip():
                    return self.error(400, "%s: must not be empty" % k)
            if c.get("status") not in CLUSTER_STATUSES:
                return self.error(400, "status: one of %s" % ", ".join(CLUSTER_STATUSES))
            if not isinstance(c.get("tags", []), list) or \
                    not all(isinstance(t, str) for t in c.get("tags") or []):
                return self.error(400, "tags: a list of strings")
            self.effect_delay(*self.keys)
            cid = c.get("id") or str(uuid.uuid4())
            with st.lock:
                dup = cid in st.clusters
                if not dup:
                    st.clusters[cid] = dict(c, id=cid, updated=time.time(),
                                            seq=st.stats["clusters_created"],
                                            tags=final_tags(list(c.get("tags") or []), cid,
                                                            c["name"]))
                    st.stats["clusters_created"] += 1
                    if self.timing is not None:
                        st.listed_at[cid] = time.time() + self.timing.lag_s()
                    self.log_effect("POST /clusters", tag_value(c.get("tags") or [], RUN_KEY_TAG,
                                                                None),
                                    cid, c["name"], lambda: st.clusters[cid]["status"])
            if dup:
                return self.slow_reply(409, self.error_body(409, "A cluster with id %s already exists" % cid))
            loc = "http://%s/api/v3/clusters/%s" % (self.headers.get("Host", "localhost"), cid)
            return self.slow_reply(201, b"", headers=[("Location", loc)])
        if cid is None and method == "GET":
            self.body_json()
            name = q.get("name", [None])[0]
            statuses = set(q.get("status", []))
            tags = set(q.get("tag", []))
            size = int(q.get("size", ["64"])[0])
            with st.lock:
                now = time.time()
                found = [c for c in sorted(st.clusters.values(), key=lambda c: -c["updated"])
                         if st.listed_at.get(c["id"], 0) <= now   # list_lag_ms
                         and (name is None or like(name, c["name"]))
                         and (not statuses or c["status"] in statuses)
                         and tags <= set(c["tags"])]
            page = {"size": size, "totalElements": len(found),
                    "totalPages": (len(found) + size - 1) // size, "number": 0}
            body = {"_links": {"self": {"href": self.path}}, "page": page}
            if found:
                body["_embedded"] = {"clusterList": found[:size]}
            return self.slow_reply(200, body, ctype="application/hal+json")
        if cid is None:
            self.body_json()
            return self.error(404, "unsupported")
        if method == "PATCH":
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                self.body_json()
                return self.error(415, "Content-Type 'application/json' is required")
            patch = self.body_json()
            if not isinstance(patch, list):
                return self.error(400, "a JSON Patch is a list of operations")
            for op in patch:
                if not isinstance(op, dict) or op.get("op") != "replace" or \
                        op.get("path") != "/status" or op.get("value") not in CLUSTER_STATUSES:
                    return self.error(400, "unsupported patch operation %r" % (op,))
            with st.lock:
                st.stats["cluster_patches"] += 1
                c = st.clusters.get(cid)
                for op in patch if c else []:
                    c["status"] = op["value"]
                    c["updated"] = time.time()
            if c is None:
                return self.error(404, "No cluster with id %s exists" % cid)
            return self.slow_reply(204, b"")
        self.body_json()
        if method != "GET":
            return self.error(404, "unsupported")
        with st.lock:
            c = st.clusters.get(cid)
            c = dict(c) if c else None
        if c is None:
            return self.error(404, "No cluster with id %s exists" % cid)
        return self.slow_reply(200, c, ctype="application/hal+json")

    def commands(self, method, mid, q):
        """Genie 3's command resource: create, get, search (HAL)."""
        st = self.state
        if mid is None and method == "POST":
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                self.body_json()
                return self.error(415, "Content-Type must be application/json")
            m = self.body_json()
            if not isinstance(m, dict):
                return self.error(400, "Command: a JSON object is required")
            for k in ("name", "user", "version"):
                if not isinstance(m.get(k), str) or not m[k].strip():
                    return self.error(400, "%s: must not be empty" % k)
            if m.get("status") not in COMMAND_STATUSES:
                return self.error(400, "status: one of %s" % ", ".join(COMMAND_STATUSES))
            if not (isinstance(m.get("executable"), str) and m["executable"].strip()) and \
                    not (isinstance(m.get("executableAndArguments"), list) and
                         m["executableAndArguments"]):
                return self.error(400, "executable: must not be empty")
            if not isinstance(m.get("tags", []), list) or \
                    not all(isinstance(t, str) for t in m.get("tags") or []):
                return self.error(400, "tags: a list of strings")
            mid = m.get("id") or str(uuid.uuid4())
            with st.lock:
                dup = mid in st.commands
                if not dup:
                    st.commands[mid] = dict(m, id=mid, tags=final_tags(list(m.get("tags") or []),
                                                                      mid, m["name"]))
                    st.stats["commands_created"] += 1
            if dup:
                return self.error(409, "A command with id %s already exists" % mid)
            loc = "http://%s/api/v3/commands/%s" % (self.headers.get("Host", "localhost"), mid)
            return self.reply(201, b"", headers=[("Location", loc)])
        self.body_json()
        if method != "GET":
            return self.error(404, "unsupported")
        if mid is not None:
            with st.lock:
                m = st.commands.get(mid)
                m = dict(m) if m else None
            if m is None:
                return self.error(404, "No command with id %s exists" % mid)
            return self.reply(200, m, ctype="application/hal+json")
        name = q.get("name", [None])[0]
        statuses, tags = set(q.get("status", [])), set(q.get("tag", []))
        size = int(q.get("size", ["64"])[0])
        with st.lock:
            found = [dict(m) for m in st.commands.values()
                     if (name is None or like(name, m["name"]))
                     and (not statuses or m["status"] in statuses) and tags <= set(m["tags"])]
        body = {"_links": {"self": {"href": self.path}},
                "page": {"size": size, "totalElements": len(found),
                         "totalPages": (len(found) + size - 1) // size, "number": 0}}
        if found:
            body["_embedded"] = {"commandList": found[:size]}
        return self.reply(200, body, ctype="application/hal+json")

    def cluster_commands(self, method, cid):
        """/api/v3/clusters/{id}/commands: GET the linked commands, POST
        (add) or PUT (set) a JSON list of command ids, DELETE them all."""
        st = self.state
        body = self.body_json() if method in ("POST", "PUT") else (self.body_json() and None)
        with st.lock:
            if cid not in st.clusters:
                return self.error(404, "No cluster with id %s exists" % cid)
            if method == "GET":
                out = [dict(st.commands[x]) for x in st.links.get(cid, []) if x in st.commands]
                return self.reply(200, out)
            if method == "DELETE":
                st.links.pop(cid, None)
                st.stats["link_deletes"] += 1
                return self.reply(204, b"")
            if method not in ("POST", "PUT"):
                return self.error(405, "Request method '%s' not supported" % method)
            if not isinstance(body, list) or not all(isinstance(x, str) for x in body):
                return self.error(400, "a JSON list of command ids is required")
            for x in body:
                if x not in st.commands:
                    return self.error(404, "No command with id %s exists" % x)
            cur = [] if method == "PUT" else st.links.get(cid, [])
            st.links[cid] = cur + [x for x in body if x not in cur]
            st.stats["link_sets"] += 1
        return self.reply(204, b"")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_PUT(self):
        self.handle_any("PUT")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--auth", help="basic:USER:PASSWORD")
    ap.add_argument("--token", help="bearer token")
    fake_timing.add_arguments(ap)
    a = ap.parse_args()
    Handler.state = State()
    Handler.timing = fake_timing.Timing.from_args(a)
    Handler.timing.bind(Handler.state.stats, Handler.state.lock)
    if a.auth:
        kind, _, cred = a.auth.partition(":")
        if kind != "basic" or ":" not in cred:
            ap.error("--auth basic:USER:PASSWORD")
        Handler.auth = "Basic " + base64.b64encode(cred.encode()).decode()
    elif a.token:
        Handler.auth = "Bearer " + a.token
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
