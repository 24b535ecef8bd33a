#!/usr/bin/python3
"""The stand-ins' timing knobs, effect log and truncated-request handling
(fake_timing.py, used by emr_fake.py, livy_fake.py and genie_fake.py), and
hold_proxy.py. Starts only the fakes and the proxy, on port 0. Run by ctest
as fakes.timing (Debian's python3, stdlib only)."""
import fcntl
import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import emr_fake  # noqa: E402  (its SigV4 helpers sign our requests)

AK, SK, REGION = "AKTIMING", "timing/secret+key", "us-east-1"


# ---------------------------------------------------------------- helpers

def start(script, *args, extra=0):
    """(process, port, [extra ports]) of tests/fakes/<script> on port 0."""
    p = subprocess.Popen([sys.executable, os.path.join(HERE, script), "--port", "0", *args],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening "):
        p.kill()
        raise AssertionError("%s did not start: %r" % (script, line))
    extras = [int(p.stdout.readline().split()[1]) for _ in range(extra)]
    return p, int(line.split()[1]), extras


def stop(p):
    p.terminate()
    try:
        return p.wait(5)
    finally:
        p.stdout.close()


def call(port, method, path, body=None, headers=None, timeout=10):
    """(status, JSON answer or raw bytes, headers)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    h = dict(headers or {})
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
    finally:
        c.close()
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = raw
    return r.status, doc, r.headers


def raw_request(method, path, body=b"", headers=(), content_length=None):
    """The bytes of a request; content_length may lie (a truncated body)."""
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if not any(k.lower() == "host" for k, _ in headers):
        lines.append("Host: 127.0.0.1")
    lines += ["%s: %s" % kv for kv in headers]
    lines.append("Content-Length: %d" % (len(body) if content_length is None else content_length))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def hit_and_run(port, data):
    """Sends data and hangs up at once, without reading an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    s.close()


def wait_for(fn, timeout=5.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def emr_signed(port, op, body):
    """(headers, payload) of an EMR request signed with AK/SK, built with
    emr_fake's own canonical_request() and signature()."""
    payload = json.dumps(body).encode()
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = [("Host", "127.0.0.1:%d" % port),
               ("Content-Type", "application/x-amz-json-1.1"),
               ("X-Amz-Date", amz_date), ("X-Amz-Target", "ElasticMapReduce." + op)]
    signed = ["content-type", "host", "x-amz-date", "x-amz-target"]
    creq = emr_fake.canonical_request("POST", "/", headers, signed, payload)
    scope = "%s/%s/elasticmapreduce/aws4_request" % (amz_date[:8], REGION)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    sig = emr_fake.signature(SK, amz_date[:8], REGION, "elasticmapreduce", sts)
    headers.append(("Authorization", "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                                     "Signature=%s" % (AK, scope, ";".join(signed), sig)))
    return headers, payload


def emr_call(port, op, body, timeout=10):
    headers, payload = emr_signed(port, op, body)
    return call(port, "POST", "/", payload, dict(headers), timeout)[:2]


def cluster_req(name, key=None):
    req = {"Name": name, "ReleaseLabel": "emr-6.15.0",
           "Instances": {"KeepJobFlowAliveWhenNoSteps": True,
                         "InstanceGroups": [{"InstanceRole": "MASTER",
                                             "InstanceType": "m5.xlarge", "InstanceCount": 1}]}}
    if key is not None:
        req["Tags"] = [{"Key": "baton:run-key", "Value": key}]
    return req


def step_req(cid, *names):
    return {"JobFlowId": cid, "Steps": [{"Name": n, "ActionOnFailure": "CONTINUE",
                                         "HadoopJarStep": {"Jar": "command-runner.jar",
                                                           "Args": ["true"]}} for n in names]}


class FakeCase(unittest.TestCase):
    """One fake for the class; every test starts from the default config."""
    script, args = None, ()

    @classmethod
    def setUpClass(cls):
        cls.proc, cls.port, _ = start(cls.script, *cls.args)

    @classmethod
    def tearDownClass(cls):
        stop(cls.proc)

    def setUp(self):
        self.config({k: None for k in self.get("/_config")})

    def get(self, path):
        code, doc, _ = call(self.port, "GET", path)
        self.assertEqual(code, 200, doc)
        return doc

    def config(self, doc):
        code, out, _ = call(self.port, "POST", "/_config", doc)
        self.assertEqual(code, 200, out)
        return out

    def effects(self, dups=False):
        return self.get("/_effects" + ("?dups=1" if dups else ""))

    def effect(self, key):
        found = [e for e in self.effects() if e["key"] == key]
        self.assertEqual(len(found), 1, found)
        return found[0]

    def wait_effect(self, key, timeout=5.0):
        return wait_for(lambda: [e for e in self.effects() if e["key"] == key],
                        timeout, "an effect with key %s" % key)[0]

    def truncated(self):
        return self.get("/_stats")["truncated_requests"]


# ---------------------------------------------------------------- EMR

class Emr(FakeCase):
    script, args = "emr_fake.py", ("--access-key", AK, "--secret-key", SK, "--boot-s", "5")

    def test_effect_delay_answers_after_min(self):
        self.config({"effect_delay_ms": {"RunJobFlow": [300, 400]}})
        t0 = time.monotonic()
        code, out = emr_call(self.port, "RunJobFlow", cluster_req("delayed", "rk-delay"))
        took = time.monotonic() - t0
        self.assertEqual(code, 200, out)
        self.assertGreaterEqual(took, 0.3)
        e = self.effect("rk-delay")
        self.assertEqual((e["op"], e["id"], e["name"], e["client_gone"], e["state"]),
                         ("RunJobFlow", out["JobFlowId"], "delayed", False, "STARTING"))
        self.assertGreaterEqual(e["effective"] - e["arrived"], 0.29)
        # "*" applies to the rest; an exact operation wins over it
        self.config({"effect_delay_ms": {"*": [250, 250], "DescribeCluster": [0, 0]}})
        t0 = time.monotonic()
        emr_call(self.port, "DescribeCluster", {"ClusterId": out["JobFlowId"]})
        self.assertLess(time.monotonic() - t0, 0.2)
        t0 = time.monotonic()
        emr_call(self.port, "ListClusters", {})
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)

    def test_bad_requests_answered_at_once_without_effect(self):
        self.config({"effect_delay_ms": {"*": [2000, 2000]}})
        before = self.get("/_stats")["RunJobFlow"]
        t0 = time.monotonic()
        code, out = emr_call(self.port, "RunJobFlow", {"Name": "no instances"})
        self.assertEqual((code, out["__type"]), (400, "ValidationException"))
        code, out = emr_call(self.port, "AddJobFlowSteps", {"JobFlowId": "j-X", "Steps": []})
        self.assertEqual((code, out["__type"]), (400, "ValidationException"))
        headers, payload = emr_signed(self.port, "RunJobFlow", cluster_req("bad sig"))
        code, out, _ = call(self.port, "POST", "/", payload + b" ", dict(headers))
        self.assertEqual((code, out["__type"]), (403, "InvalidSignatureException"))
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(self.get("/_stats")["RunJobFlow"], before)

    def test_effect_happens_when_client_hangs_up_during_delay(self):
        self.config({"effect_delay_ms": {"RunJobFlow": [300, 300]}})
        headers, payload = emr_signed(self.port, "RunJobFlow", cluster_req("gone", "rk-gone"))
        hit_and_run(self.port, raw_request("POST", "/", payload, headers))
        self.assertEqual(self.effects(), [e for e in self.effects() if e["key"] != "rk-gone"])
        e = self.wait_effect("rk-gone")
        self.assertTrue(e["client_gone"], e)
        self.assertGreaterEqual(e["effective"] - e["arrived"], 0.29)

    def test_list_lag(self):
        self.config({"list_lag_ms": 600})
        code, out = emr_call(self.port, "RunJobFlow", cluster_req("lagging [rk-lag]"))
        cid = out["JobFlowId"]
        code, out = emr_call(self.port, "AddJobFlowSteps", step_req(cid, "s1 [rk-lag-step]"))
        self.assertEqual(code, 200, out)
        sid = out["StepIds"][0]

        def listed():
            clusters = [c["Id"] for c in emr_call(self.port, "ListClusters", {})[1]["Clusters"]]
            steps = [s["Id"] for s in emr_call(self.port, "ListSteps",
                                               {"ClusterId": cid})[1]["Steps"]]
            return cid in clusters, sid in steps
        self.assertEqual(listed(), (False, False))
        self.assertEqual(emr_call(self.port, "DescribeCluster", {"ClusterId": cid})[0], 200)
        self.assertEqual(emr_call(self.port, "DescribeStep",
                                  {"ClusterId": cid, "StepId": sid})[0], 200)
        time.sleep(0.65)
        self.assertEqual(listed(), (True, True))

    def test_effect_keys_and_dups(self):
        _, a = emr_call(self.port, "RunJobFlow", cluster_req("tagged [not-this]", "rk-tag"))
        _, b = emr_call(self.port, "RunJobFlow", cluster_req("named [rk-name]"))
        _, c = emr_call(self.port, "RunJobFlow", cluster_req("no key"))
        _, d = emr_call(self.port, "RunJobFlow", cluster_req("twice", "rk-tag"))
        code, steps = emr_call(self.port, "AddJobFlowSteps",
                               step_req(b["JobFlowId"], "first [rk-s1]", "second [rk-s2]"))
        self.assertEqual(code, 200, steps)
        log = self.effects()
        mine = {e["id"]: e for e in log}
        self.assertEqual(mine[a["JobFlowId"]]["key"], "rk-tag")
        self.assertEqual(mine[b["JobFlowId"]]["key"], "rk-name")
        self.assertIsNone(mine[c["JobFlowId"]]["key"])
        s1, s2 = steps["StepIds"]
        self.assertEqual((mine[s1]["op"], mine[s1]["key"], mine[s1]["name"], mine[s1]["state"]),
                         ("AddJobFlowSteps", "rk-s1", "first [rk-s1]", "PENDING"))
        self.assertEqual(mine[s2]["key"], "rk-s2")
        self.assertEqual(set(mine[s1]), {"op", "key", "id", "name", "arrived", "effective",
                                         "client_gone", "state"})
        self.assertEqual([e["id"] for e in log if e["id"] in mine],
                         sorted(mine, key=lambda i: mine[i]["effective"]))
        dups = self.effects(dups=True)
        self.assertEqual([e["id"] for e in dups], [a["JobFlowId"], d["JobFlowId"]])
        # a termination is not an effect
        emr_call(self.port, "TerminateJobFlows", {"JobFlowIds": [d["JobFlowId"]]})
        self.assertEqual(len(self.effects()), len(log))

    def test_truncated_body_is_discarded(self):
        before, runs = self.truncated(), self.get("/_stats")["RunJobFlow"]
        headers, payload = emr_signed(self.port, "RunJobFlow", cluster_req("cut", "rk-cut"))
        hit_and_run(self.port, raw_request("POST", "/", payload[:40], headers,
                                           content_length=len(payload)))
        wait_for(lambda: self.truncated() == before + 1, what="truncated_requests")
        self.assertEqual(self.get("/_stats")["RunJobFlow"], runs)
        self.assertEqual([e for e in self.effects() if e["key"] == "rk-cut"], [])

    def test_config_errors(self):
        for bad in ({"nope": 1}, {"list_lag_ms": -1}, {"effect_delay_ms": {"X": [5, 1]}},
                    {"effect_delay_ms": [1, 2]}):
            code, out, _ = call(self.port, "POST", "/_config", bad)
            self.assertEqual(code, 400, (bad, out))
        self.assertEqual(self.get("/_config"),
                         {"effect_delay_ms": {}, "list_lag_ms": 0, "body_timeout_ms": 0})
        out = self.config({"effect_delay_ms": {"A": 5, "B": "1-2"}})
        self.assertEqual(out["effect_delay_ms"], {"A": [5, 5], "B": [1, 2]})
        out = self.config({"effect_delay_ms": {"A": None}, "list_lag_ms": 3})
        self.assertEqual((out["effect_delay_ms"], out["list_lag_ms"]), ({"B": [1, 2]}, 3))


# ---------------------------------------------------------------- Livy

class Livy(FakeCase):
    script = "livy_fake.py"

    def batch(self, name, timeout=10, **kw):
        body = {"file": "local:///x.py", "name": name, **kw}
        return call(self.port, "POST", "/batches", body, timeout=timeout)[:2]

    def test_serial_creates(self):
        def burst(n, tag):
            codes = []
            threads = [threading.Thread(target=lambda i=i: codes.append(
                self.batch("%s-%d" % (tag, i))[0])) for i in range(n)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(codes, [201] * n)
            return time.monotonic() - t0
        self.config({"effect_delay_ms": {"POST /batches": [150, 150]}})
        self.assertLess(burst(4, "parallel"), 0.45)
        self.config({"serial_creates": True})
        self.assertGreaterEqual(burst(4, "serial"), 0.6)
        # a body Livy refuses does not queue behind the creates
        t0 = time.monotonic()
        self.assertEqual(call(self.port, "POST", "/batches", {"name": "no-file"})[0], 400)
        self.assertLess(time.monotonic() - t0, 0.1)

    def test_duplicate_names_switch(self):
        self.assertEqual(self.batch("twin")[0], 201)
        code, doc = self.batch("twin")
        self.assertEqual((code, doc["msg"]), (400, "Duplicate session name: Some(twin)"))
        self.config({"duplicate_names": False})
        self.assertEqual(self.batch("twin")[0], 201)
        dups = self.effects(dups=True)
        self.assertEqual([(e["op"], e["key"]) for e in dups], [("POST /batches", "twin")] * 2)
        self.assertEqual(self.get("/_stats")["requests"]["POST /batches"] >= 3, True)

    def test_effect_keys(self):
        code, b = self.batch("bk-1")
        code, s, _ = call(self.port, "POST", "/sessions",
                          {"kind": "pyspark", "name": "sk-1", "conf": {"fake.starting_ms": "0"}})
        self.assertEqual(code, 201, s)
        code, st, _ = call(self.port, "POST", "/sessions/%d/statements" % s["id"], {"code": "1+1"})
        self.assertEqual(code, 201, st)
        log = self.effects()
        eb = [e for e in log if e["key"] == "bk-1"][0]
        self.assertEqual((eb["op"], eb["id"], eb["name"]), ("POST /batches", b["id"], "bk-1"))
        self.assertIn(eb["state"], ("starting", "running"))
        es = [e for e in log if e["key"] == "sk-1"][0]
        self.assertEqual((es["op"], es["id"]), ("POST /sessions", s["id"]))
        et = [e for e in log if e["op"] == "POST /statements"][-1]
        self.assertEqual((et["key"], et["id"], et["name"]), (None, "%d/%d" % (s["id"], st["id"]),
                                                             None))
        call(self.port, "DELETE", "/batches/%d" % b["id"])
        self.assertEqual(self.effect("bk-1")["state"], "deleted")
        self.assertEqual(len(self.effects()), len(log))   # a DELETE is not an effect

    def test_list_lag(self):
        self.config({"list_lag_ms": 500})
        code, b = self.batch("lagging")

        def listed():
            doc = self.get("/batches?size=1000")
            return any(x["name"] == "lagging" for x in doc["sessions"])
        self.assertFalse(listed())
        self.assertEqual(self.get("/batches/%d" % b["id"])["name"], "lagging")
        time.sleep(0.55)
        self.assertTrue(listed())

    def test_key_scheme(self):
        self.config({"effect_delay_ms": {"GET /batches": [300, 300], "GET /batches/{id}": [0, 0]}})
        _, b = self.batch("scheme")
        t0 = time.monotonic()
        self.get("/batches/%d" % b["id"])
        self.assertLess(time.monotonic() - t0, 0.2)
        self.get("/batches")
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_client_gone_and_bad_body(self):
        self.config({"effect_delay_ms": {"*": [300, 300]}})
        t0 = time.monotonic()
        self.assertEqual(self.batch(None, file=None)[0], 400)   # no file: at once
        self.assertLess(time.monotonic() - t0, 0.2)
        body = json.dumps({"file": "local:///x.py", "name": "lk-gone"}).encode()
        hit_and_run(self.port, raw_request("POST", "/batches", body,
                                           [("Content-Type", "application/json")]))
        e = self.wait_effect("lk-gone")
        self.assertTrue(e["client_gone"])
        self.assertGreaterEqual(e["effective"] - e["arrived"], 0.29)

    def test_truncated(self):
        before = self.truncated()
        created = self.get("/_stats")["batches_created"]
        body = json.dumps({"file": "local:///x.py", "name": "lk-cut"}).encode()
        hit_and_run(self.port, raw_request("POST", "/batches", body[:10],
                                           [("Content-Type", "application/json")],
                                           content_length=len(body)))
        hit_and_run(self.port, b"POST /batches HTTP/1.1\r\nHost: x\r\nContent-Le")  # in headers
        wait_for(lambda: self.truncated() == before + 2, what="truncated_requests")
        self.assertEqual(self.get("/_stats")["batches_created"], created)


# ---------------------------------------------------------------- Genie

class Genie(FakeCase):
    script = "genie_fake.py"

    def cluster(self, name, *tags, cid=None):
        body = {"name": name, "user": "u", "version": "1", "status": "UP",
                "tags": list(tags)}
        if cid:
            body["id"] = cid
        code, _, h = call(self.port, "POST", "/api/v3/clusters", body)
        self.assertEqual(code, 201)
        return h["Location"].rsplit("/", 1)[1]

    def job(self, name, *tags, jid=None, timeout=10):
        body = {"name": name, "user": "u", "version": "1", "tags": list(tags),
                "clusterCriterias": [{"tags": ["sched:timing"]}], "commandCriteria": ["type:x"]}
        if jid:
            body["id"] = jid
        return call(self.port, "POST", "/api/v3/jobs", body, timeout=timeout)

    def setUp(self):
        super().setUp()
        if not getattr(type(self), "registered", False):
            cid = self.cluster("timing", "sched:timing", "baton.run_key:ck-1")
            # Genie 3 runs a job only with a matching command linked
            code, _, _ = call(self.port, "POST", "/api/v3/commands",
                              {"id": "x", "name": "x", "user": "u", "version": "1",
                               "status": "ACTIVE", "executable": "x", "tags": ["type:x"]})
            self.assertEqual(code, 201)
            code, _, _ = call(self.port, "PUT", "/api/v3/clusters/%s/commands" % cid, ["x"])
            self.assertEqual(code, 204)
            type(self).registered = True

    def test_effect_keys(self):
        code, _, h = self.job("gj", "baton.run_key:jk-1", "other:x")
        self.assertEqual(code, 202)
        jid = h["Location"].rsplit("/", 1)[1]
        e = self.effect("jk-1")
        self.assertEqual((e["op"], e["id"], e["name"]), ("POST /jobs", jid, "gj"))
        self.assertIn(e["state"], ("INIT", "RUNNING", "SUCCEEDED"))
        c = self.effect("ck-1")
        self.assertEqual((c["op"], c["name"], c["state"]), ("POST /clusters", "timing", "UP"))
        self.assertEqual(self.job("gj", "baton.run_key:jk-1", jid=jid)[0], 409)
        self.assertEqual(self.effects(dups=True), [])
        self.job("gj again", "baton.run_key:jk-1")
        self.assertEqual([e["key"] for e in self.effects(dups=True)], ["jk-1", "jk-1"])
        call(self.port, "DELETE", "/api/v3/jobs/" + jid)
        self.assertEqual(self.effect_by_id(jid)["state"], "KILLED")

    def effect_by_id(self, i):
        return [e for e in self.effects() if e["id"] == i][0]

    def test_delay_and_client_gone(self):
        self.config({"effect_delay_ms": {"POST /jobs": [300, 300]}})
        t0 = time.monotonic()
        code, doc, _ = call(self.port, "POST", "/api/v3/jobs", {"user": "u"})
        self.assertEqual(code, 400, doc)
        self.assertLess(time.monotonic() - t0, 0.2)
        code, _, _ = self.job("slow", "baton.run_key:jk-slow")
        self.assertEqual(code, 202)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        body = json.dumps({"name": "gone", "user": "u", "version": "1",
                           "tags": ["baton.run_key:jk-gone"],
                           "clusterCriterias": [{"tags": ["sched:timing"]}],
                           "commandCriteria": ["type:x"]}).encode()
        hit_and_run(self.port, raw_request("POST", "/api/v3/jobs", body,
                                           [("Content-Type", "application/json")]))
        e = self.wait_effect("jk-gone")
        self.assertTrue(e["client_gone"])
        self.assertFalse(self.effect("jk-slow")["client_gone"])

    def test_list_lag(self):
        self.config({"list_lag_ms": 400})
        cid = self.cluster("lagging-cluster", "lag:yes")

        def found():
            doc = self.get("/api/v3/clusters?tag=lag:yes")
            return [c["id"] for c in doc.get("_embedded", {}).get("clusterList", [])]
        self.assertEqual(found(), [])
        self.assertEqual(self.get("/api/v3/clusters/" + cid)["id"], cid)
        time.sleep(0.45)
        self.assertEqual(found(), [cid])

    def test_truncated(self):
        before, jobs = self.truncated(), self.get("/_stats")["jobs_created"]
        body = json.dumps({"name": "cut", "user": "u", "version": "1",
                           "clusterCriterias": [{"tags": ["sched:timing"]}],
                           "commandCriteria": ["type:x"]}).encode()
        hit_and_run(self.port, raw_request("POST", "/api/v3/jobs", body[:20],
                                           [("Content-Type", "application/json")],
                                           content_length=len(body)))
        wait_for(lambda: self.truncated() == before + 1, what="truncated_requests")
        self.assertEqual(self.get("/_stats")["jobs_created"], jobs)


# ---------------------------------------------------------------- flags

class Flags(unittest.TestCase):
    def config_of(self, script, *args):
        p, port, _ = start(script, *args)
        try:
            return call(port, "GET", "/_config")[1]
        finally:
            stop(p)

    def test_cli_flags(self):
        self.assertEqual(self.config_of("emr_fake.py", "--access-key", "a", "--secret-key", "s",
                                        "--effect-delay", "RunJobFlow=100-200",
                                        "--effect-delay", "*=5", "--list-lag-ms", "50"),
                         {"effect_delay_ms": {"RunJobFlow": [100, 200], "*": [5, 5]},
                          "list_lag_ms": 50, "body_timeout_ms": 0})
        self.assertEqual(self.config_of("livy_fake.py", "--serial-creates",
                                        "--allow-duplicate-names",
                                        "--effect-delay", "POST /batches=10-20.5",
                                        "--body-timeout-ms", "3000"),
                         {"effect_delay_ms": {"POST /batches": [10, 20.5]}, "list_lag_ms": 0,
                          "body_timeout_ms": 3000, "serial_creates": True,
                          "duplicate_names": False})
        self.assertEqual(self.config_of("livy_fake.py"),
                         {"effect_delay_ms": {}, "list_lag_ms": 0, "body_timeout_ms": 0,
                          "serial_creates": False, "duplicate_names": True})
        self.assertEqual(self.config_of("genie_fake.py", "--effect-delay", "*=1-2",
                                        "--list-lag-ms", "7")["effect_delay_ms"], {"*": [1, 2]})
        bad = subprocess.run([sys.executable, os.path.join(HERE, "livy_fake.py"),
                              "--effect-delay", "POST /batches=9-1"], capture_output=True,
                             timeout=10)
        self.assertNotEqual(bad.returncode, 0)

    def test_body_timeout(self):
        p, port, _ = start("livy_fake.py", "--body-timeout-ms", "200")
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(raw_request("POST", "/batches", b'{"fi', content_length=50))
            t0 = time.monotonic()
            self.assertEqual(s.recv(100), b"")   # closed, unanswered
            self.assertLess(time.monotonic() - t0, 2)
            s.close()
            self.assertEqual(call(port, "GET", "/_stats")[1]["truncated_requests"], 1)
        finally:
            stop(p)


# ---------------------------------------------------------------- proxy

class Proxy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.livy, cls.lport, _ = start("livy_fake.py")
        cls.proxy, cls.port, (cls.ctl,) = start("hold_proxy.py", "--target",
                                                "127.0.0.1:%d" % cls.lport, extra=1)

    @classmethod
    def tearDownClass(cls):
        stop(cls.proxy)
        stop(cls.livy)

    def tearDown(self):
        call(self.ctl, "DELETE", "/hold")
        call(self.ctl, "POST", "/release", {"id": "all", "mode": "drop"})
        call(self.ctl, "POST", "/delay", {"ms": 0})

    def control(self, method, path, body=None, want=200):
        code, doc, _ = call(self.ctl, method, path, body)
        self.assertEqual(code, want, doc)
        return doc

    def lstats(self):
        return call(self.lport, "GET", "/_stats")[1]

    def held(self, n=1):
        return wait_for(lambda: [h for h in self.control("GET", "/state")["held"]
                                 if h["forwarded"] == n], what="a held connection")

    def batch_bytes(self, name):
        body = json.dumps({"file": "local:///x.py", "name": name}).encode()
        return raw_request("POST", "/batches", body, [("Content-Type", "application/json")])

    def test_hold_then_forward(self):
        self.control("POST", "/hold", {"match": "POST /batches", "after_bytes": 30})
        created = self.lstats()["batches_created"]
        # a connection that does not match passes while the hold is armed
        self.assertEqual(call(self.port, "GET", "/batches")[0], 200)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(self.batch_bytes("held-1"))
        (h,) = self.held(30)
        self.assertEqual(h["match"], "POST /batches")
        self.assertLessEqual(h["since"], time.time())
        st = self.control("GET", "/state")
        self.assertEqual(st["armed"], [])
        time.sleep(0.2)
        self.assertEqual(self.lstats()["batches_created"], created)
        s.settimeout(0.1)
        self.assertRaises(socket.timeout, s.recv, 100)
        released = st["released"]
        self.assertEqual(self.control("POST", "/release", {"id": h["id"]}),
                         {"released": [h["id"]]})
        s.settimeout(5)
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 201"))
        s.close()
        self.assertEqual(self.lstats()["batches_created"], created + 1)
        st = self.control("GET", "/state")
        self.assertEqual((st["held"], st["released"]), ([], released + 1))
        self.assertGreaterEqual(st["connections"], 2)
        self.control("POST", "/release", {"id": h["id"]}, want=404)

    def test_client_gone_while_held_is_truncated(self):
        before, created = self.lstats()["truncated_requests"], self.lstats()["batches_created"]
        self.control("POST", "/hold", {"match": "POST /batches", "after_bytes": 40})
        data = self.batch_bytes("held-cut")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(data[:-10])   # killed before writing its last bytes
        (h,) = self.held(40)
        s.close()
        time.sleep(0.1)
        self.control("POST", "/release", {"id": "all", "mode": "forward"})
        wait_for(lambda: self.lstats()["truncated_requests"] == before + 1,
                 what="the fake to discard the request")
        self.assertEqual(self.lstats()["batches_created"], created)

    def test_released_request_of_a_gone_client_takes_effect(self):
        # the match may be in the body; the client hangs up while held, but
        # it had written the whole request: released, it takes effect (the
        # delay lets the proxy's half-close reach the fake before it answers)
        call(self.lport, "POST", "/_config", {"effect_delay_ms": {"POST /batches": [200, 200]}})
        self.addCleanup(call, self.lport, "POST", "/_config", {"effect_delay_ms": None})
        self.control("POST", "/hold", {"match": '"held-gone"', "after_bytes": 50})
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(self.batch_bytes("held-gone"))
        (h,) = self.held(50)
        s.close()

        def mine():
            return [e for e in call(self.lport, "GET", "/_effects")[1] if e["key"] == "held-gone"]
        time.sleep(0.1)
        self.assertEqual(mine(), [])
        self.control("POST", "/release", {"id": h["id"], "mode": "forward"})
        (e,) = wait_for(mine, what="the released request's effect")
        self.assertTrue(e["client_gone"])

    def test_release_drop(self):
        before = self.lstats()["truncated_requests"]
        self.control("POST", "/hold", {"match": "POST /batches", "after_bytes": 20})
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(self.batch_bytes("dropped"))
        (h,) = self.held(20)
        self.control("POST", "/release", {"id": h["id"], "mode": "drop"})
        try:
            self.assertEqual(s.recv(100), b"")
        except ConnectionResetError:
            pass
        s.close()
        wait_for(lambda: self.lstats()["truncated_requests"] == before + 1,
                 what="the fake to discard the request line")
        self.assertNotIn("dropped", [e["key"] for e in call(self.lport, "GET", "/_effects")[1]])

    def test_held_client_writes_pile_up_in_its_buffers(self):
        self.control("POST", "/hold", {"match": "POST /big", "after_bytes": 0})
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        self.held(0)
        s.setblocking(False)
        sent, chunk = 0, b"x" * 65536
        try:
            while sent < 1000000:
                sent += s.send(chunk[:1000000 - sent])
        except BlockingIOError:   # its send buffer is full
            pass
        time.sleep(0.1)
        # bytes the proxy's kernel has not acknowledged: nearly all of them
        # (what it took is bounded by its small receive buffer)
        unacked = struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        self.assertGreater(sent, 64 * 1024)
        self.assertGreaterEqual(unacked, sent - 32 * 1024)

    def test_transit_delay(self):
        self.control("POST", "/delay", {"ms": 300})
        self.assertEqual(self.control("GET", "/state")["delay_ms"], 300)
        t0 = time.monotonic()
        self.assertEqual(call(self.port, "GET", "/batches")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.control("POST", "/delay", {"ms": 0})
        t0 = time.monotonic()
        self.assertEqual(call(self.port, "GET", "/batches")[0], 200)
        self.assertLess(time.monotonic() - t0, 0.2)

    def test_bad_control_requests(self):
        self.control("POST", "/hold", {"after_bytes": 3}, want=400)
        self.control("POST", "/release", {"id": "all", "mode": "later"}, want=400)
        self.control("POST", "/delay", {"ms": -1}, want=400)
        self.control("GET", "/nothing", want=404)

    def test_sigterm(self):
        p, port, _ = start("hold_proxy.py", "--target", "127.0.0.1:%d" % self.lport, extra=1)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(5), 0)
        p.stdout.close()
        s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
