#include "baton/clock.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t bt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t bt_now_ms(void)
{
    return bt_now_us() / 1000;
}

int64_t bt_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double bt_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bt_err_t bt_duration_parse(const char *text, uint64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *p = text;
    uint64_t total = 0;

    if (!text || !*text)
        return BT_E_INVAL;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return BT_E_INVAL;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        p = end;
        if (!*p) { /* bare number: seconds, only when it is the whole text */
            if (total != 0 || end == text)
                return BT_E_INVAL;
            total = (uint64_t)v * 1000;
            break;
        }
        size_t i, n = sizeof units / sizeof units[0];
        for (i = 0; i < n; i++) {
            size_t len = strlen(units[i].unit);
            /* "m" must not swallow the "m" of "ms" */
            if (!strncmp(p, units[i].unit, len) && !isalpha((unsigned char)p[len]))
                break;
        }
        if (i == n)
            return BT_E_INVAL;
        if (v > UINT64_MAX / units[i].ms / 2)
            return BT_E_INVAL;
        total += (uint64_t)v * units[i].ms;
        p += strlen(units[i].unit);
    }
    *out_ms = total;
    return BT_OK;
}
