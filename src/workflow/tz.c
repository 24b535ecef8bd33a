/* Time zones through glibc and the system zone database (Debian tzdata).
 *
 * glibc has no per-zone API: localtime_r() uses the zone named by the
 * process-global TZ variable. We point TZ at the zone's file and call
 * tzset() whenever a different zone is needed. That is acceptable because
 * the process is single-threaded and does its local-time work here.
 * We deliberately never restore the previous TZ: nothing else in the
 * process depends on it, and restoring would cost a second tzset() (which
 * re-reads a zone file) on every call. */
#include "baton/tz.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TZ_NAME_MAX 255 /* longer than any IANA name, short enough for a path */

struct bt_tz {
    char *name;    /* as given: "Europe/Berlin" */
    char *tzvalue; /* TZ for glibc: ":" and the absolute path of the file we checked */
};

/* The TZ value in force (the documented TZ cache; the only global mutable
 * state of the scheduler). Empty until the first switch. */
static char tz_in_force[PATH_MAX + 2];

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *zoneinfo_dir(void)
{
    const char *dir = getenv("TZDIR");
    return dir && *dir ? dir : "/usr/share/zoneinfo";
}

/* An IANA name is a relative path of [A-Za-z0-9_+-.] components. Refusing
 * everything else keeps the name from leaving the zoneinfo directory and
 * keeps POSIX rule strings ("EST5EDT,M3.2.0,M11.1.0") out: glibc would
 * accept those, but they are not zones of the database. */
static int name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > TZ_NAME_MAX || name[0] == '/')
        return 0;
    for (const char *p = name; *p; p++) {
        char ch = *p;
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                 (ch >= '0' && ch <= '9') || ch == '_' || ch == '+' || ch == '-' ||
                 ch == '.' || ch == '/';
        if (!ok)
            return 0;
    }
    /* no empty, "." or ".." component */
    for (const char *comp = name; comp;) {
        const char *slash = strchr(comp, '/');
        size_t n = slash ? (size_t)(slash - comp) : strlen(comp);
        if (n == 0 || (n == 1 && comp[0] == '.') || (n == 2 && comp[0] == '.' && comp[1] == '.'))
            return 0;
        comp = slash ? slash + 1 : NULL;
    }
    return 1;
}

/* A regular file starting with the TZif magic. glibc silently falls back to
 * UTC for a missing or unreadable file, so this is our only chance to
 * notice a typo in a zone name. */
static int is_tzif_file(const char *path)
{
    char magic[4];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
             read(fd, magic, sizeof magic) == (ssize_t)sizeof magic &&
             memcmp(magic, "TZif", 4) == 0;
    close(fd);
    return ok;
}

bt_err_t bt_tz_load(const char *name, bt_tz_t **out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (!out)
        return BT_E_INVAL;
    *out = NULL;
    if (!name || !name_is_valid(name)) {
        set_err(err, errlen, "'%s' is not a valid time zone name", name ? name : "(null)");
        return BT_E_INVAL;
    }
    int n = snprintf(path, sizeof path, "%s/%s", zoneinfo_dir(), name);
    if (n < 0 || (size_t)n >= sizeof path) {
        set_err(err, errlen, "time zone '%s': path too long", name);
        return BT_E_INVAL;
    }
    if (!is_tzif_file(path)) {
        set_err(err, errlen, "unknown time zone '%s' (no zone file %s)", name, path);
        return BT_E_INVAL;
    }
    bt_tz_t *tz = calloc(1, sizeof *tz);
    if (!tz)
        return BT_E_NOMEM;
    tz->name = strdup(name);
    tz->tzvalue = malloc((size_t)n + 2);
    if (!tz->name || !tz->tzvalue) {
        bt_tz_free(tz);
        return BT_E_NOMEM;
    }
    /* The absolute path, so glibc reads the very file we checked even if
     * TZDIR changes later. */
    tz->tzvalue[0] = ':';
    memcpy(tz->tzvalue + 1, path, (size_t)n + 1);
    *out = tz;
    return BT_OK;
}

void bt_tz_free(bt_tz_t *tz)
{
    if (!tz)
        return;
    free(tz->name);
    free(tz->tzvalue);
    free(tz);
}

const char *bt_tz_name(const bt_tz_t *tz)
{
    return tz ? tz->name : "UTC";
}

