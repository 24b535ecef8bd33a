/* SigV4 as libcurl's CURLOPT_AWS_SIGV4 produces it (what the EMR operators
 * sign with, through src/net/http.c), checked against AWS's published
 * Signature Version 4 test suite.
 *
 * libcurl stamps the current time into every signature (only its debug
 * builds can freeze the clock), so a published vector cannot be replayed
 * through it. The check is a chain instead:
 *   1. a small reference signer in this file (SHA-256, HMAC, the canonical
 *      request) reproduces published vectors byte for byte;
 *   2. libcurl signs real requests to a local echo peer, and the reference
 *      signer, given the request as the peer received it (and its
 *      X-Amz-Date), must arrive at the same Authorization header: the
 *      headers we pass (X-Amz-Target, X-Amz-Security-Token) are signed,
 *      and so is the body;
 *   3. the same through bt_http_request, so the transport hands libcurl the
 *      body in a form its signer hashes (CURLOPT_POSTFIELDS). */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "baton/http.h"

/* ------------------------------------------------------------ SHA-256 (FIPS 180-4) */

typedef struct sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
} sha256_t;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_t *s, const unsigned char *p)
{
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++)
        w[i] = w[i - 16] + (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) +
               w[i - 7] + (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
    memcpy(a, s->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) +
                      ((a[4] & a[5]) ^ (~a[4] & a[6])) + K[i] + w[i];
        uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) +
                      ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
        memmove(a + 1, a, 7 * sizeof a[0]);
        a[4] += t1;
        a[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        s->h[i] += a[i];
}

static void sha256_init(sha256_t *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->n = 0;
}

