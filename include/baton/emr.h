/* Amazon EMR operators: emr_create_cluster, emr_add_step,
 * emr_terminate_cluster, emr_wait_cluster, emr_wait_step (proto/baton.proto).
 *
 * Wire: the AWS JSON 1.1 protocol, `POST /` with X-Amz-Target:
 * ElasticMapReduce.<Operation>, signed with SigV4 by the transport
 * (libcurl's CURLOPT_AWS_SIGV4), credentials from include/baton/aws_creds.h.
 * The endpoint is https://elasticmapreduce.<region>.amazonaws.com unless
 * emr.endpoint (BATON_EMR_ENDPOINT) overrides it; a task's own `region`
 * other than the configured one uses that region's public endpoint.
 *
 * EMR has no idempotency token, so a submission is made findable instead:
 * every cluster carries the tag baton:run-key=<task-run key>, every step's
 * name ends in "[<task-run key>]". lookup() (after a takeover, or after a
 * submission whose outcome is unknown) lists the clusters created since the
 * attempt started and compares their tags, or the cluster's newest steps by
 * name, and adopts what it finds.
 *
 * Polling: every operator polls at $BATON_EMR_POLL_INTERVAL_MS (default
 * 30 s); the sensors (emr_wait_*) honour their own poll_interval, to a
 * granularity of at most 5 s. */
#ifndef BATON_EMR_H
#define BATON_EMR_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "baton/config.h"
#include "baton/err.h"
#include "baton/http.h"
#include "baton/operator.h"

/* Appends the five operators to out[*n..max) when emr.region or
 * emr.endpoint is configured (else adds nothing and returns BT_OK).
 * BT_E_INVAL when fewer than five slots are left. `http` must outlive the
 * operators. */
bt_err_t bt_emr_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                          bt_operator_t **out, size_t max, size_t *n);

/* The orphan reaper's view of EMR (src/sched/reaper.c decides): the
 * clusters in STARTING, BOOTSTRAPPING, RUNNING or WAITING of the configured
 * region whose name carries baton's suffix and that carry the
 * baton:run-key tag, with that tag. */
typedef struct bt_emr_tagged {
    char id[64];
    char run_key[201];      /* the tag: the task-run key that created it */
    char state[32];
    int64_t created_ms;     /* -1 when EMR did not say */
    int keep;               /* tagged baton:keep=true (emr_create_cluster keep: true) */
} bt_emr_tagged_t;
typedef void (*bt_emr_scan_cb)(bt_err_t err, const char *msg, const bt_emr_tagged_t *list,
                               size_t n, void *arg);
typedef void (*bt_emr_done_cb)(bt_err_t err, const char *msg, void *arg);
/* BT_E_NOTFOUND when ops hold no EMR operators. The answer comes from the
 * loop, never when the operators are freed first. */
bt_err_t bt_emr_scan_tagged(bt_operator_t *const *ops, size_t n, bt_emr_scan_cb cb, void *arg);
/* TerminateJobFlows of one cluster, sent only while this node may send
 * side effects (BT_E_NOT_SENT otherwise). */
bt_err_t bt_emr_terminate_cluster(bt_operator_t *const *ops, size_t n, const char *cluster_id,
                                  bt_emr_done_cb cb, void *arg);

/* Frees the operators bt_emr_operators added and sets their slots in `ops`
 * to NULL; other operators are left alone. Answers not delivered yet are
 * dropped; requests in flight are detached (call it before bt_http_free). */
void bt_emr_operators_free(bt_operator_t **ops, size_t n);

#endif
