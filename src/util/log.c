#include "baton/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int bt_log_threshold = -1; /* -1: not read from the environment yet */

void bt_log_set_level(bt_log_level_t level)
{
    bt_log_threshold = (int)level;
}

static int bt_log_level_from_env(void)
{
    const char *v = getenv("BATON_LOG_LEVEL");
    if (!v)
        return BT_LOG_INFO;
    if (!strcmp(v, "debug"))
        return BT_LOG_DEBUG;
    if (!strcmp(v, "warn"))
        return BT_LOG_WARN;
    if (!strcmp(v, "error"))
        return BT_LOG_ERROR;
    return BT_LOG_INFO;
}

void bt_log(bt_log_level_t level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (bt_log_threshold < 0)
        bt_log_threshold = bt_log_level_from_env();
    if ((int)level < bt_log_threshold)
        return;

    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    /* Build the line first and write it once, so concurrent processes
     * writing to the same test log do not interleave mid-line. */
    char line[2048];
    int n = snprintf(line, sizeof line, "%s.%03ldZ %-5s ", stamp,
                     ts.tv_nsec / 1000000, names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
