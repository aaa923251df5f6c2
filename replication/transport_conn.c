/*
 * One transport connection: dialling (numeric addresses directly, names
 * through uv_getaddrinfo), accepting, driving the handshake from bytes on
 * the socket, and cutting the stream into frames for the raft pump or the
 * message channel.  Anything wrong with the peer's bytes drops the
 * connection with a rate-limited log line and a counter; nothing here
 * asserts on what a peer sent.  Every size read from the socket is checked
 * against the channel's cap before the buffer grows to hold it.
 */
#include "transport_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/err.h"
#include "../runtime/log.h"

#define READ_CHUNK 65536
#define READ_MIN_FREE 4096
#define IN_KEEP_MAX (1u << 20) /* a larger idle input buffer is released */

static void handle_closed(uv_handle_t *h);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void timeout_cb(uv_timer_t *h)
{
    struct ol__conn *c = h->data;

    c->t->stats.handshakes_failed++;
    ol_log_rl(OL_LOG_WARN,
              "transport: handshake %s '%s' (node %" PRIu64
              ") timed out after %u ms",
              c->client ? "to" : "from", c->address, c->peer_id,
              c->t->hs_timeout_ms);
    ol__conn_fail(c);
}

static struct ol__conn *conn_new(struct ol__transport *t, bool client,
                                 uint8_t channel)
{
    struct ol__conn *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    if (uv_tcp_init(t->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    uv_timer_init(t->loop, &c->timer);
    c->t = t;
    c->client = client;
    c->channel = channel;
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    t->n_conns++;
    if (channel == OL_CHAN_RAFT) {
        c->raft_counted = true;
        t->n_raft_conns++;
    }
    /* The deadline covers resolving and connecting too. */
    uv_timer_start(&c->timer, timeout_cb, t->hs_timeout_ms, 0);
    return c;
}

static void conn_free(struct ol__conn *c)
{
    struct ol__transport *t = c->t;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    t->n_conns--;
    /* Like raft's own TCP transport, a connect request that never produced
     * a stream completes only once its handles are gone. */
    if (c->req != NULL) {
        struct raft_uv_connect *req = c->req;

        c->req = NULL;
        req->cb(req, NULL, c->req_status ? c->req_status : RAFT_NOCONNECTION);
    }
    if (c->raft_counted)
        t->n_raft_conns--;
    ol__hs_destroy(c->hs);
    ol__sstream_free(c->ss);
    free(c->in);
    free(c->pbuf);
    free(c);
    ol__tr_maybe_closed(t);
}

static void handle_closed(uv_handle_t *h)
{
    struct ol__conn *c = h->data;

    if (--c->handles == 0 && !c->resolving)
        conn_free(c);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, handle_closed);
}

void ol__conn_fail(struct ol__conn *c)
{
    bool was_open;

    if (c->state == OL_CONN_DEAD)
        return;
    was_open = c->state == OL_CONN_OPEN;
    c->state = OL_CONN_DEAD;
    if (c->mp != NULL)
        ol__msg_conn_lost(c, was_open);
    close_handle((uv_handle_t *)&c->tcp);
    close_handle((uv_handle_t *)&c->timer);
    if (c->has_pipe)
        close_handle((uv_handle_t *)&c->pipe);
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai);
}

struct ol__wreq *ol__wreq_new(struct ol__conn *c, size_t len)
{
    struct ol__wreq *w = malloc(sizeof *w + len);

    if (w == NULL)
        return NULL;
    w->c = c;
    w->len = len;
    w->req.data = w;
    return w;
}

static void write_cb(uv_write_t *req, int status)
{
    struct ol__wreq *w = req->data;
    struct ol__conn *c = w->c;
    bool to_pipe = w->to_pipe;

    free(w);
    if (status < 0) {
        if (status != UV_ECANCELED && c->state != OL_CONN_DEAD) {
            ol_log(OL_LOG_DEBUG, "transport: write to node %" PRIu64 ": %s",
                   c->peer_id, uv_strerror(status));
            ol__conn_fail(c);
        }
        return;
    }
    if (c->state == OL_CONN_OPEN && c->channel == OL_CHAN_RAFT)
        ol__pump_drained(c, to_pipe);
}

