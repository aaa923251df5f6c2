/*
 * The raft side of the transport: a struct raft_uv_transport whose
 * connections raft sees as plain streams.  Each authenticated raft-channel
 * connection gets an AF_UNIX socketpair; raft owns one end (a uv_pipe_t
 * from raft_malloc, which raft closes and frees), and a pump in the same
 * loop moves bytes between our end and TCP, sealing and opening frames.
 *
 * The pump applies backpressure in both directions: when the side it
 * writes to has more than pump_high bytes queued, it stops reading the
 * side those bytes come from, and starts again once the queue has drained
 * below a quarter of that.  Memory per connection is then bounded by the
 * threshold plus one read, however fast the other side produces.
 */
#include "transport_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"

static void raft_handle_free(uv_handle_t *h)
{
    raft_free(h);
}

void ol__pump_note_queue(struct ol__transport *t, size_t queued)
{
    if (queued > t->stats.pump_queue_peak)
        t->stats.pump_queue_peak = queued;
}

static void pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ol__conn *c = h->data;

    buf->base = (char *)c->pbuf;
    buf->len = OL_RAFT_FRAME_MAX;
}

/* What the wire parser passes on collects in the transport's scratch
 * buffer (one loop thread, one pump call at a time). */
static int collect(void *ctx, const uint8_t *p, size_t n)
{
    return ol__buf_append(ctx, p, n);
}

/* Plaintext from raft: corrected where libraft 0.15 reports too much
 * (raftwire.h), sealed in frames and sent on. */
static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct ol__conn *c = s->data;
    struct ol__transport *t = c->t;
    struct ol__buf *out = &t->rw_scratch;
    size_t queued, chunk;

    if (n == 0)
        return;
    if (n < 0) {
        /* Raft closed its end, or the pair broke. */
        ol__conn_fail(c);
        return;
    }
    if (c->state != OL_CONN_OPEN)
        return;
    ol__buf_reset(out);
    /* Our own libraft's messages are parsed only to correct its answers;
     * with nothing to correct they go out as they are. */
    if (t->raft_hooks.result_cap == NULL) {
        if (ol__buf_append(out, c->pbuf, (size_t)n) != 0) {
            ol__conn_fail(c);
            return;
        }
    } else if (ol__rwire_feed(c->rw_out, c->pbuf, (size_t)n, collect,
                              out) != 0) {
        ol_log_rl(OL_LOG_ERROR, "transport: raft message to node %" PRIu64
                                " cannot be parsed: %s",
                  c->peer_id, c->rw_out->errmsg);
        ol__conn_fail(c);
        return;
    }
    /* Typed frames spend a few bytes of the frame on their header. */
    chunk = OL_RAFT_FRAME_MAX -
            ((c->feat & OL_HS_FEAT_FRAMES) ? OL_WF_HDR_MAX : 0);
    for (size_t off = 0; off < out->len;) {
        size_t k = out->len - off;

        if (k > chunk)
            k = chunk;
        if (ol__conn_send_frame(c, out->base + off, k) != 0) {
            ol__conn_fail(c);
            return;
        }
        off += k;
    }
    queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    ol__pump_note_queue(t, queued);
    if (queued > t->pump_high && !c->pipe_paused) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->pipe_paused = true;
        t->stats.pump_pauses++;
    }
}

int ol__pump_from_net(struct ol__conn *c, const uint8_t *p, size_t n)
{
    struct ol__transport *t = c->t;
    struct ol__buf *out = &t->rw_scratch;
    struct ol__wreq *w;
    size_t queued;
    int rv;

    if (!c->has_pipe)
        return OL_ESTATE; /* raft data on an unused reverse connection */
    /* Nothing reaches libraft before it is checked. */
    ol__buf_reset(out);
    rv = ol__rwire_feed(c->rw_in, p, n, collect, out);
    if (rv != 0) {
        t->stats.raft_refused++;
        ol_log_rl(OL_LOG_WARN, "transport: raft message from node %" PRIu64
                               " refused: %s; connection closed",
                  c->peer_id, c->rw_in->errmsg);
        return rv == OL_ENOMEM ? rv : OL_EMALFORMED;
    }
    if (out->len == 0)
        return 0;
    w = ol__wreq_new(c, out->len);
    if (w == NULL)
        return OL_ENOMEM;
    memcpy(w->data, out->base, out->len);
    rv = ol__conn_write(c, w, true);
    if (rv != 0)
        return rv;
    queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
    ol__pump_note_queue(t, queued);
    if (queued > t->pump_high && !c->tcp_paused) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->tcp_paused = true;
        t->stats.pump_pauses++;
    }
    return 0;
}

