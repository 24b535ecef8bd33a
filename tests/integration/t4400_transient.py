#!/usr/bin/python3
"""examples/workflows/transient_emr_genie.yaml end to end, as shipped: three
real batond nodes against the EMR, Genie and Livy stand-ins of tests/fakes.

The file is applied unchanged. The cases prove what the example promises:
one cluster created and terminated, one Genie registration that every Genie
job of the run resolved to (and no other cluster, though an older transient
cluster with the same tags is UP), the registration taken out before the
cluster goes, and both teardown tasks running even when a job fails.

The one-leader checker of batonlib runs throughout every case.
"""
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import (Cluster, Fake, WorkflowCase, aws_env, batonctl, genie_register,  # noqa: E402
                      wait_for)

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                       "workflows", "transient_emr_genie.yaml")
WF = "transient_emr_genie"
AK, SK = "AKIAT4400EXAMPLE", "t4400/secret+key=="
GENIE_AUTH = {"Authorization": "Basic dTpw"}  # u:p
# must match genie_ns in src/ops/genie_json.c
GENIE_NS = uuid.UUID("257cceb1-5cee-521c-a0af-33822a0b2902")
TAGS = ["sched:transient", "type:yarn", "env:prod", "team:data-eng"]
# the commands the example's jobs select (command_criterion), which its
# registration links (command_criteria)
COMMANDS = [("type:spark-submit", "ver:3.4"), ("type:hive",)]
# yesterday's transient cluster, still registered and UP: it carries every tag
# of the example's registration but its own emr.cluster_id, and was
# registered first (the stand-in would pick it on a loose match)
OLD = {"id": "sessionize-yesterday", "name": "sessionize-j-OLDCLUSTER0001", "user": "svc-baton",
       "version": "emr-6.15.0", "status": "UP",
       "tags": TAGS + ["emr.cluster_id:j-OLDCLUSTER0001"]}


def genie_id(cluster, kind, run_key):
    return str(uuid.uuid5(GENIE_NS, "%s/%s/%s" % (cluster, kind, run_key)))


