/* Diagnostics of workflow loading: a growable list of
 * "file:line:col: field: message" entries. */
#include "baton/workflow.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bt_diags_init(bt_diags_t *d)
{
    memset(d, 0, sizeof *d);
}

void bt_diags_free(bt_diags_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].file);
        free(d->items[i].field);
        free(d->items[i].msg);
    }
    free(d->items);
    memset(d, 0, sizeof *d);
}

void bt_diags_add(bt_diags_t *d, const char *file, size_t line, size_t col,
                  const char *field, const char *fmt, ...)
{
    if (!d)
        return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        bt_diag_t *items = realloc(d->items, cap * sizeof *items);
        if (!items)
            return; /* out of memory: the caller still sees its return code */
        d->items = items;
        d->cap = cap;
    }
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        msg = NULL;
    bt_diag_t *it = &d->items[d->n];
    it->file = strdup(file ? file : "");
    it->field = strdup(field ? field : "");
    it->msg = msg;
    it->line = line;
    it->col = col;
    if (!it->file || !it->field || !it->msg) {
        free(it->file);
        free(it->field);
        free(it->msg);
        return;
    }
    d->n++;
}

void bt_diags_print(const bt_diags_t *d, FILE *out)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        const bt_diag_t *it = &d->items[i];
        fputs(it->file, out);
        /* 0 means "the whole file": no position to print */
        if (it->line)
            fprintf(out, ":%zu:%zu", it->line, it->col);
        fputs(": ", out);
        if (*it->field)
            fprintf(out, "%s: ", it->field);
        fprintf(out, "%s\n", it->msg);
    }
}
