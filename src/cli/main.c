/* batonctl: the operator's CLI. One dispatch table; one file per command. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "cli/cli.h"
#include "cli/zkc.h"

static const bt_cli_cmd_t commands[] = {
    {"status", bt_cmd_status,
     "the leader, every node, ZooKeeper and PostgreSQL health, queues, recent leader changes",
     "batonctl [--json] status"},
    {"nodes", bt_cmd_nodes, "every node: zone, version, state, place in the election",
     "batonctl [--json] nodes"},
    {"leader", bt_cmd_leader, "the leader in one line", "batonctl [--json] leader"},
    {"failover", bt_cmd_failover,
     "planned handoff; waits until a new leader made its first fenced write",
     "batonctl failover [--to NODE | --to-zone ZONE] [--wait DURATION]"},
    {"drain", bt_cmd_drain, "take a node out of the election (hands off if it leads)",
     "batonctl drain NODE"},
    {"undrain", bt_cmd_undrain, "let a drained node rejoin the election",
     "batonctl undrain NODE"},
    {"events", bt_cmd_events, "the audit trail: leader changes, operator calls, state changes",
     "batonctl [--json] events [--since DURATION] [--limit N]"},
    {"task", bt_cmd_task, "one task run: its recorded logs, retry it, kill it",
     "batonctl task logs RUN_KEY\n       batonctl task retry RUN_KEY\n"
     "       batonctl task kill RUN_KEY"},
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
    {"run", bt_cmd_run, "show one run's tasks (state, attempt, remote handle, error), or clear them",
     "batonctl run show WORKFLOW RUN_ID\n       batonctl run clear WORKFLOW RUN_ID [--failed]"},
    {"pool", bt_cmd_pool, "set or list pools (named slot counts)",
     "batonctl pool set NAME SLOTS\n       batonctl pool list"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out,
            "usage: batonctl [--config FILE] [--zk HOSTS] [--pg CONNINFO] [--cluster NAME]\n"
            "                [--json] [--timeout DURATION] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'batonctl help COMMAND' shows a command's usage.\n");
}

/* The man page, generated from the same table as --help (CMake runs
 * `batonctl man` at build time; docs/cli.md has the long form). */
static void print_man(void)
{
    printf(".TH BATONCTL 1 \"\" \"baton %s\" \"baton manual\"\n"
           ".SH NAME\nbatonctl \\- operate a baton workflow-scheduler cluster\n"
           ".SH SYNOPSIS\n.B batonctl\n[\\-\\-config FILE] [\\-\\-zk HOSTS] "
           "[\\-\\-pg CONNINFO] [\\-\\-cluster NAME] [\\-\\-json] "
           "[\\-\\-timeout DURATION] COMMAND [ARGS]\n"
           ".SH DESCRIPTION\nbatonctl reads the same configuration as batond (default %s, "
           "then BATON_* environment variables, then flags). Read commands take "
           "\\-\\-json; commands that change the cluster print what they did. Changes go "
           "through control znodes and request rows the leader acts on under its fence.\n"
           ".SH COMMANDS\n",
           BATON_VERSION, BT_CONFIG_DEFAULT_PATH);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        printf(".TP\n.B %s\n%s.\n.br\n", commands[i].name, commands[i].summary);
        for (const char *u = commands[i].usage; *u; u++) {
            if (*u == '\n') {
                printf("\n.br\n");
                while (u[1] == ' ')
                    u++;
            } else if (*u == '-') {
                printf("\\-");
            } else {
                putchar(*u);
            }
        }
        printf("\n");
    }
    printf(".SH EXIT STATUS\n0 ok, 1 the operation failed, 2 usage error, 3 cannot reach "
           "ZooKeeper or PostgreSQL, 4 timed out.\n"
           ".SH ENVIRONMENT\nBATON_CONFIG, BATON_CLUSTER, BATON_ZK, BATON_PG, BATON_ZK_AUTH, "
           "NO_COLOR.\n.SH SEE ALSO\nbatond(8); docs/cli.md in the baton sources.\n");
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

int bt_cli_zk(bt_cli_t *cli, struct bt_zkc **out)
{
    char err[512];
    if (!cli->cfg.zk_hosts || !cli->cfg.cluster) {
        fprintf(stderr, "batonctl: %s: not set (config, env or --%s)\n",
                cli->cfg.zk_hosts ? "cluster" : "zookeeper.hosts",
                cli->cfg.zk_hosts ? "cluster" : "zk");
        return BT_EXIT_USAGE;
    }
    if (!(*out = bt_zkc_open(&cli->cfg, cli->timeout_ms, err, sizeof err))) {
        fprintf(stderr, "batonctl: %s\n", err);
        return BT_EXIT_UNREACHABLE;
    }
    return BT_EXIT_OK;
}

int bt_cli_colour(void)
{
    const char *nc = getenv("NO_COLOR");
    return isatty(STDOUT_FILENO) && !(nc && *nc);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"zk", required_argument, NULL, 'z'},
        {"pg", required_argument, NULL, 'p'},     {"cluster", required_argument, NULL, 'C'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {"timeout", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    bt_cli_t cli = {0};
    const char *zk = NULL, *pg = NULL, *cluster = NULL;
    char err[512];
    int c, rc;

    bt_config_init(&cli.cfg);
    /* the library's progress logs are for the daemon; a command reports its
     * own outcome (BATON_LOG_LEVEL still overrides, for debugging) */
    if (!getenv("BATON_LOG_LEVEL"))
        bt_log_set_level(BT_LOG_ERROR);
    /* '+': stop at the command name, so its own options reach it. */
    cli.timeout_ms = 10000;
    while ((c = getopt_long(argc, argv, "+c:z:p:C:jht:", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cli.config_path = optarg; break;
        case 'z': zk = optarg; break;
        case 'p': pg = optarg; break;
        case 'C': cluster = optarg; break;
        case 'j': cli.json = 1; break;
        case 't': {
            uint64_t ms;
            if (bt_duration_parse(optarg, &ms) != BT_OK || ms == 0 || ms > 86400000) {
                fprintf(stderr, "batonctl: --timeout: '%s' is not a duration (e.g. 5s)\n", optarg);
                bt_config_free(&cli.cfg);
                return BT_EXIT_USAGE;
            }
            cli.timeout_ms = (uint32_t)ms;
            break;
        }
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
    if (!strcmp(name, "man")) {
        print_man();
        bt_config_free(&cli.cfg);
        return BT_EXIT_OK;
    }
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