int ol__conn_write(struct ol__conn *c, struct ol__wreq *w, bool to_pipe)
{
    uv_stream_t *s = to_pipe ? (uv_stream_t *)&c->pipe
                             : (uv_stream_t *)&c->tcp;
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    int rv;

    w->to_pipe = to_pipe;
    if (c->state == OL_CONN_DEAD) {
        free(w);
        return OL_EIO;
    }
    rv = uv_write(&w->req, s, &b, 1, write_cb);
    if (rv != 0) {
        free(w);
        ol_log(OL_LOG_DEBUG, "transport: write to node %" PRIu64 ": %s",
               c->peer_id, uv_strerror(rv));
        ol__conn_fail(c);
        return OL_EIO;
    }
    return 0;
}

int ol__conn_send_frame(struct ol__conn *c, const void *p, size_t n)
{
    struct ol__wreq *w = ol__wreq_new(c, OL_FRAME_SIZE(n));

    if (w == NULL)
        return OL_ENOMEM;
    if (ol__frame_seal(c->ss, p, n, w->data) != 0) {
        free(w);
        return OL_ETOOBIG;
    }
    return ol__conn_write(c, w, false);
}

static int write_copy(struct ol__conn *c, const uint8_t *p, size_t n)
{
    struct ol__wreq *w = ol__wreq_new(c, n);

    if (w == NULL)
        return OL_ENOMEM;
    memcpy(w->data, p, n);
    return ol__conn_write(c, w, false);
}

int ol__conn_read_start(struct ol__conn *c)
{
    int rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);

    return rv == 0 ? 0 : OL_EIO;
}

static int roster_lookup(void *data, uint64_t id, uint8_t pk[OL_PK_SIZE])
{
    const struct ol__peer *p = ol__tr_peer(data, id);

    if (p == NULL)
        return OL_ENOTFOUND;
    memcpy(pk, p->pk, OL_PK_SIZE);
    return 0;
}

static int opened(struct ol__conn *c)
{
    struct ol__transport *t = c->t;
    int rv = ol__hs_finish(c->hs, &c->ss);

    if (rv != 0)
        return rv;
    ol__hs_destroy(c->hs);
    c->hs = NULL;
    uv_timer_stop(&c->timer);
    c->state = OL_CONN_OPEN;
    t->stats.handshakes_ok++;
    ol_log(OL_LOG_DEBUG, "transport: %s channel %s node %" PRIu64 " open",
           c->channel == OL_CHAN_RAFT ? "raft" : "message",
           c->client ? "to" : "from", c->peer_id);
    if (c->channel == OL_CHAN_RAFT)
        return ol__pump_open(c);
    ol__msg_open(c);
    return 0;
}

/* One handshake message of exactly the size the current step wants. */
static int hs_step(struct ol__conn *c, const uint8_t *p, size_t n)
{
    struct ol__transport *t = c->t;
    uint8_t m2[OL_HS_M2_SIZE], m3[OL_HS_M3_SIZE];
    int rv;

    if (c->client) {
        rv = ol__hs_client_m2(c->hs, p, n, m3);
        if (rv != 0) {
            t->stats.handshakes_failed++;
            ol_log_rl(OL_LOG_WARN,
                      "transport: node %" PRIu64 " at '%s' failed to "
                      "authenticate: %s",
                      c->peer_id, c->address, ol_strerror(rv));
            return rv;
        }
        rv = write_copy(c, m3, sizeof m3);
        return rv ? rv : opened(c);
    }
    if (c->peer_id == 0) {
        rv = ol__hs_server_m1(c->hs, p, n, roster_lookup, t, m2);
        if (rv != 0) {
            t->stats.handshakes_failed++;
            ol_log_rl(OL_LOG_WARN,
                      "transport: refused handshake from '%s': %s (bad "
                      "magic, another cluster or an unknown node)",
                      c->address, ol_strerror(rv));
            return rv;
        }
        c->peer_id = ol__hs_peer_id(c->hs);
        c->channel = ol__hs_channel(c->hs);
        memcpy(c->peer_pk, ol__hs_peer_pk(c->hs), OL_PK_SIZE);
        if (c->channel == OL_CHAN_RAFT) {
            /* Raft dials again; there is nothing to hand the stream to. */
            if (t->raft_accept_cb == NULL) {
                ol_log(OL_LOG_DEBUG,
                       "transport: raft connection from node %" PRIu64
                       " before raft listens",
                       c->peer_id);
                return OL_ESTATE;
            }
            c->raft_counted = true;
            t->n_raft_conns++;
        }
        return write_copy(c, m2, sizeof m2);
    }
    rv = ol__hs_server_m3(c->hs, p, n);
    if (rv != 0) {
        t->stats.handshakes_failed++;
        ol_log_rl(OL_LOG_WARN,
                  "transport: peer at '%s' claiming node %" PRIu64
                  " failed to authenticate: %s",
                  c->address, c->peer_id, ol_strerror(rv));
        return rv;
    }
    return opened(c);
}

