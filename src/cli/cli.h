/* batonctl internals: the shared context every command gets, and the
 * command table (src/cli/main.c), one source file per command (git's
 * builtin/ layout). */
#ifndef BATON_CLI_H
#define BATON_CLI_H

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

/* Checks the settings a command needs; prints the reason and returns
 * BT_EXIT_USAGE when something is missing, else BT_EXIT_OK. */
int bt_cli_require(bt_cli_t *cli, int need_zk);

#endif
