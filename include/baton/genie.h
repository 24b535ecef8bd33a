/* Netflix Genie 3 operators (proto GenieJob, GenieRegisterCluster) over the
 * daemon's shared HTTP transport (baton/http.h). See docs/operators.md.
 *
 *   genie_job               POST /api/v3/jobs with a job id derived from the
 *                           baton cluster and the task-run key, so a second
 *                           submission of the same attempt (after a takeover
 *                           or an unknown outcome) is answered 409 and adopted
 *                           instead of starting a second job; polled through
 *                           /api/v3/jobs/{id}/status; killed with DELETE.
 *   genie_register_cluster  POST /api/v3/clusters (id derived the same way),
 *                           or, as a teardown task, PATCH the status of the
 *                           clusters this baton cluster registered under the
 *                           task's name and tags.
 *
 * Configuration: cfg->genie_url (no operators without it), cfg->genie_auth
 * ("basic USER:PASSWORD" or "bearer TOKEN"), cfg->http_insecure. */
#ifndef BATON_GENIE_H
#define BATON_GENIE_H

#include <ev.h>
#include <stddef.h>

#include "baton/config.h"
#include "baton/err.h"
#include "baton/http.h"
#include "baton/operator.h"

/* Appends genie_job and genie_register_cluster to out[*n..max) when
 * cfg->genie_url is set (nothing, and BT_OK, when it is not). `http` and
 * `cfg` must outlive the operators; cfg strings are copied. BT_E_CONFIG for a
 * genie_auth that is neither "basic U:P" nor "bearer T", BT_E_INVAL when out
 * has no room for both. */
bt_err_t bt_genie_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                            bt_operator_t **out, size_t max, size_t *n);

/* Frees the Genie operators among ops[0..n) (others are left alone) and sets
 * their slots to NULL. Call it before bt_http_free: requests still in flight
 * then complete without a callback (their answers are dropped, like every
 * operator's at shutdown). */
void bt_genie_operators_free(bt_operator_t **ops, size_t n);

#endif
