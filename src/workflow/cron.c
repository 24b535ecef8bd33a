/* Cron expressions: parsing, and next/previous fire instants in a zone.
 *
 * Evaluation walks matching *local* wall-clock times (skipping whole
 * months, days and hours that cannot match) and maps each to the UTC
 * instants it fires at. The mapping is where the DST rules of cron.h live:
 * a local time in a gap fires at the end of the gap, one that occurs twice
 * fires at its first occurrence, and at both when the hour field is `*`. */
#include "baton/cron.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MINUTE 60
#define HOUR 3600
#define DAY 86400
#define HORIZON ((int64_t)8 * 366 * DAY)    /* "none within 8 years" */
#define MS_LIMIT ((int64_t)100000000000000) /* |ms| beyond: years < -1000 or > 5000 */

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, NFIELDS };

struct bt_cron {
    uint64_t bits[NFIELDS];  /* bit n: value n matches; weekday 7 is folded into 0 */
    bool dom_star, dow_star; /* field starts with `*`: Vixie's DOM_STAR/DOW_STAR */
    bool hour_star;          /* hour field starts with `*`: an interval job */
};

/* ------------------------------------------------------------------ parsing */

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

static const struct field_spec {
    const char *name;
    int min, max; /* values one may write */
    int last;     /* where `*` and `a/n` end: Saturday for the weekday (7 only as a value) */
    const char *const *names;
    int first_name_value;
} specs[NFIELDS] = {
    {"minute", 0, 59, 59, NULL, 0},
    {"hour", 0, 23, 23, NULL, 0},
    {"day-of-month", 1, 31, 31, NULL, 0},
    {"month", 1, 12, 12, month_names, 1},
    {"day-of-week", 0, 7, 6, day_names, 0},
};

