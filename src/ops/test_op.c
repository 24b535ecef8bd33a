/* test_op: the operator of test and benchmark builds (see operator.h).
 *
 * With a directory, a "job" is a file DIR/<key>.job written with O_EXCL, so
 * a second submission of the same run key finds the first instead of
 * starting another (the same adoption the real operators do by name or
 * idempotency token), and every submission that did start one appends the
 * key to DIR/submissions.log. The files outlive the daemon, which is what a
 * takeover test needs: the new leader polls what the old one started.
 * Files are tiny and local; the blocking calls are acceptable in a test
 * operator and would not be in a real one. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "baton/clock.h"
#include "baton/operator.h"
#include "util/container.h"

#ifdef BATON_TEST_OPERATORS

/* Answers are delivered from the loop, never from inside the call. */
typedef struct delivery {
    struct delivery *next;
    bt_op_cb cb;
    void *arg;
    bt_op_status_t status;
    char state[16];
    char message[160];
    int n_out;
    char *keys[BT_OP_MAX_OUTPUTS];
    char *values[BT_OP_MAX_OUTPUTS];
} delivery_t;

typedef struct test_op {
    bt_operator_t op;
    struct ev_loop *loop;
    ev_timer kick;
    delivery_t *head, **tail;
} test_op_t;

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    test_op_t *t = container_of(w, test_op_t, kick);
    delivery_t *d = t->head;
    (void)loop;
    (void)revents;
    t->head = NULL;
    t->tail = &t->head;
    while (d) {
        delivery_t *next = d->next;
        Baton__V1__RemoteHandle h = BATON__V1__REMOTE_HANDLE__INIT;
        h.endpoint = "test_op";
        h.remote_state = d->state;
        h.livy_batch_id = -1;
        bt_op_result_t r = {.status = d->status, .handle = &h, .remote_state = d->state};
        if (d->status == BT_OP_FAILED) {
            r.error_code = "remote_failed";
            r.message = d->message;
        }
        r.n_outputs = (size_t)d->n_out;
        for (int i = 0; i < d->n_out; i++) {
            r.output_keys[i] = d->keys[i];
            r.output_values[i] = d->values[i];
        }
        d->cb(&r, d->arg);
        for (int i = 0; i < d->n_out; i++) {
            free(d->keys[i]);
            free(d->values[i]);
        }
        free(d);
        d = next;
    }
}

static delivery_t *deliver(test_op_t *t, const bt_op_call_t *c, bt_op_status_t st,
                           const char *state)
{
    delivery_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cb = c->cb;
    d->arg = c->arg;
    d->status = st;
    snprintf(d->state, sizeof d->state, "%s", state);
    *t->tail = d;
    t->tail = &d->next;
    if (!ev_is_active(&t->kick)) {
        ev_timer_set(&t->kick, 0., 0.);
        ev_timer_start(t->loop, &t->kick);
    }
    return d;
}

static void add_output(delivery_t *d, const char *k, const char *v)
{
    if (d->n_out < BT_OP_MAX_OUTPUTS) {
        d->keys[d->n_out] = strdup(k);
        d->values[d->n_out] = strdup(v);
        d->n_out++;
    }
}

static const char *job_dir(const Baton__V1__TestOp *op)
{
    if (op->dir && *op->dir)
        return op->dir;
    const char *env = getenv("BATON_TEST_OP_DIR");
    return env && *env ? env : NULL;
}

/* DIR/<run key with '/' as '+'>.<ext> */
static int job_path(char *buf, size_t len, const char *dir, const char *key, const char *ext)
{
    int n = snprintf(buf, len, "%s/", dir);
    for (const char *p = key; *p && n > 0 && (size_t)n < len - 1; p++)
        buf[n++] = *p == '/' ? '+' : *p;
    if (n <= 0 || (size_t)n >= len - 1)
        return -1;
    buf[n] = '\0';
    return snprintf(buf + n, len - (size_t)n, ".%s", ext) < (int)(len - (size_t)n) ? 0 : -1;
}

static void append_line(const char *dir, const char *file, const char *line)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dprintf(fd, "%s\n", line);
        close(fd);
    }
}

static void publish(delivery_t *d, const Baton__V1__TestOp *op, const char *key)
{
    for (size_t i = 0; i < op->n_outputs; i++)
        add_output(d, op->outputs[i]->key, op->outputs[i]->value);
    add_output(d, "job_id", key);
}

/* The job's verdict at `now`: RUNNING, SUCCESS or FAILED. */
static bt_op_status_t verdict(const Baton__V1__TestOp *op, uint32_t attempt, int64_t started,
                              int cancelled, const char **state)
{
    if (cancelled) {
        *state = "KILLED";
        return BT_OP_FAILED;
    }
    if (bt_now_ms() < started + (int64_t)op->duration_ms) {
        *state = "RUNNING";
        return BT_OP_RUNNING;
    }
    if (attempt <= op->fail_attempts) {
        *state = "FAILED";
        return BT_OP_FAILED;
    }
    *state = "SUCCEEDED";
    return BT_OP_SUCCESS;
}

