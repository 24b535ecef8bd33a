/* batonctl workflow validate|apply|list|show. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/trigger.h"
#include "baton/workflow.h"
#include "cli/cli.h"
#include "cli/queries.h"

/* Loads every file, printing all diagnostics. Returns how many failed. */
static int load_all(int n, char **files, bt_workflow_spec_t **specs)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        bt_diags_t dg;
        bt_diags_init(&dg);
        specs[i] = NULL;
        if (bt_workflow_load_file(files[i], &specs[i], &dg) != BT_OK) {
            bt_diags_print(&dg, stderr);
            bad++;
        }
        bt_diags_free(&dg);
    }
    return bad;
}

static void free_all(int n, bt_workflow_spec_t **specs)
{
    for (int i = 0; i < n; i++)
        if (specs[i])
            baton__v1__workflow_spec__free_unpacked(specs[i], NULL);
    free(specs);
}

static int cmd_validate(bt_cli_t *cli, int n, char **files)
{
    bt_workflow_spec_t **specs = calloc((size_t)n + 1, sizeof *specs);
    if (!specs)
        return BT_EXIT_FAILED;
    int bad = load_all(n, files, specs);
    for (int i = 0; i < n; i++)
        if (specs[i] && !cli->json)
            printf("%s: ok (workflow %s, %zu tasks)\n", files[i], specs[i]->id,
                   specs[i]->n_tasks);
    free_all(n, specs);
    return bad ? BT_EXIT_FAILED : BT_EXIT_OK;
}

/* "\x0a0b..." for a bytea text parameter. */
static char *hex_param(const uint8_t *b, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *s = malloc(2 * n + 3);
    if (!s)
        return NULL;
    s[0] = '\\';
    s[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        s[2 + 2 * i] = hex[b[i] >> 4];
        s[3 + 2 * i] = hex[b[i] & 15];
    }
    s[2 + 2 * n] = '\0';
    return s;
}

/* What baton_workflow_apply answered for one file, kept until COMMIT. */
typedef struct applied {
    char outcome[16];  /* created, updated, unchanged */
    char version[16];
} applied_t;

/* All files in one transaction; the "applied" lines are printed only once
 * COMMIT succeeded, so that none of them claims what did not happen. */
static int cmd_apply(bt_cli_t *cli, int n, char **files, int paused)
{
    PGconn *c = NULL;
    int rc;
    bt_workflow_spec_t **specs = calloc((size_t)n + 1, sizeof *specs);
    applied_t *done = calloc((size_t)n + 1, sizeof *done);
    if (!specs || !done) {
        free(specs);
        free(done);
        return BT_EXIT_FAILED;
    }
    /* all or nothing: one bad file stores none */
    if (load_all(n, files, specs)) {
        fprintf(stderr, "batonctl: nothing applied\n");
        rc = BT_EXIT_FAILED;
        goto out_free;
    }
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        goto out_free;
    if ((rc = bt_cli_begin(c)) != BT_EXIT_OK)
        goto out_finish;
    for (int i = 0; i < n && rc == BT_EXIT_OK; i++) {
        size_t len = baton__v1__workflow_spec__get_packed_size(specs[i]);
        uint8_t *buf = malloc(len + 1);
        char *hex = NULL;
        if (buf) {
            baton__v1__workflow_spec__pack(specs[i], buf);
            hex = hex_param(buf, len);
        }
        free(buf);
        const char *vals[4] = {cli->cfg.cluster, specs[i]->id, hex, files[i]};
        PGresult *r = hex ? bt_cli_query(c, BT_SQL_WORKFLOW_APPLY, 4, vals) : NULL;
        free(hex);
        if (!r) {
            rc = BT_EXIT_FAILED;
            break;
        }
        snprintf(done[i].outcome, sizeof done[i].outcome, "%s", PQgetvalue(r, 0, 0));
        snprintf(done[i].version, sizeof done[i].version, "%s", PQgetvalue(r, 0, 1));
        PQclear(r);
        /* in the same transaction: the dispatcher never sees it unpaused */
        if (paused) {
            const char *pvals[3] = {cli->cfg.cluster, specs[i]->id, "true"};
            PGresult *p = bt_cli_query(c, BT_SQL_WORKFLOW_SET_PAUSED, 3, pvals);
            if (!p)
                rc = BT_EXIT_FAILED;
            PQclear(p);
        }
    }
    if (rc != BT_EXIT_OK) {
        bt_cli_rollback(c);
        goto out_finish;
    }
    if ((rc = bt_cli_commit(c, "nothing applied")) != BT_EXIT_OK)
        goto out_finish;
    for (int i = 0; i < n; i++)
        printf("%s: %s %s (version %s)%s\n", files[i], specs[i]->id, done[i].outcome,
               done[i].version, paused ? ", paused" : "");
out_finish:
    PQfinish(c);
out_free:
    free(done);
    free_all(n, specs);
    return rc;
}

