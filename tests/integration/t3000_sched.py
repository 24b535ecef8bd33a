#!/usr/bin/python3
"""The dispatcher end to end: three real batond nodes, real ZooKeeper and
PostgreSQL (harness servers of our own), workflows applied with batonctl and
run with test_op, whose jobs are files under a directory outside the
daemons, so a test can count every submission across a takeover.

The one-leader checker of batonlib runs throughout every case.
"""
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import SESSION_MS, Cluster, WorkflowCase, batonctl, wait_for  # noqa: E402


class Sched(WorkflowCase):
    def setUp(self):
        self.jobs = tempfile.mkdtemp(prefix="baton-t3000-jobs-")
        self.c = Cluster(env={"BATON_TEST_OP_DIR": self.jobs})
        self.files = []

    def tearDown(self):
        violations = self.c.stop()
        shutil.rmtree(self.jobs, ignore_errors=True)
        self.assertEqual(violations, [], "invariant violated")

    # -------------------------------------------------------------- helpers
    def submissions(self):
        path = os.path.join(self.jobs, "submissions.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [l for l in f.read().splitlines() if l]

    # -------------------------------------------------------------- cases
    def test_01_dag_with_templates(self):
        self.c.start()
        self.apply("""
            workflow: dag
            schedule: none
            tasks:
              - id: extract
                test_op: {duration: 200ms, outputs: {table: raw_events}}
              - id: transform
                depends_on: [extract]
                test_op: {outputs: {source: "{{ tasks.extract.table }}@{{ run.date }}"}}
              - id: load
                depends_on: [transform]
                test_op: {outputs: {from: "{{ tasks.transform.source }}"}}
        """)
        batonctl(self.c.name, "trigger", "dag", "--conf", '{"who": "t3000"}')
        rows = self.wait_runs_done("dag")
        self.assertEqual(rows[0][1], "success")
        t = self.tasks("dag")
        self.assertEqual(t, {"extract": [(1, "success")], "transform": [(1, "success")],
                             "load": [(1, "success")]})
        # templates saw the upstream's output and the run's date
        show = batonctl(self.c.name, "--json", "run", "show", "dag", rows[0][0]).stdout
        self.assertIn('"state": "success"', show)
        # every task was submitted once, in dependency order
        subs = self.submissions()
        self.assertEqual([s.split("/")[2] for s in subs], ["extract", "transform", "load"])
        out = self.q("SELECT count(*) FROM events WHERE cluster = $C AND kind = 'transition'")
        self.assertGreaterEqual(int(out), 9)

    def test_02_retries_with_backoff(self):
        self.c.start()
        self.apply("""
            workflow: flaky
            schedule: none
            defaults: {retries: 2, retry_backoff: 300ms, retry_backoff_max: 1s}
            tasks:
              - id: call
                test_op: {fail_attempts: 2}
        """)
        batonctl(self.c.name, "trigger", "flaky")
        rows = self.wait_runs_done("flaky")
        self.assertEqual(rows[0][1], "success")
        self.assertEqual(self.tasks("flaky")["call"],
                         [(1, "up_for_retry"), (2, "up_for_retry"), (3, "success")])
        err = self.q("SELECT error FROM task_runs WHERE cluster = $C AND attempt = 1")
        self.assertIn("FAILED", err)

    def test_03_trigger_rules_and_failure(self):
        self.c.start()
        self.apply("""
            workflow: rules
            schedule: none
            tasks:
              - id: bad
                test_op: {fail_attempts: 9}
              - id: good
                test_op: {}
              - id: after_bad
                depends_on: [bad]
                test_op: {}
              - id: downstream
                depends_on: [after_bad]
                test_op: {}
              - id: cleanup
                depends_on: [bad, good]
                trigger_rule: all_done
                test_op: {}
              - id: alert
                depends_on: [bad, good]
                trigger_rule: one_failed
                test_op: {}
              - id: only_if_fine
                depends_on: [good]
                trigger_rule: one_failed
                test_op: {}
              - id: either
                depends_on: [bad, good]
                trigger_rule: one_success
                test_op: {}
        """)
        batonctl(self.c.name, "trigger", "rules")
        rows = self.wait_runs_done("rules")
        self.assertEqual(rows[0][1], "failed")
        final = {k: v[-1][1] for k, v in self.tasks("rules").items()}
        self.assertEqual(final, {"bad": "failed", "good": "success",
                                 "after_bad": "upstream_failed", "downstream": "upstream_failed",
                                 "cleanup": "success", "alert": "success",
                                 "only_if_fine": "skipped", "either": "success"})

    def test_04_timeout_cancels_the_job(self):
        self.c.start()
        self.apply("""
            workflow: slow
            schedule: none
            tasks:
              - id: hang
                timeout: 1s
                test_op: {duration: 60s}
        """)
        batonctl(self.c.name, "trigger", "slow")
        rows = self.wait_runs_done("slow", timeout=20)
        self.assertEqual(rows[0][1], "failed")
        self.assertEqual(self.tasks("slow")["hang"], [(1, "timed_out")])
        with open(os.path.join(self.jobs, "cancels.log")) as f:
            self.assertIn("slow/", f.read())

    def test_05_pool_slots_and_priority(self):
        self.c.start()
        batonctl(self.c.name, "pool", "set", "tiny", "1")
        self.apply("""
            workflow: pooled
            schedule: none
            defaults: {pool: tiny}
            tasks:
              - {id: low, priority: 1, test_op: {duration: 300ms}}
              - {id: high, priority: 9, test_op: {duration: 300ms}}
              - {id: mid, priority: 5, test_op: {duration: 300ms}}
        """)
        batonctl(self.c.name, "trigger", "pooled")
        self.wait_runs_done("pooled")
        # one slot: the attempts ran one after another, highest priority first
        rows = self.q("SELECT task_id FROM events e JOIN task_runs t ON t.run_key = e.run_key "
                      "AND t.cluster = e.cluster WHERE e.cluster = $C AND e.to_state = 'queued' "
                      "ORDER BY e.id")
        self.assertEqual(rows.split(), ["high", "mid", "low"])
        spans = []
        for key in self.submissions():
            with open(os.path.join(self.jobs, key.replace("/", "+") + ".job")) as f:
                spans.append(int(f.read().split()[0]))
        spans.sort()
        for a, b in zip(spans, spans[1:]):
            self.assertGreaterEqual(b - a, 300, "two jobs shared one slot")

    def test_06_catchup_in_order_within_max_active_runs(self):
        self.c.start()
        start = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 4 * 60 - 30))
        self.apply("""
            workflow: every_minute
            schedule: "* * * * *"
            start_date: %s
            catchup: true
            max_active_runs: 2
            tasks:
              - id: work
                test_op: {duration: 300ms}
        """ % start)
        self.wait_runs_done("every_minute", n=4, timeout=30)
        ids = [r[0] for r in self.runs("every_minute")]
        self.assertEqual(ids, sorted(ids), "catchup runs out of order")
        # never more than max_active_runs at once: run create events vs finishes
        ev = self.q("SELECT kind FROM events WHERE cluster = $C AND kind IN "
                    "('run_create', 'run_transition') ORDER BY id").split()
        active = peak = 0
        for k in ev:
            active += 1 if k == "run_create" else -1
            peak = max(peak, active)
        self.assertLessEqual(peak, 2)
        # the cursor is persisted past now
        nxt = self.q("SELECT next_fire_at > now() FROM workflows WHERE cluster = $C")
        self.assertEqual(nxt, "t")

    def test_07_pause_stops_scheduled_runs(self):
        self.c.start()
        self.apply("""
            workflow: paused_one
            schedule: "* * * * *"
            start_date: %s
            catchup: true
            tasks:
              - {id: work, test_op: {}}
        """ % time.strftime("%Y-%m-%d", time.gmtime()), "--paused")
        time.sleep(2)  # several dispatcher turns and config polls
        before = int(self.q("SELECT count(*) FROM workflow_runs WHERE cluster = $C"))
        time.sleep(1.5)
        self.assertEqual(int(self.q("SELECT count(*) FROM workflow_runs WHERE cluster = $C")),
                         before)
        self.assertEqual(before, 0, "a paused workflow got runs")
        batonctl(self.c.name, "unpause", "paused_one")
        self.wait_runs_done("paused_one", n=1)

    def test_08_takeover_mid_dag_neither_repeats_nor_loses(self):
        old, _ = self.c.start()
        self.apply("""
            workflow: chain
            schedule: none
            defaults: {retries: 1, retry_backoff: 100ms}
            tasks:
              - {id: a, test_op: {duration: 1500ms}}
              - {id: b, depends_on: [a], test_op: {duration: 1500ms}}
              - {id: c, depends_on: [b], test_op: {duration: 1500ms}}
        """)
        batonctl(self.c.name, "trigger", "chain")
        wait_for(lambda: len(self.submissions()) >= 2 or None, 20, "task b submitted")
        old.kill9()
        new, _ = self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        rows = self.wait_runs_done("chain", timeout=30)
        self.assertEqual(rows[0][1], "success")
        subs = self.submissions()
        self.assertEqual(sorted(subs), sorted(set(subs)), "a task run was submitted twice")
        self.assertEqual(self.tasks("chain"), {"a": [(1, "success")], "b": [(1, "success")],
                                               "c": [(1, "success")]})
        self.assertIn("loaded", new.logtext())

    def test_09_frozen_leader_writes_are_fenced(self):
        old, _ = self.c.start()
        self.apply("""
            workflow: frozen
            schedule: none
            tasks:
              - {id: a, test_op: {duration: 2s}}
              - {id: b, depends_on: [a], test_op: {duration: 500ms}}
        """)
        batonctl(self.c.name, "trigger", "frozen")
        wait_for(lambda: len(self.submissions()) >= 1 or None, 20, "task a submitted")
        old.signal(signal.SIGSTOP)
        self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        rows = self.wait_runs_done("frozen", timeout=30)
        old.signal(signal.SIGCONT)
        time.sleep(1)
        self.assertEqual(rows[0][1], "success")
        subs = self.submissions()
        self.assertEqual(sorted(subs), sorted(set(subs)), "a task run was submitted twice")
        # every transition was written by a leader whose epoch was current
        epochs = self.q("SELECT DISTINCT writer_epoch FROM task_runs WHERE cluster = $C").split()
        fence = self.q("SELECT epoch FROM fence WHERE cluster = $C")
        self.assertIn(fence, epochs)

    def test_10_backfill_and_unchanged_apply(self):
        self.c.start()
        wf = """
            workflow: daily
            schedule: "0 3 * * *"
            timezone: Europe/Berlin
            tasks:
              - {id: work, test_op: {outputs: {day: "{{ run.date }}"}}}
        """
        self.assertIn("created", self.apply(wf).stdout)
        path = self.files[-1]
        again = batonctl(self.c.name, "workflow", "apply", path).stdout
        self.assertIn("unchanged (version 1)", again)
        out = batonctl(self.c.name, "backfill", "daily", "--from", "2026-03-28",
                       "--to", "2026-03-30").stdout
        self.assertIn("requested 3 backfill runs", out)
        rows = self.wait_runs_done("daily", n=3)
        kinds = self.q("SELECT DISTINCT kind FROM workflow_runs WHERE cluster = $C")
        self.assertEqual(kinds, "backfill")
        # 03:00 Berlin across the spring-forward night: 02:00Z, then 01:00Z
        times = self.q("SELECT to_char(logical_time AT TIME ZONE 'UTC', 'MM-DD HH24:MI') FROM "
                       "workflow_runs WHERE cluster = $C ORDER BY 1").splitlines()
        self.assertEqual(times, ["03-28 02:00", "03-29 01:00", "03-30 01:00"])
        days = [r[0] for r in rows]
        self.assertEqual(len(set(days)), 3)

    def test_11_scheduled_runs_across_a_takeover(self):
        old, _ = self.c.start()
        start = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 6 * 60))
        self.apply("""
            workflow: minutely
            schedule: "* * * * *"
            start_date: %s
            catchup: true
            tasks:
              - {id: work, test_op: {duration: 700ms}}
        """ % start)
        wait_for(lambda: int(self.q("SELECT count(*) FROM workflow_runs WHERE cluster = $C")) >= 2
                 or None, 20, "two runs")
        old.kill9()
        self.c.wait_leader(SESSION_MS / 1000 * 3, exclude=old)
        self.wait_runs_done("minutely", n=6, timeout=40)
        times = self.q("SELECT logical_time FROM workflow_runs WHERE cluster = $C "
                       "ORDER BY logical_time").splitlines()
        self.assertEqual(len(times), len(set(times)), "a cron time got two runs")
        # consecutive minutes, none skipped across the takeover
        mins = [int(t[14:16]) for t in times]
        for a, b in zip(mins, mins[1:]):
            self.assertEqual((b - a) % 60, 1, times)
        subs = self.submissions()
        self.assertEqual(sorted(subs), sorted(set(subs)), "a task run was submitted twice")


if __name__ == "__main__":
    unittest.main(verbosity=2)
