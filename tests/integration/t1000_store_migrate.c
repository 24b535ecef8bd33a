/* Migrations: apply in order, re-run is a no-op, concurrent starts
 * serialise, and a newer schema refuses to start (library, batond, batonctl). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

static const char *db;

static void migrate_then_noop(void **state)
{
    char err[512] = "";
    int v = -1;
    (void)state;
    assert_int_equal(bt_store_migrate(db, &v, err, sizeof err), BT_OK);
    assert_int_equal(v, bt_store_schema_version());
    PGconn *c = itest_connect(db);
    long long n = itest_scalar(c, "SELECT count(*) FROM schema_migrations");
    assert_int_equal(n, bt_store_schema_version());
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM pg_tables WHERE tablename IN "
                                     "('fence','workflows','workflow_runs','task_runs','events')"),
                     5);
    char *applied = itest_text(c, "SELECT applied_at::text FROM schema_migrations WHERE version = 1");
    assert_int_equal(bt_store_migrate(db, &v, err, sizeof err), BT_OK);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM schema_migrations"), n);
    char *again = itest_text(c, "SELECT applied_at::text FROM schema_migrations WHERE version = 1");
    assert_string_equal(applied, again); /* not re-applied */
    free(applied);
    free(again);
    PQfinish(c);
}

static void concurrent_migrations_serialise(void **state)
{
    const char *fresh = itest_fresh_db("migrate_conc");
    pid_t kids[4];
    (void)state;
    for (int i = 0; i < 4; i++) {
        if ((kids[i] = fork()) == 0) {
            char err[512];
            _exit(bt_store_migrate(fresh, NULL, err, sizeof err) == BT_OK ? 0 : 1);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status;
        waitpid(kids[i], &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    PGconn *c = itest_connect(fresh);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM schema_migrations"),
                     bt_store_schema_version());
    PQfinish(c);
}

static int run_cmd(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    assert_non_null(p);
    if (out) {
        n = fread(out, 1, outlen - 1, p);
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0)
            ;
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void newer_schema_refuses_to_start(void **state)
{
    char err[512] = "";
    char cmd[2048], out[8192];
    int v;
    (void)state;
    PGconn *c = itest_connect(db);
    itest_exec(c, "INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')");
    assert_int_equal(bt_store_migrate(db, &v, err, sizeof err), BT_E_SCHEMA_NEWER);
    assert_int_equal(v, 999);
    assert_non_null(strstr(err, "version 999"));

    /* batond refuses, with the reason, exit 2 */
    snprintf(cmd, sizeof cmd, "'%s' --cluster c --zk 127.0.0.1:1 --pg '%s' 2>&1",
             getenv("BATOND"), db);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "refusing to start"));
    assert_non_null(strstr(out, "version 999"));

    /* batonctl migrate fails (1), batonctl schema shows it */
    snprintf(cmd, sizeof cmd, "'%s' --pg '%s' migrate 2>&1", getenv("BATONCTL"), db);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "'%s' --pg '%s' schema --json", getenv("BATONCTL"), db);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"version\": 999"));
    assert_non_null(strstr(out, "\"name\": \"task_runs\""));
    itest_exec(c, "DELETE FROM schema_migrations WHERE version = 999");
    PQfinish(c);
}

static void unreachable_server_is_reported(void **state)
{
    char err[512] = "";
    char cmd[1024];
    (void)state;
    assert_int_equal(bt_store_migrate("host=127.0.0.1 port=1 connect_timeout=2", NULL, err,
                                      sizeof err),
                     BT_E_PG_CONN);
    assert_non_null(strstr(err, "cannot connect"));
    snprintf(cmd, sizeof cmd, "'%s' --pg 'host=127.0.0.1 port=1' migrate 2>/dev/null",
             getenv("BATONCTL"));
    assert_int_equal(run_cmd(cmd, NULL, 0), 3);
}

static void bad_config_refuses_to_start(void **state)
{
    char cmd[1024], out[4096];
    (void)state;
    snprintf(cmd, sizeof cmd, "'%s' --zk h:1 --pg dbname=x 2>&1", getenv("BATOND"));
    assert_int_equal(run_cmd(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "cluster: not set"));
    snprintf(cmd, sizeof cmd, "'%s' --config /nonexistent.yaml 2>&1", getenv("BATOND"));
    assert_int_equal(run_cmd(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "/nonexistent.yaml"));
}

int main(void)
{
    db = itest_fresh_db("migrate");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(migrate_then_noop),
        cmocka_unit_test(concurrent_migrations_serialise),
        cmocka_unit_test(newer_schema_refuses_to_start),
        cmocka_unit_test(unreachable_server_is_reported),
        cmocka_unit_test(bad_config_refuses_to_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
