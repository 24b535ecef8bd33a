/* Private to the Livy operators: one operator call (which may chain
 * several HTTP requests before its one answer; its life is op_call.c's)
 * and the helpers livy_batch.c and livy_statement.c share (livy.c). */
#ifndef BATON_OPS_LIVY_INT_H
#define BATON_OPS_LIVY_INT_H

#include <jansson.h>
#include <stdint.h>

#include "baton/livy.h"
#include "ops/op_call.h"
#include "util/container.h"

#define LV_TEXT_MAX 4096       /* log tails and statement output kept in records */

/* `what` of a request whose step sees every outcome, trouble included (a
 * cleanup, a log tail: their trouble costs a note, not the answer). */
#define LV_ANY NULL

/* Whether a batch or session state is one Livy may answer a submission with. */
typedef int (*lv_known_fn)(const char *state);

typedef struct lv_call {
    opc_call_t base;
    int session;                /* an interactive session (else a batch) */
    char *stmt_code, *stmt_kind; /* livy_statement */
    int64_t id;                 /* batch or session id; -1: none yet */
    int64_t stmt_id;            /* statement id; -1: none yet */
    int64_t page_from;          /* lookup: the page asked for */
    lv_known_fn known;          /* submit: the states a new one may be in (NULL: any) */
    int log_tail_asked;         /* log: the second (tail) page was asked for */
} lv_call_t;

static inline lv_call_t *lv_of(opc_call_t *c)
{
    return container_of(c, lv_call_t, base);
}

/* The call's own part, from the dispatcher's call: batch or session, and
 * the ids of the stored handle (poll, cancel, sweep). */
lv_call_t *lv_call_init(opc_call_t *oc, const bt_op_call_t *call, int session);

/* Sends METHOD livy_url + path; the answer goes to `step`. body: JSON.
 * what: names the request in messages, or LV_ANY. */
bt_err_t lv_send(lv_call_t *c, const char *method, const char *body, opc_step_fn step,
                 const char *what, const char *path_fmt, ...) __attribute__((format(printf, 6, 7)));
/* lv_send from inside a step: a request that cannot be sent answers
 * NOT_SENT (opc_unsent). */
void lv_chain(lv_call_t *c, const char *method, const char *body, opc_step_fn step,
              const char *what, const char *path_fmt, ...) __attribute__((format(printf, 6, 7)));

/* A JSON object body, or NULL with bad_response set. */
json_t *lv_json(lv_call_t *c, const bt_http_response_t *res, const char *what);
/* The service's own words for a refusal: "msg", an HTML title, or text. */
void lv_refusal(const bt_http_response_t *res, char *buf, size_t len);
/* A whole number >= 0 under key, or -1. */
int64_t lv_json_id(const json_t *o, const char *key);
void lv_output_id(lv_call_t *c, const char *key, int64_t id);

/* submit: POSTs body (JSON, freed here; NULL: it could not be built) to
 * /batches or /sessions. The answer sets c->id and the state (a state
 * `known` refuses is a bad response; NULL: any will do) and RUNNING; a
 * name Livy already has is looked up and adopted. */
bt_err_t lv_submit(lv_call_t *c, char *body, lv_known_fn known);
/* lookup: finds the batch or session named after the run key, paging
 * through GET /batches or /sessions, and adopts it (RUNNING); none ->
 * NOT_FOUND.
 * sweep: pages through every batch or session, finds all named after the
 * run key, keeps one (the lowest id, i.e. the first created, while the
 * attempt runs, else the recorded one) and deletes the others that have
 * not ended; SUCCESS with the kept id and `duplicates`. */
bt_err_t lv_lookup(lv_call_t *c);
/* cancel: DELETE /batches|sessions/{id}; SUCCESS at once with no id. */
bt_err_t lv_delete(lv_call_t *c);
/* The step after DELETE /batches|sessions/{id}: 2xx and 404 are SUCCESS. */
void lv_deleted(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);
/* Puts the tail of GET /batches|sessions/{id}/log into the detail, then
 * answers with what is already set (a log that cannot be read is noted,
 * not turned into another failure). */
void lv_fetch_log_then_done(lv_call_t *c);

/* Keeps the last `max` bytes of text, starting on a UTF-8 boundary and,
 * when one is near, on a new line. Returns a pointer into text. */
const char *lv_tail(const char *text, size_t max);

/* The operators' starts (livy_batch.c, livy_statement.c). */
bt_err_t lv_batch_start(opc_call_t *oc, const bt_op_call_t *call);
bt_err_t lv_statement_start(opc_call_t *oc, const bt_op_call_t *call);

/* JSON building that notices invalid UTF-8 (json_string returns NULL). */
int lv_put_str(json_t *o, const char *key, const char *value);
int lv_put_strs(json_t *o, const char *key, char **values, size_t n);

#endif
