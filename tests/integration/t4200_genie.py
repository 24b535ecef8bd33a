#!/usr/bin/python3
"""The Genie operators end to end: three real batond nodes (harness servers
of our own) against tests/fakes/genie_fake.py, a stateful Genie 3 stand-in
with fault injection and counters, so a test can prove that a job was
created exactly once across a takeover, a lost answer or a slow one.

The stand-in resolves a job's cluster criteria as Genie does, so the cases
that run jobs first register the cluster they select, as a Genie
administrator would have.

The one-leader checker of batonlib runs throughout every case.
"""
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import (SESSION_MS, Cluster, Fake, WorkflowCase, batonctl,  # noqa: E402
                      genie_register, wait_for)

# must match genie_ns in src/ops/genie_json.c
GENIE_NS = uuid.UUID("257cceb1-5cee-521c-a0af-33822a0b2902")


def genie_id(cluster, kind, run_key):
    return str(uuid.uuid5(GENIE_NS, "%s/%s/%s" % (cluster, kind, run_key)))


JOB = """
    workflow: %(wf)s
    schedule: none
    defaults: {retries: 0}
    tasks:
      - id: job
        %(extra)s
        genie_job:
          name: t4200-%(wf)s
          user: svc-baton
          version: "1.0"
          command_args: ["--date", "{{ run.date }}"]
          cluster_criteria:
            - tags: ["sched:sla", "type:yarn"]
          command_criterion:
            tags: ["type:spark-submit"]
          tags: [%(tags)s]
"""


# the shared cluster the jobs of JOB select
SLA_CLUSTER = {"id": "yarn-sla", "name": "yarn-sla", "user": "platform", "version": "emr-6.15.0",
               "status": "UP", "tags": ["sched:sla", "type:yarn"]}


