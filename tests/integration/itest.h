/* Helpers for integration tests against the harness's real servers. */
#ifndef BATON_ITEST_H
#define BATON_ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ev.h>
#include <libpq-fe.h>

#include "baton/record.h"
#include "baton/pg.h"
#include "baton/store.h"

/* $BATON_TEST_PG; fails the test when unset. */
const char *itest_pg(void);

/* Creates a fresh, migrated-nothing database for this test and returns its
 * conninfo (one of four static buffers, reused round-robin). The name includes the pid: tests may share one
 * PostgreSQL server and run side by side. */
const char *itest_fresh_db(const char *tag);

/* Blocking helpers for set-up and checks (tests only, never the daemon). */
PGconn *itest_connect(const char *conninfo);
void itest_exec(PGconn *c, const char *sql);
long long itest_scalar(PGconn *c, const char *sql); /* first column, first row */
char *itest_text(PGconn *c, const char *sql);        /* malloc'd, or NULL for SQL NULL */

/* Runs the loop until *flag becomes non-zero or `seconds` pass; returns the
 * flag (0 = timed out). */
int itest_run_until(struct ev_loop *loop, const int *flag, double seconds);

/* Runs the loop until the store's connection is up; fails the test if not
 * within `seconds`. */
void itest_wait_store_up(struct ev_loop *loop, bt_store_t *st, double seconds);

/* Runs a harness fault helper: itest_harness("pg", "restart"). */
int itest_harness(const char *what, const char *action, const char *arg);

/* A task run record with the usual fields filled from its parts. */
bt_task_run_t *itest_task_run(const char *wf, const char *run, const char *task,
                              uint32_t attempt, bt_task_state_t state);
void itest_task_run_free(bt_task_run_t *run);

/* A store callback that records its outcome. */
typedef struct itest_outcome {
    int done;
    bt_err_t err;
} itest_outcome_t;
void itest_outcome_cb(bt_err_t err, const char *detail, void *arg);

/* Waits for one outcome and returns its error. */
bt_err_t itest_wait(struct ev_loop *loop, itest_outcome_t *o);

#endif