static bt_workflow_spec_t *decode_spec(PGresult *r, int row, int col)
{
    size_t len;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &len);
    bt_workflow_spec_t *s = b ? baton__v1__workflow_spec__unpack(NULL, len, b) : NULL;
    PQfreemem(b);
    return s;
}

static int cmd_list(bt_cli_t *cli)
{
    PGconn *c;
    int rc = bt_cli_pg(cli, &c);
    if (rc != BT_EXIT_OK)
        return rc;
    const char *vals[1] = {cli->cfg.cluster};
    PGresult *r = bt_cli_query(c, BT_SQL_WORKFLOW_LIST, 1, vals);
    if (!r) {
        PQfinish(c);
        return BT_EXIT_FAILED;
    }
    json_t *arr = json_array();
    if (!cli->json)
        printf("%-28s %-7s %-6s %-18s %-16s %-21s %s\n", "WORKFLOW", "VERSION", "PAUSED",
               "SCHEDULE", "TIMEZONE", "NEXT RUN (UTC)", "ACTIVE");
    for (int i = 0; i < PQntuples(r); i++) {
        bt_workflow_spec_t *s = decode_spec(r, i, 3);
        const char *sched = s && s->schedule && *s->schedule ? s->schedule : "none";
        const char *tz = s && s->timezone && *s->timezone ? s->timezone : "UTC";
        int paused = PQgetvalue(r, i, 2)[0] == 't';
        if (cli->json)
            json_array_append_new(
                arr, json_pack("{s:s, s:i, s:b, s:s, s:s, s:s, s:i}", "workflow",
                               PQgetvalue(r, i, 0), "version", atoi(PQgetvalue(r, i, 1)),
                               "paused", paused, "schedule", sched, "timezone", tz, "next_run",
                               PQgetvalue(r, i, 4), "active_runs", atoi(PQgetvalue(r, i, 5))));
        else
            printf("%-28s %-7s %-6s %-18s %-16s %-21s %s\n", PQgetvalue(r, i, 0),
                   PQgetvalue(r, i, 1), paused ? "yes" : "no", sched, tz,
                   *PQgetvalue(r, i, 4) ? PQgetvalue(r, i, 4) : "-", PQgetvalue(r, i, 5));
        if (s)
            baton__v1__workflow_spec__free_unpacked(s, NULL);
    }
    if (cli->json)
        bt_cli_print_json(arr);
    else
        json_decref(arr);
    PQclear(r);
    PQfinish(c);
    return BT_EXIT_OK;
}

static const char *op_name(const bt_task_spec_t *t)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(t->base.descriptor, (unsigned)t->operator_case);
    return f ? f->name : "-";
}