static const struct {
    const char *name, *expansion;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

struct parser {
    const char *expr; /* for columns */
    char *err;
    size_t errlen;
};

static bt_err_t fail(const struct parser *ps, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Every message starts with the 1-based column it is about. */
static bt_err_t fail(const struct parser *ps, const char *at, const char *fmt, ...)
{
    if (ps->err && ps->errlen > 0) {
        va_list ap;
        int n = snprintf(ps->err, ps->errlen, "column %d: ", (int)(at - ps->expr) + 1);
        if (n >= 0 && (size_t)n < ps->errlen) {
            va_start(ap, fmt);
            vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return BT_E_INVAL;
}

static bt_err_t unexpected(const struct parser *ps, const struct field_spec *f,
                           const char *p, const char *end)
{
    if (p == end)
        return fail(ps, p, "%s: expected a value", f->name);
    return fail(ps, p, "%s: unexpected '%c'", f->name, *p);
}

/* Digits at *pp (at least one, checked by the caller), saturating: the
 * range checks report huge numbers with their text. */
static long read_number(const char **pp, const char *end)
{
    long v = 0;
    for (; *pp < end && isdigit((unsigned char)**pp); (*pp)++)
        if (v < 100000)
            v = v * 10 + (**pp - '0');
    return v;
}

/* A number or, for months and weekdays, a three-letter name. */
static bt_err_t parse_value(const struct parser *ps, const struct field_spec *f,
                            const char **pp, const char *end, int *out)
{
    const char *start = *pp, *p = start;
    if (p < end && isdigit((unsigned char)*p)) {
        long v = read_number(&p, end);
        if (v < f->min || v > f->max)
            return fail(ps, start, "%s: %.*s is out of range %d-%d", f->name, (int)(p - start),
                        start, f->min, f->max);
        *out = (int)v;
    } else if (p < end && isalpha((unsigned char)*p)) {
        while (p < end && isalpha((unsigned char)*p))
            p++;
        int len = (int)(p - start);
        if (!f->names)
            return fail(ps, start, "%s: '%.*s' is not a number", f->name, len, start);
        int i;
        for (i = 0; f->names[i]; i++)
            if (len == 3 && strncasecmp(start, f->names[i], 3) == 0)
                break;
        if (!f->names[i])
            return fail(ps, start, "%s: unknown name '%.*s'", f->name, len, start);
        *out = f->first_name_value + i;
    } else {
        return unexpected(ps, f, p, end);
    }
    *pp = p;
    return BT_OK;
}

/* One list item: `*`, `a`, `a-b`, each optionally followed by `/n`. */
static bt_err_t parse_item(const struct parser *ps, const struct field_spec *f,
                           const char *p, const char *end, uint64_t *bits)
{
    const char *start = p;
    int lo, hi, step = 1;
    bool range = true;
    bt_err_t rc;

    if (p < end && *p == '*') {
        lo = f->min;
        hi = f->last;
        p++;
    } else {
        if ((rc = parse_value(ps, f, &p, end, &lo)) != BT_OK)
            return rc;
        hi = lo;
        range = false;
        if (p < end && *p == '-') {
            p++;
            if ((rc = parse_value(ps, f, &p, end, &hi)) != BT_OK)
                return rc;
            if (hi < lo)
                return fail(ps, start, "%s: range %.*s is reversed", f->name,
                            (int)(p - start), start);
            range = true;
        }
    }
    if (p < end && *p == '/') {
        const char *s = ++p;
        int span = f->last - f->min + 1;
        if (p == end || !isdigit((unsigned char)*p))
            return unexpected(ps, f, p, end);
        long v = read_number(&p, end);
        if (v < 1 || v > span)
            return fail(ps, s, "%s: step %.*s is out of range 1-%d", f->name, (int)(p - s), s,
                        span);
        step = (int)v;
        if (!range) /* `a/n` is `a-last/n` */
            hi = lo > f->last ? lo : f->last;
    }
    if (p != end)
        return unexpected(ps, f, p, end);
    for (int v = lo; v <= hi; v += step)
        *bits |= UINT64_C(1) << v;
    return BT_OK;
}

static bt_err_t parse_field(const struct parser *ps, int idx, const char *p, const char *end,
                            bt_cron_t *c)
{
    const struct field_spec *f = &specs[idx];
    uint64_t bits = 0;
    while (1) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        bt_err_t rc = parse_item(ps, f, p, item_end, &bits);
        if (rc != BT_OK)
            return rc;
        if (!comma)
            break;
        p = comma + 1;
    }
    c->bits[idx] = idx == F_DOW ? (bits | bits >> 7) & 0x7f : bits; /* Sunday: 0 and 7 */
    return BT_OK;
}

static const char *skip_space(const char *p)
{
    while (*p && isspace((unsigned char)*p))
        p++;
    return p;
}

static const char *token_end(const char *p)
{
    while (*p && !isspace((unsigned char)*p))
        p++;
    return p;
}

/* Five whitespace-separated fields. */
static bt_err_t parse_fields(const struct parser *ps, const char *p, bt_cron_t *c)
{
    const char *start[NFIELDS], *end[NFIELDS], *extra = NULL;
    int count = 0;
    for (; *p; p = skip_space(p), count++) {
        if (count < NFIELDS) {
            start[count] = p;
            end[count] = token_end(p);
        } else if (!extra) {
            extra = p;
        }
        p = token_end(p);
    }
    if (count != NFIELDS)
        return fail(ps, extra ? extra : p,
                    "expected 5 fields (minute hour day-of-month month day-of-week), found %d",
                    count);
    for (int f = 0; f < NFIELDS; f++) {
        bt_err_t rc = parse_field(ps, f, start[f], end[f], c);
        if (rc != BT_OK)
            return rc;
    }
    c->hour_star = *start[F_HOUR] == '*';
    c->dom_star = *start[F_DOM] == '*';
    c->dow_star = *start[F_DOW] == '*';
    return BT_OK;
}

static bt_err_t parse_macro(const struct parser *ps, const char *p, bt_cron_t *c)
{
    const char *end = token_end(p);
    const char *rest = skip_space(end);
    if (*rest)
        return fail(ps, rest, "unexpected text after %.*s", (int)(end - p), p);
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
        if (strlen(macros[i].name) == (size_t)(end - p) &&
            strncasecmp(p, macros[i].name, (size_t)(end - p)) == 0) {
            struct parser sub = {macros[i].expansion, ps->err, ps->errlen};
            return parse_fields(&sub, sub.expr, c);
        }
    }
    return fail(ps, p, "unknown macro '%.*s'", (int)(end - p), p);
}

bt_err_t bt_cron_parse(const char *expr, bt_cron_t **out, char *err, size_t errlen)
{
    struct parser ps = {expr ? expr : "", err, errlen};
    if (!out)
        return BT_E_INVAL;
    *out = NULL;
    const char *p = skip_space(ps.expr);
    if (!*p)
        return fail(&ps, p, "empty expression");
    bt_cron_t *c = calloc(1, sizeof *c);
    if (!c)
        return BT_E_NOMEM;
    bt_err_t rc = *p == '@' ? parse_macro(&ps, p, c) : parse_fields(&ps, p, c);
    if (rc != BT_OK) {
        free(c);
        return rc;
    }
    *out = c;
    return BT_OK;
}

void bt_cron_free(bt_cron_t *c)
{
    free(c);
}

/* ---------------------------------------------------------- calendar math */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Calendar steps on "local seconds" (see below) use the UTC calendar
 * functions, which do not depend on TZ. */
static void civil(int64_t day, struct tm *tm)
{
    time_t t = (time_t)(day * DAY);
    gmtime_r(&t, tm);
}

static int64_t day_number(struct tm *tm) /* normalises tm_mon/tm_mday overflow */
{
    return floor_div((int64_t)timegm(tm), DAY);
}

/* Vixie cron: with both day fields restricted either may match; when one
 * starts with `*` (even `*` `/2`) both must. */
static bool day_matches(const bt_cron_t *c, int mday, int wday)
{
    bool dom = c->bits[F_DOM] >> mday & 1, dow = c->bits[F_DOW] >> wday & 1;
    return (c->dom_star || c->dow_star) ? dom && dow : dom || dow;
}

int bt_cron_matches(const bt_cron_t *c, const bt_local_time_t *lt)
{
    if (!c || !lt || lt->month < 1 || lt->month > 12 || lt->day < 1 || lt->day > 31 ||
        lt->wday < 0 || lt->wday > 6 || lt->hour < 0 || lt->hour > 23 || lt->minute < 0 ||
        lt->minute > 59)
        return 0;
    return (c->bits[F_MONTH] >> lt->month & 1) && day_matches(c, lt->day, lt->wday) &&
           (c->bits[F_HOUR] >> lt->hour & 1) && (c->bits[F_MINUTE] >> lt->minute & 1);
}

/* Local times are "local seconds": seconds since 1970-01-01 00:00 on the
 * zone's wall clock, one integer that orders and steps like UTC. */

/* The first matching local minute >= x (a whole minute), if <= limit. */
static bool next_local(const bt_cron_t *c, int64_t x, int64_t limit, int64_t *out)
{
    int64_t day = floor_div(x, DAY);
    int sod = (int)(x - day * DAY), h = sod / HOUR, m = sod % HOUR / MINUTE;
    for (; day * DAY <= limit; day++, h = 0, m = 0) {
        struct tm tm;
        civil(day, &tm);
        if (!(c->bits[F_MONTH] >> (tm.tm_mon + 1) & 1)) { /* to the month's last day */
            tm.tm_mon++;
            tm.tm_mday = 1;
            day = day_number(&tm) - 1; /* day++ leaves it */
            continue;
        }
        if (!day_matches(c, tm.tm_mday, tm.tm_wday))
            continue;
        for (; h < 24; h++, m = 0) {
            uint64_t from = ~UINT64_C(0) << m; /* minutes m..63 */
            uint64_t mins = (c->bits[F_HOUR] >> h & 1) ? c->bits[F_MINUTE] & from : 0;
            if (mins) {
                *out = day * DAY + h * HOUR + __builtin_ctzll(mins) * MINUTE;
                return *out <= limit;
            }
        }
    }
    return false;
}

/* The last matching local minute <= x (a whole minute), if >= limit. */
static bool prev_local(const bt_cron_t *c, int64_t x, int64_t limit, int64_t *out)
{
    int64_t day = floor_div(x, DAY);
    int sod = (int)(x - day * DAY), h = sod / HOUR, m = sod % HOUR / MINUTE;
    for (; (day + 1) * DAY > limit; day--, h = 23, m = 59) {
        struct tm tm;
        civil(day, &tm);
        if (!(c->bits[F_MONTH] >> (tm.tm_mon + 1) & 1)) { /* to the month's first day */
            tm.tm_mday = 1;
            day = day_number(&tm); /* day-- leaves it */
            continue;
        }
        if (!day_matches(c, tm.tm_mday, tm.tm_wday))
            continue;
        for (; h >= 0; h--, m = 59) {
            uint64_t below = (UINT64_C(2) << m) - 1; /* minutes 0..m */
            uint64_t mins = (c->bits[F_HOUR] >> h & 1) ? c->bits[F_MINUTE] & below : 0;
            if (mins) {
                *out = day * DAY + h * HOUR + (63 - __builtin_clzll(mins)) * MINUTE;
                return *out >= limit;
            }
        }
    }
    return false;
}

/* ----------------------------------------------------- local time -> UTC */

static int offset_at(const bt_tz_t *tz, int64_t s)
{
    bt_local_time_t lt;
    bt_tz_to_local(tz, s * 1000, &lt);
    return lt.utc_offset_s;
}

/* The instants (Unix s, ascending) local time `l` fires at: one, or both
 * occurrences of an overlap for an interval job. */
static int fires_of(const bt_cron_t *c, const bt_tz_t *tz, int64_t l, int64_t out[2])
{
    int64_t ms[2];
    int n = bt_tz_from_local(tz, l * 1000, ms);
    out[0] = ms[0] / 1000;
    out[1] = n == 2 ? ms[1] / 1000 : out[0];
    return n == 2 && c->hour_star ? 2 : 1;
}

static bool ms_in_range(int64_t ms)
{
    return ms > -MS_LIMIT && ms < MS_LIMIT;
}

/* Walks matching local times upwards from the earliest one that can fire
 * after `after_ms`. The first occurrences grow with the local time, so the
 * first one past `after_ms` ends the walk; second occurrences of an
 * overlap met before it are later than their own first occurrence and may
 * still be the answer. */
bt_err_t bt_cron_next(const bt_cron_t *c, const bt_tz_t *tz, int64_t after_ms, int64_t *out_ms)
{
    if (!c || !out_ms || !ms_in_range(after_ms))
        return BT_E_INVAL;
    int64_t umin = floor_div(after_ms, 1000) + 1, best = INT64_MAX, l;
    int o1 = offset_at(tz, umin), o2 = offset_at(tz, umin + DAY);
    /* the smallest wall-clock reading of any instant >= umin */
    int64_t x = -floor_div(-(umin + (o1 < o2 ? o1 : o2)), MINUTE) * MINUTE;
    int64_t limit = x + HORIZON;
    for (; next_local(c, x, limit, &l); x = l + MINUTE) {
        int64_t f[2];
        int n = fires_of(c, tz, l, f);
        if (n == 2 && f[1] >= umin && f[1] < best)
            best = f[1];
        if (f[0] >= umin) {
            best = f[0] < best ? f[0] : best;
            break;
        }
    }
    if (best == INT64_MAX)
        return BT_E_NOTFOUND;
    *out_ms = best * 1000;
    return BT_OK;
}

/* The mirror image: the latest fire instant of a local time grows with it,
 * so the first local time (walking down) that fires entirely before
 * `before_ms` ends the walk; first occurrences met before it count too. */
bt_err_t bt_cron_prev(const bt_cron_t *c, const bt_tz_t *tz, int64_t before_ms, int64_t *out_ms)
{
    if (!c || !out_ms || !ms_in_range(before_ms))
        return BT_E_INVAL;
    int64_t umax = -floor_div(-before_ms, 1000) - 1, best = INT64_MIN, l;
    int o1 = offset_at(tz, umax), o2 = offset_at(tz, umax - DAY);
    /* the largest wall-clock reading of any instant <= umax */
    int64_t x = floor_div(umax + (o1 > o2 ? o1 : o2), MINUTE) * MINUTE;
    int64_t limit = x - HORIZON;
    for (; prev_local(c, x, limit, &l); x = l - MINUTE) {
        int64_t f[2];
        int n = fires_of(c, tz, l, f);
        if (f[n - 1] <= umax) {
            best = f[n - 1] > best ? f[n - 1] : best;
            break;
        }
        if (f[0] <= umax && f[0] > best)
            best = f[0];
    }
    if (best == INT64_MIN)
        return BT_E_NOTFOUND;
    *out_ms = best * 1000;
    return BT_OK;
}
