#include "baton/config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "baton/clock.h"
#include "baton/yaml.h"

typedef enum { F_STR, F_DURATION, F_BOOL } ftype_t;

/* Every key the file may hold. One table drives the file, env and flags. */
static const struct field {
    const char *key;
    ftype_t type;
    size_t offset;
} fields[] = {
    {"cluster", F_STR, offsetof(bt_config_t, cluster)},
    {"node_id", F_STR, offsetof(bt_config_t, node_id)},
    {"zone", F_STR, offsetof(bt_config_t, zone)},
    {"http", F_STR, offsetof(bt_config_t, http)},
    {"zookeeper.hosts", F_STR, offsetof(bt_config_t, zk_hosts)},
    {"zookeeper.root", F_STR, offsetof(bt_config_t, zk_root)},
    {"zookeeper.session_timeout", F_DURATION, offsetof(bt_config_t, zk_session_timeout_ms)},
    {"zookeeper.auth", F_STR, offsetof(bt_config_t, zk_auth)},
    {"postgres.conninfo", F_STR, offsetof(bt_config_t, pg_conninfo)},
    {"postgres.lock_timeout", F_DURATION, offsetof(bt_config_t, pg_lock_timeout_ms)},
    {"postgres.statement_timeout", F_DURATION, offsetof(bt_config_t, pg_statement_timeout_ms)},
    {"postgres.idle_in_transaction_timeout", F_DURATION, offsetof(bt_config_t, pg_idle_tx_timeout_ms)},
    {"election.preferred_zone", F_STR, offsetof(bt_config_t, preferred_zone)},
    {"election.zone_handoff", F_BOOL, offsetof(bt_config_t, zone_handoff)},
    {"tls.ca_bundle", F_STR, offsetof(bt_config_t, http_ca_bundle)},
    {"tls.insecure", F_BOOL, offsetof(bt_config_t, http_insecure)},
    {"emr.region", F_STR, offsetof(bt_config_t, emr_region)},
    {"emr.endpoint", F_STR, offsetof(bt_config_t, emr_endpoint)},
    {"emr.reap", F_BOOL, offsetof(bt_config_t, emr_reap)},
    {"emr.reap_dry_run", F_BOOL, offsetof(bt_config_t, emr_reap_dry_run)},
    {"emr.reap_after", F_DURATION, offsetof(bt_config_t, emr_reap_after_ms)},
    {"emr.reap_interval", F_DURATION, offsetof(bt_config_t, emr_reap_interval_ms)},
    {"emr.poll_interval", F_DURATION, offsetof(bt_config_t, emr_poll_ms)},
    {"aws.profile", F_STR, offsetof(bt_config_t, aws_profile)},
    {"aws.imds_endpoint", F_STR, offsetof(bt_config_t, imds_endpoint)},
    {"genie.url", F_STR, offsetof(bt_config_t, genie_url)},
    {"genie.auth", F_STR, offsetof(bt_config_t, genie_auth)},
    {"genie.poll_interval", F_DURATION, offsetof(bt_config_t, genie_poll_ms)},
    {"livy.url", F_STR, offsetof(bt_config_t, livy_url)},
    {"livy.auth", F_STR, offsetof(bt_config_t, livy_auth)},
    {"livy.poll_interval", F_DURATION, offsetof(bt_config_t, livy_poll_ms)},
    {"coordination.fast_takeover", F_BOOL, offsetof(bt_config_t, fast_takeover)},
    {"dispatch.transit_bound", F_DURATION, offsetof(bt_config_t, transit_bound_ms)},
    {"dispatch.settle", F_DURATION, offsetof(bt_config_t, settle_ms)},
    {"dispatch.drain_timeout", F_DURATION, offsetof(bt_config_t, drain_timeout_ms)},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

void bt_config_init(bt_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->zk_root = strdup("/baton");
    c->zk_session_timeout_ms = 6000;
    c->pg_lock_timeout_ms = 2000;
    c->pg_statement_timeout_ms = 10000;
    c->pg_idle_tx_timeout_ms = 5000;
    c->fast_takeover = 1;
    c->emr_reap = 1;
    c->emr_reap_after_ms = 15 * 60 * 1000;
    c->emr_reap_interval_ms = 5 * 60 * 1000;
    c->transit_bound_ms = 10000;
    c->settle_ms = 5000;
    c->drain_timeout_ms = 30000;
    char host[256];
    if (gethostname(host, sizeof host) == 0) {
        host[sizeof host - 1] = '\0';
        c->node_id = strdup(host);
    }
}

void bt_config_free(bt_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].type == F_STR)
            free(*(char **)((char *)c + fields[i].offset));
    for (size_t i = 0; i < c->ncredentials; i++) {
        free(c->credential_names[i]);
        free(c->credential_values[i]);
    }
    memset(c, 0, sizeof *c);
}

static const struct field *find_field(const char *key)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].key, key))
            return &fields[i];
    return NULL;
}

