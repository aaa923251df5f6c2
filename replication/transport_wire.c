/*
 * What goes over an open connection, frame by frame: encoding payloads
 * for the connection's agreed features (compressed when that pays),
 * opening and decoding what arrives before the raft pump or the message
 * channel sees it, the once-a-second ping that measures each peer's round
 * trip, and the per-peer figures (bytes each way, RTT) for status.  It
 * also remembers which peers refused an "OLT3" handshake, so that they
 * are dialled the old way for a while (handshake.h).
 */
#include "transport_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

struct ol__tpeer *ol__tpeer_get(struct ol__transport *t, uint64_t id)
{
    struct ol__tpeer *tp;

    for (tp = t->tpeers; tp != NULL; tp = tp->next)
        if (tp->s.id == id)
            return tp;
    tp = calloc(1, sizeof *tp);
    if (tp == NULL)
        return NULL;
    tp->s.id = id;
    tp->next = t->tpeers;
    t->tpeers = tp;
    return tp;
}

void ol__tpeer_free_all(struct ol__transport *t)
{
    struct ol__tpeer *tp, *next;

    for (tp = t->tpeers; tp != NULL; tp = next) {
        next = tp->next;
        free(tp);
    }
    t->tpeers = NULL;
}

bool ol__tpeer_dial_ext(struct ol__transport *t, uint64_t id)
{
    struct ol__tpeer *tp = ol__tpeer_get(t, id);

    if (t->features == 0)
        return false;
    if (tp == NULL)
        return true;
    return !tp->try_plain && uv_now(t->loop) >= tp->plain_until;
}

void ol__tpeer_learn(struct ol__conn *c)
{
    struct ol__tpeer *tp = ol__tpeer_get(c->t, c->peer_id);

    if (tp == NULL)
        return;
    tp->s.features = c->feat;
    if (!c->client)
        tp->dial_only = (c->feat & OL_HS_FEAT_DIAL_ONLY) != 0;
    if (c->ext) {
        /* It speaks "OLT3" (again): offer it features from now on. */
        tp->try_plain = false;
        tp->plain_until = 0;
        tp->s.legacy = 0;
    } else if (c->client && tp->try_plain) {
        tp->try_plain = false;
        tp->plain_until = uv_now(c->t->loop) + OL_LEGACY_RETRY_MS;
        tp->s.legacy = 1;
        ol_log(OL_LOG_INFO, "transport: node %" PRIu64 " refused the "
               "handshake with features and took the old one; it gets no "
               "compression or pings until it is upgraded", c->peer_id);
    }
}

size_t ol__conn_plain_max(const struct ol__conn *c)
{
    if (c->channel == OL_CHAN_RAFT)
        return OL_RAFT_FRAME_MAX;
    return OL_TRANSPORT_MSG_MAX +
           ((c->feat & OL_HS_FEAT_FRAMES) ? OL_WF_HDR_MAX : 0);
}

int ol__conn_send_plain(struct ol__conn *c, const void *p, size_t n)
{
    struct ol__wreq *w = ol__wreq_new(c, OL_FRAME_SIZE(n));
    struct ol__tpeer *tp;

    if (w == NULL)
        return OL_ENOMEM;
    if (ol__frame_seal(c->ss, p, n, w->data) != 0) {
        free(w);
        return OL_ETOOBIG;
    }
    if ((tp = ol__tpeer_get(c->t, c->peer_id)) != NULL)
        tp->s.wire_out += w->len;
    c->t->stats.wire_out += w->len;
    return ol__conn_write(c, w, false);
}

int ol__conn_send_frame(struct ol__conn *c, const void *p, size_t n)
{
    struct ol__transport *t = c->t;
    struct ol__tpeer *tp;
    const uint8_t *plain;
    size_t plen;
    int zipped, rv;

    rv = ol__wf_encode(&t->wf, c->feat, p, n, &plain, &plen, &zipped);
    if (rv != 0)
        return rv;
    if ((tp = ol__tpeer_get(t, c->peer_id)) != NULL) {
        tp->s.data_out += n;
        tp->s.zipped_out += (uint64_t)zipped;
    }
    t->stats.data_out += n;
    return ol__conn_send_plain(c, plain, plen);
}

static void rtt_sample(struct ol__conn *c, uint64_t ns)
{
    struct ol__tpeer *tp = ol__tpeer_get(c->t, c->peer_id);
    uint64_t us = ns / 1000 ? ns / 1000 : 1;
    struct ol__transport_peer_stats *s;

    if (tp == NULL)
        return;
    s = &tp->s;
    s->rtt_last_us = us;
    if (s->rtt_min_us == 0 || us < s->rtt_min_us)
        s->rtt_min_us = us;
    if (s->rtt_avg_us == 0)
        s->rtt_avg_us = us;
    else
        s->rtt_avg_us = (uint64_t)((int64_t)s->rtt_avg_us +
                                   ((int64_t)us - (int64_t)s->rtt_avg_us) / 8);
    s->rtt_samples++;
}

static int on_ping(struct ol__conn *c, const struct ol__wf_msg *m)
{
    uint8_t pong[9];

    if (m->type == OL_WF_PING) {
        ol__wf_ping(OL_WF_PONG, m->id, pong);
        return ol__conn_send_plain(c, pong, sizeof pong);
    }
    /* A pong for anything but the ping we are waiting for is ignored. */
    if (c->ping_out && m->id == c->ping_id) {
        c->ping_out = false;
        rtt_sample(c, uv_hrtime() - c->ping_at);
    }
    return 0;
}