static int cmd_show(bt_cli_t *cli, const char *id)
{
    PGconn *c;
    int rc = bt_cli_pg(cli, &c);
    if (rc != BT_EXIT_OK)
        return rc;
    const char *vals[2] = {cli->cfg.cluster, id};
    PGresult *r = bt_cli_query(c, BT_SQL_WORKFLOW_SHOW, 2, vals);
    if (!r || PQntuples(r) != 1) {
        if (r)
            fprintf(stderr, "batonctl: no workflow '%s'\n", id);
        PQclear(r);
        PQfinish(c);
        return BT_EXIT_FAILED;
    }
    bt_workflow_spec_t *s = decode_spec(r, 0, 2);
    if (!s) {
        fprintf(stderr, "batonctl: workflow '%s': stored spec does not decode\n", id);
        PQclear(r);
        PQfinish(c);
        return BT_EXIT_FAILED;
    }
    if (cli->json) {
        json_t *tasks = json_array();
        for (size_t i = 0; i < s->n_tasks; i++) {
            json_t *deps = json_array();
            for (size_t k = 0; k < s->tasks[i]->n_depends_on; k++)
                json_array_append_new(deps, json_string(s->tasks[i]->depends_on[k]));
            json_array_append_new(
                tasks, json_pack("{s:s, s:s, s:o, s:s, s:i, s:s, s:i}", "id", s->tasks[i]->id,
                                 "operator", op_name(s->tasks[i]), "depends_on", deps,
                                 "trigger_rule", bt_trigger_rule_name(s->tasks[i]->trigger_rule),
                                 "retries", (int)s->tasks[i]->retries, "pool",
                                 s->tasks[i]->pool, "priority", (int)s->tasks[i]->priority));
        }
        json_t *o = json_pack("{s:s, s:i, s:b, s:s, s:s, s:b, s:i, s:s, s:o}", "workflow", s->id,
                              "version", atoi(PQgetvalue(r, 0, 0)), "paused",
                              PQgetvalue(r, 0, 1)[0] == 't', "schedule", s->schedule, "timezone",
                              s->timezone, "catchup", s->catchup, "max_active_runs",
                              (int)s->max_active_runs, "source", PQgetvalue(r, 0, 3), "tasks",
                              tasks);
        bt_cli_print_json(o);
    } else {
        printf("workflow  %s (version %s%s)\nsource    %s\nschedule  %s  (%s)\n"
               "catchup   %s, max_active_runs %u\n\n",
               s->id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)[0] == 't' ? ", paused" : "",
               PQgetvalue(r, 0, 3), *s->schedule ? s->schedule : "none",
               *s->timezone ? s->timezone : "UTC", s->catchup ? "yes" : "no",
               s->max_active_runs);
        printf("%-24s %-22s %-13s %-7s %-10s %s\n", "TASK", "OPERATOR", "TRIGGER", "RETRIES",
               "POOL", "DEPENDS ON");
        for (size_t i = 0; i < s->n_tasks; i++) {
            const bt_task_spec_t *t = s->tasks[i];
            printf("%-24s %-22s %-13s %-7u %-10s ", t->id, op_name(t),
                   bt_trigger_rule_name(t->trigger_rule), t->retries, t->pool);
            for (size_t k = 0; k < t->n_depends_on; k++)
                printf("%s%s", k ? "," : "", t->depends_on[k]);
            printf("%s\n", t->n_depends_on ? "" : "-");
        }
    }
    baton__v1__workflow_spec__free_unpacked(s, NULL);
    PQclear(r);
    PQfinish(c);
    return BT_EXIT_OK;
}

int bt_cmd_workflow(bt_cli_t *cli, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    if (!strcmp(sub, "validate") && argc > 2)
        return cmd_validate(cli, argc - 2, argv + 2);
    if (!strcmp(sub, "apply") && argc > 3 && !strcmp(argv[2], "--paused"))
        return cmd_apply(cli, argc - 3, argv + 3, 1);
    if (!strcmp(sub, "apply") && argc > 2)
        return cmd_apply(cli, argc - 2, argv + 2, 0);
    if (!strcmp(sub, "list") && argc == 2)
        return cmd_list(cli);
    if (!strcmp(sub, "show") && argc == 3)
        return cmd_show(cli, argv[2]);
    fprintf(stderr, "usage: batonctl workflow validate FILE...\n"
                    "       batonctl workflow apply [--paused] FILE...\n"
                    "       batonctl workflow list\n"
                    "       batonctl workflow show ID\n");
    return BT_EXIT_USAGE;
}
