/* Operator calls belong to the leader epoch, not to the dispatcher's model
 * (dispatch.h). A suspended leader that resumes, or a reload after a failed
 * write, rebuilds the model; the calls it made are still on their way, and
 * their answers are what tells whether a remote job exists. Looking the run
 * key up instead, while our own create is in flight, is how one node once
 * created two clusters for one key (docs/failover.md, Rule 4).
 *
 * So a model change detaches the calls (their task pointers go), a load
 * attaches them again by run key, and an answer that comes in between is
 * parked, a deep copy, until the load is done. */
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "sched/dispatch.h"

struct parked {
    bt_op_result_t res;
    Baton__V1__RemoteHandle *handle;
    char *keys[BT_OP_MAX_OUTPUTS], *values[BT_OP_MAX_OUTPUTS];
    char *error_code, *message, *detail, *remote_state;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

parked_t *parked_new(const bt_op_result_t *res)
{
    parked_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->res = *res;
    p->res.handle = p->handle = res->handle ? bt_pb_clone(res->handle) : NULL;
    for (size_t i = 0; i < res->n_outputs && i < BT_OP_MAX_OUTPUTS; i++) {
        p->res.output_keys[i] = p->keys[i] = dup_or_null(res->output_keys[i]);
        p->res.output_values[i] = p->values[i] = dup_or_null(res->output_values[i]);
    }
    p->res.error_code = p->error_code = dup_or_null(res->error_code);
    p->res.message = p->message = dup_or_null(res->message);
    p->res.detail = p->detail = dup_or_null(res->detail);
    p->res.remote_state = p->remote_state = dup_or_null(res->remote_state);
    /* a copy that lost a part would be applied as a different answer */
    int lost = (res->handle && !p->handle) || (res->error_code && !p->error_code) ||
               (res->message && !p->message) || (res->detail && !p->detail) ||
               (res->remote_state && !p->remote_state);
    for (size_t i = 0; i < res->n_outputs && i < BT_OP_MAX_OUTPUTS; i++)
        lost |= !p->keys[i] || !p->values[i];
    if (lost) {
        parked_free(p);
        return NULL;
    }
    return p;
}

void parked_free(parked_t *p)
{
    if (!p)
        return;
    if (p->handle)
        baton__v1__remote_handle__free_unpacked(p->handle, NULL);
    for (size_t i = 0; i < BT_OP_MAX_OUTPUTS; i++) {
        free(p->keys[i]);
        free(p->values[i]);
    }
    free(p->error_code);
    free(p->message);
    free(p->detail);
    free(p->remote_state);
    free(p);
}

const bt_op_result_t *parked_result(const parked_t *p)
{
    return &p->res;
}

void disp_detach_calls(bt_dispatcher_t *d)
{
    for (inflight_t *f = d->inflight; f; f = f->next) {
        if (!f->is_call || !f->task)
            continue;
        f->task = NULL;
        f->run = NULL;
        d->n_detached++;
    }
}

int disp_attach_call(bt_dispatcher_t *d, task_t *t)
{
    if (!d->n_detached)
        return 0;
    for (inflight_t *f = d->inflight; f; f = f->next) {
        if (!f->is_call || f->task || f->epoch != d->epoch || strcmp(f->run_key, t->cur->run_key))
            continue;
        f->task = t;
        f->run = t->run;
        t->op_busy = 1;
        d->n_detached--;
        return 1;
    }
    return 0;
}

void disp_apply_parked(bt_dispatcher_t *d)
{
    inflight_t *f = d->inflight, *next;
    for (; f; f = next) {
        next = f->next;
        if (!f->is_call || !f->parked)
            continue;
        if (!f->task) {
            /* its task is no longer active (its run ended meanwhile) */
            bt_debug("dispatch: %s: an answer for a task no longer loaded; dropped", f->run_key);
            parked_free(f->parked);
            f->parked = NULL;
            disp_inflight_done(f);
            continue;
        }
        parked_t *p = f->parked;
        f->parked = NULL;
        /* `next` may go with the answer's consequences: start over */
        task_op_result(f, parked_result(p));
        parked_free(p);
        next = d->inflight;
    }
}

void disp_drop_parked(bt_dispatcher_t *d)
{
    inflight_t *f = d->inflight, *next;
    for (; f; f = next) {
        next = f->next;
        if (f->is_call && f->epoch != d->epoch && f->parked) {
            parked_free(f->parked);
            f->parked = NULL;
            disp_inflight_done(f);
        }
    }
}

int64_t disp_wall_of(int64_t mono_ms)
{
    return bt_now_ms() + (mono_ms - bt_mono_ms());
}
