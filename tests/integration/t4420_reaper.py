#!/usr/bin/python3
"""The EMR orphan reaper on three real batond nodes against the EMR stand-in.

Clusters of every kind are alive at once: the orphan (its run finished
without a teardown), one marked keep, one whose run is still going (a
sensor waits on it), one someone else created without our tag, and one
that carries a run-key tag of a run this store does not know (an other
baton installation's in the same account). The reaper (reap_after 3 s,
a scan every second) terminates exactly the orphan, with one
`cluster_reaped` event; a leader killed between scans changes nothing; the
dry-run mode only names the orphan.

The one-leader checker of batonlib runs throughout every case.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import Cluster, Fake, WorkflowCase, aws_env, batonctl, wait_for  # noqa: E402

AK, SK = "AKIAT4420EXAMPLE", "t4420/secret+key=="
GROUPS = ("instance_groups: [{name: master, role: MASTER, instance_type: m5.xlarge, "
          "instance_count: 1}]")


def workflow(name, keep=False, sensor=False):
    text = """
        workflow: %s
        schedule: none
        defaults: {retries: 0}
        tasks:
          - id: create
            emr_create_cluster:
              name: t4420-%s
              release_label: emr-6.15.0
              keep_alive_when_no_steps: true
              wait_until_ready: true
              keep: %s
              %s
    """ % (name, name, "true" if keep else "false", GROUPS)
    if sensor:  # the run stays running: it waits for its cluster to end
        text += """
          - id: hold
            depends_on: [create]
            emr_wait_cluster:
              cluster_id: "{{ tasks.create.cluster_id }}"
              target_states: [TERMINATED]
              poll_interval: 1s
        """
    return text


class Reaper(WorkflowCase):
    run_timeout = 60
    dry_run = False

    def setUp(self):
        self.fake = self.c = None
        self.fake = Fake("emr_fake", "--access-key", AK, "--secret-key", SK)
        env = aws_env(AK, SK)
        self.c = Cluster(env=env, extra=(
            "emr:\n  endpoint: %s\n  region: us-east-1\n  reap_after: 3s\n"
            "  reap_interval: 1s\n  reap_dry_run: %s\n"
            % (self.fake.url, "true" if self.dry_run else "false")))
        self.c.start()

    def tearDown(self):
        violations = self.c.stop() if self.c else []
        if self.fake:
            self.fake.stop()
        self.assertEqual(violations, [], "invariant violated")

    # -------------------------------------------------------------- helpers
    def state(self, cid):
        return [c for c in self.fake.call("GET", "/_clusters") if c["Id"] == cid][0]["Status"]["State"]

    def run_one(self, name, **kw):
        self.apply(workflow(name, **kw))
        batonctl(self.c.name, "trigger", name)

    def cluster_of(self, wf):
        run = wait_for(lambda: self.q("SELECT run_id FROM workflow_runs WHERE cluster = $C AND "
                                      "workflow_id = '%s'" % wf), 20, "a run of " + wf)
        wait_for(lambda: (self.tasks(wf).get("create") or [(0, "")])[-1][1] == "success", 30,
                 wf + "'s cluster")
        return self.task_log(wf, run, "create")["outputs"]["cluster_id"], run

    def events(self, kind):
        rows = self.q("SELECT run_key, detail FROM events WHERE cluster = $C AND kind = '%s' "
                      "ORDER BY id" % kind)
        return [r.split("|", 1) for r in rows.splitlines() if r]

    def seed(self, name, tags):
        return self.fake.call("POST", "/_seed", {"Name": name, "Tags": tags})["JobFlowId"]

    def make_clusters(self):
        """Every kind at once; the ids by kind."""
        ids = {"foreign": self.seed("etl-by-hand", []),
               "stranger": self.seed("nightly [bt:0123456789abcdef]", [
                   {"Key": "baton:run-key", "Value": "ghost/manual__x/create/1"}])}
        for name, kw in (("orphan", {}), ("kept", {"keep": True}), ("busy", {"sensor": True})):
            self.run_one(name, **kw)
        for name in ("orphan", "kept", "busy"):
            ids[name], _ = self.cluster_of(name)
        self.assertEqual(self.wait_run_done("orphan")[1], "success")
        self.assertEqual(self.wait_run_done("kept")[1], "success")
        return ids

    # -------------------------------------------------------------- cases
    def test_01_only_the_orphan(self):
        ids = self.make_clusters()
        wait_for(lambda: self.state(ids["orphan"]) in ("TERMINATING", "TERMINATED"), 30,
                 "the orphan to be reaped")
        wait_for(lambda: self.events("cluster_reaped"), 10, "the cluster_reaped event")
        wait_for(lambda: any(n.status()["reaper"]["reaped"] for n in self.c.nodes
                             if n.status()), 10, "the leader to count it")
        # a leader killed between scans: its successor judges the same
        self.c.leaders()[0][0].kill9()
        time.sleep(6)  # several scans of the new leader, past every grace period
        self.assertEqual(self.state(ids["orphan"]), "TERMINATED")
        for kind in ("kept", "busy", "foreign", "stranger"):
            self.assertEqual(self.state(ids[kind]), "WAITING", kind)
        self.assertEqual(self.tasks("busy")["hold"], [(1, "running")])
        reaped = self.events("cluster_reaped")
        self.assertTrue(reaped, "a cluster_reaped event")
        self.assertEqual({k for k, _ in reaped}, {"orphan/%s/create/1" % self.cluster_of("orphan")[1]})
        self.assertIn(ids["orphan"], reaped[0][1])
        # the foreign clusters were never even asked to terminate
        last = self.fake.call("GET", "/_last").get("TerminateJobFlows")
        self.assertEqual(last, {"JobFlowIds": [ids["orphan"]]})


class DryRun(Reaper):
    dry_run = True
    test_01_only_the_orphan = None

    def test_02_dry_run_names_the_orphan_only(self):
        ids = self.make_clusters()
        wait_for(lambda: self.events("cluster_reap_candidate"), 30, "a reap candidate")
        time.sleep(3)
        cands = self.events("cluster_reap_candidate")
        self.assertEqual({k for k, _ in cands},
                         {"orphan/%s/create/1" % self.cluster_of("orphan")[1]})
        for kind in ids:
            self.assertEqual(self.state(ids[kind]), "WAITING", kind)
        self.assertEqual(self.fake.stats()["TerminateJobFlows"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
