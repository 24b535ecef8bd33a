#!/usr/bin/python3
"""Planned handoffs: `batonctl failover` (to anyone, to a named node, to one
between places in line, to an unknown one), drain, SIGTERM, and the move to
a preferred zone; three real batond nodes against a real 3-server ZooKeeper
ensemble and PostgreSQL (tests/harness, servers of our own).

The checker (batonlib.Checker) asserts the one-leader invariants at every
moment of every case.
"""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import SESSION_MS, Cluster, CoordCase, psql, wait_for  # noqa: E402


class T2100Handoff(CoordCase):
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
        # to the node at the back of the line: the ones ahead of it must yield
        # before the leader steps down, or one of them would claim first
        # (freezing the node in between makes it slow to read the request,
        # the way a loaded machine does)
        by_name = {n.name: n for n in self.c.nodes}
        for _ in range(4):
            line = sorted(self.c.zk.get_children(self.c.base + "/election"),
                          key=lambda n: n.rsplit("_", 1)[1])
            middle, last = line[1].split("_")[2], line[-1].split("_")[2]
            by_name[middle].signal(signal.SIGSTOP)
            self.c.request_handoff(last)
            time.sleep(0.5)
            by_name[middle].signal(signal.SIGCONT)
            wait_for(lambda: not self.c.handoff_pending(), 10, "the handoff to %s" % last)
            new, _ = self.c.wait_leader(3)
            self.assertEqual(new.name, last)

    def test_08a_handoff_to_a_member_between_places(self):
        # a node that yielded its place for the previous handoff is a member
        # but, for a round trip or two, not in line: a request to it then
        # waits for it (and the node ahead of it yields once it is back)
        # instead of being refused. Freezing the target with its candidate
        # deleted holds it in that gap.
        old, _ = self.c.start()
        line = sorted(self.c.zk.get_children(self.c.base + "/election"),
                      key=lambda n: n.rsplit("_", 1)[1])
        target = {n.name: n for n in self.c.nodes}[line[-1].split("_")[2]]
        target.signal(signal.SIGSTOP)
        try:
            self.c.zk.delete(self.c.base + "/election/" + line[-1])
            self.c.request_handoff(target.name)
            time.sleep(1)
            self.assertTrue(self.c.handoff_pending(), "refused while its target was a live member")
        finally:
            target.signal(signal.SIGCONT)
        wait_for(lambda: not self.c.handoff_pending(), 10, "the handoff to %s" % target.name)
        new, _ = self.c.wait_leader(3)
        self.assertEqual(new.name, target.name)
        self.assertNotIn("refusing handoff", old.logtext())

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


class T2100Zone(unittest.TestCase):
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
