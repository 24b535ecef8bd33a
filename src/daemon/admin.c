#include "daemon/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baton/log.h"
#include "util/container.h"

#define ADMIN_MAX_REQUEST 2048

typedef struct admin_conn admin_conn_t;

struct bt_admin {
    struct ev_loop *loop;
    int fd;
    ev_io accept_io;
    bt_admin_status_fn fn;
    void *arg;
    admin_conn_t *conns;  /* open connections, closed by bt_admin_stop */
};

struct admin_conn {
    admin_conn_t *next, **prevp;
    bt_admin_t *a;
    ev_io io;
    ev_timer timeout;   /* a client that never finishes its request */
    char buf[ADMIN_MAX_REQUEST];
    size_t len;
};

static void conn_close(admin_conn_t *c)
{
    *c->prevp = c->next;
    if (c->next)
        c->next->prevp = c->prevp;
    ev_io_stop(c->a->loop, &c->io);
    ev_timer_stop(c->a->loop, &c->timeout);
    close(c->io.fd);
    free(c);
}

static void conn_reply(admin_conn_t *c, int code, const char *reason, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     code, reason, strlen(body));
    /* Small replies on a fresh socket: one non-blocking write each is
     * enough in practice; a short write just truncates this reply. */
    if (write(c->io.fd, head, (size_t)n) == n)
        (void)!write(c->io.fd, body, strlen(body));
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    admin_conn_t *c = container_of(w, admin_conn_t, io);
    (void)loop;
    (void)revents;
    ssize_t n = read(w->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (!strstr(c->buf, "\r\n\r\n") && !strstr(c->buf, "\n\n")) {
        if (c->len >= sizeof c->buf - 1) {
            conn_reply(c, 431, "Request Header Fields Too Large", "{\"error\":\"request too large\"}\n");
            conn_close(c);
        }
        return;
    }
    if (!strncmp(c->buf, "GET /status ", 12) || !strncmp(c->buf, "GET /status?", 12)) {
        char *body = c->a->fn(c->a->arg);
        conn_reply(c, 200, "OK", body ? body : "{}");
        free(body);
    } else {
        conn_reply(c, 404, "Not Found", "{\"error\":\"only GET /status\"}\n");
    }
    conn_close(c);
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(container_of(w, admin_conn_t, timeout));
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bt_admin_t *a = container_of(w, bt_admin_t, accept_io);
    (void)revents;
    for (;;) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        admin_conn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->a = a;
        c->next = a->conns;
        c->prevp = &a->conns;
        if (a->conns)
            a->conns->prevp = &c->next;
        a->conns = c;
        ev_io_init(&c->io, conn_read_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
        ev_timer_init(&c->timeout, conn_timeout_cb, 5., 0.);
        ev_timer_start(loop, &c->timeout);
    }
}

bt_err_t bt_admin_start(struct ev_loop *loop, const char *hostport, bt_admin_status_fn fn,
                        void *arg, bt_admin_t **out)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int one = 1;
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return BT_E_CONFIG;
    snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return BT_E_CONFIG;
    sa.sin_port = htons((uint16_t)port);

    bt_admin_t *a = calloc(1, sizeof *a);
    if (!a)
        return BT_E_NOMEM;
    a->loop = loop;
    a->fn = fn;
    a->arg = arg;
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd < 0 || setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(a->fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(a->fd, 64) < 0) {
        bt_error("admin: cannot listen on %s: %s", hostport, strerror(errno));
        if (a->fd >= 0)
            close(a->fd);
        free(a);
        return BT_E_IO;
    }
    ev_io_init(&a->accept_io, accept_cb, a->fd, EV_READ);
    ev_io_start(loop, &a->accept_io);
    *out = a;
    return BT_OK;
}

void bt_admin_stop(bt_admin_t *a)
{
    if (!a)
        return;
    ev_io_stop(a->loop, &a->accept_io);
    while (a->conns) /* a client mid-request at exit */
        conn_close(a->conns);
    close(a->fd);
    free(a);
}
