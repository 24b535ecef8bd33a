/* PostgreSQL's timestamptz literal of a Unix time in milliseconds. */
#include <stdio.h>
#include <time.h>

#include "baton/pg.h"

void bt_ms_to_pg_time(int64_t ms, char buf[40])
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    struct tm tm;
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, 40, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%03d+00", frac);
}
