/* The HTTP transport against a real peer (tests/fakes/http_peer.py, started
 * once per run on a free port): retries and their limits, Retry-After,
 * idempotency, timeouts, the body cap, many requests at once, and the
 * rule that callbacks come from the loop and exactly once.
 *
 * Times are only ever checked from below (a Retry-After was waited for);
 * nothing here depends on the machine being fast. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>
#include <cmocka.h>

#include "baton/clock.h"
#include "baton/http.h"

static pid_t peer_pid;
static int peer_port;

typedef struct fixture {
    struct ev_loop *loop;
    bt_http_t *http;
} fixture_t;

typedef struct got {
    int n;                      /* callbacks so far: must end at 1 */
    bt_err_t err;
    long status;
    uint32_t attempts;
    uint64_t retry_after_ms;
    int64_t at_ms;
    char body[4096];
    char error[256];
    int unsent;
} got_t;

/* ------------------------------------------------------------ the peer */

static int start_peer(void **state)
{
    char path[4096];
    const char *env = getenv("BATON_HTTP_PEER");
    (void)state;
    if (env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        /* __FILE__ is absolute in a CMake build: tests/unit/test_http.c */
        snprintf(path, sizeof path, "%s", __FILE__);
        char *slash = strrchr(path, '/');
        if (!slash)
            return -1;
        snprintf(slash, sizeof path - (size_t)(slash - path), "/../fakes/http_peer.py");
    }
    int fds[2];
    if (pipe(fds))
        return -1;
    peer_pid = fork();
    if (peer_pid < 0)
        return -1;
    if (peer_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/usr/bin/python3", "python3", path, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[128] = "";
    if (!f || !fgets(line, sizeof line, f) || sscanf(line, "listening %d", &peer_port) != 1) {
        fprintf(stderr, "http_peer.py (%s) did not start\n", path);
        return -1;
    }
    fclose(f);
    return 0;
}

static int stop_peer(void **state)
{
    (void)state;
    if (peer_pid > 0) {
        kill(peer_pid, SIGTERM);
        waitpid(peer_pid, NULL, 0);
    }
    return 0;
}

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    if (bt_http_new(fx->loop, NULL, &fx->http) != BT_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    bt_http_free(fx->http);
    ev_loop_destroy(fx->loop);
    free(fx);
    return 0;
}

/* ------------------------------------------------------------ helpers */

static void on_done(bt_err_t err, const bt_http_response_t *res, void *arg)
{
    got_t *g = arg;
    g->n++;
    g->err = err;
    g->status = res->status;
    g->attempts = res->attempts;
    g->retry_after_ms = res->retry_after_ms;
    g->unsent = res->unsent;
    g->at_ms = bt_mono_ms();
    snprintf(g->body, sizeof g->body, "%.*s", (int)res->body_len, res->body);
    snprintf(g->error, sizeof g->error, "%s", res->error ? res->error : "");
    assert_int_equal(strlen(res->body), res->body_len); /* NUL-terminated */
}

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    *(int *)w->data = 1;
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until *n reaches want (fails the test after limit_s). */
static void wait_n(fixture_t *fx, const int *n, int want, double limit_s)
{
    int expired = 0;
    ev_timer guard;
    ev_timer_init(&guard, on_guard, limit_s, 0.);
    guard.data = &expired;
    ev_timer_start(fx->loop, &guard);
    while (*n < want && !expired)
        ev_run(fx->loop, EVRUN_ONCE);
    ev_timer_stop(fx->loop, &guard);
    if (*n < want)
        fail_msg("only %d of %d answers within %.0f s", *n, want, limit_s);
}

/* Lets the loop run for `s` seconds (for "nothing else arrives"). */
static void idle_for(fixture_t *fx, double s)
{
    int expired = 0;
    ev_timer guard;
    ev_timer_init(&guard, on_guard, s, 0.);
    guard.data = &expired;
    ev_timer_start(fx->loop, &guard);
    while (!expired)
        ev_run(fx->loop, EVRUN_ONCE);
}

static char *url(const char *path_and_query)
{
    static char buf[2][512]; /* two live at once is all a test needs */
    static int i;
    i ^= 1;
    snprintf(buf[i], sizeof buf[i], "http://127.0.0.1:%d%s", peer_port, path_and_query);
    return buf[i];
}

static void send_req(fixture_t *fx, bt_http_request_t *req, got_t *g)
{
    assert_int_equal(bt_http_request(fx->http, req, on_done, g), BT_OK);
}

/* One request, answered: returns after its callback. */
static void call(fixture_t *fx, bt_http_request_t *req, got_t *g)
{
    send_req(fx, req, g);
    assert_int_equal(g->n, 0); /* never from inside bt_http_request */
    wait_n(fx, &g->n, 1, 30);
    idle_for(fx, 0.05);
    assert_int_equal(g->n, 1); /* exactly once */
}

static int peer_count(fixture_t *fx, const char *token)
{
    char path[128];
    got_t g = {0};
    snprintf(path, sizeof path, "/count?of=%s", token);
    bt_http_request_t req = {.method = "GET", .url = url(path), .idempotent = 1};
    call(fx, &req, &g);
    assert_int_equal(g.status, 200);
    return atoi(g.body);
}

/* ------------------------------------------------------------ cases */

static void success_from_the_loop(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    bt_http_request_t req = {.method = "GET", .url = url("/ok")};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.status, 200);
    assert_string_equal(g.body, "ok");
    assert_int_equal(g.attempts, 1);
    bt_http_stats_t st;
    bt_http_get_stats(fx->http, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.in_flight, 0);
}

