/* Cron: parse errors name column and field; next/prev give exact UTC
 * instants, across DST gaps and overlaps in several zones; a randomised
 * sweep checks next/prev against a minute-by-minute reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "baton/cron.h"

#define END NULL

/* "2026-03-29 01:00" (UTC, seconds optional) to Unix ms. */
static int64_t at(const char *utc)
{
    struct tm tm = {0};
    int sec = 0;
    if (sscanf(utc, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &sec) < 5)
        fail_msg("bad time '%s' in the test", utc);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm) * 1000;
}

static const char *show(int64_t ms, char buf[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 40, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

static bt_cron_t *cron(const char *expr)
{
    bt_cron_t *c = NULL;
    char err[200] = "";
    if (bt_cron_parse(expr, &c, err, sizeof err) != BT_OK)
        fail_msg("'%s' does not parse: %s", expr, err);
    return c;
}

static bt_tz_t *zone(const char *name)
{
    bt_tz_t *tz = NULL;
    char err[300] = "";
    if (bt_tz_load(name, &tz, err, sizeof err) != BT_OK)
        fail_msg("zone '%s' does not load: %s", name, err);
    return tz;
}

/* next() from `from` yields the list in order; prev() walks it back. */
static void walk(const char *expr, const char *zname, const char *from, ...)
{
    bt_cron_t *c = cron(expr);
    bt_tz_t *tz = zone(zname);
    int64_t want[32], t = at(from), got;
    size_t n = 0;
    char b1[40], b2[40], b3[40];
    va_list ap;
    va_start(ap, from);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL && n < 32;)
        want[n++] = at(s);
    va_end(ap);
    for (size_t i = 0; i < n; t = got, i++) {
        assert_int_equal(bt_cron_next(c, tz, t, &got), BT_OK);
        if (got != want[i])
            fail_msg("'%s' in %s: next after %s is %s, want %s", expr, zname, show(t, b1),
                     show(got, b2), show(want[i], b3));
    }
    for (size_t i = n; i-- > 1;) {
        assert_int_equal(bt_cron_prev(c, tz, want[i], &got), BT_OK);
        if (got != want[i - 1])
            fail_msg("'%s' in %s: prev before %s is %s", expr, zname, show(want[i], b1),
                     show(got, b2));
    }
    assert_int_equal(bt_cron_prev(c, tz, want[0], &got), BT_OK);
    assert_true(got <= at(from));
    bt_cron_free(c);
    bt_tz_free(tz);
}

/* prev(before) in a zone is `want`. */
static void prev_is(const char *expr, const char *zname, const char *before, const char *want)
{
    bt_cron_t *c = cron(expr);
    bt_tz_t *tz = zone(zname);
    int64_t got;
    char b1[40];
    assert_int_equal(bt_cron_prev(c, tz, at(before), &got), BT_OK);
    if (got != at(want))
        fail_msg("'%s' in %s: prev before %s is %s, want %s", expr, zname, before,
                 show(got, b1), want);
    bt_cron_free(c);
    bt_tz_free(tz);
}

static void parse_errors_name_column_and_field(void **state)
{
    static const char *cases[][2] = {
        {"", "column 1: empty expression"},
        {"   ", "empty expression"},
        {"* * * *",
         "column 8: expected 5 fields (minute hour day-of-month month day-of-week), found 4"},
        {"* * * * * *", "column 11: expected 5 fields"},
        {"60 * * * *", "column 1: minute: 60 is out of range 0-59"},
        {"10 25 * * *", "column 4: hour: 25 is out of range 0-23"},
        {"0 0 0 * *", "column 5: day-of-month: 0 is out of range 1-31"},
        {"0 0 1 13 *", "column 7: month: 13 is out of range 1-12"},
        {"0 0 * * 8", "column 9: day-of-week: 8 is out of range 0-7"},
        {"0 0 * * 1-9", "column 11: day-of-week: 9 is out of range 0-7"},
        {"99999999999999999999 * * * *", "column 1: minute: 99999999999999999999 is out of range"},
        {"30-10 * * * *", "column 1: minute: range 30-10 is reversed"},
        {"0 0 * * FRI-MON", "column 9: day-of-week: range FRI-MON is reversed"},
        {"*/0 * * * *", "column 3: minute: step 0 is out of range 1-60"},
        {"0 1-5/0 * * *", "column 7: hour: step 0 is out of range 1-24"},
        {"0 */25 * * *", "column 5: hour: step 25 is out of range 1-24"},
        {"5x * * * *", "column 2: minute: unexpected 'x'"},
        {"1,,2 * * * *", "column 3: minute: expected a value"},
        {"1- * * * *", "column 3: minute: expected a value"},
        {"*/ * * * *", "column 3: minute: expected a value"},
        {"-1 * * * *", "column 1: minute: unexpected '-'"},
        {"*-5 * * * *", "column 2: minute: unexpected '-'"},
        {"0 0 * * 1/x", "column 11: day-of-week: unexpected 'x'"},
        {"0 0 * FOO *", "column 7: month: unknown name 'FOO'"},
        {"0 0 * * MONDAY", "column 9: day-of-week: unknown name 'MONDAY'"},
        {"JAN * * * *", "column 1: minute: 'JAN' is not a number"},
        {"0 0 MON * *", "column 5: day-of-month: 'MON' is not a number"},
        {"@reboot", "column 1: unknown macro '@reboot'"},
        {"@daily 5", "column 8: unexpected text after @daily"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static char sentinel;
        bt_cron_t *c = (bt_cron_t *)&sentinel; /* must be reset to NULL */
        char err[200] = "";
        assert_int_equal(bt_cron_parse(cases[i][0], &c, err, sizeof err), BT_E_INVAL);
        assert_null(c);
        if (!strstr(err, cases[i][1]))
            fail_msg("'%s': error '%s' lacks '%s'", cases[i][0], err, cases[i][1]);
    }
    bt_cron_t *c;
    assert_int_equal(bt_cron_parse(NULL, &c, NULL, 0), BT_E_INVAL);
    assert_int_equal(bt_cron_parse("* * *", &c, NULL, 0), BT_E_INVAL);
    char tiny[8];
    assert_int_equal(bt_cron_parse("0 0 * * MONDAY", &c, tiny, sizeof tiny), BT_E_INVAL);
    assert_string_equal(tiny, "column ");
    assert_int_equal(bt_cron_parse("* * * * *", NULL, NULL, 0), BT_E_INVAL);
    bt_cron_free(NULL);
}

static void fields_steps_ranges_lists_names(void **state)
{
    (void)state;
    walk("*/15 * * * *", "UTC", "2026-01-05 10:07", "2026-01-05 10:15", "2026-01-05 10:30",
         "2026-01-05 10:45", "2026-01-05 11:00", END);
    walk("5,10-12,50-59/4 * * * *", "UTC", "2026-01-05 10:00", "2026-01-05 10:05",
         "2026-01-05 10:10", "2026-01-05 10:11", "2026-01-05 10:12", "2026-01-05 10:50",
         "2026-01-05 10:54", "2026-01-05 10:58", "2026-01-05 11:05", END);
    walk("0 22/1 * * *", "UTC", "2026-01-05 12:00", "2026-01-05 22:00", "2026-01-05 23:00",
         "2026-01-06 22:00", END);
    walk("0 9-17/4 * * mon-FRI", "UTC", "2026-01-09 12:00", "2026-01-09 13:00",
         "2026-01-09 17:00", "2026-01-12 09:00", END);
    walk("0 0 1 jan-mar,Oct *", "UTC", "2026-03-15 00:00", "2026-10-01 00:00",
         "2027-01-01 00:00", "2027-02-01 00:00", "2027-03-01 00:00", "2027-10-01 00:00", END);
    /* 7, 0 and SUN are all Sunday; 2026-01-11 is one */
    walk("0 12 * * 7", "UTC", "2026-01-05 00:00", "2026-01-11 12:00", "2026-01-18 12:00", END);
    walk("0 12 * * 0", "UTC", "2026-01-05 00:00", "2026-01-11 12:00", "2026-01-18 12:00", END);
    walk("0 12 * * sun", "UTC", "2026-01-05 00:00", "2026-01-11 12:00", "2026-01-18 12:00", END);
    walk("0 12 * * 5-7", "UTC", "2026-01-05 00:00", "2026-01-09 12:00", "2026-01-10 12:00",
         "2026-01-11 12:00", "2026-01-16 12:00", END);
    /* before 1970 */
    walk("0 0 1 1 *", "UTC", "1968-06-01 00:00", "1969-01-01 00:00", "1970-01-01 00:00",
         "1971-01-01 00:00", END);
}

static void next_is_strictly_after_and_prev_strictly_before(void **state)
{
    bt_cron_t *c = cron("*/15 * * * *");
    int64_t got;
    (void)state;
    assert_int_equal(bt_cron_next(c, NULL, at("2026-01-05 10:15"), &got), BT_OK);
    assert_int_equal(got, at("2026-01-05 10:30"));
    assert_int_equal(bt_cron_next(c, NULL, at("2026-01-05 10:15") - 1, &got), BT_OK);
    assert_int_equal(got, at("2026-01-05 10:15"));
    assert_int_equal(bt_cron_prev(c, NULL, at("2026-01-05 10:15"), &got), BT_OK);
    assert_int_equal(got, at("2026-01-05 10:00"));
    assert_int_equal(bt_cron_prev(c, NULL, at("2026-01-05 10:15") + 1, &got), BT_OK);
    assert_int_equal(got, at("2026-01-05 10:15"));
    assert_int_equal(bt_cron_next(NULL, NULL, 0, &got), BT_E_INVAL);
    assert_int_equal(bt_cron_next(c, NULL, INT64_MAX, &got), BT_E_INVAL);
    assert_int_equal(bt_cron_prev(c, NULL, INT64_MIN, &got), BT_E_INVAL);
    bt_cron_free(c);
}

static void macros(void **state)
{
    (void)state;
    walk("@yearly", "UTC", "2026-05-01 00:00", "2027-01-01 00:00", "2028-01-01 00:00", END);
    walk("@annually", "UTC", "2026-05-01 00:00", "2027-01-01 00:00", END);
    walk("@monthly", "UTC", "2026-05-01 00:00", "2026-06-01 00:00", "2026-07-01 00:00", END);
    walk("@weekly", "UTC", "2026-01-05 00:00", "2026-01-11 00:00", "2026-01-18 00:00", END);
    walk("@daily", "UTC", "2026-01-05 10:00", "2026-01-06 00:00", "2026-01-07 00:00", END);
    walk("  @MIDNIGHT ", "UTC", "2026-01-05 10:00", "2026-01-06 00:00", END);
    walk("@hourly", "UTC", "2026-01-05 10:30", "2026-01-05 11:00", "2026-01-05 12:00", END);
    walk("@daily", "Europe/Berlin", "2026-01-10 12:00", "2026-01-10 23:00",
         "2026-01-11 23:00", END);
}

static void february_29(void **state)
{
    (void)state;
    walk("0 0 29 2 *", "UTC", "2026-01-01 00:00", "2028-02-29 00:00", "2032-02-29 00:00", END);
    walk("0 0 29 2 *", "Europe/Berlin", "2026-01-01 00:00", "2028-02-28 23:00",
         "2032-02-28 23:00", END);
    /* 2100 is not a leap year: the longest wait, still within 8 years */
    walk("0 0 29 2 *", "UTC", "2096-03-01 00:00", "2104-02-29 00:00", END);
}

static void vixie_day_of_month_or_day_of_week(void **state)
{
    (void)state;
    /* both restricted: the 1st OR a Monday (2026-02-02 is a Monday) */
    walk("0 0 1 * MON", "UTC", "2026-02-01 00:00", "2026-02-02 00:00", "2026-02-09 00:00",
         "2026-02-16 00:00", "2026-02-23 00:00", "2026-03-01 00:00", "2026-03-02 00:00", END);
    /* not "the first Monday": every day 1-7 plus every Monday */
    walk("0 0 1-7 * 1", "UTC", "2026-02-01 00:00", "2026-02-02 00:00", "2026-02-03 00:00",
         "2026-02-04 00:00", "2026-02-05 00:00", "2026-02-06 00:00", "2026-02-07 00:00",
         "2026-02-09 00:00", "2026-02-16 00:00", END);
    /* a field starting with `*` is unrestricted: both must match (odd Mondays) */
    walk("0 0 */2 * MON", "UTC", "2026-02-01 00:00", "2026-02-09 00:00", "2026-02-23 00:00",
         "2026-03-09 00:00", "2026-03-23 00:00", END);
    walk("0 0 13 * *", "UTC", "2026-02-01 00:00", "2026-02-13 00:00", "2026-03-13 00:00", END);
}

static void dst_europe_berlin(void **state)
{
    (void)state;
    /* 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z): 02:30 does not exist */
    walk("30 2 * * *", "Europe/Berlin", "2026-03-27 12:00", "2026-03-28 01:30",
         "2026-03-29 01:00", "2026-03-30 00:30", END);
    /* two matching times in the gap fire once */
    walk("15,45 2 * * *", "Europe/Berlin", "2026-03-28 12:00", "2026-03-29 01:00",
         "2026-03-30 00:15", END);
    walk("* 2 * * *", "Europe/Berlin", "2026-03-28 12:00", "2026-03-29 01:00",
         "2026-03-30 00:00", END);
    /* 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z): 02:30 occurs twice, fires once */
    walk("30 2 * * *", "Europe/Berlin", "2026-10-24 12:00", "2026-10-25 00:30",
         "2026-10-26 01:30", END);
    walk("59 2 * * *", "Europe/Berlin", "2026-10-24 12:00", "2026-10-25 00:59",
         "2026-10-26 01:59", END);
    /* hour `*`: every matching instant, both occurrences, gap collapsed once */
    walk("0 * * * *", "Europe/Berlin", "2026-03-28 23:30", "2026-03-29 00:00",
         "2026-03-29 01:00", "2026-03-29 02:00", END);
    walk("0 * * * *", "Europe/Berlin", "2026-10-24 22:30", "2026-10-24 23:00",
         "2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00", END);
    walk("*/30 * * * *", "Europe/Berlin", "2026-03-29 00:15", "2026-03-29 00:30",
         "2026-03-29 01:00", "2026-03-29 01:30", END);
    walk("*/30 * * * *", "Europe/Berlin", "2026-10-24 23:15", "2026-10-24 23:30",
         "2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30",
         "2026-10-25 02:00", END);
    /* from inside the second occurrence: back to the first, forward to tomorrow */
    prev_is("30 2 * * *", "Europe/Berlin", "2026-10-25 01:45", "2026-10-25 00:30");
    walk("30 2 * * *", "Europe/Berlin", "2026-10-25 01:45", "2026-10-26 01:30", END);
    prev_is("*/30 * * * *", "Europe/Berlin", "2026-10-25 01:15", "2026-10-25 01:00");
    prev_is("*/30 * * * *", "Europe/Berlin", "2026-10-25 00:45", "2026-10-25 00:30");
    /* `*` `/2` is `*` too: 02:00 CEST and 02:00 CET, then 04:00 CET */
    walk("0 */2 * * *", "Europe/Berlin", "2026-10-24 21:30", "2026-10-24 22:00",
         "2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 03:00", END);
}

static void dst_america_new_york(void **state)
{
    (void)state;
    /* 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z) */
    walk("30 2 * * *", "America/New_York", "2026-03-07 12:00", "2026-03-08 07:00",
         "2026-03-09 06:30", END);
    walk("0 * * * *", "America/New_York", "2026-03-08 05:30", "2026-03-08 06:00",
         "2026-03-08 07:00", "2026-03-08 08:00", END);
    walk("*/30 * * * *", "America/New_York", "2026-03-08 06:15", "2026-03-08 06:30",
         "2026-03-08 07:00", "2026-03-08 07:30", END);
    /* 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z): 01:30 occurs twice */
    walk("30 1 * * *", "America/New_York", "2026-10-31 12:00", "2026-11-01 05:30",
         "2026-11-02 06:30", END);
    walk("0 * * * *", "America/New_York", "2026-11-01 03:30", "2026-11-01 04:00",
         "2026-11-01 05:00", "2026-11-01 06:00", "2026-11-01 07:00", END);
    walk("*/30 * * * *", "America/New_York", "2026-11-01 05:15", "2026-11-01 05:30",
         "2026-11-01 06:00", "2026-11-01 06:30", "2026-11-01 07:00", END);
}

static void dst_australia_lord_howe(void **state)
{
    (void)state;
    /* half-hour DST. 2026-10-04 02:00 +10:30 -> 02:30 +11 (15:30Z) */
    walk("15 2 * * *", "Australia/Lord_Howe", "2026-10-03 00:00", "2026-10-03 15:30",
         "2026-10-04 15:15", END);
    /* 2026-04-05 02:00 +11 -> 01:30 +10:30 (15:00Z): 01:30-01:59 twice */
    walk("45 1 * * *", "Australia/Lord_Howe", "2026-04-04 00:00", "2026-04-04 14:45",
         "2026-04-05 15:15", END);
    walk("*/30 * * * *", "Australia/Lord_Howe", "2026-04-04 14:10", "2026-04-04 14:30",
         "2026-04-04 15:00", "2026-04-04 15:30", END);
}

/* A daily job fires exactly once per local day over a year with both
 * transitions, and an hourly one on every hour of a whole-hour zone. */
static void one_year_counts(void **state)
{
    static const char *zones[] = {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"};
    bt_cron_t *daily = cron("30 2 * * *"), *hourly = cron("0 * * * *");
    (void)state;
    for (size_t z = 0; z < 3; z++) {
        bt_tz_t *tz = zone(zones[z]);
        int64_t t = at("2026-01-01 00:00"), end = at("2027-01-01 00:00");
        int n = 0;
        char d[16], last[16] = "";
        while (bt_cron_next(daily, tz, t, &t) == BT_OK && t < end) {
            bt_tz_format_date(tz, t, d);
            assert_string_not_equal(d, last);
            strcpy(last, d);
            n++;
        }
        assert_int_equal(n, 365);
        bt_tz_free(tz);
    }
    bt_tz_t *berlin = zone("Europe/Berlin");
    int64_t t = at("2025-12-31 23:00"), end = at("2026-12-31 23:00");
    int n = 0;
    while (bt_cron_next(hourly, berlin, t, &t) == BT_OK && t <= end)
        n++;
    assert_int_equal(n, 8760); /* every UTC hour, none twice */
    bt_tz_free(berlin);
    bt_cron_free(daily);
    bt_cron_free(hourly);
}

static void not_found_within_8_years(void **state)
{
    static const char *never[] = {"0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"};
    bt_tz_t *tz = zone("Europe/Berlin");
    (void)state;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        bt_cron_t *c = cron(never[i]);
        int64_t got = 42;
        assert_int_equal(bt_cron_next(c, tz, at("2026-01-01 00:00"), &got), BT_E_NOTFOUND);
        assert_int_equal(bt_cron_prev(c, tz, at("2026-01-01 00:00"), &got), BT_E_NOTFOUND);
        assert_int_equal(got, 42);
        bt_cron_free(c);
    }
    bt_tz_free(tz);
}

static void zones_load_and_reject(void **state)
{
    static const char *bad[] = {"Mars/Olympus", "../etc/passwd", "", "/etc/passwd",
                                "Europe", "Europe/../UTC", "Europe//Berlin",
                                "EST5EDT,M3.2.0,M11.1.0", "UTC "};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static char sentinel;
        bt_tz_t *tz = (bt_tz_t *)&sentinel; /* must be reset to NULL */
        char err[300] = "";
        assert_int_equal(bt_tz_load(bad[i], &tz, err, sizeof err), BT_E_INVAL);
        assert_null(tz);
        if (!strstr(err, "time zone"))
            fail_msg("'%s': error '%s' does not mention the time zone", bad[i], err);
    }
    bt_tz_t *tz;
    assert_int_equal(bt_tz_load(NULL, &tz, NULL, 0), BT_E_INVAL);
    tz = zone("UTC");
    assert_string_equal(bt_tz_name(tz), "UTC");
    bt_tz_free(tz);
    tz = zone("Etc/UTC");
    assert_string_equal(bt_tz_name(tz), "Etc/UTC");
    bt_tz_free(tz);
    bt_tz_free(NULL);
    /* $TZDIR is where zones are looked up */
    setenv("TZDIR", "/nonexistent", 1);
    assert_int_equal(bt_tz_load("UTC", &tz, NULL, 0), BT_E_INVAL);
    unsetenv("TZDIR");
    tz = zone("UTC");
    bt_tz_free(tz);
}

static void formats(void **state)
{
    static const struct {
        const char *zone, *utc, *iso, *date;
    } cases[] = {
        {"Europe/Berlin", "2026-03-29 01:00", "2026-03-29T03:00:00+02:00", "2026-03-29"},
        {"Europe/Berlin", "2026-03-29 00:59:59", "2026-03-29T01:59:59+01:00", "2026-03-29"},
        {"America/New_York", "2026-11-01 06:00", "2026-11-01T01:00:00-05:00", "2026-11-01"},
        {"America/New_York", "2026-03-08 03:00", "2026-03-07T22:00:00-05:00", "2026-03-07"},
        {"Australia/Lord_Howe", "2026-04-04 15:00", "2026-04-05T01:30:00+10:30", "2026-04-05"},
        {"UTC", "1969-12-31 23:59:59", "1969-12-31T23:59:59+00:00", "1969-12-31"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bt_tz_t *tz = zone(cases[i].zone);
        char iso[40], date[16];
        bt_tz_format_iso(tz, at(cases[i].utc), iso);
        bt_tz_format_date(tz, at(cases[i].utc), date);
        assert_string_equal(iso, cases[i].iso);
        assert_string_equal(date, cases[i].date);
        bt_tz_free(tz);
    }
    bt_tz_t *tz = zone("America/New_York");
    bt_local_time_t lt;
    bt_tz_to_local(tz, at("2026-11-01 05:30") + 999, &lt);
    assert_int_equal(lt.year, 2026);
    assert_int_equal(lt.month, 11);
    assert_int_equal(lt.day, 1);
    assert_int_equal(lt.hour, 1);
    assert_int_equal(lt.minute, 30);
    assert_int_equal(lt.second, 0);
    assert_int_equal(lt.wday, 0);
    assert_int_equal(lt.utc_offset_s, -4 * 3600);
    bt_tz_free(tz);
}

/* ------------------------------------------ randomised sweep, reference */

static uint64_t rnd(uint64_t *s) /* xorshift64*: deterministic across runs */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static int offset(const bt_tz_t *tz, int64_t s)
{
    bt_local_time_t lt;
    bt_tz_to_local(tz, s * 1000, &lt);
    return lt.utc_offset_s;
}

static int wall_matches(const bt_cron_t *c, int64_t wall)
{
    time_t t = (time_t)wall;
    struct tm tm;
    gmtime_r(&t, &tm);
    bt_local_time_t lt = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                          tm.tm_min, tm.tm_sec, tm.tm_wday, 0};
    return bt_cron_matches(c, &lt);
}

/* The rules of cron.h decided from the UTC side, one minute at a time (an
 * independent formulation of what cron.c computes from the local side):
 * UTC minute u fires if its wall clock matches and is not a repeat of an
 * earlier reading (repeats count for interval jobs), or if u ends a gap
 * that swallowed a matching wall-clock time. */
static int ref_fires(const bt_cron_t *c, int hour_star, const bt_tz_t *tz, int64_t u)
{
    int64_t wall = u + offset(tz, u);
    if (wall_matches(c, wall)) {
        int repeat = 0;
        for (int d = 1800; d <= 7200; d += 1800) /* the DST shifts of the swept zones */
            repeat |= u - d + offset(tz, u - d) == wall;
        if (!repeat || hour_star)
            return 1;
    }
    for (int64_t w = u + offset(tz, u - 60); w < wall; w += 60) /* skipped wall times */
        if (wall_matches(c, w))
            return 1;
    return 0;
}

/* Offset changes of tz between two instants (s), to sample near them. */
static size_t transitions(const bt_tz_t *tz, int64_t from, int64_t to, int64_t *out, size_t max)
{
    size_t n = 0;
    for (int64_t s = from; s < to && n < max; s += 86400) {
        if (offset(tz, s) == offset(tz, s + 86400))
            continue;
        int64_t lo = s, hi = s + 86400;
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (offset(tz, mid) == offset(tz, lo))
                lo = mid;
            else
                hi = mid;
        }
        out[n++] = hi;
    }
    return n;
}