class Genie(WorkflowCase):
    auth_args = ("--auth", "basic:u:p")
    auth_conf = "basic u:p"
    auth_header = {"Authorization": "Basic dTpw"}  # u:p
    run_timeout = 40

    def setUp(self):
        self.fake = Fake("genie_fake", *self.auth_args)
        self.c = Cluster(extra="genie:\n  url: %s\n  auth: %s\n" % (self.fake.url, self.auth_conf))

    def tearDown(self):
        try:
            violations = self.c.stop()
        finally:
            self.fake.stop()  # even when the cluster never started
        self.assertEqual(violations, [], "invariant violated")

    # -------------------------------------------------------------- helpers
    def register(self, cluster, commands=(("type:spark-submit",),)):
        genie_register(self.fake, cluster, commands, headers=self.auth_header)

    def apply_job(self, wf, tags="", extra=""):
        if not getattr(self, "sla_registered", False):
            self.register(SLA_CLUSTER)
            self.sla_registered = True
        self.apply(JOB % {"wf": wf, "tags": tags, "extra": extra})

    def run_key(self, wf, task, attempt=1):
        return self.q("SELECT run_key FROM task_runs WHERE cluster = $C AND workflow_id = '%s' "
                      "AND task_id = '%s' AND attempt = %d" % (wf, task, attempt))

    def all_alive(self):
        for n in self.c.nodes:
            if n.proc.poll() is not None:
                return False
        return True

    # -------------------------------------------------------------- cases
    def test_01_success_outputs_and_templates(self):
        self.c.start()
        self.apply_job("ok", '"fake.duration_ms:300", "finance"')
        batonctl(self.c.name, "trigger", "ok")
        run_id, state = self.wait_run_done("ok")
        self.assertEqual(state, "success")
        key = self.run_key("ok", "job")
        jid = genie_id(self.c.name, "job", key)
        log = self.task_log("ok", run_id, "job")
        self.assertEqual(log["outputs"], {"genie_job_id": jid})
        self.assertEqual(log["remote_state"], "SUCCEEDED")
        jobs = self.fake.call("GET", "/_jobs")
        self.assertEqual(list(jobs), [jid])
        req = jobs[jid]["request"]
        day = self.q("SELECT to_char(logical_time AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM "
                     "workflow_runs WHERE cluster = $C AND run_id = '%s'" % run_id)
        self.assertEqual(req["commandArgs"], ["--date", day])
        self.assertEqual(req["clusterCriterias"], [{"tags": ["sched:sla", "type:yarn"]}])
        self.assertEqual(req["commandCriteria"], ["type:spark-submit"])
        self.assertIn("baton.run_key:" + key, req["tags"])
        self.assertIn("finance", req["tags"])
        st = self.fake.stats()
        self.assertEqual((st["jobs_created"], st["job_posts"]), (1, 1))
        # resolved to the one cluster whose tags hold the criterion's
        self.assertEqual((jobs[jid]["cluster_id"], jobs[jid]["cluster_name"]),
                         ("yarn-sla", "yarn-sla"))
        job = self.fake.call("GET", "/api/v3/jobs/" + jid, headers=self.auth_header)
        self.assertEqual(job["clusterName"], "yarn-sla")
        self.assertEqual(self.fake.call("GET", "/api/v3/jobs/%s/cluster" % jid,
                                        headers=self.auth_header)["id"], "yarn-sla")

    def test_02_failed_job_reports_log_tails(self):
        self.c.start()
        self.apply_job("bad", '"fake.duration_ms:200", "fake.fate:failed"')
        batonctl(self.c.name, "trigger", "bad")
        run_id, state = self.wait_run_done("bad")
        self.assertEqual(state, "failed")
        self.assertEqual(self.tasks("bad"), {"job": [(1, "failed")]})
        log = self.task_log("bad", run_id, "job")
        self.assertEqual(log["error_code"], "remote_failed")
        self.assertIn("FAILED", log["error"])
        # the ends of both files, and only the ends (a Range of 4 KiB)
        self.assertIn("FAKE_STDERR_END", log["detail"])
        self.assertIn("FAKE_STDOUT_END", log["detail"])
        self.assertIn("fake failure of t4200-bad", log["detail"])
        self.assertNotIn("stdout line 0 of", log["detail"])
        self.assertLess(len(log["detail"]), 2 * 4096 + 200)

    def test_03_takeover_polls_the_running_job(self):
        old, _ = self.c.start()
        self.apply_job("takeover", '"fake.duration_ms:6000"')
        batonctl(self.c.name, "trigger", "takeover")
        wait_for(lambda: self.task_state("takeover", "job") == "running", 20, "job running")
        old.kill9()
        self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        _, state = self.wait_run_done("takeover")
        self.assertEqual(state, "success")
        st = self.fake.stats()
        self.assertEqual((st["jobs_created"], st["job_posts"]), (1, 1), st)
        self.assertEqual(self.tasks("takeover"), {"job": [(1, "success")]})

    def test_04_slow_submit_then_takeover_adopts_by_lookup(self):
        old, _ = self.c.start()
        # Genie takes the job at once but answers 4 s later; the leader dies
        # in between, with the attempt still `submitting`
        self.fake.fault(method="POST", path_prefix="/api/v3/jobs", mode="slow", delay_ms=4000)
        self.apply_job("slow", '"fake.duration_ms:500"')
        batonctl(self.c.name, "trigger", "slow")
        wait_for(lambda: self.fake.stats()["jobs_created"] == 1, 20, "the job created")
        self.assertEqual(self.task_state("slow", "job"), "submitting")
        old.kill9()
        new, _ = self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        _, state = self.wait_run_done("slow")
        self.assertEqual(state, "success")
        st = self.fake.stats()
        self.assertEqual((st["jobs_created"], st["job_posts"]), (1, 1), st)
        self.assertGreaterEqual(st["requests"].get("GET /api/v3/jobs/{id}/status", 0), 2)
        self.assertIn("adopting", new.logtext())

    def test_05_503_twice_then_accepted(self):
        self.c.start()
        self.fake.fault(method="POST", path_prefix="/api/v3/jobs", status=503, count=2)
        self.apply_job("flaky", '"fake.duration_ms:200"')
        batonctl(self.c.name, "trigger", "flaky")
        _, state = self.wait_run_done("flaky")
        self.assertEqual(state, "success")
        st = self.fake.stats()
        # two answered 503 by the fault, the third taken: one job
        self.assertEqual((st["jobs_created"], st["requests"]["POST /api/v3/jobs"],
                          st["faults_fired"]), (1, 3, 2), st)

    def test_06_lost_answer_is_resent_and_409_adopted(self):
        self.c.start()
        # the job is created but the answer never arrives: the transport sends
        # the POST again, Genie says 409 for our id, and we adopt the job
        self.fake.fault(method="POST", path_prefix="/api/v3/jobs", mode="lost")
        self.apply_job("lost", '"fake.duration_ms:200"')
        batonctl(self.c.name, "trigger", "lost")
        _, state = self.wait_run_done("lost")
        self.assertEqual(state, "success")
        st = self.fake.stats()
        self.assertEqual((st["jobs_created"], st["job_posts"]), (1, 2), st)
        self.assertTrue(any("already exists: adopting" in n.logtext() for n in self.c.nodes))

    def test_07_timeout_kills_the_job(self):
        self.c.start()
        self.apply_job("hang", '"fake.duration_ms:60000"', extra="timeout: 2s")
        batonctl(self.c.name, "trigger", "hang")
        _, state = self.wait_run_done("hang")
        self.assertEqual(state, "failed")
        self.assertEqual(self.tasks("hang"), {"job": [(1, "timed_out")]})
        st = self.fake.stats()
        self.assertEqual(st["kills"], 1, st)
        jobs = self.fake.call("GET", "/_jobs")
        self.assertEqual([j["status"] for j in jobs.values()], ["KILLED"])

    def test_08_malformed_status_fails_with_bad_response(self):
        self.c.start()
        self.fake.fault(method="GET", path_prefix="/api/v3/jobs/", mode="garbage", count=-1)
        self.apply_job("garbage", '"fake.duration_ms:200"')
        batonctl(self.c.name, "trigger", "garbage")
        run_id, state = self.wait_run_done("garbage")
        self.assertEqual(state, "failed")
        log = self.task_log("garbage", run_id, "job")
        self.assertEqual(log["error_code"], "bad_response")
        self.assertIn("not JSON", log["error"])
        # the daemons are fine and keep working
        self.assertTrue(self.all_alive())
        self.fake.call("DELETE", "/_fault")
        self.apply_job("after", '"fake.duration_ms:200"')
        batonctl(self.c.name, "trigger", "after")
        self.assertEqual(self.wait_run_done("after")[1], "success")
        self.assertTrue(self.all_alive())

    def test_09_register_cluster_then_teardown(self):
        self.c.start()
        auth = self.auth_header
        # not ours (no baton.cluster tag), and ours under a name that only
        # matches as a LIKE pattern: both must stay UP
        self.fake.call("POST", "/api/v3/clusters",
                       {"id": "human", "name": "analytics_tmp", "user": "x", "version": "1",
                        "status": "UP", "tags": ["emr.cluster_id:j-T4200"]}, headers=auth)
        self.fake.call("POST", "/api/v3/clusters",
                       {"id": "lookalike", "name": "analyticsXtmp", "user": "x", "version": "1",
                        "status": "UP", "tags": ["emr.cluster_id:j-T4200", "type:yarn",
                                                 "baton.cluster:" + self.c.name]}, headers=auth)
        self.apply("""
            workflow: cl
            schedule: none
            defaults: {retries: 0}
            tasks:
              - id: register
                genie_register_cluster:
                  name: analytics_tmp
                  user: svc-baton
                  version: emr-6.15.0
                  emr_cluster_id: j-T4200
                  tags: ["type:yarn"]
              - id: teardown
                depends_on: [register]
                trigger_rule: all_done
                genie_register_cluster:
                  name: analytics_tmp
                  user: svc-baton
                  version: emr-6.15.0
                  emr_cluster_id: j-T4200
                  tags: ["type:yarn"]
                  status: TERMINATED
                  teardown_status: TERMINATED
        """)
        batonctl(self.c.name, "trigger", "cl")
        run_id, state = self.wait_run_done("cl")
        self.assertEqual(state, "success")
        cid = genie_id(self.c.name, "cluster", self.run_key("cl", "register"))
        self.assertEqual(self.task_log("cl", run_id, "register")["outputs"], {"genie_cluster_id": cid})
        self.assertEqual(self.task_log("cl", run_id, "teardown")["outputs"], {"genie_cluster_id": cid})
        cl = self.fake.call("GET", "/_clusters")
        self.assertEqual({k: v["status"] for k, v in cl.items()},
                         {cid: "TERMINATED", "human": "UP", "lookalike": "UP"})
        self.assertIn("emr.cluster_id:j-T4200", cl[cid]["tags"])
        st = self.fake.stats()
        self.assertEqual((st["clusters_created"], st["cluster_patches"]), (3, 1), st)


    def test_11_takeover_while_registering_a_cluster_adopts_it(self):
        """A leader killed while Genie stores its cluster registration (the
        answer comes after the leader died): the new leader finds the
        registration under its deterministic id and adopts it."""
        old, _ = self.c.start()
        self.fake.call("POST", "/api/v3/commands",
                       {"id": "spark", "name": "spark", "user": "platform", "version": "1",
                        "status": "ACTIVE", "executable": "spark-submit",
                        "tags": ["type:spark-submit"]}, headers=self.auth_header)
        self.fake.fault(path_prefix="/api/v3/clusters", method="POST", mode="slow", delay_ms=4000)
        self.apply("""
            workflow: clt
            schedule: none
            tasks:
              - id: register
                genie_register_cluster:
                  name: transient-j-T4211
                  user: svc-baton
                  version: emr-6.15.0
                  emr_cluster_id: j-T4211
                  tags: ["sched:transient"]
                  command_criteria: [{tags: ["type:spark-submit"]}]
        """)
        batonctl(self.c.name, "trigger", "clt")
        wait_for(lambda: self.fake.stats()["clusters_created"] == 1, 30, "the registration stored")
        self.assertEqual(self.task_state("clt", "register"), "submitting")
        old.kill9()
        self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        run_id, state = self.wait_run_done("clt")
        self.assertEqual(state, "success")
        cid = genie_id(self.c.name, "cluster", self.run_key("clt", "register"))
        self.assertEqual(self.task_log("clt", run_id, "register")["outputs"],
                         {"genie_cluster_id": cid, "genie_command_ids": "spark"})
        st = self.fake.stats()
        self.assertEqual(st["clusters_created"], 1, st)
        self.assertEqual(st["cluster_posts"], 1, st)  # looked up, never sent again
        cl = self.fake.call("GET", "/_clusters")[cid]
        # the adopting leader linked the command the dead one never got to
        self.assertEqual((cl["status"], cl["commands"]), ("UP", ["spark"]))

    def test_11a_registration_without_its_command_fails(self):
        """A command_criteria entry that selects no ACTIVE command fails the
        registration with the reason: a cluster no job could use."""
        self.c.start()
        self.apply("""
            workflow: nocmd
            schedule: none
            defaults: {retries: 0}
            tasks:
              - id: register
                genie_register_cluster:
                  name: transient-j-T4212
                  user: svc-baton
                  version: emr-6.15.0
                  command_criteria: [{tags: ["type:presto"]}]
        """)
        batonctl(self.c.name, "trigger", "nocmd")
        run_id, state = self.wait_run_done("nocmd")
        self.assertEqual(state, "failed")
        log = self.task_log("nocmd", run_id, "register")
        self.assertEqual(log["error_code"], "no_command")
        self.assertIn("no ACTIVE command matches command_criteria (size=100&status=ACTIVE&"
                      "tag=type%3Apresto)", log["error"])

    def test_10_cluster_resolution(self):
        """Genie 3's resolution at submission: the criteria in order, UP
        clusters only, the implicit genie.name tag; no match is a 412 that
        fails the task and leaves the job FAILED in Genie."""
        self.c.start()
        # matches the first criterion but is out of service; the second
        # criterion names a cluster by Genie's own genie.name tag
        self.register(dict(SLA_CLUSTER, id="sla-down", name="sla-down", status="OUT_OF_SERVICE"))
        self.register(dict(SLA_CLUSTER, id="adhoc", name="yarn-adhoc", tags=["sched:adhoc"]))
        # every tag of nowhere's second criterion, but no command linked: a
        # job cannot run there (Genie 3 resolves cluster and command together)
        self.register(dict(SLA_CLUSTER, id="adhoc-bare", name="yarn-adhoc-bare",
                           tags=["sched:adhoc", "type:yarn"]), commands=())
        self.apply("""
            workflow: resolve
            schedule: none
            defaults: {retries: 0}
            tasks:
              - id: fallback
                genie_job:
                  name: t4200-fallback
                  user: svc-baton
                  version: "1.0"
                  command_args: [x]
                  cluster_criteria:
                    - tags: ["sched:sla", "type:yarn"]
                    - tags: ["genie.name:yarn-adhoc"]
                  command_criterion: {tags: ["type:spark-submit"]}
                  tags: ["fake.duration_ms:200"]
              - id: nowhere
                genie_job:
                  name: t4200-nowhere
                  user: svc-baton
                  version: "1.0"
                  command_args: [x]
                  cluster_criteria:
                    - tags: ["sched:sla", "type:yarn"]
                    - tags: ["sched:adhoc", "type:yarn"]
                  command_criterion: {tags: ["type:spark-submit"]}
        """)
        batonctl(self.c.name, "trigger", "resolve")
        run_id, state = self.wait_run_done("resolve")
        self.assertEqual(state, "failed")
        self.assertEqual(self.tasks("resolve"), {"fallback": [(1, "success")],
                                                 "nowhere": [(1, "failed")]})
        log = self.task_log("resolve", run_id, "nowhere")
        self.assertEqual(log["error_code"], "remote_rejected")
        self.assertIn("HTTP 412", log["error"])
        self.assertIn("No cluster/command combination found for the given criteria", log["error"])
        jobs = self.fake.call("GET", "/_jobs")
        fb = jobs[genie_id(self.c.name, "job", self.run_key("resolve", "fallback"))]
        nw = jobs[genie_id(self.c.name, "job", self.run_key("resolve", "nowhere"))]
        self.assertEqual((fb["status"], fb["cluster_id"]), ("SUCCEEDED", "adhoc"))
        self.assertEqual((nw["status"], nw["cluster_id"]), ("FAILED", None))
        self.assertIn("No cluster/command combination found", nw["status_msg"])
        st = self.fake.stats()
        self.assertEqual((st["jobs_created"], st["jobs_unresolved"], st["job_posts"]), (2, 1, 2), st)


class GenieBearer(Genie):
    """The same operators with a bearer token: one success is enough."""
    auth_args = ("--token", "t0k3n")
    auth_conf = "bearer t0k3n"
    auth_header = {"Authorization": "Bearer t0k3n"}


def load_tests(loader, tests, pattern):
    suite = unittest.TestSuite()
    suite.addTests(loader.loadTestsFromTestCase(Genie))
    suite.addTest(GenieBearer("test_01_success_outputs_and_templates"))
    return suite


if __name__ == "__main__":
    unittest.main(verbosity=2)
