/*
 * The HTTP endpoint: libmicrohttpd parses HTTP on its own threads (one per
 * connection, at most OL_HTTP_CONN_MAX); this file binds the socket,
 * checks tokens, routes and answers.  What it needs from the node comes
 * through http_loop.c.
 */
#include "http_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/json.h"
#include "base/log.h"
#include "node.h"
#include "obs.h"

#define TOKEN_MIN 16
#define TOKEN_MAX 4096

/* ---- responses ---- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code,
                             const char *type, void *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result rv;

    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    if (strncmp(type, "text/html", 9) == 0)
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'none'; script-src 'self'; "
                                "style-src 'self'; connect-src 'self'; "
                                "img-src 'self' data:; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'");
    if (code == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"outlast\"");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    rv = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rv;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code,
                                  const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code,
                                  const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MHD_NO;
    return reply(c, code, "text/plain; charset=utf-8", s, (size_t)n,
                 MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned code,
                                  json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    enum MHD_Result rv;

    json_decref(j);
    if (s == NULL)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "out of memory\n");
    /* json_dumps allocates with jansson's allocator: malloc. */
    rv = reply(c, code, "application/json", s, strlen(s),
               MHD_RESPMEM_MUST_FREE);
    return rv;
}

static enum MHD_Result reply_error_json(struct MHD_Connection *c,
                                        unsigned code, int err,
                                        const char *msg)
{
    json_t *j = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg, "code",
                          ol_err_name(err));

    return reply_json(c, code, j);
}

static enum MHD_Result unavailable(struct MHD_Connection *c)
{
    return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                      "the node did not answer within %d ms (busy or "
                      "shutting down)\n",
                      OL_HTTP_WAIT_MS);
}

/* ---- routes ---- */

/* /metrics (Prometheus text) or /api/status (JSON), from the latest
 * observation. */
static enum MHD_Result route_snapshot(struct ol__http *h,
                                      struct MHD_Connection *c, int metrics)
{
    size_t len = 0;
    char *body = ol__http_snapshot(h, metrics, &len);

    if (body == NULL)
        return unavailable(c);
    return reply(c, MHD_HTTP_OK,
                 metrics ? "text/plain; version=0.0.4; charset=utf-8"
                         : "application/json",
                 body, len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result route_healthz(struct ol__http *h,
                                     struct MHD_Connection *c)
{
    struct job *j = calloc(1, sizeof *j);
    int ok;

    if (j == NULL)
        return unavailable(c);
    j->kind = JOB_OBS;
    ok = ol__http_job_run(h, j);
    ol__http_job_release(h, j);
    if (!ok)
        return unavailable(c);
    return reply_text(c, MHD_HTTP_OK, "ok\n");
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL)
        return 0;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static unsigned http_code(int err)
{
    switch (err) {
    case OL_ENOTFOUND:
        return MHD_HTTP_NOT_FOUND;
    case OL_EINVAL:
        return MHD_HTTP_BAD_REQUEST;
    case OL_ETIMEOUT:
        return MHD_HTTP_GATEWAY_TIMEOUT;
    case OL_ESTATE:
        return MHD_HTTP_CONFLICT;
    case OL_ESHUTDOWN:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    }
    return MHD_HTTP_BAD_GATEWAY;
}

static enum MHD_Result route_logs(struct ol__http *h,
                                  struct MHD_Connection *c)
{
    const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                   "agent");
    uint64_t after = 0, limit = 200;
    struct job *j;
    enum MHD_Result rv;
    char err[OL_ERRMSG_SIZE];
    json_t *out = NULL;

    if (name == NULL || strlen(name) > OL_NAME_MAX || !ol__name_valid(name))
        return reply_error_json(c, MHD_HTTP_BAD_REQUEST, OL_EINVAL,
                                "logs: give ?agent=NAME (1-64 of A-Z a-z "
                                "0-9 . _ -)");
    if (parse_u64(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                              "after"),
                  UINT64_MAX, &after) != 0 ||
        parse_u64(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                              "limit"),
                  1000, &limit) != 0 ||
        limit == 0)
        return reply_error_json(c, MHD_HTTP_BAD_REQUEST, OL_EINVAL,
                                "logs: 'after' must be a whole number and "
                                "'limit' one from 1 to 1000");
    j = calloc(1, sizeof *j);
    if (j == NULL)
        return unavailable(c);
    j->kind = JOB_LOGS;
    snprintf(j->name, sizeof j->name, "%s", name);
    j->after = after;
    j->limit = (uint32_t)limit;
    if (!ol__http_job_run(h, j)) {
        ol__http_job_release(h, j);
        return unavailable(c);
    }
    if (j->status != 0)
        rv = reply_error_json(c, http_code(j->status), j->status, j->errmsg);
    else if (ol__json_from_msgpack(j->mp, j->mp_len, &out, err) != 0)
        rv = reply_error_json(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                              OL_EMALFORMED, err);
    else
        rv = reply_json(c, MHD_HTTP_OK, out);
    ol__http_job_release(h, j);
    return rv;
}

