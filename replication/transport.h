/*
 * The node-to-node transport.  Every connection between two outlast nodes
 * is mutually authenticated with the nodes' Ed25519 keys from the roster
 * and encrypted and integrity-protected with libsodium.  It carries two
 * kinds of traffic over separate connections:
 *
 *  - raft: ol__transport_raft() returns a struct raft_uv_transport to hand
 *    to raft_uv_init(); raft sees plain streams while a pump in the same
 *    loop moves bytes to and from the encrypted TCP connection;
 *  - messages: ol__transport_send() delivers whole messages (proposal
 *    forwarding, pings) to a peer's recv callback.
 *
 * A peer whose key is not in the roster, a tampered or oversized frame, a
 * replayed handshake or garbage bytes get the connection dropped and a log
 * line; the node keeps running.  Handshakes time out.  Sizes read from the
 * network are capped before anything is allocated for them.
 *
 * All functions run on the loop thread.
 */
#ifndef OL_TRANSPORT_H
#define OL_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/keys.h"
#include "base/sizes.h"
#include "raftwire.h"

struct raft_uv_transport;
struct ol__transport;

#define OL_TRANSPORT_MSG_MAX (16u << 20) /* largest message via _send() */

/*
 * Split "host:port" or "[v6]:port" into its parts.  Returns 0 or
 * OL_EINVAL (no port, port out of range, an unbracketed IPv6 address or
 * parts too long).
 */
int ol__addr_split(const char *address, char host[OL_HOST_MAX],
                   char port[OL_PORT_MAX]) __attribute__((warn_unused_result));

/* One member of the roster. */
struct ol__peer {
    uint64_t id;                  /* raft server id, > 0 */
    char address[OL_ADDR_MAX];    /* "host:port", "[v6]:port" or "name:port" */
    uint8_t pk[OL_PK_SIZE];
};

/* A whole message from an authenticated peer.  `msg` is borrowed for the
 * call.  The callback may call any transport function, close included. */
typedef void (*ol__transport_recv_cb)(void *data, uint64_t from,
                                      const void *msg, size_t len);

struct ol__transport_config {
    uint64_t self_id;
    const char *listen;            /* address to bind, "host:port" (port 0
                                      picks one); NULL: the address raft
                                      passes to its init */
    const struct ol__key *key;     /* borrowed; must outlive the transport */
    const char *cluster;           /* cluster name, bound into handshakes */
    unsigned handshake_timeout_ms; /* 0: 5000 */
    ol__transport_recv_cb recv_cb; /* may be NULL */
    void *recv_data;
    /* A dial to a peer was refused: nothing listens at its address, so
     * its process is gone or restarting (a crashed machine or a cut
     * network refuses nothing; its dials time out).  Gets recv_data; may
     * be NULL. */
    void (*refused_cb)(void *data, uint64_t peer_id);
    /* Corrections to libraft's messages (raftwire.h); zeroed: none. */
    struct ol__rw_hooks raft_hooks;
    /* The cluster id this node presents (handshake.h); NULL: none yet.  A
     * node without one takes the first an authenticated peer presents and
     * tells cluster_id_cb (may be NULL), which must persist it. */
    const uint8_t *cluster_id;
    void (*cluster_id_cb)(void *data, const uint8_t *id);
    void *cluster_id_data;
    /* Tuning; 0 picks the default. */
    size_t pump_high_water;        /* raft pump pauses a side above this
                                      many queued bytes; 0: 4 MiB */
    unsigned msg_queue_max;        /* messages queued per peer; 0: 1024 */
    size_t msg_queue_bytes;        /* bytes queued per peer; 0: 64 MiB */
    /* Wire features (handshake.h).  Zeroed: offer them all. */
    int compress_off;              /* never offer compression */
    /* Reachability: this node cannot be dialled (behind NAT).  It binds
     * nothing, tells peers so in its handshakes, and keeps a reverse
     * connection per channel dialled to every peer, which the peer uses
     * as its own outbound connection to this node (transport_rev.c). */
    int dial_only;
    int legacy_handshake;          /* act as a node from before features:
                                      dial with "OLT2" only and refuse
                                      "OLT3" (tests of mixed versions) */
};

/*
 * Create a transport.  Nothing is bound until ol__transport_listen() or
 * until raft calls listen.  Returns 0 or OL_ENOMEM/OL_EINVAL with errmsg
 * (OL_ERRMSG_SIZE bytes) set.
 */
int ol__transport_create(uv_loop_t *loop,
                         const struct ol__transport_config *cfg,
                         struct ol__transport **out, char *errmsg);

/* Replace the roster (copied).  Connections to peers no longer in it, or
 * whose key changed, are dropped.  Returns 0 or OL_ENOMEM. */
int ol__transport_set_roster(struct ol__transport *t,
                             const struct ol__peer *peers, size_t n);

/* Bind and listen on the configured address for both kinds of traffic.
 * Idempotent.  Returns 0 or OL_EIO with errmsg set. */
