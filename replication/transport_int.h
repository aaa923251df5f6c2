/*
 * Internals shared by the transport's files: transport.c (lifecycle,
 * roster, listener), transport_dial.c (accepting and dialling),
 * transport_conn.c (one connection: handshake, frames), transport_raft.c
 * (the raft_uv_transport and its pump) and transport_msg.c (the message
 * channel).  Not for use outside them, except by their tests.
 */
#ifndef OL_TRANSPORT_INT_H
#define OL_TRANSPORT_INT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>

#include "base/buf.h"
#include "handshake.h"
#include "raftwire.h"
#include "transport.h"
#include "wireframe.h"

#define OL_RAFT_FRAME_MAX (64u << 10)        /* plaintext per raft frame */
#define OL_PUMP_HIGH_DEFAULT (4u << 20)
#define OL_MSG_QUEUE_DEFAULT 1024u
#define OL_MSG_QUEUE_BYTES_DEFAULT ((size_t)64 << 20)
#define OL_HS_TIMEOUT_DEFAULT 5000u
#define OL_BACKOFF_MIN_MS 100u
#define OL_BACKOFF_MAX_MS 5000u
#define OL_HS_PENDING_MAX 256u /* incoming handshakes in progress at once */
/* Of those, addresses not known to be a roster node's may hold only a few,
 * and each address only a few more, so that a flood from outside never
 * keeps a roster node from connecting. */
#define OL_HS_OUTSIDERS_MAX 32u
#define OL_HS_PER_OUTSIDER 4u
#define OL_HS_PER_KNOWN 32u
#define OL_HS_OUTSIDER_TIMEOUT_MS 1000u
#define OL_KNOWN_IPS 64u
#define OL_PING_MS 1000u
/* A peer that closed an "OLT3" handshake unanswered is dialled with
 * "OLT2" for this long before it is offered features again. */
#define OL_LEGACY_RETRY_MS (10u * 60u * 1000u)

enum ol__conn_state {
    OL_CONN_RESOLVING = 1,
    OL_CONN_CONNECTING,
    OL_CONN_HANDSHAKE,
    OL_CONN_OPEN,
    OL_CONN_DEAD,
    OL_CONN_WAITING,         /* a raft connect to a dial-only peer waiting
                                for its reverse connection (no socket) */
};

struct ol__mpeer;

/* One TCP connection, either direction, either channel.  Its handles are
 * embedded, so it is freed only after all of them have closed. */
struct ol__conn {
    struct ol__transport *t;
    struct ol__conn *prev, *next;
    int state;
    bool client;
    bool raft_counted;       /* counted in t->n_raft_conns */
    bool hs_counted;         /* counted in t->n_hs_pending */
    bool has_pipe;
    bool resolving;          /* a getaddrinfo request is outstanding */
    bool tcp_paused, pipe_paused;
    uint8_t channel;         /* 0 on the server until M1 names it */
    uint64_t peer_id;        /* 0 on the server until M1 */
    uint8_t peer_pk[OL_PK_SIZE];
    char address[OL_ADDR_MAX];
    char ip[64];             /* server: where the connection came from */
    bool outsider;           /* server: from an address not known to be a
                                roster node's */
    int handles;             /* open embedded handles */
    uv_tcp_t tcp;
    uv_timer_t timer;        /* handshake deadline */
    uv_pipe_t pipe;          /* raft channel: our end of the socketpair */
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    struct ol__hs *hs;
    struct ol__sstream *ss;
    uint8_t *in;             /* bytes read from tcp, not yet consumed */
    size_t in_len, in_cap, in_pos, in_want;
    uint8_t *pbuf;           /* raft channel: pipe read buffer */
    uint8_t *pbuf_in;        /* raft channel: an opened frame (in pbuf's
                                block) */
    struct ol__rwire *rw_in; /* raft channel: libraft's wire, each way */
    struct ol__rwire *rw_out;
    struct raft_uv_connect *req; /* raft client: until the stream is handed
                                    over */
    int req_status;          /* what req->cb gets if we never connect */
    struct ol__mpeer *mp;    /* message client: the peer it serves */
    uint32_t feat;           /* agreed features, once open */
    bool ext;                /* the handshake was "OLT3" */
    bool got_m2;             /* client: the server answered M1 */
    bool reverse;            /* a reverse connection (transport_rev.c) */
    bool spare;              /* raft client dialled ahead of raft's need
                                (ol__raft_spares); idle until taken */
    uint64_t wait_until;     /* OL_CONN_WAITING: loop time it gives up */
    bool ping_out;           /* a ping is waiting for its pong */
    uint64_t ping_id, ping_at; /* its id and uv_hrtime() when sent */
};

