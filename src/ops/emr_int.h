/* Private to src/ops/emr*.c: the family context, one operator call, and
 * what each file offers the others. The life of a call is op_call.c's. */
#ifndef BATON_OPS_EMR_INT_H
#define BATON_OPS_EMR_INT_H

#include <jansson.h>
#include <stdint.h>

#include "baton/aws_creds.h"
#include "baton/emr.h"
#include "ops/op_call.h"
#include "util/container.h"

#define EMR_TAG_RUN_KEY "baton:run-key"
#define EMR_MARKER_MAX 200                  /* the run key as written to EMR */
#define EMR_NAME_MAX 256                    /* EMR's limit on names and tag values */
#define EMR_ADOPT_SLACK_MS (5 * 60 * 1000)  /* clock skew allowed when listing */
#define EMR_ADOPT_MAX_PAGES 200
#define EMR_SUFFIX_LEN 22                   /* " [bt:" + 16 hex digits + "]" */
#define EMR_DEFAULT_IDLE_S 3600             /* AutoTerminationPolicy of a kept-alive cluster */

typedef struct emr emr_t;
typedef struct emr_call emr_call_t;

#define OP(x) BATON__V1__TASK_SPEC__OPERATOR_##x
#define SENSOR_TICK_MS 5000 /* sensors are asked this often, then gated */

/* A sensor's next real Describe, by run key (see emr_start() in emr.c). */
typedef struct gate {
    struct gate *next;
    char *key;
    int64_t next_ms;
    char state[32];
} gate_t;

/* The family: fam.url is the configured region's endpoint. */
struct emr {
    opc_family_t fam;
    bt_aws_creds_t *creds;
    char *region;            /* the configured (default) region */
    uint64_t poll_ms;
    gate_t *gates;
};

/* One operator call (the core's part in `base`). It may take several EMR
 * requests (adoption pages through lists). */
struct emr_call {
    opc_call_t base;
    emr_t *e;
    char *marker;             /* the run key as tagged (<= EMR_MARKER_MAX) */
    int64_t started_ms;
    char region[40];
    char *endpoint;           /* the task's own region's endpoint, or NULL (the family's) */
    char *cluster_id, *step_id;
    char *name;               /* the user's cluster name, or the full step name */
    char *sent_name;          /* the cluster name as sent: name + suffix */
    char suffix[EMR_SUFFIX_LEN + 1];
    int wait;                 /* wait_until_ready / wait_for_completion */
    char **targets;           /* emr_wait_cluster */
    size_t ntargets;
    uint64_t gate_ms;         /* sensors: own poll interval */
    int has_master_dns;       /* DescribeCluster named the master */

    /* adoption */
    json_t *candidates;       /* cluster ids whose name matched */
    size_t cand_i;
    char *page_marker;
    unsigned pages;
    int kept;                 /* sweep: the twin kept is chosen */

    /* a job of the family's own (emr_reap.c): owned by the call */
    void *job;
    void (*job_free)(void *job);
};

static inline emr_call_t *emr_of(opc_call_t *c)
{
    return container_of(c, emr_call_t, base);
}

/* emr_call.c: requests and answers */
extern const opc_service_t emr_service;
/* Sends op with body (taken over, may be NULL on OOM) once credentials are
 * there; step gets the JSON object of a 2xx answer as c->base.reply
 * (anything else never gets there). An error means nothing was queued. */
bt_err_t emr_send(emr_call_t *c, const char *op, json_t *body, int idempotent, opc_step_fn step);
/* The same from inside a chain: a failure to send answers NOT_SENT. */
void emr_continue(emr_call_t *c, const char *op, json_t *body, int idempotent, opc_step_fn step);
/* Judges a Cluster object (DescribeCluster) or a Step/StepSummary object
 * for the call's operator, and answers. */
void emr_cluster_verdict(emr_call_t *c, const json_t *cluster);
void emr_step_verdict(emr_call_t *c, const json_t *step);

/* emr.c: the entry of every operator */
bt_err_t emr_start(opc_call_t *oc, const bt_op_call_t *call);

/* emr_adopt.c: lookup after a takeover, and (kind OPC_SWEEP) the
 * duplicate sweep, which walks the same lists */
bt_err_t emr_adopt_cluster(emr_call_t *c);
bt_err_t emr_adopt_step(emr_call_t *c);
/* Takes a list answer's Marker into c->page_marker and counts the page; 0
 * (the call answered bad_response) when the Marker repeats. */
int emr_take_marker(emr_call_t *c, const json_t *reply, const char *op);

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
