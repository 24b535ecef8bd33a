/* The pure parts of the Genie operators: the derived ids are stable UUIDs
 * (the vectors come from Python's uuid.uuid5), request bodies carry what
 * Genie 3 requires, and every parser turns a surprise into an error with a
 * reason instead of a guess. And, through the Genie operators, the life of
 * a call on the operator-call core (src/ops/op_call.c), without a server:
 * an answer never comes from inside the entry, trouble is classified, and
 * a call still in flight when the operators go is dropped without an
 * answer or a leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baton/genie.h"
#include "ops/genie_int.h"

static void ids_are_name_based_uuids(void **state)
{
    char id[GENIE_ID_LEN + 1], again[GENIE_ID_LEN + 1], other[GENIE_ID_LEN + 1];
    char key[200];
    (void)state;
    genie_uuid("c1", "job", "wf/run1/task/1", id);
    assert_string_equal(id, "52ec8c84-26fd-545e-8b34-20afffb8d75d");
    genie_uuid("c1", "job", "wf/run1/task/1", again);
    assert_string_equal(id, again);
    /* a name longer than one SHA-1 block */
    snprintf(key, sizeof key, "%.100s/scheduled__2026-01-01T00:00:00/t/3",
             "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww");
    genie_uuid("prod", "cluster", key, other);
    assert_string_equal(other, "7a4696b1-8d0c-52d8-a846-e46c2717cb08");
    genie_uuid(NULL, "job", "x", other);
    assert_string_equal(other, "750c4418-096b-5372-ad2e-413235ae67f1");
    /* another baton cluster, another attempt, another kind: another id */
    genie_uuid("c2", "job", "wf/run1/task/1", other);
    assert_string_not_equal(id, other);
    genie_uuid("c1", "job", "wf/run1/task/2", other);
    assert_string_not_equal(id, other);
    genie_uuid("c1", "cluster", "wf/run1/task/1", other);
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

    json_t *o = parse(genie_job_body(&j, "the-id", "prod", "wf/r/t/1"));
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
    o = parse(genie_job_body(&j, "x", "prod", "k"));
    assert_null(json_object_get(o, "timeout"));
    json_decref(o);
    j.name = "bad\xff";
    assert_null(genie_job_body(&j, "x", "prod", "k"));
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
    json_t *o = parse(genie_cluster_body(&c, "cid", "prod", "wf/r/reg/1"));
    assert_string_equal(json_string_value(json_object_get(o, "status")), "UP");
    assert_string_equal(json_string_value(json_object_get(o, "id")), "cid");
    assert_true(has_tag(json_object_get(o, "tags"), "baton.run_key:wf/r/reg/1"));
    assert_false(has_tag(json_object_get(o, "tags"), "emr.cluster_id:"));
    json_decref(o);
    c.emr_cluster_id = "j-2AXXXXXXGAPLF";
    c.status = "OUT_OF_SERVICE";
    o = parse(genie_cluster_body(&c, "cid", "prod", "k"));
    assert_string_equal(json_string_value(json_object_get(o, "status")), "OUT_OF_SERVICE");
    assert_true(has_tag(json_object_get(o, "tags"), "emr.cluster_id:j-2AXXXXXXGAPLF"));
    json_decref(o);

    char *p = genie_status_patch("TERMINATED");
    assert_string_equal(p, "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"TERMINATED\"}]");
    free(p);
}

#define STATUS_OK(body, want)                                                                     \
    do {                                                                                          \
        char s[32], e[200];                                                                       \
        assert_int_equal(genie_parse_status(body, strlen(body), s, sizeof s, e, sizeof e), 0); \
        assert_string_equal(s, want);                                                             \
    } while (0)

