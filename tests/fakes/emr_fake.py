#!/usr/bin/python3
"""A stateful stand-in for Amazon EMR's API and the EC2 instance metadata
service (stdlib only), for the EMR operator tests
(tests/integration/t4300_emr.py, tests/fakes/test_emr_fake_sigv4.py).

The wire contract it follows (the EMR API reference, the AWS JSON 1.1
protocol, Signature Version 4):

  POST /  Content-Type: application/x-amz-json-1.1
          X-Amz-Target: ElasticMapReduce.<Operation>
          Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/elasticmapreduce/
                         aws4_request, SignedHeaders=..., Signature=...
          X-Amz-Date: 20240101T000000Z   (X-Amz-Security-Token with temporary keys)

  The signature is verified for real: the canonical request is rebuilt from
  the request as received and signed with the configured secret. Errors are
  JSON {"__type": ..., "message": ...} as AWS sends them:
    400 MissingAuthenticationTokenException  no Authorization header
    400 IncompleteSignatureException         a malformed one, no X-Amz-Date,
                                             host or a session token unsigned
    403 UnrecognizedClientException          unknown key id, or a session
                                             token missing or wrong
    403 InvalidSignatureException            wrong signature, scope (region,
                                             service, date) or a date more
                                             than 15 minutes off
    400 ExpiredTokenException                a session token that expired
                                             ("The security token included
                                             in the request is expired")

  Operations: RunJobFlow, AddJobFlowSteps, DescribeCluster, DescribeStep,
  ListClusters, ListSteps, ListInstances, TerminateJobFlows, CancelSteps.
  With --cluster-livy-port, each cluster master that asks for the Livy
  application runs a Livy stand-in at its address (MasterPublicDnsName, a
  127.N.x.y loopback address of its own). Bad requests get
  400 ValidationException (missing Name, Instances or ReleaseLabel, a name
  over 256 characters, InstanceCount < 1, a bad ActionOnFailure, steps on a
  terminated cluster); unknown ids get 400 InvalidRequestException with
  {"__type", "ErrorCode", "Message"}.

Cluster life: STARTING, BOOTSTRAPPING (--boot-s each), then WAITING, or
RUNNING while a step runs; with the tag fake:fate=fail it ends
TERMINATED_WITH_ERRORS (BOOTSTRAP_FAILURE) instead of becoming ready.
TerminateJobFlows: TERMINATING for 0.3 s, then TERMINATED (USER_REQUEST).
ListClusters returns newest first, 50 a page with a Marker, and no tags.

Step life: PENDING until the cluster is ready, then RUNNING for --step-s
(or the argument fake:sleep=SECONDS), then COMPLETED, or FAILED with
FailureDetails when an argument is fake:fail. ListSteps: newest first, 50 a
page. CancelSteps: PENDING steps are CANCELLED, RUNNING ones CANCEL_PENDING
then CANCELLED.

IMDSv2 (--imds-port): PUT /latest/api/token (needs
X-aws-ec2-metadata-token-ttl-seconds), then with X-aws-ec2-metadata-token:
GET /latest/meta-data/iam/security-credentials/ (the role name) and
GET .../security-credentials/<role> (AccessKeyId, SecretAccessKey, Token =
the session token, Expiration --imds-expiry-s ahead); 401 without a token.

Test controls (no signature):
  POST   /_fault  {"op": "RunJobFlow"|"*", "mode": M, "count": N (default 1,
                  -1 forever), "status": S, "type": T, "delay_ms": D,
                  "body": B}; modes: status (answer S with error type T),
                  throttle (400 ThrottlingException), drop (close the
                  connection before doing anything), lost (do the work, then
                  close unanswered), slow (do the work, answer after D ms),
                  garbage (200 with a body that is not JSON), body (200 with
                  B, work not done)
  DELETE /_fault  clears every fault
  POST   /_expire_token   the session token in use expires now (requests
                  signed with it get ExpiredTokenException) and the IMDS
                  hands out a new one, as when temporary keys run out
  GET    /_stats  {"RunJobFlow": clusters created, "AddJobFlowSteps": steps
                  added, "TerminateJobFlows", "CancelSteps", "calls": {op: n},
                  "auth_failures": {type: n}, "faults_fired", "imds": {...},
                  "truncated_requests": requests discarded, below}
  GET    /_last   the last request body of each operation
  GET    /_clusters  every cluster with its tags and steps
  GET    /_config, POST /_config   the timing knobs, below
  GET    /_effects[?dups=1]        the effect log, below

Timing (all off by default; the common rules are in fake_timing.py):
  effect_delay_ms {OP: [MIN, MAX]}, OP the X-Amz-Target operation
                  (RunJobFlow, AddJobFlowSteps, DescribeCluster, DescribeStep,
                  ListClusters, ListSteps, TerminateJobFlows, CancelSteps) or
                  "*". A signed, well-formed request of OP waits MIN..MAX ms,
                  then takes effect (the cluster or steps are created under
                  the state lock), then is answered. Auth failures, bad JSON,
                  faults that do no work (status, throttle, drop, garbage,
                  body) and what RunJobFlow / AddJobFlowSteps can tell wrong
                  from the request alone (the ValidationExceptions above) are
                  answered at once, with no effect; whether the cluster exists
                  and takes steps is decided at the effect. Other operations
                  are answered MIN..MAX ms later. A client that hung up during
                  the wait does not stop the effect (as with AWS): it is
                  logged with client_gone.
  list_lag_ms N   a cluster shows in ListClusters, a step in ListSteps, only
                  N ms after its effect; DescribeCluster / DescribeStep see it
                  at once
  body_timeout_ms N   give up on a body not complete within N ms
  CLI: --effect-delay OP=MIN-MAX (repeatable, OP may be *), --list-lag-ms N,
  --body-timeout-ms N

Effect log (GET /_effects): one entry per cluster RunJobFlow created (op
"RunJobFlow", id the cluster id, name its Name, key the value of its tag
"baton:run-key", or without that tag the text inside the "[...]" that ends
its Name, else null) and per step AddJobFlowSteps added (op
"AddJobFlowSteps", id the step id, name its Name, key the text inside the
"[...]" that ends the Name, else null; with no delay configured the steps
before a bad one in the same request are added, and logged, even though the
request is answered 400); state is the cluster's or the step's state now.
Terminations and cancellations are not in it (see /_stats).

A request whose body is shorter than its Content-Length (the client closed
mid-body) is discarded: no effect, no answer, the connection closed, counted
as truncated_requests.

Usage: emr_fake.py --port N --access-key AK --secret-key SK
                   [--session-token T] [--imds-port M] [--region R]
                   [--effect-delay OP=MIN-MAX ...] [--list-lag-ms N]
                   [--body-timeout-ms N]
prints "listening PORT" once ready, then "imds PORT" with --imds-port.
"""
import argparse
import calendar
import ctypes
import hashlib
import hmac
import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import fake_timing

