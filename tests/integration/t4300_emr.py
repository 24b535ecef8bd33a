#!/usr/bin/python3
"""The EMR operators end to end: three real batond nodes (harness servers of
our own) against tests/fakes/emr_fake.py, a stateful EMR stand-in that
verifies every SigV4 signature for real, serves IMDSv2, injects faults and
counts what was created, so a test can prove that a cluster or a step was
created exactly once across a takeover, a lost answer or throttling.

The one-leader checker of batonlib runs throughout every case.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import (SESSION_MS, Cluster, Fake, WorkflowCase, aws_env, batonctl,  # noqa: E402
                      wait_for)

AK, SK = "AKIAT4300EXAMPLE", "t4300/secret+key=="


class EmrFake(Fake):
    """emr_fake.py knowing our keys; with --imds-port, its IMDS port in imds."""

    def __init__(self, *args):
        super().__init__("emr_fake", "--access-key", AK, "--secret-key", SK, *args,
                         extra_ports=1 if "--imds-port" in args else 0)
        self.imds = self.extra[0] if self.extra else None

    def last(self, op):
        return self.call("GET", "/_last").get(op)

    def clusters(self):
        return self.call("GET", "/_clusters")


# appended to the line of a key of emr_create_cluster (18 spaces in, as the
# workflow texts below are written)
GROUPS = ("\n" + " " * 18 + "instance_groups:\n" + " " * 20 +
          "- {name: master, role: MASTER, instance_type: m5.xlarge, instance_count: 1}\n" +
          " " * 20 + "- {name: core, role: CORE, instance_type: m5.xlarge, instance_count: 2}")


class Emr(WorkflowCase):
    run_timeout = 45

    def setUp(self):
        self.fake = None
        self.c = None

    def tearDown(self):
        violations = self.c.stop() if self.c else []
        if self.fake:
            self.fake.stop()
        self.assertEqual(violations, [], "invariant violated")

    # -------------------------------------------------------------- helpers
    def start(self, *fake_args, env=None, extra=""):
        self.fake = EmrFake(*fake_args)
        e = aws_env(AK, SK)
        e.update(env or {})
        extra = extra.replace("{imds}", str(self.fake.imds))
        self.c = Cluster(extra="emr:\n  endpoint: http://127.0.0.1:%d\n  region: us-east-1\n%s"
                               % (self.fake.port, extra), env=e)
        return self.c.start()

    def start_with_imds(self, token, *fake_args):
        """Nodes whose only credentials come from the stand-in's IMDS."""
        return self.start("--session-token", token, "--imds-port", "0", *fake_args,
                          env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                               "AWS_EC2_METADATA_DISABLED": ""},
                          extra="aws:\n  imds_endpoint: http://127.0.0.1:{imds}\n")

    def apply_cluster_and_step(self, wf, step_s):
        """wf: a cluster, then one step on it lasting step_s seconds."""
        self.apply("""
            workflow: %s
            schedule: none
            defaults: {retries: 0}
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-%s
                  release_label: emr-6.15.0
                  keep_alive_when_no_steps: true
                  wait_until_ready: true%s
              - id: step
                depends_on: [create]
                emr_add_step:
                  cluster_id: "{{ tasks.create.cluster_id }}"
                  name: slow
                  args: [spark-submit, "fake:sleep=%d"]
                  wait_for_completion: true
        """ % (wf, wf, GROUPS, step_s))

    def trigger(self, wf):
        batonctl(self.c.name, "trigger", wf)
        return wait_for(lambda: self.q("SELECT run_id FROM workflow_runs WHERE cluster = $C AND "
                                       "workflow_id = '%s'" % wf), 20, "a run of " + wf)

    def wait_done(self, wf):
        """the state of wf's one run, once finished"""
        _, state = self.wait_run_done(wf)
        self.assertEqual(len(self.runs(wf)), 1, "one run of " + wf)
        return state

    def alive(self):
        return any(n.status() for n in self.c.nodes)

    # -------------------------------------------------------------- cases
    def test_01_cluster_step_terminate(self):
        self.start()
        self.apply("""
            workflow: flow
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: "t4300-flow-{{ run.date }}"
                  release_label: emr-6.15.0
                  applications: [Spark, Hadoop]
                  keep_alive_when_no_steps: true
                  wait_until_ready: true
                  auto_termination_idle: 1h
                  service_role: EMR_DefaultRole
                  job_flow_role: EMR_EC2_DefaultRole
                  log_uri: s3://logs/t4300/
                  configurations:
                    - Classification: spark-defaults
                      Properties: {spark.sql.adaptive.enabled: "true"}
                  bootstrap_actions:
                    - {name: deps, path: s3://b/boot.sh, args: [--x, "1"]}
                  tags: {team: data-eng}%s
              - id: step
                depends_on: [create]
                emr_add_step:
                  cluster_id: "{{ tasks.create.cluster_id }}"
                  name: transform
                  args: [spark-submit, s3://b/job.py, "{{ run.date }}"]
                  wait_for_completion: true
                  execution_role_arn: arn:aws:iam::123456789012:role/etl-transform
              - id: sensor
                depends_on: [step]
                emr_wait_step:
                  cluster_id: "{{ tasks.step.cluster_id }}"
                  step_id: "{{ tasks.step.step_id }}"
                  poll_interval: 1s
              - id: ready
                depends_on: [create]
                emr_wait_cluster: {cluster_id: "{{ tasks.create.cluster_id }}"}
              - id: terminate
                depends_on: [sensor, ready]
                trigger_rule: all_done
                emr_terminate_cluster:
                  cluster_id: "{{ tasks.create.cluster_id }}"
        """ % GROUPS)
        run = self.trigger("flow")
        self.assertEqual(self.wait_done("flow"), "success")
        st = self.fake.stats()
        self.assertEqual((st["RunJobFlow"], st["AddJobFlowSteps"], st["TerminateJobFlows"]), (1, 1, 1))
        self.assertEqual(st["auth_failures"], {}, "every request was signed right")
        create, step = self.task_log("flow", run, "create"), self.task_log("flow", run, "step")
        cid = create["outputs"]["cluster_id"]
        self.assertEqual(create["remote_state"], "WAITING")
        self.assertEqual(step["outputs"], {"cluster_id": cid, "step_id": step["outputs"]["step_id"]})
        self.assertEqual(self.task_log("flow", run, "sensor")["outputs"], {"state": "COMPLETED"})
        self.assertEqual(self.task_log("flow", run, "ready")["outputs"]["state"], "WAITING")
        # what went over the wire
        req = self.fake.last("RunJobFlow")
        self.assertIn({"Key": "baton:run-key", "Value": "flow/%s/create/1" % run}, req["Tags"])
        self.assertIn({"Key": "team", "Value": "data-eng"}, req["Tags"])
        self.assertEqual(req["Configurations"], [{"Classification": "spark-defaults", "Properties":
                                                  {"spark.sql.adaptive.enabled": "true"}}])
        self.assertEqual(req["Instances"]["InstanceGroups"][1],
                         {"Name": "core", "InstanceRole": "CORE", "InstanceType": "m5.xlarge",
                          "InstanceCount": 2})
        self.assertTrue(req["Instances"]["KeepJobFlowAliveWhenNoSteps"])
        self.assertEqual(req["AutoTerminationPolicy"], {"IdleTimeout": 3600})
        self.assertEqual(req["BootstrapActions"][0]["ScriptBootstrapAction"],
                         {"Path": "s3://b/boot.sh", "Args": ["--x", "1"]})
        self.assertEqual((req["VisibleToAllUsers"], req["Applications"]),
                         (True, [{"Name": "Spark"}, {"Name": "Hadoop"}]))
        s = self.fake.last("AddJobFlowSteps")
        self.assertEqual(s["JobFlowId"], cid)
        self.assertEqual(s["ExecutionRoleArn"], "arn:aws:iam::123456789012:role/etl-transform")
        self.assertEqual(s["Steps"][0]["Name"], "transform [flow/%s/step/1]" % run)
        self.assertEqual(s["Steps"][0]["ActionOnFailure"], "CONTINUE")
        self.assertEqual(s["Steps"][0]["HadoopJarStep"]["Jar"], "command-runner.jar")
        self.assertEqual(self.fake.last("TerminateJobFlows"), {"JobFlowIds": [cid]})
        wait_for(lambda: self.fake.clusters()[0]["Status"]["State"] == "TERMINATED", 5,
                 "the cluster to terminate")

    def test_02_wrong_secret_is_recorded(self):
        self.start(env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
        self.apply("""
            workflow: badkey
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-badkey
                  release_label: emr-6.15.0%s
        """ % GROUPS)
        run = self.trigger("badkey")
        self.assertEqual(self.wait_done("badkey"), "failed")
        t = self.task_log("badkey", run, "create")
        self.assertEqual((t["state"], t["error_code"]), ("failed", "InvalidSignatureException"))
        self.assertIn("signature we calculated does not match", t["error"])
        st = self.fake.stats()
        self.assertEqual(st["RunJobFlow"], 0)
        self.assertGreaterEqual(st["auth_failures"]["InvalidSignatureException"], 1)

    def test_03_session_token_and_failures_recorded(self):
        self.start("--session-token", "FwoG/t4300+session=token",
                   env={"AWS_SESSION_TOKEN": "FwoG/t4300+session=token"})
        self.apply("""
            workflow: fails
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-fails
                  release_label: emr-6.15.0
                  keep_alive_when_no_steps: true%s
              - id: step
                depends_on: [create]
                emr_add_step:
                  cluster_id: "{{ tasks.create.cluster_id }}"
                  name: doomed
                  action_on_failure: CONTINUE
                  args: [spark-submit, "fake:fail"]
                  wait_for_completion: true
              - id: hang
                depends_on: [create]
                timeout: 2s
                emr_add_step:
                  cluster_id: "{{ tasks.create.cluster_id }}"
                  name: hangs
                  args: [spark-submit, "fake:sleep=60"]
                  wait_for_completion: true
              - id: broken
                emr_create_cluster:
                  name: t4300-broken
                  release_label: emr-6.15.0
                  wait_until_ready: true
                  tags: {"fake:fate": fail}%s
              - id: invalid
                emr_create_cluster:
                  name: t4300-invalid
                  release_label: emr-6.15.0
                  instance_groups:
                    - {role: MASTER, instance_type: m5.xlarge, instance_count: 0}
        """ % (GROUPS, GROUPS))
        run = self.trigger("fails")
        self.assertEqual(self.wait_done("fails"), "failed")
        self.assertEqual(self.fake.stats()["auth_failures"], {}, "the token was sent and signed")
        step = self.task_log("fails", run, "step")
        # (remote_state is the handle's, written while running: the dispatcher
        # keeps the final state in the error record)
        self.assertEqual((step["state"], step["error_code"]), ("failed", "step_failed"))
        self.assertIn("is FAILED", step["error"])
        self.assertIn("Unknown Error.", step["detail"])
        self.assertIn("s3://fake-logs/", step["detail"])
        broken = self.task_log("fails", run, "broken")
        self.assertEqual(broken["error_code"], "cluster_terminated")
        self.assertIn("is TERMINATED_WITH_ERRORS", broken["error"])
        self.assertIn("BOOTSTRAP_FAILURE", broken["detail"])
        # a timeout cancels the step on EMR
        self.assertEqual(self.task_log("fails", run, "hang")["state"], "timed_out")
        self.assertEqual(self.fake.stats()["CancelSteps"], 1)
        def hung():
            return [(c["Id"], s) for c in self.fake.clusters() for s in c["Steps"]
                    if s["Name"].startswith("hangs")][0]
        cid, step = hung()
        self.assertEqual(self.fake.last("CancelSteps"),
                         {"ClusterId": cid, "StepIds": [step["Id"]],
                          "StepCancellationOption": "SEND_INTERRUPT"})
        wait_for(lambda: hung()[1]["Status"]["State"] == "CANCELLED" or None, 5,
                 "the step to be cancelled")
        invalid = self.task_log("fails", run, "invalid")
        self.assertEqual(invalid["error_code"], "ValidationException")
        self.assertIn("instanceCount", invalid["error"])

    def takeover(self, op, flow):
        old, _ = self.start()
        self.fake.fault(op=op, mode="slow", delay_ms=6000)
        self.apply(flow)
        run = self.trigger("takeover")
        wait_for(lambda: self.fake.stats()[op] == 1 or None, 20, op + " to reach EMR")
        old.kill9()
        new, _ = self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        self.assertEqual(self.wait_done("takeover"), "success")
        self.assertEqual(self.fake.stats()[op], 1, "submitted twice")
        self.assertIn("adopted", new.logtext())
        return run

    def test_04_takeover_during_run_job_flow_adopts_by_tag(self):
        run = self.takeover("RunJobFlow", """
            workflow: takeover
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-takeover
                  release_label: emr-6.15.0
                  keep_alive_when_no_steps: true
                  wait_until_ready: true%s
        """ % GROUPS)
        t = self.task_log("takeover", run, "create")
        self.assertEqual(t["outputs"]["cluster_id"], self.fake.clusters()[0]["Id"])
        calls = self.fake.stats()["calls"]
        self.assertGreaterEqual(calls["ListClusters"], 1)
        self.assertGreaterEqual(calls["DescribeCluster"], 1)

    def test_05_takeover_during_add_job_flow_steps_adopts_by_name(self):
        run = self.takeover("AddJobFlowSteps", """
            workflow: takeover
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-takeover-steps
                  release_label: emr-6.15.0
                  keep_alive_when_no_steps: true%s
              - id: step
                depends_on: [create]
                emr_add_step:
                  cluster_id: "{{ tasks.create.cluster_id }}"
                  name: once
                  args: [spark-submit, s3://b/job.py]
                  wait_for_completion: true
        """ % GROUPS)
        t = self.task_log("takeover", run, "step")
        steps = self.fake.clusters()[0]["Steps"]
        self.assertEqual([s["Id"] for s in steps], [t["outputs"]["step_id"]])
        self.assertGreaterEqual(self.fake.stats()["calls"]["ListSteps"], 1)

    def test_06_lost_answer_throttling_and_garbage(self):
        self.start()
        # RunJobFlow done but its answer lost: looked up, adopted, not redone
        self.fake.fault(op="RunJobFlow", mode="lost")
        # AddJobFlowSteps throttled twice: the transport retries it
        self.fake.fault(op="AddJobFlowSteps", mode="throttle", count=2)
        self.apply("""
            workflow: faults
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-faults
                  release_label: emr-6.15.0
                  keep_alive_when_no_steps: true%s
              - id: step
                depends_on: [create]
                emr_add_step:
                  cluster_id: "{{ tasks.create.cluster_id }}"
                  name: throttled
                  args: [spark-submit, s3://b/job.py]
        """ % GROUPS)
        run = self.trigger("faults")
        self.assertEqual(self.wait_done("faults"), "success")
        st = self.fake.stats()
        self.assertEqual((st["RunJobFlow"], st["AddJobFlowSteps"]), (1, 1))
        self.assertEqual(st["calls"]["AddJobFlowSteps"], 3)
        self.assertEqual(self.task_log("faults", run, "create")["outputs"]["cluster_id"],
                         self.fake.clusters()[0]["Id"])
        # a malformed answer fails the task with the reason; the daemon lives
        self.fake.fault(op="RunJobFlow", mode="garbage")
        self.fake.fault(op="DescribeCluster", mode="body",
                        body='{"Cluster": {"Id": "j-X", "Status": {"State": "EXPLODING"}}}')
        self.apply("""
            workflow: garbage
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-garbage
                  release_label: emr-6.15.0%s
              - id: sensor
                emr_wait_cluster: {cluster_id: "%s"}
        """ % (GROUPS, self.fake.clusters()[0]["Id"]))
        run = self.trigger("garbage")
        self.assertEqual(self.wait_done("garbage"), "failed")
        for task, what in (("create", "not a JSON object"), ("sensor", "EXPLODING")):
            t = self.task_log("garbage", run, task)
            self.assertEqual((t["state"], t["error_code"]), ("failed", "bad_response"))
            self.assertIn(what, t["error"])
        self.assertTrue(self.alive())

    def test_07_credentials_from_imds(self):
        self.start_with_imds("imds/session+token", "--imds-expiry-s", "4")
        self.apply_cluster_and_step("imds", 3)
        self.trigger("imds")
        self.assertEqual(self.wait_done("imds"), "success")
        st = self.fake.stats()
        self.assertEqual(st["auth_failures"], {})
        self.assertEqual(st["RunJobFlow"], 1)
        # keys living 4 s are fetched again halfway, the IMDS token is reused
        self.assertGreaterEqual(st["imds"]["role_creds"], 2)
        self.assertLessEqual(st["imds"]["token"], 3)
        logs = "".join(n.logtext() for n in self.c.nodes)
        self.assertIn("credentials from imds baton-test-role", logs)
        self.assertNotIn(SK, logs, "a secret reached the log")
        self.assertNotIn("imds/session+token", logs, "a token reached the log")

    def test_09_expired_session_token_is_renewed(self):
        """Temporary keys from the instance role expire under a running
        step: EMR answers ExpiredTokenException; the cached keys are
        dropped, new ones fetched from the IMDS, the poll asked again. The
        step is neither failed nor added twice."""
        self.start_with_imds("imds/first")
        self.apply_cluster_and_step("expiry", 4)
        self.trigger("expiry")
        wait_for(lambda: self.task_state("expiry", "step") == "running", 30, "the step running")
        before = self.fake.stats()["imds"]["role_creds"]
        self.fake.call("POST", "/_expire_token", {})
        self.assertEqual(self.wait_done("expiry"), "success")
        st = self.fake.stats()
        self.assertGreaterEqual(st["auth_failures"].get("ExpiredTokenException", 0), 1, st)
        self.assertGreater(st["imds"]["role_creds"], before)  # fetched again
        self.assertEqual((st["RunJobFlow"], st["AddJobFlowSteps"]), (1, 1))
        logs = "".join(n.logtext() for n in self.c.nodes)
        self.assertNotIn("imds/first", logs, "a token reached the log")

    def test_08_credentials_from_the_shared_file(self):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "t4300-credentials-%d" % os.getpid())
        with open(path, "w") as f:
            f.write("# not these\n[default]\naws_access_key_id = AKIAWRONG\n"
                    "aws_secret_access_key = wrong\n\n"
                    "[profile t4300]\n; the config file's spelling is accepted too\n"
                    "aws_access_key_id=%s\n  aws_secret_access_key =  %s  \n" % (AK, SK))
        self.addCleanup(os.unlink, path)
        self.start(env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                        "AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "t4300"})
        self.apply("""
            workflow: profile
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-profile
                  release_label: emr-6.15.0%s
        """ % GROUPS)
        run = self.trigger("profile")
        self.assertEqual(self.wait_done("profile"), "success")
        self.assertEqual(self.fake.stats()["auth_failures"], {})
        self.assertTrue(self.task_log("profile", run, "create")["outputs"]["cluster_id"])
        self.assertIn("credentials from profile t4300", self.c.nodes[0].logtext() +
                      self.c.nodes[1].logtext() + self.c.nodes[2].logtext())

    def test_10_job_flow_overrides(self):
        """Any RunJobFlow member, checked when applied, typed on the wire,
        merged over the typed fields; our run-key tag always stays."""
        self.start()
        bad = self.apply("""
            workflow: bad
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-bad
                  release_label: emr-6.15.0%s
                  job_flow_overrides:
                    Intances: {Ec2SubnetIds: [subnet-1]}
                    StepConcurrencyLevel: two
        """ % GROUPS, check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("wf0.yaml:13:9: tasks[0].emr_create_cluster.job_flow_overrides.Intances: "
                      "unknown RunJobFlow member 'Intances' (did you mean 'Instances'?)",
                      bad.stderr)
        self.assertIn("job_flow_overrides.StepConcurrencyLevel: 'two' is not a whole number",
                      bad.stderr)
        self.apply("""
            workflow: over
            schedule: none
            tasks:
              - id: create
                emr_create_cluster:
                  name: t4300-over
                  release_label: emr-6.15.0
                  keep_alive_when_no_steps: true
                  wait_until_ready: true
                  tags: {team: data-eng}%s
                  job_flow_overrides:
                    SecurityConfiguration: kerberos-sec
                    StepConcurrencyLevel: 5
                    EbsRootVolumeSize: 64
                    ManagedScalingPolicy:
                      ComputeLimits: {UnitType: Instances, MinimumCapacityUnits: 2,
                                      MaximumCapacityUnits: 10}
                    Instances:
                      Ec2SubnetIds: [subnet-a, subnet-b]
                    Tags:
                      - {Key: cost-center, Value: "4711"}
                      - {Key: "baton:run-key", Value: not-ours}
              - id: terminate
                depends_on: [create]
                trigger_rule: all_done
                emr_terminate_cluster: {cluster_id: "{{ tasks.create.cluster_id }}"}
        """ % GROUPS)
        run = self.trigger("over")
        self.assertEqual(self.wait_done("over"), "success")
        req = self.fake.last("RunJobFlow")
        self.assertEqual((req["SecurityConfiguration"], req["StepConcurrencyLevel"],
                          req["EbsRootVolumeSize"]), ("kerberos-sec", 5, 64))
        self.assertEqual(req["ManagedScalingPolicy"], {"ComputeLimits": {
            "UnitType": "Instances", "MinimumCapacityUnits": 2, "MaximumCapacityUnits": 10}})
        # merged into the typed Instances, not over them
        self.assertEqual(req["Instances"]["Ec2SubnetIds"], ["subnet-a", "subnet-b"])
        # kept alive without auto_termination_idle: EMR's idle timer, 1 h
        self.assertEqual(req["AutoTerminationPolicy"], {"IdleTimeout": 3600})
        self.assertEqual(req["Instances"]["InstanceGroups"][0]["InstanceRole"], "MASTER")
        self.assertTrue(req["Instances"]["KeepJobFlowAliveWhenNoSteps"])
        tags = {t["Key"]: t["Value"] for t in req["Tags"]}
        self.assertEqual(tags, {"team": "data-eng", "cost-center": "4711",
                                "baton:run-key": "over/%s/create/1" % run})


if __name__ == "__main__":
    unittest.main(verbosity=2)
