#!/usr/bin/python3
"""ops_bench: what 10,000 concurrent remote jobs cost one dispatcher.

One batond (Release build) leads against the harness's ZooKeeper and
PostgreSQL and drives JOBS long-running remote jobs, half Livy batches and
half Genie jobs, on the stand-ins of tests/fakes, polling each every
POLL_S seconds (livy.poll_interval / genie.poll_interval). Once every job
is `running`, it waits one poll interval for the polls to settle, then
measures over WINDOW_S seconds:
  - batond's CPU share of one core (utime + stime from /proc),
  - its peak RSS (VmHWM, which includes the submission burst) and current
    RSS, and the polls the stand-ins answered in the window.

The peer, measured in the same run against the same stand-ins and the same
jobs (after batond has exited): Airflow's deferrable-operator model, the
triggerer: one asyncio coroutine per job that polls its state through
aiohttp with a ClientSession per call (as Airflow's async HTTP hooks do),
then sleeps POLL_S. Its CPU share and RSS come from /proc the same way.

Runs under tests/harness (scripts/bench ops). Environment: BATOND,
BATONCTL, BATON_TEST_ZK, BATON_TEST_PG. Arguments: [JOBS] [POLL_S]
[WINDOW_S]. Last line: one JSON object with every figure.
"""
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import batonlib  # noqa: E402  (the integration suites' Node, Fake, psql, batonctl)

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
POLL_S = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
WINDOW_S = float(sys.argv[3]) if len(sys.argv) > 3 else 2 * POLL_S
TASKS_PER_WF = 100
GENIE_AUTH = "bench:bench"
CLK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, flush=True)


def cpu_s(pid):
    """utime + stime of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def mem_kb(pid):
    """(VmHWM, VmRSS) of pid in KiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0])
    return out["VmHWM"], out["VmRSS"]


def polls(livy, genie):
    """State polls the two stand-ins have answered so far."""
    n = 0
    for fake, marker in ((livy, "/state"), (genie, "/status")):
        for k, v in fake.stats().get("requests", {}).items():
            if k.startswith("GET ") and k.endswith(marker):
                n += v
    return n


def measure(pid, livy, genie, what):
    """Waits one poll interval (the polls settle), then samples `pid` over
    WINDOW_S: {cpu_share, rss_peak_mb, rss_mb, polls_per_s}."""
    log("%s: settling for %.0f s, then measuring for %.0f s" % (what, POLL_S, WINDOW_S))
    time.sleep(POLL_S)
    c0, p0, t0 = cpu_s(pid), polls(livy, genie), time.monotonic()
    time.sleep(WINDOW_S)
    c1, p1, t1 = cpu_s(pid), polls(livy, genie), time.monotonic()
    hwm, rss = mem_kb(pid)
    return {"cpu_share": round((c1 - c0) / (t1 - t0), 4),
            "rss_peak_mb": round(hwm / 1024.0, 1), "rss_mb": round(rss / 1024.0, 1),
            "polls_per_s": round((p1 - p0) / (t1 - t0), 1)}


def workflow(i, n, genie_tag):
    """A manual workflow of n independent long jobs, alternating Livy and
    Genie, in pool `ops`."""
    lines = ["workflow: ops_bench_%03d" % i, "schedule: none", "max_active_tasks: %d" % n,
             "defaults: {pool: ops, retries: 0}", "tasks:"]
    for t in range(n):
        if t % 2 == 0:
            lines += ["  - id: spark_%03d" % t, "    livy_batch:",
                      "      file: s3://acme-emr-artifacts/bench/job.py",
                      "      args: [\"{{ run.date }}\", \"%d\"]" % t,
                      "      conf: {fake.starting_ms: \"100\", fake.duration_ms: \"86400000\"}"]
        else:
            lines += ["  - id: report_%03d" % t, "    genie_job:",
                      "      name: bench-report", "      user: svc-baton", "      version: \"1.0\"",
                      "      command_args: [s3://acme-reports/bench.py, \"%d\"]" % t,
                      "      tags: [\"fake.duration_ms:86400000\"]",
                      "      cluster_criteria:", "        - tags: [\"%s\"]" % genie_tag,
                      "      command_criterion:", "        tags: [\"type:spark-submit\"]"]
    return "\n".join(lines) + "\n"


def running_count(cluster):
    return int(batonlib.psql("SELECT count(*) FROM task_runs WHERE cluster = '%s' AND "
                             "state = 'running'" % cluster) or 0)


