/* Retry backoff (include/baton/backoff.h). */
#include "baton/backoff.h"

uint64_t bt_backoff_ms(uint64_t base_ms, uint64_t cap_ms, uint32_t next_attempt, uint64_t rnd)
{
    uint64_t ceiling = base_ms;
    /* double without overflowing: stop at the cap */
    for (uint32_t i = 2; i < next_attempt && ceiling < cap_ms; i++)
        ceiling = ceiling > UINT64_MAX / 2 ? UINT64_MAX : ceiling * 2;
    if (cap_ms && ceiling > cap_ms)
        ceiling = cap_ms;
    if (ceiling == UINT64_MAX)
        return rnd;
    return ceiling ? rnd % (ceiling + 1) : 0;
}
