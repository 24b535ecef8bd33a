/* Config: a bad file names file, line and field; good files load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "baton/config.h"
#include "baton/yaml.h"

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/baton-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void load_expect_error(const char *text, const char *needle)
{
    bt_config_t c;
    char err[512] = "";
    char *path = write_tmp(text);
    bt_config_init(&c);
    assert_int_not_equal(bt_config_load_file(&c, path, err, sizeof err), BT_OK);
    if (!strstr(err, needle) || !strstr(err, path))
        fail_msg("error '%s' lacks '%s' or the file name", err, needle);
    bt_config_free(&c);
    unlink(path);
    free(path);
}

static void good_file_loads(void **state)
{
    bt_config_t c;
    char err[512] = "";
    (void)state;
    char *path = write_tmp("cluster: prod\nzone: z1\nzookeeper:\n  hosts: a:1,b:2\n"
                           "  session_timeout: 4s\npostgres:\n  conninfo: dbname=x\n"
                           "  lock_timeout: 500ms\nelection:\n  zone_handoff: yes\n");
    bt_config_init(&c);
    assert_int_equal(bt_config_load_file(&c, path, err, sizeof err), BT_OK);
    assert_string_equal(c.cluster, "prod");
    assert_string_equal(c.zk_hosts, "a:1,b:2");
    assert_int_equal(c.zk_session_timeout_ms, 4000);
    assert_int_equal(c.pg_lock_timeout_ms, 500);
    assert_int_equal(c.zone_handoff, 1);
    assert_string_equal(c.zk_root, "/baton");
    assert_int_equal(bt_config_validate(&c, 1, err, sizeof err), BT_OK);
    bt_config_free(&c);
    unlink(path);
    free(path);
}

/* credentials: a task names one with auth:; the file holds the secret */
static void credentials_load_and_refuse(void **state)
{
    bt_config_t c;
    char err[512] = "";
    (void)state;
    char *path = write_tmp("cluster: prod\ncredentials:\n  cluster_livy: \"basic etl:s3cret\"\n"
                           "  genie-prod: \"bearer tok\"\n");
    bt_config_init(&c);
    assert_int_equal(bt_config_load_file(&c, path, err, sizeof err), BT_OK);
    assert_int_equal(c.ncredentials, 2);
    assert_string_equal(bt_config_credential(&c, "cluster_livy"), "basic etl:s3cret");
    assert_string_equal(bt_config_credential(&c, "genie-prod"), "bearer tok");
    assert_null(bt_config_credential(&c, "other"));
    bt_config_free(&c);
    unlink(path);
    free(path);
    load_expect_error("credentials:\n  x: \"digest a:b\"\n",
                      ":2: credentials.x: expected \"basic USER:PASSWORD\"");
    load_expect_error("credentials:\n  x: \"basic nocolon\"\n", ":2: credentials.x: expected");
    load_expect_error("credentials:\n  x: [a]\n", ":2: credentials.x: expected");
    load_expect_error("credentials:\n  bad name: \"basic a:b\"\n", "a name is 1 to 64");
    load_expect_error("credentials:\n  x: \"basic a:b\"\n  x: \"basic c:d\"\n", "duplicate key");
    load_expect_error("credentials: \"basic a:b\"\n", "credentials: expected a mapping");
    /* the secret never appears in a message */
    bt_config_init(&c);
    char *p2 = write_tmp("credentials:\n  x: \"basic nocolon-secret\"\n");
    assert_int_not_equal(bt_config_load_file(&c, p2, err, sizeof err), BT_OK);
    assert_null(strstr(err, "nocolon-secret"));
    bt_config_free(&c);
    unlink(p2);
    free(p2);
}

