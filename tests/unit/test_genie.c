/* The pure parts of the Genie operators: the derived ids are stable UUIDs
 * (the vectors come from Python's uuid.uuid5), request bodies carry what
 * Genie 3 requires, and every parser turns a surprise into an error with a
 * reason instead of a guess. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "ops/genie_int.h"

static void ids_are_name_based_uuids(void **state)
{
    char id[BT_GENIE_ID_LEN + 1], again[BT_GENIE_ID_LEN + 1], other[BT_GENIE_ID_LEN + 1];
    char key[200];
    (void)state;
    bt_genie_uuid("c1", "job", "wf/run1/task/1", id);
    assert_string_equal(id, "52ec8c84-26fd-545e-8b34-20afffb8d75d");
    bt_genie_uuid("c1", "job", "wf/run1/task/1", again);
    assert_string_equal(id, again);
    /* a name longer than one SHA-1 block */
    snprintf(key, sizeof key, "%.100s/scheduled__2026-01-01T00:00:00/t/3",
             "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww");
    bt_genie_uuid("prod", "cluster", key, other);
    assert_string_equal(other, "7a4696b1-8d0c-52d8-a846-e46c2717cb08");
    bt_genie_uuid(NULL, "job", "x", other);
    assert_string_equal(other, "750c4418-096b-5372-ad2e-413235ae67f1");
    /* another baton cluster, another attempt, another kind: another id */
    bt_genie_uuid("c2", "job", "wf/run1/task/1", other);
    assert_string_not_equal(id, other);
    bt_genie_uuid("c1", "job", "wf/run1/task/2", other);
    assert_string_not_equal(id, other);
    bt_genie_uuid("c1", "cluster", "wf/run1/task/1", other);
    assert_string_not_equal(id, other);
}

static json_t *parse(char *s)
{
    json_error_t e;
    assert_non_null(s);
    json_t *o = json_loads(s, 0, &e);
    assert_non_null(o);
    free(s);
    return o;
}

static int has_tag(json_t *tags, const char *t)
{
    for (size_t i = 0; i < json_array_size(tags); i++)
        if (!strcmp(json_string_value(json_array_get(tags, i)), t))
            return 1;
    return 0;
}

static void job_body_has_genie_fields(void **state)
{
    (void)state;
    char *args[] = {"--hour", "2026-01-01T05:00:00Z"}, *t1[] = {"sched:sla", "type:yarn"},
         *t2[] = {"sched:adhoc"}, *cmd[] = {"type:spark-submit"}, *tags[] = {"finance"};
    Baton__V1__GenieCriterion c1 = BATON__V1__GENIE_CRITERION__INIT,
                              c2 = BATON__V1__GENIE_CRITERION__INIT,
                              cc = BATON__V1__GENIE_CRITERION__INIT;
    c1.n_tags = 2, c1.tags = t1;
    c2.n_tags = 1, c2.tags = t2;
    cc.n_tags = 1, cc.tags = cmd;
    Baton__V1__GenieCriterion *crits[] = {&c1, &c2};
    Baton__V1__GenieJob j = BATON__V1__GENIE_JOB__INIT;
    j.name = "rollup";
    j.user = "svc";
    j.version = "1.4.2";
    j.n_command_args = 2, j.command_args = args;
    j.n_cluster_criteria = 2, j.cluster_criteria = crits;
    j.command_criterion = &cc;
    j.timeout_s = 2700;
    j.grouping = "finance-hourly";
    j.n_tags = 1, j.tags = tags;

    json_t *o = parse(bt_genie_job_body(&j, "the-id", "prod", "wf/r/t/1"));
    assert_string_equal(json_string_value(json_object_get(o, "id")), "the-id");
    assert_string_equal(json_string_value(json_object_get(o, "name")), "rollup");
    assert_string_equal(json_string_value(json_object_get(o, "user")), "svc");
    assert_string_equal(json_string_value(json_object_get(o, "version")), "1.4.2");
    assert_string_equal(json_string_value(json_object_get(o, "grouping")), "finance-hourly");
    assert_null(json_object_get(o, "description")); /* empty: left out */
    json_t *a = json_object_get(o, "commandArgs");
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_array_get(a, 1)), "2026-01-01T05:00:00Z");
    json_t *cr = json_object_get(o, "clusterCriterias");
    assert_int_equal(json_array_size(cr), 2);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_array_get(cr, 0), "tags"), 1)),
        "type:yarn");
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "commandCriteria"), 0)),
                        "type:spark-submit");
    assert_int_equal(json_integer_value(json_object_get(o, "timeout")), 2700);
    json_t *tg = json_object_get(o, "tags");
    assert_true(has_tag(tg, "finance"));
    assert_true(has_tag(tg, "baton.run_key:wf/r/t/1"));
    assert_true(has_tag(tg, "baton.cluster:prod"));
    json_decref(o);

    /* no timeout: left out; invalid UTF-8 anywhere: no body at all */
    j.timeout_s = 0;
    o = parse(bt_genie_job_body(&j, "x", "prod", "k"));
    assert_null(json_object_get(o, "timeout"));
    json_decref(o);
    j.name = "bad\xff";
    assert_null(bt_genie_job_body(&j, "x", "prod", "k"));
}

