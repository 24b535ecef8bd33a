/* Templates: every form scans and renders, malformed ones say why and
 * where, missing outputs fail the render with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "baton/template.h"

typedef struct refs {
    size_t n;
    char task[8][128], output[8][128];
    size_t off[8];
} refs_t;

static void collect(const char *task, const char *output, size_t off, void *arg)
{
    refs_t *r = arg;
    assert_true(r->n < 8);
    snprintf(r->task[r->n], sizeof r->task[0], "%s", task);
    snprintf(r->output[r->n], sizeof r->output[0], "%s", output);
    r->off[r->n++] = off;
}

static const char *outputs(const char *task, const char *output, void *arg)
{
    if (!strcmp(task, "create") && !strcmp(output, "cluster_id"))
        return "j-2AXXXXXXGAPLF";
    if (!strcmp(task, "big") && !strcmp(output, "blob"))
        return (const char *)arg;
    return NULL;
}

static const bt_template_ctx_t ctx = {
    .run_id = "scheduled__2026-03-29T02:00:00",
    .run_date = "2026-03-29",
    .logical_time = "2026-03-29T02:00:00+02:00",
    .output = outputs,
};

static void render_ok(const char *tpl, const char *want)
{
    char *out = NULL, err[256] = "";
    bt_err_t rc = bt_template_render(tpl, &ctx, &out, err, sizeof err);
    if (rc != BT_OK)
        fail_msg("render '%s': %s (%s)", tpl, bt_err_name(rc), err);
    assert_string_equal(out, want);
    free(out);
}

static void scan_finds_task_references(void **state)
{
    refs_t r = {0};
    char err[256] = "";
    size_t off = 99;
    (void)state;
    assert_int_equal(bt_template_scan("--cluster {{ tasks.create.cluster_id }} "
                                      "{{tasks.add-step_2.step_id}}{{   run.date   }}",
                                      collect, &r, err, sizeof err, &off),
                     BT_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.task[0], "create");
    assert_string_equal(r.output[0], "cluster_id");
    assert_int_equal(r.off[0], 10);
    assert_string_equal(r.task[1], "add-step_2");
    assert_string_equal(r.output[1], "step_id");
    assert_int_equal(r.off[1], 40);
    assert_int_equal(off, 99); /* untouched on success */

    /* run.* forms and plain text reference no task; ref may be NULL */
    memset(&r, 0, sizeof r);
    assert_int_equal(bt_template_scan("{{run.date}} {{ run.id }} {{\trun.logical_time\t}} }} x",
                                      collect, &r, err, sizeof err, NULL),
                     BT_OK);
    assert_int_equal(r.n, 0);
    assert_int_equal(bt_template_scan("s3://bucket/{{ tasks.a.b }}", NULL, NULL, err, sizeof err,
                                      NULL),
                     BT_OK);
    assert_int_equal(bt_template_scan("", collect, &r, err, sizeof err, NULL), BT_OK);
}

