/* Private to src/sched: the dispatcher's insides, shared by its files:
 * dispatcher.c (life cycle, the turn, draining), model.c (the in-memory
 * model), load.c (loading it from the store, the config poll), task_flow.c
 * (one task's attempts, the state machine's gate), calls.c (operator calls
 * across pauses and reloads), sched_runs.c (runs), requests.c (operators'
 * task requests). The model is a cache of committed rows, rebuilt from
 * scratch on every start and reload; what must survive a reload is kept
 * beside it (calls, the carry list). Names: disp_ for the dispatcher,
 * task_ for one task's flow (docs/internals.md). */
#ifndef BATON_SCHED_DISPATCH_H
#define BATON_SCHED_DISPATCH_H

#include <ev.h>
#include <stdint.h>

#include "baton/cron.h"
#include "baton/dispatcher.h"
#include "baton/emr.h"
#include "baton/record.h"
#include "baton/workflow.h"

/* A workflow version's spec, shared by the workflow and by every run that
 * follows that version: a run does not change its spec, and with thousands
 * of tasks the copies were most of the dispatcher's memory. */
typedef struct spec_ref {
    unsigned refs;
    bt_workflow_spec_t *spec;   /* its tasks without their operator bodies */
    ProtobufCBinaryData *packed; /* each task whole, packed, one allocation */
} spec_ref_t;

/* Takes s (NULL, with s freed, when out of memory); refs = 1. The tasks'
 * operator messages (the bulk of a spec: strings, lists, maps) move into
 * `packed` and out of s: the scheduler needs only each task's scheduling
 * fields and operator_case, and an operator call unpacks the whole task
 * from `packed` (task_spec_render). 10,000 resident tasks: 3 MB less. */
spec_ref_t *spec_ref_new(bt_workflow_spec_t *s);
static inline spec_ref_t *spec_ref_get(spec_ref_t *r)
{
    r->refs++;
    return r;
}
void spec_ref_put(spec_ref_t *r); /* frees at the last; accepts NULL */

typedef struct wf wf_t;
typedef struct run run_t;
typedef struct task task_t;

struct wf {
    char *id;
    int version;
    int paused;
    int64_t change_seq;
    bt_workflow_spec_t *spec; /* the newest version (spec_ref's) */
    spec_ref_t *spec_ref;
    bt_cron_t *cron;          /* NULL: manual only */
    bt_tz_t *tz;
    int64_t next_fire_ms;     /* the cursor; -1 while the row has none */
    int busy;                 /* a cursor or run-create write in flight */
    unsigned active_runs;
    unsigned active_tasks;    /* queued, submitting, running */
};

struct task {
    run_t *run;
    const bt_task_spec_t *spec; /* in run->spec, without its operator body */
    const ProtobufCBinaryData *packed; /* the whole task, in run->spec_ref */
    bt_task_run_t *cur;         /* the latest attempt's committed record */
    bt_task_run_t *next_attempt; /* a retry's new attempt, until committed */
    int pending;                /* fenced writes in flight */
    int op_busy;                /* an operator call in flight */
    /* Rule 4 of docs/failover.md: a submission whose outcome is unknown is
     * looked up, and "not found" is believed only from a lookup that started
     * once no earlier call (ours or a predecessor's) can still take effect,
     * confirmed by a second one a settle time later. */
    int needs_lookup;           /* submitting, outcome unknown: look it up */
    int64_t resolve_after_mono; /* monotonic ms: NOT_FOUND counts from here on */
    int64_t not_found_mono;     /* start of the first NOT_FOUND that counted; 0: none */
    int after_lookup;           /* submitted or adopted after a lookup: sweep for twins */
    int64_t sweep_mono;         /* a sweep is due then (monotonic ms); 0: none */
    int sweep_tries;            /* sweeps that could not tell, so far */
    int64_t next_poll_ms;
    int64_t committed_ms;       /* when cur's write was known committed */
    int64_t wake_ms;            /* nothing to do before then (INT64_MAX: until an
                                 * event of its run); 0: look in the next turn */
};

struct run {
    run_t *next;
    wf_t *wf;
    bt_workflow_run_t *rec;
    bt_workflow_spec_t *spec;   /* the version this run follows (spec_ref's) */
    spec_ref_t *spec_ref;
    task_t *tasks;
    size_t ntasks;
    int pending;
    int dirty;                  /* a task's state changed: look at every task */
    char date[16];              /* {{ run.date }} */
    char logical[40];           /* {{ run.logical_time }} */
};

