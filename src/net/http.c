/* HTTP on the loop (see include/baton/http.h for the contract).
 *
 * One curl multi handle, driven the way curl's evhiperfifo.c example does:
 * CURLMOPT_SOCKETFUNCTION starts, changes or stops one ev_io per socket,
 * CURLMOPT_TIMERFUNCTION arms one ev_timer, and both watchers call
 * curl_multi_socket_action and then collect finished transfers with
 * curl_multi_info_read. The multi handle owns the connection cache, so a
 * fresh easy handle per attempt still reuses kept-alive connections.
 *
 * A request (req_t) lives from bt_http_request until its callback: it owns
 * copies of everything the caller passed, at most one easy handle (the
 * attempt in flight) and one ev_timer (the backoff before the next
 * attempt). Callbacks only run from watchers of the loop or from
 * bt_http_free, never from bt_http_request itself.
 *
 * At most max_connections attempts per host are handed to curl at once;
 * the rest wait here, in order. curl would queue them too, but its
 * CURLOPT_TIMEOUT_MS runs from the moment a handle is added: behind a
 * burst of thousands (a takeover's lookups, a fan-out's submissions) an
 * attempt would time out before it ever got a connection, and a
 * submission that timed out has an unknown outcome that must be looked
 * up. Here the per-attempt timeout measures the server; the queue's wait
 * counts against the retry budget only. Finished easy handles are reset
 * and kept for the next attempt.
 *
 * Side effects pass the gate twice: when an attempt is about to be handed
 * to curl (a cheap early refusal) and in CURLOPT_PREREQFUNCTION, which curl
 * calls on the connection right before the request's first byte. A request
 * remembers whether any of its attempts may have reached the service in a
 * way that can take effect (maybe_performed); an answer that says so is
 * "unknown", every other refusal is "not sent". */
#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baton/clock.h"
#include "baton/http.h"
#include "baton/log.h"
#include "baton/backoff.h"
#include "util/container.h"

#define DEF_TIMEOUT_MS 30000u
#define DEF_ATTEMPTS 5u
#define DEF_BUDGET_MS 120000u
#define DEF_BACKOFF_BASE_MS 200u
#define DEF_BACKOFF_MAX_MS 20000u
#define DEF_MAX_BODY (8u << 20)

typedef struct sock {
    struct sock *prev, *next;
    bt_http_t *h;
    ev_io io;
} sock_t;

typedef struct req {
    struct req *prev, *next;
    struct req *wnext;          /* in its host's wait queue */
    struct req *cnext;          /* cut off by the gate, answered from `later` */
    bt_http_t *h;
    size_t host;                /* index in h->hosts */
    CURL *easy;                 /* the attempt in flight, or NULL */
    ev_timer backoff;
    bt_http_request_t o;        /* numbers with defaults; strings point at copies below */
    char *method, *url, *body, *sigv4, *keys, *userpwd;
    struct curl_slist *headers;
    int64_t started_ms;         /* monotonic: the retry budget runs from here */
    uint32_t attempts;
    int waiting;                /* in its host's wait queue */
    int maybe_performed;        /* an attempt may have taken effect at the service */
    int answered;               /* the last attempt got a definite answer */
    int refused;                /* the gate refused the attempt in curl's hands */
    int cut;                    /* stopped by bt_http_gate_closed: on h->cut */
    /* the current attempt's answer */
    char *buf;
    size_t len, cap;
    int too_big;
    char *content_type;
    char errbuf[CURL_ERROR_SIZE];
    bt_http_cb cb;
    void *arg;
} req_t;

/* One peer (scheme://host:port): attempts in curl, and those waiting. */
typedef struct host {
    char *key;
    unsigned active;
    req_t *wait_head, *wait_tail;
} host_t;

#define EASY_POOL 64

struct bt_http {
    struct ev_loop *loop;
    CURLM *multi;
    host_t *hosts;
    size_t nhosts;
    unsigned per_host;          /* attempts handed to curl per host */
    CURL *easy_pool[EASY_POOL]; /* reset handles for the next attempts */
    size_t neasy;
    ev_timer timer;             /* CURLMOPT_TIMERFUNCTION */
    char *ca_bundle;
    req_t *reqs;                /* every request not answered yet */
    sock_t *socks;              /* every socket curl asked us to watch */
    bt_http_stats_t stats;
    uint64_t rnd;
    int closing;
    int (*gate)(void *);        /* may a side effect be sent now? NULL: yes */
    void *gate_arg;
    req_t *cut;                 /* answers owed by bt_http_gate_closed */
    ev_timer later;             /* delivers them, from the loop */
};