void ol__pump_drained(struct ol__conn *c, bool pipe_side)
{
    struct ol__transport *t = c->t;

    if (pipe_side && c->tcp_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <=
            t->pump_low) {
        c->tcp_paused = false;
        if (ol__conn_read_start(c) != 0)
            ol__conn_fail(c);
    } else if (!pipe_side && c->pipe_paused &&
               uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <=
                   t->pump_low) {
        c->pipe_paused = false;
        if (uv_read_start((uv_stream_t *)&c->pipe, pipe_alloc, pipe_read) != 0)
            ol__conn_fail(c);
    }
}

/* Make the socketpair and hand raft its end. */
int ol__pump_open(struct ol__conn *c)
{
    struct ol__transport *t = c->t;
    uv_pipe_t *theirs;
    int fds[2];

    c->pbuf = malloc(2 * (size_t)OL_RAFT_FRAME_MAX);
    c->rw_in = malloc(sizeof *c->rw_in);
    c->rw_out = malloc(sizeof *c->rw_out);
    if (c->pbuf == NULL || c->rw_in == NULL || c->rw_out == NULL)
        return OL_ENOMEM;
    c->pbuf_in = c->pbuf + OL_RAFT_FRAME_MAX;
    ol__rwire_init(c->rw_in, OL_RW_IN, &t->raft_hooks);
    ol__rwire_init(c->rw_out, OL_RW_OUT, &t->raft_hooks);
    c->rw_in->peer = c->peer_id;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        ol_log_rl(OL_LOG_WARN, "transport: socketpair: %s",
                  uv_strerror(uv_translate_sys_error(errno)));
        return OL_EIO;
    }
    theirs = raft_malloc(sizeof *theirs);
    if (theirs == NULL) {
        close(fds[0]);
        close(fds[1]);
        return OL_ENOMEM;
    }
    uv_pipe_init(t->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->has_pipe = true;
    c->handles++;
    uv_pipe_init(t->loop, theirs, 0);
    if (uv_pipe_open(&c->pipe, fds[1]) != 0) {
        close(fds[1]);
        close(fds[0]);
        uv_close((uv_handle_t *)theirs, raft_handle_free);
        return OL_EIO;
    }
    if (uv_pipe_open(theirs, fds[0]) != 0) {
        close(fds[0]);
        uv_close((uv_handle_t *)theirs, raft_handle_free);
        return OL_EIO;
    }
    if (uv_read_start((uv_stream_t *)&c->pipe, pipe_alloc, pipe_read) != 0) {
        uv_close((uv_handle_t *)theirs, raft_handle_free);
        return OL_EIO;
    }
    if (ol__conn_ours(c)) {
        struct raft_uv_connect *req = c->req;

        if (req == NULL) {
            uv_close((uv_handle_t *)theirs, raft_handle_free);
            return OL_ESTATE;
        }
        c->req = NULL;
        req->cb(req, (uv_stream_t *)theirs, 0);
    } else if (t->raft_accept_cb != NULL) {
        const struct ol__peer *p = ol__tr_peer(t, c->peer_id);

        /* The id is the one the handshake proved, never one the peer
         * merely claimed. */
        t->raft_accept_cb(&t->raft, c->peer_id, p ? p->address : c->address,
                          (uv_stream_t *)theirs);
    } else {
        uv_close((uv_handle_t *)theirs, raft_handle_free);
        return OL_ESTATE;
    }
    return 0;
}