static void retry_after_seconds_is_honoured(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    /* a 429 is retried even for a POST: the server refused before any work */
    bt_http_request_t req = {.method = "POST", .url = url("/seq?t=ra1&codes=429,200&ra=1"),
                             .body = "{}", .body_len = 2, .backoff_base_ms = 10};
    int64_t t0 = bt_mono_ms();
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.attempts, 2);
    assert_true(g.at_ms - t0 >= 1000);
    assert_int_equal(peer_count(fx, "ra1"), 2);
}

static void retry_after_date_is_honoured(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    bt_http_request_t req = {.method = "GET", .url = url("/seq?t=ra2&codes=429,200&ra=date:3"),
                             .backoff_base_ms = 10};
    int64_t t0 = bt_mono_ms();
    call(fx, &req, &g);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.attempts, 2);
    /* an HTTP date has whole seconds: 3 s ahead is at least 2 s of waiting */
    assert_true(g.at_ms - t0 >= 2000);
}

static void idempotent_5xx_is_retried(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    bt_http_request_t req = {.method = "GET", .url = url("/seq?t=s1&codes=503,502,200"),
                             .idempotent = 1, .backoff_base_ms = 10};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.attempts, 3);
    assert_string_equal(g.body, "answer 200 to request 3");
    bt_http_stats_t st;
    bt_http_get_stats(fx->http, &st);
    assert_int_equal(st.retries, 2);
}

static void budget_spent_returns_the_last_answer(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    /* every answer asks for 1 s; a 1.5 s budget has room for one wait */
    bt_http_request_t req = {.method = "GET", .url = url("/seq?t=b1&codes=503&ra=1"),
                             .idempotent = 1, .max_attempts = 10, .retry_budget_ms = 1500};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.status, 503);
    assert_int_equal(g.attempts, 2);
    assert_int_equal(g.retry_after_ms, 1000);
    assert_string_equal(g.body, "answer 503 to request 2");

    /* and attempts run out the same way */
    got_t g2 = {0};
    bt_http_request_t req2 = {.method = "DELETE", .url = url("/seq?t=b2&codes=500"),
                              .idempotent = 1, .max_attempts = 3, .backoff_base_ms = 5};
    call(fx, &req2, &g2);
    assert_int_equal(g2.status, 500);
    assert_int_equal(g2.attempts, 3);
    assert_int_equal(peer_count(fx, "b2"), 3);
}

