/* Backoff between attempts, for the scheduler's retries and the HTTP
 * transport's alike. */
#ifndef BATON_BACKOFF_H
#define BATON_BACKOFF_H

#include <stdint.h>

/* Delay before attempt `next_attempt` (2 = the first retry): exponential
 * backoff with full jitter and a cap, as the AWS architecture blog
 * describes: uniform in [0, min(cap, base * 2^(next_attempt - 2))].
 * `rnd` is a uniform random 64-bit value (the caller's generator). */
uint64_t bt_backoff_ms(uint64_t base_ms, uint64_t cap_ms, uint32_t next_attempt, uint64_t rnd);

#endif
