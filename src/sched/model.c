/* The dispatcher's in-memory model (dispatch.h): workflows, active runs
 * and their tasks, pools, as loaded from the store (load.c), and how it is
 * dropped. A cache of committed rows, rebuilt on every start and reload;
 * what a reload must not forget (calls in flight, unknown outcomes) is kept
 * outside it (calls.c, the carry list). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "sched/dispatch.h"
#include "sched/sched_runs.h"

/* The operator message of a task, by the oneof's current case. */
static ProtobufCMessage **operator_slot(bt_task_spec_t *t)
{
    const ProtobufCMessageDescriptor *d = t->base.descriptor;
    for (unsigned i = 0; i < d->n_fields; i++)
        if ((d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            d->fields[i].id == (unsigned)t->operator_case)
            return (ProtobufCMessage **)((char *)t + d->fields[i].offset);
    return NULL;
}

/* Packs every task into one block, then frees the operator messages. A
 * NULL message with its case still set is what free_unpacked expects of
 * an absent one; nothing packs these tasks again. */
static int strip_operators(spec_ref_t *r)
{
    bt_workflow_spec_t *s = r->spec;
    size_t total = s->n_tasks * sizeof *r->packed;
    for (size_t i = 0; i < s->n_tasks; i++)
        total += protobuf_c_message_get_packed_size(&s->tasks[i]->base);
    if (!(r->packed = malloc(total ? total : 1)))
        return 0;
    uint8_t *at = (uint8_t *)(r->packed + s->n_tasks);
    for (size_t i = 0; i < s->n_tasks; i++) {
        r->packed[i].data = at;
        r->packed[i].len = protobuf_c_message_pack(&s->tasks[i]->base, at);
        at += r->packed[i].len;
        ProtobufCMessage **op = operator_slot(s->tasks[i]);
        if (op && *op) {
            protobuf_c_message_free_unpacked(*op, NULL);
            *op = NULL;
        }
    }
    return 1;
}

spec_ref_t *spec_ref_new(bt_workflow_spec_t *s)
{
    spec_ref_t *r = s ? calloc(1, sizeof *r) : NULL;
    if (r) {
        r->refs = 1;
        r->spec = s;
    }
    if (!r || !strip_operators(r)) {
        free(r);
        if (s)
            baton__v1__workflow_spec__free_unpacked(s, NULL);
        return NULL;
    }
    return r;
}

void spec_ref_put(spec_ref_t *r)
{
    if (r && --r->refs == 0) {
        baton__v1__workflow_spec__free_unpacked(r->spec, NULL);
        free(r->packed);
        free(r);
    }
}

static void wf_free(wf_t *w)
{
    if (!w)
        return;
    free(w->id);
    spec_ref_put(w->spec_ref);
    bt_cron_free(w->cron);
    bt_tz_free(w->tz);
    free(w);
}

static void run_free(run_t *r)
{
    for (size_t i = 0; i < r->ntasks; i++) {
        if (r->tasks[i].cur)
            baton__v1__task_run__free_unpacked(r->tasks[i].cur, NULL);
    }
    free(r->tasks);
    if (r->rec)
        baton__v1__workflow_run__free_unpacked(r->rec, NULL);
    spec_ref_put(r->spec_ref);
    free(r);
}

static void reqs_free(bt_dispatcher_t *d)
{
    for (size_t i = 0; i < d->nreqs; i++) {
        free(d->reqs[i].workflow_id);
        free(d->reqs[i].kind);
        free(d->reqs[i].conf);
    }
    free(d->reqs);
    d->reqs = NULL;
    d->nreqs = 0;
}


/* What a reload must not forget: when a NOT_FOUND may count again for a
 * task whose own submission's outcome is unknown (Rule 4). */
static void carry_unknown_outcomes(bt_dispatcher_t *d)
{
    int64_t mono = bt_mono_ms();
    for (run_t *r = d->runs; r; r = r->next)
        for (size_t i = 0; i < r->ntasks; i++) {
            task_t *t = &r->tasks[i];
            if (!t->needs_lookup || t->resolve_after_mono <= mono)
                continue;
            struct carry *c = realloc(d->carry, (d->ncarry + 1) * sizeof *c);
            if (!c)
                return;
            d->carry = c;
            if (!(c[d->ncarry].key = strdup(t->cur->run_key)))
                return;
            c[d->ncarry++].resolve_after_mono = t->resolve_after_mono;
        }
}

void disp_carry_free(bt_dispatcher_t *d)
{
    for (size_t i = 0; i < d->ncarry; i++)
        free(d->carry[i].key);
    free(d->carry);
    d->carry = NULL;
    d->ncarry = 0;
}

int64_t disp_carried(const bt_dispatcher_t *d, const char *key)
{
    for (size_t i = 0; i < d->ncarry; i++)
        if (!strcmp(d->carry[i].key, key))
            return d->carry[i].resolve_after_mono;
    return 0;
}

/* Drops the model. In-flight answers of writes of this generation are
 * orphaned; calls are detached, to be attached again by the next load. */
void disp_model_clear(bt_dispatcher_t *d)
{
    carry_unknown_outcomes(d);
    disp_detach_calls(d);
    d->gen++;
    for (size_t i = 0; i < d->nwfs; i++)
        wf_free(d->wfs[i]);
    free(d->wfs);
    d->wfs = NULL;
    d->nwfs = 0;
    while (d->runs) {
        run_t *r = d->runs;
        d->runs = r->next;
        run_free(r);
    }
    disp_pools_clear(d);
    reqs_free(d);
    /* task requests survive a reload: a reopened run must meet its request
     * before the dispatcher finds it finished again */
    for (size_t i = 0; i < d->ntreqs; i++)
        d->treqs[i].busy = 0;
    d->treqs_loading = 0;
    d->loaded = d->loading = 0;
    d->reqs_loading = 0;
    d->change_seq = 0;
}

wf_t *disp_wf(bt_dispatcher_t *d, const char *id)
{
    for (size_t i = 0; i < d->nwfs; i++)
        if (!strcmp(d->wfs[i]->id, id))
            return d->wfs[i];
    return NULL;
}

/* Installs or replaces a workflow from a row. */
void disp_wf_upsert(bt_dispatcher_t *d, const char *id, int version, int paused,
                    const uint8_t *spec, size_t len, int64_t next_fire, int64_t seq)
{
    char err[256];
    bt_workflow_spec_t *s = baton__v1__workflow_spec__unpack(NULL, len, spec);
    spec_ref_t *ref = s ? spec_ref_new(s) : NULL;
    if (!ref) {
        bt_error("dispatch: workflow %s: stored spec does not decode; skipped", id);
        return;
    }
    wf_t *w = disp_wf(d, id);
    if (!w) {
        wf_t **arr = realloc(d->wfs, (d->nwfs + 1) * sizeof *arr);
        if (!arr || !(w = calloc(1, sizeof *w)) || !(w->id = strdup(id))) {
            free(w);
            if (arr)
                d->wfs = arr;
            spec_ref_put(ref);
            return;
        }
        d->wfs = arr;
        d->wfs[d->nwfs++] = w;
        w->next_fire_ms = next_fire;
    }
    spec_ref_put(w->spec_ref);
    bt_cron_free(w->cron);
    bt_tz_free(w->tz);
    w->cron = NULL;
    w->tz = NULL;
    w->spec = s;
    w->spec_ref = ref;
    w->version = version;
    w->paused = paused;
    w->change_seq = seq;
    if (bt_tz_load(s->timezone && *s->timezone ? s->timezone : "UTC", &w->tz, err, sizeof err) !=
        BT_OK)
        bt_error("dispatch: workflow %s: %s", id, err);
    if (s->schedule && *s->schedule && bt_cron_parse(s->schedule, &w->cron, err, sizeof err) != BT_OK)
        bt_error("dispatch: workflow %s: schedule: %s", id, err);
    if (seq > d->change_seq)
        d->change_seq = seq;
}

void disp_pools_clear(bt_dispatcher_t *d)
{
    for (size_t i = 0; i < d->npools; i++)
        free(d->pool_names[i]);
    free(d->pool_names);
    free(d->pool_slots);
    d->pool_names = NULL;
    d->pool_slots = NULL;
    d->npools = 0;
}
