/* The AWS credentials chain (see include/baton/aws_creds.h).
 *
 * One resolution at a time: gets that arrive while the instance metadata
 * service is being asked wait for that answer instead of asking again, and
 * every waiter is answered from the loop by deliver(), from a zero timer
 * when the keys were cached. The environment and the credentials file are
 * read synchronously: a few hundred bytes, at most every five minutes.
 *
 * Secrets live only in `keys` (and in the snapshot handed to callbacks);
 * they are wiped before their memory is freed. */
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "baton/aws_creds.h"
#include "baton/clock.h"
#include "baton/log.h"
#include "util/container.h"

#define STATIC_TTL_MS (5 * 60 * 1000)  /* re-read env and file this often */
#define IMDS_TOKEN_TTL_S 21600
#define RETRY_FLOOR_MS 10000           /* after a failed refresh, serve old keys this long */
#define DEFAULT_IMDS "http://169.254.169.254"

typedef struct waiter {
    struct waiter *next;
    bt_aws_creds_cb cb;
    void *arg;
} waiter_t;

typedef struct keys {
    char *akid, *secret, *token, *source;
    int64_t expires_ms;
} keys_t;

/* One IMDS request; `c` is NULL once the owner is gone (the transport still
 * calls back, and only this struct may be touched then). */
typedef struct imds_req {
    bt_aws_creds_t *c;
    int stage;       /* 0 token, 1 role list, 2 role keys */
    int retried;     /* one fresh token after a 401 */
} imds_req_t;

struct bt_aws_creds {
    struct ev_loop *loop;
    bt_http_t *http;
    char *profile, *file, *imds;
    uint32_t margin_ms, imds_timeout_ms;
    keys_t keys;              /* akid NULL: none cached */
    int64_t fresh_until_ms;   /* serve the cached keys without asking until then */
    int64_t retry_at_ms;      /* a refresh failed: serve old keys until then */
    char *imds_token;
    int64_t imds_token_until_ms;
    char *role;
    imds_req_t *fetch;        /* the IMDS resolution in flight, or NULL */
    waiter_t *waiters, **wtail;
    ev_timer kick;
    bt_err_t err;             /* why there are no keys */
    char why[768];
};

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void keys_clear(keys_t *k)
{
    free(k->akid);
    wipe_free(k->secret);
    wipe_free(k->token);
    free(k->source);
    memset(k, 0, sizeof *k);
}

static int keys_copy(keys_t *dst, const char *akid, const char *secret, const char *token,
                     const char *source, int64_t expires_ms)
{
    keys_t k = {.akid = strdup(akid),
                .secret = strdup(secret),
                .token = token && *token ? strdup(token) : NULL,
                .source = strdup(source),
                .expires_ms = expires_ms};
    if (!k.akid || !k.secret || !k.source || (token && *token && !k.token)) {
        keys_clear(&k);
        return -1;
    }
    *dst = k;
    return 0;
}

static const char *last4(const char *akid)
{
    size_t n = strlen(akid);
    return n > 4 ? akid + n - 4 : akid;
}

