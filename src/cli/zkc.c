/* batonctl's ZooKeeper: the same single-threaded client the daemon uses
 * (net/zk.c on libev), made synchronous by running a private loop until
 * each call completes or the command's timeout passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "cli/zkc.h"

struct bt_zkc {
    struct ev_loop *loop;
    bt_zk_t *zk;
    int connected;
    int64_t deadline;
    char base[512];
};

typedef struct wait {
    int done;
    int rc;
    char *data;
    int len;
    struct String_vector names;
    int64_t czxid;
} wait_t;

static void on_session(bt_zk_t *zk, bt_zk_event_t ev, void *arg)
{
    bt_zkc_t *z = arg;
    (void)zk;
    z->connected = ev == BT_ZK_CONNECTED;
}

static int run_until(bt_zkc_t *z, const int *flag)
{
    while (!*flag) {
        if (bt_mono_ms() > z->deadline)
            return -1;
        ev_run(z->loop, EVRUN_ONCE);
    }
    return 0;
}

/* The loop must wake up to notice the deadline even when nothing happens. */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

bt_zkc_t *bt_zkc_open(const bt_config_t *cfg, uint32_t timeout_ms, char *err, size_t errlen)
{
    static ev_timer tick;
    bt_zkc_t *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->loop = ev_loop_new(EVFLAG_AUTO);
    z->deadline = bt_mono_ms() + timeout_ms;
    snprintf(z->base, sizeof z->base, "%s/%s", cfg->zk_root ? cfg->zk_root : "/baton",
             cfg->cluster);
    ev_timer_init(&tick, on_tick, 0.05, 0.05);
    ev_timer_start(z->loop, &tick);
    bt_zk_opts_t o = {.hosts = cfg->zk_hosts,
                      .session_timeout_ms = 10000,
                      .digest_auth = cfg->zk_auth,
                      .cb = on_session,
                      .arg = z};
    if (bt_zk_new(z->loop, &o, &z->zk) != BT_OK || run_until(z, &z->connected)) {
        snprintf(err, errlen, "cannot reach ZooKeeper at %s within %u ms", cfg->zk_hosts,
                 timeout_ms);
        bt_zkc_close(z);
        return NULL;
    }
    return z;
}

void bt_zkc_close(bt_zkc_t *z)
{
    if (!z)
        return;
    bt_zk_free(z->zk);
    ev_loop_destroy(z->loop);
    free(z);
}

const char *bt_zkc_base(const bt_zkc_t *z)
{
    return z->base;
}

static void on_data(int rc, const char *value, int len, const struct Stat *stat, const void *d)
{
    wait_t *w = (wait_t *)d;
    w->rc = rc;
    if (rc == ZOK && value && len >= 0) {
        w->data = malloc((size_t)len + 1);
        if (w->data) {
            memcpy(w->data, value, (size_t)len);
            w->data[len] = '\0';
            w->len = len;
        }
    }
    if (rc == ZOK && stat)
        w->czxid = stat->czxid;
    w->done = 1;
}

int bt_zkc_get(bt_zkc_t *z, const char *rel, char **out, int64_t *czxid)
{
    char path[1024];
    wait_t w = {0};
    snprintf(path, sizeof path, "%s%s%s", z->base, *rel ? "/" : "", rel);
    if (zoo_aget(bt_zk_handle(z->zk), path, 0, on_data, &w) != ZOK || run_until(z, &w.done))
        return ZOPERATIONTIMEOUT;
    *out = w.data;
    if (czxid)
        *czxid = w.czxid;
    return w.rc;
}

static void on_children(int rc, const struct String_vector *names, const void *d)
{
    wait_t *w = (wait_t *)d;
    w->rc = rc;
    if (rc == ZOK && names) {
        w->names.count = names->count;
        w->names.data = calloc((size_t)names->count + 1, sizeof(char *));
        for (int i = 0; w->names.data && i < names->count; i++)
            w->names.data[i] = strdup(names->data[i]);
    }
    w->done = 1;
}

int bt_zkc_children(bt_zkc_t *z, const char *rel, char ***names, int *count)
{
    char path[1024];
    wait_t w = {0};
    snprintf(path, sizeof path, "%s/%s", z->base, rel);
    if (zoo_aget_children(bt_zk_handle(z->zk), path, 0, on_children, &w) != ZOK ||
        run_until(z, &w.done))
        return ZOPERATIONTIMEOUT;
    *names = w.names.data;
    *count = w.names.count;
    return w.rc;
}

void bt_zkc_free_names(char **names, int count)
{
    for (int i = 0; names && i < count; i++)
        free(names[i]);
    free(names);
}

static void on_string(int rc, const char *value, const void *d)
{
    wait_t *w = (wait_t *)d;
    (void)value;
    w->rc = rc;
    w->done = 1;
}

static void on_void(int rc, const void *d)
{
    wait_t *w = (wait_t *)d;
    w->rc = rc;
    w->done = 1;
}

int bt_zkc_create(bt_zkc_t *z, const char *rel, const char *data)
{
    char path[1024];
    wait_t w = {0};
    snprintf(path, sizeof path, "%s/%s", z->base, rel);
    if (zoo_acreate(bt_zk_handle(z->zk), path, data, data ? (int)strlen(data) : -1,
                    bt_zk_acl(z->zk), 0, on_string, &w) != ZOK ||
        run_until(z, &w.done))
        return ZOPERATIONTIMEOUT;
    return w.rc;
}

int bt_zkc_delete(bt_zkc_t *z, const char *rel)
{
    char path[1024];
    wait_t w = {0};
    snprintf(path, sizeof path, "%s/%s", z->base, rel);
    if (zoo_adelete(bt_zk_handle(z->zk), path, -1, on_void, &w) != ZOK || run_until(z, &w.done))
        return ZOPERATIONTIMEOUT;
    return w.rc;
}

void bt_zkc_pump(bt_zkc_t *z, uint32_t ms)
{
    int64_t until = bt_mono_ms() + ms;
    while (bt_mono_ms() < until)
        ev_run(z->loop, EVRUN_ONCE);
}

void bt_zkc_extend(bt_zkc_t *z, uint32_t ms)
{
    z->deadline = bt_mono_ms() + ms;
}