SERVICE = "elasticmapreduce"
PAGE = 50
CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING",
                  "TERMINATED", "TERMINATED_WITH_ERRORS")
ACTIONS = ("TERMINATE_JOB_FLOW", "TERMINATE_CLUSTER", "CANCEL_AND_WAIT", "CONTINUE")


# ---------------------------------------------------------------- SigV4

def _enc(s):
    return quote(s, safe="-_.~")


def canonical_request(method, raw_path, headers, signed, payload):
    """headers: [(name, value)] as received (duplicates kept, in order)."""
    u = urlsplit(raw_path)
    segs = [_enc(unquote(p)) for p in (u.path or "/").split("/")]
    path = "/".join(segs) or "/"
    pairs = []
    for part in filter(None, u.query.split("&")):
        k, _, v = part.partition("=")
        pairs.append((_enc(unquote(k)), _enc(unquote(v))))
    query = "&".join("%s=%s" % kv for kv in sorted(pairs))
    values = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.strip().split()))
    lines = "".join("%s:%s\n" % (h, ",".join(values.get(h, []))) for h in signed)
    return "\n".join([method, path, query, lines, ";".join(signed),
                      hashlib.sha256(payload).hexdigest()])


def signature(secret, date, region, service, string_to_sign):
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()


AUTH_RX = re.compile(r"AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),"
                     r"\s*Signature=([0-9a-f]{64})$")


def verify(method, raw_path, headers, payload, keys, region, service, now=None,
           session_token=None):
    """None when the request is signed right, else (status, __type, message).
    keys: {access key id: secret}."""
    hv = {}
    for name, value in headers:
        hv.setdefault(name.lower(), value.strip())
    auth = hv.get("authorization")
    if not auth:
        return 400, "MissingAuthenticationTokenException", "Missing Authentication Token"
    m = AUTH_RX.match(auth)
    cred = m.group(1).split("/") if m else []
    if not m or len(cred) != 5:
        return (400, "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                "parameters. Authorization=%s" % auth.split(" ")[0])
    akid, date, creg, csvc, term = cred
    signed = m.group(2).split(";")
    amz_date = hv.get("x-amz-date")
    if not amz_date:
        return (400, "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header.")
    if "host" not in signed:
        return 400, "IncompleteSignatureException", "'Host' must be a signed header"
    if akid not in keys:
        return 403, "UnrecognizedClientException", "The security token included in the request is invalid."
    if session_token is not None:
        if hv.get("x-amz-security-token") != session_token:
            return (403, "UnrecognizedClientException",
                    "The security token included in the request is invalid.")
        if "x-amz-security-token" not in signed:
            return (400, "IncompleteSignatureException",
                    "'X-Amz-Security-Token' must be a signed header")
    if term != "aws4_request" or csvc != service:
        return (403, "InvalidSignatureException",
                "Credential should be scoped to correct service: '%s'." % service)
    if creg != region:
        return (403, "InvalidSignatureException",
                "Credential should be scoped to a valid region, not '%s'." % creg)
    try:
        t = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return 400, "IncompleteSignatureException", "X-Amz-Date is not ISO 8601 basic: %s" % amz_date
    if date != amz_date[:8]:
        return (403, "InvalidSignatureException",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                "from HTTP: '%s' != '%s'" % (date, amz_date[:8]))
    if abs((now if now is not None else time.time()) - t) > 15 * 60:
        return (403, "InvalidSignatureException",
                "Signature expired: %s is now earlier or later than 15 minutes from now" % amz_date)
    creq = canonical_request(method, raw_path, headers, signed, payload)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, "/".join(cred[1:]),
                     hashlib.sha256(creq.encode()).hexdigest()])
    if not hmac.compare_digest(signature(keys[akid], date, creg, csvc, sts), m.group(3)):
        return (403, "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.")
    return None


# ---------------------------------------------------------------- state

class ApiError(Exception):
    def __init__(self, type_, message, status=400):
        super().__init__(message)
        self.type, self.message, self.status = type_, message, status


def validation(msg):
    return ApiError("ValidationException", msg)


def invalid(code, msg):
    e = ApiError("InvalidRequestException", msg)
    e.code = code
    return e