static void post_is_not_resent_after_5xx(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    bt_http_request_t req = {.method = "POST", .url = url("/seq?t=p1&codes=503,200"),
                             .body = "{\"a\":1}", .body_len = 7, .backoff_base_ms = 5};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.status, 503);
    assert_int_equal(g.attempts, 1);
    assert_int_equal(peer_count(fx, "p1"), 1);
}

static void aws_throttling_is_retried_when_asked(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0}, g2 = {0};
    bt_http_request_t req = {.method = "POST", .url = url("/seq?t=aw1&codes=400,200&aws=throttle"),
                             .body = "{}", .body_len = 2, .aws_throttling = 1,
                             .backoff_base_ms = 5};
    call(fx, &req, &g);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.attempts, 2);
    /* without the flag a 400 is just an answer */
    bt_http_request_t req2 = {.method = "POST",
                              .url = url("/seq?t=aw2&codes=400,200&aws=throttle"),
                              .body = "{}", .body_len = 2, .backoff_base_ms = 5};
    call(fx, &req2, &g2);
    assert_int_equal(g2.status, 400);
    assert_non_null(strstr(g2.body, "ThrottlingException"));
}

static void dropped_connection(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0}, g2 = {0};
    /* idempotent: sent again (by us or by curl on a fresh connection) */
    bt_http_request_t req = {.method = "GET", .url = url("/drop?t=d1&times=1"),
                             .idempotent = 1, .backoff_base_ms = 5};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.status, 200);
    assert_string_equal(g.body, "after drop");
    assert_int_equal(peer_count(fx, "d1"), 2);

    /* not idempotent: the server may have acted, so it is sent once */
    bt_http_request_t req2 = {.method = "POST", .url = url("/drop?t=d2&times=1"), .body = "{}",
                              .body_len = 2, .backoff_base_ms = 5};
    call(fx, &req2, &g2);
    assert_int_equal(g2.err, BT_E_HTTP);
    assert_int_equal(g2.status, 0);
    assert_int_equal(g2.attempts, 1);
    assert_true(g2.error[0] != '\0');
    assert_int_equal(peer_count(fx, "d2"), 1);
}

static void refused_connection_is_retried_even_for_post(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    /* a port nobody listens on: the request never reached anyone */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
    close(s);
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    bt_http_request_t req = {.method = "POST", .url = u, .body = "{}", .body_len = 2,
                             .max_attempts = 3, .backoff_base_ms = 5};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_E_HTTP);
    assert_int_equal(g.attempts, 3);
}

static void timeout_is_reported(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    bt_http_request_t req = {.method = "GET", .url = url("/slow?ms=2000"), .timeout_ms = 200,
                             .idempotent = 1, .max_attempts = 2, .backoff_base_ms = 5};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_E_TIMEOUT);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.attempts, 2);
}

static void body_cap(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0}, g2 = {0};
    bt_http_request_t req = {.method = "GET", .url = url("/big?size=100000"), .max_body = 1000,
                             .idempotent = 1};
    call(fx, &req, &g);
    assert_int_equal(g.err, BT_E_HTTP);
    assert_int_equal(g.attempts, 1); /* not something a retry fixes */
    assert_non_null(strstr(g.error, "larger"));
    bt_http_request_t req2 = {.method = "GET", .url = url("/big?size=1000"), .max_body = 1000};
    call(fx, &req2, &g2);
    assert_int_equal(g2.err, BT_OK);
    assert_int_equal(strlen(g2.body), 1000);
}

