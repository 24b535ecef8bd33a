/* Inside the Genie operators. Two halves:
 *  - the pure parts (src/ops/genie_json.c): ids, request bodies, response
 *    parsers. No I/O, so tests/unit/test_genie.c covers them without a
 *    server;
 *  - the calls of genie_job (src/ops/genie.c) and genie_register_cluster
 *    (src/ops/genie_cluster.c) on the operator-call core (op_call.h). */
#ifndef BATON_OPS_GENIE_INT_H
#define BATON_OPS_GENIE_INT_H

#include <ev.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "baton.pb-c.h"
#include "baton/http.h"
#include "baton/operator.h"

#include "ops/op_call.h"
#include "util/container.h"

#define GENIE_ID_LEN 36     /* a UUID in its 8-4-4-4-12 text form */
#define GENIE_TAIL_BYTES 4096

/* A name-based UUID (RFC 4122 version 5, SHA-1) of "<cluster>/<kind>/<run key>"
 * in a fixed baton namespace. The baton cluster is part of the name because
 * two baton clusters (staging and production, say) may share one Genie and
 * have the same workflow and run ids; `kind` ("job", "cluster") keeps a job
 * and a cluster of one task run apart. out gets 36 characters and a NUL. */
void genie_uuid(const char *cluster, const char *kind, const char *run_key,
                char out[GENIE_ID_LEN + 1]);

/* The JobRequest of Genie 3 as JSON (malloc'd; NULL when out of memory).
 * commandArgs goes as a list (Genie 3.3+); the run key and the baton cluster
 * are added as tags "baton.run_key:<key>", "baton.cluster:<cluster>". */
char *genie_job_body(const Baton__V1__GenieJob *j, const char *id, const char *cluster,
                     const char *run_key);

/* A Cluster resource: status defaults to UP; tags get the run key, the baton
 * cluster and "emr.cluster_id:<id>" when emr_cluster_id is set. */
char *genie_cluster_body(const Baton__V1__GenieRegisterCluster *c, const char *id,
                         const char *cluster, const char *run_key);

/* [{"op":"replace","path":"/status","value":<status>}] */
char *genie_status_patch(const char *status);

typedef enum genie_phase {
    GENIE_ACTIVE,     /* INIT, RESERVED, RESOLVED, CLAIMED, ACCEPTED, RUNNING */
    GENIE_SUCCEEDED,
    GENIE_FAILED,     /* FAILED, KILLED, INVALID */
    GENIE_UNKNOWN,
} genie_phase_t;

genie_phase_t genie_phase(const char *status);

/* {"status": "..."} of /api/v3/jobs/{id}/status. 0 and the status (known to
 * genie_phase) in `status`; -1 with the reason in `err` otherwise. */
int genie_parse_status(const char *body, size_t len, char *status, size_t slen, char *err,
                       size_t elen);

/* The message of a Genie error body: {"message": ...} (Genie's own, or
 * Spring's {"timestamp","status","error","message","path"}), else Spring's
 * "error", else the start of the body as text, else "HTTP <status>". */
void genie_error_message(long status, const char *body, size_t len, char *out, size_t olen);

/* A page of GET /api/v3/clusters (HAL: {"_embedded": {"clusterList": [..]}},
 * no _embedded at all when empty). Collects up to `max` ids whose name is
 * exactly `name` (Genie's name filter is a SQL LIKE pattern, so '_' and '%'
 * in a name would match more). Returns the count, or -1 with `err`. */
int genie_parse_clusters(const char *body, size_t len, const char *name, char **ids,
                         int max, char *err, size_t elen);

/* One Cluster resource (GET /api/v3/clusters/{id}): an object with a string
 * "id"; its "status" (when a string) goes to `status`. 0, or -1 and `err`. */
int genie_parse_cluster(const char *body, size_t len, char *status, size_t slen, char *err,
                        size_t elen);

/* The last GENIE_TAIL_BYTES of a log as safe text: invalid UTF-8 and
 * control characters other than \n and \t become '?' (logs are arbitrary
 * bytes; the record and batonctl's JSON need valid strings). malloc'd. */
char *genie_tail_text(const char *body, size_t len);

/* RFC 3986 percent-encoding of everything but unreserved characters, for
 * ids and query values in URLs. malloc'd. */
char *genie_url_escape(const char *s);

/* ------------------------------------------------------------ plumbing */

#define GENIE_MAX_TEARDOWN 32   /* clusters one teardown task may change */

/* The operators' one family (both bt_operator_t live in fam). */
typedef struct genie {
    opc_family_t fam;    /* fam.url: genie_url without a trailing '/', or NULL */
    char *cluster;       /* the baton cluster: part of every derived id */
} genie_t;

/* One operator call (the core's part in `base`): a short chain of HTTP
 * requests, one answer at the end. */
typedef struct genie_call {
    opc_call_t base;
    genie_t *g;
    int is_job;
    char id[256];        /* the job's or the cluster's id */
    int tails;           /* failed job: log tails fetched (or given up on) */
    char *stdout_tail, *stderr_tail;
    char *name;          /* teardown: the cluster name to match exactly */
    char *patch;         /* teardown: the JSON Patch body */
    char *ids[GENIE_MAX_TEARDOWN];
    int n_ids, next_id;
    /* registration: the commands to link (genie_cluster.c) */
    json_t *cmd_ids;     /* ids: the spec's, then each criterion's matches */
    json_t *cmd_queries; /* GET /api/v3/commands?... paths, one per criterion */
    size_t query_i;
} genie_call_t;

static inline genie_call_t *genie_of(opc_call_t *c)
{
    return container_of(c, genie_call_t, base);
}

typedef struct genie_send {
    const char *method, *path, *body, *content_type, *range;
    uint32_t max_attempts, budget_ms;   /* 0: the transport's defaults */
    int any;                            /* the step sees every outcome (log tails) */
} genie_send_t;

/* The call's own part: its family, job or cluster. */
genie_call_t *genie_call_init(opc_call_t *oc, int is_job);
/* Genie's word for the state (at most 31 bytes, as the handle has kept it). */
void genie_set_state(genie_call_t *c, const char *state);

/* FAILED with Genie's message: "remote_rejected" for a 4xx, "bad_response"
 * for any other unexpected status. */
void genie_rejected(genie_call_t *c, const char *what, const bt_http_response_t *res);
/* The answer to a GET of one resource, unless it is a 200: 404 answers
 * NOT_FOUND with the message `none`, anything else is rejected (`what`).
 * 1: the call is answered. */
int genie_got(genie_call_t *c, const bt_http_response_t *res, const char *what,
              const char *none);
/* FAILED "bad_response": the answer did not have the promised shape. */
void genie_bad(genie_call_t *c, const char *reason);

/* o->path is appended to the base URL as it is (ids in it escaped). Every
 * Genie request is idempotent: the derived id makes a repeat harmless. */
bt_err_t genie_send(genie_call_t *c, const genie_send_t *o, opc_step_fn step);

static inline int genie_2xx(const bt_http_response_t *res)
{
    return res->status >= 200 && res->status < 300;
}

/* genie_register_cluster (genie_cluster.c) */
bt_err_t genie_cluster_start(opc_call_t *oc, const bt_op_call_t *call);

#endif