class State:
    def __init__(self, boot_s, step_s):
        self.lock = threading.Lock()
        self.boot_s, self.step_s = boot_s, step_s
        self.clusters = {}   # id -> dict, in creation order
        self.cluster_livy = None  # ClusterLivy: a Livy on each master that asks for one
        # masters live at 127.<net>.x.y: two stand-ins at once do not collide
        self.net = random.randint(100, 199)
        self.seq = 0
        self.faults = []
        self.last = {}
        self.session_token = None  # the valid one; rotated by /_expire_token
        self.expired_tokens = set()
        self.stats = {"RunJobFlow": 0, "AddJobFlowSteps": 0, "TerminateJobFlows": 0,
                      "CancelSteps": 0, "calls": {}, "auth_failures": {}, "faults_fired": 0,
                      "imds": {"token": 0, "role_list": 0, "role_creds": 0, "unauthorized": 0}}

    def new_id(self, prefix):
        self.seq += 1
        return "%s-FAKE%09d" % (prefix, self.seq)

    # -- time-driven states (call with the lock held)
    def ready_at(self, c):
        return c["created"] + 2 * c["boot_s"]

    def cluster_state(self, c, now):
        if c["terminate_at"] is not None and now >= c["terminate_at"]:
            if now < c["terminate_at"] + 0.3:
                return "TERMINATING", {"Code": "USER_REQUEST", "Message": "Terminated by user request"}
            return "TERMINATED", {"Code": "USER_REQUEST", "Message": "Terminated by user request"}
        if now < c["created"] + c["boot_s"]:
            return "STARTING", {}
        if now < self.ready_at(c):
            return "BOOTSTRAPPING", {"Message": "Running bootstrap actions"}
        if c["fate"] == "fail":
            return "TERMINATED_WITH_ERRORS", {
                "Code": "BOOTSTRAP_FAILURE",
                "Message": "On the master instance (i-0fake), bootstrap action 1 returned a "
                           "non-zero return code"}
        if any(self.step_state(c, s, now)[0] == "RUNNING" for s in c["steps"]):
            return "RUNNING", {"Message": "Running step"}
        return "WAITING", {"Message": "Cluster ready to run steps."}

    def step_state(self, c, s, now):
        """(state, StateChangeReason, FailureDetails or None)"""
        start = max(self.ready_at(c), s["created"]) + 0.1
        end = start + s["duration"]
        if c["fate"] == "fail":
            return ("PENDING" if now < self.ready_at(c) else "CANCELLED"), {}, None
        tc = s["cancel_at"]
        if tc is not None and tc < end and now >= tc:
            if tc < start or now >= tc + 0.2:
                return "CANCELLED", {"Message": "Cancelled by user request"}, None
            return "CANCEL_PENDING", {}, None
        cut = c["terminate_at"]   # the cluster went away before the step ended
        if cut is not None and cut < end and now >= cut:
            return ("CANCELLED" if cut < start else "INTERRUPTED"), {"Message": "Job terminated"}, None
        if now < start:
            return "PENDING", {}, None
        if now < end:
            return "RUNNING", {}, None
        if s["fail"]:
            return "FAILED", {}, {"Reason": "Unknown Error.",
                                  "Message": "Step %s failed: fake:fail in its arguments" % s["Id"],
                                  "LogFile": "s3://fake-logs/%s/steps/%s/stderr.gz" % (c["Id"], s["Id"])}
        return "COMPLETED", {}, None

    def timeline(self, created, end=None):
        t = {"CreationDateTime": round(created, 3)}
        if end is not None:
            t["EndDateTime"] = round(end, 3)
        return t

    def cluster_status(self, c, now):
        state, reason = self.cluster_state(c, now)
        return {"State": state, "StateChangeReason": reason, "Timeline": self.timeline(c["created"])}

    def step_view(self, c, s, now):
        state, reason, failure = self.step_state(c, s, now)
        status = {"State": state, "StateChangeReason": reason,
                  "Timeline": self.timeline(s["created"])}
        if failure:
            status["FailureDetails"] = failure
        return {"Id": s["Id"], "Name": s["Name"], "ActionOnFailure": s["ActionOnFailure"],
                "Config": {"Jar": s["Jar"], "Properties": {}, "Args": s["Args"],
                           **({"MainClass": s["MainClass"]} if s.get("MainClass") else {})},
                "Status": status}

    def cluster(self, cid):
        c = self.clusters.get(cid) if isinstance(cid, str) else None
        if not c:
            raise invalid("INVALID_CLUSTER_ID", "Cluster id '%s' is not valid." % cid)
        return c


def need(cond, msg):
    if not cond:
        raise validation(msg)


def name_ok(v, field):
    need(v is not None, "1 validation error detected: Value null at '%s' failed to satisfy "
                        "constraint: Member must not be null" % field)
    need(isinstance(v, str), "Value at '%s' must be a string" % field)
    need(len(v) <= 256, "1 validation error detected: Value '%s' at '%s' failed to satisfy "
                        "constraint: Member must have length less than or equal to 256" % (v, field))


# ---------------------------------------------------------------- operations

# RunJobFlow's input shape, from AWS's own service model as botocore ships it
# (the same model tools/gen_emr_model.py compiles into baton's loader)
MODEL_PATH = "/usr/lib/python3/dist-packages/botocore/data/emr/2009-03-31/service-2.json"
_model = None


def model():
    global _model
    if _model is None:
        with open(MODEL_PATH) as f:
            _model = json.load(f)
    return _model


def lower_first(name):
    return name[:1].lower() + name[1:]