static size_t hs_need(const struct ol__conn *c)
{
    if (c->client)
        return OL_HS_M2_SIZE;
    return c->peer_id == 0 ? OL_HS_M1_SIZE : OL_HS_M3_SIZE;
}

/* Consume whole handshake messages and frames from the input buffer. */
static void process(struct ol__conn *c)
{
    struct ol__transport *t = c->t;

    while (c->state == OL_CONN_HANDSHAKE || c->state == OL_CONN_OPEN) {
        const uint8_t *p = c->in + c->in_pos;
        size_t avail = c->in_len - c->in_pos;
        size_t max, plain, total;
        int rv;

        if (c->state == OL_CONN_HANDSHAKE) {
            size_t need = hs_need(c);

            if (avail < need)
                return;
            c->in_pos += need;
            if (hs_step(c, p, need) != 0)
                ol__conn_fail(c);
            continue;
        }
        c->in_want = OL_FRAME_HDR;
        if (avail < OL_FRAME_HDR)
            return;
        max = c->channel == OL_CHAN_RAFT ? OL_RAFT_FRAME_MAX
                                         : OL_TRANSPORT_MSG_MAX;
        rv = ol__frame_len(p, max, &plain);
        if (rv != 0) {
            t->stats.frames_rejected++;
            ol_log_rl(OL_LOG_WARN,
                      "transport: frame header from node %" PRIu64 ": %s",
                      c->peer_id, ol_strerror(rv));
            ol__conn_fail(c);
            return;
        }
        total = OL_FRAME_SIZE(plain);
        c->in_want = total;
        if (avail < total)
            return;
        c->in_pos += total;
        if (c->channel == OL_CHAN_RAFT)
            rv = ol__pump_from_net(c, p + OL_FRAME_HDR, total - OL_FRAME_HDR,
                                   plain);
        else
            rv = ol__msg_deliver(c, p + OL_FRAME_HDR, total - OL_FRAME_HDR,
                                 plain);
        if (rv == OL_EBADSIG || rv == OL_EMALFORMED) {
            t->stats.frames_rejected++;
            ol_log_rl(OL_LOG_WARN,
                      "transport: frame from node %" PRIu64 ": %s",
                      c->peer_id, ol_strerror(rv));
        }
        if (rv != 0)
            ol__conn_fail(c);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ol__conn *c = h->data;

    /* in_want was checked against the channel's cap in process(), so the
     * buffer never grows past one capped frame plus one read. */
    if (c->in_cap - c->in_len < READ_MIN_FREE || c->in_cap < c->in_want) {
        size_t cap = c->in_len + READ_CHUNK;
        uint8_t *p;

        if (cap < c->in_want)
            cap = c->in_want;
        p = realloc(c->in, cap);
        if (p == NULL) {
            buf->base = NULL;
            buf->len = 0; /* read_cb gets UV_ENOBUFS */
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    buf->base = (char *)c->in + c->in_len;
    buf->len = c->in_cap - c->in_len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct ol__conn *c = s->data;
    size_t left;

    if (n == 0)
        return;
    if (n < 0) {
        if (c->state == OL_CONN_HANDSHAKE) {
            c->t->stats.handshakes_failed++;
            ol_log_rl(OL_LOG_WARN,
                      "transport: '%s' closed the connection during the "
                      "handshake: %s",
                      c->address, uv_strerror((int)n));
        } else {
            ol_log(OL_LOG_DEBUG, "transport: connection with node %" PRIu64
                   " closed: %s", c->peer_id, uv_strerror((int)n));
        }
        ol__conn_fail(c);
        return;
    }
    c->in_len += (size_t)n;
    process(c);
    if (c->state == OL_CONN_DEAD)
        return;
    left = c->in_len - c->in_pos;
    if (c->in_pos > 0) {
        memmove(c->in, c->in + c->in_pos, left);
        c->in_len = left;
        c->in_pos = 0;
    }
    if (left == 0 && c->in_cap > IN_KEEP_MAX) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void peer_name(uv_tcp_t *tcp, char *out, size_t size)
{
    struct sockaddr_storage ss;
    char ip[64] = "?";
    int len = sizeof ss, port = 0;

    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            snprintf(out, size, "[%s]:%d", ip, port);
            return;
        }
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    snprintf(out, size, "%s:%d", ip, port);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Out of memory: take the connection off the listener's backlog anyway,
 * because libuv stops accepting until we do. */
static void reject(uv_stream_t *listener)
{
    uv_tcp_t *tmp = malloc(sizeof *tmp);

    if (tmp == NULL)
        return;
    uv_tcp_init(listener->loop, tmp);
    (void)uv_accept(listener, (uv_stream_t *)tmp);
    uv_close((uv_handle_t *)tmp, free_handle);
}

void ol__conn_accept(struct ol__transport *t, uv_stream_t *listener)
{
    struct ol__conn *c = conn_new(t, false, 0);

    if (c == NULL) {
        ol_log_rl(OL_LOG_WARN, "transport: accept: out of memory");
        reject(listener);
        return;
    }
    c->state = OL_CONN_HANDSHAKE;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        ol__conn_fail(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(&c->tcp, c->address, sizeof c->address);
    if (ol__hs_server_start(&t->hs_self, &c->hs) != 0 ||
        ol__conn_read_start(c) != 0)
        ol__conn_fail(c);
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct ol__conn *c = req->data;
    uint8_t m1[OL_HS_M1_SIZE];

    if (status == UV_ECANCELED || c->state == OL_CONN_DEAD)
        return;
    if (status < 0) {
        ol_log_rl(OL_LOG_INFO, "transport: connect to node %" PRIu64
                  " at '%s': %s", c->peer_id, c->address,
                  uv_strerror(status));
        ol__conn_fail(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = OL_CONN_HANDSHAKE;
    if (ol__hs_client_start(&c->t->hs_self, c->channel, c->peer_id,
                            c->peer_pk, &c->hs, m1) != 0 ||
        write_copy(c, m1, sizeof m1) != 0 || ol__conn_read_start(c) != 0)
        ol__conn_fail(c);
}

static int start_connect(struct ol__conn *c, const struct sockaddr *sa)
{
    c->creq.data = c;
    c->state = OL_CONN_CONNECTING;
    return uv_tcp_connect(&c->creq, &c->tcp, sa, connect_cb);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct ol__conn *c = req->data;
    int rv;

    c->resolving = false;
    if (c->state == OL_CONN_DEAD) {
        uv_freeaddrinfo(res);
        if (c->handles == 0)
            conn_free(c);
        return;
    }
    if (status < 0 || res == NULL) {
        ol_log_rl(OL_LOG_WARN, "transport: resolve '%s': %s", c->address,
                  uv_strerror(status ? status : UV_EAI_NONAME));
        uv_freeaddrinfo(res);
        ol__conn_fail(c);
        return;
    }
    rv = start_connect(c, res->ai_addr);
    uv_freeaddrinfo(res);
    if (rv != 0)
        ol__conn_fail(c);
}

struct ol__conn *ol__conn_dial(struct ol__transport *t, uint8_t channel,
                               uint64_t id, const uint8_t pk[OL_PK_SIZE],
                               const char *address)
{
    char host[OL_HOST_MAX], port[OL_PORT_MAX];
    struct sockaddr_storage ss;
    struct addrinfo hints;
    struct ol__conn *c;
    int rv;

    if (ol__addr_split(address, host, port) != 0) {
        ol_log_rl(OL_LOG_WARN, "transport: node %" PRIu64
                  " has a bad address '%s'", id, address);
        return NULL;
    }
    c = conn_new(t, true, channel);
    if (c == NULL)
        return NULL;
    c->peer_id = id;
    memcpy(c->peer_pk, pk, OL_PK_SIZE);
    snprintf(c->address, sizeof c->address, "%s", address);
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&ss) == 0) {
        rv = start_connect(c, (struct sockaddr *)&ss);
    } else {
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        c->gai.data = c;
        c->state = OL_CONN_RESOLVING;
        rv = uv_getaddrinfo(t->loop, &c->gai, gai_cb, host, port, &hints);
        if (rv == 0)
            c->resolving = true;
    }
    if (rv != 0) {
        ol_log_rl(OL_LOG_WARN, "transport: connect to '%s': %s", address,
                  uv_strerror(rv));
        ol__conn_fail(c);
        return NULL;
    }
    return c;
}