class Transient(WorkflowCase):
    run_timeout = 150  # the failing case waits out one retry backoff (<= 1 min)

    def setUp(self):
        self.emr = self.genie = self.livy = self.c = None
        self.emr = Fake("emr_fake", "--access-key", AK, "--secret-key", SK,
                        "--region", "eu-central-1")
        self.genie = Fake("genie_fake", "--auth", "basic:u:p")
        self.livy = Fake("livy_fake", "--csrf")
        env = aws_env(AK, SK)
        self.c = Cluster(env=env, extra=(
            "emr:\n  endpoint: %s\n  region: eu-central-1\n"
            "genie:\n  url: %s\n  auth: basic u:p\n"
            "livy:\n  url: %s\n" % (self.emr.url, self.genie.url, self.livy.url)))
        self.c.start()
        # the platform team's commands, linked to yesterday's cluster too
        self.commands = genie_register(self.genie, OLD, COMMANDS, headers=GENIE_AUTH)
        batonctl(self.c.name, "workflow", "apply", "--paused", EXAMPLE)

    def tearDown(self):
        violations = self.c.stop() if self.c else []
        for f in (self.emr, self.genie, self.livy):
            if f:
                f.stop()
        self.assertEqual(violations, [], "invariant violated")

    # -------------------------------------------------------------- helpers
    def run_once(self):
        """Triggers the example; (run_id, state) once it has finished."""
        batonctl(self.c.name, "trigger", WF)
        run_id, state = self.wait_run_done(WF)
        self.assertEqual(len(self.runs(WF)), 1)
        return run_id, state

    def key(self, run_id, task, attempt=1):
        return "%s/%s/%s/%d" % (WF, run_id, task, attempt)

    def run_jobs(self, run_id):
        """The stand-in's Genie jobs of this run, by id."""
        prefix = "baton.run_key:%s/%s/" % (WF, run_id)
        return {k: v for k, v in self.genie.call("GET", "/_jobs").items()
                if any(t.startswith(prefix) for t in v["request"]["tags"])}

    def check_teardown(self, run_id):
        """Both teardown tasks ran and did their work; the EMR cluster id."""
        cid = self.task_log(WF, run_id, "create_cluster")["outputs"]["cluster_id"]
        reg = genie_id(self.c.name, "cluster", self.key(run_id, "register_cluster"))
        self.assertEqual(self.task_log(WF, run_id, "register_cluster")["outputs"],
                         {"genie_cluster_id": reg, "genie_command_ids": ",".join(self.commands)})
        # the teardown found exactly our registration, not yesterday's
        self.assertEqual(self.task_log(WF, run_id, "unregister_cluster")["outputs"],
                         {"genie_cluster_id": reg})
        cl = self.genie.call("GET", "/_clusters")
        self.assertEqual({k: v["status"] for k, v in cl.items()},
                         {reg: "TERMINATED", OLD["id"]: "UP"})
        # linked while it ran, unlinked by the teardown; yesterday's untouched
        self.assertEqual((cl[reg]["commands"], cl[OLD["id"]]["commands"]), ([], self.commands))
        self.assertEqual(cl[reg]["configs"], [
            "s3://acme-emr-artifacts/genie/%s/%s-site.xml" % (cid, x) for x in ("core", "yarn")])
        self.assertEqual(cl[reg]["name"], "sessionize-" + cid)
        for t in TAGS + ["emr.cluster_id:" + cid, "genie.id:" + reg]:
            self.assertIn(t, cl[reg]["tags"])
        gst = self.genie.stats()
        self.assertEqual((gst["clusters_created"], gst["cluster_patches"]), (2, 1), gst)
        self.assertEqual((gst["link_sets"], gst["link_deletes"]), (2, 1), gst)  # OLD's, ours
        est = self.emr.stats()
        self.assertEqual((est["RunJobFlow"], est["TerminateJobFlows"], est["AddJobFlowSteps"]),
                         (1, 1, 0), est)
        self.assertEqual(self.emr.call("GET", "/_last")["TerminateJobFlows"], {"JobFlowIds": [cid]})
        wait_for(lambda: self.emr.call("GET", "/_clusters")[0]["Status"]["State"] == "TERMINATED",
                 5, "the EMR cluster to terminate")
        # out of Genie before the cluster went: the registration's teardown
        # succeeded before the termination was submitted
        def event(task, to):
            return int(self.q("SELECT min(id) FROM events WHERE cluster = $C AND run_key = '%s' "
                              "AND to_state = '%s'" % (self.key(run_id, task), to)))
        self.assertLess(event("unregister_cluster", "success"),
                        event("terminate_cluster", "submitting"))
        return cid, reg

    # -------------------------------------------------------------- cases
    def test_01_green_end_to_end(self):
        run_id, state = self.run_once()
        self.assertEqual(state, "success")
        self.assertEqual(self.tasks(WF), {t: [(1, "success")] for t in (
            "create_cluster", "register_cluster", "sessionize", "add_partition",
            "export_features", "unregister_cluster", "terminate_cluster")})
        cid, reg = self.check_teardown(run_id)
        req = self.emr.call("GET", "/_last")["RunJobFlow"]
        self.assertTrue(req["Instances"]["KeepJobFlowAliveWhenNoSteps"])
        self.assertIn({"Key": "baton:run-key", "Value": self.key(run_id, "create_cluster")},
                      req["Tags"])
        self.assertEqual(self.task_log(WF, run_id, "create_cluster")["remote_state"], "WAITING")
        # every Genie job of the run on the registered transient cluster
        jobs = self.run_jobs(run_id)
        self.assertEqual(sorted(j["request"]["name"] for j in jobs.values()),
                         ["clickstream-sessionize", "sessions-add-partition"])
        for j in jobs.values():
            self.assertEqual((j["status"], j["cluster_id"]), ("SUCCEEDED", reg), j)
            self.assertEqual(j["request"]["clusterCriterias"],
                             [{"tags": ["sched:transient", "emr.cluster_id:" + cid]}])
        self.assertEqual(self.genie.stats()["jobs_unresolved"], 0)
        # each with the command its criterion selects, through the links
        self.assertEqual({j["request"]["name"]: j["command_id"] for j in jobs.values()},
                         {"clickstream-sessionize": self.commands[0],
                          "sessions-add-partition": self.commands[1]})
        # and the Livy batch, tagged with the cluster and the run
        lst = self.livy.stats()
        self.assertEqual(lst["batches_created"], 1, lst)
        conf = lst["batch_bodies"][0]["conf"]
        self.assertIn(cid, conf["spark.yarn.tags"])
        self.assertIn(run_id, conf["spark.yarn.tags"])

    def test_02_failed_job_still_tears_down(self):
        # every attempt of sessionize fails in Genie (the example retries once)
        self.genie.fault(mode="fate", fate="failed", job_name="clickstream-sessionize", count=-1)
        run_id, state = self.run_once()
        self.assertEqual(state, "failed")
        self.assertEqual(self.tasks(WF), {
            "create_cluster": [(1, "success")], "register_cluster": [(1, "success")],
            "sessionize": [(1, "up_for_retry"), (2, "failed")],
            "add_partition": [(1, "upstream_failed")], "export_features": [(1, "upstream_failed")],
            "unregister_cluster": [(1, "success")], "terminate_cluster": [(1, "success")]})
        self.assertEqual(self.task_log(WF, run_id, "sessionize")["error_code"], "remote_failed")
        cid, reg = self.check_teardown(run_id)
        jobs = self.run_jobs(run_id)
        self.assertEqual([(j["status"], j["cluster_id"]) for j in jobs.values()],
                         [("FAILED", reg), ("FAILED", reg)])
        self.assertEqual(self.livy.stats()["batches_created"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