def check_shape(shape_name, v, where):
    """The request against the model: an unknown member or a wrong JSON type
    is a SerializationException (the service cannot read it), an enum,
    bound or required member a ValidationException, worded as EMR words
    them (the member path in lower camel case)."""
    sh = model()["shapes"][shape_name]
    t = sh["type"]
    if t == "structure":
        if not isinstance(v, dict):
            raise ApiError("SerializationException",
                           "Start of structure or map found where not expected at '%s'" % where)
        for k, mv in v.items():
            if mv is None:   # JSON null: as if absent
                continue
            if k not in sh["members"]:
                raise ApiError("SerializationException", "Unrecognized field \"%s\" at '%s'"
                               % (k, where or "input"))
            check_shape(sh["members"][k]["shape"], mv,
                        (where + "." if where else "") + lower_first(k))
        for r in sh.get("required", []):
            need(v.get(r) is not None, "1 validation error detected: Value null at '%s' failed "
                 "to satisfy constraint: Member must not be null"
                 % ((where + "." if where else "") + lower_first(r)))
    elif t == "list":
        if not isinstance(v, list):
            raise ApiError("SerializationException", "Expected a list at '%s'" % where)
        for i, x in enumerate(v):
            check_shape(sh["member"]["shape"], x, "%s.%d.member" % (where, i + 1))
    elif t == "map":
        if not isinstance(v, dict):
            raise ApiError("SerializationException", "Expected a map at '%s'" % where)
        for k, x in v.items():
            check_shape(sh["value"]["shape"], x, "%s.%s" % (where, k))
    elif t == "string":
        if not isinstance(v, str):
            raise ApiError("SerializationException", "Expected a string at '%s'" % where)
        if sh.get("enum"):
            need(v in sh["enum"], "1 validation error detected: Value '%s' at '%s' failed to "
                 "satisfy constraint: Member must satisfy enum value set: [%s]"
                 % (v, where, ", ".join(sh["enum"])))
        need(len(v) <= sh.get("max", len(v)), "1 validation error detected: Value at '%s' "
             "failed to satisfy constraint: Member must have length less than or equal to %d"
             % (where, sh.get("max", 0)))
    elif t in ("integer", "long"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ApiError("SerializationException", "Expected a whole number at '%s'" % where)
        need(v >= sh.get("min", v), "1 validation error detected: Value '%d' at '%s' failed to "
             "satisfy constraint: Member must have value greater than or equal to %d"
             % (v, where, sh.get("min", 0)))
    elif t == "boolean":
        if not isinstance(v, bool):
            raise ApiError("SerializationException", "Expected true or false at '%s'" % where)
    elif t in ("double", "float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ApiError("SerializationException", "Expected a number at '%s'" % where)


def check_run_job_flow(req):
    """Everything RunJobFlow checks in the request alone; its Instances."""
    check_shape(model()["operations"]["RunJobFlow"]["input"]["shape"], req, "")
    name_ok(req.get("Name"), "name")
    inst = req.get("Instances")
    need(isinstance(inst, dict), "1 validation error detected: Value null at 'instances' failed "
                                 "to satisfy constraint: Member must not be null")
    need(req.get("ReleaseLabel") or req.get("AmiVersion"),
         "Specify either a release label or an AMI version for the cluster.")
    groups, fleets = inst.get("InstanceGroups"), inst.get("InstanceFleets")
    need(bool(groups) != bool(fleets), "Please specify either instance groups or instance fleets.")
    for i, g in enumerate(groups or []):
        need(isinstance(g, dict), "InstanceGroups must be objects")
        need(g.get("InstanceRole") in ("MASTER", "CORE", "TASK"),
             "1 validation error detected: Value '%s' at 'instances.instanceGroups.%d.member."
             "instanceRole' failed to satisfy constraint: Member must satisfy enum value set: "
             "[MASTER, CORE, TASK]" % (g.get("InstanceRole"), i + 1))
        need(isinstance(g.get("InstanceType"), str) and g["InstanceType"],
             "Instance type must be specified for instance group %d" % (i + 1))
        n = g.get("InstanceCount")
        need(isinstance(n, int) and n >= 1,
             "1 validation error detected: Value '%s' at 'instances.instanceGroups.%d.member."
             "instanceCount' failed to satisfy constraint: Member must have value greater than or "
             "equal to 1" % (n, i + 1))
    if groups:
        need(any(g.get("InstanceRole") == "MASTER" for g in groups),
             "Instance group with role MASTER must be specified.")
    tags = req.get("Tags") or []
    need(isinstance(tags, list), "Tags must be a list")
    for t in tags:
        need(isinstance(t, dict) and isinstance(t.get("Key"), str) and 1 <= len(t["Key"]) <= 128,
             "Tag keys must be 1 to 128 characters")
        need(isinstance(t.get("Value", ""), str) and len(t.get("Value", "")) <= 256,
             "Tag values must be at most 256 characters")
    cfgs = req.get("Configurations")
    need(cfgs is None or isinstance(cfgs, list), "Configurations must be a list")
    policy = req.get("AutoTerminationPolicy")
    if policy is not None:
        idle = policy.get("IdleTimeout") if isinstance(policy, dict) else None
        need(isinstance(idle, int) and 60 <= idle <= 604800,
             "The idle timeout must be between 60 seconds and 7 days.")
    return inst


def op_run_job_flow(st, req, now):
    inst = check_run_job_flow(req)
    tagmap = {t["Key"]: t.get("Value", "") for t in req.get("Tags") or []}
    cid = st.new_id("j")
    boot = tagmap.get("fake:boot_s")
    st.clusters[cid] = {
        "Id": cid, "Name": req["Name"], "created": now, "terminate_at": None,
        "boot_s": float(boot) if boot else st.boot_s, "fate": tagmap.get("fake:fate", ""),
        "tags": req.get("Tags") or [], "request": req, "steps": [],
        "keep_alive": bool(inst.get("KeepJobFlowAliveWhenNoSteps")),
        # each master its own loopback address: a Livy runs there (--cluster-livy)
        "master_addr": "127.%d.%d.%d" % (st.net, st.seq // 250, st.seq % 250 + 1)}
    st.stats["RunJobFlow"] += 1
    if st.cluster_livy and any((a or {}).get("Name", "").lower() == "livy"
                               for a in req.get("Applications") or []):
        st.cluster_livy.start(cid, st.clusters[cid]["master_addr"])
    return {"JobFlowId": cid, "ClusterArn": "arn:aws:elasticmapreduce:fake:000000000000:cluster/" + cid}


def check_step(i, s):
    """Steps[i] of AddJobFlowSteps: (ActionOnFailure, HadoopJarStep, Args)."""
    need(isinstance(s, dict), "Steps must be objects")
    name_ok(s.get("Name"), "steps.%d.member.name" % (i + 1))
    aof = s.get("ActionOnFailure", "TERMINATE_CLUSTER")
    need(aof in ACTIONS, "1 validation error detected: Value '%s' at 'steps.%d.member."
                         "actionOnFailure' failed to satisfy constraint: Member must satisfy "
                         "enum value set: [%s]" % (aof, i + 1, ", ".join(ACTIONS)))
    jar = s.get("HadoopJarStep")
    need(isinstance(jar, dict) and isinstance(jar.get("Jar"), str) and jar["Jar"],
         "1 validation error detected: Value null at 'steps.%d.member.hadoopJarStep.jar' "
         "failed to satisfy constraint: Member must not be null" % (i + 1))
    args = jar.get("Args") or []
    need(isinstance(args, list) and all(isinstance(a, str) for a in args),
         "Args must be a list of strings")
    return aof, jar, args


ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


def check_add_steps(req):
    """What AddJobFlowSteps checks in the request alone (the cluster's
    existence and state are checked when it takes effect)."""
    check_shape(model()["operations"]["AddJobFlowSteps"]["input"]["shape"], req, "")
    role = req.get("ExecutionRoleArn")
    need(role is None or ROLE_ARN.fullmatch(role),
         "The ExecutionRoleArn '%s' is not a valid IAM role ARN." % role)
    need(isinstance(req.get("JobFlowId"), str), "1 validation error detected: Value null at "
         "'jobFlowId' failed to satisfy constraint: Member must not be null")
    steps = req.get("Steps")
    need(isinstance(steps, list) and steps, "Steps must be a non-empty list")
    for i, s in enumerate(steps):
        check_step(i, s)


def op_add_steps(st, req, now):
    jid = req.get("JobFlowId")
    need(isinstance(jid, str), "1 validation error detected: Value null at 'jobFlowId' failed to "
                               "satisfy constraint: Member must not be null")
    c = st.clusters.get(jid)
    need(c is not None, "The job flow '%s' does not exist." % jid)
    state, _ = st.cluster_state(c, now)
    need(state not in ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"),
         "A job flow that is shutting down, terminated, or finished may not be modified.")
    steps = req.get("Steps")
    need(isinstance(steps, list) and steps, "Steps must be a non-empty list")
    ids = []
    for i, s in enumerate(steps):
        aof, jar, args = check_step(i, s)
        sleep = [a.split("=", 1)[1] for a in args if a.startswith("fake:sleep=")]
        sid = st.new_id("s")
        c["steps"].append({"Id": sid, "Name": s["Name"], "ActionOnFailure": aof,
                           "Jar": jar["Jar"], "MainClass": jar.get("MainClass"), "Args": args,
                           "created": now, "cancel_at": None, "fail": "fake:fail" in args,
                           "duration": float(sleep[0]) if sleep else st.step_s})
        ids.append(sid)
    st.stats["AddJobFlowSteps"] += len(ids)
    return {"StepIds": ids}


def master_provisioned(st, c, now):
    """The master has its address from BOOTSTRAPPING on, as on EMR."""
    state, _ = st.cluster_state(c, now)
    return state not in ("STARTING", "TERMINATED", "TERMINATED_WITH_ERRORS") or \
        now >= c["created"] + c["boot_s"]


def op_describe_cluster(st, req, now):
    c = st.cluster(req.get("ClusterId"))
    r = c["request"]
    extra = {}
    if master_provisioned(st, c, now):
        extra["MasterPublicDnsName"] = c["master_addr"]
    return {"Cluster": {**extra,
        "InstanceCollectionType": "INSTANCE_FLEET" if r["Instances"].get("InstanceFleets")
                                  else "INSTANCE_GROUP",
        "Id": c["Id"], "Name": c["Name"], "Status": st.cluster_status(c, now),
        "Tags": c["tags"], "ReleaseLabel": r.get("ReleaseLabel"),
        "Applications": r.get("Applications", []), "AutoTerminate": not c["keep_alive"],
        "VisibleToAllUsers": bool(r.get("VisibleToAllUsers")), "ServiceRole": r.get("ServiceRole"),
        "LogUri": r.get("LogUri"), "NormalizedInstanceHours": 0,
        "ClusterArn": "arn:aws:elasticmapreduce:fake:000000000000:cluster/" + c["Id"]}}


INSTANCE_STATES = ("AWAITING_FULFILLMENT", "PROVISIONING", "BOOTSTRAPPING", "RUNNING",
                   "TERMINATED")


def op_list_instances(st, req, now):
    """ListInstances: the master and core instances of a cluster's groups
    (or fleets), filtered as EMR filters them."""
    c = st.cluster(req.get("ClusterId"))
    gtypes, ftype, states = (req.get("InstanceGroupTypes"), req.get("InstanceFleetType"),
                             req.get("InstanceStates"))
    need(gtypes is None or (isinstance(gtypes, list) and
                            all(t in ("MASTER", "CORE", "TASK") for t in gtypes)),
         "1 validation error detected: Value at 'instanceGroupTypes' failed to satisfy "
         "constraint: Member must satisfy enum value set: [MASTER, CORE, TASK]")
    need(ftype is None or ftype in ("MASTER", "CORE", "TASK"),
         "1 validation error detected: Value '%s' at 'instanceFleetType' failed to satisfy "
         "constraint: Member must satisfy enum value set: [MASTER, CORE, TASK]" % ftype)
    need(states is None or (isinstance(states, list) and all(x in INSTANCE_STATES for x in states)),
         "1 validation error detected: Value at 'instanceStates' failed to satisfy constraint: "
         "Member must satisfy enum value set: [%s]" % ", ".join(INSTANCE_STATES))
    inst = c["request"]["Instances"]
    fleets = bool(inst.get("InstanceFleets"))
    need(not (fleets and gtypes), "Instance group types cannot be used with instance fleets.")
    cstate, _ = st.cluster_state(c, now)
    state = ("TERMINATED" if cstate in ("TERMINATED", "TERMINATED_WITH_ERRORS")
             else "PROVISIONING" if cstate == "STARTING"
             else "BOOTSTRAPPING" if cstate == "BOOTSTRAPPING" else "RUNNING")
    rows = []
    groups = inst.get("InstanceFleets") or inst.get("InstanceGroups") or []
    for gi, g in enumerate(groups):
        role = g.get("InstanceFleetType") if fleets else g.get("InstanceRole")
        if (gtypes and role not in gtypes) or (ftype and role != ftype):
            continue
        n = 1 if role == "MASTER" else int(g.get("InstanceCount") or g.get("TargetOnDemandCapacity") or 1)
        for k in range(n):
            if states and state not in states:
                continue
            if role == "MASTER":
                addr = c["master_addr"]
            else:
                addr = "10.%d.%d.%d" % (int(c["Id"][-6:]) % 250, gi, k + 1)
            row = {"Id": "ci-%s%02d%03d" % (c["Id"][-9:], gi, k),
                   "Ec2InstanceId": "i-%s%02d%03d" % (c["Id"][-9:], gi, k),
                   "PrivateDnsName": addr, "PrivateIpAddress": addr,
                   "PublicDnsName": "", "PublicIpAddress": "",
                   "Status": {"State": state, "StateChangeReason": {},
                              "Timeline": st.timeline(c["created"])},
                   "Market": g.get("Market", "ON_DEMAND"),
                   "InstanceType": g.get("InstanceType", "m5.xlarge")}
            row["InstanceFleetId" if fleets else "InstanceGroupId"] = "%s-%s%02d" % (
                "if" if fleets else "ig", c["Id"][-9:], gi)
            rows.append(row)
    p = page(rows, req.get("Marker"))
    out = {"Instances": p["items"]}
    if "Marker" in p:
        out["Marker"] = p["Marker"]
    return out


def op_describe_step(st, req, now):
    c = st.cluster(req.get("ClusterId"))
    for s in c["steps"]:
        if s["Id"] == req.get("StepId"):
            return {"Step": st.step_view(c, s, now)}
    raise invalid("INVALID_STEP_ID", "Step id '%s' is not valid." % req.get("StepId"))


def page(items, marker):
    try:
        start = int(marker[1:]) if marker else 0
    except ValueError:
        raise validation("Marker '%s' is not valid" % marker)
    out = {"items": items[start:start + PAGE]}
    if start + PAGE < len(items):
        out["Marker"] = "m%d" % (start + PAGE)
    return out


def op_list_clusters(st, req, now):
    states = req.get("ClusterStates")
    after, before = req.get("CreatedAfter"), req.get("CreatedBefore")
    need(after is None or isinstance(after, (int, float)), "CreatedAfter must be a timestamp")
    need(states is None or (isinstance(states, list) and all(s in CLUSTER_STATES for s in states)),
         "ClusterStates must be a list of cluster states")
    rows = []
    for c in reversed(list(st.clusters.values())):   # newest first
        status = st.cluster_status(c, now)
        if states and status["State"] not in states:
            continue
        if after is not None and c["created"] < after:
            continue
        if before is not None and c["created"] > before:
            continue
        if c.get("listed_at", 0) > now:   # list_lag_ms
            continue
        rows.append({"Id": c["Id"], "Name": c["Name"], "Status": status,
                     "NormalizedInstanceHours": 0,
                     "ClusterArn": "arn:aws:elasticmapreduce:fake:000000000000:cluster/" + c["Id"]})
    p = page(rows, req.get("Marker"))
    out = {"Clusters": p["items"]}
    if "Marker" in p:
        out["Marker"] = p["Marker"]
    return out


def op_list_steps(st, req, now):
    c = st.cluster(req.get("ClusterId"))
    states, ids = req.get("StepStates"), req.get("StepIds")
    rows = [st.step_view(c, s, now) for s in reversed(c["steps"])   # newest first
            if s.get("listed_at", 0) <= now]                            # list_lag_ms
    rows = [r for r in rows if (not states or r["Status"]["State"] in states)
            and (not ids or r["Id"] in ids)]
    p = page(rows, req.get("Marker"))
    out = {"Steps": p["items"]}
    if "Marker" in p:
        out["Marker"] = p["Marker"]
    return out


def op_terminate(st, req, now):
    ids = req.get("JobFlowIds")
    need(isinstance(ids, list) and ids, "1 validation error detected: Value null at 'jobFlowIds' "
                                        "failed to satisfy constraint: Member must not be null")
    for cid in ids:
        need(cid in st.clusters, "Cluster id '%s' is not valid." % cid)
    for cid in ids:
        c = st.clusters[cid]
        state, _ = st.cluster_state(c, now)
        if c["terminate_at"] is None and state not in ("TERMINATED", "TERMINATED_WITH_ERRORS"):
            c["terminate_at"] = now
    st.stats["TerminateJobFlows"] += 1
    return {}


def op_cancel_steps(st, req, now):
    c = st.cluster(req.get("ClusterId"))
    opt = req.get("StepCancellationOption", "SEND_INTERRUPT")
    need(opt in ("SEND_INTERRUPT", "TERMINATE_PROCESS"),
         "StepCancellationOption must be SEND_INTERRUPT or TERMINATE_PROCESS")
    out = []
    for sid in req.get("StepIds") or []:
        s = next((s for s in c["steps"] if s["Id"] == sid), None)
        if not s:
            out.append({"StepId": sid, "Status": "FAILED", "Reason": "Step id is not valid."})
            continue
        state, _, _ = st.step_state(c, s, now)
        if state in ("PENDING", "RUNNING"):
            s["cancel_at"] = now
            out.append({"StepId": sid, "Status": "SUBMITTED"})
        else:
            out.append({"StepId": sid, "Status": "FAILED",
                        "Reason": "Step is in state %s and cannot be cancelled." % state})
    st.stats["CancelSteps"] += 1
    return {"CancelStepsInfoList": out}


PRECHECK = {"RunJobFlow": check_run_job_flow, "AddJobFlowSteps": check_add_steps}
RUN_KEY_TAG = "baton:run-key"
OPS = {"RunJobFlow": op_run_job_flow, "AddJobFlowSteps": op_add_steps,
       "DescribeCluster": op_describe_cluster, "DescribeStep": op_describe_step,
       "ListClusters": op_list_clusters, "ListSteps": op_list_steps,
       "TerminateJobFlows": op_terminate, "CancelSteps": op_cancel_steps,
       "ListInstances": op_list_instances}


# ---------------------------------------------------------------- HTTP

class Base(fake_timing.HandlerMixin, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None
    args = None

    def log_message(self, fmt, *a):
        if self.args.verbose:
            sys.stderr.write("emr_fake: " + (fmt % a) + "\n")

    def reply(self, code, body=b"", ctype="application/x-amz-json-1.1"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("x-amzn-RequestId", "fake-%d" % time.time_ns())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        """The body; None when the client cut it short (then discarded)."""
        return self.read_body_checked()

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class EmrHandler(Base):
    def do_GET(self):
        st = self.state
        u = urlsplit(self.path)
        if u.path == "/_config":
            return self.reply(200, self.timing.snapshot(), "application/json")
        with st.lock:
            if u.path == "/_effects":
                return self.reply(200, self.timing.effects.view(
                    fake_timing.want_dups(parse_qs(u.query))), "application/json")
            if self.path == "/_stats":
                return self.reply(200, st.stats, "application/json")
            if self.path == "/_last":
                return self.reply(200, st.last, "application/json")
        if self.path == "/_livy":   # the clusters' Livys (outside the lock: it asks them)
            return self.reply(200, st.cluster_livy.view() if st.cluster_livy else {},
                              "application/json")
        with st.lock:
            if self.path == "/_clusters":
                now = time.time()
                return self.reply(200, [dict(op_describe_cluster(st, {"ClusterId": c["Id"]}, now)["Cluster"],
                                             Steps=[st.step_view(c, s, now) for s in c["steps"]])
                                        for c in st.clusters.values()], "application/json")
        self.reply(404, {"__type": "UnknownOperationException"})

    def do_DELETE(self):
        if self.read_body() is None:
            return None
        if self.path == "/_fault":
            with self.state.lock:
                self.state.faults = []
            return self.reply(200, {}, "application/json")
        self.reply(404, {"__type": "UnknownOperationException"})

    def take_fault(self, op):
        with self.state.lock:
            for f in self.state.faults:
                if f.get("count", 1) != 0 and f.get("op", "*") in ("*", op):
                    if f.get("count", 1) > 0:
                        f["count"] = f.get("count", 1) - 1
                    self.state.stats["faults_fired"] += 1
                    return dict(f)
        return None

    def do_POST(self):
        st, a = self.state, self.args
        raw = self.read_body()
        if raw is None:   # cut short: discarded
            return None
        if self.path == "/_config":
            try:
                doc = json.loads(raw.decode() or "{}")
                return self.reply(200, self.timing.merge(doc), "application/json")
            except ValueError as e:   # bad JSON, or fake_timing.ConfigError
                return self.reply(400, {"error": str(e)}, "application/json")
        if self.path == "/_fault":
            with st.lock:
                st.faults.append(json.loads(raw.decode()))
            return self.reply(200, {}, "application/json")
        if self.path == "/_seed":   # a cluster someone else created (no signature needed)
            doc = json.loads(raw.decode() or "{}")
            req = {"Name": doc.get("Name", "someone-elses"), "ReleaseLabel": "emr-6.15.0",
                   "Instances": {"InstanceGroups": [{"InstanceRole": "MASTER",
                                                     "InstanceType": "m5.xlarge",
                                                     "InstanceCount": 1}],
                                 "KeepJobFlowAliveWhenNoSteps": True},
                   "Tags": doc.get("Tags", [])}
            with st.lock:
                out = op_run_job_flow(st, req, time.time())
                st.stats["RunJobFlow"] -= 1   # not a call: the counts stay the API's
            return self.reply(200, out, "application/json")
        if self.path == "/_expire_token":
            with st.lock:
                if st.session_token:
                    st.expired_tokens.add(st.session_token)
                    st.session_token = "%s~%d" % (st.session_token.split("~")[0],
                                                  len(st.expired_tokens))
            return self.reply(200, {}, "application/json")
        target = self.headers.get("X-Amz-Target", "")
        op = target[len("ElasticMapReduce."):] if target.startswith("ElasticMapReduce.") else None
        with st.lock:
            st.stats["calls"][op or target] = st.stats["calls"].get(op or target, 0) + 1
        bad = verify("POST", self.path, self.headers.items(), raw, {a.access_key: a.secret_key},
                     a.region, SERVICE, session_token=st.session_token)
        if self.headers.get("X-Amz-Security-Token") in st.expired_tokens:
            bad = (400, "ExpiredTokenException",
                   "The security token included in the request is expired")
        if bad:
            with st.lock:
                st.stats["auth_failures"][bad[1]] = st.stats["auth_failures"].get(bad[1], 0) + 1
            return self.reply(bad[0], {"__type": bad[1], "message": bad[2]})
        if op not in OPS:
            return self.reply(400, {"__type": "UnknownOperationException"})
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/x-amz-json-1.1":
            return self.reply(400, {"__type": "SerializationException",
                                    "Message": "Content-Type must be application/x-amz-json-1.1"})
        fault = self.take_fault(op)
        mode = fault.get("mode", "status") if fault else None
        if mode == "drop":
            return self.drop()
        if mode == "throttle":
            return self.reply(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
        if mode == "status":
            code = int(fault.get("status", 500))
            return self.reply(code, {"__type": fault.get("type", "InternalServerError"),
                                     "message": "injected fault"})
        if mode in ("garbage", "body"):
            return self.reply(200, fault.get("body", "<html>this is not JSON {")
                              if mode == "body" else "<html>this is not JSON {")
        try:
            req = json.loads(raw.decode() or "{}")
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            return self.reply(400, {"__type": "SerializationException", "Message": "Start of structure or map found where not expected."})
        if self.has_delay(op):
            # what the request alone shows wrong is answered at once, with
            # no effect; then the effect delay, then the effect
            try:
                if op in PRECHECK:
                    PRECHECK[op](req)
            except ApiError as e:
                return self.reply(e.status, {"__type": e.type, "message": e.message})
            self.effect_delay(op)
        with st.lock:
            st.last[op] = req
            seq = st.seq
            try:
                now = time.time()
                out, code = OPS[op](st, req, now), 200
                self.took_effect(op, req, out, now)
            except ApiError as e:
                out, code = {"__type": e.type, "message": e.message}, e.status
                if e.type == "InvalidRequestException":
                    out = {"__type": e.type, "ErrorCode": e.code, "Message": e.message}
                if op == "AddJobFlowSteps" and st.seq != seq:
                    # the steps before a bad one were added all the same
                    self.took_effect(op, req, {"StepIds": [
                        "s-FAKE%09d" % i for i in range(seq + 1, st.seq + 1)]}, now)
        if mode == "lost":
            return self.drop()
        if mode == "slow":
            time.sleep(fault.get("delay_ms", 1000) / 1000.0)
        self.answer(self.reply, code, out)

    def took_effect(self, op, req, out, now):
        """The effect log and list_lag_ms for what op just created (with the
        lock held)."""
        st, lag = self.state, self.timing.lag_s()
        if op == "RunJobFlow":
            c = st.clusters[out["JobFlowId"]]
            c["listed_at"] = now + lag
            tag = [t.get("Value", "") for t in c["tags"] if t.get("Key") == RUN_KEY_TAG]
            key = tag[-1] if tag else fake_timing.bracket_key(c["Name"])
            self.log_effect(op, key, c["Id"], c["Name"],
                            lambda: st.cluster_state(c, time.time())[0])
        elif op == "AddJobFlowSteps":
            c = st.clusters[req["JobFlowId"]]
            for sid in out["StepIds"]:
                s = next(x for x in c["steps"] if x["Id"] == sid)
                s["listed_at"] = now + lag
                self.log_effect(op, fake_timing.bracket_key(s["Name"]), sid, s["Name"],
                                lambda s=s: st.step_state(c, s, time.time())[0])


class ClusterLivy:
    """A real Livy stand-in (livy_fake.py) on each cluster master that asks
    for the Livy application, listening at the master's address and port
    8998 (or --cluster-livy-port), as EMR runs Livy on the master node. It
    comes up with the cluster and goes down when the cluster terminates,
    and what it had then is kept (GET /_livy of this stand-in)."""

    def __init__(self, state, port, auth):
        self.state, self.port, self.auth = state, port, auth
        self.extra = ["--csrf"] + (["--auth", auth] if auth else [])
        self.procs = {}   # cluster id -> Popen
        self.archive = {}  # cluster id -> what its Livy had when the cluster went
        self.lock = threading.Lock()
        self.spawns = queue.Queue()
        threading.Thread(target=self.spawner, daemon=True).start()
        threading.Thread(target=self.reap, daemon=True).start()

    @staticmethod
    def _die_with_parent():
        try:   # PR_SET_PDEATHSIG: a killed EMR stand-in takes its Livys along
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
        except OSError:
            pass

    def start(self, cid, addr):
        self.spawns.put((cid, addr))

    def spawner(self):
        """Starts the Livys. One long-lived thread forks them all: the death
        signal of PR_SET_PDEATHSIG follows the forking *thread*, and a
        request's thread ends with its client's connection."""
        while True:
            cid, addr = self.spawns.get()
            cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                "livy_fake.py"),
                   "--host", addr, "--port", str(self.port)] + self.extra
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 preexec_fn=self._die_with_parent)
            with self.lock:
                self.procs[cid] = p
            # a master whose Livy is not up yet answers "connection
            # refused", which a client must ride out anyway
            p.stdout.readline()

    def url(self, cid):
        return "http://%s:%d" % (self.state.clusters[cid]["master_addr"], self.port)

    def view(self):
        """{cluster id: {"url", "up", and once the cluster is gone what its
        Livy had: "stats", "batches"}}"""
        with self.lock:
            out = {cid: {"url": self.url(cid), "up": p.poll() is None}
                   for cid, p in self.procs.items()}
            out.update(self.archive)
        return out

    def _keep(self, cid):
        """What a Livy going down had (its batches, its request counts)."""
        import base64
        import urllib.request
        kept = {"url": self.url(cid), "up": False}
        hdr = {}
        if self.auth:
            hdr["Authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        for key, path, h in (("stats", "/_stats", {}), ("batches", "/batches?size=1000", hdr)):
            try:
                req = urllib.request.Request(self.url(cid) + path, headers=h)
                with urllib.request.urlopen(req, timeout=5) as r:
                    kept[key] = json.load(r)
            except (OSError, ValueError) as e:
                kept[key] = {"error": str(e)}
        if isinstance(kept.get("batches"), dict) and "sessions" in kept["batches"]:
            kept["batches"] = kept["batches"]["sessions"]
        with self.lock:
            self.archive[cid] = kept

    def reap(self):
        while True:
            time.sleep(0.2)
            now = time.time()
            with self.state.lock:
                gone = [cid for cid in list(self.procs)
                        if self.state.cluster_state(self.state.clusters[cid], now)[0]
                        in ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")]
            for cid in gone:
                self._keep(cid)
                with self.lock:
                    p = self.procs.pop(cid, None)
                if p and p.poll() is None:
                    p.terminate()
                    p.wait()

    def stop_all(self):
        with self.lock:
            procs, self.procs = list(self.procs.values()), {}
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()


class ImdsHandler(Base):
    ROLE = "baton-test-role"
    TOKENS = set()

    def token_ok(self):
        if self.headers.get("X-aws-ec2-metadata-token") in self.TOKENS:
            return True
        with self.state.lock:
            self.state.stats["imds"]["unauthorized"] += 1
        self.reply(401, "", "text/plain")
        return False

    def do_PUT(self):
        if self.read_body() is None:
            return None
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if self.path != "/latest/api/token":
            return self.reply(404, "", "text/plain")
        if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.reply(400, "", "text/plain")
        tok = "imds-token-%d" % time.time_ns()
        with self.state.lock:
            self.TOKENS.add(tok)
            self.state.stats["imds"]["token"] += 1
        self.reply(200, tok, "text/plain")

    def do_GET(self):
        base = "/latest/meta-data/iam/security-credentials/"
        if not self.path.startswith(base):
            return self.reply(404, "", "text/plain")
        if not self.token_ok():
            return
        name = self.path[len(base):]
        a = self.args
        with self.state.lock:
            self.state.stats["imds"]["role_creds" if name else "role_list"] += 1
        if not name:
            return self.reply(200, self.ROLE, "text/plain")
        if name != self.ROLE:
            return self.reply(404, "", "text/plain")
        exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + a.imds_expiry_s))
        self.reply(200, {"Code": "Success", "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "Type": "AWS-HMAC", "AccessKeyId": a.access_key,
                         "SecretAccessKey": a.secret_key, "Token": self.state.session_token or "",
                         "Expiration": exp}, "text/plain")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--imds-port", type=int, default=None)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--session-token", default=None)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--boot-s", type=float, default=0.3, help="STARTING and BOOTSTRAPPING, each")
    p.add_argument("--step-s", type=float, default=0.5)
    p.add_argument("--imds-expiry-s", type=float, default=21600)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--cluster-livy-port", type=int, default=0,
                   help="run a Livy stand-in on each master that asks for Livy, on this port")
    p.add_argument("--cluster-livy-auth", default=None, metavar="USER:PASS",
                   help="the clusters' Livys require this HTTP basic auth")
    fake_timing.add_arguments(p)
    a = p.parse_args()
    st = State(a.boot_s, a.step_s)
    if a.cluster_livy_port:
        st.cluster_livy = ClusterLivy(st, a.cluster_livy_port, a.cluster_livy_auth)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    st.session_token = a.session_token
    timing = fake_timing.Timing.from_args(a)
    timing.bind(st.stats, st.lock)
    for h in (EmrHandler, ImdsHandler):
        h.state, h.args, h.timing = st, a, timing
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), EmrHandler)
    imds = None
    if a.imds_port is not None:
        imds = ThreadingHTTPServer(("127.0.0.1", a.imds_port), ImdsHandler)
        threading.Thread(target=imds.serve_forever, daemon=True).start()
    print("listening %d" % srv.server_address[1], flush=True)
    if imds:
        print("imds %d" % imds.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if st.cluster_livy:
            st.cluster_livy.stop_all()


if __name__ == "__main__":
    main()