static int authorized(struct ol__http *h, struct MHD_Connection *c)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    uint8_t got[crypto_generichash_BYTES];

    if (!h->has_token)
        return 1;
    if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0)
        return 0;
    v += 7;
    while (*v == ' ')
        v++;
    /* Compare digests: equal length, constant time. */
    crypto_generichash(got, sizeof got, (const unsigned char *)v, strlen(v),
                       NULL, 0);
    return sodium_memcmp(got, h->token_hash, sizeof got) == 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
                               const char *url, const char *method,
                               const char *version, const char *upload,
                               size_t *upload_len, void **con_cls)
{
    struct ol__http *h = cls;

    (void)version;
    (void)upload;
    h->requests++;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        /* Answer at once; MHD discards any body. */
        *upload_len = 0;
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                          "read-only: use GET\n");
    }
    (void)con_cls;
    for (size_t i = 0; i < ol__n_assets; i++)
        if (strcmp(url, ol__assets[i].path) == 0)
            return reply(c, MHD_HTTP_OK, ol__assets[i].type,
                         (void *)ol__assets[i].data, ol__assets[i].len,
                         MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/healthz") == 0)
        return route_healthz(h, c);
    if (strcmp(url, "/metrics") != 0 && strncmp(url, "/api/", 5) != 0)
        return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: %.100s\n", url);
    if (!authorized(h, c))
        return reply_text(c, MHD_HTTP_UNAUTHORIZED,
                          "this endpoint needs 'Authorization: Bearer "
                          "TOKEN' (the token in [http] token_file)\n");
    if (strcmp(url, "/metrics") == 0)
        return route_snapshot(h, c, 1);
    if (strcmp(url, "/api/status") == 0)
        return route_snapshot(h, c, 0);
    if (strcmp(url, "/api/logs") == 0)
        return route_logs(h, c);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: %.100s\n", url);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[300];

    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    ol_log_rl(OL_LOG_WARN, "http: %s", line);
}

/* ---- setup ---- */

static int load_token(struct ol__http *h, const char *path, char *errmsg)
{
    char buf[TOKEN_MAX + 1], *s, *e;
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        ol__errf(errmsg, "[http] token_file '%s': %s", path, strerror(errno));
        return OL_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        ol__errf(errmsg, "[http] token_file '%s' is not a regular file",
                 path);
        return OL_EUNAUTH;
    }
    if (st.st_mode & 077) {
        close(fd);
        ol__errf(errmsg,
                 "[http] token_file '%s' has mode %04o: others can read the "
                 "token; chmod 600 it",
                 path, (unsigned)(st.st_mode & 07777));
        return OL_EUNAUTH;
    }
    n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0 || n > TOKEN_MAX) {
        ol__errf(errmsg, "[http] token_file '%s': %s", path,
                 n < 0 ? strerror(errno) : "longer than 4096 bytes");
        return OL_EUNAUTH;
    }
    buf[n] = '\0';
    for (s = buf; *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'; s++)
        ;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
                     e[-1] == '\r'))
        *--e = '\0';
    if (strlen(s) < TOKEN_MIN || strpbrk(s, " \t\r\n")) {
        sodium_memzero(buf, sizeof buf);
        ol__errf(errmsg,
                 "[http] token_file '%s' must hold one token of at least %d "
                 "characters with no spaces (e.g. from `head -c 32 "
                 "/dev/urandom | base64`)",
                 path, TOKEN_MIN);
        return OL_EUNAUTH;
    }
    crypto_generichash(h->token_hash, sizeof h->token_hash,
                       (const unsigned char *)s, strlen(s), NULL, 0);
    sodium_memzero(buf, sizeof buf);
    h->has_token = 1;
    return 0;
}

