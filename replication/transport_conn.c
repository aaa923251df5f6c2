/*
 * One transport connection once it has a socket: its lifetime and
 * handles, writes, driving the handshake from bytes on the socket, and
 * cutting the stream into frames for the raft pump or the message channel
 * (dialling and accepting are in transport_dial.c).  Anything wrong with
 * the peer's bytes drops the connection with a rate-limited log line and
 * a counter; nothing here asserts on what a peer sent.  Every size read
 * from the socket is checked against the channel's cap before the buffer
 * grows to hold it.
 */
#include "transport_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

#define READ_CHUNK 65536
#define READ_MIN_FREE 4096
#define IN_KEEP_MAX (1u << 20) /* a larger idle input buffer is released */

static void handle_closed(uv_handle_t *h);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

void ol__conn_timeout_cb(uv_timer_t *h)
{
    struct ol__conn *c = h->data;

    if (c->state == OL_CONN_WAITING) {
        ol__rev_wait_cb(h);
        return;
    }
    if (c->state == OL_CONN_OPEN && c->req != NULL && !c->has_pipe) {
        ol__raft_spare_taken_cb(h);
        return;
    }
    c->t->stats.handshakes_failed++;
    ol_log_rl(OL_LOG_WARN,
              "transport: handshake %s '%s' (node %" PRIu64
              ") timed out after %u ms",
              c->client ? "to" : "from", c->address, c->peer_id,
              c->t->hs_timeout_ms);
    ol__conn_fail(c);
}

struct ol__conn *ol__conn_new(struct ol__transport *t, bool client,
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
    uv_timer_start(&c->timer, ol__conn_timeout_cb, t->hs_timeout_ms, 0);
    return c;
}

static void hs_uncount(struct ol__conn *c)
{
    if (c->hs_counted) {
        c->hs_counted = false;
        c->t->n_hs_pending--;
        if (c->outsider)
            c->t->n_hs_outsiders--;
    }
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
    if (c->rw_in) {
        t->stats.raft_commit_capped += c->rw_in->n.commit_capped;
        ol__rwire_close(c->rw_in);
        free(c->rw_in);
    }
    if (c->rw_out) {
        t->stats.raft_match_capped += c->rw_out->n.match_capped;
        ol__rwire_close(c->rw_out);
        free(c->rw_out);
    }
    free(c);
    ol__tr_maybe_closed(t);
}

void ol__conn_maybe_free(struct ol__conn *c)
{
    if (c->handles == 0 && !c->resolving)
        conn_free(c);
}

