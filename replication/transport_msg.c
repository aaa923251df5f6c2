/*
 * The message channel: whole messages (proposal forwarding, pings) between
 * nodes, one sealed frame each, on connections of their own so that a
 * large message never delays raft's heartbeats.  Each roster peer gets an
 * outbound connection dialled on first use and a bounded queue for what
 * is sent while it connects.  Failed dials are retried with exponential
 * backoff from one timer for all peers.  Incoming connections hand each
 * message to the recv callback with the id the handshake proved.
 */
#include "transport_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

static struct ol__mpeer *mpeer_get(struct ol__transport *t, uint64_t id)
{
    struct ol__mpeer *mp;

    for (mp = t->mpeers; mp != NULL; mp = mp->next)
        if (mp->id == id)
            return mp;
    mp = calloc(1, sizeof *mp);
    if (mp == NULL)
        return NULL;
    mp->id = id;
    mp->next = t->mpeers;
    t->mpeers = mp;
    return mp;
}

static void mpeer_free(struct ol__mpeer *mp)
{
    struct ol__qmsg *q, *next;

    if (mp->conn != NULL) {
        mp->conn->mp = NULL;
        ol__conn_fail(mp->conn);
    }
    for (q = mp->head; q != NULL; q = next) {
        next = q->next;
        free(q);
    }
    free(mp);
}

/* Arm the retry timer for the earliest peer that has something to send
 * and is waiting out its backoff. */
static void retry_cb(uv_timer_t *h);
static void arm(struct ol__transport *t)
{
    uint64_t now = uv_now(t->loop), next = UINT64_MAX;

    if (t->closing)
        return;
    for (struct ol__mpeer *mp = t->mpeers; mp != NULL; mp = mp->next)
        if (mp->conn == NULL && mp->n_queued > 0 && mp->retry_at < next)
            next = mp->retry_at;
    if (next == UINT64_MAX) {
        uv_timer_stop(&t->retry_timer);
        return;
    }
    uv_timer_start(&t->retry_timer, retry_cb, next > now ? next - now : 0,
                   0);
}

static void backoff(struct ol__transport *t, struct ol__mpeer *mp)
{
    unsigned b = mp->backoff_ms;

    b = b == 0 ? OL_BACKOFF_MIN_MS : b * 2;
    if (b > OL_BACKOFF_MAX_MS)
        b = OL_BACKOFF_MAX_MS;
    mp->backoff_ms = b;
    /* Jitter, so that peers restarting together do not dial in step. */
    mp->retry_at = uv_now(t->loop) + b + randombytes_uniform(b / 4 + 1);
    arm(t);
}

static void dial(struct ol__transport *t, struct ol__mpeer *mp)
{
    const struct ol__peer *p = ol__tr_peer(t, mp->id);
    struct ol__tpeer *tp;
    struct ol__conn *c;

    if (p == NULL)
        return;
    tp = ol__tpeer_get(t, mp->id);
    if (tp != NULL && tp->dial_only) {
        /* It cannot be dialled: wait for its reverse connection. */
        c = ol__rev_idle(t, OL_CHAN_MSG, mp->id);
        if (c == NULL) {
            backoff(t, mp);
            return;
        }
        ol__msg_take(c);
        return;
    }
    c = ol__conn_dial(t, OL_CHAN_MSG, mp->id, p->pk, p->address);
    if (c == NULL) {
        backoff(t, mp);
        return;
    }
    c->mp = mp;
    mp->conn = c;
}

static void retry_cb(uv_timer_t *h)
{
    struct ol__transport *t = h->data;
    uint64_t now = uv_now(t->loop);

    for (struct ol__mpeer *mp = t->mpeers; mp != NULL; mp = mp->next)
        if (mp->conn == NULL && mp->n_queued > 0 && mp->retry_at <= now)
            dial(t, mp);
    arm(t);
}

