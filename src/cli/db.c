/* batonctl's PostgreSQL connection: blocking libpq is right for a CLI. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

int bt_cli_pg(bt_cli_t *cli, PGconn **out)
{
    if (!cli->cfg.pg_conninfo) {
        fprintf(stderr, "batonctl: postgres.conninfo: not set (config, BATON_PG or --pg)\n");
        return BT_EXIT_USAGE;
    }
    if (!cli->cfg.cluster) {
        fprintf(stderr, "batonctl: cluster: not set (config, BATON_CLUSTER or --cluster)\n");
        return BT_EXIT_USAGE;
    }
    PGconn *c = PQconnectdb(cli->cfg.pg_conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "batonctl: cannot reach PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        return BT_EXIT_UNREACHABLE;
    }
    *out = c;
    return BT_EXIT_OK;
}

PGresult *bt_cli_query(PGconn *c, const char *sql, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "batonctl: %s", PQerrorMessage(c));
        PQclear(r);
        return NULL;
    }
    return r;
}

void bt_cli_print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(j);
}
