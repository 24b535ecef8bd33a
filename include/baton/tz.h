/* IANA time zones: loading a zone, and converting between instants and
 * its wall clock, gaps and overlaps included (the rule users see is in
 * docs/scheduling.md). The zone database is the system's (Debian tzdata),
 * read through glibc. Cron schedules (baton/cron.h) are evaluated in one. */
#ifndef BATON_TZ_H
#define BATON_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "baton/err.h"

typedef struct bt_tz bt_tz_t;

/* Loads an IANA zone ("Europe/Berlin", "UTC"). BT_E_INVAL with a reason in
 * err for an unknown or malformed name (glibc would silently use UTC). */
bt_err_t bt_tz_load(const char *name, bt_tz_t **out, char *err, size_t errlen);
void bt_tz_free(bt_tz_t *tz); /* accepts NULL */
const char *bt_tz_name(const bt_tz_t *tz);

/* Local wall-clock fields of an instant (Unix ms). */
typedef struct bt_local_time {
    int year, month, day;      /* month 1-12, day 1-31 */
    int hour, minute, second;
    int wday;                  /* 0 = Sunday */
    int utc_offset_s;          /* east of UTC */
} bt_local_time_t;
void bt_tz_to_local(const bt_tz_t *tz, int64_t ms, bt_local_time_t *out);

/* The instants (Unix ms) at which the wall clock of tz reads `wall_ms`
 * (ms since 1970-01-01 00:00 on that wall clock). Returns 1 with out_ms[0];
 * 2 for a time that occurs twice (autumn overlap), out_ms ascending; or 0
 * for a time that does not exist (spring gap), with out_ms[0] the first
 * instant after the gap. */
int bt_tz_from_local(const bt_tz_t *tz, int64_t wall_ms, int64_t out_ms[2]);

/* "2026-03-29" (the local date) and "2026-03-29T02:30:00+02:00". */
void bt_tz_format_date(const bt_tz_t *tz, int64_t ms, char buf[16]);
void bt_tz_format_iso(const bt_tz_t *tz, int64_t ms, char buf[40]);

#endif
