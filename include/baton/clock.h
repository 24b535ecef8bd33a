/* Time helpers: wall clock in Unix milliseconds (what records store) and a
 * monotonic clock for timeouts, plus parsing of durations like "30s", "2h". */
#ifndef BATON_CLOCK_H
#define BATON_CLOCK_H

#include <stdint.h>

#include "baton/err.h"

int64_t bt_now_ms(void);       /* CLOCK_REALTIME, ms since the Unix epoch */
int64_t bt_now_us(void);       /* CLOCK_REALTIME, µs since the Unix epoch */
int64_t bt_mono_ms(void);      /* CLOCK_MONOTONIC, ms */
double bt_mono_s(void);        /* CLOCK_MONOTONIC, seconds */

/* Parses "250ms", "30s", "10m", "2h", "1d", or a sum such as "1h30m".
 * A bare number is seconds. Returns BT_E_INVAL on anything else. */
bt_err_t bt_duration_parse(const char *text, uint64_t *out_ms);

#endif