static void bad_files_name_line_and_field(void **state)
{
    (void)state;
    load_expect_error("cluster: a\nzookeeper:\n  hostz: x\n", ":3: zookeeper.hostz: unknown setting");
    load_expect_error("cluster: a\nzookeeper:\n  session_timeout: soon\n",
                      ":3:20: zookeeper.session_timeout: 'soon' is not a duration");
    load_expect_error("cluster: a\nmystery:\n  x: 1\n", ":2: mystery: unknown section");
    load_expect_error("cluster: [a, b]\n", ":1:10: cluster: expected a single value");
    load_expect_error("cluster: a\ncluster: b\n", ":2:1: duplicate key 'cluster'");
    load_expect_error("cluster: &x a\n", "anchors and aliases");
    load_expect_error("cluster: 'unterminated\n", "found unexpected end of stream");
    load_expect_error("", "the file is empty");
    load_expect_error("election:\n  zone_handoff: maybe\n", "'maybe' is not true or false");
}

static void validation_says_what_is_missing(void **state)
{
    bt_config_t c;
    char err[512];
    (void)state;
    bt_config_init(&c);
    assert_int_equal(bt_config_validate(&c, 1, err, sizeof err), BT_E_CONFIG);
    assert_non_null(strstr(err, "cluster: not set"));
    assert_int_equal(bt_config_set(&c, "cluster", "a", err, sizeof err), BT_OK);
    assert_int_equal(bt_config_validate(&c, 1, err, sizeof err), BT_E_CONFIG);
    assert_non_null(strstr(err, "postgres.conninfo"));
    assert_int_equal(bt_config_set(&c, "postgres.conninfo", "dbname=x", err, sizeof err), BT_OK);
    assert_int_equal(bt_config_validate(&c, 0, err, sizeof err), BT_OK);
    assert_int_equal(bt_config_validate(&c, 1, err, sizeof err), BT_E_CONFIG);
    assert_non_null(strstr(err, "zookeeper.hosts"));
    assert_int_equal(bt_config_set(&c, "zookeeper.hosts", "h:1", err, sizeof err), BT_OK);
    assert_int_equal(bt_config_set(&c, "zookeeper.auth", "nocolon", err, sizeof err), BT_OK);
    assert_int_equal(bt_config_validate(&c, 1, err, sizeof err), BT_E_CONFIG);
    assert_non_null(strstr(err, "user:password"));
    assert_int_equal(bt_config_set(&c, "no.such", "1", err, sizeof err), BT_E_CONFIG);
    bt_config_free(&c);
}

/* The shipped example is what operators copy: it must load and validate,
 * operator keys included. */
static void example_config_loads(void **state)
{
    bt_config_t c;
    char err[512] = "";
    (void)state;
    bt_config_init(&c);
    if (bt_config_load_file(&c, BATON_EXAMPLE_CONFIG, err, sizeof err) != BT_OK)
        fail_msg("%s", err);
    assert_int_equal(bt_config_validate(&c, 1, err, sizeof err), BT_OK);
    assert_string_equal(c.emr_region, "eu-west-1");
    assert_string_equal(c.livy_url, "http://livy.internal:8998");
    assert_string_equal(c.genie_url, "https://genie.internal");
    assert_false(c.http_insecure);
    bt_config_free(&c);
}

static void yaml_tree_keeps_positions(void **state)
{
    bt_ynode_t *root;
    char err[256];
    const char *doc = "a:\n  - x\n  - {b: 'null', c: null}\n";
    (void)state;
    assert_int_equal(bt_yaml_load_string("doc", doc, strlen(doc), &root, err, sizeof err), BT_OK);
    const bt_ynode_t *a = bt_ynode_get(root, "a");
    assert_non_null(a);
    assert_int_equal(a->kind, BT_YNODE_SEQ);
    assert_int_equal(a->n, 2);
    assert_int_equal(a->items[1]->line, 3);
    assert_int_equal(a->items[1]->col, 5);
    assert_false(bt_ynode_is_null(bt_ynode_get(a->items[1], "b")));
    assert_true(bt_ynode_is_null(bt_ynode_get(a->items[1], "c")));
    bt_ynode_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_file_loads),
        cmocka_unit_test(bad_files_name_line_and_field),
        cmocka_unit_test(credentials_load_and_refuse),
        cmocka_unit_test(validation_says_what_is_missing),
        cmocka_unit_test(yaml_tree_keeps_positions),
        cmocka_unit_test(example_config_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