/* Stores `value` into the field; on failure writes the reason only. */
static bt_err_t store_value(bt_config_t *c, const struct field *f, const char *value,
                            char *why, size_t whylen)
{
    void *slot = (char *)c + f->offset;
    switch (f->type) {
    case F_STR: {
        char *dup = strdup(value);
        if (!dup)
            return BT_E_NOMEM;
        free(*(char **)slot);
        *(char **)slot = dup;
        return BT_OK;
    }
    case F_DURATION:
        if (bt_duration_parse(value, (uint64_t *)slot) != BT_OK) {
            snprintf(why, whylen, "'%s' is not a duration (e.g. 500ms, 6s, 2m)", value);
            return BT_E_CONFIG;
        }
        return BT_OK;
    case F_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on")) {
            *(int *)slot = 1;
        } else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off")) {
            *(int *)slot = 0;
        } else {
            snprintf(why, whylen, "'%s' is not true or false", value);
            return BT_E_CONFIG;
        }
        return BT_OK;
    }
    return BT_E_INVAL;
}

bt_err_t bt_config_set(bt_config_t *c, const char *key, const char *value,
                       char *err, size_t errlen)
{
    char why[256] = "";
    const struct field *f = find_field(key);
    if (!f) {
        snprintf(err, errlen, "unknown setting '%s'", key);
        return BT_E_CONFIG;
    }
    bt_err_t rc = store_value(c, f, value, why, sizeof why);
    if (rc != BT_OK)
        snprintf(err, errlen, "%s: %s", key, why);
    return rc;
}

const char *bt_config_credential(const bt_config_t *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->ncredentials; i++)
        if (!strcmp(c->credential_names[i], name))
            return c->credential_values[i];
    return NULL;
}

/* The `credentials:` section: NAME: "basic USER:PASSWORD" | "bearer TOKEN".
 * The secret never appears in a message. */
static bt_err_t load_credentials(bt_config_t *c, const char *path, const bt_ynode_t *map,
                                 char *err, size_t errlen)
{
    if (map->kind != BT_YNODE_MAP) {
        snprintf(err, errlen, "%s:%zu:%zu: credentials: expected a mapping of NAME: \"basic "
                 "USER:PASSWORD\" or \"bearer TOKEN\"", path, map->line, map->col);
        return BT_E_CONFIG;
    }
    for (size_t i = 0; i < map->n; i++) {
        const char *name = map->keys[i];
        const bt_ynode_t *v = map->items[i];
        size_t len = strlen(name);
        int name_ok = len > 0 && len <= 64;
        for (const char *p = name; name_ok && *p; p++)
            name_ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
        const char *why = !name_ok ? "a name is 1 to 64 letters, digits, '_' or '-'"
                          : c->ncredentials >= BT_CONFIG_MAX_CREDENTIALS
                              ? "too many credentials (at most 32)"
                          : v->kind != BT_YNODE_SCALAR || bt_ynode_is_null(v)
                              ? "expected \"basic USER:PASSWORD\" or \"bearer TOKEN\""
                              : NULL;
        if (!why && strpbrk(v->value, "\r\n"))
            why = "a line break in the secret";
        if (!why && !((!strncasecmp(v->value, "basic ", 6) && strchr(v->value + 6, ':')) ||
                      (!strncasecmp(v->value, "bearer ", 7) && v->value[7])))
            why = "expected \"basic USER:PASSWORD\" or \"bearer TOKEN\"";
        if (why) {
            snprintf(err, errlen, "%s:%zu: credentials.%.64s: %s", path, map->key_lines[i],
                     name, why);
            return BT_E_CONFIG;
        }
        char *n = strdup(name), *val = strdup(v->value);
        if (!n || !val) {
            free(n);
            free(val);
            return BT_E_NOMEM;
        }
        c->credential_names[c->ncredentials] = n;
        c->credential_values[c->ncredentials++] = val;
    }
    return BT_OK;
}

/* Walks one mapping level; `prefix` is "" at the top. */
static bt_err_t load_map(bt_config_t *c, const char *path, const bt_ynode_t *map,
                         const char *prefix, char *err, size_t errlen)
{
    for (size_t i = 0; i < map->n; i++) {
        char key[128], why[256] = "";
        const bt_ynode_t *v = map->items[i];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", map->keys[i]);

        if (!*prefix && !strcmp(key, "credentials")) {
            bt_err_t rc = load_credentials(c, path, v, err, errlen);
            if (rc != BT_OK)
                return rc;
            continue;
        }
        if (v->kind == BT_YNODE_MAP && !*prefix) {
            int known = 0;
            size_t klen = strlen(key);
            for (size_t j = 0; j < NFIELDS; j++)
                known |= !strncmp(fields[j].key, key, klen) && fields[j].key[klen] == '.';
            if (!known) {
                snprintf(err, errlen, "%s:%zu: %s: unknown section", path, map->key_lines[i], key);
                return BT_E_CONFIG;
            }
            bt_err_t rc = load_map(c, path, v, key, err, errlen);
            if (rc != BT_OK)
                return rc;
            continue;
        }
        const struct field *f = find_field(key);
        if (!f) {
            snprintf(err, errlen, "%s:%zu: %s: unknown setting", path, map->key_lines[i], key);
            return BT_E_CONFIG;
        }
        if (v->kind != BT_YNODE_SCALAR) {
            snprintf(err, errlen, "%s:%zu:%zu: %s: expected a single value", path, v->line,
                     v->col, key);
            return BT_E_CONFIG;
        }
        if (bt_ynode_is_null(v))
            continue; /* key present but empty: keep the default */
        bt_err_t rc = store_value(c, f, v->value, why, sizeof why);
        if (rc != BT_OK) {
            snprintf(err, errlen, "%s:%zu:%zu: %s: %s", path, v->line, v->col, key, why);
            return rc;
        }
    }
    return BT_OK;
}

