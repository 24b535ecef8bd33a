/* The loader's small vocabulary: errors with positions and field paths,
 * and typed scalars (strings, numbers, durations, booleans) that report
 * what they expected when the file says something else. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "workflow/workflow_int.h"

static void vreport(wl_ctx_t *c, size_t line, size_t col, const char *path, const char *fmt,
                    va_list ap) __attribute__((format(printf, 5, 0)));
static void vreport(wl_ctx_t *c, size_t line, size_t col, const char *path, const char *fmt,
                    va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    c->errors++;
    size_t before = c->diags->n;
    bt_diags_add(c->diags, c->file, line, col, path, "%s", msg);
    if (c->diags->n == before)
        c->oom = 1;
}

void wl_err(wl_ctx_t *c, const bt_ynode_t *at, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, at ? at->line : 0, at ? at->col : 0, path, fmt, ap);
    va_end(ap);
}

void wl_err_at(wl_ctx_t *c, size_t line, size_t col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, line, col, path, fmt, ap);
    va_end(ap);
}

/* The tree keeps a key's line but not its column: find the key in that
 * line of the source (block mappings, the usual case, always match; a
 * key we cannot find falls back to the line's first non-blank column). */
static size_t key_col(wl_ctx_t *c, size_t line, const char *key)
{
    if (!c->text || line == 0)
        return 1;
    if (!c->line_off) {
        size_t n = 1;
        for (size_t i = 0; i < c->len; i++)
            n += c->text[i] == '\n';
        if (!(c->line_off = malloc(n * sizeof *c->line_off)))
            return 1;
        c->line_off[0] = 0;
        c->n_lines = 1;
        for (size_t i = 0; i < c->len; i++)
            if (c->text[i] == '\n')
                c->line_off[c->n_lines++] = i + 1;
    }
    if (line > c->n_lines)
        return 1;
    const char *t = c->text;
    size_t ls = c->line_off[line - 1], le = ls, klen = strlen(key), at = (size_t)-1;
    while (le < c->len && t[le] != '\n')
        le++;
    for (size_t p = ls; klen && p + klen <= le && at == (size_t)-1; p++) {
        if (memcmp(t + p, key, klen) || (p > ls && !strchr(" \t{,?\"'", t[p - 1])))
            continue;
        size_t q = p + klen;
        if (q < le && (t[q] == '"' || t[q] == '\''))
            q++;
        while (q < le && (t[q] == ' ' || t[q] == '\t'))
            q++;
        if (q < le && t[q] == ':')
            at = p > ls && (t[p - 1] == '"' || t[p - 1] == '\'') ? p - 1 : p;
    }
    if (at == (size_t)-1)
        for (at = ls; at < le && (t[at] == ' ' || t[at] == '-'); at++)
            ;
    /* libyaml counts characters, not bytes */
    size_t col = 1;
    for (size_t i = ls; i < at; i++)
        col += ((unsigned char)t[i] & 0xC0) != 0x80;
    return col;
}

void wl_err_key(wl_ctx_t *c, const bt_ynode_t *map, size_t i, const char *path, const char *fmt,
                ...)
{
    va_list ap;
    size_t line = map->key_lines[i];
    va_start(ap, fmt);
    vreport(c, line, key_col(c, line, map->keys[i]), path, fmt, ap);
    va_end(ap);
}

void wl_path_key(char *buf, const char *parent, const char *key)
{
    snprintf(buf, WL_PATH_MAX, "%s%s%s", parent, *parent ? "." : "", key);
}

void wl_path_index(char *buf, const char *parent, size_t i)
{
    snprintf(buf, WL_PATH_MAX, "%s[%zu]", parent, i);
}

const char *wl_kind(const bt_ynode_t *n)
{
    if (n->kind == BT_YNODE_MAP)
        return "a mapping";
    if (n->kind == BT_YNODE_SEQ)
        return "a list";
    return bt_ynode_is_null(n) ? "nothing" : "a single value";
}

char *wl_strdup(wl_ctx_t *c, const char *s)
{
    char *d = strdup(s);
    if (!d)
        c->oom = 1;
    return d;
}

const char *wl_scalar(wl_ctx_t *c, const bt_ynode_t *n, const char *path, const char *what)
{
    if (n->kind != BT_YNODE_SCALAR || bt_ynode_is_null(n)) {
        wl_err(c, n, path, "expected %s, got %s", what, wl_kind(n));
        return NULL;
    }
    return n->value;
}