#define CAP_S (3 * 3600) /* reference window either side of t */

static void check_instant(const char *expr, int hour_star, const bt_cron_t *c,
                          const bt_tz_t *tz, int64_t t)
{
    int64_t n, p, q, n2;
    char b1[40], b2[40], b3[40];
    assert_int_equal(bt_cron_next(c, tz, t, &n), BT_OK);
    assert_int_equal(bt_cron_prev(c, tz, n, &p), BT_OK);
    assert_int_equal(bt_cron_prev(c, tz, t, &q), BT_OK);
    assert_int_equal(bt_cron_next(c, tz, p, &n2), BT_OK);
    if (!(n > t && p <= t && q < t && (p == q || p == t) && n2 == n))
        fail_msg("'%s' in %s at %s: next %s prev(next) %s", expr, bt_tz_name(tz), show(t, b1),
                 show(n, b2), show(p, b3));
    int64_t ts = t / 1000, lo = p / 1000, hi = n / 1000;
    if (lo < ts - CAP_S)
        lo = ts - CAP_S;
    if (hi > ts + CAP_S)
        hi = ts + CAP_S;
    for (int64_t u = (lo / 60 + 1) * 60; u < hi; u += 60)
        if (u * 1000 != p && ref_fires(c, hour_star, tz, u))
            fail_msg("'%s' in %s: reference fires at %s, between prev %s and next of %s", expr,
                     bt_tz_name(tz), show(u * 1000, b1), show(p, b2), show(t, b3));
    if ((n - t) / 1000 <= CAP_S && !ref_fires(c, hour_star, tz, n / 1000))
        fail_msg("'%s' in %s: next %s is no fire instant", expr, bt_tz_name(tz), show(n, b1));
    if ((t - p) / 1000 <= CAP_S && !ref_fires(c, hour_star, tz, p / 1000))
        fail_msg("'%s' in %s: prev %s is no fire instant", expr, bt_tz_name(tz), show(p, b1));
}

