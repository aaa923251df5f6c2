/*
 * Reverse connections: how a node that can only dial out (behind NAT,
 * `dial_only`) still carries traffic both ways.
 *
 * The dial-only node binds nothing.  Besides the connections it dials
 * for its own traffic, it keeps one reverse connection per channel (raft,
 * messages) to every peer, dialled and authenticated like any other but
 * with OL_HS_FEAT_REVERSE in its hello; every hello it sends carries
 * OL_HS_FEAT_DIAL_ONLY.  Each end then swaps roles for that connection:
 *
 *  - the peer (the server) learns from the hello that the node cannot be
 *    dialled, and uses the reverse connection as its outbound one to it:
 *    raft's connect takes an idle one or waits for one (at most the
 *    handshake timeout, then fails like a refused dial so that raft
 *    retries), and the message channel attaches one as it arrives;
 *  - the dial-only node (the client) hands its end of a reverse raft
 *    connection to raft as an accepted stream, and treats a reverse
 *    message connection as an incoming one.
 *
 * A reverse connection that drops, or fails to connect, is dialled again
 * with the message channel's backoff.  A peer from before reverse
 * connections agrees to neither bit; the reverse connection is then
 * closed and the node cannot receive from that peer until it is upgraded.
 */
#include "transport_int.h"

#include <inttypes.h>
#include <stdio.h>

#include "base/err.h"
#include "base/log.h"

static int chan_ix(uint8_t channel)
{
    return channel == OL_CHAN_RAFT ? 0 : 1;
}

static void rev_backoff(struct ol__transport *t, struct ol__tpeer *tp, int k,
                        unsigned at_least)
{
    unsigned b = tp->rev_backoff_ms[k];

    b = b == 0 ? OL_BACKOFF_MIN_MS : b * 2;
    if (b < at_least)
        b = at_least;
    if (b > OL_BACKOFF_MAX_MS)
        b = OL_BACKOFF_MAX_MS;
    tp->rev_backoff_ms[k] = b;
    tp->rev_retry_at[k] = uv_now(t->loop) + b + randombytes_uniform(b / 4 + 1);
}

static void rev_dial(struct ol__transport *t, struct ol__tpeer *tp,
                     const struct ol__peer *p, uint8_t channel)
{
    int k = chan_ix(channel);
    struct ol__conn *c;

    c = ol__conn_dial(t, channel, p->id, p->pk, p->address);
    if (c == NULL) {
        rev_backoff(t, tp, k, 0);
        return;
    }
    c->reverse = true; /* read when the socket connects, never before */
    tp->rev[k] = c;
}

/* Dial-only: dial every reverse connection that is missing and not
 * waiting out a backoff. */
static void rev_tick(uv_timer_t *h)
{
    struct ol__transport *t = h->data;
    uint64_t now = uv_now(t->loop);
    static const uint8_t channels[2] = {OL_CHAN_RAFT, OL_CHAN_MSG};

    if (t->closing)
        return;
    for (size_t i = 0; i < t->n_roster; i++) {
        const struct ol__peer *p = &t->roster[i];
        struct ol__tpeer *tp;

        if (p->id == t->self_id || (tp = ol__tpeer_get(t, p->id)) == NULL)
            continue;
        for (int k = 0; k < 2; k++) {
            if (tp->rev[k] != NULL || now < tp->rev_retry_at[k])
                continue;
            /* Nothing to hand a raft stream to before raft listens. */
            if (k == 0 && (t->raft_accept_cb == NULL || t->raft_closing))
                continue;
            rev_dial(t, tp, p, channels[k]);
        }
    }
}

void ol__rev_start(struct ol__transport *t)
{
    if (t->dial_only)
        uv_timer_start(&t->rev_timer, rev_tick, 0, OL_REV_TICK_MS);
}

void ol__rev_lost(struct ol__conn *c, bool was_open)
{
    struct ol__transport *t = c->t;
    struct ol__tpeer *tp = ol__tpeer_get(t, c->peer_id);
    int k = chan_ix(c->channel);

    if (tp == NULL || tp->rev[k] != c)
        return;
    tp->rev[k] = NULL;
    if (was_open) {
        /* It worked: dial again at once. */
        tp->rev_backoff_ms[k] = 0;
        tp->rev_retry_at[k] = 0;
        ol_log(OL_LOG_DEBUG, "transport: reverse %s connection to node %"
               PRIu64 " lost; dialling again",
               c->channel == OL_CHAN_RAFT ? "raft" : "message", c->peer_id);
    } else {
        rev_backoff(t, tp, k, 0);
    }
}