static void why_add(bt_aws_creds_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_add(bt_aws_creds_t *c, const char *fmt, ...)
{
    size_t used = strlen(c->why);
    if (used && used + 2 < sizeof c->why) {
        memcpy(c->why + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why + used, sizeof c->why - used, fmt, ap);
    va_end(ap);
}

/* Replaces the cached keys; logs when the identity or source changed. */
static int keys_set(bt_aws_creds_t *c, const char *akid, const char *secret, const char *token,
                    const char *source, int64_t expires_ms)
{
    keys_t k;
    if (keys_copy(&k, akid, secret, token, source, expires_ms) < 0) {
        c->err = BT_E_NOMEM;
        return -1;
    }
    int changed = !c->keys.akid || strcmp(c->keys.akid, akid) || strcmp(c->keys.source, source);
    keys_clear(&c->keys);
    c->keys = k;
    if (changed)
        bt_info("aws: credentials from %s, key id ...%s%s", source, last4(akid),
                k.token ? " (temporary)" : "");
    return 0;
}

/* ------------------------------------------------------------ env and file */

static int from_env(bt_aws_creds_t *c)
{
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (!ak || !*ak || !sk || !*sk) {
        why_add(c, "environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set");
        return 0;
    }
    return keys_set(c, ak, sk, getenv("AWS_SESSION_TOKEN"), "env", 0) == 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* The INI dialect of the AWS CLI: [section] lines, key = value lines,
 * comments from '#' or ';' at the start of a line. "[profile NAME]" (the
 * config file's spelling) is accepted too. */
static int from_file(bt_aws_creds_t *c)
{
    const char *profile = c->profile ? c->profile : getenv("AWS_PROFILE");
    const char *env = getenv("AWS_SHARED_CREDENTIALS_FILE"), *home = getenv("HOME");
    char path[4096], *line = NULL, *ak = NULL, *sk = NULL, *tok = NULL;
    size_t cap = 0;
    int in = 0, ok = 0;

    if (!profile || !*profile)
        profile = "default";
    if (c->file)
        snprintf(path, sizeof path, "%s", c->file);
    else if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else if (home && *home)
        snprintf(path, sizeof path, "%s/.aws/credentials", home);
    else {
        why_add(c, "credentials file: no $HOME");
        return 0;
    }
    FILE *f = fopen(path, "re");
    if (!f) {
        why_add(c, "%s: cannot open", path);
        return 0;
    }
    while (getline(&line, &cap, f) > 0) {
        char *s = trim(line), *eq;
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end)
                continue;
            *end = '\0';
            char *name = trim(s + 1);
            if (!strncmp(name, "profile ", 8))
                name = trim(name + 8);
            in = !strcmp(name, profile);
            continue;
        }
        if (!in || !(eq = strchr(s, '=')))
            continue;
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1), **slot = NULL;
        if (!strcasecmp(k, "aws_access_key_id"))
            slot = &ak;
        else if (!strcasecmp(k, "aws_secret_access_key"))
            slot = &sk;
        else if (!strcasecmp(k, "aws_session_token") || !strcasecmp(k, "aws_security_token"))
            slot = &tok;
        if (slot) {
            wipe_free(*slot);
            *slot = strdup(v);
        }
    }
    fclose(f);
    if (line) {
        explicit_bzero(line, cap);
        free(line);
    }
    if (ak && *ak && sk && *sk) {
        char source[300];
        snprintf(source, sizeof source, "profile %s", profile);
        ok = keys_set(c, ak, sk, tok, source, 0) == 0;
    } else {
        why_add(c, "%s: no keys in profile '%s'", path, profile);
    }
    free(ak);
    wipe_free(sk);
    wipe_free(tok);
    return ok;
}

/* ------------------------------------------------------------ delivery */

static void deliver(bt_aws_creds_t *c)
{
    waiter_t *w = c->waiters;
    int64_t now = bt_now_ms();
    keys_t snap = {0};
    char why[sizeof c->why];
    bt_err_t err = BT_OK;

    c->waiters = NULL;
    c->wtail = &c->waiters;
    snprintf(why, sizeof why, "%s", c->why[0] ? c->why : "no AWS credentials");
    if (c->keys.akid && (!c->keys.expires_ms || now < c->keys.expires_ms)) {
        /* a copy: a callback may invalidate or replace the cache */
        if (keys_copy(&snap, c->keys.akid, c->keys.secret, c->keys.token, c->keys.source,
                      c->keys.expires_ms) < 0)
            err = BT_E_NOMEM;
    } else {
        err = c->err != BT_OK ? c->err : BT_E_CONFIG;
    }
    bt_aws_credentials_t pub = {snap.akid, snap.secret, snap.token, snap.source, snap.expires_ms};
    while (w) {
        waiter_t *next = w->next;
        if (err == BT_OK)
            w->cb(BT_OK, &pub, NULL, w->arg);
        else
            w->cb(err, NULL, err == BT_E_NOMEM ? "out of memory" : why, w->arg);
        free(w);
        w = next;
    }
    keys_clear(&snap);
}

static void on_kick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    deliver(container_of(t, bt_aws_creds_t, kick));
}