/* An operator call or a write in flight. A write belongs to the model's
 * generation: an answer for an old one is dropped. A call belongs to the
 * leader epoch: a pause or a reload detaches it from its task (task NULL),
 * the next load attaches it again by run key, and its answer, parked if it
 * comes in between, is applied then. Only a call of an earlier epoch is
 * dropped. */
typedef struct inflight {
    struct inflight *next, **prevp;
    bt_dispatcher_t *d;
    unsigned gen;
    task_t *task;
    char *run_key;             /* calls: what they are attached by */
    uint64_t epoch;            /* calls: the leadership that made them */
    int64_t started_mono;      /* calls: when they began */
    struct parked *parked;     /* calls: the answer, while detached */
    run_t *run;
    bt_task_run_t *rec;        /* a write's new record */
    bt_workflow_run_t *run_rec;
    bt_task_spec_t *rendered;  /* an operator call's spec */
    bt_task_run_t *call_run;   /* an operator call's view of the run */
    int kind;
    int is_call;               /* an operator call, counted in op_calls[op] */
    size_t op;                 /* its operator's index in o.ops */
    int is_submit;             /* a submit or lookup call, counted in n_submits */
    int is_side_effect;        /* submit, cancel, kill, sweep: a drain waits for it */
    Baton__V1__TaskState from; /* a task write's move starts here */
} inflight_t;

/* An operator's answer kept while its call is detached (calls.c). */
typedef struct parked parked_t;

struct bt_dispatcher {
    struct ev_loop *loop;
    bt_dispatcher_opts_t o;
    uint64_t epoch;
    unsigned gen;
    int started, loaded, loading, reload_wanted;
    int paused;                 /* suspended: no new work; answers still written */
    unsigned epoch_loads;       /* loads under this epoch: the first is the takeover */
    int inherited_clean;        /* the predecessor released cleanly (fence row) */
    int64_t started_mono;       /* when this epoch's dispatching began */
    size_t n_detached;          /* calls waiting to be attached again */
    size_t n_side_effects;      /* side-effecting calls in flight */
    size_t task_writes;         /* task writes in flight */
    /* a reload keeps what it knows of unknown outcomes (run key -> when a
     * NOT_FOUND starts to count) */
    struct carry {
        char *key;
        int64_t resolve_after_mono;
    } *carry;
    size_t ncarry;
    /* handing off: finish calls, mark unknown outcomes, then tell */
    int draining, drain_over, drain_dirty, drain_marking;
    void (*drain_done)(void *arg, int clean);
    void *drain_arg;
    ev_timer drain_timer;       /* the bound, then the last word */
    int drain_cut;              /* the bound passed: side effects were cut off */
    int64_t next_sweep_ms;      /* when every task is looked at, dirty or not */
    int loads_left;
    ev_timer tick, config_poll;
    wf_t **wfs;
    size_t nwfs;
    run_t *runs;
    inflight_t *inflight;
    size_t *op_calls;           /* calls in flight per operator (o.ops order) */
    int calls_waiting;          /* a call waits for a place: kick when one frees */
    size_t n_submits;           /* submit and lookup calls in flight */
    int64_t change_seq;
    uint64_t rnd;
    bt_dispatcher_stats_t stats;
    /* the EMR orphan reaper (reaper.c) */
    struct reaper {
        ev_timer timer;
        int busy;               /* a scan, or its verdicts, in flight */
        unsigned gen;           /* the leadership it scans for */
        bt_emr_tagged_t *list;  /* the last scan's clusters, judged in turn */
        size_t n, i;
    } reaper;
    bt_dispatcher_lag_cb lag_cb;
    void *lag_arg;
    /* pools */
    char **pool_names;
    uint32_t *pool_slots;
    size_t npools;
    /* run requests seen by the last poll */
    struct req {
        int64_t id;
        char *workflow_id, *kind, *conf;
        int64_t logical_ms;
        int busy;
    } *reqs;
    size_t nreqs;
    int reqs_loading;
    /* operators' task requests (retry, kill, clear) seen by the last poll */
    struct treq {
        int64_t id;
        char *action, *workflow_id, *run_id, *task_id; /* task_id may be NULL */
        int only_failed;
        int busy;
    } *treqs;
    size_t ntreqs;
    int treqs_loading;
};

/* requests.c */
void disp_poll_task_requests(bt_dispatcher_t *d);
void disp_apply_task_requests(bt_dispatcher_t *d, int64_t now);
void disp_treqs_free(bt_dispatcher_t *d);