static void auth_and_headers(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0}, g2 = {0};
    const char *hdrs[] = {"X-Requested-By: baton", "Content-Type: application/json", NULL};
    bt_http_request_t req = {.method = "POST", .url = url("/echo"), .headers = hdrs,
                             .body = "{\"a\":1}", .body_len = 7, .userpwd = "user:pass"};
    call(fx, &req, &g);
    assert_int_equal(g.status, 200);
    assert_non_null(strstr(g.body, "\"authorization\": \"Basic dXNlcjpwYXNz\""));
    assert_non_null(strstr(g.body, "\"x-requested-by\": \"baton\""));
    assert_non_null(strstr(g.body, "\"method\": \"POST\""));
    assert_null(strstr(g.body, "\"expect\""));

    /* SigV4: curl signs; the header list gets no "Expect:" entry */
    bt_http_request_t req2 = {.method = "POST", .url = url("/echo"), .headers = hdrs,
                              .body = "{}", .body_len = 2,
                              .aws_sigv4 = "aws:amz:us-east-1:elasticmapreduce",
                              .aws_access_key = "AKIDEXAMPLE", .aws_secret_key = "secret"};
    call(fx, &req2, &g2);
    assert_int_equal(g2.status, 200);
    assert_non_null(strstr(g2.body, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    assert_non_null(strstr(g2.body, "x-amz-date"));
}

/* Runs the loop until each of g[0..n) was answered (fails after 60 s). */
static void wait_all(fixture_t *fx, const got_t *g, int n)
{
    int done = 0;
    int64_t deadline = bt_mono_ms() + 60000;
    while (done < n && bt_mono_ms() < deadline) {
        ev_run(fx->loop, EVRUN_ONCE);
        done = 0;
        for (int i = 0; i < n; i++)
            done += g[i].n;
    }
    assert_int_equal(done, n);
}

#define MANY 200

static void many_at_once(void **state)
{
    fixture_t *fx = *state;
    static got_t g[MANY];
    memset(g, 0, sizeof g);
    for (int i = 0; i < MANY; i++) {
        bt_http_request_t req = {.method = "GET", .url = url("/seq?t=many&codes=200"),
                                 .idempotent = 1};
        send_req(fx, &req, &g[i]);
    }
    bt_http_stats_t st;
    bt_http_get_stats(fx->http, &st);
    assert_int_equal(st.in_flight, MANY);
    wait_all(fx, g, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(g[i].n, 1);
        assert_int_equal(g[i].status, 200);
    }
    assert_int_equal(peer_count(fx, "many"), MANY);
}

/* Attempts beyond a host's connections wait in bt_http, and their timeout
 * runs from their turn: twelve 300 ms answers through two connections take
 * about 1.8 s, each well within its 1 s timeout. Had curl queued them, the
 * later ones would have timed out waiting for a connection (an unknown
 * outcome, for a submission). Then: requests still queued at free are
 * cancelled, each answered once. */
#define QUEUED 12

static void queued_attempts_time_from_their_turn(void **state)
{
    fixture_t *fx = *state;
    static got_t g[QUEUED], late[4];
    memset(g, 0, sizeof g);
    memset(late, 0, sizeof late);
    bt_http_free(fx->http);
    bt_http_opts_t o = {.max_connections = 2};
    assert_int_equal(bt_http_new(fx->loop, &o, &fx->http), BT_OK);
    for (int i = 0; i < QUEUED; i++) {
        bt_http_request_t req = {.method = "GET", .url = url("/slow?ms=300"), .timeout_ms = 1000,
                                 .max_attempts = 1};
        send_req(fx, &req, &g[i]);
    }
    wait_all(fx, g, QUEUED);
    for (int i = 0; i < QUEUED; i++) {
        assert_int_equal(g[i].err, BT_OK);
        assert_int_equal(g[i].status, 200);
        assert_int_equal(g[i].attempts, 1);
    }
    /* the last ones waited for their turn: later than two answers apart */
    int64_t first = g[0].at_ms, last = g[0].at_ms;
    for (int i = 1; i < QUEUED; i++) {
        first = g[i].at_ms < first ? g[i].at_ms : first;
        last = g[i].at_ms > last ? g[i].at_ms : last;
    }
    assert_true(last - first >= 300 * (QUEUED / 2 - 1) - 50);

    for (int i = 0; i < 4; i++) {
        bt_http_request_t req = {.method = "GET", .url = url("/slow?ms=3000")};
        send_req(fx, &req, &late[i]);
    }
    bt_http_free(fx->http);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(late[i].n, 1);
        assert_int_equal(late[i].err, BT_E_CANCELLED);
    }
    assert_int_equal(bt_http_new(fx->loop, NULL, &fx->http), BT_OK);
}

