#!/usr/bin/python3
"""Coordination under faults: three real batond nodes, a real 3-server
ZooKeeper ensemble and PostgreSQL (tests/harness, servers of our own).

A checker polls every node's GET /status and the fence row throughout and
asserts two invariants at every moment:
  - at most one node dispatches: a node that reports dispatching with epoch
    e at time t while another reports dispatching with epoch e' > e that
    started (leader_since_ms) before t is a violation (one machine, one
    clock, so the comparison is exact and sampling skew cannot fake one);
  - the fence epoch in PostgreSQL never goes down;
  - no ZooKeeper session ever holds two candidates in the election.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

from kazoo.client import KazooClient

ZK = os.environ["BATON_TEST_ZK"]
PG = os.environ["BATON_TEST_PG"]
HARNESS = os.environ["BATON_HARNESS"]
HDIR = os.environ["BATON_TEST_HARNESS_DIR"]
BATOND = os.environ["BATOND"]
SESSION_MS = 3000  # small, so expiry scenarios stay quick


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def psql(sql):
    out = subprocess.run(["psql", "-X", "-At", PG, "-c", sql], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


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
        wait_for(lambda: all((n.status() or {}).get("role") not in (None, "starting") for n in self.nodes),
                 10, "every node in the election")
        return self.wait_leader(10)

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
            assert not self.leaders(), "a node dispatches without a quorum"
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
        if self.checker.violations or os.environ.get("BATON_T2000_LOGS"):
            print("\n".join(self.checker.violations))
            for n in self.nodes:
                print("---- %s\n%s" % (n.name, n.logtext()[-3000:]))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.checker.violations


class T2000Failover(unittest.TestCase):
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

    def test_01_kill9_leader(self):
        old, st = self.c.start()
        t0 = time.time()
        old.kill9()
        new, nst = self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        took = time.time() - t0
        self.assertNotEqual(new, old)
        self.assertGreater(nst["epoch"], st["epoch"])
        self.assertEqual(self.epoch(), nst["epoch"])
        print("kill -9: new leader %s after %.2f s (session timeout %.1f s)" % (new.name, took, SESSION_MS / 1000))

    def test_02_sigstop_past_session_timeout(self):
        old, st = self.c.start()
        old.signal(signal.SIGSTOP)
        new, nst = self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        time.sleep(0.5)
        old.signal(signal.SIGCONT)
        # it comes back as a follower, never dispatching again with its old epoch
        back = wait_for(lambda: (lambda s: s if s and s["role"] in ("standby", "starting") else None)(old.status()),
                        SESSION_MS / 1000 * 3, "old leader back as a follower")
        self.assertFalse(back["dispatching"])
        log = old.logtext()
        self.assertIn("not known good", log)  # paused on its own clock first
        # nothing of its epoch was written after the new leader's: fenced or never sent
        e, _ = self.heartbeat()
        self.assertEqual(e, nst["epoch"])
        self.assertEqual(self.epoch(), nst["epoch"])

    def test_03_one_zk_server_lost(self):
        leader, st = self.c.start()
        for victim in ("1", "2"):
            harness("zk", victim, "kill")
            time.sleep(SESSION_MS / 1000 * 1.5)
            still, sst = self.c.wait_leader(SESSION_MS / 1000 * 2)
            self.assertEqual(sst["epoch"], st["epoch"], "leadership changed on the loss of one ZK server")
            harness("zk", victim, "start")

    def test_04_two_zk_servers_lost(self):
        self.c.start()
        harness("zk", "1", "kill")
        harness("zk", "2", "kill")
        # every node stops dispatching within 2/3 of the session timeout
        # plus one heartbeat period
        wait_for(lambda: not self.c.leaders(), SESSION_MS / 1000 + 1.5, "every node to stop dispatching")
        self.c.no_leader_for(2)
        harness("zk", "1", "start")
        harness("zk", "2", "start")
        self.c.wait_leader(SESSION_MS / 1000 * 5)

    def test_05_postgresql_restart(self):
        leader, st = self.c.start()
        harness("pg", "restart")
        _, b0 = wait_for(lambda: self._hb_or_none(), 30, "heartbeats after the restart")
        wait_for(lambda: (self._hb_or_none() or (0, 0))[1] > b0 + 2, 15, "heartbeats to resume")
        now, nst = self.c.wait_leader(5)
        self.assertEqual(nst["epoch"], st["epoch"], "a PostgreSQL restart changed the leader")

    def _hb_or_none(self):
        try:
            return self.heartbeat()
        except Exception:
            return None

    def test_06_session_expiry_forced(self):
        # Expire the leader's session from the server's side: freeze the
        # process past the timeout with its connection open (nothing else
        # can end a session without its password), then check it rebuilds
        # everything from a fresh session.
        old, st = self.c.start()
        sid = st["zk_session"]
        old.signal(signal.SIGSTOP)
        self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        old.signal(signal.SIGCONT)
        back = wait_for(lambda: (lambda s: s if s and s["role"] == "standby" and s["zk_session"] != sid else None)(old.status()),
                        10, "a new session and a new candidate")
        self.assertIn("session expired", old.logtext())
        self.assertTrue(back["zk_known_good"])

    def test_07_planned_handoff(self):
        old, st = self.c.start()
        t0 = time.time()
        self.c.request_handoff()
        wait_for(lambda: not self.c.handoff_pending(), 5, "the handoff to complete")
        took = time.time() - t0
        new, nst = self.c.wait_leader(2)
        self.assertNotEqual(new, old)
        self.assertGreater(nst["epoch"], st["epoch"])
        self.assertLess(took, SESSION_MS / 1000, "a planned handoff must not wait for a session timeout")
        print("planned handoff: %s -> %s in %.0f ms" % (old.name, new.name, took * 1000))
        ev = psql("SELECT detail->>'previous_node' FROM events WHERE cluster='%s' AND kind='leader' "
                  "AND epoch=%d" % (self.c.name, nst["epoch"]))
        self.assertEqual(ev, old.name)
        # one request, one change: the new leader does not take it as its own
        time.sleep(1)
        self.assertIs(self.c.wait_leader(2)[0], new)
        self.assertEqual(psql("SELECT count(*) FROM events WHERE cluster='%s' AND kind='leader'"
                              % self.c.name), "2")

    def test_08_handoff_to_named_node(self):
        old, _ = self.c.start()
        for target in [n for n in self.c.nodes if n is not old] + [old]:
            self.c.request_handoff(target.name)
            wait_for(lambda: not self.c.handoff_pending(), 5, "the handoff to %s" % target.name)
            new, _ = self.c.wait_leader(2)
            self.assertEqual(new.name, target.name)

    def test_08b_handoff_to_unknown_node_refused(self):
        old, st = self.c.start()
        self.c.request_handoff("nobody")
        wait_for(lambda: not self.c.handoff_pending(), 5, "the request to be refused")
        same, sst = self.c.wait_leader(2)
        self.assertEqual(same, old)
        self.assertEqual(sst["epoch"], st["epoch"])
        self.assertIn("refusing handoff to nobody", old.logtext())

    def test_09_drain(self):
        old, st = self.c.start()
        self.c.zk.create(self.c.base + "/control/drain/" + old.name)
        new, nst = self.c.wait_leader(5, exclude=old)
        self.assertNotEqual(new, old)
        wait_for(lambda: (old.status() or {}).get("role") == "drained", 5, "the drained node to say so")
        # a drained node stays out: handing off again never picks it
        self.c.request_handoff()
        wait_for(lambda: not self.c.handoff_pending(), 5, "the handoff")
        again, _ = self.c.wait_leader(2)
        self.assertNotEqual(again, old)
        self.c.zk.delete(self.c.base + "/control/drain/" + old.name)
        wait_for(lambda: (old.status() or {}).get("role") == "standby", 5, "undrain")
        self.c.request_handoff(old.name)
        wait_for(lambda: not self.c.handoff_pending(), 5, "the handoff back")
        back, _ = self.c.wait_leader(2)
        self.assertEqual(back, old)

    def test_10_sigterm_hands_off(self):
        old, st = self.c.start()
        t0 = time.time()
        self.assertEqual(old.terminate(), 0)
        new, nst = self.c.wait_leader(SESSION_MS / 1000, exclude=old)
        print("SIGTERM handoff: %s -> %s in %.0f ms" % (old.name, new.name, (time.time() - t0) * 1000))
        self.assertGreater(nst["epoch"], st["epoch"])

    def test_11_bad_settings_refuse_to_start(self):
        for args, needle in ((["--cluster", "x", "--zk", ZK, "--pg", PG, "--node-id", "bad/id"], "node id"),
                             (["--cluster", "x", "--zk", ZK, "--pg", PG, "--http", "nonsense"], "http")):
            out = subprocess.run([BATOND, *args], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn(needle, out.stderr)
        self.c.start()


class T2000Acl(T2000Failover.__base__):
    """Our znodes carry a digest ACL: other clients can read, not write."""

    def setUp(self):
        self.c = Cluster(env={"BATON_ZK_AUTH": "baton:s3cret"}, auth="baton:s3cret")

    def tearDown(self):
        self.assertEqual(self.c.stop(), [])

    def test_outsiders_cannot_write(self):
        from kazoo.exceptions import NoAuthError
        leader, _ = self.c.start()
        outsider = KazooClient(hosts=ZK)
        outsider.start()
        try:
            self.assertIn(b"node", outsider.get(self.c.base + "/leader")[0])  # world-readable
            with self.assertRaises(NoAuthError):
                outsider.delete(self.c.base + "/leader")
            with self.assertRaises(NoAuthError):
                outsider.create(self.c.base + "/election/c_intruder_", ephemeral=True, sequence=True)
            with self.assertRaises(NoAuthError):
                outsider.create(self.c.base + "/control/handoff", b"{}")
            # the shared parent stays open for other clusters' roots
            parent = self.c.base.rsplit("/", 1)[0]
            outsider.create(parent + "/outsider_%d" % os.getpid(), ephemeral=True)
        finally:
            outsider.stop()
            outsider.close()
        # the credentials never appear on a command line
        for n in self.c.nodes:
            with open("/proc/%d/cmdline" % n.proc.pid, "rb") as f:
                self.assertNotIn(b"s3cret", f.read())
        # with the credentials, an operator's handoff works
        self.c.request_handoff()
        wait_for(lambda: not self.c.handoff_pending(), 5, "the handoff")
        new, _ = self.c.wait_leader(2)
        self.assertNotEqual(new, leader)


class T2000Zone(T2000Failover.__base__):
    """election.zone_handoff: the leader moves to the preferred zone when a
    node there is in line."""

    def setUp(self):
        self.c = Cluster(extra="election:\n  preferred_zone: z3\n  zone_handoff: true\n")

    def tearDown(self):
        self.assertEqual(self.c.stop(), [])

    def test_leader_moves_to_preferred_zone(self):
        self.c.start()
        n3 = self.c.nodes[2]
        leader, _ = wait_for(lambda: (lambda l: l if l and l[0] is n3 else None)(self.c.wait_leader(5)),
                             15, "the leader to be in z3")
        n3.kill9()
        other, _ = self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=n3)
        self.assertNotEqual(other, n3)
        n3.start()
        wait_for(lambda: (lambda l: l if l and l[0] is n3 else None)(self.c.wait_leader(10)),
                 20, "the leader to move back to z3")


if __name__ == "__main__":
    unittest.main(verbosity=2)
