/* Workflow files: the examples load, defaults and durations resolve, and a
 * bad file reports every error with file:line:col and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "baton/dag.h"
#include "baton/workflow.h"

/* ---------------------------------------------------------- helpers */

/* The diagnostics as bt_diags_print writes them (caller frees). */
static char *diags_text(const bt_diags_t *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    bt_diags_print(d, f);
    fclose(f);
    return buf;
}

static bt_workflow_spec_t *load_ok(const char *yaml)
{
    bt_workflow_spec_t *wf = NULL;
    bt_diags_t d;
    bt_diags_init(&d);
    bt_err_t rc = bt_workflow_load_string("wf.yaml", yaml, strlen(yaml), &wf, &d);
    if (rc != BT_OK) {
        char *t = diags_text(&d);
        fail_msg("load failed (%s):\n%s", bt_err_name(rc), t);
    }
    assert_int_equal(d.n, 0);
    assert_non_null(wf);
    bt_diags_free(&d);
    return wf;
}

/* Loads a bad document; returns all diagnostics as text (caller frees). */
static char *load_bad(const char *yaml, size_t *n)
{
    bt_workflow_spec_t *wf = (bt_workflow_spec_t *)1;
    bt_diags_t d;
    bt_diags_init(&d);
    assert_int_equal(bt_workflow_load_string("bad.yaml", yaml, strlen(yaml), &wf, &d),
                     BT_E_INVAL);
    assert_null(wf);
    assert_true(d.n > 0);
    if (n)
        *n = d.n;
    char *t = diags_text(&d);
    bt_diags_free(&d);
    return t;
}

/* The one diagnostic of a document with a single error. */
static void expect_one(const char *yaml, const char *want)
{
    size_t n;
    char *t = load_bad(yaml, &n);
    if (n != 1 || strncmp(t, want, strlen(want))) {
        fprintf(stderr, "%s", t);
        fail_msg("expected 1 diagnostic starting\n  %s\ngot %zu", want, n);
    }
    free(t);
}

static void expect_line(const char *text, const char *line)
{
    const char *p = strstr(text, line);
    if (!p || (p != text && p[-1] != '\n') || (p[strlen(line)] != '\n')) {
        fprintf(stderr, "%s", text); /* cmocka cuts long messages */
        fail_msg("missing line\n  %s", line);
    }
}

static void expect_prefix(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);
    if (!p || (p != text && p[-1] != '\n')) {
        fprintf(stderr, "%s", text);
        fail_msg("no line starting\n  %s", prefix);
    }
}

