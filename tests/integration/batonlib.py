"""Shared pieces of the Python integration tests: real batond nodes against
the harness's servers (BATON_TEST_ZK, BATON_TEST_PG), a checker of the
one-leader invariants, and small helpers.

A checker polls every node's GET /status and the fence row throughout and
asserts at every moment:
  - at most one node dispatches: a node that reports dispatching with epoch
    e at time t while another reports dispatching with epoch e' > e that
    started (leader_since_ms) before t is a violation (one machine, one
    clock, so the comparison is exact and sampling skew cannot fake one);
  - the fence epoch in PostgreSQL never goes down;
  - no ZooKeeper session ever holds two candidates in the election.

Fake runs one of the stand-ins of tests/fakes; WorkflowCase is the base of
cases that apply workflows to a Cluster and read what ran.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import urllib.error
import urllib.request

from kazoo.client import KazooClient

ZK = os.environ["BATON_TEST_ZK"]
PG = os.environ["BATON_TEST_PG"]
HARNESS = os.environ["BATON_HARNESS"]
HDIR = os.environ["BATON_TEST_HARNESS_DIR"]
BATOND = os.environ["BATOND"]
BATONCTL = os.environ.get("BATONCTL", "")
SESSION_MS = 3000  # small, so expiry scenarios stay quick
FAKES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes")


def free_port():
    """A port for a node's HTTP server, reserved through the harness: below
    the kernel's ephemeral range, so an outgoing connection (ours to
    PostgreSQL, ZooKeeper's, another test's) cannot take it before the node
    binds it, as a bind(0) port could."""
    out = subprocess.run([HARNESS, "ports", HDIR, "1"], check=True, capture_output=True,
                         text=True, timeout=60)
    return int(out.stdout.split()[0])


def psql(sql):
    out = subprocess.run(["psql", "-X", "-At", PG, "-c", sql], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


def end_liveness_backend(zk_session):
    """Ends the PostgreSQL backend that holds a leader's liveness lock (its
    application_name carries its ZooKeeper session: coord/liveness.c), as an
    operator's pg_terminate_backend, or a network blip, would. The number of
    backends ended (0 or 1)."""
    return int(psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'batond-liveness:0x%016x:%%'"
                    % (zk_session & 0xffffffffffffffff)))


def batonctl(cluster, *args, check=True):
    """Runs batonctl against the harness's PostgreSQL for `cluster`."""
    out = subprocess.run([BATONCTL, "--pg", PG, "--zk", ZK, "--cluster", cluster, *args],
                         capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise AssertionError("batonctl %s: exit %d\n%s%s" % (" ".join(args), out.returncode,
                                                             out.stdout, out.stderr))
    return out


def aws_env(ak, sk, **more):
    """A node's environment for the EMR stand-in: these keys and nothing
    else to find (no shared file, no instance metadata), polls every 200 ms."""
    env = {"AWS_ACCESS_KEY_ID": ak, "AWS_SECRET_ACCESS_KEY": sk, "AWS_SESSION_TOKEN": "",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
           "BATON_EMR_POLL_INTERVAL_MS": "200"}
    env.update(more)
    return env


def genie_register(fake, cluster, commands=(), headers=None):
    """What a Genie administrator has done before a job runs on a cluster:
    registered it and (Genie 3) linked to it an ACTIVE command for each tag
    set in `commands` (each command created once, id cmd-<tags>)."""
    fake.call("POST", "/api/v3/clusters", cluster, headers=headers)
    ids = []
    for tags in commands:
        cid = "cmd-" + "-".join(t.replace(":", "_") for t in tags)
        try:
            fake.call("POST", "/api/v3/commands",
                      {"id": cid, "name": cid, "user": "platform", "version": "1",
                       "status": "ACTIVE", "executable": "/usr/bin/" + cid, "tags": list(tags)},
                      headers=headers)
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise
        ids.append(cid)
    if ids:
        fake.call("POST", "/api/v3/clusters/%s/commands" % cluster["id"], ids, headers=headers)
    return ids


def harness(*args):
    subprocess.run([HARNESS, *args[:1], HDIR, *args[1:]], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


class Node:
    def __init__(self, cluster, name, zone, workdir, extra="", env=None):
        self.name, self.zone = name, zone
        self.env = dict(os.environ, **(env or {}))
        self.port = free_port()
        self.log = os.path.join(workdir, name + ".log")
        self.cfg = os.path.join(workdir, name + ".yaml")
        with open(self.cfg, "w") as f:
            f.write("cluster: %s\nnode_id: %s\nzone: %s\nhttp: 127.0.0.1:%d\n"
                    "zookeeper:\n  hosts: %s\n  session_timeout: %dms\n"
                    "postgres:\n  conninfo: \"%s\"\n%s"
                    % (cluster, name, zone, self.port, ZK, SESSION_MS, PG, extra))
        self.proc = None
        self.stopped = False

    def start(self):
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([BATOND, "--config", self.cfg], stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env)
        self.stopped = False

    def status(self):
        if self.stopped or not self.proc or self.proc.poll() is not None:
            return None
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % self.port, timeout=0.5) as r:
                return json.load(r)
        except Exception:
            return None

    def signal(self, sig):
        self.proc.send_signal(sig)
        self.stopped = sig == signal.SIGSTOP

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            if self.stopped:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not exit on SIGTERM" % self.name)
        return self.proc.returncode if self.proc else None

    def logtext(self):
        with open(self.log) as f:
            return f.read()


class Checker(threading.Thread):
    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.nodes = []
        self.samples = []
        self.violations = []
        self.epochs = []
        self.stop_flag = False
        self.zk = None      # set by Cluster: lists the election
        self.election = None

    def check_candidates(self):
        try:
            names = self.zk.get_children_async(self.election).get(timeout=0.5)
        except Exception:
            return  # not created yet, or ZooKeeper down on purpose
        sessions = [n.split("_")[1] for n in names if n.startswith("c_")]
        for sid in set(sessions):
            if sessions.count(sid) > 1:
                self.violations.append("session %s holds %d candidates: %s"
                                       % (sid, sessions.count(sid), sorted(names)))

    def run(self):
        last_pg = 0
        while not self.stop_flag:
            for n in list(self.nodes):
                st = n.status()
                if st:
                    self.samples.append(st)
                    self.check(st)
            if time.time() - last_pg > 0.2:
                last_pg = time.time()
                try:
                    e = psql("SELECT epoch FROM fence WHERE cluster = '%s'" % self.cluster)
                    if e:
                        e = int(e)
                        if self.epochs and e < self.epochs[-1]:
                            self.violations.append("fence epoch went down: %d -> %d" % (self.epochs[-1], e))
                        self.epochs.append(e)
                except Exception:
                    pass  # PostgreSQL may be down on purpose
                if self.zk:
                    self.check_candidates()
            time.sleep(0.01)

    def check(self, st):
        if not st["dispatching"]:
            return
        for other in reversed(self.samples[-400:]):
            if (other["dispatching"] and other["node"] != st["node"] and other["epoch"] > st["epoch"]
                    and other["leader_since_ms"] <= st["now_ms"]):
                self.violations.append("%s dispatching with epoch %d at %d, but %s leads with epoch %d "
                                       "since %d" % (st["node"], st["epoch"], st["now_ms"], other["node"],
                                                     other["epoch"], other["leader_since_ms"]))
                return


class Cluster:
    count = 0

    def __init__(self, extra="", env=None, auth=None):
        Cluster.count += 1
        self.name = "c%d_%d" % (os.getpid(), Cluster.count)
        self.dir = tempfile.mkdtemp(prefix="baton-t2000-")
        self.nodes = [Node(self.name, "n%d" % i, "z%d" % i, self.dir, extra, env) for i in (1, 2, 3)]
        self.checker = Checker(self.name)
        self.checker.nodes = self.nodes
        self.zk = KazooClient(hosts=ZK, auth_data=[("digest", auth)] if auth else None)
        self.zk.start()
        self.base = "/baton/" + self.name
        self.checker.zk, self.checker.election = self.zk, self.base + "/election"

    def start(self):
        for n in self.nodes:
            n.start()
            time.sleep(0.1)
        self.checker.start()
        try:
            wait_for(lambda: all((n.status() or {}).get("role") not in (None, "starting")
                                 for n in self.nodes), 10, "every node in the election")
            return self.wait_leader(10)
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.describe())) from None

    def describe(self):
        """Every node's status and log tail: what a failed wait needs."""
        out = []
        for n in self.nodes:
            tail = n.logtext().splitlines()[-15:] if os.path.exists(n.log) else []
            out.append("--- %s: %s\n%s" % (n.name, n.status(), "\n".join(tail)))
        return "\n".join(out)

    def leaders(self):
        out = []
        for n in self.nodes:
            st = n.status()
            if st and st["dispatching"]:
                out.append((n, st))
        return out

    def wait_leader(self, timeout, exclude=None):
        def one():
            ls = [l for l in self.leaders() if l[0] is not exclude]
            return ls[0] if len(ls) == 1 else None
        return wait_for(one, timeout, "one dispatching leader")

    def no_leader_for(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            assert not self.leaders(), "a node dispatches without a quorum\n" + self.describe()
            time.sleep(0.05)

    def request_handoff(self, to=None):
        self.zk.create(self.base + "/control/handoff", json.dumps({"to": to}).encode())

    def handoff_pending(self):
        return self.zk.exists(self.base + "/control/handoff") is not None

    def stop(self):
        self.checker.stop_flag = True
        self.checker.join(5)
        for n in self.nodes:
            try:
                n.terminate()
            except AssertionError:
                pass
        self.zk.stop()
        self.zk.close()
        # the test build has ASan/UBSan/LSan: a report in any node's log
        # (a leak at exit, UB) fails the case like an invariant would
        for n in self.nodes:
            text = n.logtext() if os.path.exists(n.log) else ""
            if "Sanitizer" in text or "runtime error:" in text:
                self.checker.violations.append("sanitizer report in %s's log" % n.name)
        if self.checker.violations or os.environ.get("BATON_T2000_LOGS"):
            print("\n".join(self.checker.violations))
            for n in self.nodes:
                print("---- %s\n%s" % (n.name, n.logtext()[-3000:]))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.checker.violations




class Fake:
    """tests/fakes/<name>.py on a port of its own. It prints "listening
    PORT", then a "<what> PORT" line for each of extra_ports more (in
    self.extra). Every call sends `headers`; GET /_stats and POST /_fault
    are the stand-ins' control endpoints."""

    def __init__(self, name, *args, extra_ports=0, headers=None, timeout=5):
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.proc = subprocess.Popen([sys.executable, os.path.join(FAKES, name + ".py"),
                                      "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise AssertionError("%s.py did not start: %r" % (name, line))
        self.port = int(line.split()[1])
        self.extra = [int(self.proc.stdout.readline().split()[1]) for _ in range(extra_ports)]
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None, headers=None):
        """METHOD path with body as JSON; the answer's JSON, or None if empty."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={**self.headers, **(headers or {})})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def stats(self):
        return self.call("GET", "/_stats")

    def fault(self, **f):
        self.call("POST", "/_fault", f)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


class WorkflowCase(unittest.TestCase):
    """Helpers for cases that apply workflows to self.c (a Cluster)."""
    run_timeout = 30  # seconds wait_runs_done waits unless told

    def apply(self, text, *flags, check=True):
        """Writes the workflow (indented as in the test) into the cluster's
        directory and applies it; the files written are in self.files."""
        self.files = getattr(self, "files", [])
        path = os.path.join(self.c.dir, "wf%d.yaml" % len(self.files))
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        self.files.append(path)
        return batonctl(self.c.name, "workflow", "apply", *flags, path, check=check)

    def q(self, sql):
        """psql, with $C standing for the cluster's name."""
        return psql(sql.replace("$C", "'%s'" % self.c.name))

    def runs(self, wf):
        """[(run_id, state)...] of wf, in logical time order."""
        rows = self.q("SELECT run_id, state FROM workflow_runs WHERE cluster = $C "
                      "AND workflow_id = '%s' ORDER BY logical_time" % wf)
        return [tuple(r.split("|")) for r in rows.splitlines() if r]

    def wait_runs_done(self, wf, n=1, timeout=None):
        """Waits until n runs of wf have finished; their [(run_id, state)...]."""
        def done():
            fin = [r for r in self.runs(wf) if r[1] in ("success", "failed")]
            return fin if len(fin) >= n else None
        return wait_for(done, timeout or self.run_timeout, "%d finished run(s) of %s" % (n, wf))

    def wait_run_done(self, wf, timeout=None):
        """(run_id, state) of the first finished run of wf, waiting for one."""
        return self.wait_runs_done(wf, 1, timeout)[0]

    def tasks(self, wf):
        """{task: [(attempt, state)...]} of wf."""
        rows = self.q("SELECT task_id, attempt, state FROM task_runs WHERE cluster = $C AND "
                      "workflow_id = '%s' ORDER BY task_id, attempt" % wf)
        out = {}
        for r in rows.splitlines():
            t, a, s = r.split("|")
            out.setdefault(t, []).append((int(a), s))
        return out

    def task_state(self, wf, task):
        """The state of the task's newest attempt."""
        return self.q("SELECT state FROM task_runs WHERE cluster = $C AND workflow_id = '%s' "
                      "AND task_id = '%s' ORDER BY attempt DESC LIMIT 1" % (wf, task))

    def task_log(self, wf, run_id, task):
        """The task's newest attempt, as batonctl --json task logs shows it."""
        out = batonctl(self.c.name, "--json", "task", "logs", "%s/%s/%s" % (wf, run_id, task))
        return json.loads(out.stdout)[-1]


class CoordCase(unittest.TestCase):
    """A Cluster (self.c) per case, its invariants checked at the end, and
    what the coordination cases read besides /status."""
    CLUSTER = {}

    def setUp(self):
        self.c = Cluster(**self.CLUSTER)

    def tearDown(self):
        violations = self.c.stop()
        self.assertEqual(violations, [], "invariant violated")

    def epoch(self):
        return int(psql("SELECT epoch FROM fence WHERE cluster = '%s'" % self.c.name))

    def heartbeat(self):
        row = psql("SELECT epoch, beats FROM leader_heartbeat WHERE cluster = '%s'" % self.c.name)
        e, b = row.split("|")
        return int(e), int(b)

    def line(self):
        return [n.split("_")[2] for n in sorted(self.c.zk.get_children(self.c.base + "/election"),
                                                  key=lambda n: n.rsplit("_", 1)[1])]