/* Per-peer figures and the dialler's memory of old peers. */
struct ol__tpeer {
    struct ol__tpeer *next;
    struct ol__transport_peer_stats s;
    bool try_plain;          /* the last "OLT3" dial was closed unanswered */
    uint64_t plain_until;    /* loop time until which we dial with "OLT2" */
    bool dial_only;          /* it said so in its last handshake with us */
    /* On a dial-only node: its reverse connections to this peer (raft,
     * messages) and their redial backoff. */
    struct ol__conn *rev[2];
    unsigned rev_backoff_ms[2];
    uint64_t rev_retry_at[2];
};

/* A queued outgoing message. */
struct ol__qmsg {
    struct ol__qmsg *next;
    size_t len;
    uint8_t data[];
};

/* Message-channel state for one roster peer. */
struct ol__mpeer {
    struct ol__mpeer *next;
    uint64_t id;
    struct ol__conn *conn;   /* outbound connection, if any */
    struct ol__qmsg *head, *tail;
    size_t n_queued, queued_bytes;
    unsigned backoff_ms;
    uint64_t retry_at;       /* loop time before which we do not dial */
};

struct ol__transport {
    uv_loop_t *loop;
    uint64_t self_id;
    char listen_addr[OL_ADDR_MAX];
    const struct ol__key *key;
    struct ol__hs_self hs_self;
    unsigned hs_timeout_ms;
    size_t pump_high, pump_low;
    size_t q_max, q_bytes;
    ol__transport_recv_cb recv_cb;
    void *recv_data;
    void (*refused_cb)(void *data, uint64_t peer_id);
    struct ol__rw_hooks raft_hooks;
    void (*cluster_id_cb)(void *data, const uint8_t *id);
    void *cluster_id_data;
    struct ol__buf rw_scratch; /* what the raft wire parser passes on */

    struct ol__peer *roster;
    size_t n_roster;

    uv_tcp_t *listener;      /* malloc'd; freed in its close callback */
    uv_timer_t retry_timer;  /* message-channel reconnects */
    uv_timer_t defer_timer;  /* fires raft's close callback */
    struct ol__conn *conns;
    size_t n_conns, n_raft_conns;
    size_t n_hs_pending;     /* incoming connections not yet authenticated */
    size_t n_hs_outsiders;   /* of which from unknown addresses */
    char known_ips[OL_KNOWN_IPS][64]; /* roster hosts given as numbers, and
                                         where authenticated peers came
                                         from (a ring) */
    size_t n_known, known_next;
    struct ol__mpeer *mpeers;
    struct ol__tpeer *tpeers;
    struct ol__wf wf;        /* frame codec's contexts and buffers */
    uint32_t features;       /* offered in handshakes */
    bool legacy;             /* config legacy_handshake */
    bool dial_only;          /* config dial_only */
    bool said_dial_only;     /* "listening on nothing" logged */
    uv_timer_t rev_timer;    /* dial-only: (re)dials reverse connections */
    uv_timer_t ping_timer;
    uint64_t ping_seq;

    struct raft_uv_transport raft;
    raft_uv_accept_cb raft_accept_cb;
    raft_uv_transport_close_cb raft_close_cb;
    bool raft_closing;

    bool closing;
    int pending_handles;
    void (*close_cb)(struct ol__transport *t, void *data);
    void *close_data;

    struct ol__transport_stats stats;
};

/* transport.c */
const struct ol__peer *ol__tr_peer(const struct ol__transport *t,
                                   uint64_t id);
void ol__tr_maybe_closed(struct ol__transport *t);

/* transport_dial.c */
void ol__conn_accept(struct ol__transport *t, uv_stream_t *listener);
/* Remember `ip` as a roster node's (set_roster, authenticated peers). */
void ol__tr_know_ip(struct ol__transport *t, const char *ip);

/* Dial `address` on `channel` expecting node `id` with key `pk`.  Returns
 * the connection, or NULL when it failed at once (nothing else happens
 * then: no callback, no retry). */
/* transport_raft.c: keep one raft connection ready to every reachable
 * peer raft has none to (called with the pings). */
void ol__raft_spares(struct ol__transport *t);
/* A spare that raft's connect took: hand raft its stream (timer). */
void ol__raft_spare_taken_cb(uv_timer_t *h);

struct ol__conn *ol__conn_dial(struct ol__transport *t, uint8_t channel,
                               uint64_t id, const uint8_t pk[OL_PK_SIZE],
                               const char *address);

/* transport_conn.c */

/* A connection with its tcp handle and handshake deadline running,
 * linked into t.  NULL when out of memory. */
struct ol__conn *ol__conn_new(struct ol__transport *t, bool client,
                              uint8_t channel);

/* A connection's handshake deadline passed. */
void ol__conn_timeout_cb(uv_timer_t *t);

/* Free c once its handles are closed and no resolve is outstanding. */
void ol__conn_maybe_free(struct ol__conn *c);