/* tests/unit/data/<name>, found next to this source file */
static char *read_fixture(const char *name)
{
    char path[1024];
    const char *slash = strrchr(__FILE__, '/');
    int dir = slash ? (int)(slash - __FILE__) : 1;
    snprintf(path, sizeof path, "%.*s/data/%s", dir, slash ? __FILE__ : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = calloc(1, 1 << 16);
    assert_non_null(buf);
    assert_true(fread(buf, 1, (1 << 16) - 1, f) > 0);
    fclose(f);
    return buf;
}

#define TASK_HEAD "workflow: w\nschedule: none\ntasks:\n"

/* Many documents below use test_op, the cheapest operator to write; a
 * build without it (BATON_TEST_OPERATORS off) skips them. */
#ifdef BATON_TEST_OPERATORS
#define NEEDS_TEST_OP() ((void)0)
#else
#define NEEDS_TEST_OP() skip()
#endif

/* ---------------------------------------------------------- examples */

static bt_workflow_spec_t *load_example(const char *name)
{
    char path[512];
    bt_workflow_spec_t *wf = NULL;
    bt_diags_t d;
    snprintf(path, sizeof path, "%s/%s", BATON_EXAMPLES_DIR, name);
    bt_diags_init(&d);
    bt_err_t rc = bt_workflow_load_file(path, &wf, &d);
    if (rc != BT_OK) {
        char *t = diags_text(&d);
        fail_msg("%s: %s\n%s", name, bt_err_name(rc), t);
    }
    bt_diags_free(&d);
    assert_string_equal(wf->source_file, path);
    return wf;
}

static void examples_load(void **state)
{
    (void)state;
    bt_workflow_spec_t *wf = load_example("nightly_etl.yaml");
    assert_string_equal(wf->id, "nightly_etl");
    assert_string_equal(wf->schedule, "0 2 * * *");
    assert_string_equal(wf->timezone, "Europe/Berlin");
    assert_int_equal(wf->start_ms, 1767222000000LL); /* 2026-01-01T00:00+01:00 */
    assert_int_equal(wf->n_tasks, 4);
    const bt_task_spec_t *create = bt_workflow_task(wf, "create_cluster");
    assert_non_null(create);
    assert_int_equal(create->operator_case, BATON__V1__TASK_SPEC__OPERATOR_EMR_CREATE_CLUSTER);
    assert_int_equal(create->timeout_ms, 45 * 60000);
    assert_int_equal(create->retries, 2);
    assert_string_equal(create->pool, "emr");
    const Baton__V1__EmrCreateCluster *cc = create->emr_create_cluster;
    assert_string_equal(cc->release_label, "emr-6.15.0");
    assert_int_equal(cc->auto_termination_idle_s, 3600);
    assert_true(cc->wait_until_ready);
    assert_true(cc->keep_alive_when_no_steps); /* EMR's default would end it at once */
    assert_int_equal(cc->n_instance_groups, 3);
    assert_string_equal(cc->instance_groups[2]->market, "SPOT");
    assert_int_equal(cc->instance_groups[1]->instance_count, 4);
    assert_int_equal(cc->n_tags, 3);
    assert_string_equal(cc->tags[1]->key, "cost-center");
    assert_string_equal(cc->tags[1]->value, "4711");
    assert_string_equal(cc->bootstrap_actions[0]->args[1],
                        "s3://acme-emr-artifacts/etl/requirements.txt");
    const bt_task_spec_t *teardown = bt_workflow_task(wf, "teardown");
    assert_int_equal(teardown->trigger_rule, BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_DONE);
    assert_int_equal(teardown->source_line, 106);
    const Baton__V1__LivyBatch *lb = bt_workflow_task(wf, "transform")->livy_batch;
    assert_string_equal(lb->url, "http://{{ tasks.create_cluster.master_dns }}:8998");
    assert_string_equal(lb->auth, "cluster_livy");
    assert_int_equal(teardown->retries, 5);
    assert_null(bt_workflow_task(wf, "nope"));
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    /* the transient-cluster pattern: both teardowns run whatever happened */
    wf = load_example("transient_emr_genie.yaml");
    assert_int_equal(wf->n_tasks, 7);
    const bt_task_spec_t *unreg = bt_workflow_task(wf, "unregister_cluster");
    const bt_task_spec_t *term = bt_workflow_task(wf, "terminate_cluster");
    assert_int_equal(unreg->operator_case,
                     BATON__V1__TASK_SPEC__OPERATOR_GENIE_REGISTER_CLUSTER);
    assert_int_equal(unreg->trigger_rule, BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_DONE);
    assert_int_equal(term->operator_case, BATON__V1__TASK_SPEC__OPERATOR_EMR_TERMINATE_CLUSTER);
    assert_int_equal(term->trigger_rule, BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_DONE);
    assert_string_equal(term->depends_on[0], "unregister_cluster");
    assert_true(bt_workflow_task(wf, "create_cluster")->emr_create_cluster->keep_alive_when_no_steps);
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    wf = load_example("hourly_genie_report.yaml");
    assert_string_equal(wf->schedule, "@hourly");
    assert_true(wf->catchup);
    assert_int_equal(wf->max_active_runs, 3);
    assert_int_equal(wf->start_ms, 1767589200000LL); /* 2026-01-05T00:00-05:00 */
    const bt_task_spec_t *rollup = bt_workflow_task(wf, "revenue_rollup");
    assert_int_equal(rollup->genie_job->timeout_s, 45 * 60);
    assert_int_equal(rollup->genie_job->n_cluster_criteria, 2);
    assert_string_equal(rollup->genie_job->command_criterion->tags[1], "ver:3.4");
    assert_int_equal(rollup->priority, 10);
    assert_int_equal(bt_workflow_task(wf, "publish_extract")->priority, 20);
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    wf = load_example("adhoc_spark.yaml");
    assert_string_equal(wf->schedule, ""); /* none: manual only */
    assert_string_equal(bt_workflow_task(wf, "row_counts")->livy_statement->kind, "sql");
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    wf = load_example("emr_steps_with_sensors.yaml");
    assert_int_equal(wf->start_ms, 1770010200000LL); /* 2026-02-02T05:30Z */
    const bt_task_spec_t *done = bt_workflow_task(wf, "aggregation_done");
    assert_int_equal(done->emr_wait_step->poll_interval_ms, 60000);
    assert_int_equal(done->timeout_ms, 4 * 3600000LL);
    assert_int_equal(bt_workflow_task(wf, "cluster_ready")->emr_wait_cluster->n_target_states, 2);
    baton__v1__workflow_spec__free_unpacked(wf, NULL);
}

/* ---------------------------------------------------------- resolution */

static void defaults_resolve(void **state)
{
    (void)state;
    NEEDS_TEST_OP();
    /* built-ins only */
    bt_workflow_spec_t *wf = load_ok(TASK_HEAD "  - {id: a, test_op: {}}\n");
    const bt_task_spec_t *a = wf->tasks[0];
    assert_string_equal(wf->timezone, "UTC");
    assert_int_equal(wf->max_active_runs, 1);
    assert_int_equal(wf->max_active_tasks, 16);
    assert_false(wf->catchup);
    assert_int_equal(wf->start_ms, 0);
    assert_int_equal(a->retries, 0);
    assert_int_equal(a->retry_backoff_ms, 30000);
    assert_int_equal(a->retry_backoff_max_ms, 600000);
    assert_int_equal(a->timeout_ms, 6 * 3600000LL);
    assert_string_equal(a->pool, "default");
    assert_int_equal(a->priority, 0);
    assert_int_equal(a->trigger_rule, BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_SUCCESS);
    assert_int_equal(a->source_line, 4);
    assert_string_equal(wf->defaults->pool, "default");
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    /* `defaults` after `tasks` still applies; tasks override field by field */
    wf = load_ok("workflow: w\nschedule: '@daily'\ntasks:\n"
                 "  - id: a\n    test_op: {}\n"
                 "  - id: b\n    retries: 7\n    pool: big\n    priority: -3\n"
                 "    timeout: 90s\n    retry_backoff: 500ms\n    test_op: {}\n"
                 "defaults: {retries: 2, retry_backoff: 1m, retry_backoff_max: 1h, timeout: 2h,"
                 " pool: emr, priority: 5}\nmax_active_tasks: 3\n");
    a = wf->tasks[0];
    const bt_task_spec_t *b = wf->tasks[1];
    assert_int_equal(a->retries, 2);
    assert_int_equal(a->retry_backoff_ms, 60000);
    assert_int_equal(a->retry_backoff_max_ms, 3600000);
    assert_int_equal(a->timeout_ms, 7200000);
    assert_string_equal(a->pool, "emr");
    assert_int_equal(a->priority, 5);
    assert_int_equal(b->retries, 7);
    assert_string_equal(b->pool, "big");
    assert_int_equal(b->priority, -3);
    assert_int_equal(b->timeout_ms, 90000);
    assert_int_equal(b->retry_backoff_ms, 500);
    assert_int_equal(b->retry_backoff_max_ms, 3600000);
    assert_int_equal(b->source_line, 6);
    assert_int_equal(wf->defaults->retries, 2);
    assert_string_equal(wf->defaults->pool, "emr");
    assert_int_equal(wf->max_active_tasks, 3);
    baton__v1__workflow_spec__free_unpacked(wf, NULL);
}

static void durations_and_numbers(void **state)
{
    (void)state;
    NEEDS_TEST_OP();
    bt_workflow_spec_t *wf = load_ok(
        TASK_HEAD "  - id: g\n    genie_job:\n      name: n\n      user: u\n      version: '1'\n"
                  "      command_args: [a]\n      cluster_criteria: [{tags: [x]}]\n"
                  "      command_criterion: {tags: [y]}\n      timeout: 1h30m\n"
                  "  - id: w\n    emr_wait_cluster: {cluster_id: j-1, poll_interval: 1500ms}\n"
                  "  - id: t\n    test_op: {duration: 2s, fail_attempts: 2}\n");
    assert_int_equal(wf->tasks[0]->genie_job->timeout_s, 5400);
    assert_int_equal(wf->tasks[1]->emr_wait_cluster->poll_interval_ms, 1500);
    assert_int_equal(wf->tasks[2]->test_op->duration_ms, 2000);
    assert_int_equal(wf->tasks[2]->test_op->fail_attempts, 2);
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    expect_one(TASK_HEAD "  - id: t\n    test_op: {duration: 2 s}\n",
               "bad.yaml:5:25: tasks[0].test_op.duration: '2 s' is not a duration");
    expect_one(TASK_HEAD "  - id: t\n    test_op: {duration_ms: 20}\n",
               "bad.yaml:5:15: tasks[0].test_op.duration_ms: unknown key 'duration_ms' "
               "(valid: duration, fail_attempts, outputs, dir)");
    expect_one(TASK_HEAD "  - id: l\n    livy_batch: {file: f, num_executors: 4294967296}\n",
               "bad.yaml:5:42: tasks[0].livy_batch.num_executors: expected a whole number from 0 "
               "to 4294967295, got '4294967296'");
    expect_one(TASK_HEAD "  - id: c\n    emr_create_cluster: {name: n, release_label: r, "
                         "instance_groups: [], auto_termination_idle: 1500ms}\n",
               "bad.yaml:5:97: tasks[0].emr_create_cluster.auto_termination_idle: '1500ms' is "
               "not a whole number of seconds");
    expect_one(TASK_HEAD "  - id: t\n    timeout: 0s\n    test_op: {}\n",
               "bad.yaml:5:14: tasks[0].timeout: must be longer than 0");
}

/* ---------------------------------------------------------- errors */

static void many_errors_all_reported(void **state)
{
    size_t n;
    (void)state;
    char *yaml = read_fixture("bad_many_errors.yaml");
    char *t = load_bad(yaml, &n);
    free(yaml);
    expect_line(t, "bad.yaml:1:11: workflow: 'bad id!' is not a workflow id (1-100 of A-Z a-z 0-9 _ . -)");
    expect_prefix(t, "bad.yaml:2:11: schedule: bad cron expression '0 25 * * *': ");
    expect_prefix(t, "bad.yaml:3:11: timezone: ");
    expect_line(t, "bad.yaml:4:10: catchup: expected true or false, got 'yes'");
    expect_line(t, "bad.yaml:5:18: max_active_runs: must be at least 1");
    expect_line(t, "bad.yaml:6:1: colour: unknown key 'colour' (valid: workflow, description, "
                   "schedule, timezone, start_date, catchup, max_active_runs, max_active_tasks, "
                   "defaults, tasks)");
    expect_line(t, "bad.yaml:8:12: defaults.retries: expected a whole number from 0 to 1000, got '-1'");
    expect_line(t, "bad.yaml:9:12: defaults.timeout: 'soon' is not a duration (e.g. 500ms, 30s, "
                   "10m, 2h, 1h30m)");
    expect_line(t, "bad.yaml:13:19: tasks[0].trigger_rule: 'sometimes' is not a trigger rule "
                   "(all_success, all_done, all_failed, one_success, one_failed, none_failed)");
    expect_line(t, "bad.yaml:16:24: tasks[0].livy_batch.args[1]: bad template: unknown variable "
                   "'run.nope' (run.date, run.id, run.logical_time)");
    expect_line(t, "bad.yaml:17:22: tasks[0].livy_batch.num_executors: expected a whole number "
                   "from 0 to 4294967295, got 'many'");
    expect_prefix(t, "bad.yaml:18:7: tasks[0].livy_batch.clas_name: unknown key 'clas_name' "
                     "(valid: file, class_name, args, jars, ");
    expect_line(t, "bad.yaml:19:9: tasks[1].id: duplicate task id 'extract' (first defined at line 11)");
    expect_line(t, "bad.yaml:20:18: tasks[1].depends_on[0]: unknown task 'extrct' (did you mean "
                   "'extract'?)");
    expect_line(t, "bad.yaml:22:7: tasks[1].emr_add_step: required key 'args' is missing");
    expect_line(t, "bad.yaml:22:19: tasks[1].emr_add_step.cluster_id: tasks.load.cluster_id: "
                   "emr_wait_step has no output 'cluster_id' (it publishes state)");
    expect_line(t, "bad.yaml:25:18: tasks[2].depends_on[0]: a task cannot depend on itself");
    expect_line(t, "bad.yaml:26:67: tasks[2].emr_wait_step.poll_interval: 'soon' is not a "
                   "duration (e.g. 500ms, 30s, 10m, 2h, 1h30m)");
    expect_line(t, "bad.yaml:27:5: tasks[2].livy_statement: a second operator: this task already "
                   "runs emr_wait_step (one operator per task)");
    expect_prefix(t, "bad.yaml:28:5: tasks[3]: no operator: a task needs one of emr_create_cluster, "
                     "emr_add_step, ");
    expect_line(t, "bad.yaml:29:17: tasks[3].depends_on: expected a list of task ids, got a single "
                   "value");
    expect_line(t, "bad.yaml:30:11: tasks[3].pool: expected a pool name, got a list");
    assert_int_equal(n, 22);
    /* sorted by position */
    assert_int_equal(strncmp(t, "bad.yaml:1:11:", 14), 0);
    free(t);
}

static void cycles_are_named(void **state)
{
    size_t n;
    (void)state;
    NEEDS_TEST_OP();
    char *t = load_bad(TASK_HEAD "  - {id: a, depends_on: [c], test_op: {}}\n"
                                 "  - {id: b, depends_on: [a], test_op: {}}\n"
                                 "  - {id: c, depends_on: [b], test_op: {}}\n"
                                 "  - {id: d, depends_on: [c, e], test_op: {}}\n"
                                 "  - {id: e, depends_on: [f], test_op: {}}\n"
                                 "  - {id: f, depends_on: [e], test_op: {}}\n",
                       &n);
    assert_string_equal(t, "bad.yaml:4:25: tasks[0].depends_on: dependency cycle: a -> c -> b -> a "
                           "(each depends on the next)\n"
                           "bad.yaml:8:25: tasks[4].depends_on: dependency cycle: e -> f -> e "
                           "(each depends on the next)\n");
    free(t);
}

static void depends_on_checks(void **state)
{
    size_t n;
    (void)state;
    NEEDS_TEST_OP();
    char *t = load_bad(TASK_HEAD "  - {id: a, test_op: {}}\n"
                                 "  - {id: b, depends_on: [a, a, zzz, ~], test_op: {}}\n",
                       &n);
    assert_string_equal(t, "bad.yaml:5:29: tasks[1].depends_on[1]: 'a' is listed twice\n"
                           "bad.yaml:5:32: tasks[1].depends_on[2]: unknown task 'zzz'\n"
                           "bad.yaml:5:37: tasks[1].depends_on[3]: expected a task id, got nothing\n");
    free(t);
}

/* A big generated workflow: a 3000-task chain where every task reads an
 * output of the first one, so each check walks the whole chain. */
static void large_workflow_is_fast(void **state)
{
    size_t n = 3000, cap = n * 160, len = 0;
    char *y = malloc(cap);
    (void)state;
    NEEDS_TEST_OP();
    len += (size_t)snprintf(y + len, cap - len, TASK_HEAD "  - {id: t0, test_op: {}}\n");
    for (size_t i = 1; i < n; i++)
        len += (size_t)snprintf(y + len, cap - len,
                                "  - {id: t%zu, depends_on: [t%zu], test_op: {dir: "
                                "'{{ tasks.t0.job_id }}'}}\n",
                                i, i - 1);
    bt_workflow_spec_t *wf = load_ok(y);
    assert_int_equal(wf->n_tasks, n);
    assert_string_equal(wf->tasks[n - 1]->depends_on[0], "t2998");
    baton__v1__workflow_spec__free_unpacked(wf, NULL);
    free(y);
}

static void templates_need_upstreams(void **state)
{
    (void)state;
    NEEDS_TEST_OP();
    /* transitive upstreams are fine */
    bt_workflow_spec_t *wf = load_ok(
        TASK_HEAD "  - {id: create, emr_create_cluster: {name: n, release_label: emr-6.15.0, "
                  "instance_fleets: [{name: m, fleet_type: MASTER, target_on_demand_capacity: 1, "
                  "instance_types: [m5.xlarge]}]}}\n"
                  "  - {id: wait, depends_on: [create], emr_wait_cluster: {cluster_id: x}}\n"
                  "  - {id: step, depends_on: [wait], emr_add_step: {cluster_id: "
                  "'{{ tasks.create.cluster_id }}', name: s, args: [a]}}\n");
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    size_t n;
    char *t = load_bad(TASK_HEAD
                       "  - {id: a, test_op: {outputs: {x: '1'}}}\n"
                       "  - id: b\n"
                       "    test_op:\n"
                       "      dir: \"{{ tasks.a.x }}/{{ tasks.c.job_id }}\"\n"
                       "      outputs: {y: \"{{ tasks.nope.x }}\", z: \"{{ tasks.b.job_id }}\"}\n"
                       "  - {id: c, depends_on: [a], test_op: {dir: '{{ tasks.a.y }}'}}\n",
                       &n);
    assert_string_equal(
        t,
        "bad.yaml:7:12: tasks[1].test_op.dir: tasks.a.x: 'a' is not upstream of 'b' (add it to "
        "depends_on, directly or through another task)\n"
        "bad.yaml:7:12: tasks[1].test_op.dir: tasks.c.job_id: 'c' is not upstream of 'b' (add it "
        "to depends_on, directly or through another task)\n"
        "bad.yaml:8:20: tasks[1].test_op.outputs.y: tasks.nope.x: there is no task 'nope'\n"
        "bad.yaml:8:45: tasks[1].test_op.outputs.z: tasks.b.job_id: a task cannot use its own "
        "outputs\n"
        "bad.yaml:9:45: tasks[2].test_op.dir: tasks.a.y: test_op has no output 'y' (it "
        "publishes x, job_id)\n");
    assert_int_equal(n, 5);
    free(t);
}

/* job_flow_overrides: any RunJobFlow member, checked against EMR's own
 * input shape when the file is applied, stored as typed JSON */
static void job_flow_overrides_checked(void **state)
{
#define CC_HEAD                                                                                  \
    TASK_HEAD "  - id: c\n    emr_create_cluster:\n      name: n\n      release_label: r\n"     \
              "      instance_groups: [{role: MASTER, instance_type: m5.xlarge, "                  \
              "instance_count: 1}]\n      job_flow_overrides:\n"
    (void)state;
    bt_workflow_spec_t *wf =
        load_ok(CC_HEAD "        SecurityConfiguration: sec-cfg\n"
                        "        StepConcurrencyLevel: 4\n"
                        "        ScaleDownBehavior: TERMINATE_AT_TASK_COMPLETION\n"
                        "        ManagedScalingPolicy:\n          ComputeLimits:\n"
                        "            UnitType: Instances\n            MinimumCapacityUnits: 2\n"
                        "            MaximumCapacityUnits: 20\n"
                        "        Instances:\n          Ec2SubnetIds: [subnet-1, subnet-2]\n"
                        "        KerberosAttributes: {Realm: EC2.INTERNAL, KdcAdminPassword: "
                        "\"{{ run.id }}\"}\n"
                        "        VisibleToAllUsers: false\n");
    assert_string_equal(
        wf->tasks[0]->emr_create_cluster->job_flow_overrides_json,
        "{\"Instances\":{\"Ec2SubnetIds\":[\"subnet-1\",\"subnet-2\"]},\"KerberosAttributes\":{"
        "\"KdcAdminPassword\":\"{{ run.id }}\",\"Realm\":\"EC2.INTERNAL\"},"
        "\"ManagedScalingPolicy\":{\"ComputeLimits\":{\"MaximumCapacityUnits\":20,"
        "\"MinimumCapacityUnits\":2,\"UnitType\":\"Instances\"}},\"ScaleDownBehavior\":"
        "\"TERMINATE_AT_TASK_COMPLETION\",\"SecurityConfiguration\":\"sec-cfg\","
        "\"StepConcurrencyLevel\":4,\"VisibleToAllUsers\":false}");
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    size_t n;
    char *t = load_bad(CC_HEAD "        Intances: {}\n"
                               "        StepConcurrencyLevel: two\n"
                               "        ScaleDownBehavior: SOMETIMES\n"
                               "        ManagedScalingPolicy: {ComputeLimits: {UnitType: Instances}}\n"
                               "        Name: other\n"
                               "        EbsRootVolumeSize: \"{{ run.id }}\"\n",
                       &n);
    assert_string_equal(
        t,
        "bad.yaml:10:9: tasks[0].emr_create_cluster.job_flow_overrides.Intances: unknown "
        "RunJobFlow member 'Intances' (did you mean 'Instances'?)\n"
        "bad.yaml:11:31: tasks[0].emr_create_cluster.job_flow_overrides.StepConcurrencyLevel: "
        "'two' is not a whole number (Integer)\n"
        "bad.yaml:12:28: tasks[0].emr_create_cluster.job_flow_overrides.ScaleDownBehavior: "
        "'SOMETIMES' is not one of TERMINATE_AT_INSTANCE_HOUR, TERMINATE_AT_TASK_COMPLETION\n"
        "bad.yaml:13:47: tasks[0].emr_create_cluster.job_flow_overrides.ManagedScalingPolicy."
        "ComputeLimits: required ComputeLimits member 'MinimumCapacityUnits' is missing\n"
        "bad.yaml:13:47: tasks[0].emr_create_cluster.job_flow_overrides.ManagedScalingPolicy."
        "ComputeLimits: required ComputeLimits member 'MaximumCapacityUnits' is missing\n"
        "bad.yaml:14:9: tasks[0].emr_create_cluster.job_flow_overrides.Name: 'Name' is set by "
        "the task's own field (name:)\n"
        "bad.yaml:15:28: tasks[0].emr_create_cluster.job_flow_overrides.EbsRootVolumeSize: a "
        "template may only fill a string member here (Integer is not one)\n");
    assert_int_equal(n, 7);
    free(t);
#undef CC_HEAD
}

static void operator_keys(void **state)
{
    (void)state;
    NEEDS_TEST_OP();
    size_t n;
    char *t = load_bad(TASK_HEAD "  - id: a\n    spark_submit: {file: x}\n", &n);
    assert_string_equal(t, "bad.yaml:4:5: tasks[0]: no operator: a task needs one of "
                           "emr_create_cluster, emr_add_step, emr_terminate_cluster, "
                           "emr_wait_cluster, emr_wait_step, genie_job, genie_register_cluster, "
                           "livy_batch, livy_statement, test_op\n"
                           "bad.yaml:5:5: tasks[0].spark_submit: unknown key 'spark_submit' "
                           "(valid: id, depends_on, trigger_rule, retries, retry_backoff, "
                           "retry_backoff_max, timeout, pool, priority; and one operator: "
                           "emr_create_cluster, emr_add_step, emr_terminate_cluster, "
                           "emr_wait_cluster, emr_wait_step, genie_job, genie_register_cluster, "
                           "livy_batch, livy_statement, test_op)\n");
    free(t);
    expect_one(TASK_HEAD "  - id: a\n", "bad.yaml:4:5: tasks[0]: no operator: a task needs one of ");
    expect_one(TASK_HEAD "  - id: a\n    livy_batch:\n",
               "bad.yaml:5:16: tasks[0].livy_batch: required key 'file' is missing");
    expect_one(TASK_HEAD "  - id: a\n    livy_batch: s3://x.py\n",
               "bad.yaml:5:17: tasks[0].livy_batch: expected a mapping, got a single value");
    /* url: and auth: (a task's own Livy or Genie): a URL, a credential's name */
    expect_one(TASK_HEAD "  - id: a\n    livy_batch: {file: f, url: 'livy:8998'}\n",
               "bad.yaml:5:32: tasks[0].livy_batch.url: 'livy:8998' is not an http:// or "
               "https:// URL");
    expect_one(TASK_HEAD "  - id: a\n    livy_statement: {kind: sql, code: c, auth: 'basic u:p'}"
                         "\n",
               "bad.yaml:5:48: tasks[0].livy_statement.auth: names a credential defined under "
               "credentials: in batond.yaml");
    baton__v1__workflow_spec__free_unpacked(
        load_ok(TASK_HEAD "  - id: a\n    livy_batch: {file: f, url: 'http://{{ run.id }}:1', "
                          "auth: etl-livy}\n"),
        NULL);
    expect_one(TASK_HEAD "  - id: a\n    livy_batch: {file: ''}\n",
               "bad.yaml:5:24: tasks[0].livy_batch.file: must not be empty");
    expect_one(TASK_HEAD "  - id: a\n    livy_batch: {file: f, args: x}\n",
               "bad.yaml:5:33: tasks[0].livy_batch.args: expected a list, got a single value");
    expect_one(TASK_HEAD "  - id: a\n    livy_batch: {file: f, conf: [a]}\n",
               "bad.yaml:5:33: tasks[0].livy_batch.conf: expected a mapping, got a list");
    expect_one(TASK_HEAD "  - id: a\n    livy_batch: {file: f, conf: {a: {b: c}}}\n",
               "bad.yaml:5:37: tasks[0].livy_batch.conf.a: expected a string, got a mapping");
    expect_one(TASK_HEAD "  - id: a\n    emr_add_step: {cluster_id: j, name: n, args: [a], "
                         "wait_for_completion: yes}\n",
               "bad.yaml:5:76: tasks[0].emr_add_step.wait_for_completion: expected true or "
               "false, got 'yes'");
    expect_one(TASK_HEAD "  - id: a\n    livy_statement: {kind: scala, code: x}\n",
               "bad.yaml:5:28: tasks[0].livy_statement.kind: 'scala' is not a statement kind "
               "(spark, pyspark, sparkr, sql)");
    expect_one(TASK_HEAD "  - id: a\n    emr_create_cluster: {name: n, release_label: r}\n",
               "bad.yaml:5:25: tasks[0].emr_create_cluster: required key 'instance_groups' or "
               "'instance_fleets' is missing");
    expect_one(TASK_HEAD "  - id: a\n    emr_create_cluster: {name: n, release_label: r, "
                         "instance_groups: [], instance_fleets: []}\n",
               "bad.yaml:5:91: tasks[0].emr_create_cluster.instance_fleets: instance_groups and "
               "instance_fleets exclude each other");
    expect_one(TASK_HEAD "  - id: a\n    genie_job: {name: n, user: u, version: v, command_args: [a], "
                         "cluster_criteria: [{tags: [a], tag: b}], command_criterion: {tags: [c]}}\n",
               "bad.yaml:5:97: tasks[0].genie_job.cluster_criteria[0].tag: unknown key 'tag' "
               "(valid: tags)");
    expect_one(TASK_HEAD "  - id: a\n    genie_job: {name: n, user: u, version: v, command_args: [a], "
                         "cluster_criteria: [{tags: [a]}], command_criterion: }\n",
               "bad.yaml:5:118: tasks[0].genie_job.command_criterion: expected a mapping, got nothing");
    expect_one(TASK_HEAD "  - id: a\n    emr_terminate_cluster: {}\n",
               "bad.yaml:5:28: tasks[0].emr_terminate_cluster: required key 'cluster_id' is missing");
}

static void test_op_in_this_build(void **state)
{
    (void)state;
#ifdef BATON_TEST_OPERATORS
    bt_workflow_spec_t *wf = load_ok(TASK_HEAD "  - id: t\n    test_op:\n      duration: 250ms\n"
                                               "      outputs: {cluster_id: j-1, rows: '42'}\n"
                                               "      dir: /tmp/baton-test-op\n");
    const bt_task_spec_t *t = wf->tasks[0];
    assert_int_equal(t->operator_case, BATON__V1__TASK_SPEC__OPERATOR_TEST_OP);
    assert_int_equal(t->test_op->duration_ms, 250);
    assert_string_equal(t->test_op->dir, "/tmp/baton-test-op");
    const char *const *outs = bt_task_outputs(t);
    assert_string_equal(outs[0], "cluster_id");
    assert_string_equal(outs[1], "rows");
    assert_string_equal(outs[2], "job_id");
    assert_null(outs[3]);
    baton__v1__workflow_spec__free_unpacked(wf, NULL);
    expect_one(TASK_HEAD "  - id: t\n    test_op: {outputs: {a.b: x}}\n",
               "bad.yaml:5:25: tasks[0].test_op.outputs: output name 'a.b' cannot be named by "
               "templates (1-100 of A-Z a-z 0-9 _ -)");
#else
    expect_one(TASK_HEAD "  - id: t\n    test_op: {}\n",
               "bad.yaml:5:5: tasks[0].test_op: test_op exists only in test and benchmark builds");
#endif
}

static void outputs_per_operator(void **state)
{
    (void)state;
    bt_workflow_spec_t *wf = load_example("nightly_etl.yaml");
    static const struct {
        const char *task;
        const char *outs;
    } want[] = {{"create_cluster", "cluster_id master_dns master_private_dns master_public_dns "
                                   "master_instance_id release_label applications cluster_arn"},
                {"transform", "livy_batch_id app_id"},
                {"load_warehouse", "step_id cluster_id"},
                {"teardown", ""}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char got[256] = "";
        for (const char *const *o = bt_task_outputs(bt_workflow_task(wf, want[i].task)); *o; o++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", *got ? " " : "", *o);
        assert_string_equal(got, want[i].outs);
    }
    assert_null(bt_task_outputs(NULL)[0]);
    baton__v1__workflow_spec__free_unpacked(wf, NULL);
}

static void configurations_become_json(void **state)
{
    (void)state;
    bt_workflow_spec_t *wf = load_example("nightly_etl.yaml");
    assert_string_equal(
        bt_workflow_task(wf, "create_cluster")->emr_create_cluster->configurations_json,
        "[{\"Classification\":\"spark-defaults\",\"Properties\":{"
        "\"spark.dynamicAllocation.enabled\":\"true\",\"spark.sql.adaptive.enabled\":\"true\"}},"
        "{\"Classification\":\"livy-conf\",\"Properties\":{"
        "\"livy.server.session.timeout\":\"4h\"}}]");
    baton__v1__workflow_spec__free_unpacked(wf, NULL);

    /* JSON text is accepted as is, after a syntax check */
    wf = load_ok(TASK_HEAD "  - id: c\n    emr_create_cluster:\n      name: n\n"
                           "      release_label: emr-6.15.0\n      instance_groups: []\n"
                           "      configurations: '[{\"Classification\": \"hive-site\"}]'\n");
    assert_string_equal(wf->tasks[0]->emr_create_cluster->configurations_json,
                        "[{\"Classification\":\"hive-site\"}]");
    baton__v1__workflow_spec__free_unpacked(wf, NULL);
    expect_one(TASK_HEAD "  - id: c\n    emr_create_cluster:\n      name: n\n"
                         "      release_label: emr-6.15.0\n      instance_groups: []\n"
                         "      configurations: '[{'\n",
               "bad.yaml:9:23: tasks[0].emr_create_cluster.configurations: not JSON");
}

static void file_level_errors(void **state)
{
    (void)state;
    expect_one("workflow: a\n  schedule: x\n", "bad.yaml:2:11: mapping values are not allowed");
    expect_one("- a\n- b\n", "bad.yaml:1:1: the top level must be a mapping (workflow: ..., "
                             "tasks: ...), not a list");
    expect_one("", "bad.yaml:1:1: the file is empty");
    size_t n;
    char *t = load_bad("description: x\n", &n);
    assert_string_equal(t, "bad.yaml:1:1: required key 'workflow' is missing\n"
                           "bad.yaml:1:1: required key 'schedule' is missing\n"
                           "bad.yaml:1:1: required key 'tasks' is missing\n");
    free(t);
    expect_one("workflow: w\nschedule: none\ntasks: []\n",
               "bad.yaml:3:8: tasks: must not be empty");
    expect_one("workflow: w\nschedule: none\nstart_date: 2026-02-30\ntasks: [{id: a, test_op: {}}]\n",
               "bad.yaml:3:13: start_date: '2026-02-30' is not a date");

    bt_workflow_spec_t *wf = (bt_workflow_spec_t *)1;
    bt_diags_t d;
    bt_diags_init(&d);
    assert_int_equal(bt_workflow_load_file("/nonexistent/wf.yaml", &wf, &d), BT_E_IO);
    assert_null(wf);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.items[0].line, 0);
    t = diags_text(&d);
    assert_string_equal(t, "/nonexistent/wf.yaml: cannot open: No such file or directory\n");
    free(t);
    bt_diags_free(&d);

    size_t big = 1024 * 1024 + 1;
    char *huge = malloc(big);
    memset(huge, '#', big);
    bt_diags_init(&d);
    assert_int_equal(bt_workflow_load_string("huge.yaml", huge, big, &wf, &d), BT_E_INVAL);
    t = diags_text(&d);
    assert_string_equal(t, "huge.yaml: the file is larger than 1 MiB\n");
    free(t);
    free(huge);
    bt_diags_free(&d);
}

/* ---------------------------------------------------------- dag */

static void dag_orders_and_closes(void **state)
{
    bt_dag_t g;
    size_t order[5];
    (void)state;
    /* 0 <- 2, 1 <- 2, 2 <- 3, 4 alone; edges are "node depends on upstream" */
    assert_int_equal(bt_dag_init(&g, 5), BT_OK);
    assert_int_equal(bt_dag_add_edge(&g, 2, 0), BT_OK);
    assert_int_equal(bt_dag_add_edge(&g, 2, 1), BT_OK);
    assert_int_equal(bt_dag_add_edge(&g, 3, 2), BT_OK);
    assert_int_equal(bt_dag_add_edge(&g, 3, 2), BT_OK); /* duplicate: harmless */
    assert_int_equal(bt_dag_add_edge(&g, 3, 9), BT_E_INVAL);
    assert_int_equal(bt_dag_toposort(&g, order), BT_OK);
    size_t want[] = {0, 1, 2, 3, 4};
    assert_memory_equal(order, want, sizeof want);
    assert_int_equal(bt_dag_is_upstream(&g, 3, 0), 1);
    assert_int_equal(bt_dag_is_upstream(&g, 3, 2), 1);
    assert_int_equal(bt_dag_is_upstream(&g, 0, 3), 0);
    assert_int_equal(bt_dag_is_upstream(&g, 3, 4), 0);
    assert_int_equal(bt_dag_is_upstream(&g, 3, 3), 0);
    assert_int_equal(bt_dag_cycles(&g, NULL, NULL), 0);
    bt_dag_free(&g);

    /* a long chain: iterative everywhere, no deep recursion */
    size_t n = 5000;
    size_t *ord = malloc(n * sizeof *ord);
    assert_int_equal(bt_dag_init(&g, n), BT_OK);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(bt_dag_add_edge(&g, n - 1 - i, n - i), BT_OK);
    assert_int_equal(bt_dag_toposort(&g, ord), BT_OK);
    assert_int_equal(ord[0], n - 1);
    assert_int_equal(bt_dag_is_upstream(&g, 0, n - 1), 1);
    assert_int_equal(bt_dag_is_upstream(&g, 1, 0), 0);
    free(ord);
    bt_dag_free(&g);
}

static void record_cycle(const size_t *path, size_t len, void *arg)
{
    char *buf = arg;
    static const char *const names[] = {"a", "b", "c", "d"};
    char one[128];
    bt_dag_format_path(path, len, names, one, sizeof one);
    strcat(buf, one);
    strcat(buf, ";");
}

static void dag_cycles(void **state)
{
    bt_dag_t g;
    size_t order[4];
    char buf[256] = "";
    (void)state;
    assert_int_equal(bt_dag_init(&g, 4), BT_OK);
    bt_dag_add_edge(&g, 0, 1); /* a depends on b */
    bt_dag_add_edge(&g, 1, 2);
    bt_dag_add_edge(&g, 2, 0);
    bt_dag_add_edge(&g, 3, 3); /* d on itself */
    assert_int_equal(bt_dag_toposort(&g, order), BT_E_INVAL);
    assert_int_equal(bt_dag_cycles(&g, record_cycle, buf), 2);
    assert_string_equal(buf, "a -> b -> c -> a;d -> d;");
    assert_int_equal(bt_dag_is_upstream(&g, 0, 0), 1);
    bt_dag_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(examples_load),
        cmocka_unit_test(defaults_resolve),
        cmocka_unit_test(durations_and_numbers),
        cmocka_unit_test(many_errors_all_reported),
        cmocka_unit_test(cycles_are_named),
        cmocka_unit_test(depends_on_checks),
        cmocka_unit_test(large_workflow_is_fast),
        cmocka_unit_test(templates_need_upstreams),
        cmocka_unit_test(operator_keys),
        cmocka_unit_test(job_flow_overrides_checked),
        cmocka_unit_test(test_op_in_this_build),
        cmocka_unit_test(outputs_per_operator),
        cmocka_unit_test(configurations_become_json),
        cmocka_unit_test(file_level_errors),
        cmocka_unit_test(dag_orders_and_closes),
        cmocka_unit_test(dag_cycles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
