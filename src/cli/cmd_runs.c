/* batonctl pause|unpause|trigger|backfill|runs|run show|pool: the workflow
 * life cycle. Requests go through PostgreSQL rows the dispatcher reads
 * (run_requests); nothing here writes a run or a task run itself. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton/clock.h"
#include "baton/cron.h"
#include "baton/pg.h"
#include "baton/record.h"
#include "baton/workflow.h"
#include "cli/cli.h"
#include "cli/queries.h"

static int set_paused(bt_cli_t *cli, int argc, char **argv, const char *flag)
{
    PGconn *c;
    int rc;
    if (argc != 2) {
        fprintf(stderr, "usage: batonctl %s ID\n", argv[0]);
        return BT_EXIT_USAGE;
    }
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    const char *vals[3] = {cli->cfg.cluster, argv[1], flag};
    PGresult *r = bt_cli_query(c, BT_SQL_WORKFLOW_SET_PAUSED, 3, vals);
    rc = BT_EXIT_FAILED;
    if (r && !strcmp(PQgetvalue(r, 0, 0), "ok")) {
        printf("%s %s\n", argv[1], flag[0] == 't' ? "paused" : "unpaused");
        rc = BT_EXIT_OK;
    } else if (r) {
        fprintf(stderr, "batonctl: no workflow '%s'\n", argv[1]);
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

int bt_cmd_pause(bt_cli_t *cli, int argc, char **argv)
{
    return set_paused(cli, argc, argv, "true");
}

int bt_cmd_unpause(bt_cli_t *cli, int argc, char **argv)
{
    return set_paused(cli, argc, argv, "false");
}

/* Inserts one run request; prints its id. */
static int request_run(PGconn *c, bt_cli_t *cli, const char *wf, const char *kind,
                       const char *logical_sql, const char *conf)
{
    const char *who = getenv("USER");
    const char *vals[6] = {cli->cfg.cluster, wf, kind, logical_sql, conf, who ? who : ""};
    PGresult *r = bt_cli_query(c, BT_SQL_RUN_REQUEST_INSERT, 6, vals);
    if (!r)
        return BT_EXIT_FAILED;
    int ok = PQntuples(r) == 1;
    if (!ok)
        fprintf(stderr, "batonctl: no workflow '%s'\n", wf);
    else if (!logical_sql || !strcmp(kind, "manual"))
        printf("requested a manual run of %s (request %s)\n", wf, PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok ? BT_EXIT_OK : BT_EXIT_FAILED;
}

int bt_cmd_trigger(bt_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"conf", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    const char *conf = NULL;
    int o, rc;
    PGconn *c;
    optind = 0; /* 0: GNU getopt starts afresh, permuting again */
    while ((o = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        if (o != 'c')
            return BT_EXIT_USAGE;
        conf = optarg;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: batonctl trigger ID [--conf JSON]\n");
        return BT_EXIT_USAGE;
    }
    if (conf) {
        json_error_t je;
        json_t *j = json_loads(conf, 0, &je);
        if (!json_is_object(j)) {
            fprintf(stderr, "batonctl: --conf: not a JSON object: %s\n",
                    j ? "another JSON value" : je.text);
            json_decref(j);
            return BT_EXIT_USAGE;
        }
        json_decref(j);
    }
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    rc = request_run(c, cli, argv[optind], "manual", NULL, conf);
    PQfinish(c);
    return rc;
}

/* "2026-01-31" or a full ISO time, as local time in tz. */
static int parse_day(const char *s, const bt_tz_t *tz, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0;
    if (sscanf(s, "%d-%d-%dT%d:%d", &y, &mo, &d, &h, &mi) < 3)
        return -1;
    /* walk from a UTC guess to the local midnight via the zone's offset */
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi};
    int64_t guess = (int64_t)timegm(&tm) * 1000;
    bt_local_time_t lt;
    bt_tz_to_local(tz, guess, &lt);
    *out = guess - (int64_t)lt.utc_offset_s * 1000;
    return 0;
}

int bt_cmd_backfill(bt_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, NULL, 'f'},
                                         {"to", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    const char *from = NULL, *to = NULL;
    int o, rc;
    optind = 0; /* 0: GNU getopt starts afresh, permuting again */
    while ((o = getopt_long(argc, argv, "f:t:", opts, NULL)) != -1) {
        if (o == 'f')
            from = optarg;
        else if (o == 't')
            to = optarg;
        else
            return BT_EXIT_USAGE;
    }
    if (optind != argc - 1 || !from || !to) {
        fprintf(stderr, "usage: batonctl backfill ID --from DATE --to DATE\n");
        return BT_EXIT_USAGE;
    }
    PGconn *c;
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    const char *vals[2] = {cli->cfg.cluster, argv[optind]};
    PGresult *r = bt_cli_query(c, BT_SQL_WORKFLOW_SPEC, 2, vals);
    bt_workflow_spec_t *s = NULL;
    if (r && PQntuples(r) == 1) {
        size_t len;
        unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &len);
        s = b ? baton__v1__workflow_spec__unpack(NULL, len, b) : NULL;
        PQfreemem(b);
    }
    PQclear(r);
    bt_cron_t *cron = NULL;
    bt_tz_t *tz = NULL;
    char err[256];
    int64_t t0, t1, t;
    rc = BT_EXIT_FAILED;
    if (!s) {
        fprintf(stderr, "batonctl: no workflow '%s'\n", argv[optind]);
    } else if (!*s->schedule) {
        fprintf(stderr, "batonctl: %s has no schedule; use trigger\n", s->id);
    } else if (bt_cron_parse(s->schedule, &cron, err, sizeof err) != BT_OK ||
               bt_tz_load(*s->timezone ? s->timezone : "UTC", &tz, err, sizeof err) != BT_OK) {
        fprintf(stderr, "batonctl: %s: %s\n", s->id, err);
    } else if (parse_day(from, tz, &t0) || parse_day(to, tz, &t1) || t1 < t0) {
        fprintf(stderr, "batonctl: --from/--to: want YYYY-MM-DD, from <= to\n");
        rc = BT_EXIT_USAGE;
    } else if ((rc = bt_cli_begin(c)) == BT_EXIT_OK) {
        /* every request or none; the count is printed once they are in */
        int n = 0;
        /* --to is inclusive: every schedule time before the next day */
        for (t = t0 - 1; rc == BT_EXIT_OK && bt_cron_next(cron, tz, t, &t) == BT_OK &&
                         t < t1 + 86400000 && n < 10000;
             n++) {
            char when[40];
            bt_ms_to_pg_time(t, when);
            rc = request_run(c, cli, s->id, "backfill", when, NULL);
        }
        if (rc != BT_EXIT_OK)
            bt_cli_rollback(c);
        else
            rc = bt_cli_commit(c, "no backfill run requested");
        if (rc == BT_EXIT_OK)
            printf("requested %d backfill runs of %s\n", n, s->id);
    }
    bt_cron_free(cron);
    bt_tz_free(tz);
    if (s)
        baton__v1__workflow_spec__free_unpacked(s, NULL);
    PQfinish(c);
    return rc;
}