bt_err_t bt_config_load_file(bt_config_t *c, const char *path, char *err, size_t errlen)
{
    bt_ynode_t *root = NULL;
    bt_err_t rc = bt_yaml_load_file(path, &root, err, errlen);
    if (rc != BT_OK)
        return rc == BT_E_IO ? BT_E_IO : BT_E_CONFIG;
    if (root->kind != BT_YNODE_MAP) {
        snprintf(err, errlen, "%s:%zu:%zu: expected a mapping of settings", path, root->line,
                 root->col);
        rc = BT_E_CONFIG;
    } else {
        rc = load_map(c, path, root, "", err, errlen);
    }
    bt_ynode_free(root);
    return rc;
}

bt_err_t bt_config_load_env(bt_config_t *c, char *err, size_t errlen)
{
    static const struct {
        const char *env, *key;
    } map[] = {
        {"BATON_CLUSTER", "cluster"}, {"BATON_NODE_ID", "node_id"},
        {"BATON_ZONE", "zone"},       {"BATON_ZK", "zookeeper.hosts"},
        {"BATON_PG", "postgres.conninfo"}, {"BATON_ZK_AUTH", "zookeeper.auth"},
        {"BATON_EMR_ENDPOINT", "emr.endpoint"}, {"BATON_GENIE_AUTH", "genie.auth"},
        {"BATON_LIVY_AUTH", "livy.auth"}, {"AWS_PROFILE", "aws.profile"},
        {"AWS_REGION", "emr.region"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char *v = getenv(map[i].env);
        if (v && *v) {
            bt_err_t rc = bt_config_set(c, map[i].key, v, err, errlen);
            if (rc != BT_OK)
                return rc;
        }
    }
    return BT_OK;
}

bt_err_t bt_config_validate(const bt_config_t *c, int need_zk, char *err, size_t errlen)
{
    if (!c->cluster || !*c->cluster) {
        snprintf(err, errlen, "cluster: not set (config 'cluster', BATON_CLUSTER or --cluster)");
        return BT_E_CONFIG;
    }
    if (strchr(c->cluster, '/')) {
        snprintf(err, errlen, "cluster: '%s' must not contain '/'", c->cluster);
        return BT_E_CONFIG;
    }
    if (!c->pg_conninfo || !*c->pg_conninfo) {
        snprintf(err, errlen, "postgres.conninfo: not set (config, BATON_PG or --pg)");
        return BT_E_CONFIG;
    }
    if (need_zk) {
        if (!c->zk_hosts || !*c->zk_hosts) {
            snprintf(err, errlen, "zookeeper.hosts: not set (config, BATON_ZK or --zk)");
            return BT_E_CONFIG;
        }
        if (!c->zk_root || c->zk_root[0] != '/') {
            snprintf(err, errlen, "zookeeper.root: must be an absolute path");
            return BT_E_CONFIG;
        }
        if (c->zk_session_timeout_ms < 400 || c->zk_session_timeout_ms > 120000) {
            snprintf(err, errlen, "zookeeper.session_timeout: %llu ms is outside 400ms..2m",
                     (unsigned long long)c->zk_session_timeout_ms);
            return BT_E_CONFIG;
        }
        if (c->zk_auth && !strchr(c->zk_auth, ':')) {
            snprintf(err, errlen, "zookeeper.auth: expected user:password");
            return BT_E_CONFIG;
        }
    }
    if (!c->node_id || !*c->node_id) {
        snprintf(err, errlen, "node_id: not set and the host name is unknown");
        return BT_E_CONFIG;
    }
    /* Rule 4 of docs/failover.md rests on these: zero would believe a
     * "not found" while a request may still land */
    const struct {
        const char *key;
        uint64_t v, min, max;
    } bounds[] = {{"dispatch.transit_bound", c->transit_bound_ms, 100, 600000},
                  {"dispatch.settle", c->settle_ms, 100, 600000},
                  {"dispatch.drain_timeout", c->drain_timeout_ms, 1000, 600000}};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        if (bounds[i].v < bounds[i].min || bounds[i].v > bounds[i].max) {
            snprintf(err, errlen, "%s: %llu ms is outside %llums..10m", bounds[i].key,
                     (unsigned long long)bounds[i].v, (unsigned long long)bounds[i].min);
            return BT_E_CONFIG;
        }
    return BT_OK;
}