static int tr_init(struct raft_uv_transport *rt, raft_id id,
                   const char *address)
{
    struct ol__transport *t = rt->impl;

    if (id != t->self_id) {
        snprintf(rt->errmsg, sizeof rt->errmsg,
                 "transport: raft id %llu is not node id %" PRIu64, id,
                 t->self_id);
        return RAFT_INVALID;
    }
    if (t->listen_addr[0] == '\0' && address != NULL)
        snprintf(t->listen_addr, sizeof t->listen_addr, "%s", address);
    return 0;
}

static int tr_listen(struct raft_uv_transport *rt, raft_uv_accept_cb cb)
{
    struct ol__transport *t = rt->impl;
    char errmsg[OL_ERRMSG_SIZE];

    if (ol__transport_listen(t, errmsg) != 0) {
        snprintf(rt->errmsg, sizeof rt->errmsg, "%s", errmsg);
        return RAFT_IOERR;
    }
    t->raft_accept_cb = cb;
    return 0;
}

/* ---- spare raft connections ----
 *
 * raft_uv dials a peer only when it first has something to send it, and
 * followers send each other nothing while a leader holds.  So the first
 * RequestVote of an election would wait for a TCP connection and an
 * encrypted handshake: two or three round trips, which over a WAN is most
 * of an election.  Each node therefore keeps one raft connection ready to
 * every peer it can reach (its message connection is open) and raft has
 * none to; raft's next connect to that peer takes it at once.  A spare
 * is a client connection like any other, pinged with the rest; the peer
 * hands it to its raft as an accepted stream that carries nothing yet.
 * Only when no raft connection to the peer exists: the peer drops an
 * older connection of the same channel when a new one arrives. */

/* A spare to `id`, open or still in its handshake. */
static struct ol__conn *spare_of(struct ol__transport *t, uint64_t id)
{
    for (struct ol__conn *c = t->conns; c != NULL; c = c->next)
        if (c->spare && c->peer_id == id && c->state != OL_CONN_DEAD &&
            c->req == NULL && !c->has_pipe)
            return c;
    return NULL;
}

static bool raft_conn_to(const struct ol__transport *t, uint64_t id)
{
    for (const struct ol__conn *c = t->conns; c != NULL; c = c->next)
        if (c->client && !c->reverse && c->channel == OL_CHAN_RAFT &&
            c->peer_id == id && c->state != OL_CONN_DEAD)
            return true;
    return false;
}

static bool msg_open_to(const struct ol__transport *t, uint64_t id)
{
    for (const struct ol__conn *c = t->conns; c != NULL; c = c->next)
        if (c->channel == OL_CHAN_MSG && c->peer_id == id &&
            c->state == OL_CONN_OPEN)
            return true;
    return false;
}

void ol__raft_spares(struct ol__transport *t)
{
    if (t->raft_accept_cb == NULL || t->closing || t->raft_closing)
        return;
    for (size_t i = 0; i < t->n_roster; i++) {
        const struct ol__peer *p = &t->roster[i];
        struct ol__tpeer *tp = ol__tpeer_get(t, p->id);
        struct ol__conn *c;

        if (p->id == t->self_id || (tp != NULL && tp->dial_only) ||
            (tp != NULL && tp->s.legacy) || !msg_open_to(t, p->id) ||
            raft_conn_to(t, p->id))
            continue;
        c = ol__conn_dial(t, OL_CHAN_RAFT, p->id, p->pk, p->address);
        if (c != NULL) {
            c->spare = true;
            t->stats.raft_spares++;
            ol_log(OL_LOG_DEBUG, "transport: dialling a spare raft "
                                 "connection to node %" PRIu64, p->id);
        }
    }
}

void ol__raft_spare_taken_cb(uv_timer_t *h)
{
    struct ol__conn *c = h->data;

    if (ol__pump_open(c) != 0)
        ol__conn_fail(c); /* raft's request fails once c is freed */
}

