/* Inside the Genie operators. Two halves:
 *  - the pure parts (src/ops/genie_json.c): ids, request bodies, response
 *    parsers. No I/O, so tests/unit/test_genie.c covers them without a
 *    server;
 *  - the request plumbing shared by genie_job (src/ops/genie.c) and
 *    genie_register_cluster (src/ops/genie_cluster.c). */
#ifndef BATON_OPS_GENIE_INT_H
#define BATON_OPS_GENIE_INT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "baton.pb-c.h"
#include "baton/http.h"
#include "baton/operator.h"

#define BT_GENIE_ID_LEN 36     /* a UUID in its 8-4-4-4-12 text form */
#define BT_GENIE_TAIL_BYTES 4096

/* A name-based UUID (RFC 4122 version 5, SHA-1) of "<cluster>/<kind>/<run key>"
 * in a fixed baton namespace. The baton cluster is part of the name because
 * two baton clusters (staging and production, say) may share one Genie and
 * have the same workflow and run ids; `kind` ("job", "cluster") keeps a job
 * and a cluster of one task run apart. out gets 36 characters and a NUL. */
void bt_genie_uuid(const char *cluster, const char *kind, const char *run_key,
                   char out[BT_GENIE_ID_LEN + 1]);

/* The JobRequest of Genie 3 as JSON (malloc'd; NULL when out of memory).
 * commandArgs goes as a list (Genie 3.3+); the run key and the baton cluster
 * are added as tags "baton.run_key:<key>", "baton.cluster:<cluster>". */
char *bt_genie_job_body(const Baton__V1__GenieJob *j, const char *id, const char *cluster,
                        const char *run_key);

/* A Cluster resource: status defaults to UP; tags get the run key, the baton
 * cluster and "emr.cluster_id:<id>" when emr_cluster_id is set. */
char *bt_genie_cluster_body(const Baton__V1__GenieRegisterCluster *c, const char *id,
                            const char *cluster, const char *run_key);

/* [{"op":"replace","path":"/status","value":<status>}] */
char *bt_genie_status_patch(const char *status);

typedef enum bt_genie_phase {
    BT_GENIE_ACTIVE,     /* INIT, RESERVED, RESOLVED, CLAIMED, ACCEPTED, RUNNING */
    BT_GENIE_SUCCEEDED,
    BT_GENIE_FAILED,     /* FAILED, KILLED, INVALID */
    BT_GENIE_UNKNOWN,
} bt_genie_phase_t;

bt_genie_phase_t bt_genie_phase(const char *status);

/* {"status": "..."} of /api/v3/jobs/{id}/status. 0 and the status (known to
 * bt_genie_phase) in `status`; -1 with the reason in `err` otherwise. */
int bt_genie_parse_status(const char *body, size_t len, char *status, size_t slen, char *err,
                          size_t elen);

/* The message of a Genie error body: {"message": ...} (Genie's own, or
 * Spring's {"timestamp","status","error","message","path"}), else Spring's
 * "error", else the start of the body as text, else "HTTP <status>". */
void bt_genie_error_message(long status, const char *body, size_t len, char *out, size_t olen);

/* A page of GET /api/v3/clusters (HAL: {"_embedded": {"clusterList": [..]}},
 * no _embedded at all when empty). Collects up to `max` ids whose name is
 * exactly `name` (Genie's name filter is a SQL LIKE pattern, so '_' and '%'
 * in a name would match more). Returns the count, or -1 with `err`. */
int bt_genie_parse_clusters(const char *body, size_t len, const char *name, char **ids,
                            int max, char *err, size_t elen);

/* One Cluster resource (GET /api/v3/clusters/{id}): an object with a string
 * "id"; its "status" (when a string) goes to `status`. 0, or -1 and `err`. */
int bt_genie_parse_cluster(const char *body, size_t len, char *status, size_t slen, char *err,
                           size_t elen);

/* The last BT_GENIE_TAIL_BYTES of a log as safe text: invalid UTF-8 and
 * control characters other than \n and \t become '?' (logs are arbitrary
 * bytes; the record and batonctl's JSON need valid strings). malloc'd. */
char *bt_genie_tail_text(const char *body, size_t len);

/* RFC 3986 percent-encoding of everything but unreserved characters, for
 * ids and query values in URLs. malloc'd. */
char *bt_genie_url_escape(const char *s);

/* ------------------------------------------------------------ plumbing */

#define BT_GENIE_MAX_TEARDOWN 32   /* clusters one teardown task may change */

