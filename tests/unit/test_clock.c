#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "baton/clock.h"

static void durations_parse(void **state)
{
    static const struct {
        const char *text;
        uint64_t ms;
    } ok[] = {
        {"250ms", 250}, {"30s", 30000},       {"10m", 600000}, {"2h", 7200000},
        {"1d", 86400000}, {"1h30m", 5400000}, {"6", 6000},     {"1m500ms", 60500},
    };
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t ms = 0;
        assert_int_equal(bt_duration_parse(ok[i].text, &ms), BT_OK);
        assert_int_equal(ms, ok[i].ms);
    }
}

static void durations_reject(void **state)
{
    static const char *bad[] = {"", "s", "10x", "-5s", "1.5h", "10 s", "5s3", "ms", "99999999999999999999h"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 42;
        assert_int_equal(bt_duration_parse(bad[i], &ms), BT_E_INVAL);
        assert_int_equal(ms, 42);
    }
    assert_int_equal(bt_duration_parse(NULL, NULL), BT_E_INVAL);
}

static void clocks_move(void **state)
{
    (void)state;
    assert_true(bt_now_ms() > 1700000000000LL);
    int64_t a = bt_mono_ms();
    assert_true(bt_mono_ms() >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations_parse),
        cmocka_unit_test(durations_reject),
        cmocka_unit_test(clocks_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
