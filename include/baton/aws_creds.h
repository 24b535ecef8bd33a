/* AWS credentials for request signing: the part of the AWS SDKs' default
 * chain that a daemon on EC2 or on a workstation needs, tried in order:
 *
 *   1. environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (both, or
 *      neither), with AWS_SESSION_TOKEN for temporary keys;
 *   2. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
 *      ~/.aws/credentials), section [PROFILE] where PROFILE is the
 *      configured one, else $AWS_PROFILE, else "default";
 *   3. EC2 instance metadata, IMDSv2 only (a session token first, then the
 *      instance role's temporary keys), unless AWS_EC2_METADATA_DISABLED is
 *      "true".
 *
 * Environment and file keys are re-read every five minutes (a rotated file
 * is picked up without a restart); instance-role keys are fetched again
 * `refresh_margin_ms` before they expire, and the old keys are served
 * while a failed refresh is retried and they have not expired yet.
 *
 * Secrets never reach the log: a resolution logs its source and the last
 * four characters of the access key id only.
 *
 * Contract: bt_aws_creds_get() answers exactly once through the callback,
 * always later from the loop (also when the keys are cached); a get that
 * cannot be queued returns an error and gets no callback. */
#ifndef BATON_AWS_CREDS_H
#define BATON_AWS_CREDS_H

#include <ev.h>
#include <stdint.h>

#include "baton/err.h"
#include "baton/http.h"

typedef struct bt_aws_creds bt_aws_creds_t;

/* A snapshot, valid during the callback only. */
typedef struct bt_aws_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;    /* NULL for long-lived keys */
    const char *source;           /* "env", "profile NAME", "imds ROLE" */
    int64_t expires_ms;           /* 0: no expiry */
} bt_aws_credentials_t;

typedef struct bt_aws_creds_opts {
    const char *profile;          /* NULL: $AWS_PROFILE, else "default" */
    const char *credentials_file; /* NULL: $AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials */
    const char *imds_endpoint;    /* NULL: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else
                                   * http://169.254.169.254 */
    uint32_t refresh_margin_ms;   /* default 5 minutes */
    uint32_t imds_timeout_ms;     /* per IMDS request; default 1000 */
} bt_aws_creds_opts_t;

/* err BT_OK: creds is set. Otherwise creds is NULL and why says what each
 * link of the chain found (no secrets in it). */
typedef void (*bt_aws_creds_cb)(bt_err_t err, const bt_aws_credentials_t *creds,
                                const char *why, void *arg);

/* `http` (needed for IMDS) must outlive the returned object. */
bt_err_t bt_aws_creds_new(struct ev_loop *loop, bt_http_t *http, const bt_aws_creds_opts_t *opts,
                          bt_aws_creds_t **out);
/* Pending gets are dropped without their callbacks. Accepts NULL. */
void bt_aws_creds_free(bt_aws_creds_t *c);

bt_err_t bt_aws_creds_get(bt_aws_creds_t *c, bt_aws_creds_cb cb, void *arg);

/* Forgets cached keys, e.g. after the service said ExpiredTokenException:
 * the next get resolves the chain again. */
void bt_aws_creds_invalidate(bt_aws_creds_t *c);

#endif