typedef enum bt_genie_call {
    BT_GENIE_SUBMIT,
    BT_GENIE_LOOKUP,
    BT_GENIE_POLL,
    BT_GENIE_CANCEL,
} bt_genie_call_t;

/* Where a request's chain stands: what the next HTTP answer is for. */
typedef enum bt_genie_step {
    BT_GENIE_ST_ANSWER,         /* no request: the answer is ready (timer) */
    BT_GENIE_ST_JOB_SUBMIT,
    BT_GENIE_ST_JOB_LOOKUP,
    BT_GENIE_ST_JOB_POLL,
    BT_GENIE_ST_JOB_STDOUT,
    BT_GENIE_ST_JOB_STDERR,
    BT_GENIE_ST_JOB_CANCEL,
    BT_GENIE_ST_CL_REGISTER,
    BT_GENIE_ST_CL_GET,
    BT_GENIE_ST_CL_SEARCH,
    BT_GENIE_ST_CL_PATCH,
} bt_genie_step_t;

/* The operators' one context (both bt_operator_t live in it). */
typedef struct bt_genie {
    bt_operator_t job_op, cluster_op;
    struct ev_loop *loop;
    bt_http_t *http;
    char *base;          /* genie_url without a trailing '/' */
    char *cluster;       /* the baton cluster: part of every derived id */
    char *userpwd;       /* "basic U:P" -> "U:P", or NULL */
    char *auth_header;   /* "bearer T" -> "Authorization: Bearer T", or NULL */
    int insecure;
    struct bt_genie_req *pending;  /* every call not answered yet */
} bt_genie_t;

/* One operator call: a short chain of HTTP requests, one answer at the end. */
typedef struct bt_genie_req {
    struct bt_genie_req *next, **pprev;
    bt_genie_t *g;       /* NULL once orphaned: the answer is dropped */
    bt_genie_step_t step;
    int is_job;
    bt_op_cb cb;
    void *arg;
    char id[256];        /* the job's or the cluster's id */
    char state[32];      /* Genie's word for the state, for the handle */
    uint64_t retry_after_ms;
    int tails;           /* failed job: log tails fetched (or given up on) */
    char *stdout_tail, *stderr_tail;
    char *name;          /* teardown: the cluster name to match exactly */
    char *patch;         /* teardown: the JSON Patch body */
    char *ids[BT_GENIE_MAX_TEARDOWN];
    int n_ids, next_id;
    ev_timer kick;       /* BT_GENIE_ST_ANSWER */
    bt_op_status_t ans_status;
    const char *ans_code;
    char ans_msg[256];
} bt_genie_req_t;

typedef struct bt_genie_send {
    const char *method, *path, *body, *content_type, *range;
    int idempotent;
    uint32_t max_attempts, budget_ms;   /* 0: the transport's defaults */
} bt_genie_send_t;

/* On g's pending list; NULL when out of memory. */
bt_genie_req_t *bt_genie_req_new(bt_genie_t *g, const bt_op_call_t *c, bt_genie_step_t step,
                                 int is_job);
void bt_genie_req_free(bt_genie_req_t *r);

/* The one way out of a call: unlink, answer, free. Strings may point into
 * r. SUCCESS with out_key set publishes one output. */
void bt_genie_finish(bt_genie_req_t *r, bt_op_status_t st, const char *code, const char *msg,
                     const char *detail, const char *out_key, const char *out_val);

/* The same, but from the loop: for answers known inside the operator call,
 * which must never call back itself. */
void bt_genie_answer_later(bt_genie_req_t *r, bt_op_status_t st, const char *code,
                           const char *msg);

/* FAILED with Genie's message: "remote_rejected" for a 4xx, "bad_response"
 * for any other unexpected status. */
void bt_genie_finish_rejected(bt_genie_req_t *r, const char *what, const bt_http_response_t *res);
/* FAILED "bad_response": the answer did not have the promised shape. */
void bt_genie_finish_bad(bt_genie_req_t *r, const char *reason);

/* o->path is appended to the base URL as it is (ids in it escaped). */
bt_err_t bt_genie_send(bt_genie_req_t *r, const bt_genie_send_t *o);

static inline int bt_genie_2xx(const bt_http_response_t *res)
{
    return res->status >= 200 && res->status < 300;
}

/* genie_register_cluster (genie_cluster.c) */
bt_err_t bt_genie_cluster_call(bt_genie_t *g, const bt_op_call_t *c, bt_genie_call_t kind);
void bt_genie_cluster_answer(bt_genie_req_t *r, const bt_http_response_t *res);

#endif
