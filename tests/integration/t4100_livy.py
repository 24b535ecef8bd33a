#!/usr/bin/python3
"""The Livy operators end to end: three real batond nodes (harness servers
of our own) against tests/fakes/livy_fake.py, a stateful Livy 0.8 stand-in
with CSRF protection and basic auth on, whose /_stats counts what was
created so a test can prove that nothing was submitted twice, and whose
/_fault injects 503s, slow answers and garbage.

The one-leader checker of batonlib runs throughout every case.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import SESSION_MS, Cluster, Fake, WorkflowCase, batonctl, wait_for  # noqa: E402


class LivyTest(WorkflowCase):
    run_timeout = 60

    def setUp(self):
        self.fake = Fake("livy_fake", "--csrf", "--auth", "baton:s3cret", timeout=10,
                         headers={"X-Requested-By": "t4100",
                                  "Authorization": "Basic YmF0b246czNjcmV0"})
        self.c = Cluster(extra="livy:\n  url: http://127.0.0.1:%d/\n  auth: basic baton:s3cret\n"
                         % self.fake.port)

    def tearDown(self):
        # stop the nodes first: their logs are gone after Cluster.stop
        for n in self.c.nodes:
            try:
                n.terminate()
            except AssertionError:
                pass
        reports = [n.name for n in self.c.nodes if "Sanitizer" in n.logtext()
                   or "runtime error:" in n.logtext()]
        if reports:
            for n in self.c.nodes:
                print("---- %s\n%s" % (n.name, n.logtext()[-6000:]))
        violations = self.c.stop()
        self.fake.stop()
        self.assertEqual(violations, [], "invariant violated")
        self.assertEqual(reports, [], "sanitizer reports in node logs")

    # -------------------------------------------------------------- helpers
    def task(self, wf, task):
        """(state, record bytes) of the newest attempt."""
        row = self.q("SELECT state, encode(record, 'hex') FROM task_runs WHERE cluster = $C AND "
                     "workflow_id = '%s' AND task_id = '%s' ORDER BY attempt DESC LIMIT 1"
                     % (wf, task))
        state, rec = row.split("|")
        return state, bytes.fromhex(rec)

    def show(self, wf, run_id):
        out = batonctl(self.c.name, "--json", "run", "show", wf, run_id).stdout
        return {t["task"]: t for t in json.loads(out)}

    # -------------------------------------------------------------- batches
    def test_01_batch_success_with_outputs_and_templates(self):
        self.c.start()
        self.apply("""
            workflow: lb
            schedule: none
            tasks:
              - id: spark
                livy_batch:
                  file: s3://acme/etl/job.py
                  class_name: org.acme.Main
                  args: ["--date", "{{ run.date }}", "--run", "{{ run.id }}"]
                  py_files: [s3://acme/etl/lib.zip]
                  conf: {fake.duration_ms: "500", spark.sql.shuffle.partitions: "8"}
                  driver_memory: 2g
                  num_executors: 3
                  queue: etl
                  proxy_user: analyst
              - id: after
                depends_on: [spark]
                test_op:
                  outputs: {got: "{{ tasks.spark.livy_batch_id }}/{{ tasks.spark.app_id }}"}
        """)
        batonctl(self.c.name, "trigger", "lb")
        run_id, state = self.wait_run_done("lb")
        self.assertEqual(state, "success")
        st = self.fake.stats()
        self.assertEqual(st["batches_created"], 1)
        body = st["batch_bodies"][0]
        key = self.q("SELECT run_key FROM task_runs WHERE cluster = $C AND task_id = 'spark'")
        self.assertEqual(body["name"], key)  # adoption by name depends on this
        self.assertEqual(body["file"], "s3://acme/etl/job.py")
        self.assertEqual(body["className"], "org.acme.Main")
        self.assertEqual(body["args"][0], "--date")
        self.assertRegex(body["args"][1], r"^\d{4}-\d\d-\d\d$")  # rendered
        self.assertEqual(body["args"][3], run_id)
        self.assertEqual(body["pyFiles"], ["s3://acme/etl/lib.zip"])
        self.assertEqual(body["conf"]["spark.sql.shuffle.partitions"], "8")
        self.assertEqual((body["driverMemory"], body["numExecutors"], body["queue"],
                          body["proxyUser"]), ("2g", 3, "etl", "analyst"))
        self.assertNotIn("executorCores", body)  # unset fields are left out
        _, rec = self.task("lb", "after")
        self.assertIn(b"0/application_1700000000000_0000", rec)
        self.assertEqual(self.show("lb", run_id)["spark"]["remote"], "livy batch 0 at " + self.fake.url)

    def test_02_dead_batch_fails_with_the_log_tail(self):
        self.c.start()
        self.apply("""
            workflow: ld
            schedule: none
            tasks:
              - id: doomed
                livy_batch:
                  file: s3://acme/etl/bad.py
                  conf: {fake.fate: dead, fake.duration_ms: "300", fake.log_lines: "150"}
        """)
        batonctl(self.c.name, "trigger", "ld")
        run_id, state = self.wait_run_done("ld")
        self.assertEqual(state, "failed")
        self.assertIn("ended in state dead", self.show("ld", run_id)["doomed"]["error"])
        state, rec = self.task("ld", "doomed")
        self.assertEqual(state, "failed")
        self.assertIn(b"remote_failed", rec)
        self.assertIn(b"fake batch 0 failed (dead)", rec)  # the last log line
        self.assertIn(b"bad.py, line 150", rec)
        self.assertNotIn(b"bad.py, line 3\n", rec)  # the tail, not the head
        self.assertEqual(self.fake.stats()["requests"].get("GET /batches/{id}/log"), 2)

    def test_03_503_twice_then_success_submits_once(self):
        self.c.start()
        self.fake.fault(path_prefix="/batches", method="POST", status=503, count=2)
        self.apply("""
            workflow: l503
            schedule: none
            tasks:
              - id: spark
                livy_batch: {file: s3://acme/job.py, conf: {fake.duration_ms: "300"}}
        """)
        batonctl(self.c.name, "trigger", "l503")
        _, state = self.wait_run_done("l503")
        self.assertEqual(state, "success")
        st = self.fake.stats()
        self.assertEqual(st["batches_created"], 1)
        self.assertEqual(st["requests"]["POST /batches"], 3)
        # each unknown outcome was looked up before the next submission
        self.assertGreaterEqual(st["requests"]["GET /batches"], 2)

    def test_04_takeover_while_running_polls_the_same_batch(self):
        old, _ = self.c.start()
        self.apply("""
            workflow: lt
            schedule: none
            tasks:
              - id: long
                livy_batch: {file: s3://acme/long.py, conf: {fake.duration_ms: "8000"}}
        """)
        batonctl(self.c.name, "trigger", "lt")
        wait_for(lambda: self.task_state("lt", "long") == "running", 30, "the batch running")
        old.kill9()
        self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        _, state = self.wait_run_done("lt")
        self.assertEqual(state, "success")
        self.assertEqual(self.fake.stats()["batches_created"], 1)

    def test_05_takeover_while_submitting_adopts_by_name(self):
        old, _ = self.c.start()
        # somebody else's batches first, so that the lookup has to page
        for i in range(150):
            self.fake.call("POST", "/batches", {"file": "other.py", "name": "other-%d" % i,
                                                "conf": {"fake.duration_ms": "600000"}})
        # Livy creates the batch, but its answer comes only after the leader died
        self.fake.fault(path_prefix="/batches", method="POST", mode="slow", delay_ms=4000)
        self.apply("""
            workflow: ls
            schedule: none
            tasks:
              - id: spark
                livy_batch: {file: s3://acme/job.py, conf: {fake.duration_ms: "1000"}}
        """)
        batonctl(self.c.name, "trigger", "ls")
        wait_for(lambda: self.fake.stats()["batches_created"] == 151, 30, "the batch created")
        self.assertEqual(self.task_state("ls", "spark"), "submitting")
        old.kill9()
        new, _ = self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        _, state = self.wait_run_done("ls")
        self.assertEqual(state, "success")
        st = self.fake.stats()
        self.assertEqual(st["batches_created"], 151)
        self.assertEqual(st["requests"]["POST /batches"], 151)  # ours once
        self.assertGreaterEqual(st["requests"]["GET /batches"], 2)  # two pages
        self.assertIn("found batch 150", new.logtext())

    def test_06_timeout_deletes_the_batch(self):
        self.c.start()
        self.apply("""
            workflow: lto
            schedule: none
            tasks:
              - id: hang
                timeout: 2s
                livy_batch: {file: s3://acme/hang.py, conf: {fake.duration_ms: "600000"}}
        """)
        batonctl(self.c.name, "trigger", "lto")
        _, state = self.wait_run_done("lto")
        self.assertEqual(state, "failed")
        self.assertEqual(self.task_state("lto", "hang"), "timed_out")
        self.assertEqual(self.fake.stats()["batch_deletes"], [0])

    def test_07_garbage_fails_the_task_not_the_daemon(self):
        self.c.start()
        self.fake.fault(path_prefix="/batches/", method="GET", mode="garbage", count=-1)
        self.apply("""
            workflow: lg
            schedule: none
            tasks:
              - id: spark
                livy_batch: {file: s3://acme/job.py}
        """)
        batonctl(self.c.name, "trigger", "lg")
        run_id, state = self.wait_run_done("lg")
        self.assertEqual(state, "failed")
        state, rec = self.task("lg", "spark")
        self.assertEqual(state, "failed")
        self.assertIn(b"bad_response", rec)
        self.assertIn("not JSON", self.show("lg", run_id)["spark"]["error"])
        for n in self.c.nodes:
            self.assertIsNone(n.proc.poll(), "%s exited" % n.name)
        self.c.wait_leader(5)

    # -------------------------------------------------------------- statements
    def test_08_statements(self):
        self.c.start()
        self.apply("""
            workflow: lst
            schedule: none
            tasks:
              - id: count
                livy_statement:
                  kind: pyspark
                  code: spark.range(10).count()
                  proxy_user: analyst
                  executor_memory: 4g
                  conf: {fake.starting_ms: "800"}
              - id: broken
                livy_statement: {kind: pyspark, code: "raise RuntimeError()"}
              - id: orphaned
                livy_statement:
                  kind: spark
                  code: "1 + 1"
                  conf: {fake.session_fate: dead, fake.starting_ms: "300"}
              - id: endless
                timeout: 4s
                livy_statement:
                  kind: sql
                  code: SELECT 1
                  conf: {fake.statement_ms: "600000", fake.starting_ms: "300"}
        """)
        batonctl(self.c.name, "trigger", "lst")
        run_id, state = self.wait_run_done("lst")
        self.assertEqual(state, "failed")  # broken, orphaned and endless failed
        state, rec = self.task("lst", "count")
        self.assertEqual(state, "success")
        self.assertIn(b"fake output of: spark.range(10).count()", rec)
        state, rec = self.task("lst", "broken")
        self.assertEqual(state, "failed")
        self.assertIn(b"RuntimeError: fake failure in statement 0", rec)
        self.assertIn(b"Traceback (most recent call last)", rec)
        state, rec = self.task("lst", "orphaned")
        self.assertEqual(state, "failed")
        self.assertIn(b"died", rec)  # the session log's tail
        self.assertIn("before the statement ran", self.show("lst", run_id)["orphaned"]["error"])
        self.assertEqual(self.task_state("lst", "endless"), "timed_out")
        st = self.fake.stats()
        ids = {b["name"].split("/")[2]: i for i, b in enumerate(st["session_bodies"])}
        self.assertEqual(st["sessions_created"], 4)
        self.assertEqual(st["statements_created"], 3)  # none in the dead session
        # every session that could still hold resources was deleted
        self.assertEqual(sorted(st["session_deletes"]),
                         sorted(ids[t] for t in ("count", "broken", "endless")))
        self.assertEqual(st["session_bodies"][ids["count"]]["proxyUser"], "analyst")
        self.assertEqual(st["session_bodies"][ids["count"]]["executorMemory"], "4g")

    def statement_takeover(self, wf, fault_prefix, created):
        """A leader killed while Livy works on one of a statement's two
        creates (the session, then the statement in it); the answer comes
        only after the leader died. The new leader must adopt what exists."""
        old, _ = self.c.start()
        self.fake.fault(path_prefix=fault_prefix, method="POST", mode="slow", delay_ms=4000)
        self.apply("""
            workflow: %s
            schedule: none
            tasks:
              - id: q
                livy_statement:
                  kind: pyspark
                  code: spark.range(7).count()
                  conf: {fake.starting_ms: "200", fake.statement_ms: "1500"}
        """ % wf)
        batonctl(self.c.name, "trigger", wf)
        wait_for(lambda: self.fake.stats()[created] == 1, 30, "the Livy create done")
        old.kill9()
        self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        _, state = self.wait_run_done(wf)
        self.assertEqual(state, "success")
        state, rec = self.task(wf, "q")
        self.assertIn(b"fake output of: spark.range(7).count()", rec)
        st = self.fake.stats()
        self.assertEqual((st["sessions_created"], st["statements_created"]), (1, 1))
        self.assertEqual(st["requests"]["POST /sessions"], 1)
        self.assertEqual(st["requests"]["POST /sessions/{id}/statements"], 1)
        self.assertEqual(st["session_deletes"], [0])  # closed after, by the new leader
        return st

    def test_10_takeover_while_creating_the_session_adopts_it_by_name(self):
        st = self.statement_takeover("lss", "/sessions", "sessions_created")
        self.assertGreaterEqual(st["requests"]["GET /sessions"], 1)  # the lookup

    def test_11_takeover_while_posting_the_statement_finds_it(self):
        self.statement_takeover("lsq", "/sessions/", "statements_created")

    # -------------------------------------------------------------- shutdown
    def test_09_shutdown_with_a_request_in_flight(self):
        leader, _ = self.c.start()
        self.fake.fault(path_prefix="/batches", method="POST", mode="slow", delay_ms=5000)
        self.apply("""
            workflow: lq
            schedule: none
            tasks:
              - id: spark
                livy_batch: {file: s3://acme/job.py}
        """)
        batonctl(self.c.name, "trigger", "lq")
        wait_for(lambda: self.fake.stats()["batches_created"] == 1, 30, "the batch created")
        # stopped while the POST waits for its answer: a fence stops writes,
        # not calls, so the exit waits for the answer and writes it (the
        # batch's handle) before it lets go; the successor polls that batch
        # and never posts a second one
        self.assertEqual(leader.terminate(), 0)
        self.assertIn("calls finished, every outcome accounted for", leader.logtext())
        self.assertIn("released epoch", leader.logtext())
        # its answer was written: the successor polls, it never looks up
        self.assertIn(self.task_state("lq", "spark"), ("running", "success"))
        self.c.wait_leader(15)
        self.wait_run_done("lq", timeout=30)
        self.assertEqual(self.fake.stats()["requests"]["POST /batches"], 1)

    # -------------------------------------------------------------- load
    def test_12_calls_in_flight_are_bounded_and_none_is_lost(self):
        # 300 batches due in one turn, with pool and workflow slots for all:
        # the dispatcher starts BT_OP_HTTP_MAX_CALLS (128) submissions and
        # holds the rest, committed in `submitting`, until answers free
        # places; every one is still submitted exactly once
        leader, _ = self.c.start()
        batonctl(self.c.name, "pool", "set", "wide", "400")
        tasks = "".join("""
              - id: b%03d
                livy_batch: {file: s3://acme/job.py, conf: {fake.duration_ms: "300"}}"""
                        % i for i in range(300))
        self.apply("""
            workflow: lw
            schedule: none
            max_active_tasks: 300
            defaults: {pool: wide, retries: 0}
            tasks:""" + tasks + "\n")
        batonctl(self.c.name, "trigger", "lw")
        _, state = self.wait_run_done("lw", timeout=180)
        self.assertEqual(state, "success")
        st = self.fake.stats()
        self.assertEqual(st["batches_created"], 300)
        self.assertEqual(st["requests"]["POST /batches"], 300)
        ds = leader.status()["dispatcher"]
        self.assertEqual(ds["calls_in_flight_max"], 128)
        self.assertGreater(ds["calls_deferred"], 0)
        self.assertEqual(ds["calls_in_flight"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
