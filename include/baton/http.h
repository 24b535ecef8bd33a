/* HTTP on the daemon's libev loop: one libcurl multi handle driven through
 * CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION (curl's evhiperfifo
 * pattern), never a blocking call, thousands of requests in flight without
 * threads.
 *
 * Contract
 *  - bt_http_request() queues a request and returns; the callback runs
 *    exactly once, later, from the loop (never from inside the call). A
 *    request that cannot be queued returns an error and gets no callback.
 *  - Connections are reused (one multi handle, keep-alive); TLS peers are
 *    verified unless the request says otherwise (CA bundle configurable);
 *    proxies come from the usual environment variables (curl's default).
 *  - Retries: throttling (429, and 400 with an AWS "Throttling*" __type when
 *    the caller sets `aws_throttling`), 5xx, and transport errors (refused,
 *    reset, timed out) are retried with exponential backoff and full jitter,
 *    honouring Retry-After (seconds or HTTP date), until the request's retry
 *    budget (attempts and total time) is spent. Only requests marked
 *    `idempotent` are retried after a transport error or 5xx that may have
 *    reached the server; a 429 is always safe to retry.
 *  - The response is handed over whole: status, headers of interest, body
 *    (capped at max_body bytes: a larger body is an error, not a truncation).
 *  - Side effects (requests marked `side_effect`: creates, cancels) are sent
 *    only while the gate (bt_http_set_gate) allows it, asked for each
 *    attempt right before its first byte goes on the wire
 *    (CURLOPT_PREREQFUNCTION): a queued request, a retry after throttling or
 *    a 5xx, all go through it. A refused one ends with BT_E_NOT_SENT, a
 *    definite outcome: nothing of it reached the service. Each attempt of a
 *    side effect gets its whole timeout (never what is left of the budget:
 *    a create sent with milliseconds to live times out after it reached the
 *    service, and its outcome is then unknown); the budget bounds how long
 *    it may wait for a connection and between attempts.
 *  - A fence stops writes, not calls, so the owner of the gate says when it
 *    closes (bt_http_gate_closed): side effects waiting or backing off are
 *    answered BT_E_NOT_SENT, and one whose bytes are only partly written is
 *    cut off (its connection closed: a service never acts on half a
 *    request). Bytes already handed to the kernel are beyond recall.
 */
#ifndef BATON_HTTP_H
#define BATON_HTTP_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "baton/err.h"

typedef struct bt_http bt_http_t;

typedef struct bt_http_opts {
    const char *ca_bundle;        /* NULL: curl's default */
    uint32_t max_connections;     /* per host; default 8 */
    uint32_t max_total;           /* default 256 */
} bt_http_opts_t;

bt_err_t bt_http_new(struct ev_loop *loop, const bt_http_opts_t *opts, bt_http_t **out);
/* Fails every pending request with BT_E_CANCELLED (callbacks run inside this
 * call), then frees. Accepts NULL. */
void bt_http_free(bt_http_t *h);

typedef struct bt_http_response {
    long status;                  /* 0 when no response arrived */
    const char *body;             /* NUL-terminated; valid during the callback */
    size_t body_len;
    const char *content_type;     /* may be NULL */
    const char *error;            /* transport error text when status == 0 */
    uint32_t attempts;            /* how many times it was sent; 0 with BT_E_TIMEOUT:
                                   * the retry budget ran out while it waited
                                   * for a connection, and it was never sent */
    uint64_t retry_after_ms;      /* the last answer's Retry-After (seconds or date); 0: none */
    int unsent;                   /* no attempt can have taken effect: none was sent,
                                   * each one sent was refused before any work (429,
                                   * throttling), or was cut off half-written */
} bt_http_response_t;

/* err: BT_OK when a response arrived (any status, after retries ran out),
 * BT_E_HTTP for transport failure, BT_E_TIMEOUT, BT_E_CANCELLED, and for
 * side effects BT_E_NOT_SENT (the gate refused, or the budget ran out before
 * an attempt could start). */
typedef void (*bt_http_cb)(bt_err_t err, const bt_http_response_t *res, void *arg);

typedef struct bt_http_request {
    const char *method;           /* "GET", "POST", "DELETE", "PUT" */
    const char *url;
    const char *const *headers;   /* "Name: value", NULL-terminated; may be NULL */
    const char *body;             /* may be NULL */
    size_t body_len;
    const char *aws_sigv4;        /* e.g. "aws:amz:us-east-1:elasticmapreduce"; NULL: none */
    const char *aws_access_key;   /* with aws_sigv4 */
    const char *aws_secret_key;
    const char *userpwd;          /* basic auth "user:password"; NULL: none */
    uint32_t timeout_ms;          /* per attempt; default 30000 */
    uint32_t max_attempts;        /* default 5 (1 = no retry) */
    uint32_t retry_budget_ms;     /* total time for all attempts; default 120000 */
    uint32_t backoff_base_ms;     /* default 200 */
    uint32_t backoff_max_ms;      /* default 20000 */
    int idempotent;               /* safe to resend after an unknown outcome */
    int side_effect;              /* changes remote state: sent only through the gate */
    int aws_throttling;           /* treat AWS throttling error bodies as 429 */
    int insecure;                 /* skip TLS verification (tests against fakes only) */
    size_t max_body;              /* default 8 MiB */
} bt_http_request_t;

/* Copies everything it needs from req; returns at once. */
bt_err_t bt_http_request(bt_http_t *h, const bt_http_request_t *req, bt_http_cb cb, void *arg);

/* The gate for side effects: may_send(arg) is asked right before each
 * attempt of a side-effecting request is sent; 0 refuses it. NULL (the
 * default): always send. */
void bt_http_set_gate(bt_http_t *h, int (*may_send)(void *arg), void *arg);

/* The gate has (or may have) closed. Side effects that wait for a
 * connection or for their next attempt, and those whose request is only
 * partly written, are stopped here and answered from the loop: BT_E_NOT_SENT
 * when no earlier attempt of theirs may have taken effect. With `sent_too`,
 * side effects already wholly sent are cut off as well, their outcome
 * unknown (BT_E_CANCELLED, unsent 0): the end of a drain that could not
 * wait for them any longer. Returns how many were stopped. */
size_t bt_http_gate_closed(bt_http_t *h, int sent_too);

typedef struct bt_http_stats {
    uint64_t requests, attempts, retries, in_flight;
    uint64_t not_sent;            /* side effects the gate (or the budget) kept back */
    uint64_t cut_off;             /* side effects stopped by bt_http_gate_closed */
} bt_http_stats_t;
void bt_http_get_stats(const bt_http_t *h, bt_http_stats_t *out);

#endif