#define STATUS_BAD(body, why)                                                                     \
    do {                                                                                          \
        char s[32], e[200] = "";                                                                  \
        assert_int_equal(genie_parse_status(body, strlen(body), s, sizeof s, e, sizeof e), -1); \
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
    assert_int_equal(genie_parse_status(NULL, 0, NULL, 0, e, sizeof e), -1);

    assert_int_equal(genie_phase("INIT"), GENIE_ACTIVE);
    assert_int_equal(genie_phase("ACCEPTED"), GENIE_ACTIVE);
    assert_int_equal(genie_phase("RUNNING"), GENIE_ACTIVE);
    assert_int_equal(genie_phase("SUCCEEDED"), GENIE_SUCCEEDED);
    assert_int_equal(genie_phase("FAILED"), GENIE_FAILED);
    assert_int_equal(genie_phase("KILLED"), GENIE_FAILED);
    assert_int_equal(genie_phase("INVALID"), GENIE_FAILED);
    assert_int_equal(genie_phase("running"), GENIE_UNKNOWN);
    assert_int_equal(genie_phase(NULL), GENIE_UNKNOWN);
}

static void error_messages(void **state)
{
    char m[200];
    (void)state;
    const char *spring = "{\"timestamp\":1,\"status\":400,\"error\":\"Bad Request\","
                         "\"message\":\"commandCriteria: required\",\"path\":\"/api/v3/jobs\"}";
    genie_error_message(400, spring, strlen(spring), m, sizeof m);
    assert_string_equal(m, "HTTP 400: commandCriteria: required");
    const char *genie = "{\"message\":\"No job with id x exists\"}";
    genie_error_message(404, genie, strlen(genie), m, sizeof m);
    assert_string_equal(m, "HTTP 404: No job with id x exists");
    const char *only_error = "{\"error\":\"Forbidden\",\"message\":\"\"}";
    genie_error_message(403, only_error, strlen(only_error), m, sizeof m);
    assert_string_equal(m, "HTTP 403: Forbidden");
    const char *html = "<html>\n  <b>Bad\tGateway</b>\n</html>\n";
    genie_error_message(502, html, strlen(html), m, sizeof m);
    assert_string_equal(m, "HTTP 502: <html> <b>Bad Gateway</b> </html>");
    genie_error_message(503, "", 0, m, sizeof m);
    assert_string_equal(m, "HTTP 503");
    genie_error_message(503, NULL, 0, m, sizeof m);
    assert_string_equal(m, "HTTP 503");
    genie_error_message(500, "[1,2]", 5, m, sizeof m);
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
    assert_int_equal(genie_parse_clusters(page, strlen(page), "etl_prod", ids, 4, e, sizeof e),
                     2);
    assert_string_equal(ids[0], "a");
    assert_string_equal(ids[1], "c");
    free(ids[0]);
    free(ids[1]);
    ids[0] = ids[1] = NULL;
    /* at most max ids */
    assert_int_equal(genie_parse_clusters(page, strlen(page), "etl_prod", ids, 1, e, sizeof e),
                     1);
    free(ids[0]);
    ids[0] = NULL;
    const char *empty = "{\"_links\":{},\"page\":{\"size\":100,\"totalElements\":0}}";
    assert_int_equal(genie_parse_clusters(empty, strlen(empty), "x", ids, 4, e, sizeof e), 0);
    const char *bad[] = {"nope", "[]", "{\"_embedded\":[]}", "{\"_embedded\":{\"x\":1}}",
                         "{\"_embedded\":{\"clusterList\":[{\"id\":1,\"name\":\"x\"}]}}",
                         "{\"_embedded\":{\"clusterList\":[\"x\"]}}",
                         "{\"_embedded\":{\"clusterList\":[{\"id\":\"a\",\"name\":\"x\"},{}]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e[0] = '\0';
        assert_int_equal(genie_parse_clusters(bad[i], strlen(bad[i]), "x", ids, 4, e, sizeof e),
                         -1);
        assert_non_null(strstr(e, "cluster search"));
        assert_null(ids[0]); /* nothing half-collected is left behind */
    }

    const char *one = "{\"id\":\"a\",\"name\":\"n\",\"status\":\"TERMINATED\"}";
    assert_int_equal(genie_parse_cluster(one, strlen(one), st, sizeof st, e, sizeof e), 0);
    assert_string_equal(st, "TERMINATED");
    assert_int_equal(genie_parse_cluster("{\"name\":\"n\"}", 12, st, sizeof st, e, sizeof e),
                     -1);
    assert_int_equal(genie_parse_cluster("<", 1, st, sizeof st, e, sizeof e), -1);
}

