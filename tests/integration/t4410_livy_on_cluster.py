#!/usr/bin/python3
"""examples/workflows/nightly_etl.yaml end to end, as shipped: the Airflow +
Livy + EMR reference design on three real batond nodes.

The EMR stand-in runs a Livy stand-in on each cluster master that asks for
the Livy application, at the master's own loopback address (the cluster's
MasterPublicDnsName) and port 8998, requiring HTTP basic auth; the cluster's
Livy goes down when the cluster terminates. batond has no global livy.url:
the batch can only reach the cluster it belongs to, through the endpoint
create_cluster published and the credential batond.yaml names.

The cases prove: the batch goes to the new cluster's Livy (and to no other),
authenticated with the named credential; create_cluster publishes the
cluster's endpoints; a leader killed while the batch runs is succeeded by
one that polls the batch where it lives (the handle's endpoint), with no
second batch; a task naming a credential batond.yaml lacks fails with the
reason, and the cluster is still torn down.

The one-leader checker of batonlib runs throughout every case.
"""
import base64
import json
import os
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import Cluster, Fake, WorkflowCase, aws_env, batonctl, wait_for  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                       "workflows", "nightly_etl.yaml")
WF = "nightly_etl"
AK, SK = "AKIAT4410EXAMPLE", "t4410/secret+key=="
LIVY_USER, LIVY_PASS = "etl", "cluster-s3cret"
TASKS = ("create_cluster", "transform", "load_warehouse", "teardown")


def livy_get(url, path, auth=True, timeout=5):
    req = urllib.request.Request(url + path)
    if auth:
        tok = base64.b64encode(("%s:%s" % (LIVY_USER, LIVY_PASS)).encode()).decode()
        req.add_header("Authorization", "Basic " + tok)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