static void arm_kick(bt_aws_creds_t *c)
{
    if (!ev_is_active(&c->kick)) {
        ev_timer_set(&c->kick, 0., 0.);
        ev_timer_start(c->loop, &c->kick);
    }
}

/* ------------------------------------------------------------ IMDSv2 */

static void on_imds(bt_err_t err, const bt_http_response_t *res, void *arg);

static bt_err_t imds_send(bt_aws_creds_t *c, imds_req_t *r)
{
    char url[1024], hdr[1200];
    const char *headers[2] = {hdr, NULL};
    bt_http_request_t req = {.method = "GET",
                             .url = url,
                             .headers = headers,
                             .timeout_ms = c->imds_timeout_ms,
                             .max_attempts = 2,
                             .retry_budget_ms = 4 * c->imds_timeout_ms + 1000,
                             .backoff_base_ms = 100,
                             .idempotent = 1,
                             .max_body = 64 * 1024};
    int n;
    if (r->stage == 0) {
        req.method = "PUT";
        n = snprintf(url, sizeof url, "%s/latest/api/token", c->imds);
        snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token-ttl-seconds: %d", IMDS_TOKEN_TTL_S);
    } else {
        n = snprintf(url, sizeof url, "%s/latest/meta-data/iam/security-credentials/%s", c->imds,
                     r->stage == 2 ? c->role : "");
        if (snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token: %s", c->imds_token) >=
            (int)sizeof hdr)
            return BT_E_INVAL;
    }
    if (n < 0 || (size_t)n >= sizeof url)
        return BT_E_INVAL;
    return bt_http_request(c->http, &req, on_imds, r);
}

/* Ends the IMDS resolution. On failure, keys that have not expired yet are
 * still served for a while (an IMDS hiccup must not stop running work). */
static void imds_done(bt_aws_creds_t *c, imds_req_t *r, bt_err_t err)
{
    int64_t now = bt_now_ms();
    c->fetch = NULL;
    free(r);
    if (err != BT_OK) {
        c->err = err;
        if (c->keys.akid && c->keys.expires_ms > now + 1000) {
            bt_warn("aws: refreshing credentials failed (%s); using the current ones until "
                    "they expire",
                    c->why);
            c->retry_at_ms = now + RETRY_FLOOR_MS;
        } else {
            if (c->keys.akid)
                bt_warn("aws: credentials expired and cannot be refreshed: %s", c->why);
            keys_clear(&c->keys);
        }
    }
    deliver(c);
}

static void imds_fail(bt_aws_creds_t *c, imds_req_t *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void imds_fail(bt_aws_creds_t *c, imds_req_t *r, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    why_add(c, "IMDS %s: %s", c->imds, msg);
    imds_done(c, r, BT_E_HTTP);
}

/* "2024-05-01T12:00:00Z" -> ms, or -1 */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6)
        return -1;
    const char *rest = s + used;
    if (*rest == '.')
        for (rest++; isdigit((unsigned char)*rest); rest++)
            ;
    if (strcmp(rest, "Z") && strcmp(rest, "+00:00") && *rest)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t * 1000;
}

