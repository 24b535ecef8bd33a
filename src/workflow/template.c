/* {{ }} templates: one tokenizer shared by scan (load-time validation) and
 * render (per attempt), so that what validates is exactly what renders. */
#include "baton/template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rendered values are command lines and S3 paths: anything larger is a
 * runaway template (or an output that is not what it claims to be). */
#define TPL_MAX_OUT (64 * 1024)
/* Task ids are at most 100 characters (workflow.h); output names likewise. */
#define TPL_MAX_NAME 100

typedef enum { EX_LITERAL, EX_RUN_DATE, EX_RUN_ID, EX_RUN_TIME, EX_TASK } ex_kind_t;

typedef struct expr {
    ex_kind_t kind;
    char task[TPL_MAX_NAME + 1];
    char output[TPL_MAX_NAME + 1];
} expr_t;

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* Copies one [A-Za-z0-9_-]+ segment of e[0..len) starting at *pos into buf;
 * returns 0 when the segment is empty or too long. */
static int segment(const char *e, size_t len, size_t *pos, char *buf)
{
    size_t start = *pos;
    while (*pos < len && name_char(e[*pos]))
        (*pos)++;
    size_t n = *pos - start;
    if (n == 0 || n > TPL_MAX_NAME)
        return 0;
    memcpy(buf, e + start, n);
    buf[n] = '\0';
    return 1;
}

/* Classifies the trimmed expression e[0..len). Messages quote at most 60
 * bytes of the expression: a runaway expression must not flood the log. */
static int parse_expr(const char *e, size_t len, expr_t *x, char *err, size_t errlen)
{
    int q = len > 60 ? 60 : (int)len;
    memset(x, 0, sizeof *x);
    if (len == 0) {
        seterr(err, errlen, "empty expression '{{ }}'");
        return -1;
    }
    if (len == 4 && !memcmp(e, "'{{'", 4)) {
        x->kind = EX_LITERAL;
        return 0;
    }
    /* anything but names and dots (operators, filters, quotes, calls) is
     * code, and templates hold none */
    for (size_t i = 0; i < len; i++)
        if (!name_char(e[i]) && e[i] != '.') {
            goto unsupported;
        }
    if (len > 4 && !memcmp(e, "run.", 4)) {
        static const struct {
            const char *name;
            ex_kind_t kind;
        } vars[] = {{"date", EX_RUN_DATE}, {"id", EX_RUN_ID}, {"logical_time", EX_RUN_TIME}};
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
            if (strlen(vars[i].name) == len - 4 && !memcmp(e + 4, vars[i].name, len - 4)) {
                x->kind = vars[i].kind;
                return 0;
            }
        seterr(err, errlen, "unknown variable '%.*s' (run.date, run.id, run.logical_time)", q, e);
        return -1;
    }
    if (len > 6 && !memcmp(e, "tasks.", 6)) {
        size_t pos = 6;
        if (!segment(e, len, &pos, x->task) || pos == len || e[pos] != '.') {
            if (pos == len && x->task[0])
                seterr(err, errlen, "'%.*s' names no output: write tasks.<id>.<output>", q, e);
            else
                seterr(err, errlen, "'%.*s' is not tasks.<id>.<output>", q, e);
            return -1;
        }
        pos++;
        if (!segment(e, len, &pos, x->output) || pos != len) {
            seterr(err, errlen, "'%.*s' is not tasks.<id>.<output>", q, e);
            return -1;
        }
        x->kind = EX_TASK;
        return 0;
    }
unsupported:
    seterr(err, errlen,
           "unsupported expression '%.*s': only run.date, run.id, run.logical_time, "
           "tasks.<id>.<output> and '{{'",
           q, e);
    return -1;
}

/* Visitor of the pieces of a template, in order. */
typedef struct walker {
    bt_err_t (*text)(struct walker *w, const char *s, size_t n);
    bt_err_t (*expr)(struct walker *w, const expr_t *x, size_t off);
} walker_t;

static bt_err_t walk(const char *s, walker_t *w, char *err, size_t errlen, size_t *err_off)
{
    const char *p = s;
    if (!s) {
        seterr(err, errlen, "no template");
        return BT_E_PARSE;
    }
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open)
            break;
        bt_err_t rc = open > p ? w->text(w, p, (size_t)(open - p)) : BT_OK;
        if (rc != BT_OK)
            return rc;
        size_t off = (size_t)(open - s);
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            seterr(err, errlen, "'{{' at offset %zu is not closed by '}}'", off);
            if (err_off)
                *err_off = off;
            return BT_E_PARSE;
        }
        const char *b = open + 2, *e = close;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        expr_t x;
        if (parse_expr(b, (size_t)(e - b), &x, err, errlen) < 0) {
            if (err_off)
                *err_off = off;
            return BT_E_PARSE;
        }
        rc = x.kind == EX_LITERAL ? w->text(w, "{{", 2) : w->expr(w, &x, off);
        if (rc != BT_OK)
            return rc;
        p = close + 2;
    }
    return *p ? w->text(w, p, strlen(p)) : BT_OK;
}