struct ol__conn *ol__rev_idle(struct ol__transport *t, uint8_t channel,
                              uint64_t id)
{
    for (struct ol__conn *c = t->conns; c != NULL; c = c->next)
        if (c->reverse && !c->client && c->state == OL_CONN_OPEN &&
            c->channel == channel && c->peer_id == id && !c->has_pipe &&
            c->req == NULL && c->mp == NULL)
            return c;
    return NULL;
}

/* Give raft's connect request held by waiting connection w to reverse
 * connection c. */
static int hand_over(struct ol__conn *w, struct ol__conn *c)
{
    int rv;

    c->req = w->req;
    c->req_status = RAFT_NOCONNECTION;
    w->req = NULL;
    ol__conn_fail(w);
    rv = ol__pump_open(c);
    if (rv != 0)
        ol__conn_fail(c); /* raft's request fails once c is freed */
    return 0;
}

void ol__rev_wait_cb(uv_timer_t *h)
{
    struct ol__conn *w = h->data;
    struct ol__transport *t = w->t;
    uint64_t now = uv_now(t->loop);
    struct ol__conn *c = ol__rev_idle(t, OL_CHAN_RAFT, w->peer_id);

    if (c != NULL) {
        (void)hand_over(w, c);
        return;
    }
    if (now >= w->wait_until) {
        ol_log_rl(OL_LOG_INFO, "transport: node %" PRIu64 " is dial-only "
                  "and sent no reverse raft connection within %u ms",
                  w->peer_id, t->hs_timeout_ms);
        ol__conn_fail(w);
        return;
    }
    uv_timer_start(h, ol__conn_timeout_cb, w->wait_until - now, 0);
}

int ol__rev_connect(struct ol__transport *t, struct raft_uv_connect *req,
                    uint64_t id)
{
    struct ol__conn *w = ol__conn_new(t, true, OL_CHAN_RAFT);

    if (w == NULL)
        return RAFT_NOCONNECTION;
    /* No socket: it holds raft's request until a reverse connection takes
     * it or the deadline passes.  Its timer fires at once first, so that
     * raft's callback never runs inside raft's own call to connect. */
    w->state = OL_CONN_WAITING;
    w->peer_id = id;
    w->req = req;
    w->req_status = RAFT_NOCONNECTION;
    w->wait_until = uv_now(t->loop) + t->hs_timeout_ms;
    snprintf(w->address, sizeof w->address, "(reverse)");
    uv_timer_start(&w->timer, ol__conn_timeout_cb, 0, 0);
    return 0;
}

/* Peer side: a dial-only node's reverse raft connection; a connect that
 * waits for one takes it, else it waits for raft's next connect. */
static int offer_raft(struct ol__conn *c)
{
    for (struct ol__conn *w = c->t->conns; w != NULL; w = w->next)
        if (w->state == OL_CONN_WAITING && w->peer_id == c->peer_id &&
            w->req != NULL)
            return hand_over(w, c);
    return 0;
}

int ol__rev_opened(struct ol__conn *c)
{
    struct ol__transport *t = c->t;
    struct ol__tpeer *tp;

    if (!c->client) {
        if (c->channel == OL_CHAN_RAFT)
            return offer_raft(c);
        ol__msg_take(c);
        return 0;
    }
    tp = ol__tpeer_get(t, c->peer_id);
    if (!(c->feat & OL_HS_FEAT_REVERSE)) {
        ol_log_rl(OL_LOG_WARN, "transport: node %" PRIu64 " does not take "
                  "reverse connections (an older build); it cannot reach "
                  "this dial-only node until it is upgraded", c->peer_id);
        if (tp != NULL && tp->rev[chan_ix(c->channel)] == c) {
            tp->rev[chan_ix(c->channel)] = NULL;
            rev_backoff(t, tp, chan_ix(c->channel), OL_BACKOFF_MAX_MS);
        }
        return OL_ESTATE;
    }
    if (tp != NULL) {
        tp->rev_backoff_ms[chan_ix(c->channel)] = 0;
    }
    /* Ours to receive on: raft gets it as an accepted stream; a message
     * connection delivers what arrives like any incoming one. */
    if (c->channel == OL_CHAN_RAFT)
        return ol__pump_open(c);
    return 0;
}
