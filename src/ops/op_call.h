/* One operator call, from the operator entry to its one answer, for every
 * service family that speaks HTTP (EMR, Livy, Genie). Private to src/ops.
 *
 * The core (op_call.c) owns the life of a call:
 *  - the entries of bt_operator_t (submit, lookup, poll, cancel, sweep):
 *    it makes the call and hands it to the operator's start function;
 *  - the list of calls in flight, and orphaning: when the family is freed
 *    while a call's request is in flight, the call is detached and freed
 *    when the transport calls back (at the latest from bt_http_free, with
 *    BT_E_CANCELLED), without an answer; every other call is freed at once;
 *  - the answer, exactly once: never from inside the operator entry (an
 *    answer decided there goes out from a zero timer), built into a
 *    bt_op_result_t from what the call holds;
 *  - requests on the shared transport (baton/http.h), each answer routed to
 *    the step the call carries for the request in flight;
 *  - trouble: no answer, 429, 5xx and what the service calls throttling are
 *    BT_OP_TRANSIENT, or BT_OP_NOT_SENT when the response says `unsent`
 *    (nothing can have taken effect), worded by the service and logged as
 *    "<name>: <run key>: <message>; will ask again"; a request that cannot
 *    be sent at all from inside a chain is BT_OP_NOT_SENT too;
 *  - the bookkeeping of a duplicate sweep: the twins found, the one kept,
 *    the next to cancel, the count.
 *
 * A service keeps its request and response code and supplies an
 * opc_service_t (its hooks) and one opc_op_def_t per operator (its start
 * function). Its call type embeds opc_call_t as its first member `base`,
 * its family type embeds opc_family_t likewise.
 *
 * Ownership: a step either answers (opc_done, opc_finish, opc_fail) or
 * sends the next request (opc_send; opc_unsent when it cannot go out).
 * After an answer the call is gone: a step touches it no more. */
#ifndef BATON_OPS_OP_CALL_H
#define BATON_OPS_OP_CALL_H

#include <ev.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "baton/config.h"
#include "baton/http.h"
#include "baton/operator.h"

typedef enum opc_kind { OPC_SUBMIT, OPC_LOOKUP, OPC_POLL, OPC_CANCEL, OPC_SWEEP } opc_kind_t;

typedef struct opc_service opc_service_t;
typedef struct opc_family opc_family_t;
typedef struct opc_call opc_call_t;

/* The function that handles the answer to the request in flight. Unless
 * the request was sent with `any`, err is BT_OK and res an answer that is
 * not trouble (the core answered that). */
typedef void (*opc_step_fn)(opc_call_t *c, bt_err_t err, const bt_http_response_t *res);

/* An operator's start: what it needs from the spec and run copied into the
 * call (c->kind says which entry), then its first request sent or its
 * answer decided. An error means nothing was sent: the call is freed, the
 * entry returns the error and no answer comes. */
typedef bt_err_t (*opc_start_fn)(opc_call_t *c, const bt_op_call_t *oc);

/* One request. Strings are copied; `what` names it in messages and stays
 * readable as c->rq.what until the next request. */
typedef struct opc_req {
    const char *method;          /* "GET", "POST", "PATCH", "DELETE" */
    const char *what;            /* e.g. "RunJobFlow", "GET /batches/{id}/state" */
    const char *path;            /* appended to c->url as it is */
    const char *body;            /* NULL: none */
    const char *content_type;    /* NULL: no Content-Type */
    const char *header;          /* one more "Name: value", or NULL */
    int idempotent;              /* the transport may resend it after an unknown outcome */
    int side_effect;             /* it changes remote state: sent only through the gate */
    uint32_t timeout_ms, max_attempts, budget_ms; /* 0: the transport's defaults */
    size_t max_body;             /* 0: the transport's default */
    int any;                     /* the step sees every outcome, trouble included */
} opc_req_t;

/* What a preparation adds to the request it prepared (SigV4, a token). */
typedef struct opc_auth {
    const char *aws_sigv4, *aws_access_key, *aws_secret_key;
    const char *header;          /* one more header, or NULL */
} opc_auth_t;

