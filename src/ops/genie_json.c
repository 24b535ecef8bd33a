/* The pure parts of the Genie operators: deterministic ids, request bodies,
 * response parsers (see genie_int.h). Everything that comes off the network
 * is checked field by field; a surprise is an error with a reason, never a
 * crash and never a guess. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/genie_int.h"

/* ------------------------------------------------------------ SHA-1, UUID */

/* SHA-1 (FIPS 180-4) for RFC 4122 version-5 ids only: not a security use,
 * and small enough that linking a crypto library for it is not worth it. */
typedef struct sha1 {
    uint32_t h[5];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
} sha1_t;

static uint32_t rol(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static void sha1_block(sha1_t *s, const unsigned char *p)
{
    uint32_t w[80], a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
}

static void sha1_init(sha1_t *s)
{
    static const uint32_t h0[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->n = 0;
}

static void sha1_update(sha1_t *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->len += len;
    while (len > 0) {
        size_t k = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, k);
        s->n += k;
        p += k;
        len -= k;
        if (s->n == 64) {
            sha1_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha1_final(sha1_t *s, unsigned char out[20])
{
    uint64_t bits = s->len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    sha1_update(s, &pad, 1);
    while (s->n != 56)
        sha1_update(s, &zero, 1);
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(s, lenb, 8);
    for (int i = 0; i < 20; i++)
        out[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

/* uuid5(NAMESPACE_DNS, "genie.baton.invalid"): fixed forever, or every id
 * baton ever derived would change and adoption across an upgrade would
 * break. */
static const unsigned char genie_ns[16] = {0x25, 0x7c, 0xce, 0xb1, 0x5c, 0xee, 0x52, 0x1c,
                                           0xa0, 0xaf, 0x33, 0x82, 0x2a, 0x0b, 0x29, 0x02};

void genie_uuid(const char *cluster, const char *kind, const char *run_key,
                char out[GENIE_ID_LEN + 1])
{
    sha1_t s;
    unsigned char d[20];
    sha1_init(&s);
    sha1_update(&s, genie_ns, sizeof genie_ns);
    sha1_update(&s, cluster ? cluster : "", strlen(cluster ? cluster : ""));
    sha1_update(&s, "/", 1);
    sha1_update(&s, kind, strlen(kind));
    sha1_update(&s, "/", 1);
    sha1_update(&s, run_key, strlen(run_key));
    sha1_final(&s, d);
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x50); /* version 5 */
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        o += sprintf(o, "%02x", d[i]);
    }
    *o = '\0';
}

/* ------------------------------------------------------------ bodies */

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* json_string refuses invalid UTF-8: a field is then missing, so every
 * setter reports it and the body is not sent half-built. */
static int set_str(json_t *o, const char *key, const char *v)
{
    return json_object_set_new(o, key, json_string(nz(v)));
}

static int append_str(json_t *a, const char *v)
{
    return json_array_append_new(a, json_string(nz(v)));
}

static json_t *str_array(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (append_str(a, v[i])) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* The user's tags plus the ones that say where the resource came from. */
static json_t *tags_with_origin(char **tags, size_t n, const char *cluster, const char *run_key,
                                const char *extra)
{
    json_t *a = str_array(tags, n);
    char buf[1200];
    int bad = !a;
    snprintf(buf, sizeof buf, "baton.run_key:%s", run_key);
    bad = bad || append_str(a, buf);
    snprintf(buf, sizeof buf, "baton.cluster:%s", nz(cluster));
    bad = bad || append_str(a, buf);
    if (!bad && extra)
        bad = append_str(a, extra);
    if (bad) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static char *dump(json_t *o, int bad)
{
    char *s = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

char *genie_job_body(const Baton__V1__GenieJob *j, const char *id, const char *cluster,
                     const char *run_key)
{
    json_t *o = json_object(), *crits = json_array();
    int bad = !o || !crits;
    if (bad) {
        json_decref(o);
        json_decref(crits);
        return NULL;
    }
    bad |= set_str(o, "id", id);
    bad |= set_str(o, "name", j->name);
    bad |= set_str(o, "user", j->user);
    bad |= set_str(o, "version", j->version);
    if (j->description && *j->description)
        bad |= set_str(o, "description", j->description);
    if (j->grouping && *j->grouping)
        bad |= set_str(o, "grouping", j->grouping);
    bad |= json_object_set_new(o, "commandArgs", str_array(j->command_args, j->n_command_args));
    for (size_t i = 0; i < j->n_cluster_criteria; i++) {
        const Baton__V1__GenieCriterion *c = j->cluster_criteria[i];
        json_t *t = c ? str_array(c->tags, c->n_tags) : json_array();
        json_t *co = json_object();
        if (!co) {
            json_decref(t);
            bad = 1;
            continue;
        }
        /* both calls take their argument, even when they fail */
        bad |= json_object_set_new(co, "tags", t) | json_array_append_new(crits, co);
    }
    bad |= json_object_set_new(o, "clusterCriterias", crits);
    bad |= json_object_set_new(o, "commandCriteria",
                               j->command_criterion
                                   ? str_array(j->command_criterion->tags,
                                               j->command_criterion->n_tags)
                                   : json_array());
    if (j->timeout_s)
        bad |= json_object_set_new(o, "timeout", json_integer(j->timeout_s));
    bad |= json_object_set_new(o, "tags",
                               tags_with_origin(j->tags, j->n_tags, cluster, run_key, NULL));
    return dump(o, bad);
}

char *genie_cluster_body(const Baton__V1__GenieRegisterCluster *c, const char *id,
                         const char *cluster, const char *run_key)
{
    json_t *o = json_object();
    char emr[300];
    if (!o)
        return NULL;
    snprintf(emr, sizeof emr, "emr.cluster_id:%s", nz(c->emr_cluster_id));
    int bad = set_str(o, "id", id);
    bad |= set_str(o, "name", c->name);
    bad |= set_str(o, "user", c->user);
    bad |= set_str(o, "version", c->version);
    bad |= set_str(o, "status", c->status && *c->status ? c->status : "UP");
    bad |= json_object_set_new(o, "tags",
                               tags_with_origin(c->tags, c->n_tags, cluster, run_key,
                                                c->emr_cluster_id && *c->emr_cluster_id ? emr
                                                                                        : NULL));
    /* Genie 3's cluster resource takes both as sets of locations */
    const struct {
        const char *key;
        char **v;
        size_t n;
    } lists[] = {{"configs", c->configs, c->n_configs},
                 {"dependencies", c->dependencies, c->n_dependencies}};
    for (size_t k = 0; k < 2; k++) {
        if (!lists[k].n)
            continue;
        json_t *a = json_array();
        for (size_t i = 0; a && i < lists[k].n; i++)
            bad |= json_array_append_new(a, json_string(lists[k].v[i]));
        bad |= !a || json_object_set_new(o, lists[k].key, a);
    }
    return dump(o, bad);
}

char *genie_status_patch(const char *status)
{
    json_t *a = json_pack("[{s:s, s:s, s:s}]", "op", "replace", "path", "/status", "value",
                          nz(status));
    return a ? dump(a, 0) : NULL;
}

/* ------------------------------------------------------------ parsers */

genie_phase_t genie_phase(const char *s)
{
    static const char *const active[] = {"INIT",    "RESERVED", "RESOLVED",
                                         "CLAIMED", "ACCEPTED", "RUNNING"};
    static const char *const failed[] = {"FAILED", "KILLED", "INVALID"};
    if (!s)
        return GENIE_UNKNOWN;
    for (size_t i = 0; i < sizeof active / sizeof active[0]; i++)
        if (!strcmp(s, active[i]))
            return GENIE_ACTIVE;
    for (size_t i = 0; i < sizeof failed / sizeof failed[0]; i++)
        if (!strcmp(s, failed[i]))
            return GENIE_FAILED;
    return !strcmp(s, "SUCCEEDED") ? GENIE_SUCCEEDED : GENIE_UNKNOWN;
}

static json_t *load_object(const char *body, size_t len, const char *what, char *err,
                           size_t elen)
{
    json_error_t jerr;
    json_t *o = body ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!o) {
        snprintf(err, elen, "%s: not JSON (%s)", what, body ? jerr.text : "no body");
        return NULL;
    }
    if (!json_is_object(o)) {
        snprintf(err, elen, "%s: not a JSON object", what);
        json_decref(o);
        return NULL;
    }
    return o;
}

int genie_parse_status(const char *body, size_t len, char *status, size_t slen, char *err,
                       size_t elen)
{
    json_t *o = load_object(body, len, "job status", err, elen);
    if (!o)
        return -1;
    json_t *s = json_object_get(o, "status");
    int rc = -1;
    if (!s)
        snprintf(err, elen, "job status: no \"status\" field");
    else if (!json_is_string(s))
        snprintf(err, elen, "job status: \"status\" is not a string");
    else if (genie_phase(json_string_value(s)) == GENIE_UNKNOWN)
        snprintf(err, elen, "job status: unknown status \"%.64s\"", json_string_value(s));
    else if ((size_t)snprintf(status, slen, "%s", json_string_value(s)) >= slen)
        snprintf(err, elen, "job status: status too long");
    else
        rc = 0;
    json_decref(o);
    return rc;
}

int genie_parse_cluster(const char *body, size_t len, char *status, size_t slen, char *err,
                        size_t elen)
{
    json_t *o = load_object(body, len, "cluster", err, elen);
    if (!o)
        return -1;
    json_t *id = json_object_get(o, "id"), *st = json_object_get(o, "status");
    int rc = 0;
    if (!json_is_string(id)) {
        snprintf(err, elen, "cluster: no string \"id\"");
        rc = -1;
    } else if (json_is_string(st) && slen) {
        snprintf(status, slen, "%s", json_string_value(st));
    }
    json_decref(o);
    return rc;
}

/* Printable text of at most n bytes, whitespace runs folded into one space. */
static void plain_text(const char *s, size_t len, char *out, size_t n)
{
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < n)
            out[o++] = ' ';
        space = 0;
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
}

void genie_error_message(long status, const char *body, size_t len, char *out, size_t olen)
{
    char msg[400] = "";
    json_error_t jerr;
    json_t *o = body && len ? json_loadb(body, len, 0, &jerr) : NULL;
    if (json_is_object(o)) {
        json_t *m = json_object_get(o, "message");
        if (!json_is_string(m) || !*json_string_value(m))
            m = json_object_get(o, "error");
        if (json_is_string(m))
            plain_text(json_string_value(m), strlen(json_string_value(m)), msg, sizeof msg);
    } else if (!o && body) {
        plain_text(body, len, msg, 200);
    }
    json_decref(o);
    if (*msg)
        snprintf(out, olen, "HTTP %ld: %s", status, msg);
    else
        snprintf(out, olen, "HTTP %ld", status);
}

int genie_parse_clusters(const char *body, size_t len, const char *name, char **ids,
                         int max, char *err, size_t elen)
{
    json_t *o = load_object(body, len, "cluster search", err, elen), *list = NULL, *v;
    const char *k;
    int n = 0, got = 0;
    if (!o)
        return -1;
    json_t *emb = json_object_get(o, "_embedded");
    if (!emb) /* Spring HATEOAS leaves _embedded out of an empty page */
        goto out;
    if (!json_is_object(emb)) {
        snprintf(err, elen, "cluster search: \"_embedded\" is not an object");
        n = -1;
        goto out;
    }
    /* "clusterList" in Genie 3 and 4; take the one list whatever its name */
    json_object_foreach(emb, k, v)
        if (json_is_array(v)) {
            list = v;
            break;
        }
    if (!list) {
        snprintf(err, elen, "cluster search: no list in \"_embedded\"");
        n = -1;
        goto out;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *c = json_array_get(list, i);
        json_t *id = json_object_get(c, "id"), *nm = json_object_get(c, "name");
        if (!json_is_object(c) || !json_is_string(id) || !json_is_string(nm)) {
            snprintf(err, elen, "cluster search: entry %zu lacks a string id or name", i);
            n = -1;
            goto out;
        }
        if (strcmp(json_string_value(nm), name) || got >= max)
            continue;
        if (!(ids[got] = strdup(json_string_value(id)))) {
            snprintf(err, elen, "out of memory");
            n = -1;
            goto out;
        }
        got++;
    }
    n = got;
out:
    if (n < 0)
        for (int i = 0; i < got; i++) {
            free(ids[i]);
            ids[i] = NULL;
        }
    json_decref(o);
    return n;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        need = 1;
    else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        need = 2;
        lo = p[0] == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
        hi = p[0] == 0xed ? 0x9f : 0xbf; /* no surrogates */
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        need = 3;
        lo = p[0] == 0xf0 ? 0x90 : 0x80;
        hi = p[0] == 0xf4 ? 0x8f : 0xbf;
    } else
        return 0;
    if (n < need + 1 || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i <= need; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return need + 1;
}

char *genie_tail_text(const char *body, size_t len)
{
    const unsigned char *p = (const unsigned char *)(body ? body : "");
    if (!body)
        len = 0;
    if (len > GENIE_TAIL_BYTES) {
        p += len - GENIE_TAIL_BYTES;
        len = GENIE_TAIL_BYTES;
    }
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_len(p + i, len - i);
        if (k == 1 && p[i] < 0x20 && p[i] != '\n' && p[i] != '\t' && p[i] != '\r')
            k = 0;
        if (k == 1 && p[i] == 0x7f)
            k = 0;
        if (!k) {
            *o++ = '?';
            i++;
            continue;
        }
        memcpy(o, p + i, k);
        o += k;
        i += k;
    }
    *o = '\0';
    return out;
}

char *genie_url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(nz(s));
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)nz(s); *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}
