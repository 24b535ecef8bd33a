/* tests/unit/fake_store.c: the store in memory, for the dispatcher's unit
 * tests (see there). */
#ifndef BATON_TEST_FAKE_STORE_H
#define BATON_TEST_FAKE_STORE_H

#include <ev.h>
#include <stddef.h>

#include "baton/store.h"

typedef struct fake_task {
    char key[256], task[64];
    uint32_t attempt;
    bt_task_state_t state;
    uint8_t *rec;
    size_t len;
} fake_task_t;

typedef struct fake_move {
    char key[256];
    bt_task_state_t from, to;
} fake_move_t;

bt_store_t *fake_store_new(struct ev_loop *loop);
void fake_store_free(bt_store_t *st);
/* The one active workflow run, and its spec. */
void fake_store_set_run(bt_store_t *st, const bt_workflow_run_t *run,
                        const Baton__V1__WorkflowSpec *spec);
void fake_store_add_task(bt_store_t *st, const bt_task_run_t *r);
/* What the fence row says of the predecessor (default: released cleanly). */
void fake_store_set_inherited_clean(bt_store_t *st, int clean);
/* The latest attempt of `task` (NULL: none), and its record (to free). */
const fake_task_t *fake_store_task(const bt_store_t *st, const char *task);
bt_task_run_t *fake_store_task_record(const bt_store_t *st, const char *task);
/* Every move written so far, in order. */
const fake_move_t *fake_store_moves(const bt_store_t *st, size_t *n);
int fake_store_has_event(const bt_store_t *st, const char *kind);

#endif
