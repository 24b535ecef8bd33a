/* Apache Livy operators (REST API of Livy 0.7/0.8), on bt_http.
 *
 *   livy_batch      POST /batches, polled with GET /batches/{id}/state;
 *                   a failed batch's log tail goes into the error detail.
 *   livy_statement  an interactive session of its own (POST /sessions),
 *                   one statement in it once it is idle, the session
 *                   deleted when the statement has an answer.
 *
 * Every batch and session is named after the task-run key, which is what
 * `lookup` searches for after a takeover (Livy also refuses a second
 * session of the same name, so a resent create cannot start a twin).
 * See docs/operators.md. */
#ifndef BATON_LIVY_H
#define BATON_LIVY_H

#include <ev.h>
#include <stddef.h>

#include "baton/config.h"
#include "baton/err.h"
#include "baton/http.h"
#include "baton/operator.h"

/* Appends livy_batch and livy_statement to out[*n..max) when
 * cfg->livy_url is set (nothing otherwise), and advances *n. http must
 * outlive the operators. BT_E_CONFIG: livy.auth is not "basic USER:PASS";
 * BT_E_INVAL: no room in out. */
bt_err_t bt_livy_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                           bt_operator_t **out, size_t max, size_t *n);

/* Frees the Livy operators among ops[0..n) (others are left alone) and sets
 * their slots to NULL. Answers still owed are dropped; requests still in
 * flight are abandoned and cleaned up when bt_http_free cancels them, so
 * free the operators first, then the bt_http_t. */
void bt_livy_operators_free(bt_operator_t **ops, size_t n);

#endif
