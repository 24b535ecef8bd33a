/* batonctl internals: the shared context every command gets, and the
 * command table (src/cli/main.c), one source file per command (git's
 * builtin/ layout). */
#ifndef BATON_CLI_H
#define BATON_CLI_H

#include <libpq-fe.h>
#include <stdint.h>

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
    uint32_t timeout_ms;   /* --timeout: reaching servers, waiting; default 10 s */
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
int bt_cmd_status(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_nodes(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_leader(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_failover(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_drain(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_undrain(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_events(bt_cli_t *cli, int argc, char **argv);
int bt_cmd_task(bt_cli_t *cli, int argc, char **argv);
/* Requests new attempts for a run's tasks (all, or the failed ones). */
int bt_cli_run_clear(bt_cli_t *cli, const char *wf, const char *run, int only_failed);

/* Opens ZooKeeper for cli's cluster within the timeout; prints why not. */
struct bt_zkc;
int bt_cli_zk(bt_cli_t *cli, struct bt_zkc **out);
/* Colour only on a terminal and without NO_COLOR. */
int bt_cli_colour(void);

/* Connects to PostgreSQL (blocking: fine for a CLI). Returns an exit code;
 * BT_EXIT_OK with *out set, or prints the reason. Needs cluster too. */
int bt_cli_pg(bt_cli_t *cli, PGconn **out);
/* Prints a JSON value indented, with a newline, and releases it. */
struct json_t;
void bt_cli_print_json(struct json_t *j);

/* Runs a text-parameter query (a statement of cli/queries.h); prints the
 * server's error and returns NULL on failure. */
PGresult *bt_cli_query(PGconn *c, const char *sql, int n, const char *const *vals);

/* A write of more than one statement runs between bt_cli_begin and
 * bt_cli_commit, and a command prints what it did only after
 * bt_cli_commit returned BT_EXIT_OK: COMMIT can fail where every statement
 * before it succeeded (a deferred constraint, a serialization failure, a
 * lost connection), and then nothing was done.
 *
 * bt_cli_begin returns BT_EXIT_OK, or prints the server's message and
 * returns BT_EXIT_FAILED (then the transaction did not start: do not go on
 * in autocommit). bt_cli_commit returns BT_EXIT_OK once the server
 * confirmed the COMMIT; else it prints the server's message and `undone`
 * (what the operator should know, e.g. "nothing applied") and returns
 * BT_EXIT_FAILED. When the connection was lost during COMMIT the outcome
 * is unknown, and it says that instead of `undone`. bt_cli_rollback ends a
 * transaction a command gives up on; its result does not matter (closing
 * the connection rolls back too). */
int bt_cli_begin(PGconn *c);
int bt_cli_commit(PGconn *c, const char *undone);
void bt_cli_rollback(PGconn *c);

/* Checks the settings a command needs; prints the reason and returns
 * BT_EXIT_USAGE when something is missing, else BT_EXIT_OK. */
int bt_cli_require(bt_cli_t *cli, int need_zk);

#endif