static int bind_listen(const char *where, char *bound, size_t cap,
                       char *errmsg)
{
    char host[OL_ADDR_MAX], port[8];
    const char *colon = strrchr(where, ':');
    struct addrinfo hints, *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    size_t hn;
    int fd, one = 1, rc;

    if (colon == NULL || strlen(colon + 1) >= sizeof port ||
        (size_t)(colon - where) >= sizeof host) {
        ol__errf(errmsg, "[http] listen '%s' is not host:port", where);
        return -1;
    }
    hn = (size_t)(colon - where);
    if (where[0] == '[' && hn >= 2 && where[hn - 1] == ']') {
        memcpy(host, where + 1, hn - 2);
        host[hn - 2] = '\0';
    } else {
        memcpy(host, where, hn);
        host[hn] = '\0';
    }
    snprintf(port, sizeof port, "%s", colon + 1);
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        ol__errf(errmsg, "[http] listen '%s': %s", where, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
        listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        ol__errf(errmsg, "[http] listen '%s': %s", where, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    if (ss.ss_family == AF_INET6) {
        char a[INET6_ADDRSTRLEN];
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;

        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof a);
        snprintf(bound, cap, "[%s]:%u", a, ntohs(s6->sin6_port));
    } else {
        char a[INET_ADDRSTRLEN];
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;

        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof a);
        snprintf(bound, cap, "%s:%u", a, ntohs(s4->sin_port));
    }
    return fd;
}

static void async_closed(uv_handle_t *hd);

static void free_http(struct ol__http *h)
{
    free(h->snap.metrics);
    free(h->snap.status);
    if (h->db)
        sqlite3_close(h->db);
    pthread_mutex_destroy(&h->db_mu);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    sodium_memzero(h->token_hash, sizeof h->token_hash);
    free(h);
}

int ol__http_start(uv_loop_t *loop, struct ol__node *node,
                   const struct ol__http_config *cfg, struct ol__http **out,
                   char *errmsg)
{
    struct ol__http *h = calloc(1, sizeof *h);
    int fd, rv;

    *out = NULL;
    if (h == NULL)
        return OL_ENOMEM;
    h->loop = loop;
    h->node = node;
    snprintf(h->db_path, sizeof h->db_path, "%s", cfg->db_path);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->db_mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (cfg->token_file && cfg->token_file[0]) {
        rv = load_token(h, cfg->token_file, errmsg);
        if (rv != 0) {
            free_http(h);
            return rv;
        }
    }
    fd = bind_listen(cfg->listen, h->addr, sizeof h->addr, errmsg);
    if (fd < 0) {
        free_http(h);
        return OL_EIO;
    }
    if (uv_async_init(loop, &h->async, ol__http_async_cb) != 0) {
        close(fd);
        free_http(h);
        return OL_ENOMEM;
    }
    h->async.data = h;
    h->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, handler, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        NULL, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)OL_HTTP_CONN_MAX,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)OL_HTTP_PER_IP_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, 15u, MHD_OPTION_END);
    if (h->mhd == NULL) {
        ol__errf(errmsg, "[http] listen '%s': libmicrohttpd did not start",
                 cfg->listen);
        close(fd);
        /* Freed in the handle's close callback, when the loop runs. */
        uv_close((uv_handle_t *)&h->async, async_closed);
        return OL_EIO;
    }
    ol_log(OL_LOG_INFO, "http: serving /metrics and the status page on "
                        "http://%s/%s",
           h->addr, h->has_token ? " (token required for data)" : "");
    *out = h;
    return 0;
}

void ol__http_address(const struct ol__http *h, char *out, size_t cap)
{
    snprintf(out, cap, "%s", h ? h->addr : "");
}

void ol__http_counters(const struct ol__http *h, uint64_t *requests,
                       uint64_t *jobs, uint64_t *loop_us)
{
    *requests = h ? h->requests : 0;
    *jobs = h ? h->jobs : 0;
    *loop_us = h ? h->loop_us : 0;
}

static void async_closed(uv_handle_t *hd)
{
    struct ol__http *h = hd->data;
    void (*cb)(void *) = h->close_cb;
    void *data = h->close_data;

    free_http(h);
    if (cb)
        cb(data);
}

void ol__http_close(struct ol__http *h, void (*cb)(void *data), void *data)
{
    struct job *list, *next;

    if (h == NULL) {
        if (cb)
            cb(data);
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->closing = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    /* Joins every request thread; waiting ones have just been woken. */
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    pthread_mutex_lock(&h->mu);
    list = h->queue;
    h->queue = NULL;
    pthread_mutex_unlock(&h->mu);
    for (; list; list = next) {
        next = list->next;
        ol__http_job_finish(list);
    }
    h->close_cb = cb;
    h->close_data = data;
    uv_close((uv_handle_t *)&h->async, async_closed);
}
