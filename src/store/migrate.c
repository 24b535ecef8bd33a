/* Schema migrations. Blocking on purpose: this runs once at start-up (batond)
 * or from `batonctl migrate`, before any event loop exists. */
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "baton/log.h"
#include "baton/store.h"
#include "store/migrations.h"

/* Advisory lock key shared by every baton process: "baton" in ASCII. Two
 * nodes starting together serialise here; the second sees the work done. */
#define BT_MIGRATE_LOCK_KEY "426164976750"

int bt_store_schema_version(void)
{
    return bt_migrations_count ? bt_migrations[bt_migrations_count - 1].version : 0;
}

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!errbuf || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Runs one command; returns 0 or -1 with the server's message in errbuf. */
static int exec_ok(PGconn *c, const char *sql, char *errbuf, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    if (!ok)
        set_err(errbuf, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static int current_version(PGconn *c, int *out, char *errbuf, size_t errlen)
{
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_err(errbuf, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    *out = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static bt_err_t apply_one(PGconn *c, const bt_migration_t *m, char *errbuf,
                          size_t errlen)
{
    char ver[16];
    const char *params[2] = {ver, m->name};
    PGresult *r;

    snprintf(ver, sizeof ver, "%d", m->version);
    if (exec_ok(c, "BEGIN", errbuf, errlen) < 0)
        return BT_E_PG;
    if (exec_ok(c, m->sql, errbuf, errlen) < 0)
        goto err_rollback;
    r = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        set_err(errbuf, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
        goto err_rollback;
    }
    PQclear(r);
    if (exec_ok(c, "COMMIT", errbuf, errlen) < 0)
        return BT_E_PG;
    bt_info("store: applied migration %d (%s)", m->version, m->name);
    return BT_OK;

err_rollback:
    {
        char msg[512];
        snprintf(msg, sizeof msg, "migration %d (%s): %s", m->version, m->name,
                 errbuf ? errbuf : "");
        set_err(errbuf, errlen, "%s", msg);
    }
    PQclear(PQexec(c, "ROLLBACK"));
    return BT_E_PG;
}

bt_err_t bt_store_migrate(const char *conninfo, int *out_version, char *errbuf,
                          size_t errlen)
{
    bt_err_t err = BT_OK;
    int version = 0;
    PGconn *c = PQconnectdb(conninfo);

    if (PQstatus(c) != CONNECTION_OK) {
        set_err(errbuf, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        return BT_E_PG_CONN;
    }
    if (exec_ok(c, "SET client_min_messages = warning", errbuf, errlen) < 0 ||
        exec_ok(c, "SELECT pg_advisory_lock(" BT_MIGRATE_LOCK_KEY ")", errbuf, errlen) < 0) {
        err = BT_E_PG;
        goto out_finish;
    }
    if (exec_ok(c,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())",
                errbuf, errlen) < 0 ||
        current_version(c, &version, errbuf, errlen) < 0) {
        err = BT_E_PG;
        goto out_unlock;
    }
    if (version > bt_store_schema_version()) {
        set_err(errbuf, errlen,
                "database schema is at version %d, this binary knows up to %d: "
                "upgrade baton before starting it against this database",
                version, bt_store_schema_version());
        err = BT_E_SCHEMA_NEWER;
        goto out_unlock;
    }
    for (int i = 0; i < bt_migrations_count; i++) {
        if (bt_migrations[i].version <= version)
            continue;
        if ((err = apply_one(c, &bt_migrations[i], errbuf, errlen)) != BT_OK)
            goto out_unlock;
        version = bt_migrations[i].version;
    }

out_unlock:
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" BT_MIGRATE_LOCK_KEY ")"));
out_finish:
    PQfinish(c);
    if (out_version)
        *out_version = version;
    return err;
}