struct opc_service {
    const char *name;            /* "emr", "livy", "genie": the log prefix */
    size_t call_size;            /* the service's call type, opc_call_t first */
    /* NULL, or an asynchronous step before each request is sent (EMR: the
     * credentials). BT_OK: it later calls opc_prepared(c, ...) or answers
     * the call, exactly once; an error: nothing was started. */
    bt_err_t (*prepare)(opc_call_t *c);
    /* NULL, or whether an answer that is not 429 or 5xx is throttling too */
    int (*throttled)(const bt_http_response_t *res);
    /* NULL, or how every answer that is not trouble is read before its step
     * (unless the request was sent with `any`): the JSON the step works on
     * (c->reply), or NULL when the answer was the call's end and it is
     * answered already (EMR: a 4xx verdict, a body that is no JSON object). */
    json_t *(*parse)(opc_call_t *c, const bt_http_response_t *res);
    /* Words the message of a trouble answer (no answer, 429, 5xx, throttling). */
    void (*trouble)(opc_call_t *c, bt_err_t err, const bt_http_response_t *res, char *msg,
                    size_t len);
    /* Right before the answer: the handle (h is initialised: no ids, the
     * call's URL, its state; set r->handle = h to send it) and outputs
     * computed at the end (r->output_*, r->n_outputs). May be NULL. */
    void (*result)(opc_call_t *c, bt_op_result_t *r, Baton__V1__RemoteHandle *h);
    /* Frees what the service's part of a call holds (never the call). */
    void (*call_free)(opc_call_t *c);
    /* Frees the service's family (after its calls are gone; never f->url
     * or f->userpwd, which the core frees). */
    void (*family_free)(opc_family_t *f);
};

typedef struct opc_op_def {
    const char *name;            /* the YAML key */
    Baton__V1__TaskSpec__OperatorCase which;
    uint64_t poll_interval_ms;
    int sweeps;                  /* has a duplicate sweep (else bt_operator_t.sweep is NULL) */
    opc_start_fn start;
} opc_op_def_t;

#define OPC_MAX_OPS 5
#define OPC_MAX_OUT 10           /* outputs the core keeps for a call */
#define OPC_SWEEP_MAX 32         /* twins one sweep may look at */

/* One operator of a family; bt_operator_t.ctx points here. */
typedef struct opc_op {
    bt_operator_t op;
    opc_family_t *fam;
    opc_start_fn start;
} opc_op_t;

struct opc_family {
    const opc_service_t *svc;
    struct ev_loop *loop;
    bt_http_t *http;
    char *url;                   /* the base URL, no trailing '/' (owned) */
    char *userpwd;               /* basic auth "user:password" or NULL (owned) */
    char *auth_header;           /* "Authorization: Bearer ..." or NULL (owned) */
    const bt_config_t *cfg;      /* the daemon's (outlives us): named credentials */
    const char *headers[4];      /* sent with every request, NULL-terminated (the service's) */
    int insecure;                /* skip TLS verification (tests against fakes) */
    int aws_throttling;          /* the transport treats AWS Throttling* bodies as 429 */
    opc_op_t ops[OPC_MAX_OPS];
    size_t nops;
    opc_call_t *calls;           /* every call still owing its answer */
};

/* One resource carrying the run key, found by a sweep. */
typedef struct opc_twin {
    char id[72];
    int64_t created_ms;          /* orders them: the first created is kept */
    char state[32];
} opc_twin_t;

struct opc_call {
    /* set by the core; read by the service */
    opc_family_t *fam;           /* NULL once orphaned */
    const opc_service_t *svc;
    opc_kind_t kind;
    Baton__V1__TaskSpec__OperatorCase which;
    char *run_key;               /* never NULL ("" when the run has none) */
    int keep_first;              /* the attempt runs: a sweep keeps the first created */
    const char *url;             /* requests go below it: fam->url unless the service
                                  * points it elsewhere (memory of its own), or
                                  * opc_use_endpoint did (own_url) */
    char *own_url;               /* the task's or the handle's endpoint */
    char *userpwd, *auth_header; /* the task's own credential (then not fam's), or NULL */
    opc_req_t rq;                /* the request in flight */
    json_t *reply;               /* svc->parse's reading of the last answer, held by
                                  * the call until the next answer or its end */

    /* the answer being built (opc_set*, opc_output) */
    bt_op_status_t status;       /* TRANSIENT until something better is known */
    char *code, *msg, *detail, *state;
    uint64_t retry_after_ms;
    unsigned duplicates;         /* sweep: twins cancelled */
    size_t n_out;
    char *out_keys[OPC_MAX_OUT], *out_vals[OPC_MAX_OUT];

    /* sweep: every resource with the run key (opc_twin_*) */
    opc_twin_t *twins;
    size_t ntwins, twin_i;

    /* the core's own */
    opc_call_t *prev, *next;     /* fam->calls */
    int where;                   /* idle (or preparing), in HTTP, answer queued */
    int in_entry;                /* inside the operator entry: answers wait for the timer */
    ev_timer later;
    bt_op_cb cb;
    void *arg;
    opc_step_fn step;
};

/* ------------------------------------------------------------ the family */

/* Sets f's core part (f->url and the rest are filled by the service). */
void opc_family_init(opc_family_t *f, const opc_service_t *svc, struct ev_loop *loop,
                     bt_http_t *http);