static void scan_rejects_malformed(void **state)
{
    static const struct {
        const char *tpl;
        size_t off;
        const char *why;
    } cases[] = {
        {"x {{ run.date", 2, "'{{' at offset 2 is not closed by '}}'"},
        {"{{ }}", 0, "empty expression '{{ }}'"},
        {"{{}}", 0, "empty expression '{{ }}'"},
        {"a{{ run.nope }}", 1, "unknown variable 'run.nope' (run.date, run.id, run.logical_time)"},
        {"{{ tasks.a }}", 0, "'tasks.a' names no output: write tasks.<id>.<output>"},
        {"{{ 1+1 }}", 0,
         "unsupported expression '1+1': only run.date, run.id, run.logical_time, "
         "tasks.<id>.<output> and '{{'"},
        {"{{ run.date | upper }}", 0, "unsupported expression 'run.date | upper'"},
        {"{{ tasks.a.b.c }}", 0, "'tasks.a.b.c' is not tasks.<id>.<output>"},
        {"{{ tasks..b }}", 0, "'tasks..b' is not tasks.<id>.<output>"},
        {"{{ env.HOME }}", 0, "unsupported expression 'env.HOME'"},
        {"ok {{ run.id }} then {{ '}}' }}", 21, "unsupported expression '''"},
        {"{{ \"{{\" }}", 0, "unsupported expression '\"{{\"'"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        size_t off = 12345;
        bt_err_t rc = bt_template_scan(cases[i].tpl, NULL, NULL, err, sizeof err, &off);
        if (rc != BT_E_PARSE || off != cases[i].off || strncmp(err, cases[i].why, strlen(cases[i].why)))
            fail_msg("'%s': rc %s off %zu err '%s'", cases[i].tpl, bt_err_name(rc), off, err);
        /* render refuses what scan refuses, with the same reason */
        char *out = (char *)"sentinel", err2[256] = "";
        assert_int_equal(bt_template_render(cases[i].tpl, &ctx, &out, err2, sizeof err2),
                         BT_E_PARSE);
        assert_null(out);
        assert_string_equal(err, err2);
    }
}

static void render_every_form(void **state)
{
    (void)state;
    render_ok("s3://acme/dt={{ run.date }}/", "s3://acme/dt=2026-03-29/");
    render_ok("{{run.id}}", "scheduled__2026-03-29T02:00:00");
    render_ok("at {{  run.logical_time  }}.", "at 2026-03-29T02:00:00+02:00.");
    render_ok("{{ tasks.create.cluster_id }}/{{tasks.create.cluster_id}}",
              "j-2AXXXXXXGAPLF/j-2AXXXXXXGAPLF");
    render_ok("", "");
    render_ok("no templates at all", "no templates at all");
}

static void render_escapes(void **state)
{
    (void)state;
    render_ok("{{ '{{' }} run.date }}", "{{ run.date }}");
    render_ok("{{'{{'}}", "{{");
    render_ok("lone }} stays }}", "lone }} stays }}");
    render_ok("{{ run.date }}}}", "2026-03-29}}");
    render_ok("json {\"a\": {\"b\": 1}}", "json {\"a\": {\"b\": 1}}");
    refs_t r = {0};
    char err[64];
    assert_int_equal(bt_template_scan("{{ '{{' }} tasks.a.b }}", collect, &r, err, sizeof err, NULL),
                     BT_OK);
    assert_int_equal(r.n, 0); /* escaped: not a reference */
}

static void render_missing_output(void **state)
{
    char *out = (char *)"sentinel", err[256] = "";
    (void)state;
    assert_int_equal(bt_template_render("--step {{ tasks.add.step_id }}", &ctx, &out, err, sizeof err),
                     BT_E_NOTFOUND);
    assert_null(out);
    assert_string_equal(err, "task 'add' has not published output 'step_id'");

    /* a context without outputs, or without run values */
    bt_template_ctx_t bare = {0};
    out = (char *)"sentinel";
    assert_int_equal(bt_template_render("{{ tasks.create.cluster_id }}", &bare, &out, err, sizeof err),
                     BT_E_NOTFOUND);
    assert_null(out);
    assert_int_equal(bt_template_render("{{ run.date }}", &bare, &out, err, sizeof err),
                     BT_E_NOTFOUND);
    assert_string_equal(err, "run.date is not known for this run");
    assert_int_equal(bt_template_render("plain", NULL, &out, err, sizeof err), BT_OK);
    assert_string_equal(out, "plain");
    free(out);
}

static void render_is_bounded(void **state)
{
    size_t n = 40 * 1024;
    char *blob = malloc(n + 1), *out = NULL, err[256] = "";
    (void)state;
    memset(blob, 'x', n);
    blob[n] = '\0';
    bt_template_ctx_t c = ctx;
    c.arg = blob;
    assert_int_equal(bt_template_render("{{ tasks.big.blob }}", &c, &out, err, sizeof err), BT_OK);
    assert_int_equal(strlen(out), n);
    free(out);
    out = NULL;
    assert_int_equal(bt_template_render("{{ tasks.big.blob }}{{ tasks.big.blob }}", &c, &out, err,
                                        sizeof err),
                     BT_E_INVAL);
    assert_null(out);
    assert_string_equal(err, "the rendered value exceeds 65536 bytes");
    free(blob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scan_finds_task_references),
        cmocka_unit_test(scan_rejects_malformed),
        cmocka_unit_test(render_every_form),
        cmocka_unit_test(render_escapes),
        cmocka_unit_test(render_missing_output),
        cmocka_unit_test(render_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