int ol__transport_listen(struct ol__transport *t, char *errmsg);

/* The port the listener is bound to (useful with port 0), or a negative
 * OL_E* code when not listening. */
int ol__transport_port(const struct ol__transport *t);

/* The raft_uv_transport for raft_uv_init().  Owned by `t`. */
struct raft_uv_transport *ol__transport_raft(struct ol__transport *t);

/* Hand raft the encoded raft message `msg` as though peer `from` had sent
 * it: a connection raft accepts from `from` that carries just these bytes.
 * For a message this node makes for itself on a peer's behalf (raft.c),
 * never for bytes from the network.  Returns 0, OL_ENOTFOUND (not in the
 * roster), OL_ESTATE (raft is not listening, or closing) or OL_EIO. */
int ol__transport_raft_inject(struct ol__transport *t, uint64_t from,
                              const void *msg, size_t len);

/*
 * Queue a message to peer `to`, connecting if needed.  The bytes are
 * copied.  Delivery is best effort (a lost connection drops what was
 * queued); callers retry idempotently.  Messages wait in the peer's queue
 * while a connection is made, retried with backoff after failures.
 * Returns 0, OL_ENOTFOUND (not in the roster), OL_ETOOBIG (over
 * OL_TRANSPORT_MSG_MAX), OL_EBUSY (the peer's queue is full), OL_ENOMEM or
 * OL_ESHUTDOWN (closing).
 */
int ol__transport_send(struct ol__transport *t, uint64_t to, const void *msg,
                       size_t len);

/* What the transport knows about one peer, all its connections together.
 * Wire bytes are whole frames as they go on the socket (length, tag and
 * any compression included; handshakes and TCP/IP headers not); data
 * bytes are the payloads before compression (raft's messages and the
 * message channel's, not pings). */
struct ol__transport_peer_stats {
    uint64_t id;
    uint64_t wire_out, wire_in;
    uint64_t data_out, data_in;
    uint64_t zipped_out, zipped_in; /* frames sent/received compressed */
    /* Round trips of a ping each open connection sends every second (at
     * most one outstanding), in microseconds; 0: no sample yet (a peer
     * that does not speak pings never has one). */
    uint64_t rtt_last_us, rtt_min_us, rtt_avg_us; /* avg: EWMA, 1/8 */
    uint64_t rtt_samples;
    uint32_t features;  /* agreed on its newest connection (OL_HS_FEAT_*) */
    int legacy;         /* dialled with "OLT2": it refused "OLT3" */
};

#define OL_TRANSPORT_PEERS_MAX 32

/* Counters for status output and tests. */
struct ol__transport_stats {
    uint64_t handshakes_ok;
    uint64_t handshakes_failed; /* bad key, bad signature, garbage, timeout */
    uint64_t frames_rejected;   /* failed authentication or over the cap */
    uint64_t msgs_sent;
    uint64_t msgs_received;
    uint64_t pump_pauses;       /* a raft pump side paused for backpressure */
    uint64_t pump_queue_peak;   /* most bytes seen queued in a pump side */
    uint64_t admission_refused; /* connections refused before a handshake:
                                 * too many from outside or from one
                                 * address */
    uint64_t raft_refused;      /* raft messages from peers that failed the
                                 * checks in raftwire.h */
    uint64_t raft_commit_capped;
    uint64_t raft_match_capped;
    uint64_t conns_open;        /* connections now, authenticated or not */
    uint64_t conns_handshaking; /* incoming ones not yet authenticated */
    /* Wire totals over all peers (see struct ol__transport_peer_stats). */
    uint64_t wire_out, wire_in, data_out, data_in;
    uint64_t frames_undecodable; /* authenticated, then refused by the
                                    frame codec (bad type, bad zstd data,
                                    a claimed size over the cap) */
    uint64_t raft_spares;       /* raft connections dialled ahead of need */
    uint64_t raft_spares_taken; /* ... that raft then took at once */
    /* The roster's peers (up to OL_TRANSPORT_PEERS_MAX), by id. */
    size_t n_peers;
    struct ol__transport_peer_stats peers[OL_TRANSPORT_PEERS_MAX];
};
void ol__transport_stats(const struct ol__transport *t,
                         struct ol__transport_stats *out);

/* Per-peer figures for the roster's peers, at most `max` of them, in
 * roster order; returns how many were written. */
size_t ol__transport_peer_stats(const struct ol__transport *t,
                                struct ol__transport_peer_stats *out,
                                size_t max);

/*
 * Close every connection and the listener.  Call after raft_uv_close() has
 * been called for the raft_uv_transport.  `cb` (may be NULL) fires once
 * every handle is closed; free nothing before it.  The transport itself is
 * freed when `cb` returns.  A second call is a no-op.  NULL-safe.
 */
void ol__transport_close(struct ol__transport *t,
                         void (*cb)(struct ol__transport *t, void *data),
                         void *data);

#endif
