/*
 * outlast-exchange - a small order service that executes each order once
 * by its idempotency key and fences off stale epochs.  It is the outside
 * system of the effects example (examples/keeper): see README.md.
 *
 *   POST /orders      {"key", "agent", "epoch", "side", "qty", "price"}
 *                     201 the new order, 200 a duplicate of an executed
 *                     key ("duplicate": true), 409 a stale epoch, 400 bad
 *                     input, 503 the --fail-every refusal
 *   GET  /orders/KEY  200 the order, 404 no such order
 *   GET  /ledger      every order, as a JSON array
 *
 * Every answer is JSON; errors are {"error": "..."}.  The book (book.c)
 * is behind one mutex; libmicrohttpd runs a thread per connection so a
 * slow order (--delay-ms) does not hold up the others.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "book.h"

#define BODY_MAX (64u << 10)

struct exchange {
    pthread_mutex_t mu;
    struct book book;
    uint64_t delay_ms;
    uint64_t reply_delay_ms;
    uint64_t fail_every;
    uint64_t new_posts; /* new orders asked for, for --fail-every */
};

/* A request body being received. */
struct body {
    char *data;
    size_t len;
    int too_big;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    struct MHD_Response *r;
    enum MHD_Result rv;

    json_decref(j);
    if (s == NULL)
        return MHD_NO;
    r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    rv = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rv;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status,
                                   const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return reply(c, status, json_pack("{ss}", "error", msg));
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Answers an order the book already knows, under the lock: a stale
 * epoch (409, and a line in the rejects file) or an executed key (200,
 * the stored order).  Returns the answer, with *status set, or NULL
 * with *status 0 when the order is new.  A failed write is a 500.
 */
static json_t *known(struct exchange *x, const struct order *o,
                     unsigned *status)
{
    uint64_t seen = book_seen(&x->book, o->agent);
    const struct order *old;
    json_t *j;

    *status = 0;
    if (o->epoch < seen) {
        *status = 409;
        if (book_reject(&x->book, o, seen) != 0) {
            *status = 500;
            return json_pack("{ss}", "error", "cannot write the rejects file");
        }
        fprintf(stderr, "outlast-exchange: refused %s from %s: epoch %" PRIu64
                " < %" PRIu64 "\n", o->key, o->agent, o->epoch, seen);
        return json_pack("{ss, sI}", "error", "stale epoch", "seen",
                         (json_int_t)seen);
    }
    if ((old = book_find(&x->book, o->key)) == NULL)
        return NULL;
    if (book_see(&x->book, o->agent, o->epoch, 1) != 0) {
        *status = 500;
        return json_pack("{ss}", "error", "cannot write the epochs file");
    }
    *status = 200;
    fprintf(stderr, "outlast-exchange: order %" PRIu64 " again: %s from %s "
            "epoch %" PRIu64 " (a duplicate)\n", old->id, o->key, o->agent,
            o->epoch);
    j = order_json(old);
    if (j != NULL)
        json_object_set_new(j, "duplicate", json_true());
    return j;
}

/* Executes a valid order, or answers it as known (see known()). */
static enum MHD_Result execute(struct exchange *x, struct MHD_Connection *c,
                               struct order *o)
{
    unsigned status;
    uint64_t n;
    json_t *j;

    pthread_mutex_lock(&x->mu);
    j = known(x, o, &status);
    n = status == 0 ? ++x->new_posts : 0;
    pthread_mutex_unlock(&x->mu);
    if (status != 0)
        return reply(c, status, j);
    if (x->fail_every != 0 && n % x->fail_every == 0)
        return reply_error(c, 503, "unavailable (--fail-every %" PRIu64 ")",
                           x->fail_every);
    if (x->delay_ms != 0)
        sleep_ms(x->delay_ms);