/* Owned copy of url without trailing '/' (at least `keep` characters stay);
 * NULL when out of memory. */
char *opc_url_trim(const char *url, size_t keep);
/* Appends one operator per def to out[*n..] (the caller checked the room). */
void opc_family_publish(opc_family_t *f, const opc_op_def_t *defs, size_t ndefs,
                        bt_operator_t **out, size_t *n);
/* Abandons every call (see the top), then svc->family_free. */
void opc_family_free(opc_family_t *f);
/* The family of `svc` among ops[0..n), or NULL. */
opc_family_t *opc_family_find(bt_operator_t *const *ops, size_t n, const opc_service_t *svc);
/* A call made as an operator entry makes it, with `start` for the
 * operator's start: for the family's own jobs (the EMR orphan reaper),
 * whose oc carries a spec and run of their own making. */
bt_err_t opc_start(opc_family_t *f, opc_kind_t kind, const bt_op_call_t *oc, opc_start_fn start);
/* Reads an auth setting: "basic USER:PASSWORD" (-> curl's userpwd) or, when
 * bearer_ok, "bearer TOKEN" (-> an Authorization header); ""/NULL: none.
 * BT_E_CONFIG for anything else (a CR or LF included). */
bt_err_t opc_parse_auth(const char *auth, int bearer_ok, char **userpwd, char **header);
/* Frees the families of `svc` among ops[0..n) and sets their slots to NULL;
 * other operators are left alone. */
void opc_operators_free(bt_operator_t **ops, size_t n, const opc_service_t *svc);

/* Points the call at the task's own endpoint (docs/operators.md,
 * "Endpoints"): the handle's when the call has one (poll, cancel, sweep: the
 * resource lives where it was created, whatever the settings say today),
 * else `url` (the rendered `url:`), else the family's; and `auth`, the name
 * of a credential in batond.yaml ("": the family's). 0, or -1 with the call
 * answered FAILED bad_spec (no URL at all, a URL that is not http(s), an
 * unknown credential): the start then returns BT_OK. */
int opc_use_endpoint(opc_call_t *c, const bt_op_call_t *call, const char *url, const char *auth,
                     int bearer_ok);

/* ------------------------------------------------------------ requests */

/* Sends rq (after svc->prepare, when there is one); its answer goes to
 * step. An error: nothing was sent, and the call is as it was. */
bt_err_t opc_send(opc_call_t *c, const opc_req_t *rq, opc_step_fn step);
/* The end of a chain whose next request could not be sent (e, the error
 * of opc_send or of building the request): NOT_SENT, "<what>: cannot
 * send: <why>", answered. */
void opc_unsent(opc_call_t *c, const char *what, bt_err_t e);
/* The end of svc->prepare: sends the request with auth's additions; one
 * that cannot be sent answers NOT_SENT. */
void opc_prepared(opc_call_t *c, const opc_auth_t *auth);

/* ------------------------------------------------------------ the answer */

void opc_set(opc_call_t *c, bt_op_status_t st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void opc_set_state(opc_call_t *c, const char *state);  /* NULL: none */
void opc_set_detail(opc_call_t *c, const char *text);  /* NULL: none */
void opc_output(opc_call_t *c, const char *key, const char *value);
void opc_strset(char **slot, const char *v);            /* free *slot, copy v (NULL: NULL) */

/* Answers with what the call holds, then frees it; inside the entry, from
 * a zero timer instead. */
void opc_done(opc_call_t *c);
void opc_finish(opc_call_t *c, bt_op_status_t st);      /* status, then opc_done */
void opc_fail(opc_call_t *c, const char *code, const char *fmt, ...) /* FAILED */
    __attribute__((format(printf, 3, 4)));
/* The answer is decided (it waits for the timer). */
int opc_answered(const opc_call_t *c);

/* ------------------------------------------------------------ sweeps */

/* Notes a resource carrying the run key (beyond OPC_SWEEP_MAX: ignored; the
 * first ones are enough to act on). */
void opc_twin_add(opc_call_t *c, const char *id, int64_t created_ms, const char *state);
/* The twin kept: the first created while the attempt runs, else the
 * recorded one when it is among them; logs when that is not `recorded`.
 * NULL when none was found. Starts opc_twin_next over. */
const opc_twin_t *opc_twin_keep(opc_call_t *c, const char *recorded);
/* The next twin to cancel: not the kept one, not one whose state `ended`
 * says is over. Counts it in c->duplicates and logs it (`noun`: "cluster",
 * "batch", ...). NULL when none is left. */
const opc_twin_t *opc_twin_next(opc_call_t *c, const char *kept, int (*ended)(const char *),
                                const char *noun);

#endif
