/* baton error codes: one enum for every fallible function (curl's CURLcode
 * model). Details go to the log or an out-parameter, never to stderr. */
#ifndef BATON_ERR_H
#define BATON_ERR_H

typedef enum bt_err {
    BT_OK = 0,
    BT_E_NOMEM,        /* allocation failed */
    BT_E_INVAL,        /* bad argument or bad input */
    BT_E_CONFIG,       /* configuration is missing or wrong */
    BT_E_FENCED,       /* our epoch is not the current one: step down now */
    BT_E_STALE_EPOCH,  /* fence bump refused: a newer epoch is already there */
    BT_E_CONFLICT,     /* the row is not in the expected state (CAS lost) */
    BT_E_EXISTS,       /* create of something that already exists */
    BT_E_NOTFOUND,
    BT_E_CORRUPT,      /* a stored record does not decode */
    BT_E_PG,           /* PostgreSQL answered with an error */
    BT_E_PG_CONN,      /* connection lost: the outcome of a write is unknown */
    BT_E_SCHEMA_NEWER, /* the database schema is newer than this binary */
    BT_E_TIMEOUT,
    BT_E_CANCELLED,    /* the handle was closed before the request completed */
    BT_E_IO,
    BT_E_ZK,
    BT_E_HTTP,
    BT_E_PARSE,
    BT_E_NOT_SENT,     /* a side effect this node may not send now: never sent */
    BT_E__COUNT
} bt_err_t;

/* A short, static, human-readable description. Never NULL. */
const char *bt_strerror(bt_err_t err);

/* The stable lower-case name of a code ("fenced"), for logs and JSON. */
const char *bt_err_name(bt_err_t err);

#endif
