/* Configuration shared by batond and batonctl: a YAML file, then BATON_*
 * environment variables, then command-line flags, each overriding the last.
 * A bad or missing setting is an error with the reason (file:line for the
 * file), never a silent default. See examples/batond.yaml for every key. */
#ifndef BATON_CONFIG_H
#define BATON_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "baton/err.h"

#define BT_CONFIG_DEFAULT_PATH "/etc/baton/batond.yaml"

#define BT_CONFIG_MAX_CREDENTIALS 32

typedef struct bt_config {
    char *cluster;
    char *node_id;              /* default: the host name */
    char *zone;
    char *http;                 /* HOST:PORT of the admin endpoint, or NULL */
    char *zk_hosts;
    char *zk_root;              /* default "/baton" */
    uint64_t zk_session_timeout_ms;
    char *zk_auth;              /* "user:password" for the digest ACL */
    char *pg_conninfo;
    uint64_t pg_lock_timeout_ms;
    uint64_t pg_statement_timeout_ms;
    uint64_t pg_idle_tx_timeout_ms;
    char *preferred_zone;
    int zone_handoff;           /* hand off to a healthy preferred-zone node */
    /* operators (issue: EMR, Genie, Livy) */
    char *http_ca_bundle;       /* CA bundle for TLS peers; NULL: system default */
    char *emr_region;           /* e.g. "eu-west-1" */
    char *emr_endpoint;         /* override, e.g. a VPC endpoint; BATON_EMR_ENDPOINT */
    uint64_t emr_poll_ms;       /* between polls of running work; 0: 30 s */
    int emr_reap;               /* the orphan reaper runs on the leader; on */
    int emr_reap_dry_run;       /* it only says what it would terminate */
    uint64_t emr_reap_after_ms; /* grace after the run ended; 15 min */
    uint64_t emr_reap_interval_ms; /* between scans; 5 min */
    char *aws_profile;          /* shared credentials profile; AWS_PROFILE */
    char *imds_endpoint;        /* instance metadata base URL; default http://169.254.169.254 */
    char *genie_url;            /* e.g. https://genie.example.com */
    char *genie_auth;           /* "basic USER:PASSWORD" or "bearer TOKEN"; BATON_GENIE_AUTH */
    uint64_t genie_poll_ms;     /* between status polls of a job; 0: 2 s */
    char *livy_url;             /* e.g. http://livy.example.com:8998 */
    char *livy_auth;            /* "basic USER:PASSWORD"; BATON_LIVY_AUTH */
    uint64_t livy_poll_ms;      /* between state polls of a batch or statement; 0: 2 s */
    int http_insecure;          /* skip TLS verification: for test fakes only */
    int fast_takeover;          /* claim on the leader's liveness lock's release; on */
    /* Rule 4 (docs/failover.md): remote calls across a failover */
    uint64_t transit_bound_ms;  /* longest a request takes from us to its effect; 10 s */
    uint64_t settle_ms;         /* a second lookup this much later confirms "not found"; 5 s */
    uint64_t drain_timeout_ms;  /* a handoff waits this long for its calls; 30 s */
    /* `credentials:`: secrets a task names with `auth:` (never the secret
     * in the workflow): NAME -> "basic USER:PASSWORD" or "bearer TOKEN" */
    size_t ncredentials;
    char *credential_names[BT_CONFIG_MAX_CREDENTIALS];
    char *credential_values[BT_CONFIG_MAX_CREDENTIALS];
} bt_config_t;

/* The credential named `name` ("basic ..." or "bearer ..."), or NULL. */
const char *bt_config_credential(const bt_config_t *c, const char *name);

/* Fills defaults. */
void bt_config_init(bt_config_t *c);
void bt_config_free(bt_config_t *c);

/* Reads `path` over the current values. Unknown keys, wrong types and bad
 * durations are errors: err gets "FILE:LINE:COL: field: reason". */
bt_err_t bt_config_load_file(bt_config_t *c, const char *path, char *err, size_t errlen);

/* Applies BATON_CLUSTER, BATON_NODE_ID, BATON_ZONE, BATON_ZK, BATON_PG,
 * BATON_ZK_AUTH (the digest credentials: kept out of argv on purpose). */
bt_err_t bt_config_load_env(bt_config_t *c, char *err, size_t errlen);

/* Sets one field by its file key ("zookeeper.hosts"), as a flag would. */
bt_err_t bt_config_set(bt_config_t *c, const char *key, const char *value,
                       char *err, size_t errlen);

/* Checks that what a daemon needs is there (cluster, ZooKeeper hosts,
 * PostgreSQL conninfo, a node id). `need_zk` = 0 skips ZooKeeper. */
bt_err_t bt_config_validate(const bt_config_t *c, int need_zk, char *err, size_t errlen);

#endif
