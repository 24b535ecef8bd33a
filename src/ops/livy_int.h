/* Private to the Livy operators: the family context, one operator call
 * (which may chain several HTTP requests before its one answer), and the
 * helpers livy_batch.c and livy_statement.c share (livy.c). */
#ifndef BATON_OPS_LIVY_INT_H
#define BATON_OPS_LIVY_INT_H

#include <jansson.h>
#include <stdint.h>

#include "baton/livy.h"

#define LV_MAX_OUT 4
#define LV_TEXT_MAX 4096       /* log tails and statement output kept in records */

typedef struct lv lv_t;
typedef struct lv_call lv_call_t;

/* The next step of a call: what to do with the answer to its request. */
typedef void (*lv_step_fn)(lv_call_t *c, bt_err_t err, const bt_http_response_t *res);
/* A step that needs no answer (after a lookup found the work). */
typedef void (*lv_then_fn)(lv_call_t *c);
/* Whether a batch or session state is one Livy may answer a submission with. */
typedef int (*lv_known_fn)(const char *state);

struct lv {
    bt_operator_t batch, statement;
    struct ev_loop *loop;
    bt_http_t *http;
    char *url;                  /* livy.url without a trailing '/' */
    char *userpwd;              /* from livy.auth "basic USER:PASS", or NULL */
    int insecure;
    lv_call_t *calls;           /* every call still owing its answer */
};

typedef enum lv_op { LV_SUBMIT, LV_LOOKUP, LV_POLL, LV_CANCEL, LV_SWEEP } lv_op_t;

#define LV_SWEEP_MAX 32          /* twins one sweep may look at */

struct lv_call {
    lv_call_t *prev, *next;
    lv_t *lv;                   /* NULL once the family is freed: drop the answer */
    lv_op_t op;
    int session;                /* an interactive session (else a batch) */
    int in_http;                /* a request is in flight; its answer frees an orphan */
    ev_timer later;             /* answers decided without a request */
    bt_op_cb cb;
    void *arg;
    lv_step_fn step;
    char *run_key;
    char *code, *kind;          /* livy_statement */
    int64_t id;                 /* batch or session id; -1: none yet */
    int64_t stmt_id;            /* statement id; -1: none yet */
    int64_t page_from;          /* lookup: the page asked for */
    lv_then_fn found;           /* lookup: what to do once id is known */
    lv_known_fn known;          /* submit: the states a new one may be in (NULL: any) */
    int log_tail_asked;         /* log: the second (tail) page was asked for */
    /* sweep: every batch or session with our name (ids rise with creation) */
    int64_t twin_ids[LV_SWEEP_MAX];
    char twin_states[LV_SWEEP_MAX][24];
    size_t ntwins, twin_i;
    int keep_first;             /* the attempt runs: keep the first created */
    unsigned cancelled;
    /* the answer being built */
    bt_op_status_t status;
    const char *error_code;
    char *message, *detail, *remote_state;
    uint64_t retry_after_ms;
    size_t n_out;
    char *keys[LV_MAX_OUT], *vals[LV_MAX_OUT];
};

/* A call for `op`, copying what it needs from the dispatcher's call. */
lv_call_t *lv_call_new(lv_t *lv, lv_op_t op, int session, const bt_op_call_t *call);
/* Frees a call that never answered (its first request could not be sent). */
void lv_call_abandon(lv_call_t *c);

/* Sends METHOD livy_url + path; the answer goes to `step`. body: JSON. */
bt_err_t lv_send(lv_call_t *c, const char *method, const char *body, lv_step_fn step,
                 const char *path_fmt, ...) __attribute__((format(printf, 5, 6)));
/* lv_send from inside a step: a request that cannot be sent ends the call
 * as TRANSIENT. */
