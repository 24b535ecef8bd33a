/* batonctl internals: the shared context every command gets, and the
 * command table (src/cli/main.c), one source file per command (git's
 * builtin/ layout). */
#ifndef BATON_CLI_H
#define BATON_CLI_H

#include <libpq-fe.h>

#include "baton/config.h"

/* Exit codes, documented in docs/cli.md. */
enum {
    BT_EXIT_OK = 0,
    BT_EXIT_FAILED = 1,
    BT_EXIT_USAGE = 2,
    BT_EXIT_UNREACHABLE = 3,
    BT_EXIT_TIMEOUT = 4,
};

typedef struct bt_cli {
    bt_config_t cfg;
    int json;
    const char *config_path;
} bt_cli_t;

typedef struct bt_cli_cmd {
    const char *name;
    int (*run)(bt_cli_t *cli, int argc, char **argv);
    const char *summary;
    const char *usage;
} bt_cli_cmd_t;

int bt_cmd_migrate(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_schema(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_workflow(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_pause(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_unpause(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_trigger(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_backfill(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_runs(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_run(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_pool(bt_cli_t *cli, int argc, char **argv);

/* Connects to PostgreSQL (blocking: fine for a CLI). Returns an exit code;
 * BT_EXIT_OK with *out set, or prints the reason. Needs cluster too. */
int bt_cli_pg(bt_cli_t *cli, PGconn **out);
/* Prints a JSON value indented, with a newline, and releases it. */
struct json_t;
void bt_cli_print_json(struct json_t *j);

/* Runs a text-parameter query; prints the server's error and returns NULL
 * on failure. */
PGresult *bt_cli_query(PGconn *c, const char *sql, int n, const char *const *vals);

/* Checks the settings a command needs; prints the reason and returns
 * BT_EXIT_USAGE when something is missing, else BT_EXIT_OK. */
int bt_cli_require(bt_cli_t *cli, int need_zk);

#endif
