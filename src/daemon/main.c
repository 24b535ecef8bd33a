/* batond: one node of a baton cluster. Reads its configuration, brings the
 * schema up to date, and runs one libev loop on which ZooKeeper, PostgreSQL
 * and HTTP are all watchers (see daemon/daemon.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baton/config.h"
#include "baton/log.h"
#include "baton/store.h"
#include "daemon/daemon.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: batond [--config FILE] [--zk HOSTS] [--pg CONNINFO] [--cluster NAME]\n"
            "              [--node-id ID] [--zone ZONE] [--http HOST:PORT] [--check]\n"
            "\n"
            "  --config FILE   YAML configuration (default %s if it exists)\n"
            "  --check         validate the configuration and exit\n"
            "ZooKeeper digest credentials come from the file or BATON_ZK_AUTH, never argv.\n",
            BT_CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"zk", required_argument, NULL, 'z'},
        {"pg", required_argument, NULL, 'p'},      {"cluster", required_argument, NULL, 'C'},
        {"node-id", required_argument, NULL, 'n'}, {"zone", required_argument, NULL, 'Z'},
        {"http", required_argument, NULL, 'H'},    {"check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    static const struct {
        int opt;
        const char *key;
    } flag_keys[] = {
        {'z', "zookeeper.hosts"}, {'p', "postgres.conninfo"}, {'C', "cluster"},
        {'n', "node_id"},         {'Z', "zone"},              {'H', "http"},
    };
    const char *overrides[sizeof flag_keys / sizeof flag_keys[0]] = {0};
    const char *path = NULL;
    int check = 0, c;
    char err[1024];
    bt_config_t cfg;

    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'k': check = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("batond %s\n", BATON_VERSION); return 0;
        default: {
            size_t i;
            for (i = 0; i < sizeof flag_keys / sizeof flag_keys[0]; i++)
                if (flag_keys[i].opt == c)
                    break;
            if (i == sizeof flag_keys / sizeof flag_keys[0]) {
                usage(stderr);
                return 2;
            }
            overrides[i] = optarg;
        }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "batond: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }

    bt_config_init(&cfg);
    if (!path && access(BT_CONFIG_DEFAULT_PATH, R_OK) == 0)
        path = BT_CONFIG_DEFAULT_PATH;
    if (path && bt_config_load_file(&cfg, path, err, sizeof err) != BT_OK)
        goto bad_config;
    if (bt_config_load_env(&cfg, err, sizeof err) != BT_OK)
        goto bad_config;
    for (size_t i = 0; i < sizeof flag_keys / sizeof flag_keys[0]; i++)
        if (overrides[i] && bt_config_set(&cfg, flag_keys[i].key, overrides[i], err, sizeof err) != BT_OK)
            goto bad_config;
    if (bt_config_validate(&cfg, 1, err, sizeof err) != BT_OK)
        goto bad_config;
    if (check) {
        printf("configuration ok: cluster %s, node %s, zone %s\n", cfg.cluster, cfg.node_id,
               cfg.zone ? cfg.zone : "(none)");
        bt_config_free(&cfg);
        return 0;
    }

    int rc = bt_daemon_run(&cfg);
    bt_config_free(&cfg);
    return rc;

bad_config:
    fprintf(stderr, "batond: refusing to start: %s\n", err);
    bt_config_free(&cfg);
    return 2;
}