/* A frame that failed authentication, or a raft message the checks in
 * raftwire.h refused (the pump logged which). */
static int rejected(struct ol__conn *c, int rv)
{
    c->t->stats.frames_rejected++;
    ol_log_rl(OL_LOG_WARN, "transport: frame from node %" PRIu64 ": %s",
              c->peer_id, ol_strerror(rv));
    return rv;
}

/* The frame's plaintext: the raft channel's buffer, or one of its own. */
static uint8_t *plain_buf(struct ol__conn *c, size_t n)
{
    /* A reverse connection nothing uses yet has no pump (pings only). */
    if (c->channel == OL_CHAN_RAFT && c->pbuf_in != NULL)
        return c->pbuf_in;
    return malloc(n ? n : 1);
}

int ol__conn_recv_frame(struct ol__conn *c, const uint8_t *cipher,
                        size_t clen, size_t plain_len)
{
    struct ol__transport *t = c->t;
    size_t max = c->channel == OL_CHAN_RAFT ? OL_RAFT_FRAME_MAX
                                            : OL_TRANSPORT_MSG_MAX;
    char errmsg[OL_ERRMSG_SIZE];
    struct ol__wf_msg m;
    struct ol__tpeer *tp;
    uint8_t *buf;
    int rv;

    if (plain_len > ol__conn_plain_max(c))
        return rejected(c, OL_EMALFORMED);
    if ((buf = plain_buf(c, plain_len)) == NULL)
        return OL_ENOMEM;
    rv = ol__frame_open(c->ss, cipher, clen, buf);
    if (rv != 0) {
        rejected(c, rv);
        goto out;
    }
    tp = ol__tpeer_get(t, c->peer_id);
    if (tp != NULL)
        tp->s.wire_in += OL_FRAME_HDR + clen;
    t->stats.wire_in += OL_FRAME_HDR + clen;
    /* Authenticated: only now is anything in it decoded. */
    rv = ol__wf_decode(&t->wf, c->feat, buf, plain_len, max, &m, errmsg);
    if (rv != 0) {
        t->stats.frames_undecodable++;
        ol_log_rl(OL_LOG_WARN, "transport: frame from node %" PRIu64
                  ": %s; connection closed", c->peer_id, errmsg);
        goto out;
    }
    if (m.type == OL_WF_PING || m.type == OL_WF_PONG) {
        rv = on_ping(c, &m);
        goto out;
    }
    if (tp != NULL) {
        tp->s.data_in += m.len;
        tp->s.zipped_in += m.type == OL_WF_ZSTD;
    }
    t->stats.data_in += m.len;
    if (c->channel == OL_CHAN_RAFT) {
        rv = m.len == 0 ? 0 : ol__pump_from_net(c, m.p, m.len);
        if (rv == OL_EMALFORMED)
            rejected(c, rv);
    } else
        ol__msg_deliver(c, m.p, m.len);
out:
    if (buf != c->pbuf_in)
        free(buf);
    return rv;
}

/* Is there an open connection with peer `id` that carries pings? */
static bool pinged(const struct ol__transport *t, uint64_t id)
{
    for (const struct ol__conn *c = t->conns; c != NULL; c = c->next)
        if (c->peer_id == id && c->state == OL_CONN_OPEN &&
            (c->feat & OL_HS_FEAT_FRAMES))
            return true;
    return false;
}

/* Followers exchange nothing with each other while a leader holds, so a
 * peer with no connection gets a message connection of its own: every
 * node then knows its round trip to every other.  Not for peers that
 * speak no pings. */
static void keep_all(struct ol__transport *t)
{
    for (size_t i = 0; i < t->n_roster; i++) {
        uint64_t id = t->roster[i].id;
        struct ol__tpeer *tp;

        if (id == t->self_id || pinged(t, id))
            continue;
        tp = ol__tpeer_get(t, id);
        if (tp != NULL && tp->s.legacy)
            continue;
        ol__msg_keep(t, id);
    }
}

static void ping_cb(uv_timer_t *h)
{
    struct ol__transport *t = h->data;
    uint8_t ping[9];

    ol__wf_trim(&t->wf);
    if (t->features != 0)
        keep_all(t);
    ol__raft_spares(t);

    for (struct ol__conn *c = t->conns; c != NULL; c = c->next) {
        if (c->state != OL_CONN_OPEN || !(c->feat & OL_HS_FEAT_FRAMES) ||
            c->ping_out)
            continue;
        c->ping_id = ++t->ping_seq;
        c->ping_at = uv_hrtime();
        c->ping_out = true;
        ol__wf_ping(OL_WF_PING, c->ping_id, ping);
        /* On failure the connection is dropped or memory is short; the
         * next round tries again. */
        if (ol__conn_send_plain(c, ping, sizeof ping) != 0)
            c->ping_out = false;
    }
}

void ol__ping_start(struct ol__transport *t)
{
    uv_timer_start(&t->ping_timer, ping_cb, OL_PING_MS, OL_PING_MS);
}

size_t ol__transport_peer_stats(const struct ol__transport *t,
                                struct ol__transport_peer_stats *out,
                                size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < t->n_roster && n < max; i++) {
        const struct ol__tpeer *tp;

        if (t->roster[i].id == t->self_id)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        out[n].id = t->roster[i].id;
        for (tp = t->tpeers; tp != NULL; tp = tp->next)
            if (tp->s.id == out[n].id)
                out[n] = tp->s;
        n++;
    }
    return n;
}
