/* Logging: one line per event to stderr (journald adds the time when run by
 * systemd; we add it anyway for terminals and test logs). */
#ifndef BATON_LOG_H
#define BATON_LOG_H

typedef enum bt_log_level {
    BT_LOG_DEBUG = 0,
    BT_LOG_INFO,
    BT_LOG_WARN,
    BT_LOG_ERROR,
} bt_log_level_t;

/* Messages below this level are dropped. Default BT_LOG_INFO, or the value
 * of BATON_LOG_LEVEL (debug, info, warn, error) at the first call. */
void bt_log_set_level(bt_log_level_t level);

void bt_log(bt_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define bt_debug(...) bt_log(BT_LOG_DEBUG, __VA_ARGS__)
#define bt_info(...) bt_log(BT_LOG_INFO, __VA_ARGS__)
#define bt_warn(...) bt_log(BT_LOG_WARN, __VA_ARGS__)
#define bt_error(...) bt_log(BT_LOG_ERROR, __VA_ARGS__)

#endif
