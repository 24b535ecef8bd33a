/* Cron schedules evaluated in an IANA time zone (baton/tz.h).
 *
 * Expressions: five fields "minute hour day-of-month month day-of-week" with
 * `*`, numbers, ranges `a-b`, lists `a,b`, steps `*` `/n` and `a-b/n`, month and
 * weekday names (JAN..DEC, SUN..SAT, case-insensitive; 0 and 7 are Sunday),
 * and the macros @yearly @annually @monthly @weekly @daily @midnight @hourly.
 * Day-of-month and day-of-week follow Vixie cron: when both are restricted
 * (neither is `*`), a day matches if either matches.
 *
 * Time zones (docs/scheduling.md states the rule for users):
 *  - a local time that does not exist (spring-forward gap) fires at the
 *    first instant after the gap;
 *  - a local time that occurs twice (autumn overlap) fires once, at its
 *    first occurrence, except for expressions whose hour field is `*`
 *    (they describe an interval, not a time of day), which fire at every
 *    matching instant of both occurrences, as Vixie cron does. */
#ifndef BATON_CRON_H
#define BATON_CRON_H

#include <stddef.h>
#include <stdint.h>

#include "baton/err.h"
#include "baton/tz.h"

typedef struct bt_cron bt_cron_t;

/* Parses an expression. On error, err gets e.g.
 * "column 4: hour: 25 is out of range 0-23". */
bt_err_t bt_cron_parse(const char *expr, bt_cron_t **out, char *err, size_t errlen);
void bt_cron_free(bt_cron_t *c); /* accepts NULL */

/* Whether local wall-clock fields match the expression (seconds, wday's
 * consistency with the date and the offset are not looked at; the weekday
 * is taken from lt->wday). For callers that walk time themselves. */
int bt_cron_matches(const bt_cron_t *c, const bt_local_time_t *lt);

/* The first fire instant strictly after `after_ms` (Unix ms), in `tz`.
 * BT_E_NOTFOUND when there is none within the next 8 years (e.g. "0 0 30 2 *"). */
bt_err_t bt_cron_next(const bt_cron_t *c, const bt_tz_t *tz, int64_t after_ms, int64_t *out_ms);

/* The last fire instant strictly before `before_ms`; BT_E_NOTFOUND likewise. */
bt_err_t bt_cron_prev(const bt_cron_t *c, const bt_tz_t *tz, int64_t before_ms, int64_t *out_ms);

#endif