static void cluster_body_and_patch(void **state)
{
    (void)state;
    char *tags[] = {"type:yarn"};
    Baton__V1__GenieRegisterCluster c = BATON__V1__GENIE_REGISTER_CLUSTER__INIT;
    c.name = "analytics";
    c.user = "svc";
    c.version = "emr-6.15.0";
    c.n_tags = 1, c.tags = tags;
    json_t *o = parse(bt_genie_cluster_body(&c, "cid", "prod", "wf/r/reg/1"));
    assert_string_equal(json_string_value(json_object_get(o, "status")), "UP");
    assert_string_equal(json_string_value(json_object_get(o, "id")), "cid");
    assert_true(has_tag(json_object_get(o, "tags"), "baton.run_key:wf/r/reg/1"));
    assert_false(has_tag(json_object_get(o, "tags"), "emr.cluster_id:"));
    json_decref(o);
    c.emr_cluster_id = "j-2AXXXXXXGAPLF";
    c.status = "OUT_OF_SERVICE";
    o = parse(bt_genie_cluster_body(&c, "cid", "prod", "k"));
    assert_string_equal(json_string_value(json_object_get(o, "status")), "OUT_OF_SERVICE");
    assert_true(has_tag(json_object_get(o, "tags"), "emr.cluster_id:j-2AXXXXXXGAPLF"));
    json_decref(o);

    char *p = bt_genie_status_patch("TERMINATED");
    assert_string_equal(p, "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"TERMINATED\"}]");
    free(p);
}

#define STATUS_OK(body, want)                                                                     \
    do {                                                                                          \
        char s[32], e[200];                                                                       \
        assert_int_equal(bt_genie_parse_status(body, strlen(body), s, sizeof s, e, sizeof e), 0); \
        assert_string_equal(s, want);                                                             \
    } while (0)

#define STATUS_BAD(body, why)                                                                     \
    do {                                                                                          \
        char s[32], e[200] = "";                                                                  \
        assert_int_equal(bt_genie_parse_status(body, strlen(body), s, sizeof s, e, sizeof e), -1); \
        assert_non_null(strstr(e, why));                                                          \
    } while (0)

static void status_parser(void **state)
{
    (void)state;
    STATUS_OK("{\"status\": \"RUNNING\"}", "RUNNING");
    STATUS_OK("{\"status\":\"SUCCEEDED\",\"extra\":[1]}", "SUCCEEDED");
    STATUS_BAD("<html>oops", "not JSON");
    STATUS_BAD("", "not JSON");
    STATUS_BAD("[\"RUNNING\"]", "not a JSON object");
    STATUS_BAD("{}", "no \"status\"");
    STATUS_BAD("{\"status\": 42}", "not a string");
    STATUS_BAD("{\"status\": null}", "not a string");
    STATUS_BAD("{\"status\": \"WEIRD\"}", "unknown status \"WEIRD\"");
    STATUS_BAD("{\"status\": \"RUNNING\"", "not JSON");
    char e[64];
    assert_int_equal(bt_genie_parse_status(NULL, 0, NULL, 0, e, sizeof e), -1);

    assert_int_equal(bt_genie_phase("INIT"), BT_GENIE_ACTIVE);
    assert_int_equal(bt_genie_phase("ACCEPTED"), BT_GENIE_ACTIVE);
    assert_int_equal(bt_genie_phase("RUNNING"), BT_GENIE_ACTIVE);
    assert_int_equal(bt_genie_phase("SUCCEEDED"), BT_GENIE_SUCCEEDED);
    assert_int_equal(bt_genie_phase("FAILED"), BT_GENIE_FAILED);
    assert_int_equal(bt_genie_phase("KILLED"), BT_GENIE_FAILED);
    assert_int_equal(bt_genie_phase("INVALID"), BT_GENIE_FAILED);
    assert_int_equal(bt_genie_phase("running"), BT_GENIE_UNKNOWN);
    assert_int_equal(bt_genie_phase(NULL), BT_GENIE_UNKNOWN);
}

static void error_messages(void **state)
{
    char m[200];
    (void)state;
    const char *spring = "{\"timestamp\":1,\"status\":400,\"error\":\"Bad Request\","
                         "\"message\":\"commandCriteria: required\",\"path\":\"/api/v3/jobs\"}";
    bt_genie_error_message(400, spring, strlen(spring), m, sizeof m);
    assert_string_equal(m, "HTTP 400: commandCriteria: required");
    const char *genie = "{\"message\":\"No job with id x exists\"}";
    bt_genie_error_message(404, genie, strlen(genie), m, sizeof m);
    assert_string_equal(m, "HTTP 404: No job with id x exists");
    const char *only_error = "{\"error\":\"Forbidden\",\"message\":\"\"}";
    bt_genie_error_message(403, only_error, strlen(only_error), m, sizeof m);
    assert_string_equal(m, "HTTP 403: Forbidden");
    const char *html = "<html>\n  <b>Bad\tGateway</b>\n</html>\n";
    bt_genie_error_message(502, html, strlen(html), m, sizeof m);
    assert_string_equal(m, "HTTP 502: <html> <b>Bad Gateway</b> </html>");
    bt_genie_error_message(503, "", 0, m, sizeof m);
    assert_string_equal(m, "HTTP 503");
    bt_genie_error_message(503, NULL, 0, m, sizeof m);
    assert_string_equal(m, "HTTP 503");
    bt_genie_error_message(500, "[1,2]", 5, m, sizeof m);
    assert_string_equal(m, "HTTP 500");
}

