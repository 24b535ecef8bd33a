/* batonctl task logs|retry|kill, run clear (in cmd_runs.c's `run`), events.
 * Changes go in as task_requests rows the leader acts on under its fence;
 * batonctl never writes a task run itself. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/record.h"
#include "cli/cli.h"
#include "cli/queries.h"

/* Splits "<wf>/<run>/<task>/<attempt>" (attempt optional). */
static int split_key(const char *key, char *wf, char *run, char *task, size_t len)
{
    const char *a = strchr(key, '/'), *b = a ? strchr(a + 1, '/') : NULL;
    if (!a || !b || a == key || b == a + 1 || !b[1])
        return -1;
    const char *c = strchr(b + 1, '/');
    snprintf(wf, len, "%.*s", (int)(a - key), key);
    snprintf(run, len, "%.*s", (int)(b - a - 1), a + 1);
    snprintf(task, len, "%.*s", c ? (int)(c - b - 1) : (int)strlen(b + 1), b + 1);
    return 0;
}

static int request(bt_cli_t *cli, const char *action, const char *wf, const char *run,
                   const char *task, int only_failed)
{
    PGconn *c;
    int rc = bt_cli_pg(cli, &c);
    if (rc != BT_EXIT_OK)
        return rc;
    const char *who = getenv("USER");
    const char *vals[7] = {cli->cfg.cluster, action, wf, run, task, only_failed ? "t" : "f",
                           who ? who : ""};
    PGresult *r = bt_cli_query(c, BT_SQL_TASK_REQUEST_INSERT, 7, vals);
    rc = BT_EXIT_FAILED;
    if (r && PQntuples(r) == 1) {
        printf("requested %s of %s/%s%s%s (request %s); the leader applies it\n", action, wf,
               run, task ? "/" : "", task ? task : "", PQgetvalue(r, 0, 0));
        rc = BT_EXIT_OK;
    } else if (r) {
        fprintf(stderr, "batonctl: no such task run %s/%s%s%s\n", wf, run, task ? "/" : "",
                task ? task : "");
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

static int task_logs(bt_cli_t *cli, const char *key)
{
    char wf[256], run[256], task[256];
    PGconn *c;
    int rc;
    if (split_key(key, wf, run, task, sizeof wf)) {
        fprintf(stderr, "batonctl: '%s' is not a task-run key (WORKFLOW/RUN/TASK[/ATTEMPT])\n",
                key);
        return BT_EXIT_USAGE;
    }
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    const char *vals[4] = {cli->cfg.cluster, wf, run, task};
    PGresult *r = bt_cli_query(c, BT_SQL_TASK_ATTEMPTS, 4, vals);
    json_t *arr = json_array();
    rc = r && PQntuples(r) ? BT_EXIT_OK : BT_EXIT_FAILED;
    if (rc != BT_EXIT_OK)
        fprintf(stderr, "batonctl: no task run %s\n", key);
    for (int i = 0; r && i < PQntuples(r); i++) {
        size_t len;
        unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 0), &len);
        bt_task_run_t *t = b ? baton__v1__task_run__unpack(NULL, len, b) : NULL;
        PQfreemem(b);
        if (!t)
            continue;
        const Baton__V1__TaskError *e = t->error;
        const Baton__V1__RemoteHandle *h = t->handle;
        json_t *outs = json_object();
        for (size_t k = 0; k < t->n_outputs; k++)
            json_object_set_new(outs, t->outputs[k]->key, json_string(t->outputs[k]->value));
        json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:o}", "run_key", t->run_key,
                              "attempt", (int)t->attempt, "state", bt_task_state_name(t->state),
                              "remote_state", h && h->remote_state ? h->remote_state : "",
                              "error_code", e && e->code ? e->code : "", "error",
                              e && e->message ? e->message : "", "detail",
                              e && e->detail ? e->detail : "", "outputs", outs);
        /* where the remote work lives (a cluster's Livy, a task's Genie) */
        const char *endpoint = h && h->endpoint ? h->endpoint : "";
        json_object_set_new(o, "endpoint", json_string(endpoint));
        if (!cli->json) {
            printf("== %s  attempt %u  %s%s%s\n", t->run_key, t->attempt,
                   bt_task_state_name(t->state), h && h->remote_state && *h->remote_state ? "  remote " : "",
                   h && h->remote_state ? h->remote_state : "");
            if (*endpoint)
                printf("endpoint %s\n", endpoint);
            if (e && e->message && *e->message)
                printf("error (%s): %s\n", e->code, e->message);
            if (e && e->detail && *e->detail)
                printf("%s\n", e->detail);
            for (size_t k = 0; k < t->n_outputs; k++)
                printf("output %s = %s\n", t->outputs[k]->key, t->outputs[k]->value);
        }
        json_array_append_new(arr, o);
        baton__v1__task_run__free_unpacked(t, NULL);
    }
    if (cli->json)
        bt_cli_print_json(arr);
    else
        json_decref(arr);
    PQclear(r);
    PQfinish(c);
    return rc;
}