static uint64_t next_random(bt_http_t *h)
{
    /* splitmix64: jitter needs spread, not secrecy */
    uint64_t z = (h->rnd += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ the loop glue */

static void check_done(bt_http_t *h);

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    sock_t *k = container_of(w, sock_t, io);
    bt_http_t *h = k->h; /* k may be freed inside socket_action */
    int running, action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                          ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    (void)loop;
    curl_multi_socket_action(h->multi, w->fd, action, &running);
    check_done(h);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_http_t *h = container_of(w, bt_http_t, timer);
    int running;
    (void)loop;
    (void)revents;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *arg)
{
    bt_http_t *h = arg;
    (void)multi;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        /* 0 means "as soon as possible": the next loop iteration, not now,
         * because curl must not be re-entered from its own callback */
        ev_timer_set(&h->timer, (double)timeout_ms / 1000., 0.);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
    bt_http_t *h = arg;
    sock_t *k = sockp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            ev_io_stop(h->loop, &k->io);
            if (k->prev)
                k->prev->next = k->next;
            else
                h->socks = k->next;
            if (k->next)
                k->next->prev = k->prev;
            free(k);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!k) {
        if (!(k = calloc(1, sizeof *k)))
            return -1;
        k->h = h;
        k->next = h->socks;
        if (h->socks)
            h->socks->prev = k;
        h->socks = k;
        ev_io_init(&k->io, on_io, s, events);
        curl_multi_assign(h->multi, s, k);
    } else {
        ev_io_stop(h->loop, &k->io);
        ev_io_set(&k->io, s, events);
    }
    ev_io_start(h->loop, &k->io);
    return 0;
}

/* ------------------------------------------------------------ requests */

static void req_free(req_t *r)
{
    free(r->method);
    free(r->url);
    free(r->body);
    free(r->sigv4);
    free(r->keys);
    free(r->userpwd);
    free(r->buf);
    free(r->content_type);
    curl_slist_free_all(r->headers);
    free(r);
}

/* Unlinks r, answers, frees. The only place a callback is called from. */
static void deliver(req_t *r, bt_err_t err, long status, const char *error, uint64_t retry_after)
{
    bt_http_t *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    h->stats.in_flight--;
    ev_timer_stop(h->loop, &r->backoff);
    bt_http_response_t res = {
        .status = status,
        .body = r->buf && err == BT_OK ? r->buf : "",
        .body_len = err == BT_OK ? r->len : 0,
        .content_type = r->content_type,
        .error = error,
        .attempts = r->attempts,
        .retry_after_ms = retry_after,
        .unsent = !r->maybe_performed && !r->answered,
    };
    r->cb(err, &res, r->arg);
    req_free(r);
}

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
    req_t *r = arg;
    size_t len = size * n;
    if (len > r->o.max_body - r->len) {
        r->too_big = 1;
        return 0; /* CURLE_WRITE_ERROR ends the transfer */
    }
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len + 1)
            cap *= 2;
        char *b = realloc(r->buf, cap);
        if (!b)
            return 0;
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, len);
    r->len += len;
    r->buf[r->len] = '\0';
    return len;
}