int ol__transport_send(struct ol__transport *t, uint64_t to, const void *msg,
                       size_t len)
{
    struct ol__mpeer *mp;
    struct ol__qmsg *q;
    struct ol__conn *c;
    size_t pending;

    if (t->closing)
        return OL_ESHUTDOWN;
    if (len > OL_TRANSPORT_MSG_MAX)
        return OL_ETOOBIG;
    if (ol__tr_peer(t, to) == NULL)
        return OL_ENOTFOUND;
    mp = mpeer_get(t, to);
    if (mp == NULL)
        return OL_ENOMEM;
    c = mp->conn;
    pending = mp->queued_bytes;
    if (c != NULL && c->state == OL_CONN_OPEN)
        pending += uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (mp->n_queued >= t->q_max || pending + len > t->q_bytes)
        return OL_EBUSY;

    if (c != NULL && c->state == OL_CONN_OPEN) {
        int rv = ol__conn_send_frame(c, msg, len);

        if (rv == 0) {
            t->stats.msgs_sent++;
            return 0;
        }
        if (rv != OL_EIO)
            return rv;
        /* The connection just broke; queue the message for the next. */
    }
    q = malloc(sizeof *q + len);
    if (q == NULL)
        return OL_ENOMEM;
    q->next = NULL;
    q->len = len;
    memcpy(q->data, msg, len);
    if (mp->tail != NULL)
        mp->tail->next = q;
    else
        mp->head = q;
    mp->tail = q;
    mp->n_queued++;
    mp->queued_bytes += len;
    if (mp->conn == NULL) {
        if (uv_now(t->loop) >= mp->retry_at)
            dial(t, mp);
        else
            arm(t);
    }
    return 0;
}

void ol__msg_keep(struct ol__transport *t, uint64_t id)
{
    struct ol__mpeer *mp;

    if (t->closing || ol__tr_peer(t, id) == NULL)
        return;
    mp = mpeer_get(t, id);
    if (mp != NULL && mp->conn == NULL && uv_now(t->loop) >= mp->retry_at)
        dial(t, mp);
}

void ol__msg_open(struct ol__conn *c)
{
    struct ol__mpeer *mp = c->mp;

    if (mp == NULL)
        return; /* an incoming connection: nothing queued for it */
    mp->backoff_ms = 0;
    mp->retry_at = 0;
    while (mp->head != NULL && c->state == OL_CONN_OPEN) {
        struct ol__qmsg *q = mp->head;

        /* On failure the message stays queued: either the connection
         * dropped and a retry is scheduled, or memory is short. */
        if (ol__conn_send_frame(c, q->data, q->len) != 0)
            break;
        mp->head = q->next;
        if (mp->head == NULL)
            mp->tail = NULL;
        mp->n_queued--;
        mp->queued_bytes -= q->len;
        free(q);
        c->t->stats.msgs_sent++;
    }
}

void ol__msg_take(struct ol__conn *c)
{
    struct ol__mpeer *mp = mpeer_get(c->t, c->peer_id);
    struct ol__conn *o;

    if (mp == NULL || c->mp != NULL)
        return;
    o = mp->conn;
    if (o != NULL && o->state == OL_CONN_OPEN)
        return; /* it has a working one */
    if (o != NULL) {
        /* A dial still in progress: the reverse connection is surer. */
        o->mp = NULL;
        ol__conn_fail(o);
    }
    c->mp = mp;
    mp->conn = c;
    ol__msg_open(c);
}

void ol__msg_conn_lost(struct ol__conn *c, bool was_open)
{
    struct ol__mpeer *mp = c->mp;
    struct ol__transport *t = c->t;

    c->mp = NULL;
    if (mp == NULL)
        return;
    mp->conn = NULL;
    if (t->closing)
        return;
    /* A connection that never opened counts as a failed attempt even with
     * nothing queued, so the next send waits out the backoff. */
    if (!was_open || mp->n_queued > 0)
        backoff(t, mp);
}

void ol__msg_deliver(struct ol__conn *c, const uint8_t *p, size_t n)
{
    struct ol__transport *t = c->t;

    t->stats.msgs_received++;
    if (t->recv_cb != NULL)
        t->recv_cb(t->recv_data, c->peer_id, p, n);
}

void ol__msg_roster_changed(struct ol__transport *t)
{
    struct ol__mpeer **mpp = &t->mpeers;

    while (*mpp != NULL) {
        struct ol__mpeer *mp = *mpp;

        if (ol__tr_peer(t, mp->id) == NULL) {
            ol_log(OL_LOG_INFO,
                   "transport: node %" PRIu64 " left the roster; dropping "
                   "%zu queued messages",
                   mp->id, mp->n_queued);
            *mpp = mp->next;
            mpeer_free(mp);
            continue;
        }
        mpp = &mp->next;
    }
    arm(t);
}

void ol__msg_close(struct ol__transport *t)
{
    struct ol__mpeer *mp, *next;

    for (mp = t->mpeers; mp != NULL; mp = next) {
        next = mp->next;
        mpeer_free(mp);
    }
    t->mpeers = NULL;
}
