/* batonctl's PostgreSQL connection: blocking libpq is right for a CLI. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/queries.h"

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

/* "batonctl: WHAT failed: MESSAGE", one newline whether or not libpq's
 * message ends with one. */
static void print_failed(const char *what, const char *msg)
{
    size_t len = msg ? strlen(msg) : 0;
    while (len && msg[len - 1] == '\n')
        len--;
    if (!len) {
        msg = "no message from the server";
        len = strlen(msg);
    }
    fprintf(stderr, "batonctl: %s failed: %.*s\n", what, (int)len, msg);
}

int bt_cli_begin(PGconn *c)
{
    PGresult *r = PQexec(c, BT_SQL_BEGIN);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        print_failed("BEGIN", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return ok ? BT_EXIT_OK : BT_EXIT_FAILED;
}

int bt_cli_commit(PGconn *c, const char *undone)
{
    PGresult *r = PQexec(c, BT_SQL_COMMIT);
    ExecStatusType st = PQresultStatus(r);
    /* COMMIT of a transaction that had already failed is not an error to
     * libpq: it answers COMMAND_OK with the tag ROLLBACK */
    const char *tag = r ? PQcmdStatus(r) : NULL;
    int ok = st == PGRES_COMMAND_OK && tag && !strcmp(tag, "COMMIT");
    if (!ok) {
        if (st == PGRES_COMMAND_OK)
            print_failed("COMMIT", "the transaction had failed; the server rolled it back");
        else
            print_failed("COMMIT", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        if (PQstatus(c) != CONNECTION_OK)
            fprintf(stderr, "batonctl: the connection was lost during COMMIT: whether it "
                            "took effect is unknown; look before retrying\n");
        else if (undone)
            fprintf(stderr, "batonctl: %s\n", undone);
    }
    PQclear(r);
    return ok ? BT_EXIT_OK : BT_EXIT_FAILED;
}

void bt_cli_rollback(PGconn *c)
{
    PQclear(PQexec(c, BT_SQL_ROLLBACK));
}

void bt_cli_print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(j);
}