static int on_prereq(void *arg, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    req_t *r = arg;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    if (r->h->gate && !r->h->gate(r->h->gate_arg)) {
        r->refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/* A side effect's new connection gets a small send buffer. What the kernel
 * holds leaves even after we cut the request off (a pause, a handoff's
 * bound), so the less it holds the more of a large request is still ours
 * to stop; the requests are small, and their speed is the service's. */
#define SIDE_EFFECT_SNDBUF (16 * 1024)

static int on_sockopt(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    int size = SIDE_EFFECT_SNDBUF;
    (void)arg;
    if (purpose == CURLSOCKTYPE_IPCXN)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size); /* a hint: best effort */
    return CURL_SOCKOPT_OK;
}

static bt_err_t launch_attempt(req_t *r)
{
    bt_http_t *h = r->h;
    /* one whose budget ran out while it waited for a connection is not
     * sent at all */
    int64_t left = (int64_t)r->o.retry_budget_ms - (bt_mono_ms() - r->started_ms);
    if (left <= 0)
        return r->o.side_effect ? BT_E_NOT_SENT : BT_E_TIMEOUT;
    if (r->o.side_effect && h->gate && !h->gate(h->gate_arg))
        return BT_E_NOT_SENT;
    /* a read may not outlive the budget; a side effect gets its whole
     * timeout, so that it is answered rather than left unknown */
    long timeout = (long)r->o.timeout_ms;
    if (left < timeout && !r->o.side_effect)
        timeout = (long)left;
    CURL *e = h->neasy ? h->easy_pool[--h->neasy] : curl_easy_init();
    if (!e)
        return BT_E_NOMEM;

    r->len = 0;
    r->too_big = 0;
    r->answered = 0;
    r->refused = 0;
    r->errbuf[0] = '\0';
    free(r->content_type);
    r->content_type = NULL;

    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->o.max_body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    /* no body waits for a 100-continue that a proxy may never send */
    curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
    if (!r->o.idempotent)
        /* curl silently resends a request that died on a reused connection;
         * for a request that must not run twice, only a new connection is
         * safe (these are rare: submissions, not polls) */
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    if (r->o.side_effect) {
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
        curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    }

    if (!strcmp(r->method, "GET")) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (r->body || !strcmp(r->method, "POST")) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->o.body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        }
        if (strcmp(r->method, "POST"))
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }

    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r->o.insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r->o.insecure ? 0L : 2L);
    if (h->ca_bundle)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_bundle);
    if (r->sigv4) {
        curl_easy_setopt(e, CURLOPT_AWS_SIGV4, r->sigv4);
        curl_easy_setopt(e, CURLOPT_USERPWD, r->keys);
    } else if (r->userpwd) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERPWD, r->userpwd);
    }

    r->attempts++;
    h->stats.attempts++;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return BT_E_HTTP;
    }
    r->easy = e;
    h->hosts[r->host].active++;
    return BT_OK;
}

/* Hands r to curl if its host has room, else queues it behind the others
 * that wait for that host. */
static bt_err_t start_attempt(req_t *r)
{
    host_t *ho = &r->h->hosts[r->host];
    if (ho->active < r->h->per_host && !ho->wait_head)
        return launch_attempt(r);
    r->wnext = NULL;
    r->waiting = 1;
    if (ho->wait_tail)
        ho->wait_tail->wnext = r;
    else
        ho->wait_head = r;
    ho->wait_tail = r;
    return BT_OK;
}

/* The answer of a request that was not sent this time: not sent at all
 * unless an earlier attempt may have taken effect. */
static void deliver_unsent(req_t *r, bt_err_t e, const char *why)
{
    if (e == BT_E_NOT_SENT) {
        r->h->stats.not_sent++;
        if (r->maybe_performed)
            e = BT_E_TIMEOUT; /* an earlier attempt may have done it */
    }
    deliver(r, e, 0, why, 0);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents);

/* r is answered from the next loop iteration: never from inside a call of
 * ours, never from inside curl. */
static void cut_later(req_t *r)
{
    bt_http_t *h = r->h;
    r->cut = 1;
    r->cnext = h->cut;
    h->cut = r;
    if (!ev_is_active(&h->later)) {
        ev_timer_set(&h->later, 0., 0.);
        ev_timer_start(h->loop, &h->later);
    }
}

/* A slot of the host freed up: start whoever waits for it. */
static void pump(bt_http_t *h, size_t host)
{
    host_t *ho = &h->hosts[host];
    while (!h->closing && ho->wait_head && ho->active < h->per_host) {
        req_t *q = ho->wait_head;
        if (!(ho->wait_head = q->wnext))
            ho->wait_tail = NULL;
        q->waiting = 0;
        bt_err_t e = launch_attempt(q);
        if (e != BT_OK)
            deliver_unsent(q, e,
                           e == BT_E_NOT_SENT ? "side effect not sent: this node may not act now"
                           : e == BT_E_TIMEOUT ? "retry budget spent waiting for a connection; not sent"
                                               : "cannot start the next attempt");
    }
}

/* The attempt's handle goes back to the pool (or away). */
static void release_easy(req_t *r)
{
    bt_http_t *h = r->h;
    curl_multi_remove_handle(h->multi, r->easy);
    if (h->neasy < EASY_POOL && !h->closing) {
        curl_easy_reset(r->easy);
        h->easy_pool[h->neasy++] = r->easy;
    } else {
        curl_easy_cleanup(r->easy);
    }
    r->easy = NULL;
    h->hosts[r->host].active--;
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_http_t *h = container_of(w, bt_http_t, later);
    req_t *r = h->cut;
    (void)loop;
    (void)revents;
    h->cut = NULL;
    while (r) {
        req_t *next = r->cnext;
        deliver_unsent(r, r->maybe_performed ? BT_E_CANCELLED : BT_E_NOT_SENT,
                       r->maybe_performed ? "side effect cut off after it was sent; outcome unknown"
                                          : "side effect not sent: this node may not act now");
        r = next;
    }
    /* the slots they held (or waited for) go to whoever waits */
    for (size_t i = 0; i < h->nhosts; i++)
        pump(h, i);
}

