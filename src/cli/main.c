/* batonctl: the operator's CLI. One dispatch table; one file per command. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const bt_cli_cmd_t commands[] = {
    {"migrate", bt_cmd_migrate, "apply the schema migrations this binary carries",
     "batonctl migrate"},
    {"schema", bt_cmd_schema, "show the database schema version, migrations and tables",
     "batonctl schema [--json]"},
    {"workflow", bt_cmd_workflow, "validate, apply, list and show workflow files",
     "batonctl workflow validate FILE...\n       batonctl workflow apply [--paused] FILE...\n"
     "       batonctl workflow list\n       batonctl workflow show ID"},
    {"pause", bt_cmd_pause, "stop creating scheduled runs of a workflow", "batonctl pause ID"},
    {"unpause", bt_cmd_unpause, "resume creating scheduled runs", "batonctl unpause ID"},
    {"trigger", bt_cmd_trigger, "request a manual run now",
     "batonctl trigger ID [--conf JSON]"},
    {"backfill", bt_cmd_backfill, "request runs for every schedule time in a date range",
     "batonctl backfill ID --from DATE --to DATE"},
    {"runs", bt_cmd_runs, "list workflow runs",
     "batonctl runs [--workflow ID] [--state S] [--limit N]"},
    {"run", bt_cmd_run, "show one run's tasks: state, attempt, remote handle, error",
     "batonctl run show WORKFLOW RUN_ID"},
    {"pool", bt_cmd_pool, "set or list pools (named slot counts)",
     "batonctl pool set NAME SLOTS\n       batonctl pool list"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out,
            "usage: batonctl [--config FILE] [--zk HOSTS] [--pg CONNINFO] [--cluster NAME]\n"
            "                [--json] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'batonctl help COMMAND' shows a command's usage.\n");
}

static const bt_cli_cmd_t *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

int bt_cli_require(bt_cli_t *cli, int need_zk)
{
    char err[512];
    if (bt_config_validate(&cli->cfg, need_zk, err, sizeof err) != BT_OK) {
        fprintf(stderr, "batonctl: %s\n", err);
        return BT_EXIT_USAGE;
    }
    return BT_EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"zk", required_argument, NULL, 'z'},
        {"pg", required_argument, NULL, 'p'},     {"cluster", required_argument, NULL, 'C'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bt_cli_t cli = {0};
    const char *zk = NULL, *pg = NULL, *cluster = NULL;
    char err[512];
    int c, rc;

    bt_config_init(&cli.cfg);
    /* '+': stop at the command name, so its own options reach it. */
    while ((c = getopt_long(argc, argv, "+c:z:p:C:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cli.config_path = optarg; break;
        case 'z': zk = optarg; break;
        case 'p': pg = optarg; break;
        case 'C': cluster = optarg; break;
        case 'j': cli.json = 1; break;
        case 'h': usage(stdout); bt_config_free(&cli.cfg); return BT_EXIT_OK;
        default: usage(stderr); bt_config_free(&cli.cfg); return BT_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        bt_config_free(&cli.cfg);
        return BT_EXIT_USAGE;
    }
    const char *name = argv[optind];
    if (!strcmp(name, "help")) {
        const bt_cli_cmd_t *cmd = optind + 1 < argc ? find_command(argv[optind + 1]) : NULL;
        if (cmd)
            printf("usage: %s\n\n%s\n", cmd->usage, cmd->summary);
        else
            usage(stdout);
        bt_config_free(&cli.cfg);
        return optind + 1 < argc && !cmd ? BT_EXIT_USAGE : BT_EXIT_OK;
    }
    const bt_cli_cmd_t *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "batonctl: '%s' is not a command. See 'batonctl --help'.\n", name);
        bt_config_free(&cli.cfg);
        return BT_EXIT_USAGE;
    }

    /* The same file batond reads, if present or named; then env; then flags. */
    const char *path = cli.config_path ? cli.config_path : getenv("BATON_CONFIG");
    if (!path && access(BT_CONFIG_DEFAULT_PATH, R_OK) == 0)
        path = BT_CONFIG_DEFAULT_PATH;
    if ((path && bt_config_load_file(&cli.cfg, path, err, sizeof err) != BT_OK) ||
        bt_config_load_env(&cli.cfg, err, sizeof err) != BT_OK ||
        (zk && bt_config_set(&cli.cfg, "zookeeper.hosts", zk, err, sizeof err) != BT_OK) ||
        (pg && bt_config_set(&cli.cfg, "postgres.conninfo", pg, err, sizeof err) != BT_OK) ||
        (cluster && bt_config_set(&cli.cfg, "cluster", cluster, err, sizeof err) != BT_OK)) {
        fprintf(stderr, "batonctl: %s\n", err);
        bt_config_free(&cli.cfg);
        return BT_EXIT_USAGE;
    }
    rc = cmd->run(&cli, argc - optind, argv + optind);
    bt_config_free(&cli.cfg);
    return rc;
}