/* A request whose retry budget runs out while it waits for a connection
 * is answered BT_E_TIMEOUT with attempts 0, and never reaches the peer. */
static void budget_spent_in_the_queue_is_never_sent(void **state)
{
    fixture_t *fx = *state;
    got_t slow = {0}, starved = {0};
    bt_http_free(fx->http);
    bt_http_opts_t o = {.max_connections = 1};
    assert_int_equal(bt_http_new(fx->loop, &o, &fx->http), BT_OK);
    bt_http_request_t r1 = {.method = "GET", .url = url("/slow?ms=1500")};
    bt_http_request_t r2 = {.method = "POST", .url = url("/seq?t=starved&codes=200"),
                            .body = "{}", .body_len = 2, .retry_budget_ms = 300};
    send_req(fx, &r1, &slow);
    send_req(fx, &r2, &starved);
    wait_n(fx, &slow.n, 1, 30);
    assert_int_equal(slow.status, 200);
    assert_int_equal(starved.n, 1);
    assert_int_equal(starved.err, BT_E_TIMEOUT);
    assert_int_equal(starved.attempts, 0);
    assert_non_null(strstr(starved.error, "not sent"));
    assert_int_equal(peer_count(fx, "starved"), 0);
}

static void free_cancels_what_is_pending(void **state)
{
    fixture_t *fx = *state;
    got_t slow = {0}, waiting = {0};
    bt_http_request_t r1 = {.method = "GET", .url = url("/slow?ms=3000")};
    bt_http_request_t r2 = {.method = "GET", .url = url("/seq?t=f1&codes=503&ra=30"),
                            .idempotent = 1};
    send_req(fx, &r1, &slow);
    send_req(fx, &r2, &waiting);
    /* until the second one sits in its Retry-After wait */
    int64_t until = bt_mono_ms() + 10000;
    while (bt_mono_ms() < until) {
        idle_for(fx, 0.05);
        bt_http_stats_t st;
        bt_http_get_stats(fx->http, &st);
        if (st.retries == 1)
            break;
    }
    assert_int_equal(slow.n + waiting.n, 0);
    bt_http_free(fx->http);
    assert_int_equal(slow.n, 1);
    assert_int_equal(slow.err, BT_E_CANCELLED);
    assert_int_equal(waiting.n, 1);
    assert_int_equal(waiting.err, BT_E_CANCELLED);
    /* a fresh handle for teardown */
    assert_int_equal(bt_http_new(fx->loop, NULL, &fx->http), BT_OK);
}


/* ------------------------------------------------------------ the gate */

static int gate_open;
static int gate_asked;
static int gate(void *arg)
{
    (void)arg;
    gate_asked++;
    return gate_open;
}

static void gate_refuses_side_effects_only(void **state)
{
    fixture_t *fx = *state;
    got_t se = {0}, rd = {0};
    gate_open = 0;
    bt_http_set_gate(fx->http, gate, NULL);
    bt_http_request_t create = {.method = "POST", .url = url("/seq?t=g1&codes=200"),
                                .body = "{}", .body_len = 2, .side_effect = 1};
    bt_http_request_t read = {.method = "GET", .url = url("/seq?t=g2&codes=200"),
                              .idempotent = 1};
    call(fx, &create, &se);
    call(fx, &read, &rd);
    assert_int_equal(se.err, BT_E_NOT_SENT);
    assert_int_equal(se.attempts, 0);
    assert_true(se.unsent);
    assert_int_equal(rd.err, BT_OK);
    assert_int_equal(rd.status, 200);
    gate_open = 1;
    assert_int_equal(peer_count(fx, "g1"), 0);
    bt_http_stats_t st;
    bt_http_get_stats(fx->http, &st);
    assert_int_equal(st.not_sent, 1);
}

