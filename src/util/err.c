#include "baton/err.h"

static const struct {
    const char *name;
    const char *text;
} bt_err_table[BT_E__COUNT] = {
    [BT_OK] = {"ok", "no error"},
    [BT_E_NOMEM] = {"nomem", "out of memory"},
    [BT_E_INVAL] = {"inval", "invalid argument or input"},
    [BT_E_CONFIG] = {"config", "configuration error"},
    [BT_E_FENCED] = {"fenced", "fenced: writer's epoch is no longer current"},
    [BT_E_STALE_EPOCH] = {"stale_epoch", "a newer leader epoch is already recorded"},
    [BT_E_CONFLICT] = {"conflict", "record is not in the expected state"},
    [BT_E_EXISTS] = {"exists", "record already exists"},
    [BT_E_NOTFOUND] = {"notfound", "not found"},
    [BT_E_CORRUPT] = {"corrupt", "stored record is corrupt"},
    [BT_E_PG] = {"pg", "PostgreSQL error"},
    [BT_E_PG_CONN] = {"pg_conn", "PostgreSQL connection lost (outcome unknown)"},
    [BT_E_SCHEMA_NEWER] = {"schema_newer", "database schema is newer than this binary"},
    [BT_E_TIMEOUT] = {"timeout", "timed out"},
    [BT_E_CANCELLED] = {"cancelled", "cancelled"},
    [BT_E_IO] = {"io", "I/O error"},
    [BT_E_ZK] = {"zk", "ZooKeeper error"},
    [BT_E_HTTP] = {"http", "HTTP error"},
    [BT_E_PARSE] = {"parse", "parse error"},
    [BT_E_NOT_SENT] = {"not_sent", "not sent: this node may not act now"},
};

const char *bt_strerror(bt_err_t err)
{
    if ((unsigned)err >= BT_E__COUNT)
        return "unknown error";
    return bt_err_table[err].text;
}

const char *bt_err_name(bt_err_t err)
{
    if ((unsigned)err >= BT_E__COUNT)
        return "unknown";
    return bt_err_table[err].name;
}