def register_genie_cluster(genie, tag):
    """What an operator of a real Genie has done before any job runs: an UP
    cluster with the tags the jobs select and, as Genie 3 wants, the command
    they select linked to it."""
    genie.call("POST", "/api/v3/clusters", {"id": "bench-yarn", "name": "bench-yarn",
                                             "user": "svc-baton", "version": "1.0", "status": "UP",
                                             "tags": [tag]})
    genie.call("POST", "/api/v3/commands", {"id": "spark-submit", "name": "spark-submit",
                                             "user": "platform", "version": "1",
                                             "status": "ACTIVE", "executable": "spark-submit",
                                             "tags": ["type:spark-submit"]})
    genie.call("PUT", "/api/v3/clusters/bench-yarn/commands", ["spark-submit"])


def job_urls(livy, genie):
    """Every job's state URL, as the peer polls them."""
    out = []
    batches = livy.call("GET", "/batches?from=0&size=%d" % JOBS)["sessions"]
    out += ["%s/batches/%d/state" % (livy.url, b["id"]) for b in batches]
    out += ["%s/api/v3/jobs/%s/status" % (genie.url, j) for j in genie.call("GET", "/_jobs")]
    return out


def main():
    work = tempfile.mkdtemp(prefix="baton-ops-bench-")
    livy = batonlib.Fake("livy_fake")
    genie = batonlib.Fake("genie_fake", "--auth", "basic:" + GENIE_AUTH,
                          headers={"Authorization": "Basic " +
                                   base64.b64encode(GENIE_AUTH.encode()).decode()})
    node = None
    try:
        tag = "sched:bench"
        register_genie_cluster(genie, tag)
        cluster = "ops_bench_%d" % os.getpid()
        poll = "%dms" % int(POLL_S * 1000)
        node = batonlib.Node(cluster, "n1", "z1", work,
                             "livy:\n  url: %s\n  poll_interval: %s\n"
                             "genie:\n  url: %s\n  auth: \"basic %s\"\n  poll_interval: %s\n"
                             % (livy.url, poll, genie.url, GENIE_AUTH, poll))
        node.start()
        batonlib.wait_for(lambda: (node.status() or {}).get("dispatching"), 20, "batond leading")
        batonlib.batonctl(cluster, "pool", "set", "ops", str(JOBS))
        nwf = (JOBS + TASKS_PER_WF - 1) // TASKS_PER_WF
        files = []
        for i in range(nwf):
            path = os.path.join(work, "wf%03d.yaml" % i)
            with open(path, "w") as f:
                f.write(workflow(i, min(TASKS_PER_WF, JOBS - i * TASKS_PER_WF), tag))
            files.append(path)
        batonlib.batonctl(cluster, "workflow", "apply", *files)
        t0 = time.monotonic()
        for i in range(nwf):
            batonlib.batonctl(cluster, "trigger", "ops_bench_%03d" % i)
        deadline = time.monotonic() + 600
        while running_count(cluster) < JOBS:  # gently: PostgreSQL serves batond too
            assert time.monotonic() < deadline, "%d jobs not running after 600 s" % JOBS
            time.sleep(0.5)
        submit_s = time.monotonic() - t0
        log("baton: %d jobs running after %.1f s (%.0f submissions/s)"
            % (JOBS, submit_s, JOBS / submit_s))
        baton = measure(node.proc.pid, livy, genie, "baton")
        st = livy.stats(), genie.stats()
        baton["submissions"] = st[0].get("batches_created", 0) + st[1].get("jobs_created", 0)
        baton["submit_s"] = round(submit_s, 1)
        baton["still_running"] = running_count(cluster)
        log("baton: %s" % json.dumps(baton))
        assert node.terminate() == 0, "batond did not exit cleanly"
        node = None

        urls = job_urls(livy, genie)
        assert len(urls) == JOBS, "the stand-ins hold %d jobs, not %d" % (len(urls), JOBS)
        with open(os.path.join(work, "urls"), "w") as f:
            f.write("\n".join(urls) + "\n")
        peer = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__),
                                                              "ops_bench_peer.py"),
                                 os.path.join(work, "urls"), str(POLL_S), GENIE_AUTH])
        try:
            fig = measure(peer.pid, livy, genie, "peer")
        finally:
            peer.send_signal(signal.SIGTERM)
            peer.wait(30)
        log("peer: %s" % json.dumps(fig))
        print(json.dumps({
            "bench": "ops", "jobs": JOBS, "poll_interval_s": POLL_S, "window_s": WINDOW_S,
            "baton": baton,
            "peer": dict(fig, what="asyncio + aiohttp poller, one coroutine per job "
                                   "(Airflow triggerer model)"),
            "targets": {"cpu_share": 0.10, "rss_peak_mb": 32},
            "cpu_ratio_peer_over_baton": round(fig["cpu_share"] / baton["cpu_share"], 1)
            if baton["cpu_share"] else None,
            "rss_ratio_peer_over_baton": round(fig["rss_mb"] / baton["rss_mb"], 1),
        }))
    finally:
        if node:
            node.terminate()
        livy.stop()
        genie.stop()


if __name__ == "__main__":
    main()