class LivyOnCluster(WorkflowCase):
    run_timeout = 120
    credentials = "credentials:\n  cluster_livy: \"basic %s:%s\"\n" % (LIVY_USER, LIVY_PASS)

    def setUp(self):
        self.emr = self.livy = self.c = None
        self.tmp = tempfile.TemporaryDirectory()
        self.emr = Fake("emr_fake", "--access-key", AK, "--secret-key", SK,
                        "--region", "eu-central-1", "--cluster-livy-port", "8998",
                        "--cluster-livy-auth", "%s:%s" % (LIVY_USER, LIVY_PASS))
        # a Livy at the old global place: nothing may reach it
        self.livy = Fake("livy_fake", "--csrf")
        env = aws_env(AK, SK, BATON_LIVY_POLL_INTERVAL_MS="200")
        self.c = Cluster(env=env, extra=(
            "emr:\n  endpoint: %s\n  region: eu-central-1\n" % self.emr.url + self.credentials))
        self.c.start()

    def tearDown(self):
        violations = self.c.stop() if self.c else []
        for f in (self.emr, self.livy):
            if f:
                f.stop()
        self.tmp.cleanup()
        self.assertEqual(violations, [], "invariant violated")

    # -------------------------------------------------------------- helpers
    def apply(self, text=None):
        path = EXAMPLE
        if text is not None:
            path = os.path.join(self.tmp.name, "nightly_etl.yaml")
            with open(path, "w") as f:
                f.write(text)
        batonctl(self.c.name, "workflow", "apply", "--paused", path)

    def trigger(self):
        batonctl(self.c.name, "trigger", WF)

    def cluster_livy(self):
        """{cluster id: its Livy's URL} of the clusters whose Livy is up."""
        return self.emr.call("GET", "/_livy")

    def outputs(self, run_id, task):
        return self.task_log(WF, run_id, task)["outputs"]

    def check_cluster_outputs(self, run_id):
        out = self.outputs(run_id, "create_cluster")
        cid = out["cluster_id"]
        cl = [c for c in self.emr.call("GET", "/_clusters") if c["Id"] == cid][0]
        self.assertEqual(out["master_dns"], cl["MasterPublicDnsName"])
        self.assertTrue(out["master_dns"].startswith("127."), out)
        self.assertEqual(out["master_private_dns"], out["master_dns"])
        self.assertTrue(out["master_instance_id"].startswith("i-"), out)
        self.assertEqual(out["release_label"], "emr-6.15.0")
        self.assertEqual(out["applications"], "Spark,Hadoop,Livy")
        self.assertEqual(out["cluster_arn"], cl["ClusterArn"])
        self.assertEqual(self.emr.call("GET", "/_last")["ListInstances"],
                         {"ClusterId": cid, "InstanceGroupTypes": ["MASTER"],
                          "InstanceStates": ["RUNNING"]})
        return cid, "http://%s:8998" % out["master_dns"]

    def check_torn_down(self, cid, livy_url):
        """The cluster terminated and its Livy with it; what that Livy had."""
        wait_for(lambda: [c for c in self.emr.call("GET", "/_clusters")
                          if c["Id"] == cid][0]["Status"]["State"] == "TERMINATED",
                 10, "the EMR cluster to terminate")
        wait_for(lambda: "stats" in self.cluster_livy().get(cid, {}), 10,
                 "the cluster's Livy to stop")
        kept = self.cluster_livy()[cid]
        self.assertEqual((kept["url"], kept["up"]), (livy_url, False))
        with self.assertRaises((urllib.error.URLError, ConnectionError, OSError)):
            livy_get(livy_url, "/batches", timeout=2)
        return kept

    # -------------------------------------------------------------- cases
    def test_01_batch_on_the_clusters_own_livy(self):
        self.apply()
        self.trigger()
        run_id, state = self.wait_run_done(WF)
        self.assertEqual(state, "success")
        self.assertEqual(self.tasks(WF), {t: [(1, "success")] for t in TASKS})
        cid, livy_url = self.check_cluster_outputs(run_id)
        # the batch went to that cluster's Livy, authenticated, and only there
        log = self.task_log(WF, run_id, "transform")
        self.assertEqual(log["endpoint"], livy_url)
        # batonctl shows where the batch ran
        show = batonctl(self.c.name, "run", "show", WF, run_id).stdout
        self.assertIn("livy batch 0 at %s" % livy_url, show)
        kept = self.check_torn_down(cid, livy_url)
        self.assertEqual(len(kept["batches"]), 1, kept)
        self.assertIn("%s/%s/transform/1" % (WF, run_id), kept["batches"][0]["name"])
        self.assertEqual(kept["stats"]["batches_created"], 1, kept)
        # sent with the named credential (the stand-in refuses a batch without)
        self.assertEqual(kept["batches"][0]["owner"], LIVY_USER, kept)
        self.assertEqual(self.livy.stats()["batches_created"], 0)

    def test_02_takeover_while_the_batch_runs(self):
        # the batch runs for 8 s: the leader is killed in the middle
        with open(EXAMPLE) as f:
            text = f.read()
        marker = '        spark.sql.shuffle.partitions: "400"\n'
        self.assertIn(marker, text)
        self.apply(text.replace(marker, marker + '        fake.duration_ms: "8000"\n'))
        self.trigger()
        wait_for(lambda: self.tasks(WF).get("transform") == [(1, "running")], 60,
                 "transform to run")
        self.c.leaders()[0][0].kill9()
        run_id, state = self.wait_run_done(WF)
        self.assertEqual(state, "success")
        self.assertEqual(self.tasks(WF), {t: [(1, "success")] for t in TASKS})
        cid, livy_url = self.check_cluster_outputs(run_id)
        self.assertEqual(self.task_log(WF, run_id, "transform")["endpoint"], livy_url)
        kept = self.check_torn_down(cid, livy_url)
        self.assertEqual(kept["stats"]["batches_created"], 1, kept)
        self.assertEqual(len(kept["batches"]), 1, kept)
        self.assertEqual(self.livy.stats()["batches_created"], 0)
        self.assertEqual(self.emr.stats()["RunJobFlow"], 1)


class UnknownCredential(LivyOnCluster):
    credentials = ""  # batond.yaml defines no cluster_livy

    test_01_batch_on_the_clusters_own_livy = None
    test_02_takeover_while_the_batch_runs = None

    def test_03_unknown_credential_fails_with_the_reason(self):
        self.apply()
        self.trigger()
        run_id, state = self.wait_run_done(WF)
        self.assertEqual(state, "failed")
        tasks = self.tasks(WF)
        self.assertEqual(tasks["create_cluster"], [(1, "success")])
        self.assertEqual(tasks["transform"][-1][1], "failed")
        self.assertEqual(tasks["load_warehouse"], [(1, "upstream_failed")])
        self.assertEqual(tasks["teardown"], [(1, "success")])
        log = self.task_log(WF, run_id, "transform")
        self.assertEqual(log["error_code"], "bad_spec")
        self.assertIn("auth: 'cluster_livy' is not a credential in batond.yaml", log["error"])
        cid = self.outputs(run_id, "create_cluster")["cluster_id"]
        self.check_torn_down(cid, "http://%s:8998" % self.outputs(run_id, "create_cluster")
                             ["master_dns"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