static int tr_connect(struct raft_uv_transport *rt,
                      struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    struct ol__transport *t = rt->impl;
    const struct ol__peer *p;
    struct ol__tpeer *tp;
    struct ol__conn *c;

    if (t->closing || t->raft_closing)
        return RAFT_NOCONNECTION;
    p = ol__tr_peer(t, id);
    if (p == NULL) {
        ol_log_rl(OL_LOG_WARN,
                  "transport: raft wants node %llu, which is not in the "
                  "roster", id);
        return RAFT_NOCONNECTION;
    }
    req->cb = cb;
    /* A peer that cannot be dialled: take its reverse connection. */
    tp = ol__tpeer_get(t, id);
    if (tp != NULL && tp->dial_only)
        return ol__rev_connect(t, req, id);
    if ((c = spare_of(t, id)) != NULL) {
        /* Still in its handshake, it completes as any dial does; open,
         * its stream goes to raft from the timer, never inside raft's own
         * call to connect. */
        c->spare = false;
        c->req = req;
        c->req_status = RAFT_NOCONNECTION;
        t->stats.raft_spares_taken++;
        ol_log(OL_LOG_DEBUG, "transport: raft takes the spare connection "
                             "to node %llu (%s)",
               id, c->state == OL_CONN_OPEN ? "open" : "in its handshake");
        if (c->state == OL_CONN_OPEN)
            uv_timer_start(&c->timer, ol__conn_timeout_cb, 0, 0);
        return 0;
    }
    c = ol__conn_dial(t, OL_CHAN_RAFT, id, p->pk, address);
    if (c == NULL)
        return RAFT_NOCONNECTION;
    c->req = req;
    c->req_status = RAFT_NOCONNECTION;
    return 0;
}

static void tr_close(struct raft_uv_transport *rt,
                     raft_uv_transport_close_cb cb)
{
    struct ol__transport *t = rt->impl;

    t->raft_closing = true;
    t->raft_accept_cb = NULL;
    t->raft_close_cb = cb;
    /* Pending connects complete with RAFT_CANCELED once their handles are
     * closed; the close callback waits for all of them. */
    for (struct ol__conn *c = t->conns; c != NULL; c = c->next) {
        if (c->raft_counted) {
            c->req_status = RAFT_CANCELED;
            ol__conn_fail(c);
        }
    }
    ol__tr_maybe_closed(t);
}

void ol__raft_setup(struct ol__transport *t)
{
    memset(&t->raft, 0, sizeof t->raft);
#ifdef RAFT_VERSION_NUMBER
    /* raft >= 0.17 versions the struct; 0.15 has no such field. */
    t->raft.version = 1;
#endif
    t->raft.impl = t;
    t->raft.init = tr_init;
    t->raft.listen = tr_listen;
    t->raft.connect = tr_connect;
    t->raft.close = tr_close;
}

struct raft_uv_transport *ol__transport_raft(struct ol__transport *t)
{
    return &t->raft;
}

int ol__transport_raft_inject(struct ol__transport *t, uint64_t from,
                              const void *msg, size_t len)
{
    const struct ol__peer *p = ol__tr_peer(t, from);
    uv_pipe_t *theirs;
    int fds[2];

    if (p == NULL)
        return OL_ENOTFOUND;
    if (t->raft_accept_cb == NULL || t->closing || t->raft_closing)
        return OL_ESTATE;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return OL_EIO;
    /* A few dozen bytes fit any socket buffer; closing our end right
     * after gives raft the message, then the end of the stream. */
    if (write(fds[1], msg, len) != (ssize_t)len) {
        close(fds[0]);
        close(fds[1]);
        return OL_EIO;
    }
    close(fds[1]);
    theirs = raft_malloc(sizeof *theirs);
    if (theirs == NULL) {
        close(fds[0]);
        return OL_EIO;
    }
    uv_pipe_init(t->loop, theirs, 0);
    if (uv_pipe_open(theirs, fds[0]) != 0) {
        close(fds[0]);
        uv_close((uv_handle_t *)theirs, raft_handle_free);
        return OL_EIO;
    }
    t->raft_accept_cb(&t->raft, from, p->address, (uv_stream_t *)theirs);
    return 0;
}