/* ---------------------------------------------------------------- scan */

typedef struct scan_walker {
    walker_t w;
    bt_template_ref_cb ref;
    void *arg;
} scan_walker_t;

static bt_err_t scan_text(walker_t *w, const char *s, size_t n)
{
    (void)w, (void)s, (void)n;
    return BT_OK;
}

static bt_err_t scan_expr(walker_t *w, const expr_t *x, size_t off)
{
    scan_walker_t *sw = (scan_walker_t *)w;
    if (x->kind == EX_TASK && sw->ref)
        sw->ref(x->task, x->output, off, sw->arg);
    return BT_OK;
}

bt_err_t bt_template_scan(const char *s, bt_template_ref_cb ref, void *arg, char *err,
                          size_t errlen, size_t *err_off)
{
    scan_walker_t sw = {{scan_text, scan_expr}, ref, arg};
    return walk(s, &sw.w, err, errlen, err_off);
}

/* ---------------------------------------------------------------- render */

typedef struct render_walker {
    walker_t w;
    const bt_template_ctx_t *ctx;
    char *buf;
    size_t len, cap;
    char *err;
    size_t errlen;
} render_walker_t;

static bt_err_t append(render_walker_t *rw, const char *s, size_t n)
{
    if (n > TPL_MAX_OUT - rw->len) {
        seterr(rw->err, rw->errlen, "the rendered value exceeds %d bytes", TPL_MAX_OUT);
        return BT_E_INVAL;
    }
    if (rw->len + n + 1 > rw->cap) {
        size_t cap = rw->cap ? rw->cap : 64;
        while (cap < rw->len + n + 1)
            cap *= 2;
        char *b = realloc(rw->buf, cap);
        if (!b) {
            seterr(rw->err, rw->errlen, "out of memory");
            return BT_E_NOMEM;
        }
        rw->buf = b;
        rw->cap = cap;
    }
    memcpy(rw->buf + rw->len, s, n);
    rw->len += n;
    rw->buf[rw->len] = '\0';
    return BT_OK;
}

static bt_err_t render_text(walker_t *w, const char *s, size_t n)
{
    return append((render_walker_t *)w, s, n);
}

static bt_err_t render_expr(walker_t *w, const expr_t *x, size_t off)
{
    render_walker_t *rw = (render_walker_t *)w;
    const bt_template_ctx_t *c = rw->ctx;
    const char *v = NULL, *what = NULL;
    (void)off;
    switch (x->kind) {
    case EX_RUN_DATE:
        v = c->run_date, what = "run.date";
        break;
    case EX_RUN_ID:
        v = c->run_id, what = "run.id";
        break;
    case EX_RUN_TIME:
        v = c->logical_time, what = "run.logical_time";
        break;
    case EX_TASK:
        v = c->output ? c->output(x->task, x->output, c->arg) : NULL;
        if (!v) {
            seterr(rw->err, rw->errlen, "task '%s' has not published output '%s'", x->task,
                   x->output);
            return BT_E_NOTFOUND;
        }
        break;
    case EX_LITERAL:
        v = "{{";
        break;
    }
    if (!v) {
        seterr(rw->err, rw->errlen, "%s is not known for this run", what);
        return BT_E_NOTFOUND;
    }
    return append(rw, v, strlen(v));
}

bt_err_t bt_template_render(const char *s, const bt_template_ctx_t *ctx, char **out, char *err,
                            size_t errlen)
{
    static const bt_template_ctx_t empty;
    render_walker_t rw = {{render_text, render_expr}, ctx ? ctx : &empty, NULL, 0, 0, err, errlen};
    if (!out)
        return BT_E_INVAL;
    *out = NULL;
    bt_err_t rc = walk(s, &rw.w, err, errlen, NULL);
    if (rc == BT_OK && !rw.buf)
        rc = append(&rw, "", 0); /* an empty template renders as "" */
    if (rc != BT_OK) {
        free(rw.buf);
        return rc;
    }
    *out = rw.buf;
    return BT_OK;
}