    /* Another request may have executed the key while this one slept. */
    pthread_mutex_lock(&x->mu);
    j = known(x, o, &status);
    if (status == 0) {
        if (book_execute(&x->book, o) == 0) {
            status = 201;
            j = order_json(o);
            fprintf(stderr, "outlast-exchange: order %" PRIu64 ": %s %s %"
                    PRIu64 " @ %" PRIu64 " for %s epoch %" PRIu64 "\n",
                    o->id, o->key, o->side, o->qty, o->price, o->agent,
                    o->epoch);
        } else {
            status = 500;
            j = json_pack("{ss}", "error", "cannot write the ledger");
        }
    }
    pthread_mutex_unlock(&x->mu);
    /* Executed and in the ledger, but the client does not know yet. */
    if (status == 201 && x->reply_delay_ms != 0)
        sleep_ms(x->reply_delay_ms);
    return reply(c, status, j);
}

static enum MHD_Result post_order(struct exchange *x,
                                  struct MHD_Connection *c,
                                  const struct body *b)
{
    struct order o;
    json_error_t je;
    char err[200];
    json_t *j;
    int rv;

    if (b->too_big)
        return reply_error(c, 413, "body over %u bytes", BODY_MAX);
    j = json_loadb(b->data != NULL ? b->data : "", b->len, 0, &je);
    if (j == NULL)
        return reply_error(c, 400, "malformed JSON: %s", je.text);
    rv = order_parse(j, 0, &o, err, sizeof(err));
    json_decref(j);
    if (rv != 0)
        return reply_error(c, 400, "%s", err);
    return execute(x, c, &o);
}

static enum MHD_Result get_order(struct exchange *x, struct MHD_Connection *c,
                                 const char *key)
{
    const struct order *o;
    json_t *j = NULL;

    if (strlen(key) != BOOK_KEY_LEN)
        return reply_error(c, 400, "'key' must be %d lowercase hex digits",
                           BOOK_KEY_LEN);
    pthread_mutex_lock(&x->mu);
    if ((o = book_find(&x->book, key)) != NULL)
        j = order_json(o);
    pthread_mutex_unlock(&x->mu);
    if (o == NULL)
        return reply_error(c, 404, "no such order");
    return reply(c, 200, j);
}

static enum MHD_Result get_ledger(struct exchange *x, struct MHD_Connection *c)
{
    json_t *a = json_array();

    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; a != NULL && i < x->book.n; i++)
        if (json_array_append_new(a, order_json(&x->book.orders[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    pthread_mutex_unlock(&x->mu);
    return reply(c, 200, a);
}

/* Collects a POST body; true once it is whole. */
static int collect(struct body *b, const char *data, size_t *size)
{
    if (*size == 0)
        return 1;
    if (!b->too_big && b->len + *size <= BODY_MAX) {
        char *p = realloc(b->data, b->len + *size);
        if (p != NULL) {
            memcpy(p + b->len, data, *size);
            b->data = p;
            b->len += *size;
        } else {
            b->too_big = 1;
        }
    } else {
        b->too_big = 1;
    }
    *size = 0;
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    struct exchange *x = cls;
    int post = strcmp(method, "POST") == 0;
    int get = strcmp(method, "GET") == 0;

    if (post && *con_cls == NULL) {
        if ((*con_cls = calloc(1, sizeof(struct body))) == NULL)
            return MHD_NO;
        return MHD_YES;
    }
    if (post && !collect(*con_cls, data, size))
        return MHD_YES;
    if (strcmp(url, "/orders") == 0)
        return post ? post_order(x, c, *con_cls)
                    : reply_error(c, 405, "use POST /orders");
    if (strncmp(url, "/orders/", 8) == 0)
        return get ? get_order(x, c, url + 8)
                   : reply_error(c, 405, "use GET /orders/KEY");
    if (strcmp(url, "/ledger") == 0)
        return get ? get_ledger(x, c) : reply_error(c, 405, "use GET /ledger");
    return reply_error(c, 404, "no such path: %s", url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct body *b = *con_cls;

    if (b != NULL) {
        free(b->data);
        free(b);
        *con_cls = NULL;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: outlast-exchange --port N --ledger FILE "
            "[--delay-ms N] [--reply-delay-ms N] [--fail-every N]\n"
            "  --port N        listen on 127.0.0.1:N (0: pick a free port)\n"
            "  --ledger FILE   the order ledger (FILE.rejects and "
            "FILE.epochs beside it)\n"
            "  --delay-ms N    wait N ms before executing each new order\n"
            "  --reply-delay-ms N  wait N ms after executing a new order "
            "before answering\n"
            "  --fail-every N  answer every Nth new order with 503\n");
}

static int parse_num(const char *opt, const char *s, uint64_t max,
                     uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v > max) {
        fprintf(stderr, "outlast-exchange: %s wants an integer in 0..%" PRIu64
                ", not '%s'\n", opt, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct exchange *x,
                      uint64_t *port, const char **ledger)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"ledger", required_argument, NULL, 'l'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"fail-every", required_argument, NULL, 'f'},
        {"reply-delay-ms", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch, rv = 0;

    *port = UINT64_MAX;
    while (rv == 0 && (ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'p')
            rv = parse_num("--port", optarg, 65535, port);
        else if (ch == 'l')
            *ledger = optarg;
        else if (ch == 'd')
            rv = parse_num("--delay-ms", optarg, 600000, &x->delay_ms);
        else if (ch == 'f')
            rv = parse_num("--fail-every", optarg, UINT32_MAX, &x->fail_every);
        else if (ch == 'r')
            rv = parse_num("--reply-delay-ms", optarg, 600000,
                           &x->reply_delay_ms);
        else
            rv = -1;
    }
    if (rv == 0 && (*port == UINT64_MAX || *ledger == NULL || optind < argc)) {
        fprintf(stderr, "outlast-exchange: %s\n",
                optind < argc ? "unexpected arguments"
                              : "--port and --ledger are required");
        rv = -1;
    }
    if (rv != 0)
        usage();
    return rv;
}

int main(int argc, char **argv)
{
    struct exchange x = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    const char *ledger = NULL;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    uint64_t port;
    sigset_t stop;
    char err[512];
    int sig;

    if (parse_args(argc, argv, &x, &port, &ledger) != 0)
        return 2;
    if (book_open(&x.book, ledger, err, sizeof(err)) != 0) {
        fprintf(stderr, "outlast-exchange: %s\n", err);
        return 1;
    }
    /* Block the stop signals before MHD's threads exist: only sigwait()
     * below takes them. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
                         (uint16_t)port, NULL, NULL, on_request, &x,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    info = d != NULL ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (info == NULL) {
        fprintf(stderr, "outlast-exchange: cannot listen on 127.0.0.1:%" PRIu64
                "\n", port);
        book_close(&x.book);
        return 1;
    }
    fprintf(stderr, "outlast-exchange: %zu orders, %zu rejects loaded from "
            "%s\n", x.book.n, x.book.nrejects, ledger);
    printf("listening on 127.0.0.1:%u\n", (unsigned)info->port);
    fflush(stdout);

    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    book_close(&x.book);
    return 0;
}