int bt_cmd_runs(bt_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"workflow", required_argument, NULL, 'w'},
                                         {"state", required_argument, NULL, 's'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    const char *wf = NULL, *state = NULL, *limit = "50";
    int o, rc;
    optind = 0; /* 0: GNU getopt starts afresh, permuting again */
    while ((o = getopt_long(argc, argv, "w:s:l:", opts, NULL)) != -1) {
        if (o == 'w')
            wf = optarg;
        else if (o == 's')
            state = optarg;
        else if (o == 'l')
            limit = optarg;
        else
            return BT_EXIT_USAGE;
    }
    if (optind != argc || atoi(limit) <= 0) {
        fprintf(stderr, "usage: batonctl runs [--workflow ID] [--state S] [--limit N]\n");
        return BT_EXIT_USAGE;
    }
    PGconn *c;
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    const char *vals[4] = {cli->cfg.cluster, wf, state, limit};
    PGresult *r = bt_cli_query(c, BT_SQL_RUN_LIST, 4, vals);
    if (!r) {
        PQfinish(c);
        return BT_EXIT_FAILED;
    }
    json_t *arr = json_array();
    if (!cli->json)
        printf("%-24s %-44s %-9s %-9s %-21s %s\n", "WORKFLOW", "RUN", "STATE", "KIND",
               "LOGICAL TIME (UTC)", "TASKS OK");
    for (int i = 0; i < PQntuples(r); i++) {
        if (cli->json)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "workflow",
                                                 PQgetvalue(r, i, 0), "run_id",
                                                 PQgetvalue(r, i, 1), "state",
                                                 PQgetvalue(r, i, 2), "kind", PQgetvalue(r, i, 3),
                                                 "logical_time", PQgetvalue(r, i, 4),
                                                 "tasks_succeeded", PQgetvalue(r, i, 5)));
        else
            printf("%-24s %-44s %-9s %-9s %-21s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                   PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                   PQgetvalue(r, i, 5));
    }
    if (cli->json)
        bt_cli_print_json(arr);
    else
        json_decref(arr);
    PQclear(r);
    PQfinish(c);
    return BT_EXIT_OK;
}