static void handle_closed(uv_handle_t *h)
{
    struct ol__conn *c = h->data;

    c->handles--;
    ol__conn_maybe_free(c);
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
    hs_uncount(c);
    if (c->mp != NULL)
        ol__msg_conn_lost(c, was_open);
    if (c->reverse && c->client)
        ol__rev_lost(c, was_open);
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

int ol__conn_write_copy(struct ol__conn *c, const uint8_t *p, size_t n)
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

/* Both sides: the handshake is spent; keep only the stream state. */
static int finish(struct ol__conn *c)
{
    int rv = ol__hs_finish(c->hs, &c->ss);

    if (rv != 0)
        return rv;
    ol__hs_destroy(c->hs);
    c->hs = NULL;
    return 0;
}

static int opened(struct ol__conn *c)
{
    struct ol__transport *t = c->t;

    uv_timer_stop(&c->timer);
    c->state = OL_CONN_OPEN;
    hs_uncount(c);
    t->stats.handshakes_ok++;
    ol__tpeer_learn(c);
    /* Proven to be a roster node's: its address is trusted from now on. */
    if (!c->client && c->ip[0])
        ol__tr_know_ip(t, c->ip);
    /* A peer keeps one connection per channel to us; a new one means the
     * old is dead on its side, so it goes rather than pile up. */
    if (!c->client) {
        for (struct ol__conn *o = t->conns; o != NULL; o = o->next) {
            if (o != c && !o->client && o->state == OL_CONN_OPEN &&
                o->peer_id == c->peer_id && o->channel == c->channel &&
                o->reverse == c->reverse) {
                ol_log(OL_LOG_DEBUG,
                       "transport: node %" PRIu64 " reconnected; dropping "
                       "its older connection", c->peer_id);
                ol__conn_fail(o);
            }
        }
    }
    ol_log(OL_LOG_DEBUG, "transport: %s channel %s node %" PRIu64 " open",
           c->channel == OL_CHAN_RAFT ? "raft" : "message",
           c->client ? "to" : "from", c->peer_id);
    if (c->reverse)
        return ol__rev_opened(c);
    /* A spare waits, open and pinged, for raft to ask for it. */
    if (c->channel == OL_CHAN_RAFT && c->spare)
        return 0;
    if (c->channel == OL_CHAN_RAFT)
        return ol__pump_open(c);
    ol__msg_open(c);
    /* The peer is reachable: have a raft connection ready to it now
     * rather than at the next round of pings. */
    ol__raft_spares(c->t);
    return 0;
}

static int hs_failed(struct ol__conn *c, int rv, const char *what)
{
    c->t->stats.handshakes_failed++;
    ol_log_rl(OL_LOG_WARN, "transport: handshake %s '%s' (node %" PRIu64
              "): %s: %s", c->client ? "to" : "from", c->address, c->peer_id,
              what, ol_strerror(rv));
    return rv;
}

/* A node that has not joined a cluster yet takes the id of the first
 * authenticated roster member it meets (its peers refuse any other). */
static void adopt_cluster_id(struct ol__conn *c)
{
    static const uint8_t zero[OL_CLUSTER_ID_SIZE];
    struct ol__transport *t = c->t;
    const uint8_t *id = ol__hs_peer_cluster_id(c->hs);

    if (sodium_memcmp(t->hs_self.cluster_id, zero, sizeof zero) != 0 ||
        sodium_memcmp(id, zero, sizeof zero) == 0)
        return;
    memcpy(t->hs_self.cluster_id, id, OL_CLUSTER_ID_SIZE);
    ol_log(OL_LOG_INFO, "transport: joined the cluster node %" PRIu64
                        " belongs to", c->peer_id);
    if (t->cluster_id_cb)
        t->cluster_id_cb(t->cluster_id_data, id);
}

/* Server: the client's hello (M1); answer with M2. */
static int server_hello(struct ol__conn *c, const uint8_t *p, size_t n)
{
    struct ol__transport *t = c->t;
    uint8_t m2[OL_HS_M2_MAX];
    int rv;

    rv = ol__hs_server_m1(c->hs, p, n, roster_lookup, t, m2);
    if (rv != 0)
        return hs_failed(c, rv, "refused hello (bad magic, another "
                                "cluster name or id, or an unknown "
                                "node)");
    c->peer_id = ol__hs_peer_id(c->hs);
    c->channel = ol__hs_channel(c->hs);
    c->ext = ol__hs_extended(c->hs);
    c->feat = ol__hs_features(c->hs);
    c->reverse = (c->feat & OL_HS_FEAT_REVERSE) != 0;
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
    return ol__conn_write_copy(c, m2, ol__hs_m2_len(c->hs));
}

/* One handshake message of exactly the size the current step wants. */
static int hs_step(struct ol__conn *c, const uint8_t *p, size_t n)
{
    struct ol__transport *t = c->t;
    uint8_t m3[OL_HS_M3_SIZE], m4[OL_HS_M4_SIZE];
    int rv;

    if (c->client && c->ss != NULL) {
        rv = ol__hs_accept_open(c->ss, p, n);
        if (rv != 0)
            return hs_failed(c, rv, "bad acceptance");
        return opened(c);
    }
    if (c->client) {
        c->got_m2 = true;
        rv = ol__hs_client_m2(c->hs, p, n, m3);
        if (rv == 0)
            c->feat = ol__hs_features(c->hs);
        if (rv == OL_EUNAUTH)
            return hs_failed(c, rv, "server belongs to another cluster "
                                    "(its cluster id differs: formed from "
                                    "another bootstrap roster)");
        if (rv != 0)
            return hs_failed(c, rv, "server did not authenticate");
        adopt_cluster_id(c);
        if ((rv = ol__conn_write_copy(c, m3, sizeof m3)) != 0)
            return rv;
        return finish(c); /* then wait for M4 */
    }
    if (c->peer_id == 0) {
        rv = server_hello(c, p, n);
        /* Refusing an "OLT3" hello, say so first: the dialler then knows
         * it met a node with features and not one from before them,
         * which closes without a word, and does not fall back. */
        if (rv != 0 && !t->legacy && n >= 4 &&
            memcmp(p, OL_HS_MAGIC_X, 4) == 0) {
            uv_buf_t b = uv_buf_init((char *)OL_HS_MAGIC_X, 4);

            (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
        return rv;
    }
    rv = ol__hs_server_m3(c->hs, p, n);
    if (rv != 0)
        return hs_failed(c, rv, "client did not authenticate");
    adopt_cluster_id(c);
    if ((rv = finish(c)) != 0 || (rv = ol__hs_accept_seal(c->ss, m4)) != 0 ||
        (rv = ol__conn_write_copy(c, m4, sizeof m4)) != 0)
        return rv;
    return opened(c);
}

/* How many bytes the current step wants; the server tells an "OLT3" M1
 * by its magic (a node acting as an old one reads the old size, so it
 * refuses "OLT3" as old nodes do). */
static size_t hs_need(const struct ol__conn *c, const uint8_t *p,
                      size_t avail)
{
    if (c->client)
        return c->ss == NULL ? ol__hs_m2_len(c->hs) : OL_HS_M4_SIZE;
    if (c->peer_id != 0)
        return OL_HS_M3_SIZE;
    return c->t->legacy ? OL_HS_M1_SIZE : ol__hs_m1_len_peek(p, avail);
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
            size_t need = hs_need(c, p, avail);

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
        max = ol__conn_plain_max(c);
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
        /* It logs and counts what it refuses. */
        rv = ol__conn_recv_frame(c, p + OL_FRAME_HDR, total - OL_FRAME_HDR,
                                 plain);
        if (rv != 0)
            ol__conn_fail(c);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ol__conn *c = h->data;
    bool open = c->state == OL_CONN_OPEN;

    /* in_want was checked against the channel's cap in process(), so the
     * buffer never grows past one capped frame plus one read.  Before the
     * peer is authenticated it reads in handshake-sized steps, so that
     * unauthenticated connections cost little memory. */
    if (c->in_cap - c->in_len < (open ? READ_MIN_FREE : 1) ||
        c->in_cap < c->in_want) {
        size_t cap = c->in_len + (open ? READ_CHUNK : OL_HS_MSG_MAX);
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
            struct ol__tpeer *tp;

            /* Closed before answering an "OLT3" hello: perhaps a node
             * from before features; the next dial tries "OLT2". */
            if (c->client && c->ext && !c->got_m2 &&
                c->in_len == c->in_pos &&
                (tp = ol__tpeer_get(c->t, c->peer_id)) != NULL)
                tp->try_plain = true;
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
