/* Private to src/ops/emr*.c: the family context, one operator call, and
 * what each file offers the others. */
#ifndef BATON_OPS_EMR_INT_H
#define BATON_OPS_EMR_INT_H

#include <jansson.h>
#include <stdint.h>

#include "baton/aws_creds.h"
#include "baton/emr.h"

#define EMR_TAG_RUN_KEY "baton:run-key"
#define EMR_MARKER_MAX 200                  /* the run key as written to EMR */
#define EMR_NAME_MAX 256                    /* EMR's limit on names and tag values */
#define EMR_ADOPT_SLACK_MS (5 * 60 * 1000)  /* clock skew allowed when listing */
#define EMR_ADOPT_MAX_PAGES 200
#define EMR_SUFFIX_LEN 22                   /* " [bt:" + 16 hex digits + "]" */
#define EMR_SWEEP_MAX 32                    /* twins one sweep may look at */

typedef struct emr emr_t;
typedef struct emr_call emr_call_t;

#define OP(x) BATON__V1__TASK_SPEC__OPERATOR_##x
#define SENSOR_TICK_MS 5000 /* sensors are asked this often, then gated */

/* where a call is: what has to happen to it when the family is freed */
enum { W_NONE, W_CREDS, W_HTTP, W_QUEUED };

/* A sensor's next real Describe, by run key (see entry() in emr.c). */
typedef struct gate {
    struct gate *next;
    char *key;
    int64_t next_ms;
    char state[32];
} gate_t;

struct emr {
    bt_operator_t ops[5];
    struct ev_loop *loop;
    bt_http_t *http;
    bt_aws_creds_t *creds;
    char *region, *endpoint; /* the configured (default) region and its endpoint */
    int insecure;
    uint64_t poll_ms;
    emr_call_t *calls;       /* live calls, except queued ones */
    emr_call_t *queue;       /* answers waiting for the kick (linked by next) */
    ev_timer kick;
    gate_t *gates;
};

/* Called with the JSON object of a 2xx answer; errors never get here. */
typedef void (*emr_next_fn)(emr_call_t *c, json_t *reply);

enum { EMR_K_SUBMIT, EMR_K_LOOKUP, EMR_K_POLL, EMR_K_CANCEL, EMR_K_SWEEP };

/* One resource carrying the run key, found by a sweep. */
typedef struct emr_twin {
    char id[72];
    int64_t created_ms;
    char state[32];
} emr_twin_t;

/* One operator call, from the entry point to its one answer. It may take
 * several EMR requests (adoption pages through lists). */
struct emr_call {
    emr_t *e;                 /* NULL: the family is gone, drop everything */
    emr_call_t *next, *prev;  /* e->calls */
    int where;                /* W_* */
    int in_entry;             /* inside the operator entry: answers are queued */
    int kind;                 /* EMR_K_* */
    Baton__V1__TaskSpec__OperatorCase which;
    bt_op_cb cb;
    void *arg;

    char *run_key, *marker;   /* marker: the run key as tagged (<= EMR_MARKER_MAX) */
    int64_t started_ms;
    char region[40];
    char *endpoint;           /* base URL, no trailing '/' */
    char *cluster_id, *step_id;
    char *name;               /* the user's cluster name, or the full step name */
    char *sent_name;          /* the cluster name as sent: name + suffix */
    char suffix[EMR_SUFFIX_LEN + 1];
    int wait;                 /* wait_until_ready / wait_for_completion */
    char **targets;           /* emr_wait_cluster */
    size_t ntargets;
    uint64_t gate_ms;         /* sensors: own poll interval */

    /* the request being sent */
    const char *op;
    json_t *body;
    int idempotent;
    emr_next_fn next_fn;

    /* adoption */
    json_t *candidates;       /* cluster ids whose name matched */
    size_t cand_i;
    char *page_marker;
    unsigned pages;

    /* sweep: every resource with our key, the one kept, those cancelled */
    emr_twin_t twins[EMR_SWEEP_MAX];
    size_t ntwins, cancel_i;
    int keep_first;           /* the attempt runs: keep the first created */
    unsigned cancelled;

    /* the answer */
    bt_op_status_t st;
    char *code, *msg, *detail, *state;
    uint64_t retry_after_ms;  /* TRANSIENT: the service's Retry-After */
};

/* emr_call.c */
void emr_call_free(emr_call_t *c);
void emr_call_unlink(emr_call_t *c);
void emr_set_str(char **slot, const char *v);
void emr_on_kick(struct ev_loop *loop, ev_timer *t, int revents);
/* Sends op with body (taken over, may be NULL on OOM) once credentials are
 * there; next gets the 2xx answer. An error means nothing was queued. */
bt_err_t emr_send(emr_call_t *c, const char *op, json_t *body, int idempotent, emr_next_fn next);
/* The same from inside a chain: a failure to send answers TRANSIENT. */
void emr_continue(emr_call_t *c, const char *op, json_t *body, int idempotent, emr_next_fn next);
void emr_finish(emr_call_t *c, bt_op_status_t st);
void emr_fail(emr_call_t *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void emr_set_state(emr_call_t *c, const char *state);
/* Judges a Cluster object (DescribeCluster) or a Step/StepSummary object
 * for the call's operator, and answers. */
void emr_cluster_verdict(emr_call_t *c, const json_t *cluster);
void emr_step_verdict(emr_call_t *c, const json_t *step);

/* emr_adopt.c: lookup after a takeover, and (kind EMR_K_SWEEP) the
 * duplicate sweep, which walks the same lists */
bt_err_t emr_adopt_cluster(emr_call_t *c);
bt_err_t emr_adopt_step(emr_call_t *c);

/* emr_json.c */
void emr_key_marker(const char *run_key, char out[EMR_MARKER_MAX + 1]);
void emr_cluster_suffix(const char *run_key, char out[EMR_SUFFIX_LEN + 1]);
void emr_cluster_name(const char *name, const char *run_key, char *out, size_t len);
void emr_step_name(const char *name, const char *marker, char *out, size_t len);
json_t *emr_run_job_flow_body(const Baton__V1__EmrCreateCluster *s, const char *name,
                              const char *marker, char *err, size_t errlen);
json_t *emr_add_steps_body(const Baton__V1__EmrAddStep *s, const char *step_name, char *err,
                           size_t errlen);

typedef struct emr_error {
    char type[96];      /* the __type's short name ("ValidationException"), or "" */
    char message[512];
} emr_error_t;
void emr_parse_error(const char *body, size_t len, emr_error_t *out);
int emr_is_throttling(const char *type);
int emr_is_expired_token(const char *type);

const char *emr_str(const json_t *obj, const char *key); /* a string member, or NULL */
int emr_cluster_state_known(const char *s);
int emr_cluster_state_terminal(const char *s);   /* TERMINATED, TERMINATED_WITH_ERRORS */
int emr_step_state_known(const char *s);
int emr_step_state_failed(const char *s);        /* CANCELLED, FAILED, INTERRUPTED */
void emr_cluster_reason(const json_t *status, char *out, size_t len);
void emr_step_failure(const json_t *status, char *out, size_t len);
const char *emr_cluster_tag(const json_t *cluster, const char *key);
int64_t emr_created_ms(const json_t *status);    /* Status.Timeline.CreationDateTime, or -1 */

#endif