static void on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
    req_t *r = container_of(w, req_t, backoff);
    (void)loop;
    (void)revents;
    bt_err_t e = start_attempt(r);
    if (e != BT_OK)
        deliver_unsent(r, e, e == BT_E_NOT_SENT ? "side effect not sent: this node may not act now"
                                                : "cannot start the next attempt");
}

/* AWS APIs say "slow down" with a 400 whose JSON __type names throttling. */
static int aws_throttled(const req_t *r)
{
    json_t *root = r->buf ? json_loadb(r->buf, r->len, 0, NULL) : NULL;
    const char *type = json_string_value(json_object_get(root, "__type"));
    int yes = type && strstr(type, "Throttling") != NULL;
    json_decref(root);
    return yes;
}

/* Transport failures worth another attempt; *reached says whether the
 * request may have got to the server (then only idempotent ones retry). */
static int transport_retryable(CURLcode rc, int *reached)
{
    *reached = 1;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        *reached = 0;
        return 1;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        *reached = 0;
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0; /* TLS verification, bad URL, ...: another try will not help */
    }
}

/* One attempt ended: retry within the budget, or answer. */
static void attempt_done(req_t *r, CURLcode rc)
{
    bt_http_t *h = r->h;
    long status = 0;
    curl_off_t ra = 0;
    char *ctype = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &ra);
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ctype);
    if (ctype)
        r->content_type = strdup(ctype);
    release_easy(r);
    size_t host = r->host;
    uint64_t retry_after = ra > 0 ? (uint64_t)ra * 1000u : 0;

    bt_err_t err = BT_OK;
    int retry = 0, reached;
    const char *error = NULL;
    if (rc == CURLE_ABORTED_BY_CALLBACK && r->refused) {
        deliver_unsent(r, BT_E_NOT_SENT, "side effect not sent: this node may not act now");
        pump(h, host);
        return;
    }
    if (rc == CURLE_OK) {
        /* a 429 (or AWS throttling) was refused before any work: always safe */
        if (status == 429 || (status == 400 && r->o.aws_throttling && aws_throttled(r))) {
            retry = 1;
        } else if (status >= 500 && status <= 599) {
            retry = r->o.idempotent;
            r->maybe_performed = 1;
        } else {
            r->answered = 1;
        }
    } else if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        err = BT_E_HTTP;
        error = "response body larger than the limit";
        r->maybe_performed = 1; /* it answered: whatever it was asked, it did */
    } else {
        err = rc == CURLE_OPERATION_TIMEDOUT ? BT_E_TIMEOUT : BT_E_HTTP;
        error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
        retry = transport_retryable(rc, &reached) && (r->o.idempotent || !reached);
        r->maybe_performed |= reached;
        status = 0;
    }

    if (retry && r->attempts < r->o.max_attempts && !h->closing) {
        uint64_t delay = bt_backoff_ms(r->o.backoff_base_ms, r->o.backoff_max_ms,
                                       r->attempts + 1, next_random(h));
        if (retry_after > delay)
            delay = retry_after;
        int64_t elapsed = bt_mono_ms() - r->started_ms;
        if (elapsed + (int64_t)delay < (int64_t)r->o.retry_budget_ms) {
            bt_debug("http: %s %s: %s; attempt %u in %llu ms", r->method, r->url,
                     error ? error : "retryable status", r->attempts + 1,
                     (unsigned long long)delay);
            h->stats.retries++;
            ev_timer_set(&r->backoff, (double)delay / 1000., 0.);
            ev_timer_start(h->loop, &r->backoff);
            pump(h, host);
            return;
        }
    }
    deliver(r, err, status, error, retry_after);
    pump(h, host);
}

static void check_done(bt_http_t *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = m->data.result; /* m is invalid once the handle is removed */
        char *p = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &p);
        attempt_done((req_t *)p, rc);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The index of url's scheme://host:port in h->hosts, added if new. */
