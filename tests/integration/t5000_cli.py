#!/usr/bin/python3
"""batonctl against a live three-node cluster (real ZooKeeper ensemble and
PostgreSQL from the harness): status/nodes/leader with --json checked field
by field, failover with and without --to, --to a draining node (refused),
--to-zone, drain of the leader (hands off), undrain, events, task
logs/kill/retry, run clear, and the documented exit codes. CommitFails:
a COMMIT that fails (a deferred constraint) is exit 1 with no line that
claims success, and nothing changed (no batond needed for that).
"""
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batonlib import Cluster, WorkflowCase, batonctl, psql, wait_for  # noqa: E402


class Cli(WorkflowCase):
    def setUp(self):
        self.jobs = tempfile.mkdtemp(prefix="baton-t5000-jobs-")
        self.c = Cluster(env={"BATON_TEST_OP_DIR": self.jobs})
        self.leader, _ = self.c.start()

    def tearDown(self):
        violations = self.c.stop()
        shutil.rmtree(self.jobs, ignore_errors=True)
        self.assertEqual(violations, [], "invariant violated")

    def ctl(self, *args, check=True):
        return batonctl(self.c.name, *args, check=check)

    def js(self, *args):
        return json.loads(self.ctl("--json", *args).stdout)

    def test_01_status_nodes_leader_json(self):
        st = self.js("status")
        self.assertEqual(st["cluster"], self.c.name)
        self.assertEqual(st["leader"]["node"], self.leader.name)
        self.assertEqual(st["leader"]["zone"], self.leader.zone)
        fence = int(self.q("SELECT epoch FROM fence WHERE cluster = $C"))
        self.assertEqual(st["leader"]["epoch"], fence)
        self.assertIsInstance(st["leader"]["since_ms"], int)
        self.assertEqual(sorted(n["node"] for n in st["nodes"]), ["n1", "n2", "n3"])
        for n in st["nodes"]:
            self.assertEqual(n["state"], "leading" if n["node"] == self.leader.name else "standby")
            self.assertEqual(n["zone"], "z" + n["node"][1])
            self.assertEqual(n["version"], "0.1.0")
            self.assertGreaterEqual(n["election_position"], 0)
            self.assertTrue(n["admin"].startswith("127.0.0.1:"))
        self.assertEqual(len(st["zookeeper"]["servers"]), 3)
        for s in st["zookeeper"]["servers"]:
            self.assertTrue(s["reachable"])
            self.assertIn(s["mode"], ("leader", "follower"))
        self.assertTrue(st["postgres"]["reachable"])
        self.assertTrue(st["postgres"]["server_version"])
        self.assertIsInstance(st["runs"], dict)
        self.assertIsInstance(st["tasks"], dict)
        self.assertEqual(st["leader_changes"][0]["node"], self.leader.name)
        self.assertFalse(st["handoff_pending"])
        nodes = self.js("nodes")
        self.assertEqual(len(nodes), 3)
        ld = self.js("leader")
        self.assertEqual((ld["node"], ld["epoch"]), (self.leader.name, fence))
        line = self.ctl("leader").stdout
        self.assertTrue(line.startswith(self.leader.name + " zone="))
        text = self.ctl("status").stdout  # human form, not a TTY: no colour
        self.assertNotIn("\033[", text)
        self.assertIn("leader    " + self.leader.name, text)

    def test_02_failover_plain_and_to(self):
        out = self.js("failover", "--wait", "20s")
        self.assertEqual(out["previous"], self.leader.name)
        self.assertNotEqual(out["leader"], self.leader.name)
        self.assertGreater(out["handoff_ms"], 0)
        new = out["leader"]
        target = [n for n in ("n1", "n2", "n3") if n != new][0]
        text = self.ctl("failover", "--to", target).stdout
        self.assertIn("new leader %s" % target, text)
        self.assertRegex(text, r"after \d+ ms")
        self.assertEqual(self.js("leader")["node"], target)

    def test_03_failover_refusals_and_drain(self):
        others = [n.name for n in self.c.nodes if n is not self.leader]
        self.assertIn("drained", self.ctl("drain", others[0]).stdout)
        wait_for(lambda: self.js("nodes") and
                 [n for n in self.js("nodes") if n["node"] == others[0]][0]["state"] == "draining",
                 5, "draining state")
        r = self.ctl("failover", "--to", others[0], check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("draining", r.stderr)
        r = self.ctl("failover", "--to", "nosuchnode", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such node", r.stderr)
        r = self.ctl("failover", "--to-zone", "nowhere", check=False)
        self.assertEqual(r.returncode, 1)
        # --to-zone picks the healthy node in that zone
        zone = [n for n in self.c.nodes if n.name == others[1]][0].zone
        out = self.js("failover", "--to-zone", zone)
        self.assertEqual(out["leader"], others[1])
        # drain of the leader hands off
        self.assertIn("hands off", self.ctl("drain", others[1]).stdout)
        wait_for(lambda: self.js("leader")["node"] == self.leader.name or None, 15,
                 "the handoff after draining the leader")
        self.ctl("undrain", others[0])
        self.ctl("undrain", others[1])
        wait_for(lambda: all(n["state"] in ("leading", "standby") for n in self.js("nodes")) or None,
                 10, "undrained nodes back in line")

    def test_04_exit_codes(self):
        r = batonctl(self.c.name, "status", "--bogus", check=False)
        self.assertEqual(r.returncode, 2)
        r = self.ctl("nosuchcommand", check=False)
        self.assertEqual(r.returncode, 2)
        import subprocess
        from batonlib import BATONCTL
        r = subprocess.run([BATONCTL, "--zk", "127.0.0.1:1", "--cluster", "x", "--timeout", "1s",
                            "status"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot reach ZooKeeper", r.stderr)
        r = subprocess.run([BATONCTL, "--pg", "host=127.0.0.1 port=1 connect_timeout=1",
                            "--cluster", "x", "runs"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 3)
        self.assertEqual(self.ctl("help", "failover").returncode, 0)

    def test_05_task_logs_kill_retry_clear_events(self):
        self.apply("""
            workflow: ops
            schedule: none
            tasks:
              - {id: flaky, test_op: {fail_attempts: 1}}
              - {id: after, depends_on: [flaky], test_op: {}}
              - {id: forever, test_op: {duration: 600s}}
        """)
        self.ctl("trigger", "ops")
        run = wait_for(lambda: self.q("SELECT run_id FROM workflow_runs WHERE cluster = $C")
                       or None, 15, "the run")
        key = "ops/%s/forever/1" % run
        wait_for(lambda: self.q("SELECT state FROM task_runs WHERE cluster = $C AND run_key = '%s'"
                                % key) == "running" or None, 15, "forever running")
        self.ctl("task", "kill", key)
        wait_for(lambda: self.q("SELECT state FROM task_runs WHERE cluster = $C AND run_key = '%s'"
                                % key) == "cancelled" or None, 15, "killed")
        with open(os.path.join(self.jobs, "cancels.log")) as f:
            self.assertIn(key, f.read())
        wait_for(lambda: self.q("SELECT state FROM workflow_runs WHERE cluster = $C") == "failed"
                 or None, 15, "the run to fail")
        logs = self.js("task", "logs", "ops/%s/flaky" % run)
        self.assertEqual(logs[0]["state"], "failed")
        self.assertIn("FAILED", logs[0]["error"])
        self.assertEqual(self.js("task", "logs", key)[0]["error_code"], "killed")
        # retry the failed task: the run reopens, flaky and its downstream run again
        self.ctl("task", "retry", "ops/%s/flaky/1" % run)
        wait_for(lambda: self.task_state("ops", "after") == "success" or None, 20,
                 "after to succeed")
        self.assertEqual(self.task_state("ops", "flaky"), "success")
        wait_for(lambda: self.q("SELECT state FROM workflow_runs WHERE cluster = $C") == "failed"
                 or None, 15, "run final again")
        # clear --failed gives the killed task a new attempt
        self.ctl("run", "clear", "ops", run, "--failed")
        wait_for(lambda: self.q("SELECT max(attempt) FROM task_runs WHERE cluster = $C AND "
                                "task_id = 'forever'") == "2" or None, 15, "cleared")
        ev = self.js("events", "--since", "10m")
        kinds = {e["kind"] for e in ev}
        self.assertTrue({"leader", "run_create", "transition", "task_request"} <= kinds, kinds)
        self.assertIn("runs", self.ctl("help").stdout)

    def test_06_workflow_life_cycle(self):
        """validate (no server), apply, list, show, pause/unpause, trigger
        with --conf, runs, run show and backfill, with --json checked."""
        good = os.path.join(self.c.dir, "life.yaml")
        with open(good, "w") as f:
            f.write("workflow: life\nschedule: \"0 6 * * *\"\ntimezone: Europe/Berlin\n"
                    "start_date: 2026-03-01\ncatchup: false\ntasks:\n"
                    "  - {id: a, test_op: {}}\n  - {id: b, depends_on: [a], test_op: {}}\n")
        bad = os.path.join(self.c.dir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("workflow: bad\nschedule: \"61 * * * *\"\ntimezone: Mars/Olympus\ntasks:\n"
                    "  - {id: a, depends_on: [nope], test_op: {}}\n")
        import subprocess
        from batonlib import BATONCTL
        # no server at all: validate needs none
        r = subprocess.run([BATONCTL, "--zk", "127.0.0.1:1", "--pg", "host=127.0.0.1 port=1",
                            "workflow", "validate", good], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ok (workflow life, 2 tasks)", r.stdout)
        r = subprocess.run([BATONCTL, "workflow", "validate", good, bad], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        errs = [l for l in r.stderr.splitlines() if l.startswith(bad + ":")]
        self.assertGreaterEqual(len(errs), 3, r.stderr)  # every error, not the first only
        self.assertTrue(any(e.startswith(bad + ":2:") and "schedule" in e for e in errs), errs)
        self.assertTrue(any(e.startswith(bad + ":3:") and "timezone" in e for e in errs), errs)
        self.assertTrue(any(e.startswith(bad + ":5:") and "nope" in e for e in errs), errs)

        self.ctl("workflow", "apply", good)
        lst = {w["workflow"]: w for w in self.js("workflow", "list")}
        self.assertEqual(lst["life"]["version"], 1)
        self.assertEqual(lst["life"]["paused"], False)
        self.assertEqual(lst["life"]["schedule"], "0 6 * * *")
        self.assertEqual(lst["life"]["timezone"], "Europe/Berlin")
        show = self.js("workflow", "show", "life")
        self.assertEqual([t["id"] for t in show["tasks"]], ["a", "b"])
        self.assertEqual(show["tasks"][1]["depends_on"], ["a"])
        self.assertEqual(show["tasks"][1]["trigger_rule"], "all_success")
        self.assertEqual(self.ctl("workflow", "show", "nosuch", check=False).returncode, 1)

        self.ctl("pause", "life")
        self.assertEqual(self.js("workflow", "show", "life")["paused"], True)
        self.ctl("unpause", "life")
        self.assertEqual(self.js("workflow", "show", "life")["paused"], False)

        self.ctl("trigger", "life", "--conf", '{"reason": "t5000"}')
        self.assertEqual(self.ctl("trigger", "life", "--conf", "{not json", check=False)
                         .returncode, 2)
        run_id, state = self.wait_run_done("life")
        self.assertEqual(state, "success")
        runs = self.js("runs", "--workflow", "life")
        self.assertEqual([(x["run_id"], x["state"], x["kind"]) for x in runs],
                         [(run_id, "success", "manual")])
        tasks = {t["task"]: t for t in self.js("run", "show", "life", run_id)}
        self.assertEqual({k: (v["state"], v["attempt"]) for k, v in tasks.items()},
                         {"a": ("success", 1), "b": ("success", 1)})
        self.assertEqual(tasks["b"]["run_key"], "life/%s/b/1" % run_id)

        # three mornings, in the workflow's zone
        self.ctl("backfill", "life", "--from", "2026-03-02", "--to", "2026-03-04")
        done = self.wait_runs_done("life", n=4)
        kinds = sorted(x["kind"] for x in self.js("runs", "--workflow", "life"))
        self.assertEqual(kinds, ["backfill"] * 3 + ["manual"])
        self.assertTrue(all(st == "success" for _, st in done), done)
        self.assertIn(".TH BATONCTL 1", self.ctl("man").stdout)


class CommitFails(unittest.TestCase):
    """Every statement of a write succeeds and then its COMMIT fails: a
    DEFERRABLE INITIALLY DEFERRED constraint trigger raises only at commit
    time, for this test's cluster only. batonctl must exit 1, print nothing
    that claims success, and the rows must be as before. workflow apply and
    backfill write in one transaction (BEGIN ... COMMIT); trigger is one
    statement in autocommit, where the commit error is the statement's."""
    SUCCESS = r"(?m)(created|updated|unchanged) \(version|^requested "

    @classmethod
    def setUpClass(cls):
        cls.cluster = "c%d_cf" % os.getpid()
        cls.dir = tempfile.mkdtemp(prefix="baton-t5000-cf-")
        batonctl(cls.cluster, "migrate")  # no batond here to do it

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def ctl(self, *args, check=True):
        return batonctl(self.cluster, *args, check=check)

    def q(self, sql):
        return psql(sql.replace("$C", "'%s'" % self.cluster))

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def refuse_commit(self, table):
        """From now on a COMMIT that inserted or updated one of this
        cluster's rows in `table` fails. Returns the function that undoes it
        (also called when the test ends)."""
        name = "t5000_refuse_%s_%s" % (table, self.cluster)
        psql("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "IF NEW.cluster = TG_ARGV[0] THEN "
             "RAISE EXCEPTION 't5000: %% refused at commit', TG_TABLE_NAME; END IF; "
             "RETURN NULL; END $$; "
             "CREATE CONSTRAINT TRIGGER %s AFTER INSERT OR UPDATE ON %s "
             "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %s('%s')"
             % (name, name, table, name, self.cluster))

        def drop():
            psql("DROP TRIGGER IF EXISTS %s ON %s; DROP FUNCTION IF EXISTS %s()"
                 % (name, table, name))
        self.addCleanup(drop)
        return drop

    def assert_refused(self, r, undone):
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertEqual(r.stdout, "")
        self.assertNotRegex(out, self.SUCCESS)
        self.assertIn("refused at commit", r.stderr)
        if undone:
            self.assertIn("batonctl: COMMIT failed: ", r.stderr)
            self.assertIn(undone, r.stderr)
        self.assertNotIn("Sanitizer", out)
        self.assertNotIn("runtime error:", out)

    def test_commit_fails(self):
        wf = self.write("cf.yaml", "workflow: cf\nschedule: \"0 6 * * *\"\ntimezone: UTC\n"
                                   "tasks:\n  - {id: a, test_op: {}}\n")
        self.assertIn("cf created (version 1)", self.ctl("workflow", "apply", wf).stdout)
        row = "SELECT version, paused, encode(spec_sha256, 'hex') FROM workflows " \
              "WHERE cluster = $C AND workflow_id = '%s'"
        before = self.q(row % "cf")

        # workflow apply: a new version of cf and a new workflow, all or nothing
        self.write("cf.yaml", "workflow: cf\nschedule: \"0 7 * * *\"\ntimezone: UTC\n"
                              "tasks:\n  - {id: a, test_op: {}}\n")
        new = self.write("cf2.yaml", "workflow: cf2\nschedule: none\n"
                                     "tasks:\n  - {id: a, test_op: {}}\n")
        allow = self.refuse_commit("workflow_versions")
        self.assert_refused(self.ctl("workflow", "apply", "--paused", wf, new, check=False),
                            "nothing applied")
        self.assertEqual(self.q(row % "cf"), before)
        self.assertEqual(self.q(row % "cf2"), "")
        self.assertEqual(self.q("SELECT count(*) FROM workflow_versions WHERE cluster = $C"), "1")
        allow()
        self.assertIn("cf updated (version 2)", self.ctl("workflow", "apply", wf).stdout)

        # backfill (one transaction) and trigger (one statement)
        allow = self.refuse_commit("run_requests")
        self.assert_refused(self.ctl("backfill", "cf", "--from", "2026-03-02", "--to",
                                     "2026-03-04", check=False), "no backfill run requested")
        self.assert_refused(self.ctl("trigger", "cf", check=False), None)
        self.assertEqual(self.q("SELECT count(*) FROM run_requests WHERE cluster = $C"), "0")
        allow()
        self.assertIn("requested 3 backfill runs of cf",
                      self.ctl("backfill", "cf", "--from", "2026-03-02", "--to",
                               "2026-03-04").stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