static void imds_keys(bt_aws_creds_t *c, imds_req_t *r, const bt_http_response_t *res)
{
    json_error_t je;
    json_t *j = json_loadb(res->body, res->body_len, 0, &je);
    const char *code, *ak, *sk, *tok, *exp;
    if (!json_is_object(j)) {
        json_decref(j);
        imds_fail(c, r, "role credentials are not a JSON object");
        return;
    }
    code = json_string_value(json_object_get(j, "Code"));
    ak = json_string_value(json_object_get(j, "AccessKeyId"));
    sk = json_string_value(json_object_get(j, "SecretAccessKey"));
    tok = json_string_value(json_object_get(j, "Token"));
    exp = json_string_value(json_object_get(j, "Expiration"));
    int64_t expires = exp ? parse_iso8601(exp) : -1, now = bt_now_ms();
    if (code && strcmp(code, "Success")) {
        imds_fail(c, r, "role credentials: Code %.40s", code);
    } else if (!ak || !*ak || !sk || !*sk || !tok || !*tok || expires < 0) {
        imds_fail(c, r, "role credentials lack AccessKeyId, SecretAccessKey, Token or "
                        "Expiration");
    } else if (expires <= now) {
        imds_fail(c, r, "role credentials expired already (%s)", exp);
    } else {
        char source[300];
        snprintf(source, sizeof source, "imds %s", c->role);
        if (keys_set(c, ak, sk, tok, source, expires) < 0) {
            json_decref(j);
            imds_done(c, r, BT_E_NOMEM);
            return;
        }
        /* keys that live less than twice the margin are refreshed halfway */
        int64_t life = expires - now;
        c->fresh_until_ms = life > 2 * (int64_t)c->margin_ms ? expires - c->margin_ms
                                                              : now + life / 2;
        c->retry_at_ms = 0;
        c->why[0] = '\0';
        bt_debug("aws: instance role keys ...%s expire at %s", last4(ak), exp);
        imds_done(c, r, BT_OK);
    }
    json_decref(j);
}

static void on_imds(bt_err_t err, const bt_http_response_t *res, void *arg)
{
    imds_req_t *r = arg;
    bt_aws_creds_t *c = r->c;
    if (!c) {
        free(r);
        return;
    }
    if (err != BT_OK || !res || res->status == 0) {
        imds_fail(c, r, "%s", res && res->error ? res->error : bt_strerror(err));
        return;
    }
    if (res->status == 401 && r->stage > 0 && !r->retried) {
        /* the session token expired under us: one new token, then again */
        wipe_free(c->imds_token);
        c->imds_token = NULL;
        r->retried = 1;
        r->stage = 0;
    } else if (res->status != 200) {
        imds_fail(c, r, "%s: HTTP %ld",
                  r->stage == 0 ? "token" : r->stage == 1 ? "role list" : "role credentials",
                  res->status);
        return;
    } else if (r->stage == 0) {
        char *raw = strndup(res->body, res->body_len), *tok = raw ? trim(raw) : NULL;
        /* it goes into a header line: one printable line or nothing */
        if (!tok || !*tok || tok[strcspn(tok, "\r\n")] || strlen(tok) > 1000) {
            free(raw);
            imds_fail(c, r, "empty or malformed session token");
            return;
        }
        wipe_free(c->imds_token);
        c->imds_token = strdup(tok);
        wipe_free(raw);
        c->imds_token_until_ms = bt_now_ms() + (IMDS_TOKEN_TTL_S - 60) * 1000LL;
        r->stage = 1;
    } else if (r->stage == 1) {
        char *list = strndup(res->body, res->body_len), *role;
        role = list ? trim(list) : NULL;
        if (role)
            role[strcspn(role, "\r\n")] = '\0';
        if (!role || !*role || strpbrk(role, "/?#% ")) {
            free(list);
            imds_fail(c, r, "no instance role (is an instance profile attached?)");
            return;
        }
        free(c->role);
        c->role = strdup(role);
        free(list);
        r->stage = 2;
    } else {
        imds_keys(c, r, res);
        return;
    }
    if (!c->imds_token && r->stage > 0) {
        imds_done(c, r, BT_E_NOMEM);
        return;
    }
    if (imds_send(c, r) != BT_OK)
        imds_fail(c, r, "cannot send a request");
}

static void start_imds(bt_aws_creds_t *c)
{
    const char *off = getenv("AWS_EC2_METADATA_DISABLED");
    if (off && !strcasecmp(off, "true")) {
        why_add(c, "IMDS: disabled by AWS_EC2_METADATA_DISABLED");
        c->err = BT_E_CONFIG;
        arm_kick(c);
        return;
    }
    imds_req_t *r = calloc(1, sizeof *r);
    if (!r) {
        c->err = BT_E_NOMEM;
        arm_kick(c);
        return;
    }
    r->c = c;
    r->stage = c->imds_token && bt_now_ms() < c->imds_token_until_ms ? 1 : 0;
    c->fetch = r;
    if (imds_send(c, r) != BT_OK) {
        c->fetch = NULL;
        free(r);
        why_add(c, "IMDS: cannot send a request");
        c->err = BT_E_HTTP;
        arm_kick(c);
    }
}

