"""What emr_fake.py, livy_fake.py and genie_fake.py share (stdlib only, not
run by itself): the knobs that make them behave like the real services in
time, the independent log of what took effect, and the discarding of
requests a client cut short. Each fake's docstring documents the knobs for
its own operations; the rules common to all three are here.

Config: GET /_config answers it; POST /_config merges a JSON object into it
and answers the result (400 {"error"} for an unknown key or a bad value,
nothing changed). A key given as null goes back to its default; the
operations of effect_delay_ms merge one by one (an operation given as null
is removed). Every knob is off by default.

  effect_delay_ms  {OP: [MIN, MAX]}  a request of operation OP, once fully
                   received and validated, waits a uniformly random
                   MIN..MAX ms, then takes effect, then is answered. OP "*"
                   is the default for every operation; an exact OP wins over
                   "*" (so [0, 0] exempts one). A value may also be a single
                   number N (= [N, N]) or the string "MIN-MAX".
  list_lag_ms      N   a created resource shows in the list operations only
                   N ms after its effect (the value in force at the effect);
                   a get by id sees it at once
  body_timeout_ms  N   a request body that has not fully arrived within N ms
                   is given up on, as a truncated request (0: wait until it
                   arrives or the client closes, as before)

CLI: --effect-delay OP=MIN-MAX (repeatable; OP may be "*"; MIN-MAX may be
one number), --list-lag-ms N, --body-timeout-ms N.

Effect log: GET /_effects answers a JSON list, in the order the effects
happened, of every side-effecting request that took effect:
  {"op", "key" (the task-run key the request carried, or null), "id",
   "name", "arrived" (unix seconds when its request line was read),
   "effective" (unix seconds of the effect), "client_gone", "state" (the
   resource's state now, at the GET)}
client_gone is true when, at the answer, the client had hung up (EOF or a
reset waiting on the connection) or writing the answer failed. A hangup the
stand-in cannot see yet (behind a proxy that has not passed it on) leaves it
false.
GET /_effects?dups=1 answers only the entries whose non-null key appears
more than once under the same op.

Truncated requests: a request whose body is shorter than its
Content-Length (or whose request line or headers end at EOF) is discarded:
no effect, no answer, the connection closed, counted in /_stats as
"truncated_requests".
"""
import collections
import copy
import random
import re
import select
import socket
import threading
import time

BASE_DEFAULTS = {"effect_delay_ms": {}, "list_lag_ms": 0, "body_timeout_ms": 0}
LIVY_DEFAULTS = {"serial_creates": False, "duplicate_names": True}


class ConfigError(ValueError):
    pass


def _num(x):
    return int(x) if float(x).is_integer() else x