/* Drop the connection: close its handles; it is freed once they are
 * closed.  Idempotent. */
void ol__conn_fail(struct ol__conn *c);

/* Write a copy of n bytes to tcp.  Returns 0, OL_ENOMEM or OL_EIO (the
 * connection is then dropped). */
int ol__conn_write_copy(struct ol__conn *c, const uint8_t *p, size_t n);

/* A write request with its bytes. */
struct ol__wreq {
    uv_write_t req;
    struct ol__conn *c;
    bool to_pipe;
    size_t len;
    uint8_t data[];
};

/* Allocate a write of len bytes (NULL when out of memory). */
struct ol__wreq *ol__wreq_new(struct ol__conn *c, size_t len);

/* Write w to the tcp side or, for the raft channel, the pipe.  Takes w.
 * On failure the connection is dropped and OL_EIO returned. */
int ol__conn_write(struct ol__conn *c, struct ol__wreq *w, bool to_pipe);

/* (Re)start reading tcp.  Returns 0 or OL_EIO. */
int ol__conn_read_start(struct ol__conn *c);

/* Send n payload bytes as one frame (encoded for the connection's
 * features, compressed when that pays) to tcp.  Returns 0, OL_ENOMEM,
 * OL_ETOOBIG or OL_EIO; on OL_EIO the connection is dropped. */
int ol__conn_send_frame(struct ol__conn *c, const void *p, size_t n);

/* Seal n bytes of plaintext as they are and write the frame. */
int ol__conn_send_plain(struct ol__conn *c, const void *p, size_t n);

/* transport_wire.c */

/* The peer's record, made on first use (NULL when out of memory). */
struct ol__tpeer *ol__tpeer_get(struct ol__transport *t, uint64_t id);
void ol__tpeer_free_all(struct ol__transport *t);

/* Should a dial to `id` offer features? */
bool ol__tpeer_dial_ext(struct ol__transport *t, uint64_t id);

/* What a finished handshake teaches about the peer's version. */
void ol__tpeer_learn(struct ol__conn *c);

/* Start the ping timer. */
void ol__ping_start(struct ol__transport *t);

/* Open, decode and hand on one frame whose ciphertext (clen bytes after
 * the header) holds plain_len bytes.  Returns 0 or an error; the caller
 * drops the connection on any error. */
int ol__conn_recv_frame(struct ol__conn *c, const uint8_t *cipher,
                        size_t clen, size_t plain_len);

/* The largest plaintext a frame on c may carry. */
size_t ol__conn_plain_max(const struct ol__conn *c);

/* transport_raft.c */
void ol__raft_setup(struct ol__transport *t);
int ol__pump_open(struct ol__conn *c);
/* A decoded payload from the peer for raft. */
int ol__pump_from_net(struct ol__conn *c, const uint8_t *p, size_t n);
void ol__pump_drained(struct ol__conn *c, bool pipe_side);
void ol__pump_note_queue(struct ol__transport *t, size_t queued);

/* transport_rev.c */
#define OL_REV_TICK_MS 50u
/* Does c serve as our outbound connection (a client we dialled, or a
 * reverse connection a dial-only peer dialled for us)? */
static inline bool ol__conn_ours(const struct ol__conn *c)
{
    return c->client != c->reverse;
}
void ol__rev_start(struct ol__transport *t);
/* The timer of an OL_CONN_WAITING connection. */
void ol__rev_wait_cb(uv_timer_t *h);
/* An authenticated reverse connection opened (either side).  Returns 0
 * or an error (the caller drops it). */
int ol__rev_opened(struct ol__conn *c);
/* A reverse connection this node dialled is gone. */
void ol__rev_lost(struct ol__conn *c, bool was_open);
/* An open reverse connection from dial-only peer `id` on `channel` that
 * nothing uses yet, or NULL. */
struct ol__conn *ol__rev_idle(struct ol__transport *t, uint8_t channel,
                              uint64_t id);
/* raft connect to a dial-only peer.  Returns 0 or a RAFT_* code. */
int ol__rev_connect(struct ol__transport *t, struct raft_uv_connect *req,
                    uint64_t id);

/* transport_msg.c */
/* Take reverse connection c as the message connection to its peer. */
void ol__msg_take(struct ol__conn *c);
void ol__msg_open(struct ol__conn *c);
void ol__msg_conn_lost(struct ol__conn *c, bool was_open);
void ol__msg_deliver(struct ol__conn *c, const uint8_t *p, size_t n);
void ol__msg_roster_changed(struct ol__transport *t);
/* Dial a message connection to roster peer `id` if there is none and it
 * is not waiting out a backoff (pings then measure its round trip). */
void ol__msg_keep(struct ol__transport *t, uint64_t id);
void ol__msg_close(struct ol__transport *t);

#endif
