#!/usr/bin/python3
"""Exactly once, for real: a deposed, paused or handing-off leader's remote
call never lands after its successor looked (docs/failover.md, Rule 4).

Three real batond nodes (harness servers of our own) against the EMR and
Livy stand-ins with realistic timing: a create takes effect, and becomes
visible to the list calls, only after its delay (RunJobFlow 600-1,000 ms,
AddJobFlowSteps 300-500 ms, POST /batches 300-800 ms; lists lag 300 ms), and
Livy's refusal of a second batch with a name it holds is switched off, so
nothing but baton stands between a fault and a twin. Livy is reached
through tests/fakes/hold_proxy.py, which can hold a request's bytes.

Every case asserts from the stand-ins' own effect logs (/_effects), never
from baton's: one submission per task-run key, or, where only the duplicate
sweep can help (a request held past the transit bound), a twin cancelled
and counted. Each fault case repeats BATON_T4500_ROUNDS rounds (default 3;
the figures in docs/failover.md come from 50), with the seed printed. The
last case injects BATON_T4500_FAULTS mixed faults (default 12) under a
steady load and prints what it did as one JSON line.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import (FAKES, SESSION_MS, ZK, Cluster, Fake, WorkflowCase,  # noqa: E402
                      aws_env, batonctl, end_liveness_backend, harness, wait_for)

AK, SK = "AKIAT4500EXAMPLE", "t4500/secret+key=="
ROUNDS = int(os.environ.get("BATON_T4500_ROUNDS", "3"))
FAULTS = int(os.environ.get("BATON_T4500_FAULTS", "12"))
SEED = int(os.environ.get("BATON_T4500_SEED", str(int(time.time()))))
TRANSIT_S, SETTLE_S = 2.0, 1.0

GROUPS = ("\n" + " " * 6 + "instance_groups:\n" + " " * 8 +
          "- {name: master, role: MASTER, instance_type: m5.xlarge, instance_count: 1}")
MIX = """
workflow: mix
schedule: none
max_active_runs: 64
max_active_tasks: 64
defaults: {retries: 0}
tasks:
  - id: cluster
    emr_create_cluster:
      name: t4500-mix
      release_label: emr-6.15.0
      keep_alive_when_no_steps: true
      wait_until_ready: false""" + GROUPS + """
  - id: step
    depends_on: [cluster]
    emr_add_step:
      cluster_id: "{{ tasks.cluster.cluster_id }}"
      name: work
      args: [spark-submit, "fake:sleep=0.2"]
      wait_for_completion: false
  - id: spark
    livy_batch: {file: s3://acme/job.py, conf: {fake.duration_ms: "300"}}
"""


def batches(wf, n, extra="", duration_ms=300):
    tasks = "".join("\n  - id: b%02d\n    livy_batch: {file: s3://acme/job.py, conf: "
                    "{fake.duration_ms: \"%d\"}%s}" % (i, duration_ms, extra) for i in range(n))
    return ("workflow: %s\nschedule: none\nmax_active_runs: 64\nmax_active_tasks: 128\n"
            "defaults: {retries: 0}\ntasks:%s\n" % (wf, tasks))


class Proxy:
    """hold_proxy.py in front of `port`."""

    def __init__(self, port):
        self.proc = subprocess.Popen([sys.executable, os.path.join(FAKES, "hold_proxy.py"),
                                      "--target", "127.0.0.1:%d" % port, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])
        self.control = int(self.proc.stdout.readline().split()[1])

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.control, path), data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


def zk_server_of(session):
    """Which harness ZooKeeper server (1-3) holds this session ('cons')."""
    for i, hp in enumerate(ZK.split(","), 1):
        host, port = hp.split(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2) as s:
                s.sendall(b"cons")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            continue
        if ("sid=0x%x" % session).encode() in data:
            return i
    return None


class ExactlyOnce(WorkflowCase):
    run_timeout = 120

    @classmethod
    def setUpClass(cls):
        print("t4500: seed %d, %d round(s) a case" % (SEED, ROUNDS), flush=True)

    def setUp(self):
        self.rnd = random.Random(SEED ^ zlib.crc32(self._testMethodName.encode()))
        self.c = self.emr = self.livy = self.proxy = None
        self.emr = Fake("emr_fake", "--access-key", AK, "--secret-key", SK,
                        "--effect-delay", "RunJobFlow=600-1000",
                        "--effect-delay", "AddJobFlowSteps=300-500",
                        "--effect-delay", "*=10-60", "--list-lag-ms", "300")
        self.livy = Fake("livy_fake", "--effect-delay", "POST /batches=300-800",
                         "--effect-delay", "*=10-50", "--list-lag-ms", "300",
                         "--allow-duplicate-names")
        self.proxy = Proxy(self.livy.port)
        env = aws_env(AK, SK)
        self.c = Cluster(extra="emr:\n  endpoint: http://127.0.0.1:%d\n  region: us-east-1\n"
                               "livy:\n  url: http://127.0.0.1:%d\n  poll_interval: 200ms\n"
                               "dispatch:\n  transit_bound: %dms\n  settle: %dms\n"
                               "  drain_timeout: 10s\n"
                         % (self.emr.port, self.proxy.port, TRANSIT_S * 1000, SETTLE_S * 1000),
                         env=env)
        self.c.start()
        self.expected = 0  # runs of `mix` triggered so far

    def tearDown(self):
        violations = self.c.stop() if self.c else []
        for f in (self.emr, self.livy, self.proxy):
            if f:
                f.stop()
        self.assertEqual(violations, [], "invariant violated")

    # -------------------------------------------------------------- helpers
    def effects(self, fake, dups=False):
        return fake.call("GET", "/_effects" + ("?dups=1" if dups else ""))

    def submissions(self, fake):
        """{key: n} of every create that took effect."""
        out = {}
        for e in self.effects(fake):
            if e["key"]:
                out[(e["op"], e["key"])] = out.get((e["op"], e["key"]), 0) + 1
        return out

    def trigger(self, wf, n=1):
        for _ in range(n):
            batonctl(self.c.name, "trigger", wf)

    def leader(self):
        return self.c.wait_leader(SESSION_MS / 1000 * 5)

    def arrived(self, what):
        """Creates that reached a stand-in (taken effect or not)."""
        if what == "emr":
            calls = self.emr.stats()["calls"]
            return calls.get("RunJobFlow", 0) + calls.get("AddJobFlowSteps", 0)
        return self.livy.stats()["requests"].get("POST /batches", 0)

    def wait_arrivals(self, what, more_than):
        return wait_for(lambda: self.arrived(what) > more_than, 30, what + " creates in flight")

    def wait_all_done(self, wf, n):
        fin = self.wait_runs_done(wf, n, timeout=self.run_timeout)
        bad = [r for r in fin if r[1] != "success"]
        self.assertEqual(bad, [], "%s runs that did not succeed\n%s" % (wf, self.c.describe()))

    def assert_once(self, expect_twins=0):
        """One effect per run key at every stand-in (but the twins the sweep
        is expected to have cancelled)."""
        dups = self.effects(self.emr, True) + self.effects(self.livy, True)
        keys = {(e["op"], e["key"]) for e in dups}
        self.assertLessEqual(len(keys), expect_twins,
                             "twins at the stand-ins: %s\n%s" % (json.dumps(dups, indent=1),
                                                                  self.c.describe()))
        return dups

    def handoff(self):
        old, _ = self.leader()
        self.c.request_handoff()
        wait_for(lambda: (lambda l: l if l and l[0][0] is not old else None)(self.c.leaders()),
                 20, "a new leader after the handoff")
        # fulfilled: the new leader deletes the request after its fence
        # write, a moment after it dispatches (batonctl failover --wait)
        wait_for(lambda: not self.c.handoff_pending(), 20, "the handoff request fulfilled")
        return old

    def stat(self, key):
        return sum(((n.status() or {}).get("exactly_once") or {}).get(key, 0)
                   for n in self.c.nodes)

    # -------------------------------------------------------------- cases
    def mix_rounds(self, fault, wait_livy=False):
        """ROUNDS times: two runs of MIX, `fault` once their creates are on
        their way, then every run done, each create once."""
        self.apply(MIX)
        for r in range(ROUNDS):
            before = self.arrived("emr"), self.arrived("livy")
            self.trigger("mix", 2)
            self.expected += 2
            self.wait_arrivals("emr", before[0])
            if wait_livy:
                self.wait_arrivals("livy", before[1])
            fault()
            self.wait_all_done("mix", self.expected)
            self.assert_once()
        self.assertEqual(len(self.submissions(self.emr)), 2 * self.expected)
        self.assertEqual(len(self.submissions(self.livy)), self.expected)

    def test_01_planned_handoff_with_creates_in_flight(self):
        # RunJobFlow, AddJobFlowSteps and a Livy POST each in flight when the
        # operator asks for a handoff: the old leader finishes them and writes
        # their outcomes before it lets go
        def fault():
            time.sleep(self.rnd.uniform(0, 0.4))
            old = self.handoff()
            self.assertIn("calls finished", old.logtext())
        self.mix_rounds(fault, wait_livy=True)

    def test_02_sigstop_with_creates_queued_unsent(self):
        # 16 POSTs against 8 connections: half of them wait in the leader's
        # transport when it is frozen past its session. On SIGCONT they must
        # never leave: the successor has looked (and submitted) by then.
        self.apply(batches("burst", 8))
        for r in range(ROUNDS):
            before = self.arrived("livy")
            self.trigger("burst", 2)
            self.wait_arrivals("livy", before)
            leader, _ = self.leader()
            leader.signal(signal.SIGSTOP)
            try:
                self.c.wait_leader(SESSION_MS / 1000 * 6, exclude=leader)
                time.sleep(TRANSIT_S + SETTLE_S + 1)  # the successor submits meanwhile
            finally:
                leader.signal(signal.SIGCONT)
            self.wait_all_done("burst", 2 * (r + 1))
            time.sleep(1)  # anything the resumed node still had would be out by now
            self.assert_once()
        self.assertEqual(len(self.submissions(self.livy)), 16 * ROUNDS)

    def test_03_sigstop_with_a_create_half_written(self):
        # A POST whose body is larger than the socket buffers, held by the
        # proxy after 1,000 bytes: the leader is frozen with the rest unsent.
        # The successor submits; when the old leader resumes, its pause check
        # cuts the request off before curl writes another byte, and Livy
        # discards what arrived (a truncated request).
        files = ", ".join('"s3://acme/lib/%04d-%s.jar"' % (i, "x" * 80) for i in range(3000))
        self.apply(batches("big", 1, ", files: [%s]" % files))
        for r in range(ROUNDS):
            self.proxy.call("POST", "/hold", {"match": "POST /batches", "after_bytes": 1000})
            self.trigger("big")
            held = wait_for(lambda: self.proxy.call("GET", "/state")["held"], 30, "a held POST")
            time.sleep(0.5)  # curl writes until the buffers are full
            leader, _ = self.leader()
            leader.signal(signal.SIGSTOP)
            before, cut = len(leader.logtext()), self.stat("cut_off")
            try:
                self.c.wait_leader(SESSION_MS / 1000 * 6, exclude=leader)
                wait_for(lambda: len(self.effects(self.livy)) > r, 30, "the successor's batch")
            finally:
                leader.signal(signal.SIGCONT)
            # the old leader never finishes the POST: its pause check cuts it
            # off, or, when the freeze outlasted the request's own timeout
            # (the successor waits out the transit bound and a settle before
            # it submits: on a loaded machine that can pass 30 s), curl's
            # timer ends it first; either way the rest is never written
            wait_for(lambda: "cut off" in leader.logtext()[before:] or
                     self.stat("cut_off") > cut or "timed out" in leader.logtext()[before:],
                     20, "the old leader to end its request unfinished")
            self.proxy.call("POST", "/release", {"id": held[0]["id"], "mode": "forward"})
            wait_for(lambda: self.livy.stats().get("truncated_requests", 0) > r, 20,
                     "Livy to discard the truncated POST")
            self.wait_all_done("big", r + 1)
            self.assert_once()
        self.assertEqual(len(self.submissions(self.livy)), ROUNDS)

    def test_04_kill9_mid_call(self):
        def fault():
            time.sleep(self.rnd.uniform(0, 0.6))
            leader, _ = self.leader()
            leader.kill9()
            self.c.wait_leader(SESSION_MS / 1000 * 6, exclude=leader)
            leader.start()
        self.mix_rounds(fault)

    def test_05_two_handoffs_within_one_call(self):
        def fault():
            self.handoff()
            self.handoff()
        self.mix_rounds(fault)

    def test_06_zookeeper_server_lost_under_the_leader(self):
        # the leader is suspended and resumes with the same epoch: its own
        # RunJobFlow is still in flight, and its answer, not a lookup, says
        # what happened
        def fault():
            _, st = self.leader()
            server = zk_server_of(st["zk_session"])
            self.assertIsNotNone(server, "the leader's ZooKeeper server")
            harness("zk", str(server), "kill")
            try:
                time.sleep(1.5)
            finally:
                harness("zk", str(server), "start")
        self.mix_rounds(fault)

    def test_07_throttled_create_at_the_handoff(self):
        # RunJobFlow throttled: the leader's transport waits to retry it when
        # the handoff comes; the retry must never be sent, and the successor
        # submits the one cluster
        self.apply(MIX)
        for r in range(ROUNDS):
            self.emr.fault(op="RunJobFlow", mode="throttle", count=2)
            fired = self.emr.stats()["faults_fired"]
            self.trigger("mix")
            self.expected += 1
            wait_for(lambda: self.emr.stats()["faults_fired"] > fired, 30, "a throttled create")
            self.handoff()
            self.wait_all_done("mix", self.expected)
            self.emr.call("DELETE", "/_fault")
            self.assert_once()
        self.assertEqual(len(self.submissions(self.emr)), 2 * self.expected)

    def test_08_burst_against_a_slow_service_without_faults(self):
        # 100 batches at once against a Livy that creates one at a time
        # (about 25 s for all): with the connection limit, a POST that waited
        # in our queue is sent with its whole timeout (never with what is
        # left of its 20 s budget, which made the old code time out after
        # Livy had it, look it up too early and post it again), and one that
        # waited too long is not sent at all; nothing is ever "unknown"
        self.livy.call("POST", "/_config", {"serial_creates": True,
                                            "effect_delay_ms": {"POST /batches": [200, 300]}})
        self.apply(batches("wide", 100))
        self.trigger("wide")
        self.wait_all_done("wide", 1)
        self.assert_once()
        self.assertEqual(len(self.submissions(self.livy)), 100)

    def test_09_held_past_the_transit_bound_the_sweep_cancels_the_twin(self):
        # What timing cannot cover: a request delayed in the network past the
        # transit bound. The proxy holds a whole POST; the leader dies; the
        # successor looks (after the bound), finds nothing, submits; then the
        # held POST arrives. The sweep finds both, keeps the first created
        # and deletes the other, counted and recorded as an event.
        # long enough that the twin still runs when the sweep comes
        self.apply(batches("late", 1, duration_ms=10000))
        self.proxy.call("POST", "/hold", {"match": "POST /batches", "after_bytes": 0})
        self.trigger("late")
        held = wait_for(lambda: self.proxy.call("GET", "/state")["held"], 30, "a held POST")
        time.sleep(0.3)
        leader, _ = self.leader()
        leader.kill9()
        self.c.wait_leader(SESSION_MS / 1000 * 6, exclude=leader)
        wait_for(lambda: self.effects(self.livy), 30, "the successor's batch")
        # the late POST lands at once and is listed at once: the sweep, a
        # settle time after the successor wrote its batch down, must see it
        self.livy.call("POST", "/_config", {"effect_delay_ms": {"POST /batches": [0, 0]},
                                            "list_lag_ms": 0})
        self.proxy.call("POST", "/release", {"id": held[0]["id"], "mode": "forward"})
        wait_for(lambda: len(self.effects(self.livy)) == 2, 20, "the late POST to land")
        wait_for(lambda: self.stat("duplicates_cancelled") >= 1, 20, "the sweep")
        twins = self.assert_once(expect_twins=1)
        states = sorted(e["state"] for e in twins)
        self.assertEqual(states[0], "deleted", twins)
        self.assertTrue(self.q("SELECT count(*) FROM events WHERE cluster = $C "
                               "AND kind = 'duplicate_cancelled'") == "1")
        leader.start()
        self.wait_all_done("late", 1)



    def test_10_mixed_faults_under_load(self):
        # kill -9, SIGSTOP longer and shorter than the session, planned
        # handoffs, ZooKeeper server and PostgreSQL loss, the leader's
        # liveness backend ended, chosen from the seed, while a run (three
        # creates) is triggered every second
        self.apply(MIX)
        stop, triggered = threading.Event(), [0]

        def feed():
            while not stop.wait(1.0):
                try:
                    self.trigger("mix")
                    triggered[0] += 1
                except AssertionError:
                    pass  # PostgreSQL down on purpose: the next second

        def sigstop(seconds):
            leader, _ = self.leader()
            leader.signal(signal.SIGSTOP)
            time.sleep(seconds)
            leader.signal(signal.SIGCONT)

        def kill9():
            leader, _ = self.leader()
            leader.kill9()
            self.c.wait_leader(SESSION_MS / 1000 * 6, exclude=leader)
            leader.start()

        def zk_loss():
            _, st = self.leader()
            server = zk_server_of(st["zk_session"]) or self.rnd.randint(1, 3)
            harness("zk", str(server), "kill")
            time.sleep(self.rnd.uniform(0.5, 2.0))
            harness("zk", str(server), "start")

        def pg_restart():
            harness("pg", "restart")

        def backend_ended():
            _, st = self.leader()
            end_liveness_backend(st["zk_session"])

        faults = {"kill9": kill9, "sigstop_long": lambda: sigstop(self.rnd.uniform(3.5, 6)),
                  "liveness_backend_ended": backend_ended,
                  "sigstop_short": lambda: sigstop(self.rnd.uniform(0.5, 2.5)),
                  "handoff": self.handoff, "zk_server_loss": zk_loss, "pg_restart": pg_restart}
        done = {k: 0 for k in faults}
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            for _ in range(FAULTS):
                time.sleep(self.rnd.uniform(0.3, 2.0))  # calls in flight, at random points
                kind = self.rnd.choice(sorted(faults))
                faults[kind]()
                done[kind] += 1
                self.leader()
        finally:
            stop.set()
            feeder.join()
        self.wait_all_done("mix", triggered[0])
        twins = self.assert_once()
        creates = len(self.effects(self.emr)) + len(self.effects(self.livy))
        self.assertEqual(len(self.submissions(self.emr)), 2 * triggered[0])
        self.assertEqual(len(self.submissions(self.livy)), triggered[0])
        print("t4500 mixed: " + json.dumps({
            "seed": SEED, "faults": FAULTS, "by_kind": done, "runs": triggered[0],
            "remote_creates": creates, "twins": len(twins),
            "duplicates_cancelled": self.stat("duplicates_cancelled"),
            "not_found_waits": self.stat("not_found_waits"), "not_sent": self.stat("not_sent"),
            "cut_off": self.stat("cut_off")}), flush=True)

    def test_11_fast_takeover_while_creates_are_in_flight(self):
        # coordination.fast_takeover (on): the first standby claims the
        # moment the leader's liveness lock is released. Each round, with
        # creates on their way: the leader killed (a real death, claimed
        # within milliseconds, long before its session expires); its lock's
        # backend ended while it lives (a false takeover: it must send
        # nothing from the moment the connection broke); or both at once:
        # frozen, its backend ended, a successor leading, then resumed,
        # when it must find itself deposed before it sends a byte.
        kinds = ("kill9", "backend_ended", "frozen_and_backend_ended")
        done = {k: 0 for k in kinds}

        def fault():
            kind = kinds[sum(done.values()) % len(kinds)]
            time.sleep(self.rnd.uniform(0, 0.6))
            leader, st = self.leader()
            wait_for(lambda: (leader.status() or {}).get("liveness", {}).get("held"), 10,
                     "the leader to hold its liveness lock")
            if kind == "kill9":
                leader.kill9()
                new, _ = self.c.wait_leader(SESSION_MS / 1000 * 6, exclude=leader)
                self.assertIn("taking over without waiting", new.logtext())
                leader.start()
            elif kind == "backend_ended":
                # a takeover may happen (the first standby was waiting) or
                # not (it was between two places in line): either way one
                # leader, and nothing sent twice
                self.assertEqual(end_liveness_backend(st["zk_session"]), 1)
                time.sleep(0.5)
                self.c.wait_leader(SESSION_MS / 1000 * 6)
            else:
                leader.signal(signal.SIGSTOP)
                before = len(leader.logtext())
                try:
                    self.assertEqual(end_liveness_backend(st["zk_session"]), 1)
                    self.c.wait_leader(SESSION_MS / 1000 * 6, exclude=leader)
                    time.sleep(self.rnd.uniform(0, 1.0))  # well inside its session
                finally:
                    leader.signal(signal.SIGCONT)
                # deposed, whichever it learns first: its lock another's
                # ("taken over while alive"), its next fenced write refused
                # ("fenced"), its znode gone, or its session expired when no
                # standby was watching; the log is the node's whole life, so
                # only what it wrote since the freeze counts
                wait_for(lambda: (leader.status() or {}).get("role") == "standby" and
                         ("stepping down:" in leader.logtext()[before:] or
                          "session expired" in leader.logtext()[before:]), 20,
                         "the resumed leader to find itself deposed")
            done[kind] += 1
        self.mix_rounds(fault)
        fast = sum((n.status() or {}).get("liveness", {}).get("fast_takeovers", 0)
                   for n in self.c.nodes if n.proc.poll() is None)
        print("t4500 fast takeover: " + json.dumps({"seed": SEED, "rounds": done,
                                                     "fast_takeovers_live_nodes": fast}),
              flush=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