/* A throttled create is retried only while the gate is open: here it
 * closes during the backoff, and the retry never leaves. */
static void gate_closing_stops_a_retry(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    gate_open = 1;
    bt_http_set_gate(fx->http, gate, NULL);
    bt_http_request_t req = {.method = "POST", .url = url("/seq?t=g3&codes=429,200&ra=1"),
                             .body = "{}", .body_len = 2, .side_effect = 1,
                             .backoff_base_ms = 10};
    send_req(fx, &req, &g);
    wait_n(fx, &gate_asked, gate_asked + 1, 10); /* the first attempt went */
    idle_for(fx, 0.3);
    gate_open = 0; /* closes during the 1 s Retry-After */
    wait_n(fx, &g.n, 1, 10);
    assert_int_equal(g.err, BT_E_NOT_SENT);
    assert_true(g.unsent);  /* a 429 did nothing, the retry was never sent */
    gate_open = 1;
    assert_int_equal(peer_count(fx, "g3"), 1);
}

/* After a 5xx a create may have happened: a refused retry is "unknown". */
static void refused_retry_after_5xx_is_unknown(void **state)
{
    fixture_t *fx = *state;
    got_t g = {0};
    gate_open = 1;
    bt_http_set_gate(fx->http, gate, NULL);
    bt_http_request_t req = {.method = "POST", .url = url("/seq?t=g4&codes=503,200&ra=1"),
                             .body = "{}", .body_len = 2, .side_effect = 1, .idempotent = 1,
                             .backoff_base_ms = 10};
    send_req(fx, &req, &g);
    idle_for(fx, 0.3);
    gate_open = 0;
    wait_n(fx, &g.n, 1, 10);
    assert_int_not_equal(g.err, BT_E_NOT_SENT);
    assert_false(g.unsent);
    gate_open = 1;
}

/* bt_http_gate_closed: a create waiting for a connection is answered "not
 * sent" at once; a read waiting behind it goes on. */
static void gate_closed_cuts_queued_side_effects(void **state)
{
    fixture_t *fx = *state;
    got_t slow = {0}, create = {0}, read = {0};
    bt_http_free(fx->http);
    assert_int_equal(bt_http_new(fx->loop, &(bt_http_opts_t){.max_connections = 1}, &fx->http),
                     BT_OK);
    gate_open = 1;
    bt_http_set_gate(fx->http, gate, NULL);
    /* url() keeps two at a time: send each as it is made */
    bt_http_request_t r1 = {.method = "GET", .url = url("/slow?ms=700"), .idempotent = 1};
    send_req(fx, &r1, &slow);
    bt_http_request_t r2 = {.method = "POST", .url = url("/seq?t=g5&codes=200"), .body = "{}",
                            .body_len = 2, .side_effect = 1};
    send_req(fx, &r2, &create);
    bt_http_request_t r3 = {.method = "GET", .url = url("/seq?t=g6&codes=200"), .idempotent = 1};
    send_req(fx, &r3, &read);
    idle_for(fx, 0.1);
    gate_open = 0;
    assert_int_equal(bt_http_gate_closed(fx->http, 0), 1);
    assert_int_equal(create.n, 0); /* from the loop, not from inside */
    wait_n(fx, &create.n, 1, 5);
    assert_int_equal(create.err, BT_E_NOT_SENT);
    assert_true(create.unsent);
    assert_int_equal(slow.n, 0); /* still on its way */
    wait_n(fx, &read.n, 1, 10);
    assert_int_equal(read.status, 200);
    assert_int_equal(slow.status, 200);
    gate_open = 1;
    assert_int_equal(peer_count(fx, "g5"), 0);
}