static bt_err_t host_of(bt_http_t *h, const char *url, size_t *out)
{
    const char *p = strstr(url, "://");
    size_t len = p ? (size_t)(p + 3 - url) + strcspn(p + 3, "/?#") : strlen(url);
    for (size_t i = 0; i < h->nhosts; i++)
        if (strlen(h->hosts[i].key) == len && !strncmp(h->hosts[i].key, url, len)) {
            *out = i;
            return BT_OK;
        }
    host_t *n = realloc(h->hosts, (h->nhosts + 1) * sizeof *n);
    if (!n)
        return BT_E_NOMEM;
    h->hosts = n;
    memset(&n[h->nhosts], 0, sizeof *n);
    if (!(n[h->nhosts].key = strndup(url, len)))
        return BT_E_NOMEM;
    *out = h->nhosts++;
    return BT_OK;
}

static bt_err_t copy_request(req_t *r, const bt_http_request_t *req)
{
    r->o = *req;
    r->o.timeout_ms = req->timeout_ms ? req->timeout_ms : DEF_TIMEOUT_MS;
    r->o.max_attempts = req->max_attempts ? req->max_attempts : DEF_ATTEMPTS;
    r->o.retry_budget_ms = req->retry_budget_ms ? req->retry_budget_ms : DEF_BUDGET_MS;
    r->o.backoff_base_ms = req->backoff_base_ms ? req->backoff_base_ms : DEF_BACKOFF_BASE_MS;
    r->o.backoff_max_ms = req->backoff_max_ms ? req->backoff_max_ms : DEF_BACKOFF_MAX_MS;
    r->o.max_body = req->max_body ? req->max_body : DEF_MAX_BODY;
    if (host_of(r->h, req->url, &r->host) != BT_OK)
        return BT_E_NOMEM;
    r->method = strdup(req->method);
    r->url = strdup(req->url);
    r->sigv4 = dup_or_null(req->aws_sigv4);
    r->userpwd = dup_or_null(req->userpwd);
    if (!r->method || !r->url || (req->aws_sigv4 && !r->sigv4) || (req->userpwd && !r->userpwd))
        return BT_E_NOMEM;
    if (req->body) {
        if (!(r->body = malloc(req->body_len + 1)))
            return BT_E_NOMEM;
        memcpy(r->body, req->body, req->body_len);
        r->body[req->body_len] = '\0';
    }
    if (r->sigv4) {
        size_t n = strlen(req->aws_access_key ? req->aws_access_key : "") +
                   strlen(req->aws_secret_key ? req->aws_secret_key : "") + 2;
        if (!(r->keys = malloc(n)))
            return BT_E_NOMEM;
        snprintf(r->keys, n, "%s:%s", req->aws_access_key ? req->aws_access_key : "",
                 req->aws_secret_key ? req->aws_secret_key : "");
    }
    for (const char *const *hd = req->headers; hd && *hd; hd++) {
        struct curl_slist *l = curl_slist_append(r->headers, *hd);
        if (!l)
            return BT_E_NOMEM;
        r->headers = l;
    }
    /* Large bodies would get "Expect: 100-continue", one more round trip.
     * Removing the header with "Expect:" would change what SigV4 signs, so
     * signed requests rely on EXPECT_100_TIMEOUT_MS = 0 instead. */
    if (!r->sigv4) {
        struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
        if (!l)
            return BT_E_NOMEM;
        r->headers = l;
    }
    return BT_OK;
}

bt_err_t bt_http_request(bt_http_t *h, const bt_http_request_t *req, bt_http_cb cb, void *arg)
{
    if (!h || !req || !req->method || !req->url || !cb || (req->body_len && !req->body))
        return BT_E_INVAL;
    if (h->closing)
        return BT_E_CANCELLED;
    req_t *r = calloc(1, sizeof *r);
    if (!r)
        return BT_E_NOMEM;
    r->h = h;
    r->cb = cb;
    r->arg = arg;
    bt_err_t e = copy_request(r, req);
    if (e != BT_OK) {
        req_free(r);
        return e;
    }
    ev_timer_init(&r->backoff, on_backoff, 0., 0.);
    r->started_ms = bt_mono_ms();
    e = start_attempt(r);
    if (e != BT_OK && e != BT_E_NOT_SENT) {
        req_free(r);
        return e;
    }
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    h->stats.requests++;
    h->stats.in_flight++;
    if (e == BT_E_NOT_SENT)
        cut_later(r); /* answered from the loop, as every answer is */
    return BT_OK;
}

