#!/usr/bin/python3
"""The EMR fake's SigV4 verifier against AWS's published Signature Version 4
test suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html:
AKIDEXAMPLE, 2015-08-30T12:36:00Z, us-east-1, service "service"), so that a
request the fake accepts is one AWS would accept; then the running fake
against curl's own signer (the libcurl that batond links), and its IMDSv2
side. Run by ctest as fakes.emr_sigv4."""
import json
import os
import shutil
import subprocess
import sys
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import emr_fake  # noqa: E402

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DATE, NOW = "20150830T123600Z", 1440938160  # 2015-08-30T12:36:00Z
SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
HOST = ("Host", "example.amazonaws.com")
STS_TOKEN = ("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRX"
             "mxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburE"
             "Dy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64"
             "lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==")

# name: (method, path, headers, body, signed headers, published signature)
VECTORS = {
    "get-vanilla": ("GET", "/", [HOST], b"", "host;x-amz-date",
                    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    "post-vanilla": ("POST", "/", [HOST], b"", "host;x-amz-date",
                     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    "post-x-www-form-urlencoded": (
        "POST", "/", [("Content-Type", "application/x-www-form-urlencoded"), HOST],
        b"Param1=value1", "content-type;host;x-amz-date",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    "get-header-value-trim": (
        "GET", "/", [HOST, ("My-Header1", " value1"), ("My-Header2", ' "a   b   c"')], b"",
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    "get-header-key-duplicate": (
        "GET", "/", [HOST, ("My-Header1", "value2"), ("My-Header1", "value2"),
                     ("My-Header1", "value1")], b"", "host;my-header1;x-amz-date",
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
    "get-vanilla-query-order-key-case": (
        "GET", "/?Param2=value2&Param1=value1", [HOST], b"", "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    "post-sts-header-before": (
        "POST", "/", [HOST, ("X-Amz-Security-Token", STS_TOKEN)], b"",
        "host;x-amz-date;x-amz-security-token",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
}


def request(name, signature=None, secret=SK):
    method, path, headers, body, signed, sig = VECTORS[name]
    auth = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
        SCOPE, signed, signature or sig)
    return method, path, headers + [("X-Amz-Date", DATE), ("Authorization", auth)], body


class RunJobFlowModel(unittest.TestCase):
    """RunJobFlow held to AWS's model, as baton's loader holds overrides."""
    BASE = {"Name": "x", "ReleaseLabel": "emr-6.15.0", "Instances": {"InstanceGroups": [
        {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}]}}

    def refused(self, extra):
        with self.assertRaises(emr_fake.ApiError) as e:
            emr_fake.check_run_job_flow(dict(self.BASE, **extra))
        return e.exception.type, e.exception.message

    def test_model(self):
        emr_fake.check_run_job_flow(dict(self.BASE, StepConcurrencyLevel=3,
                                         ManagedScalingPolicy={"ComputeLimits": {
                                             "UnitType": "Instances", "MinimumCapacityUnits": 1,
                                             "MaximumCapacityUnits": 4}}))
        t, m = self.refused({"Intances": {}})
        self.assertEqual((t, m), ("SerializationException",
                                  'Unrecognized field "Intances" at \'input\''))
        t, m = self.refused({"StepConcurrencyLevel": "two"})
        self.assertEqual(t, "SerializationException")
        self.assertIn("stepConcurrencyLevel", m)
        t, m = self.refused({"ScaleDownBehavior": "SOMETIMES"})
        self.assertEqual(t, "ValidationException")
        self.assertIn("at 'scaleDownBehavior' failed to satisfy constraint: Member must satisfy "
                      "enum value set", m)
        t, m = self.refused({"ManagedScalingPolicy": {"ComputeLimits": {"UnitType": "Instances"}}})
        self.assertIn("Value null at 'managedScalingPolicy.computeLimits.minimumCapacityUnits'", m)
        t, m = self.refused({"Name": None})
        self.assertIn("Value null at 'name'", m)


class PublishedVectors(unittest.TestCase):
    def check(self, name, **kw):
        method, path, headers, body = request(name)
        return emr_fake.verify(method, path, headers, body, {AK: SK}, "us-east-1", "service",
                               now=NOW, **kw)

    def test_every_vector_verifies(self):
        for name in VECTORS:
            with self.subTest(name):
                token = STS_TOKEN if "sts" in name else None
                self.assertIsNone(self.check(name, session_token=token))

    def test_canonical_request_of_get_vanilla(self):
        method, path, headers, body = request("get-vanilla")
        self.assertEqual(
            emr_fake.canonical_request(method, path, headers, ["host", "x-amz-date"], body),
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

    def test_signature_recomputed_from_the_string_to_sign(self):
        sts = ("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
               "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281")
        self.assertEqual(emr_fake.signature(SK, "20150830", "us-east-1", "service", sts),
                         VECTORS["post-x-www-form-urlencoded"][5])

    def test_rejections(self):
        m, p, h, b = request("post-vanilla", signature="0" * 64)
        bad = emr_fake.verify(m, p, h, b, {AK: SK}, "us-east-1", "service", now=NOW)
        self.assertEqual(bad[:2], (403, "InvalidSignatureException"))
        m, p, h, b = request("post-vanilla")
        bad = emr_fake.verify(m, p, h, b, {AK: "not-the-secret"}, "us-east-1", "service", now=NOW)
        self.assertEqual(bad[:2], (403, "InvalidSignatureException"))
        bad = emr_fake.verify(m, p, h, b, {"OTHER": SK}, "us-east-1", "service", now=NOW)
        self.assertEqual(bad[:2], (403, "UnrecognizedClientException"))
        bad = emr_fake.verify(m, p, h, b, {AK: SK}, "eu-west-1", "service", now=NOW)
        self.assertEqual(bad[:2], (403, "InvalidSignatureException"))
        bad = emr_fake.verify(m, p, h, b, {AK: SK}, "us-east-1", "service", now=NOW + 3600)
        self.assertEqual(bad[:2], (403, "InvalidSignatureException"))
        self.assertIn("expired", bad[2])
        bad = emr_fake.verify(m, p, h, b, {AK: SK}, "us-east-1", "service", now=NOW,
                              session_token="T")
        self.assertEqual(bad[:2], (403, "UnrecognizedClientException"))
        no_auth = [x for x in h if x[0] != "Authorization"]
        bad = emr_fake.verify(m, p, no_auth, b, {AK: SK}, "us-east-1", "service", now=NOW)
        self.assertEqual(bad[:2], (400, "MissingAuthenticationTokenException"))
        no_date = [x for x in h if x[0] != "X-Amz-Date"]
        bad = emr_fake.verify(m, p, no_date, b, {AK: SK}, "us-east-1", "service", now=NOW)
        self.assertEqual(bad[:2], (400, "IncompleteSignatureException"))
        # the body is signed: a changed body is a changed signature
        bad = emr_fake.verify(m, p, h, b"x", {AK: SK}, "us-east-1", "service", now=NOW)
        self.assertEqual(bad[:2], (403, "InvalidSignatureException"))


@unittest.skipUnless(shutil.which("curl"), "no curl binary")
class AgainstCurl(unittest.TestCase):
    """The running fake, signed by curl --aws-sigv4 (libcurl's signer)."""

    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "emr_fake.py"), "--port", "0", "--imds-port", "0",
             "--access-key", "AKFAKE", "--secret-key", "s3cr3t/+key", "--session-token", "tok+/="],
            stdout=subprocess.PIPE, text=True)
        cls.port = int(cls.proc.stdout.readline().split()[1])
        cls.imds = int(cls.proc.stdout.readline().split()[1])

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(5)

    def call(self, op, body, secret="s3cr3t/+key", token="tok+/="):
        cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--aws-sigv4",
               "aws:amz:us-east-1:elasticmapreduce", "-u", "AKFAKE:" + secret,
               "-H", "Content-Type: application/x-amz-json-1.1",
               "-H", "X-Amz-Target: ElasticMapReduce." + op, "--data-binary", json.dumps(body),
               "http://127.0.0.1:%d/" % self.port]
        if token:
            cmd[-1:-1] = ["-H", "X-Amz-Security-Token: " + token]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
        text, _, code = out.rpartition("\n")
        return int(code), json.loads(text)

    def test_signed_calls_work_and_bad_ones_do_not(self):
        code, out = self.call("RunJobFlow", {
            "Name": "n", "ReleaseLabel": "emr-6.15.0",
            "Instances": {"InstanceGroups": [{"InstanceRole": "MASTER", "InstanceType": "m5.xlarge",
                                              "InstanceCount": 1}]}})
        self.assertEqual(code, 200, out)
        code, out = self.call("DescribeCluster", {"ClusterId": out["JobFlowId"]})
        self.assertEqual((code, out["Cluster"]["Status"]["State"]), (200, "STARTING"))
        code, out = self.call("ListClusters", {}, secret="wrong")
        self.assertEqual((code, out["__type"]), (403, "InvalidSignatureException"))
        code, out = self.call("ListClusters", {}, token=None)
        self.assertEqual((code, out["__type"]), (403, "UnrecognizedClientException"))
        code, out = self.call("RunJobFlow", {"Name": "x" * 257, "ReleaseLabel": "emr-6.15.0",
                                             "Instances": {}})
        self.assertEqual((code, out["__type"]), (400, "ValidationException"))
        code, out = self.call("DescribeStep", {"ClusterId": "j-NOPE", "StepId": "s-NOPE"})
        self.assertEqual((code, out["__type"]), (400, "InvalidRequestException"))
        self.assertIn("Message", out)

    def test_imds_v2(self):
        base = "http://127.0.0.1:%d" % self.imds
        req = urllib.request.Request(base + "/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        tok = urllib.request.urlopen(req, timeout=5).read().decode()
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/latest/meta-data/iam/security-credentials/", timeout=5)
        self.assertEqual(e.exception.code, 401)
        h = {"X-aws-ec2-metadata-token": tok}
        role = urllib.request.urlopen(urllib.request.Request(
            base + "/latest/meta-data/iam/security-credentials/", headers=h), timeout=5).read().decode()
        creds = json.load(urllib.request.urlopen(urllib.request.Request(
            base + "/latest/meta-data/iam/security-credentials/" + role, headers=h), timeout=5))
        self.assertEqual((creds["Code"], creds["AccessKeyId"], creds["Token"]),
                         ("Success", "AKFAKE", "tok+/="))


if __name__ == "__main__":
    unittest.main(verbosity=2)
