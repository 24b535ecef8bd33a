/* Task graphs. Everything is iterative: a workflow may have thousands of
 * tasks in a chain, and recursion that deep is a stack overflow waiting. */
#include "baton/dag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORDS(n) (((n) + 63) / 64)

bt_err_t bt_dag_init(bt_dag_t *g, size_t n)
{
    memset(g, 0, sizeof *g);
    g->n = n;
    if (n == 0)
        return BT_OK;
    g->n_up = calloc(n, sizeof *g->n_up);
    g->up = calloc(n, sizeof *g->up);
    g->reach = calloc(n, sizeof *g->reach);
    if (!g->n_up || !g->up || !g->reach) {
        bt_dag_free(g);
        return BT_E_NOMEM;
    }
    return BT_OK;
}

void bt_dag_free(bt_dag_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        if (g->up)
            free(g->up[i]);
        if (g->reach)
            free(g->reach[i]);
    }
    free(g->n_up);
    free(g->up);
    free(g->reach);
    memset(g, 0, sizeof *g);
}

bt_err_t bt_dag_add_edge(bt_dag_t *g, size_t node, size_t upstream)
{
    if (node >= g->n || upstream >= g->n)
        return BT_E_INVAL;
    /* capacity doubles at powers of two: amortised O(1) without a field */
    size_t k = g->n_up[node];
    if ((k & (k - 1)) == 0) {
        size_t *a = realloc(g->up[node], (k ? 2 * k : 1) * sizeof *a);
        if (!a)
            return BT_E_NOMEM;
        g->up[node] = a;
    }
    g->up[node][g->n_up[node]++] = upstream;
    /* a new edge invalidates every cached closure */
    if (g->n_reach) {
        for (size_t i = 0; i < g->n; i++) {
            free(g->reach[i]);
            g->reach[i] = NULL;
        }
        g->n_reach = 0;
    }
    return BT_OK;
}

/* Downstream adjacency in CSR form: down[start[i] .. start[i+1]) are the
 * nodes that depend on i, in increasing order (edges are added by node). */
static int downstreams(const bt_dag_t *g, size_t **start_out, size_t **down_out)
{
    size_t n = g->n, m = 0;
    for (size_t i = 0; i < n; i++)
        m += g->n_up[i];
    size_t *start = calloc(n + 1, sizeof *start), *down = malloc((m ? m : 1) * sizeof *down);
    size_t *fill = calloc(n ? n : 1, sizeof *fill);
    if (!start || !down || !fill) {
        free(start), free(down), free(fill);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g->n_up[i]; k++)
            start[g->up[i][k] + 1]++;
    for (size_t i = 0; i < n; i++)
        start[i + 1] += start[i];
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g->n_up[i]; k++) {
            size_t u = g->up[i][k];
            down[start[u] + fill[u]++] = i;
        }
    free(fill);
    *start_out = start;
    *down_out = down;
    return 0;
}