def parse_range(text):
    """'MIN-MAX' or 'N' (milliseconds) -> [MIN, MAX]."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(?:-\s*(\d+(?:\.\d*)?)\s*)?", text)
    if not m:
        raise ConfigError("%r is not MIN-MAX (milliseconds)" % text)
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise ConfigError("%r: MAX is below MIN" % text)
    return [_num(lo), _num(hi)]


def norm_range(v):
    if isinstance(v, str):
        return parse_range(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v, v]
    if (not isinstance(v, list) or len(v) != 2 or
            not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) or
            not 0 <= v[0] <= v[1]):
        raise ConfigError("a delay is [MIN, MAX] with 0 <= MIN <= MAX, not %r" % (v,))
    return [_num(v[0]), _num(v[1])]


def parse_delay_flag(text):
    """--effect-delay OP=MIN-MAX -> (OP, [MIN, MAX])."""
    op, sep, rng = text.rpartition("=")
    if not sep or not op.strip():
        raise ConfigError("--effect-delay wants OP=MIN-MAX, not %r" % text)
    return op.strip(), parse_range(rng)


def add_arguments(parser, livy=False):
    parser.add_argument("--effect-delay", action="append", default=[], metavar="OP=MIN-MAX",
                        help="wait MIN..MAX ms before a request of OP takes effect "
                             "(repeatable; OP * for every operation)")
    parser.add_argument("--list-lag-ms", type=float, default=0, metavar="N",
                        help="created resources show in list operations N ms late")
    parser.add_argument("--body-timeout-ms", type=float, default=0, metavar="N",
                        help="give up on a request body not complete within N ms")
    if livy:
        parser.add_argument("--serial-creates", action="store_true",
                            help="POST /batches and /sessions one at a time, across the delay")
        parser.add_argument("--allow-duplicate-names", action="store_true",
                            help="accept a batch/session name already held")


class Timing:
    """The config, the effect log and a few counters of one fake."""

    def __init__(self, livy=False):
        self.lock = threading.Lock()
        self.defaults = dict(BASE_DEFAULTS, **(LIVY_DEFAULTS if livy else {}))
        self.cfg = copy.deepcopy(self.defaults)
        self.effects = EffectLog()
        self.stats, self.stats_lock = None, None

    @classmethod
    def from_args(cls, a, livy=False):
        t = cls(livy)
        doc = {"effect_delay_ms": {}, "list_lag_ms": a.list_lag_ms,
               "body_timeout_ms": a.body_timeout_ms}
        for flag in a.effect_delay:
            try:
                op, rng = parse_delay_flag(flag)
            except ConfigError as e:
                raise SystemExit("error: %s" % e)
            doc["effect_delay_ms"][op] = rng
        if livy:
            doc["serial_creates"] = a.serial_creates
            doc["duplicate_names"] = not a.allow_duplicate_names
        try:
            t.merge(doc)
        except ConfigError as e:
            raise SystemExit("error: %s" % e)
        return t

    def bind(self, stats, lock):
        """Counters (truncated_requests) go into the fake's /_stats dict."""
        self.stats, self.stats_lock = stats, lock
        stats.setdefault("truncated_requests", 0)

    def count(self, what):
        if self.stats is None:
            return
        with self.stats_lock:
            self.stats[what] = self.stats.get(what, 0) + 1

    def get(self, key):
        with self.lock:
            return copy.deepcopy(self.cfg[key])

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.cfg)

    def merge(self, doc):
        if not isinstance(doc, dict):
            raise ConfigError("the config is a JSON object")
        with self.lock:
            new = copy.deepcopy(self.cfg)
            for k, v in doc.items():
                if k not in self.defaults:
                    raise ConfigError("unknown config key %r (known: %s)" %
                                      (k, ", ".join(sorted(self.defaults))))
                if v is None:
                    new[k] = copy.deepcopy(self.defaults[k])
                elif k == "effect_delay_ms":
                    if not isinstance(v, dict):
                        raise ConfigError("effect_delay_ms is {OP: [MIN, MAX]}")
                    for op, rng in v.items():
                        if rng is None:
                            new[k].pop(op, None)
                        else:
                            new[k][op] = norm_range(rng)
                elif isinstance(self.defaults[k], bool):
                    if not isinstance(v, bool):
                        raise ConfigError("%s is true or false" % k)
                    new[k] = v
                else:
                    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                        raise ConfigError("%s is a number >= 0" % k)
                    new[k] = _num(v)
            self.cfg = new
            return copy.deepcopy(new)

    def _range(self, keys):
        d = self.cfg["effect_delay_ms"]
        for k in tuple(keys) + ("*",):
            if k in d:
                return d[k]
        return None

    def has_delay(self, keys):
        with self.lock:
            r = self._range(keys)
        return bool(r and r[1] > 0)

    def delay_s(self, keys):
        """A fresh random delay (seconds) for an operation known by keys
        (most specific first)."""
        with self.lock:
            r = self._range(keys)
        if not r or r[1] <= 0:
            return 0.0
        return random.uniform(r[0], r[1]) / 1000.0

    def lag_s(self):
        with self.lock:
            return float(self.cfg["list_lag_ms"]) / 1000.0