/* A create whose body is only partly written (the peer stopped reading)
 * is cut off: half a request is none. One wholly sent is left alone unless
 * told (the end of a drain), and is then of unknown outcome. */
static void gate_closed_cuts_half_written_requests(void **state)
{
    fixture_t *fx = *state;
    got_t half = {0}, whole = {0};
    size_t big = 32u << 20; /* more than both sides' socket buffers hold */
    char *body = malloc(big);
    assert_non_null(body);
    memset(body, 'x', big);
    gate_open = 1;
    bt_http_set_gate(fx->http, gate, NULL);
    bt_http_request_t r1 = {.method = "POST", .url = url("/stall?t=g7&ms=4000"), .body = body,
                            .body_len = big, .side_effect = 1, .timeout_ms = 10000};
    bt_http_request_t r2 = {.method = "POST", .url = url("/slow?ms=1500"), .body = "{}",
                            .body_len = 2, .side_effect = 1};
    send_req(fx, &r1, &half);
    send_req(fx, &r2, &whole);
    free(body);
    idle_for(fx, 0.8);
    gate_open = 0;
    assert_int_equal(bt_http_gate_closed(fx->http, 0), 1); /* the half-written one only */
    wait_n(fx, &half.n, 1, 5);
    assert_int_equal(half.err, BT_E_NOT_SENT);
    assert_true(half.unsent);
    assert_int_equal(whole.n, 0);
    assert_int_equal(bt_http_gate_closed(fx->http, 1), 1);
    wait_n(fx, &whole.n, 1, 5);
    assert_int_equal(whole.err, BT_E_CANCELLED);
    assert_false(whole.unsent);
    gate_open = 1;
}

/* A side effect's attempt is never shortened to what is left of the budget
 * (a read's is): it is answered, not left unknown. */
static void side_effects_get_their_whole_timeout(void **state)
{
    fixture_t *fx = *state;
    got_t se = {0}, rd = {0};
    bt_http_request_t create = {.method = "POST", .url = url("/slow?ms=600"), .body = "{}",
                                .body_len = 2, .side_effect = 1, .timeout_ms = 5000,
                                .retry_budget_ms = 200, .max_attempts = 1};
    bt_http_request_t read = {.method = "GET", .url = url("/slow?ms=600"), .idempotent = 1,
                              .timeout_ms = 5000, .retry_budget_ms = 200, .max_attempts = 1};
    call(fx, &create, &se);
    call(fx, &read, &rd);
    assert_int_equal(se.err, BT_OK);
    assert_int_equal(se.status, 200);
    assert_int_equal(rd.err, BT_E_TIMEOUT);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(success_from_the_loop),
        T(retry_after_seconds_is_honoured),
        T(retry_after_date_is_honoured),
        T(idempotent_5xx_is_retried),
        T(budget_spent_returns_the_last_answer),
        T(post_is_not_resent_after_5xx),
        T(aws_throttling_is_retried_when_asked),
        T(dropped_connection),
        T(refused_connection_is_retried_even_for_post),
        T(timeout_is_reported),
        T(body_cap),
        T(auth_and_headers),
        T(many_at_once),
        T(free_cancels_what_is_pending),
        T(queued_attempts_time_from_their_turn),
        T(budget_spent_in_the_queue_is_never_sent),
        T(gate_refuses_side_effects_only),
        T(gate_closing_stops_a_retry),
        T(refused_retry_after_5xx_is_unknown),
        T(gate_closed_cuts_queued_side_effects),
        T(gate_closed_cuts_half_written_requests),
        T(side_effects_get_their_whole_timeout),
    };
#undef T
    return cmocka_run_group_tests(tests, start_peer, stop_peer);
}