/* Makes tz the zone of localtime_r(); a no-op when it already is. */
static void use_zone(const bt_tz_t *tz)
{
    if (strcmp(tz_in_force, tz->tzvalue) == 0)
        return;
    setenv("TZ", tz->tzvalue, 1);
    tzset(); /* localtime_r() itself does not re-read TZ */
    snprintf(tz_in_force, sizeof tz_in_force, "%s", tz->tzvalue);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* A NULL zone is UTC. Instants glibc cannot represent give all zeros. */
void bt_tz_to_local(const bt_tz_t *tz, int64_t ms, bt_local_time_t *out)
{
    struct tm tm;
    time_t t = (time_t)floor_div(ms, 1000);
    struct tm *ok;
    if (tz) {
        use_zone(tz);
        ok = localtime_r(&t, &tm);
    } else {
        ok = gmtime_r(&t, &tm);
    }
    memset(out, 0, sizeof *out);
    if (!ok)
        return;
    out->year = tm.tm_year + 1900;
    out->month = tm.tm_mon + 1;
    out->day = tm.tm_mday;
    out->hour = tm.tm_hour;
    out->minute = tm.tm_min;
    out->second = tm.tm_sec;
    out->wday = tm.tm_wday;
    out->utc_offset_s = tz ? (int)tm.tm_gmtoff : 0;
}

static int offset_at(const bt_tz_t *tz, int64_t s)
{
    bt_local_time_t lt;
    bt_tz_to_local(tz, s * 1000, &lt);
    return lt.utc_offset_s;
}

/* Offsets are read a day either side of the wall time: that brackets every
 * instant whose wall clock can read it (offsets stay within -12h..+14h), and
 * assumes at most one offset change within those two days, as the zone
 * database has had since 1970. No mktime(): with tm_isdst = -1 it picks an
 * arbitrary side of an overlap and normalises gap times differently across
 * libc versions. */
int bt_tz_from_local(const bt_tz_t *tz, int64_t wall_ms, int64_t out_ms[2])
{
    int64_t l = floor_div(wall_ms, 1000), frac = wall_ms - l * 1000;
    int before = offset_at(tz, l - 86400), after = offset_at(tz, l + 86400);
    int64_t ua = l - before, ub = l - after;
    int a_ok = offset_at(tz, ua) == before; /* ua's wall clock reads l */
    int b_ok = ub != ua && offset_at(tz, ub) == after;
    if (a_ok && b_ok) { /* overlap: before > after, so ua comes first */
        out_ms[0] = (ua < ub ? ua : ub) * 1000 + frac;
        out_ms[1] = (ua < ub ? ub : ua) * 1000 + frac;
        return 2;
    }
    if (a_ok || b_ok || after <= before) { /* the last: a change we cannot see */
        out_ms[0] = (a_ok || !b_ok ? ua : ub) * 1000 + frac;
        return 1;
    }
    /* A gap: the wall clock reads l - after + before < l at ub and
     * l + after - before > l at ua; find the first instant it is past l. */
    int64_t lo = ub, hi = ua;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mid + offset_at(tz, mid) > l)
            hi = mid;
        else
            lo = mid;
    }
    out_ms[0] = hi * 1000;
    return 0;
}

/* Clamps to what the fixed-size buffers hold: years 0-9999. */
static int clamp_year(int year)
{
    return year < 0 ? 0 : year > 9999 ? 9999 : year;
}

void bt_tz_format_date(const bt_tz_t *tz, int64_t ms, char buf[16])
{
    bt_local_time_t lt;
    bt_tz_to_local(tz, ms, &lt);
    snprintf(buf, 16, "%04d-%02d-%02d", clamp_year(lt.year), lt.month % 100, lt.day % 100);
}

void bt_tz_format_iso(const bt_tz_t *tz, int64_t ms, char buf[40])
{
    bt_local_time_t lt;
    bt_tz_to_local(tz, ms, &lt);
    int off = lt.utc_offset_s;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    /* Always ±HH:MM, never "Z": the offset tells users which side of a DST
     * change an instant is on. Offsets are whole minutes since 1970. */
    snprintf(buf, 40, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", clamp_year(lt.year),
             lt.month % 100, lt.day % 100, lt.hour % 100, lt.minute % 100, lt.second % 100,
             sign, off / 3600 % 100, off / 60 % 60);
}