void lv_chain(lv_call_t *c, const char *method, const char *body, lv_step_fn step,
              const char *path_fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers the dispatcher with what the call has built, then frees it. */
void lv_done(lv_call_t *c);
/* The same from the next loop iteration (never inside the operator call). */
void lv_done_later(lv_call_t *c);

/* Setters of the answer. */
void lv_set(lv_call_t *c, bt_op_status_t st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void lv_set_state(lv_call_t *c, const char *state);
void lv_set_detail(lv_call_t *c, const char *text);
void lv_output(lv_call_t *c, const char *key, const char *value);
void lv_output_id(lv_call_t *c, const char *key, int64_t id);

/* Throttling, 5xx and transport failures: sets TRANSIENT and returns 1.
 * `what` names the request for the message. */
int lv_trouble(lv_call_t *c, bt_err_t err, const bt_http_response_t *res, const char *what);
/* A JSON object body, or NULL with bad_response set. */
json_t *lv_json(lv_call_t *c, const bt_http_response_t *res, const char *what);
/* The service's own words for a refusal: "msg", an HTML title, or text. */
void lv_refusal(const bt_http_response_t *res, char *buf, size_t len);
/* A whole number >= 0 under key, or -1. */
int64_t lv_json_id(const json_t *o, const char *key);

/* The end of an operator entry point: a call whose first request could
 * not be sent (e != BT_OK) owes no answer and is freed. Returns e. */
bt_err_t lv_started(lv_call_t *c, bt_err_t e);

/* submit: POSTs body (JSON, freed here; NULL: it could not be built) to
 * /batches or /sessions. The answer sets c->id and the state (a state
 * `known` refuses is a bad response; NULL: any will do) and RUNNING; a
 * name Livy already has is looked up and adopted. */
bt_err_t lv_submit(lv_call_t *c, char *body, lv_known_fn known);
/* lookup: finds the batch or session named after the run key, paging
 * through GET /batches or /sessions, and adopts it (RUNNING); none ->
 * NOT_FOUND. */
bt_err_t lv_start_lookup(lv_t *lv, int session, const bt_op_call_t *call);
/* sweep: pages through every batch or session, finds all named after the
 * run key, keeps one (the lowest id, i.e. the first created, while the
 * attempt runs, else the recorded one) and deletes the others that have
 * not ended; SUCCESS with the kept id and `duplicates`. */
bt_err_t lv_start_sweep(lv_t *lv, int session, const bt_op_call_t *call);
/* cancel: the call, or NULL with *e set: BT_E_NOMEM, or BT_OK when there
 * is nothing to cancel (no id: answered SUCCESS from the loop). */
lv_call_t *lv_cancel_call(lv_t *lv, int session, const bt_op_call_t *call, bt_err_t *e);
/* The step after DELETE /batches|sessions/{id}: 2xx and 404 are SUCCESS. */
void lv_deleted(lv_call_t *c, bt_err_t err, const bt_http_response_t *res);
/* Puts the tail of GET /batches|sessions/{id}/log into the detail, then
 * answers with what is already set (a log that cannot be read is noted,
 * not turned into another failure). */
void lv_fetch_log_then_done(lv_call_t *c);

/* Keeps the last `max` bytes of text, starting on a UTF-8 boundary and,
 * when one is near, on a new line. Returns a pointer into text. */
const char *lv_tail(const char *text, size_t max);

/* The operator calls (livy_batch.c, livy_statement.c). */
bt_err_t bt_livy_batch_submit(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_batch_lookup(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_batch_poll(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_batch_cancel(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_batch_sweep(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_statement_sweep(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_statement_submit(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_statement_lookup(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_statement_poll(void *ctx, const bt_op_call_t *call);
bt_err_t bt_livy_statement_cancel(void *ctx, const bt_op_call_t *call);

/* JSON building that notices invalid UTF-8 (json_string returns NULL). */
int lv_put_str(json_t *o, const char *key, const char *value);
int lv_put_strs(json_t *o, const char *key, char **values, size_t n);

#endif