static void tails_are_safe_text(void **state)
{
    (void)state;
    size_t n = 10000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    memcpy(big + n - 4, "END\n", 4);
    char *t = genie_tail_text(big, n);
    assert_int_equal(strlen(t), GENIE_TAIL_BYTES);
    assert_memory_equal(t, big + n - GENIE_TAIL_BYTES, GENIE_TAIL_BYTES);
    free(t);
    free(big);

    const char raw[] = "ok \xc3\xa9 \xe2\x82\xac\n\tbad \xff \xc3 \x01 \xed\xa0\x80 \xf0\x9f\x98\x80";
    t = genie_tail_text(raw, sizeof raw - 1);
    assert_string_equal(t, "ok \xc3\xa9 \xe2\x82\xac\n\tbad ? ? ? ??? \xf0\x9f\x98\x80");
    free(t);
    t = genie_tail_text(NULL, 5);
    assert_string_equal(t, "");
    free(t);
    /* a NUL inside a log does not cut it short */
    t = genie_tail_text("a\0b", 3);
    assert_string_equal(t, "a?b");
    free(t);
}

static void url_escape(void **state)
{
    (void)state;
    char *s = genie_url_escape("emr.cluster_id:j-2A X/~%");
    assert_string_equal(s, "emr.cluster_id%3Aj-2A%20X%2F~%25");
    free(s);
    s = genie_url_escape("");
    assert_string_equal(s, "");
    free(s);
}

/* ------------------------------------------------------------ calls */

typedef struct answers {
    int n;
    bt_op_status_t status;
    char message[300], output[300];
    int has_handle;
} answers_t;

static void on_answer(const bt_op_result_t *res, void *arg)
{
    answers_t *a = arg;
    a->n++;
    a->status = res->status;
    snprintf(a->message, sizeof a->message, "%s", res->message ? res->message : "");
    snprintf(a->output, sizeof a->output, "%s", res->n_outputs ? res->output_values[0] : "-");
    a->has_handle = res->handle != NULL;
}

/* A loopback port that listens but never accepts (listening) or that
 * nobody listens on (closed). */
static int loopback(int listening, int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    if (listening)
        assert_int_equal(listen(fd, 8), 0);
    else
        close(fd);
    return listening ? fd : -1;
}

typedef struct ops {
    struct ev_loop *loop;
    bt_http_t *http;
    bt_operator_t *op[4];
    size_t n;
    char url[64];
} ops_t;

static void ops_new(ops_t *o, int port)
{
    bt_config_t cfg;
    memset(o, 0, sizeof *o);
    memset(&cfg, 0, sizeof cfg);
    snprintf(o->url, sizeof o->url, "http://127.0.0.1:%d/", port);
    cfg.genie_url = o->url;
    cfg.cluster = "c1";
    o->loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(bt_http_new(o->loop, NULL, &o->http), BT_OK);
    assert_int_equal(bt_genie_operators(o->loop, o->http, &cfg, o->op, 4, &o->n), BT_OK);
    assert_int_equal(o->n, 2);
}

static void ops_free(ops_t *o)
{
    bt_genie_operators_free(o->op, o->n);
    assert_null(o->op[0]);
    assert_null(o->op[1]);
    bt_http_free(o->http);
    ev_loop_destroy(o->loop);
}

static void run_until(ops_t *o, const answers_t *a, int n)
{
    for (int i = 0; i < 2000 && a->n < n; i++)
        ev_run(o->loop, EVRUN_ONCE);
}