class EffectLog:
    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []   # (entry, state function)

    def add(self, op, key, id_, name, arrived, state):
        e = {"op": op, "key": key, "id": id_, "name": name, "arrived": arrived,
             "effective": time.time(), "client_gone": False}
        with self.lock:
            self.rows.append((e, state))
        return e

    def mark_gone(self, entries):
        with self.lock:
            for e in entries:
                e["client_gone"] = True

    def view(self, dups=False):
        """The entries with their state now. Call with the fake's own lock
        held: the state functions read its state."""
        with self.lock:
            rows = [(dict(e), state) for e, state in self.rows]
        out = []
        for e, state in rows:
            try:
                e["state"] = state()
            except Exception:  # noqa: BLE001 (a state that cannot be told)
                e["state"] = None
            out.append(e)
        if dups:
            n = collections.Counter((e["op"], e["key"]) for e in out if e["key"] is not None)
            out = [e for e in out if e["key"] is not None and n[(e["op"], e["key"])] > 1]
        return out


def want_dups(query):
    """?dups=1 (or true/yes)"""
    v = query.get("dups")
    if isinstance(v, list):
        v = v[-1] if v else None
    return str(v).lower() in ("1", "true", "yes")


def bracket_key(name):
    """The text inside the last "[...]" that ends name, or None."""
    if not isinstance(name, str) or not name.endswith("]") or "[" not in name:
        return None
    return name[name.rindex("[") + 1:-1]


class _LastLine:
    """Wraps rfile to remember the last header line parse_headers read."""

    def __init__(self, f):
        self.f, self.last = f, None

    def readline(self, *a):
        self.last = self.f.readline(*a)
        return self.last


class HandlerMixin:
    """For a BaseHTTPRequestHandler (put it first among the bases). The fake
    sets `timing` on its handler class; with it None, nothing changes."""
    timing = None
    arrived = 0.0
    effects = ()

    def parse_request(self):
        self.arrived = time.time()
        self.effects = []
        if self.timing is None:
            return super().parse_request()
        if not self.raw_requestline.endswith(b"\n"):   # EOF inside the request line
            self.discard()
            return False
        real, spy = self.rfile, _LastLine(self.rfile)
        self.rfile = spy
        try:
            ok = super().parse_request()
        finally:
            self.rfile = real
        if ok and spy.last is not None and spy.last not in (b"\r\n", b"\n"):
            self.discard()   # EOF inside the headers
            return False
        return ok

    def discard(self):
        """Drops a request the client cut short: no effect, no answer."""
        self.close_connection = True
        if self.timing is not None:
            self.timing.count("truncated_requests")
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def read_body_checked(self):
        """The body, or None when it is shorter than Content-Length (the
        request is then discarded)."""
        n = int(self.headers.get("Content-Length") or 0)
        if not n:
            return b""
        limit = self.timing.get("body_timeout_ms") if self.timing is not None else 0
        if limit:
            self.connection.settimeout(limit / 1000.0)
        try:
            raw = self.rfile.read(n)
        except OSError:   # a reset, or body_timeout_ms (socket.timeout)
            raw = b""
        finally:
            if limit:
                self.connection.settimeout(self.timeout)
        if n > 0 and len(raw) < n:
            self.discard()
            return None
        return raw

    def effect_delay(self, *keys):
        """Waits the effect delay of the operation known by keys."""
        d = self.timing.delay_s(keys) if self.timing is not None else 0.0
        if d:
            time.sleep(d)

    def has_delay(self, *keys):
        return self.timing is not None and self.timing.has_delay(keys)

    def log_effect(self, op, key, id_, name, state):
        """Records an effect of this request (call it under the fake's lock,
        at the moment of the effect)."""
        if self.timing is None:
            return None
        e = self.timing.effects.add(op, key, id_, name, self.arrived, state)
        self.effects.append(e)
        return e

    def peer_gone(self):
        """The client has closed (EOF or reset waiting to be read)."""
        try:
            p = select.poll()
            p.register(self.connection, select.POLLIN | select.POLLERR | select.POLLHUP)
            if not p.poll(0):
                return False
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def answer(self, send, *args, **kw):
        """send(*args, **kw) writes the answer; when this request took effect
        and the client is gone (or the write fails), its effects get
        client_gone. Requests without effects behave exactly as before."""
        if not self.effects:
            return send(*args, **kw)
        gone = self.peer_gone()
        try:
            send(*args, **kw)
        except OSError:
            gone = True
            self.close_connection = True
        if gone:
            self.timing.effects.mark_gone(self.effects)
        return None
