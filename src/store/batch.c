/* A loop turn's task transitions, coalesced into one fenced statement.
 *
 * Each transition used to be its own call of baton_task_transition: a fence
 * check (FOR SHARE on the fence row), an UPDATE and an events INSERT, each
 * started and planned per row. PostgreSQL spent its time there, not in
 * commits (store_bench: about 500 transitions per commit already). Here the
 * transitions asked for during one turn wait in arrays and go out as one
 * call of baton_task_transitions (migration 5): one fence check for all,
 * one set-based UPDATE, one INSERT of their events. Each caller still gets
 * its own outcome, in order, after the commit.
 *
 * Order is kept: what is held is sent (bt_pg_set_hold) before any other
 * query on the connection and before the turn's sync. The dispatcher often
 * moves a run again before the first move has committed; a move that
 * starts where the run's last held move ends joins it as a chain, which the
 * statement applies as one compare-and-set (migration 5). A move that does
 * not (the caller's view of the run differs from what it asked for) goes
 * into a second statement (a "generation"), sent after the first. Moves of
 * one run stay in order; moves of different runs are independent rows.
 * Another epoch sends everything held first. Arrays travel in PostgreSQL's
 * binary array format: no quoting, and records stay raw. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/log.h"
#include "store/internal.h"
#include "util/container.h"

#define BATCH_MAX 1024   /* transitions per statement; distinct runs held */
#define MAX_GEN 4        /* statements held at once */
#define SLOTS 2048       /* key set: twice BATCH_MAX, a power of two */
#define HDR 20           /* binary array header: ndim, flags, oid, size, lbound */

enum { A_KEY, A_FROM, A_TO, A_DUE, A_ERROR, A_RECORD, A__COUNT };

/* Element type OIDs (pg_type.h): what array_recv checks against. */
static const uint32_t elem_oid[A__COUNT] = {25, 25, 25, 1184, 25, 17};

typedef struct abuf {
    uint8_t *p;
    size_t len, cap;
    int has_null;
} abuf_t;

/* One statement's worth: chains of moves, at most one per run. */
typedef struct gen {
    size_t n;
    int chained; /* some run has more than one move in it */
    abuf_t a[A__COUNT];
    store_req_t *rq[BATCH_MAX];
} gen_t;

/* What a sent statement waits for: its callers, in array order. */
typedef struct sent {
    size_t n;
    store_req_t *rq[];
} sent_t;

/* Callers whose statement could not be sent: told from the loop, never
 * from inside the call that found out. */
typedef struct failed {
    struct failed *next;
    bt_err_t err;
    sent_t *s;
} failed_t;

struct bt_store_batch {
    bt_store_t *st;
    struct ev_loop *loop;
    uint64_t epoch;
    size_t held;          /* moves held, over all generations */
    size_t ngen;          /* generations in use */
    gen_t *gen[MAX_GEN];  /* allocated on first use, kept */
    /* the runs held: key bytes, the generation of each one's last chain,
     * and the state that chain ends in */
    abuf_t keys;
    size_t nkeys;
    uint32_t key_off[BATCH_MAX], key_len[BATCH_MAX];
    uint8_t kgen[BATCH_MAX];
    const char *last_to[BATCH_MAX];
    uint16_t slot[SLOTS]; /* 1 + index into key_off, 0 = free */
    int oom;
    failed_t *failed;
    ev_timer tell;
};