void bt_http_set_gate(bt_http_t *h, int (*may_send)(void *arg), void *arg)
{
    h->gate = may_send;
    h->gate_arg = arg;
}

/* Every body byte handed to the kernel (and so the headers before them):
 * they leave whatever we do now. */
static int wholly_sent(req_t *r)
{
    long head = 0;
    curl_off_t body = 0;
    curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &head);
    curl_easy_getinfo(r->easy, CURLINFO_SIZE_UPLOAD_T, &body);
    return head > 0 && body >= (curl_off_t)r->o.body_len;
}

static void unqueue(req_t *r)
{
    host_t *ho = &r->h->hosts[r->host];
    req_t **p = &ho->wait_head, *prev = NULL;
    while (*p && *p != r) {
        prev = *p;
        p = &(*p)->wnext;
    }
    if (*p) {
        *p = r->wnext;
        if (ho->wait_tail == r)
            ho->wait_tail = prev;
    }
    r->waiting = 0;
}

size_t bt_http_gate_closed(bt_http_t *h, int sent_too)
{
    size_t n = 0;
    if (!h)
        return 0;
    for (req_t *r = h->reqs; r; r = r->next) {
        if (!r->o.side_effect || r->cut)
            continue;
        if (r->easy) {
            int sent = wholly_sent(r);
            if (sent && !sent_too)
                continue; /* on its way: its answer is what we wait for */
            r->maybe_performed |= sent;
            release_easy(r); /* closes the connection: half a request is none */
        } else if (r->waiting) {
            unqueue(r);
        } else {
            ev_timer_stop(h->loop, &r->backoff);
        }
        h->stats.cut_off++;
        n++;
        cut_later(r);
    }
    return n;
}

bt_err_t bt_http_new(struct ev_loop *loop, const bt_http_opts_t *opts, bt_http_t **out)
{
    bt_http_opts_t o = opts ? *opts : (bt_http_opts_t){0};
    if (!loop || !out)
        return BT_E_INVAL;
    /* reference counted by curl; paired with the cleanup in bt_http_free */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return BT_E_HTTP;
    bt_http_t *h = calloc(1, sizeof *h);
    if (!h)
        goto err_global;
    h->loop = loop;
    h->rnd = (uint64_t)bt_mono_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)h;
    if (o.ca_bundle && !(h->ca_bundle = strdup(o.ca_bundle)))
        goto err_free;
    if (!(h->multi = curl_multi_init()))
        goto err_free;
    h->per_host = o.max_connections ? o.max_connections : 8;
    ev_timer_init(&h->timer, on_timer, 0., 0.);
    ev_timer_init(&h->later, on_later, 0., 0.);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)h->per_host);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long)(o.max_total ? o.max_total : 256));
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)(o.max_total ? o.max_total : 256));
    *out = h;
    return BT_OK;

err_free:
    free(h->ca_bundle);
    free(h);
err_global:
    curl_global_cleanup();
    return BT_E_NOMEM;
}

void bt_http_free(bt_http_t *h)
{
    if (!h)
        return;
    h->closing = 1; /* callbacks below may not queue new requests */
    for (size_t i = 0; i < h->nhosts; i++)
        h->hosts[i].wait_head = h->hosts[i].wait_tail = NULL; /* all answered below */
    ev_timer_stop(h->loop, &h->later);
    h->cut = NULL; /* they are in h->reqs too */
    while (h->reqs) {
        req_t *r = h->reqs;
        if (r->easy)
            release_easy(r);
        deliver(r, BT_E_CANCELLED, 0, "cancelled", 0);
    }
    while (h->neasy)
        curl_easy_cleanup(h->easy_pool[--h->neasy]);
    curl_multi_cleanup(h->multi);
    /* curl normally says REMOVE for each socket while cleaning up; drop
     * whatever it did not */
    while (h->socks) {
        sock_t *k = h->socks;
        h->socks = k->next;
        ev_io_stop(h->loop, &k->io);
        free(k);
    }
    ev_timer_stop(h->loop, &h->timer);
    for (size_t i = 0; i < h->nhosts; i++)
        free(h->hosts[i].key);
    free(h->hosts);
    free(h->ca_bundle);
    free(h);
    curl_global_cleanup();
}

void bt_http_get_stats(const bt_http_t *h, bt_http_stats_t *out)
{
    *out = h ? h->stats : (bt_http_stats_t){0};
}