static bt_err_t check_job(test_op_t *t, const bt_op_call_t *c, int for_lookup)
{
    const Baton__V1__TestOp *op = c->spec->test_op;
    const char *dir = job_dir(op), *state;
    char path[4096], cpath[4096];
    bt_op_status_t st;
    int64_t started = c->run->started_ms;
    delivery_t *d;

    if (!dir) {
        st = for_lookup ? BT_OP_NOT_FOUND
                        : verdict(op, c->run->attempt, started, 0, &state);
        if (for_lookup)
            state = "NONE";
    } else {
        if (job_path(path, sizeof path, dir, c->run->run_key, "job") ||
            job_path(cpath, sizeof cpath, dir, c->run->run_key, "cancelled"))
            return BT_E_INVAL;
        FILE *f = fopen(path, "r");
        long long s = 0;
        if (!f) {
            st = for_lookup ? BT_OP_NOT_FOUND : BT_OP_FAILED;
            state = for_lookup ? "NONE" : "VANISHED";
        } else {
            if (fscanf(f, "%lld", &s) != 1)
                s = 0;
            fclose(f);
            started = s;
            st = verdict(op, c->run->attempt, started, access(cpath, F_OK) == 0, &state);
            if (for_lookup && st != BT_OP_RUNNING)
                st = BT_OP_RUNNING; /* adopt it; the next poll reports the end */
        }
    }
    if (!(d = deliver(t, c, st, state)))
        return BT_E_NOMEM;
    if (st == BT_OP_SUCCESS)
        publish(d, op, c->run->run_key);
    if (st == BT_OP_FAILED)
        snprintf(d->message, sizeof d->message, "test_op job %s (attempt %u)", state,
                 c->run->attempt);
    return BT_OK;
}

static bt_err_t t_submit(void *ctx, const bt_op_call_t *c)
{
    test_op_t *t = ctx;
    const Baton__V1__TestOp *op = c->spec->test_op;
    const char *dir;
    char path[4096];

    if (!op)
        return BT_E_INVAL;
    if (!(dir = job_dir(op)))
        return check_job(t, c, 0);
    if (job_path(path, sizeof path, dir, c->run->run_key, "job"))
        return BT_E_INVAL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dprintf(fd, "%" PRId64 "\n", bt_now_ms());
        close(fd);
        append_line(dir, "submissions.log", c->run->run_key);
    } else if (errno != EEXIST) {
        return BT_E_IO;
    }
    /* new or already there: either way the job runs under this key */
    return deliver(t, c, BT_OP_RUNNING, "RUNNING") ? BT_OK : BT_E_NOMEM;
}

static bt_err_t t_poll(void *ctx, const bt_op_call_t *c)
{
    return c->spec->test_op ? check_job(ctx, c, 0) : BT_E_INVAL;
}

static bt_err_t t_lookup(void *ctx, const bt_op_call_t *c)
{
    return c->spec->test_op ? check_job(ctx, c, 1) : BT_E_INVAL;
}

static bt_err_t t_cancel(void *ctx, const bt_op_call_t *c)
{
    test_op_t *t = ctx;
    const char *dir = c->spec->test_op ? job_dir(c->spec->test_op) : NULL;
    char path[4096];
    if (dir && !job_path(path, sizeof path, dir, c->run->run_key, "cancelled")) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
        append_line(dir, "cancels.log", c->run->run_key);
    }
    return deliver(t, c, BT_OP_SUCCESS, "KILLED") ? BT_OK : BT_E_NOMEM;
}

bt_err_t bt_test_op_new(struct ev_loop *loop, bt_operator_t **out)
{
    test_op_t *t = calloc(1, sizeof *t);
    if (!t)
        return BT_E_NOMEM;
    t->loop = loop;
    t->tail = &t->head;
    ev_timer_init(&t->kick, on_kick, 0., 0.);
    t->op = (bt_operator_t){
        .name = "test_op",
        .which = BATON__V1__TASK_SPEC__OPERATOR_TEST_OP,
        .poll_interval_ms = 100,
        .submit = t_submit,
        .lookup = t_lookup,
        .poll = t_poll,
        .cancel = t_cancel,
        .ctx = t,
    };
    *out = &t->op;
    return BT_OK;
}

void bt_test_op_free(bt_operator_t *op)
{
    if (!op)
        return;
    test_op_t *t = op->ctx;
    ev_timer_stop(t->loop, &t->kick);
    while (t->head) {
        delivery_t *d = t->head;
        t->head = d->next;
        for (int i = 0; i < d->n_out; i++) {
            free(d->keys[i]);
            free(d->values[i]);
        }
        free(d);
    }
    free(t);
}

#else /* !BATON_TEST_OPERATORS */

bt_err_t bt_test_op_new(struct ev_loop *loop, bt_operator_t **out)
{
    (void)loop;
    *out = NULL;
    return BT_E_INVAL;
}

void bt_test_op_free(bt_operator_t *op)
{
    (void)op;
}

#endif