static void put(abuf_t *b, const void *data, size_t n, int *oom)
{
    if (*oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            *oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(abuf_t *b, uint32_t v, int *oom)
{
    uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, be, 4, oom);
}

/* One element: its length (-1 for NULL), then its bytes. */
static void put_elem(abuf_t *b, const void *data, size_t n, int *oom)
{
    if (!data) {
        put_u32(b, 0xffffffffu, oom);
        b->has_null = 1;
        return;
    }
    put_u32(b, (uint32_t)n, oom);
    put(b, data, n, oom);
}

static void put_text(abuf_t *b, const char *s, int *oom)
{
    put_elem(b, s, s ? strlen(s) : 0, oom);
}

/* timestamptz on the wire: microseconds since 2000-01-01 UTC, big-endian. */
static void put_time_ms(abuf_t *b, int64_t ms, int *oom)
{
    if (!ms) {
        put_elem(b, NULL, 0, oom);
        return;
    }
    uint64_t us = (uint64_t)((ms - 946684800000LL) * 1000);
    uint8_t be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(us >> (56 - 8 * i));
    put_elem(b, be, 8, oom);
}

/* Fills in the header reserved at the front, now that the count is known. */
static void finish_header(abuf_t *b, uint32_t oid, size_t n)
{
    uint32_t v[5] = {1, (uint32_t)b->has_null, oid, (uint32_t)n, 1};
    for (int i = 0; i < 5; i++) {
        b->p[4 * i] = (uint8_t)(v[i] >> 24);
        b->p[4 * i + 1] = (uint8_t)(v[i] >> 16);
        b->p[4 * i + 2] = (uint8_t)(v[i] >> 8);
        b->p[4 * i + 3] = (uint8_t)v[i];
    }
}

static void gen_reset(gen_t *g, int *oom)
{
    static const uint8_t zero[HDR];
    g->n = 0;
    g->chained = 0;
    for (int i = 0; i < A__COUNT; i++) {
        g->a[i].len = 0;
        g->a[i].has_null = 0;
        put(&g->a[i], zero, HDR, oom);
    }
}

static void reset(bt_store_batch_t *bt)
{
    bt->held = 0;
    bt->oom = 0;
    for (size_t i = 0; i < bt->ngen; i++)
        gen_reset(bt->gen[i], &bt->oom);
    bt->ngen = 0;
    bt->nkeys = 0;
    bt->keys.len = 0;
    memset(bt->slot, 0, sizeof bt->slot);
}

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* The key's slot: where it is, or the free one where it would go. */
static uint16_t *key_slot(bt_store_batch_t *bt, const char *key, size_t n)
{
    const abuf_t *k = &bt->keys;
    for (uint32_t i = hash(key, n) & (SLOTS - 1);; i = (i + 1) & (SLOTS - 1)) {
        uint16_t e = bt->slot[i];
        if (!e || (bt->key_len[e - 1] == n && !memcmp(k->p + bt->key_off[e - 1], key, n)))
            return &bt->slot[i];
    }
}

static void tell_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_store_batch_t *bt = container_of(w, bt_store_batch_t, tell);
    (void)loop;
    (void)revents;
    while (bt->failed) {
        failed_t *f = bt->failed;
        bt->failed = f->next;
        for (size_t i = 0; i < f->s->n; i++) {
            f->s->rq[i]->cb(f->err,
                            f->err == BT_E_NOMEM ? "not sent: out of memory"
                                                 : "not sent: the connection to PostgreSQL is down",
                            f->s->rq[i]->arg);
            free(f->s->rq[i]);
        }
        free(f->s);
        free(f);
    }
}