static void answers_come_from_the_loop(void **state)
{
    (void)state;
    ops_t o;
    answers_t a = {0};
    Baton__V1__GenieRegisterCluster reg = BATON__V1__GENIE_REGISTER_CLUSTER__INIT;
    Baton__V1__TaskSpec spec = BATON__V1__TASK_SPEC__INIT;
    Baton__V1__TaskRun run = BATON__V1__TASK_RUN__INIT;
    int port, fd = loopback(1, &port);
    ops_new(&o, port);
    spec.operator_case = BATON__V1__TASK_SPEC__OPERATOR_GENIE_REGISTER_CLUSTER;
    spec.genie_register_cluster = &reg;
    run.run_key = "wf/r1/reg/1";
    bt_op_call_t call = {.spec = &spec, .run = &run, .cb = on_answer, .arg = &a};
    /* nothing runs remotely: the answer is known at once, and still waits */
    assert_int_equal(o.op[1]->cancel(o.op[1]->ctx, &call), BT_OK);
    assert_int_equal(a.n, 0);
    run_until(&o, &a, 1);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.status, BT_OP_SUCCESS);
    assert_string_equal(a.output, "");
    assert_true(a.has_handle);
    /* a call that cannot start: an error, and never an answer */
    spec.genie_register_cluster = NULL;
    assert_int_equal(o.op[1]->submit(o.op[1]->ctx, &call), BT_E_INVAL);
    ev_run(o.loop, EVRUN_NOWAIT);
    assert_int_equal(a.n, 1);
    ops_free(&o);
    close(fd);
}

static void refused_is_not_sent(void **state)
{
    (void)state;
    ops_t o;
    answers_t a = {0};
    Baton__V1__GenieJob job = BATON__V1__GENIE_JOB__INIT;
    Baton__V1__TaskSpec spec = BATON__V1__TASK_SPEC__INIT;
    Baton__V1__TaskRun run = BATON__V1__TASK_RUN__INIT;
    int port;
    loopback(0, &port);
    ops_new(&o, port);
    spec.operator_case = BATON__V1__TASK_SPEC__OPERATOR_GENIE_JOB;
    spec.genie_job = &job;
    run.run_key = "wf/r1/job/1";
    bt_op_call_t call = {.spec = &spec, .run = &run, .cb = on_answer, .arg = &a};
    /* a refused connection reached nothing: asked again, no lookup needed */
    assert_int_equal(o.op[0]->lookup(o.op[0]->ctx, &call), BT_OK);
    run_until(&o, &a, 1);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.status, BT_OP_NOT_SENT);
    assert_non_null(strstr(a.message, "genie: job "));
    assert_false(a.has_handle);
    ops_free(&o);
}

static void calls_in_flight_are_dropped(void **state)
{
    (void)state;
    ops_t o;
    answers_t a = {0};
    Baton__V1__GenieJob job = BATON__V1__GENIE_JOB__INIT;
    Baton__V1__TaskSpec spec = BATON__V1__TASK_SPEC__INIT;
    Baton__V1__TaskRun run = BATON__V1__TASK_RUN__INIT;
    int port, fd = loopback(1, &port);
    ops_new(&o, port);
    spec.operator_case = BATON__V1__TASK_SPEC__OPERATOR_GENIE_JOB;
    spec.genie_job = &job;
    run.run_key = "wf/r1/job/1";
    bt_op_call_t call = {.spec = &spec, .run = &run, .cb = on_answer, .arg = &a};
    Baton__V1__GenieRegisterCluster reg = BATON__V1__GENIE_REGISTER_CLUSTER__INIT;
    Baton__V1__TaskSpec reg_spec = BATON__V1__TASK_SPEC__INIT;
    reg_spec.operator_case = BATON__V1__TASK_SPEC__OPERATOR_GENIE_REGISTER_CLUSTER;
    reg_spec.genie_register_cluster = &reg;
    bt_op_call_t reg_call = {.spec = &reg_spec, .run = &run, .cb = on_answer, .arg = &a};
    /* the listener never answers: the poll stays in flight */
    assert_int_equal(o.op[0]->poll(o.op[0]->ctx, &call), BT_OK);
    for (int i = 0; i < 5; i++)
        ev_run(o.loop, EVRUN_NOWAIT);
    /* an answer decided but not delivered yet */
    assert_int_equal(o.op[1]->cancel(o.op[1]->ctx, &reg_call), BT_OK);
    /* the operators go first (the answer is dropped); the transport's
     * cancellation frees the call in flight */
    bt_genie_operators_free(o.op, o.n);
    ev_run(o.loop, EVRUN_NOWAIT);
    bt_http_free(o.http);
    ev_loop_destroy(o.loop);
    assert_int_equal(a.n, 0);
    close(fd);
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
        cmocka_unit_test(answers_come_from_the_loop),
        cmocka_unit_test(refused_is_not_sent),
        cmocka_unit_test(calls_in_flight_are_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