/* ------------------------------------------------------------ API */

bt_err_t bt_aws_creds_get(bt_aws_creds_t *c, bt_aws_creds_cb cb, void *arg)
{
    if (!c || !cb)
        return BT_E_INVAL;
    waiter_t *w = calloc(1, sizeof *w);
    if (!w)
        return BT_E_NOMEM;
    w->cb = cb;
    w->arg = arg;
    *c->wtail = w;
    c->wtail = &w->next;
    if (c->fetch)
        return BT_OK; /* answered when the resolution in flight ends */
    int64_t now = bt_now_ms();
    if (c->keys.akid && (now < c->fresh_until_ms || now < c->retry_at_ms)) {
        arm_kick(c);
        return BT_OK;
    }
    c->why[0] = '\0';
    c->err = BT_OK;
    if (from_env(c) || from_file(c)) {
        c->fresh_until_ms = now + STATIC_TTL_MS;
        c->retry_at_ms = 0;
        c->why[0] = '\0';
        arm_kick(c);
        return BT_OK;
    }
    if (c->err == BT_E_NOMEM) {
        arm_kick(c);
        return BT_OK;
    }
    start_imds(c);
    return BT_OK;
}

void bt_aws_creds_invalidate(bt_aws_creds_t *c)
{
    if (!c)
        return;
    /* the keys, not the IMDS session token (a fetch may be using it) */
    c->fresh_until_ms = c->retry_at_ms = 0;
}

static char *dup_opt(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

bt_err_t bt_aws_creds_new(struct ev_loop *loop, bt_http_t *http, const bt_aws_creds_opts_t *opts,
                          bt_aws_creds_t **out)
{
    static const bt_aws_creds_opts_t none = {0};
    const char *imds_env = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!opts)
        opts = &none;
    bt_aws_creds_t *c = calloc(1, sizeof *c);
    if (!c)
        return BT_E_NOMEM;
    c->loop = loop;
    c->http = http;
    c->profile = dup_opt(opts->profile);
    c->file = dup_opt(opts->credentials_file);
    c->imds = strdup(opts->imds_endpoint && *opts->imds_endpoint ? opts->imds_endpoint
                     : imds_env && *imds_env                     ? imds_env
                                                                 : DEFAULT_IMDS);
    c->margin_ms = opts->refresh_margin_ms ? opts->refresh_margin_ms : 5 * 60 * 1000;
    c->imds_timeout_ms = opts->imds_timeout_ms ? opts->imds_timeout_ms : 1000;
    c->wtail = &c->waiters;
    ev_timer_init(&c->kick, on_kick, 0., 0.);
    if (!c->imds || (opts->profile && *opts->profile && !c->profile) ||
        (opts->credentials_file && *opts->credentials_file && !c->file)) {
        bt_aws_creds_free(c);
        return BT_E_NOMEM;
    }
    /* a trailing '/' would make "//latest/..." */
    size_t n = strlen(c->imds);
    while (n > 1 && c->imds[n - 1] == '/')
        c->imds[--n] = '\0';
    *out = c;
    return BT_OK;
}

void bt_aws_creds_free(bt_aws_creds_t *c)
{
    if (!c)
        return;
    ev_timer_stop(c->loop, &c->kick);
    if (c->fetch)
        c->fetch->c = NULL; /* the transport frees it when it calls back */
    while (c->waiters) {
        waiter_t *w = c->waiters;
        c->waiters = w->next;
        free(w);
    }
    keys_clear(&c->keys);
    wipe_free(c->imds_token);
    free(c->role);
    free(c->profile);
    free(c->file);
    free(c->imds);
    free(c);
}