/* Decimal only: "010" is ten, not eight, and "0x10" is refused, because a
 * workflow file is read by people who do not know YAML's number rules. */
static int decimal(const char *s, int allow_minus)
{
    if (allow_minus && *s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int wl_uint(wl_ctx_t *c, const bt_ynode_t *n, const char *path, uint64_t max, uint64_t *out)
{
    const char *v = wl_scalar(c, n, path, "a whole number");
    if (!v)
        return -1;
    errno = 0;
    unsigned long long x = decimal(v, 0) ? strtoull(v, NULL, 10) : 0;
    if (!decimal(v, 0) || errno || x > max) {
        wl_err(c, n, path, "expected a whole number from 0 to %llu, got '%s'",
               (unsigned long long)max, v);
        return -1;
    }
    *out = x;
    return 0;
}

int wl_int(wl_ctx_t *c, const bt_ynode_t *n, const char *path, int64_t min, int64_t max,
           int64_t *out)
{
    const char *v = wl_scalar(c, n, path, "a whole number");
    if (!v)
        return -1;
    errno = 0;
    long long x = decimal(v, 1) ? strtoll(v, NULL, 10) : 0;
    if (!decimal(v, 1) || errno || x < min || x > max) {
        wl_err(c, n, path, "expected a whole number from %lld to %lld, got '%s'", (long long)min,
               (long long)max, v);
        return -1;
    }
    *out = x;
    return 0;
}

int wl_duration(wl_ctx_t *c, const bt_ynode_t *n, const char *path, uint64_t *ms)
{
    const char *v = wl_scalar(c, n, path, "a duration");
    if (!v)
        return -1;
    if (bt_duration_parse(v, ms) != BT_OK) {
        wl_err(c, n, path, "'%s' is not a duration (e.g. 500ms, 30s, 10m, 2h, 1h30m)", v);
        return -1;
    }
    return 0;
}

int wl_bool(wl_ctx_t *c, const bt_ynode_t *n, const char *path, int *out)
{
    const char *v = wl_scalar(c, n, path, "true or false");
    if (!v)
        return -1;
    if (!strcmp(v, "true") || !strcmp(v, "false")) {
        *out = v[0] == 't';
        return 0;
    }
    wl_err(c, n, path, "expected true or false, got '%s'", v);
    return -1;
}

void wl_note_template(wl_ctx_t *c, const bt_ynode_t *n, const char *path)
{
    if (n->kind != BT_YNODE_SCALAR || !strstr(n->value, "{{"))
        return;
    if (c->n_tpl == c->cap_tpl) {
        size_t cap = c->cap_tpl ? c->cap_tpl * 2 : 16;
        wl_tpl_t *t = realloc(c->tpl, cap * sizeof *t);
        if (!t) {
            c->oom = 1;
            return;
        }
        c->tpl = t;
        c->cap_tpl = cap;
    }
    char *p = wl_strdup(c, path);
    if (!p)
        return;
    c->tpl[c->n_tpl++] = (wl_tpl_t){c->task, n, p};
}

/* ---------------------------------------------------------- dates */

static int digits(const char **p, int n, int *out)
{
    *out = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return 0;
        *out = *out * 10 + (**p - '0');
    }
    return 1;
}

static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int wl_parse_date(const char *s, int64_t *local_s, int *has_off, int *off_s)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0;
    const char *p = s;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return -1;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
            return -1;
        if (*p == ':' && (p++, !digits(&p, 2, &sec)))
            return -1;
    }
    *has_off = 0;
    if (*p == 'Z') {
        p++;
        *has_off = 1;
        *off_s = 0;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        if (!digits(&p, 2, &oh))
            return -1;
        if (*p == ':')
            p++;
        if (*p && !digits(&p, 2, &om))
            return -1;
        *has_off = 1;
        *off_s = sign * (oh * 3600 + om * 60);
    }
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (*p || mo < 1 || mo > 12 || d < 1 || d > dim[mo - 1] + (mo == 2 && leap) || h > 23 ||
        mi > 59 || sec > 59 || oh > 14 || om > 59)
        return -1;
    *local_s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    return 0;
}