static void random_sweep_matches_reference(void **state)
{
    static const char *zones[] = {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"};
    static const struct {
        const char *expr;
        int hour_star;
    } exprs[] = {
        {"*/7 * * * *", 1},     {"0 * * * *", 1},      {"*/30 * * * *", 1},
        {"15,45 */2 * * *", 1}, {"30 2 * * *", 0},     {"30 1 * * *", 0},
        {"15,45 2 * * *", 0},   {"59 1,2 * * *", 0},   {"*/10 1-3 * * *", 0},
        {"0 0 * * *", 0},       {"0,30 2 * * 0", 0},   {"* 2 * * *", 0},
    };
    enum { SAMPLES = 2000, NEXPR = sizeof exprs / sizeof exprs[0] };
    bt_cron_t *crons[NEXPR];
    uint64_t seed = 20260329;
    (void)state;
    for (size_t e = 0; e < NEXPR; e++)
        crons[e] = cron(exprs[e].expr);
    for (size_t z = 0; z < 3; z++) {
        bt_tz_t *tz = zone(zones[z]);
        int64_t tr[64];
        size_t ntr = transitions(tz, at("2020-01-01 00:00") / 1000, at("2032-01-01 00:00") / 1000,
                                 tr, 64);
        assert_true(ntr >= 20);
        for (int i = 0; i < SAMPLES; i++) {
            size_t e = (size_t)(rnd(&seed) % NEXPR);
            int64_t t;
            if (i % 4 == 0) /* anywhere in 2000-2037 */
                t = at("2000-01-01 00:00") +
                    (int64_t)(rnd(&seed) % (UINT64_C(37) * 365 * 86400000));
            else /* within 36 hours of a transition */
                t = tr[rnd(&seed) % ntr] * 1000 + (int64_t)(rnd(&seed) % (72 * 3600000)) -
                    36 * 3600000;
            if (i % 3 == 0) /* whole minutes, where fire instants are */
                t -= t % 60000;
            check_instant(exprs[e].expr, exprs[e].hour_star, crons[e], tz, t);
        }
        bt_tz_free(tz);
    }
    for (size_t e = 0; e < NEXPR; e++)
        bt_cron_free(crons[e]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_errors_name_column_and_field),
        cmocka_unit_test(fields_steps_ranges_lists_names),
        cmocka_unit_test(next_is_strictly_after_and_prev_strictly_before),
        cmocka_unit_test(macros),
        cmocka_unit_test(february_29),
        cmocka_unit_test(vixie_day_of_month_or_day_of_week),
        cmocka_unit_test(dst_europe_berlin),
        cmocka_unit_test(dst_america_new_york),
        cmocka_unit_test(dst_australia_lord_howe),
        cmocka_unit_test(one_year_counts),
        cmocka_unit_test(not_found_within_8_years),
        cmocka_unit_test(zones_load_and_reject),
        cmocka_unit_test(formats),
        cmocka_unit_test(random_sweep_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
