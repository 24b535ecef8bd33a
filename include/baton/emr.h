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

/* Frees the operators bt_emr_operators added and sets their slots in `ops`
 * to NULL; other operators are left alone. Answers not delivered yet are
 * dropped; requests in flight are detached (call it before bt_http_free). */
void bt_emr_operators_free(bt_operator_t **ops, size_t n);

#endif