static void cluster_parsers(void **state)
{
    char *ids[4] = {0}, e[200], st[32] = "";
    (void)state;
    const char *page = "{\"_embedded\":{\"clusterList\":["
                       "{\"id\":\"a\",\"name\":\"etl_prod\",\"status\":\"UP\"},"
                       "{\"id\":\"b\",\"name\":\"etlXprod\",\"status\":\"UP\"},"
                       "{\"id\":\"c\",\"name\":\"etl_prod\",\"status\":\"OUT_OF_SERVICE\"}]},"
                       "\"page\":{\"size\":100}}";
    assert_int_equal(bt_genie_parse_clusters(page, strlen(page), "etl_prod", ids, 4, e, sizeof e),
                     2);
    assert_string_equal(ids[0], "a");
    assert_string_equal(ids[1], "c");
    free(ids[0]);
    free(ids[1]);
    ids[0] = ids[1] = NULL;
    /* at most max ids */
    assert_int_equal(bt_genie_parse_clusters(page, strlen(page), "etl_prod", ids, 1, e, sizeof e),
                     1);
    free(ids[0]);
    ids[0] = NULL;
    const char *empty = "{\"_links\":{},\"page\":{\"size\":100,\"totalElements\":0}}";
    assert_int_equal(bt_genie_parse_clusters(empty, strlen(empty), "x", ids, 4, e, sizeof e), 0);
    const char *bad[] = {"nope", "[]", "{\"_embedded\":[]}", "{\"_embedded\":{\"x\":1}}",
                         "{\"_embedded\":{\"clusterList\":[{\"id\":1,\"name\":\"x\"}]}}",
                         "{\"_embedded\":{\"clusterList\":[\"x\"]}}",
                         "{\"_embedded\":{\"clusterList\":[{\"id\":\"a\",\"name\":\"x\"},{}]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e[0] = '\0';
        assert_int_equal(bt_genie_parse_clusters(bad[i], strlen(bad[i]), "x", ids, 4, e, sizeof e),
                         -1);
        assert_non_null(strstr(e, "cluster search"));
        assert_null(ids[0]); /* nothing half-collected is left behind */
    }

    const char *one = "{\"id\":\"a\",\"name\":\"n\",\"status\":\"TERMINATED\"}";
    assert_int_equal(bt_genie_parse_cluster(one, strlen(one), st, sizeof st, e, sizeof e), 0);
    assert_string_equal(st, "TERMINATED");
    assert_int_equal(bt_genie_parse_cluster("{\"name\":\"n\"}", 12, st, sizeof st, e, sizeof e),
                     -1);
    assert_int_equal(bt_genie_parse_cluster("<", 1, st, sizeof st, e, sizeof e), -1);
}

static void tails_are_safe_text(void **state)
{
    (void)state;
    size_t n = 10000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    memcpy(big + n - 4, "END\n", 4);
    char *t = bt_genie_tail_text(big, n);
    assert_int_equal(strlen(t), BT_GENIE_TAIL_BYTES);
    assert_memory_equal(t, big + n - BT_GENIE_TAIL_BYTES, BT_GENIE_TAIL_BYTES);
    free(t);
    free(big);

    const char raw[] = "ok \xc3\xa9 \xe2\x82\xac\n\tbad \xff \xc3 \x01 \xed\xa0\x80 \xf0\x9f\x98\x80";
    t = bt_genie_tail_text(raw, sizeof raw - 1);
    assert_string_equal(t, "ok \xc3\xa9 \xe2\x82\xac\n\tbad ? ? ? ??? \xf0\x9f\x98\x80");
    free(t);
    t = bt_genie_tail_text(NULL, 5);
    assert_string_equal(t, "");
    free(t);
    /* a NUL inside a log does not cut it short */
    t = bt_genie_tail_text("a\0b", 3);
    assert_string_equal(t, "a?b");
    free(t);
}

static void url_escape(void **state)
{
    (void)state;
    char *s = bt_genie_url_escape("emr.cluster_id:j-2A X/~%");
    assert_string_equal(s, "emr.cluster_id%3Aj-2A%20X%2F~%25");
    free(s);
    s = bt_genie_url_escape("");
    assert_string_equal(s, "");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ids_are_name_based_uuids),
        cmocka_unit_test(job_body_has_genie_fields),
        cmocka_unit_test(cluster_body_and_patch),
        cmocka_unit_test(status_parser),
        cmocka_unit_test(error_messages),
        cmocka_unit_test(cluster_parsers),
        cmocka_unit_test(tails_are_safe_text),
        cmocka_unit_test(url_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