/* Reads the statement's text[] of outcomes: {ok,conflict,...}. */
static void on_sent(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    sent_t *s = arg;
    const char *p = NULL;
    if (err == BT_OK) {
        if (PQntuples(res) == 1 && PQnfields(res) == 1 && *(p = PQgetvalue(res, 0, 0)) == '{') {
            p++;
        } else {
            err = BT_E_PG;
            errmsg = "unexpected result shape";
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        bt_err_t e = err;
        const char *msg = errmsg;
        if (err == BT_OK) {
            size_t len = strcspn(p, ",}");
            char word[16];
            snprintf(word, sizeof word, "%.*s", (int)(len < 15 ? len : 15), p);
            e = len ? store_outcome_err(word) : BT_E_PG;
            msg = len ? NULL : "fewer outcomes than transitions";
            p += len + (p[len] == ',');
        }
        s->rq[i]->cb(e, msg, s->rq[i]->arg);
        free(s->rq[i]);
    }
    free(s);
}

/* Sends one generation as one statement; its callers are told later, from
 * the loop, either way. */
static void send_gen(bt_store_batch_t *bt, gen_t *g, int oom)
{
    char ep[24];
    size_t n = g->n;
    sent_t *s = malloc(sizeof *s + n * sizeof s->rq[0]);
    bt_err_t err = BT_E_NOMEM;
    if (s) {
        s->n = n;
        memcpy(s->rq, g->rq, n * sizeof s->rq[0]);
    }
    if (s && !oom) {
        const char *vals[4 + A__COUNT] = {bt->st->cluster, ep, bt->st->node};
        int lens[4 + A__COUNT] = {0}, fmts[4 + A__COUNT] = {0};
        vals[3 + A__COUNT] = g->chained ? "t" : "f";
        snprintf(ep, sizeof ep, "%" PRIu64, bt->epoch);
        for (int i = 0; i < A__COUNT; i++) {
            finish_header(&g->a[i], elem_oid[i], n);
            vals[3 + i] = (const char *)g->a[i].p;
            lens[3 + i] = (int)g->a[i].len;
            fmts[3 + i] = 1;
        }
        err = bt_pg_exec(bt->st->pg, ST_TASK_TRANSITIONS, vals, lens, fmts, 0, on_sent, s);
    }
    if (err == BT_OK)
        return;
    failed_t *f = s ? calloc(1, sizeof *f) : NULL;
    if (!f) {
        /* out of memory twice over: say so from here, rather than never */
        bt_error("store: %zu transitions not sent and their callers not told: out of memory", n);
        free(s);
        return;
    }
    f->err = err;
    f->s = s;
    failed_t **tail = &bt->failed; /* told in the order they were sent */
    while (*tail)
        tail = &(*tail)->next;
    *tail = f;
    ev_timer_set(&bt->tell, 0., 0.);
    ev_timer_start(bt->loop, &bt->tell);
}

/* Sends everything held, generation by generation. The bt_pg_set_hold hook. */
static void send_held(void *arg)
{
    bt_store_batch_t *bt = arg;
    if (!bt->held)
        return;
    size_t ngen = bt->ngen;
    int oom = bt->oom;
    bt->held = 0; /* bt_pg_exec runs this hook again: nothing left to send */
    for (size_t i = 0; i < ngen; i++)
        send_gen(bt, bt->gen[i], oom);
    bt->ngen = ngen;
    reset(bt);
}

bt_store_batch_t *store_batch_new(bt_store_t *st, struct ev_loop *loop)
{
    bt_store_batch_t *bt = calloc(1, sizeof *bt);
    if (!bt)
        return NULL;
    bt->st = st;
    bt->loop = loop;
    ev_init(&bt->tell, tell_cb);
    bt_pg_set_hold(st->pg, send_held, bt);
    return bt;
}

void store_batch_free(bt_store_batch_t *bt)
{
    if (!bt)
        return;
    bt_pg_set_hold(bt->st->pg, NULL, NULL);
    ev_timer_stop(bt->loop, &bt->tell);
    tell_cb(bt->loop, &bt->tell, 0);
    for (size_t g = 0; g < MAX_GEN && bt->gen[g]; g++) {
        for (size_t i = 0; i < bt->gen[g]->n; i++) {
            bt->gen[g]->rq[i]->cb(BT_E_CANCELLED, NULL, bt->gen[g]->rq[i]->arg);
            free(bt->gen[g]->rq[i]);
        }
        for (int i = 0; i < A__COUNT; i++)
            free(bt->gen[g]->a[i].p);
        free(bt->gen[g]);
    }
    free(bt->keys.p);
    free(bt);
}

/* The generation a run's next move goes into, created when first needed. */
static gen_t *gen_at(bt_store_batch_t *bt, size_t i)
{
    if (!bt->gen[i]) {
        int oom = 0;
        if (!(bt->gen[i] = calloc(1, sizeof *bt->gen[i])))
            return NULL;
        gen_reset(bt->gen[i], &oom);
        if (oom) {
            for (int a = 0; a < A__COUNT; a++)
                free(bt->gen[i]->a[a].p);
            free(bt->gen[i]);
            bt->gen[i] = NULL;
            return NULL;
        }
    }
    if (i >= bt->ngen)
        bt->ngen = i + 1;
    return bt->gen[i];
}

bt_err_t store_batch_add(bt_store_batch_t *bt, uint64_t epoch, const bt_task_run_t *run,
                         const char *from, const char *errtext, const uint8_t *rec,
                         size_t rec_len, store_req_t *rq)
{
    size_t klen = strlen(run->run_key);
    if (!bt_pg_is_up(bt->st->pg))
        return BT_E_PG_CONN;
    if (bt->held && bt->epoch != epoch)
        send_held(bt);
    uint16_t *slot = key_slot(bt, run->run_key, klen);
    /* its chain's generation, or the next one if this move breaks it */
    size_t gi = *slot ? bt->kgen[*slot - 1] + (strcmp(bt->last_to[*slot - 1], from) != 0) : 0;
    if (bt->held && (gi == MAX_GEN || (!*slot && bt->nkeys == BATCH_MAX))) {
        send_held(bt);
        slot = key_slot(bt, run->run_key, klen);
        gi = 0;
    }
    if (!bt->held)
        bt_pg_holding(bt->st->pg);
    bt->epoch = epoch;
    int oom = 0;
    size_t k = *slot ? (size_t)(*slot - 1) : bt->nkeys;
    if (!*slot) {
        bt->key_off[k] = (uint32_t)bt->keys.len;
        bt->key_len[k] = (uint32_t)klen;
        put(&bt->keys, run->run_key, klen, &oom);
    }
    const char *to = bt_task_state_name(run->state);
    gen_t *g = oom ? NULL : gen_at(bt, gi);
    if (!g)
        return BT_E_NOMEM; /* nothing recorded yet: the batch is intact */
    put_elem(&g->a[A_KEY], run->run_key, klen, &oom);
    put_text(&g->a[A_FROM], from, &oom);
    put_text(&g->a[A_TO], to, &oom);
    put_time_ms(&g->a[A_DUE], run->due_ms, &oom);
    put_text(&g->a[A_ERROR], errtext, &oom);
    put_elem(&g->a[A_RECORD], rec, rec_len, &oom);
    if (oom) {
        /* this generation's arrays are out of step: send none of them */
        bt->oom = 1;
        send_held(bt);
        return BT_E_NOMEM;
    }
    if (!*slot) {
        *slot = (uint16_t)(k + 1);
        bt->nkeys++;
    } else if (bt->kgen[k] == gi) {
        g->chained = 1; /* the run's last move is in this statement too */
    }
    g->rq[g->n++] = rq;
    bt->kgen[k] = (uint8_t)gi;
    bt->last_to[k] = to;
    bt->held++;
    if (g->n == BATCH_MAX)
        send_held(bt);
    return BT_OK;
}
