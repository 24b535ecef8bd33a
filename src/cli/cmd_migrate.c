/* batonctl migrate: bring the database schema up to this binary's version. */
#include <stdio.h>

#include "baton/store.h"
#include "cli/cli.h"

int bt_cmd_migrate(bt_cli_t *cli, int argc, char **argv)
{
    char err[1024] = "";
    int version = 0;
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: batonctl migrate\n");
        return BT_EXIT_USAGE;
    }
    if (!cli->cfg.pg_conninfo) {
        fprintf(stderr, "batonctl: postgres.conninfo: not set (config, BATON_PG or --pg)\n");
        return BT_EXIT_USAGE;
    }
    bt_err_t rc = bt_store_migrate(cli->cfg.pg_conninfo, &version, err, sizeof err);
    if (rc == BT_E_PG_CONN) {
        fprintf(stderr, "batonctl: %s\n", err);
        return BT_EXIT_UNREACHABLE;
    }
    if (rc != BT_OK) {
        fprintf(stderr, "batonctl: migrate failed: %s\n", err);
        return BT_EXIT_FAILED;
    }
    printf("schema at version %d (this binary knows %d)\n", version, bt_store_schema_version());
    return BT_EXIT_OK;
}