/* A binary min-heap of node indices: the lowest ready node comes next. */
static void heap_push(size_t *h, size_t *len, size_t v)
{
    size_t i = (*len)++;
    for (; i && h[(i - 1) / 2] > v; i = (i - 1) / 2)
        h[i] = h[(i - 1) / 2];
    h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *len)
{
    size_t top = h[0], v = h[--*len], i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *len)
            break;
        if (c + 1 < *len && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

bt_err_t bt_dag_toposort(const bt_dag_t *g, size_t *order)
{
    size_t n = g->n, done = 0, hlen = 0;
    if (n == 0)
        return BT_OK;
    size_t *start, *down;
    size_t *pending = malloc(n * sizeof *pending), *heap = malloc(n * sizeof *heap);
    if (!pending || !heap || downstreams(g, &start, &down) < 0) {
        free(pending), free(heap);
        return BT_E_NOMEM;
    }
    /* Kahn's algorithm, always taking the lowest ready index, so the order
     * depends on the graph only */
    for (size_t i = 0; i < n; i++)
        if ((pending[i] = g->n_up[i]) == 0)
            heap_push(heap, &hlen, i);
    while (hlen) {
        size_t v = heap_pop(heap, &hlen);
        order[done++] = v;
        for (size_t k = start[v]; k < start[v + 1]; k++)
            if (--pending[down[k]] == 0)
                heap_push(heap, &hlen, down[k]);
    }
    free(pending), free(heap), free(start), free(down);
    return done == n ? BT_OK : BT_E_INVAL;
}

/* Marks in `seen` every node reachable from v along up (dir 0) or down
 * (dir 1) edges, v excluded unless a cycle leads back to it. */
static void reach_from(const bt_dag_t *g, const size_t *start, const size_t *down, size_t v,
                       int dir, unsigned char *seen, size_t *stack)
{
    size_t sp = 0;
    stack[sp++] = v;
    while (sp) {
        size_t x = stack[--sp];
        size_t cnt = dir ? start[x + 1] - start[x] : g->n_up[x];
        for (size_t k = 0; k < cnt; k++) {
            size_t y = dir ? down[start[x] + k] : g->up[x][k];
            if (!seen[y]) {
                seen[y] = 1;
                stack[sp++] = y;
            }
        }
    }
}

size_t bt_dag_cycles(const bt_dag_t *g, bt_dag_cycle_cb cb, void *arg)
{
    size_t n = g->n, found = 0;
    if (n == 0)
        return 0;
    size_t *order = malloc(n * sizeof *order), *start = NULL, *down = NULL;
    size_t *stack = malloc((n + 1) * sizeof *stack), *parent = malloc(n * sizeof *parent);
    size_t *path = malloc((n + 1) * sizeof *path);
    unsigned char *fw = malloc(n), *bw = malloc(n), *done = calloc(n, 1);
    if (!order || !stack || !parent || !path || !fw || !bw || !done ||
        downstreams(g, &start, &down) < 0)
        goto out;
    if (bt_dag_toposort(g, order) == BT_OK)
        goto out;
    for (size_t v = 0; v < n; v++) {
        if (done[v])
            continue;
        /* v's strongly connected component: reachable both ways */
        memset(fw, 0, n);
        memset(bw, 0, n);
        reach_from(g, start, down, v, 0, fw, stack);
        if (!fw[v]) { /* v is on no cycle */
            done[v] = 1;
            continue;
        }
        reach_from(g, start, down, v, 1, bw, stack);
        for (size_t i = 0; i < n; i++)
            if (fw[i] && bw[i])
                done[i] = 1;
        /* shortest way back to v along up edges, within the component
         * (breadth first, neighbours in insertion order: deterministic) */
        size_t head = 0, tail = 0, last = n;
        memset(bw, 0, n);
        stack[tail++] = v;
        while (head < tail && last == n) {
            size_t x = stack[head++];
            for (size_t k = 0; k < g->n_up[x]; k++) {
                size_t y = g->up[x][k];
                if (y == v) {
                    last = x;
                    break;
                }
                if (fw[y] && !bw[y]) {
                    bw[y] = 1;
                    parent[y] = x;
                    stack[tail++] = y;
                }
            }
        }
        /* walk back from `last` to v, then reverse into path order */
        size_t len = 0;
        path[len++] = v;
        for (size_t x = last; x != v; x = parent[x])
            path[len++] = x;
        path[len++] = v;
        for (size_t i = 1, j = len - 2; i < j; i++, j--) {
            size_t t = path[i];
            path[i] = path[j];
            path[j] = t;
        }
        found++;
        if (cb)
            cb(path, len, arg);
    }
out:
    free(order), free(stack), free(parent), free(path), free(fw), free(bw), free(done);
    free(start), free(down);
    return found;
}

int bt_dag_is_upstream(bt_dag_t *g, size_t node, size_t up)
{
    if (node >= g->n || up >= g->n)
        return 0;
    if (!g->reach[node]) {
        size_t words = WORDS(g->n);
        uint64_t *row = calloc(words, sizeof *row);
        size_t *stack = malloc((g->n + 1) * sizeof *stack); /* node may come twice */
        if (!row || !stack) {
            free(row), free(stack);
            return -1;
        }
        /* depth-first over up edges; a node whose closure is already known
         * contributes it wholesale instead of being walked again */
        size_t sp = 0;
        stack[sp++] = node;
        while (sp) {
            size_t x = stack[--sp];
            for (size_t k = 0; k < g->n_up[x]; k++) {
                size_t y = g->up[x][k];
                if (row[y / 64] >> (y % 64) & 1)
                    continue;
                row[y / 64] |= (uint64_t)1 << (y % 64);
                if (g->reach[y] && y != node)
                    for (size_t w = 0; w < words; w++)
                        row[w] |= g->reach[y][w];
                else
                    stack[sp++] = y;
            }
        }
        free(stack);
        g->reach[node] = row;
        g->n_reach++;
    }
    return (int)(g->reach[node][up / 64] >> (up % 64) & 1);
}

void bt_dag_format_path(const size_t *path, size_t len, const char *const *names, char *buf,
                        size_t buflen)
{
    size_t used = 0;
    if (!buflen)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < len && used < buflen; i++) {
        int w = snprintf(buf + used, buflen - used, "%s%s", i ? " -> " : "", names[path[i]]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}