static const char *handle_text(const bt_task_run_t *t, char *buf, size_t len)
{
    const Baton__V1__RemoteHandle *h = t->handle;
    buf[0] = '\0';
    if (!h)
        return "-";
    if (h->emr_step_id && *h->emr_step_id)
        snprintf(buf, len, "%s/%s", h->emr_cluster_id, h->emr_step_id);
    else if (h->emr_cluster_id && *h->emr_cluster_id)
        snprintf(buf, len, "%s", h->emr_cluster_id);
    else if (h->genie_job_id && *h->genie_job_id)
        snprintf(buf, len, "genie:%s", h->genie_job_id);
    else if (h->livy_batch_id >= 0 || h->livy_session_id >= 0)
        snprintf(buf, len, "livy %s %lld%s%s", h->livy_batch_id >= 0 ? "batch" : "session",
                 (long long)(h->livy_batch_id >= 0 ? h->livy_batch_id : h->livy_session_id),
                 h->endpoint && *h->endpoint ? " at " : "", h->endpoint ? h->endpoint : "");
    else if (h->endpoint && *h->endpoint)
        snprintf(buf, len, "%s", h->endpoint);
    return buf[0] ? buf : "-";
}

int bt_cmd_run(bt_cli_t *cli, int argc, char **argv)
{
    int rc;
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "clear")) {
        if (argc == 5 && strcmp(argv[4], "--failed"))
            return BT_EXIT_USAGE;
        return bt_cli_run_clear(cli, argv[2], argv[3], argc == 5);
    }
    if (argc != 4 || strcmp(argv[1], "show")) {
        fprintf(stderr, "usage: batonctl run show WORKFLOW RUN_ID\n"
                        "       batonctl run clear WORKFLOW RUN_ID [--failed]\n");
        return BT_EXIT_USAGE;
    }
    PGconn *c;
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    const char *vals[3] = {cli->cfg.cluster, argv[2], argv[3]};
    PGresult *r = bt_cli_query(c, BT_SQL_RUN_LATEST_ATTEMPTS, 3, vals);
    if (!r || PQntuples(r) == 0) {
        if (r)
            fprintf(stderr, "batonctl: no run %s/%s\n", argv[2], argv[3]);
        PQclear(r);
        PQfinish(c);
        return BT_EXIT_FAILED;
    }
    json_t *arr = json_array();
    if (!cli->json)
        printf("%-24s %-16s %-7s %-28s %s\n", "TASK", "STATE", "ATTEMPT", "REMOTE", "ERROR");
    for (int i = 0; i < PQntuples(r); i++) {
        size_t len;
        char hb[1200];
        unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 0), &len);
        bt_task_run_t *t = b ? baton__v1__task_run__unpack(NULL, len, b) : NULL;
        PQfreemem(b);
        if (!t) {
            printf("(a record that does not decode)\n");
            continue;
        }
        const char *err = t->error && t->error->message ? t->error->message : "";
        if (cli->json)
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "task", t->task_id, "run_key",
                               t->run_key, "state", bt_task_state_name(t->state), "attempt",
                               (int)t->attempt, "remote", handle_text(t, hb, sizeof hb), "error",
                               err));
        else
            printf("%-24s %-16s %-7u %-28s %s\n", t->task_id, bt_task_state_name(t->state),
                   t->attempt, handle_text(t, hb, sizeof hb), err);
        baton__v1__task_run__free_unpacked(t, NULL);
    }
    if (cli->json)
        bt_cli_print_json(arr);
    else
        json_decref(arr);
    PQclear(r);
    PQfinish(c);
    return BT_EXIT_OK;
}

int bt_cmd_pool(bt_cli_t *cli, int argc, char **argv)
{
    PGconn *c;
    int rc;
    if (argc == 4 && !strcmp(argv[1], "set") && atoi(argv[3]) >= 0) {
        if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
            return rc;
        const char *vals[3] = {cli->cfg.cluster, argv[2], argv[3]};
        PGresult *r = bt_cli_query(c, BT_SQL_POOL_SET, 3, vals);
        rc = r ? BT_EXIT_OK : BT_EXIT_FAILED;
        if (r)
            printf("pool %s: %s slots\n", argv[2], argv[3]);
        PQclear(r);
        PQfinish(c);
        return rc;
    }
    if (argc == 2 && !strcmp(argv[1], "list")) {
        if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
            return rc;
        const char *vals[1] = {cli->cfg.cluster};
        PGresult *r = bt_cli_query(c, BT_SQL_POOL_LIST, 1, vals);
        for (int i = 0; r && i < PQntuples(r); i++)
            printf("%-20s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        PQclear(r);
        PQfinish(c);
        return BT_EXIT_OK;
    }
    fprintf(stderr, "usage: batonctl pool set NAME SLOTS | batonctl pool list\n");
    return BT_EXIT_USAGE;
}