int bt_cmd_task(bt_cli_t *cli, int argc, char **argv)
{
    char wf[256], run[256], task[256];
    if (argc == 3 && !strcmp(argv[1], "logs"))
        return task_logs(cli, argv[2]);
    if (argc == 3 && (!strcmp(argv[1], "retry") || !strcmp(argv[1], "kill"))) {
        if (split_key(argv[2], wf, run, task, sizeof wf)) {
            fprintf(stderr, "batonctl: '%s' is not a task-run key\n", argv[2]);
            return BT_EXIT_USAGE;
        }
        return request(cli, argv[1], wf, run, task, 0);
    }
    fprintf(stderr, "usage: batonctl task logs|retry|kill RUN_KEY\n");
    return BT_EXIT_USAGE;
}

int bt_cli_run_clear(bt_cli_t *cli, const char *wf, const char *run, int only_failed)
{
    return request(cli, "clear", wf, run, NULL, only_failed);
}

int bt_cmd_events(bt_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"since", required_argument, NULL, 's'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    uint64_t since = 3600000;
    const char *limit = "100";
    int o, rc;
    optind = 0;
    while ((o = getopt_long(argc, argv, "s:l:", opts, NULL)) != -1) {
        if (o == 's' && bt_duration_parse(optarg, &since) == BT_OK)
            continue;
        if (o == 'l' && atoi(optarg) > 0) {
            limit = optarg;
            continue;
        }
        fprintf(stderr, "usage: batonctl events [--since DURATION] [--limit N]\n");
        return BT_EXIT_USAGE;
    }
    PGconn *c;
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    char ms[24];
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)since);
    const char *vals[3] = {cli->cfg.cluster, ms, limit};
    PGresult *r = bt_cli_query(c, BT_SQL_EVENT_LIST, 3, vals);
    json_t *arr = json_array();
    for (int i = 0; r && i < PQntuples(r); i++) {
        if (cli->json) {
            json_t *d = json_loads(PQgetvalue(r, i, 8), 0, NULL);
            json_array_append_new(
                arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "id",
                               (json_int_t)atoll(PQgetvalue(r, i, 0)), "at", PQgetvalue(r, i, 1),
                               "kind", PQgetvalue(r, i, 2), "node", PQgetvalue(r, i, 3), "epoch",
                               PQgetvalue(r, i, 4), "run_key", PQgetvalue(r, i, 5), "from",
                               PQgetvalue(r, i, 6), "to", PQgetvalue(r, i, 7), "detail",
                               d ? d : json_null()));
        } else {
            printf("%s  %-15s %-10s %s%s%s%s%s %s\n", PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                   PQgetvalue(r, i, 3), PQgetvalue(r, i, 5), *PQgetvalue(r, i, 6) ? " " : "",
                   PQgetvalue(r, i, 6), *PQgetvalue(r, i, 7) ? " -> " : "", PQgetvalue(r, i, 7),
                   PQgetvalue(r, i, 8));
        }
    }
    if (cli->json)
        bt_cli_print_json(arr);
    else
        json_decref(arr);
    rc = r ? BT_EXIT_OK : BT_EXIT_FAILED;
    PQclear(r);
    PQfinish(c);
    return rc;
}
