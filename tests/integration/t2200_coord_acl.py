#!/usr/bin/python3
"""Access control: with digest credentials our znodes are world-readable and
writable only by us (three real batond nodes, real ZooKeeper, tests/harness
servers of our own).

The checker (batonlib.Checker) asserts the one-leader invariants at every
moment of every case.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import ZK, Cluster, KazooClient, wait_for  # noqa: E402


class T2200Acl(unittest.TestCase):
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