/* dispatcher.c */
void disp_kick(bt_dispatcher_t *d);
void disp_reload(bt_dispatcher_t *d, const char *why);
int disp_may_act(bt_dispatcher_t *d);
inflight_t *disp_inflight(bt_dispatcher_t *d, task_t *t, int kind);
void disp_inflight_done(inflight_t *f); /* unlinks and frees */
/* A drain moves on when its calls and writes are answered. */
void disp_drain_check(bt_dispatcher_t *d);
/* Handles a write outcome common to all writes: 1 when the caller may apply
 * it (BT_OK), 0 after a reload/step-down was arranged. */
int disp_write_ok(bt_dispatcher_t *d, bt_err_t err, const char *detail, const char *what);
uint64_t disp_random(bt_dispatcher_t *d);

/* Lowers *wake (0: none yet) to `when`, a time something is due. */
static inline void wake_at_ms(int64_t *wake, int64_t when)
{
    if (when > 0 && (*wake == 0 || when < *wake))
        *wake = when;
}

/* model.c */
void disp_model_clear(bt_dispatcher_t *d);  /* carries unknown outcomes, detaches calls */
void disp_wf_upsert(bt_dispatcher_t *d, const char *id, int version, int paused,
                       const uint8_t *spec, size_t len, int64_t next_fire, int64_t seq);
void disp_pools_clear(bt_dispatcher_t *d);
int64_t disp_carried(const bt_dispatcher_t *d, const char *key); /* 0: nothing carried */
void disp_carry_free(bt_dispatcher_t *d);

/* load.c */
int disp_load_if_wanted(bt_dispatcher_t *d); /* 1: a load started */
void disp_on_config_poll(struct ev_loop *loop, ev_timer *w, int revents);

/* calls.c: answers of detached calls, and Rule 4's clock */
parked_t *parked_new(const bt_op_result_t *res);
void parked_free(parked_t *p);
const bt_op_result_t *parked_result(const parked_t *p);
/* Detaches every call from the model (before it is freed). */
void disp_detach_calls(bt_dispatcher_t *d);
/* Attaches t to this epoch's call for its run key, if there is one: 1. */
int disp_attach_call(bt_dispatcher_t *d, task_t *t);
/* Applies answers that were parked while their calls were detached. */
void disp_apply_parked(bt_dispatcher_t *d);
/* Drops calls of other epochs' answers kept so far (a new leadership). */
void disp_drop_parked(bt_dispatcher_t *d);
/* Wall-clock ms for a monotonic deadline (the turn sleeps in wall time). */
int64_t disp_wall_of(int64_t mono_ms);

/* task_flow.c */
void task_op_result(inflight_t *f, const bt_op_result_t *res); /* applies, frees f */
/* Rule 4 for a task a load finds in `submitting` (before any call of ours
 * is attached to it); `carried` is what a reload kept for its key. */
void task_loaded_submitting(bt_dispatcher_t *d, task_t *t, int64_t carried);
/* A drain: marks t outcome_unknown in its record when it is in
 * `submitting` with an unknown outcome; 1 when a write was sent. */
int task_mark_unknown(bt_dispatcher_t *d, task_t *t);
bt_task_run_t *task_run_copy(const bt_task_run_t *r);
/* One turn for one task; lowers *wake to when it next needs one. */
void task_step(bt_dispatcher_t *d, task_t *t, int64_t now, int64_t *wake);
/* Moves a scheduled task to queued (the caller checked pools). */
void task_queue(bt_dispatcher_t *d, task_t *t, int64_t now);
/* Creates the next attempt of t (scheduled, due at `due`), installed once
 * committed. */
void task_new_attempt(bt_dispatcher_t *d, task_t *t, int64_t due);
/* Kills t: cancels remote work first when there is some. 0 when t is busy
 * (try again next turn), 1 when done or under way. */
int task_kill(bt_dispatcher_t *d, task_t *t);
/* The latest attempt's state, as trigger rules and runs see it. */
Baton__V1__TaskState task_state(const task_t *t);
/* 1 when the trigger rule lets t run now (fills *decision). */
int task_ready(const task_t *t, int *decision);
int task_is_active(const task_t *t);

/* reaper.c: the EMR orphan reaper, while leading */
void disp_reaper_init(bt_dispatcher_t *d);
void disp_reaper_stop(bt_dispatcher_t *d); /* forgets a scan in flight */

#endif