static void sha256_add(sha256_t *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->len += len;
    while (len--) {
        s->buf[s->n++] = *p++;
        if (s->n == 64) {
            sha256_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha256_end(sha256_t *s, unsigned char out[32])
{
    uint64_t bits = s->len * 8;
    unsigned char one = 0x80, zero = 0, len[8];
    sha256_add(s, &one, 1);
    while (s->n != 56)
        sha256_add(s, &zero, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_add(s, len, 8);
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 4; k++)
            out[4 * i + k] = (unsigned char)(s->h[i] >> (24 - 8 * k));
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    sha256_t s;
    unsigned char d[32];
    sha256_init(&s);
    sha256_add(&s, data, len);
    sha256_end(&s, d);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned char k[64] = {0}, pad[64], inner[32];
    sha256_t s;
    if (klen > 64) {
        sha256_init(&s);
        sha256_add(&s, key, klen);
        sha256_end(&s, k);
    } else {
        memcpy(k, key, klen);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    sha256_init(&s);
    sha256_add(&s, pad, 64);
    sha256_add(&s, msg, strlen(msg));
    sha256_end(&s, inner);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    sha256_init(&s);
    sha256_add(&s, pad, 64);
    sha256_add(&s, inner, 32);
    sha256_end(&s, out);
}

/* ------------------------------------------------------------ the reference signer */

typedef struct hdr {
    char name[64];
    char value[2048];
} hdr_t;

static int hdr_cmp(const void *a, const void *b)
{
    int c = strcmp(((const hdr_t *)a)->name, ((const hdr_t *)b)->name);
    /* a stable order for duplicates: their values are joined as sent */
    return c ? c : (a < b ? -1 : 1);
}

/* "  a   b " -> "a b" */
static void trimall(const char *in, char *out, size_t len)
{
    size_t n = 0;
    for (; *in && n + 1 < len; in++) {
        if (isspace((unsigned char)*in)) {
            if (n && out[n - 1] != ' ')
                out[n++] = ' ';
        } else {
            out[n++] = *in;
        }
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* The signature of a request over `h` (every header given is signed). */
static void sign(const char *method, const char *path, hdr_t *h, size_t n, const char *body,
                 size_t body_len, const char *amz_date, const char *region, const char *service,
                 const char *secret, char signed_out[512], char sig_out[65])
{
    char creq[16384], sts[1024], payload[65], creq_hash[65], key[256], date[9], value[2048];
    unsigned char k1[32], k2[32];
    size_t used;
    for (size_t i = 0; i < n; i++)
        for (char *p = h[i].name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    qsort(h, n, sizeof *h, hdr_cmp);
    used = (size_t)snprintf(creq, sizeof creq, "%s\n%s\n\n", method, path);
    signed_out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        trimall(h[i].value, value, sizeof value);
        if (i && !strcmp(h[i].name, h[i - 1].name)) {
            used += (size_t)snprintf(creq + used - 1, sizeof creq - used + 1, ",%s\n", value) - 1;
            continue;
        }
        used += (size_t)snprintf(creq + used, sizeof creq - used, "%s:%s\n", h[i].name, value);
        if (signed_out[0])
            strcat(signed_out, ";");
        strcat(signed_out, h[i].name);
    }
    sha256_hex(body, body_len, payload);
    snprintf(creq + used, sizeof creq - used, "\n%s\n%s", signed_out, payload);
    sha256_hex(creq, strlen(creq), creq_hash);
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date,
             region, service, creq_hash);
    snprintf(key, sizeof key, "AWS4%s", secret);
    hmac(key, strlen(key), date, k1);
    hmac(k1, 32, region, k2);
    hmac(k2, 32, service, k1);
    hmac(k1, 32, "aws4_request", k2);
    hmac(k2, 32, sts, k1);
    for (int i = 0; i < 32; i++)
        sprintf(sig_out + 2 * i, "%02x", k1[i]);
}

/* ------------------------------------------------------------ 1. published vectors */

#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"
#define STS_TOKEN                                                                                 \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSP" \
    "fIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT" \
    "7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlz" \
    "m8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

static void vector(const char *method, hdr_t *extra, size_t nextra, const char *body,
                   const char *want_signed, const char *want_sig)
{
    hdr_t h[8] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DATE}};
    char signed_headers[512], sig[65];
    if (nextra)
        memcpy(h + 2, extra, nextra * sizeof *h);
    sign(method, "/", h, 2 + nextra, body, strlen(body), SUITE_DATE, "us-east-1", "service",
         SUITE_SECRET, signed_headers, sig);
    assert_string_equal(signed_headers, want_signed);
    assert_string_equal(sig, want_sig);
}

static void test_sha256_known_answers(void **state)
{
    char hex[65];
    (void)state;
    sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("Param1=value1", 13, hex);
    assert_string_equal(hex, "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
}

static void test_published_vectors(void **state)
{
    (void)state;
    vector("GET", NULL, 0, "", "host;x-amz-date", /* get-vanilla */
           "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    vector("POST", NULL, 0, "", "host;x-amz-date", /* post-vanilla */
           "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
    hdr_t form[] = {{"Content-Type", "application/x-www-form-urlencoded"}};
    vector("POST", form, 1, "Param1=value1", "content-type;host;x-amz-date",
           "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
    hdr_t trim[] = {{"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}};
    vector("GET", trim, 2, "", "host;my-header1;my-header2;x-amz-date", /* get-header-value-trim */
           "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
    hdr_t dup[] = {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}};
    vector("GET", dup, 3, "", "host;my-header1;x-amz-date", /* get-header-key-duplicate */
           "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");
    hdr_t sts[] = {{"X-Amz-Security-Token", STS_TOKEN}};
    vector("POST", sts, 1, "", "host;x-amz-date;x-amz-security-token", /* post-sts-header-before */
           "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
}

/* ------------------------------------------------------------ 2. libcurl, echoed */

/* A one-shot peer in a child process: answers the first request with the
 * request itself, byte for byte, as the body. */
static pid_t echo_peer(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4) ||
        getsockname(ls, (struct sockaddr *)&a, &alen))
        return -1;
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    if (pid != 0) {
        close(ls);
        return pid;
    }
    static char req[65536];
    size_t n = 0;
    long want = -1;
    int fd = accept(ls, NULL, NULL);
    while (fd >= 0 && n < sizeof req - 1) {
        ssize_t r = read(fd, req + n, sizeof req - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        req[n] = '\0';
        char *end = strstr(req, "\r\n\r\n");
        if (end && want < 0) {
            char *cl = strcasestr(req, "\r\nContent-Length:");
            want = (long)(end + 4 - req) + (cl && cl < end ? strtol(cl + 17, NULL, 10) : 0);
            if (strcasestr(req, "\r\nExpect: 100-continue"))
                (void)!write(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        if (want >= 0 && (long)n >= want)
            break;
    }
    char head[160];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      n);
    if (fd >= 0) {
        (void)!write(fd, head, (size_t)hl);
        (void)!write(fd, req, n);
        close(fd);
    }
    _exit(0);
}

static size_t collect(char *p, size_t size, size_t nmemb, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), n = size * nmemb;
    if (have + n >= 65536)
        return 0;
    memcpy(buf + have, p, n);
    buf[have + n] = '\0';
    return n;
}

/* Is `name` one of the ';'-separated `list` (case aside)? */
static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL)
        if (!strncasecmp(p, name, n) && (p[n] == ';' || !p[n]))
            return 1;
    return 0;
}

/* Recomputes the signature of an echoed request over the headers its
 * Authorization names, and compares. */
static void check_echo(char *req, const char *secret, const char *const *must_sign)
{
    hdr_t h[32];
    size_t n = 0;
    char method[16], path[256], date[32] = "", *auth = NULL, *body, *line;
    char signed_want[512], sig_want[65], signed_got[512], sig_got[65], *save = NULL;
    assert_int_equal(sscanf(req, "%15s %255s", method, path), 2);
    body = strstr(req, "\r\n\r\n");
    assert_non_null(body);
    *body = '\0';
    body += 4;
    for (line = strtok_r(strstr(req, "\r\n") + 2, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        char *colon = strchr(line, ':');
        assert_non_null(colon);
        *colon = '\0';
        if (!strcasecmp(line, "Authorization"))
            auth = colon + 1;
        else if (n < 32) {
            snprintf(h[n].name, sizeof h[n].name, "%s", line);
            snprintf(h[n].value, sizeof h[n].value, "%s", colon + 1);
            if (!strcasecmp(line, "X-Amz-Date"))
                snprintf(date, sizeof date, "%s", colon + 1 + strspn(colon + 1, " "));
            n++;
        }
    }
    assert_non_null(auth);
    assert_int_equal(strlen(date), 16);
    assert_int_equal(sscanf(auth, " AWS4-HMAC-SHA256 Credential=%*[^,], SignedHeaders=%511[^,], "
                                  "Signature=%64s",
                            signed_want, sig_want),
                     2);
    assert_non_null(strstr(auth, "Credential=AKTEST/"));
    assert_non_null(strstr(auth, "/us-east-1/elasticmapreduce/aws4_request,"));
    /* keep only the headers libcurl signed */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (in_list(signed_want, h[i].name))
            h[k++] = h[i];
    sign(method, path, h, k, body, strlen(body), date, "us-east-1", "elasticmapreduce", secret,
         signed_got, sig_got);
    assert_string_equal(signed_got, signed_want);
    assert_string_equal(sig_got, sig_want);
    for (; *must_sign; must_sign++)
        assert_true(in_list(signed_want, *must_sign));
}

static void curl_case(const char *body, const char *token)
{
    char *echo = calloc(1, 65536), tokhdr[256];
    int port = 0, status;
    pid_t pid = echo_peer(&port);
    char url[64];
    assert_true(pid > 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    CURL *c = curl_easy_init();
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.1");
    hl = curl_slist_append(hl, "X-Amz-Target: ElasticMapReduce.ListClusters");
    if (token) {
        snprintf(tokhdr, sizeof tokhdr, "X-Amz-Security-Token: %s", token);
        hl = curl_slist_append(hl, tokhdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:elasticmapreduce");
    curl_easy_setopt(c, CURLOPT_USERNAME, "AKTEST");
    curl_easy_setopt(c, CURLOPT_PASSWORD, "s3cr3t/with+odd=chars");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, echo);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    waitpid(pid, &status, 0);
    const char *must[] = {"content-type", "host", "x-amz-date", "x-amz-target",
                          token ? "x-amz-security-token" : NULL, NULL};
    check_echo(echo, "s3cr3t/with+odd=chars", must);
    free(echo);
}

static void test_libcurl_signs_an_emr_request(void **state)
{
    (void)state;
    curl_case("{\"ClusterStates\":[\"WAITING\"],\"CreatedAfter\":1700000000}", NULL);
}

static void test_libcurl_signs_the_session_token(void **state)
{
    (void)state;
    curl_case("{}", "FQoGZXIvYXdzEXAMPLE//token+with/odd=chars");
}

static void test_libcurl_signs_a_large_body(void **state)
{
    char *body = malloc(20001);
    (void)state;
    memset(body, 'x', 20000);
    memcpy(body, "{\"Name\":\"", 9);
    memcpy(body + 19998, "\"}", 2);
    body[20000] = '\0';
    curl_case(body, NULL);
    free(body);
}

/* ------------------------------------------------------------ 3. through bt_http */

typedef struct got {
    int n;
    bt_err_t err;
    long status;
    char *body;
} got_t;

static void on_done(bt_err_t err, const bt_http_response_t *res, void *arg)
{
    got_t *g = arg;
    g->n++;
    g->err = err;
    g->status = res ? res->status : 0;
    if (res && res->body)
        g->body = strndup(res->body, res->body_len);
}

static void test_transport_hands_the_body_to_the_signer(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bt_http_t *http = NULL;
    got_t g = {0};
    int port = 0, status;
    char url[64];
    (void)state;
    pid_t pid = echo_peer(&port);
    assert_true(pid > 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    assert_int_equal(bt_http_new(loop, &(bt_http_opts_t){0}, &http), BT_OK);
    const char *headers[] = {"Content-Type: application/x-amz-json-1.1",
                             "X-Amz-Target: ElasticMapReduce.RunJobFlow",
                             "X-Amz-Security-Token: tok/en+=", NULL};
    const char *body = "{\"Name\":\"nightly\",\"Tags\":[{\"Key\":\"baton:run-key\",\"Value\":"
                       "\"wf/r1/create/1\"}]}";
    bt_http_request_t req = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .body = body,
                             .body_len = strlen(body),
                             .aws_sigv4 = "aws:amz:us-east-1:elasticmapreduce",
                             .aws_access_key = "AKTEST",
                             .aws_secret_key = "s3cr3t/with+odd=chars",
                             .max_attempts = 1,
                             .aws_throttling = 1};
    assert_int_equal(bt_http_request(http, &req, on_done, &g), BT_OK);
    while (!g.n)
        ev_run(loop, EVRUN_ONCE);
    waitpid(pid, &status, 0);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.status, 200);
    assert_non_null(g.body);
    const char *must[] = {"content-type", "host", "x-amz-date", "x-amz-security-token",
                          "x-amz-target", NULL};
    check_echo(g.body, "s3cr3t/with+odd=chars", must);
    free(g.body);
    bt_http_free(http);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_answers),
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_libcurl_signs_an_emr_request),
        cmocka_unit_test(test_libcurl_signs_the_session_token),
        cmocka_unit_test(test_libcurl_signs_a_large_body),
        cmocka_unit_test(test_transport_hands_the_body_to_the_signer),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
