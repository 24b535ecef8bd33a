/* batonctl schema: what the database holds, as the operator needs to see it
 * before an upgrade: applied migrations and baton's tables with row counts. */
#include <jansson.h>
#include <stdlib.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "baton/store.h"
#include "cli/cli.h"
#include "cli/queries.h"

static PGresult *query(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "batonctl: %s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

int bt_cmd_schema(bt_cli_t *cli, int argc, char **argv)
{
    int json = cli->json;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "usage: batonctl schema [--json]\n");
            return BT_EXIT_USAGE;
        }
    }
    if (!cli->cfg.pg_conninfo) {
        fprintf(stderr, "batonctl: postgres.conninfo: not set (config, BATON_PG or --pg)\n");
        return BT_EXIT_USAGE;
    }
    PGconn *c = PQconnectdb(cli->cfg.pg_conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "batonctl: cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        return BT_EXIT_UNREACHABLE;
    }
    int rc = BT_EXIT_FAILED;
    PGresult *mig = query(c, BT_SQL_SCHEMA_MIGRATIONS);
    /* Row counts from the catalogue, not count(*): cheap on a big store. */
    PGresult *tabs = mig ? query(c, BT_SQL_SCHEMA_TABLES) : NULL;
    if (!mig || !tabs)
        goto out;

    int n = PQntuples(mig);
    int version = n ? atoi(PQgetvalue(mig, n - 1, 0)) : 0;
    if (json) {
        json_t *o = json_object(), *ms = json_array(), *ts = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(ms, json_pack("{s:i, s:s, s:s}", "version",
                                                atoi(PQgetvalue(mig, i, 0)), "name",
                                                PQgetvalue(mig, i, 1), "applied_at",
                                                PQgetvalue(mig, i, 2)));
        for (int i = 0; i < PQntuples(tabs); i++)
            json_array_append_new(ts, json_pack("{s:s, s:I}", "name", PQgetvalue(tabs, i, 0),
                                                "approx_rows",
                                                (json_int_t)atoll(PQgetvalue(tabs, i, 1))));
        json_object_set_new(o, "version", json_integer(version));
        json_object_set_new(o, "binary_version", json_integer(bt_store_schema_version()));
        json_object_set_new(o, "migrations", ms);
        json_object_set_new(o, "tables", ts);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    } else {
        printf("schema version %d (this binary knows %d)\n\n", version, bt_store_schema_version());
        printf("%-8s %-24s %s\n", "VERSION", "MIGRATION", "APPLIED");
        for (int i = 0; i < n; i++)
            printf("%-8s %-24s %s\n", PQgetvalue(mig, i, 0), PQgetvalue(mig, i, 1),
                   PQgetvalue(mig, i, 2));
        printf("\n%-24s %s\n", "TABLE", "ROWS (approx.)");
        for (int i = 0; i < PQntuples(tabs); i++)
            printf("%-24s %s\n", PQgetvalue(tabs, i, 0), PQgetvalue(tabs, i, 1));
    }
    rc = BT_EXIT_OK;
out:
    PQclear(mig);
    PQclear(tabs);
    PQfinish(c);
    return rc;
}
