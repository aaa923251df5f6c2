/*
 * The transport's handshake and frame codec, free of I/O so that tests and
 * fuzzers can drive them with bytes alone.
 *
 * Handshake (all integers big-endian, every message a fixed size):
 *
 *   M1 client -> server, OL_HS_M1_SIZE (117) bytes:
 *       "OLT2" | channel u8 | client_id u64 | server_id u64 |
 *       cluster_hash[32] | client_eph_pk[32] | client_cluster_id[32]
 *     or, from a node that offers features, OL_HS_M1X_SIZE (121) bytes:
 *       "OLT3" | the same fields | client_features u32
 *   M2 server -> client, OL_HS_M2_SIZE (152) bytes:
 *       server_eph_pk[32] | server_stream_header[24] |
 *       server_cluster_id[32] | sig_s[64]
 *     or, answering an "OLT3" M1, OL_HS_M2X_SIZE (156) bytes:
 *       server_eph_pk[32] | server_stream_header[24] |
 *       server_cluster_id[32] | server_features u32 | sig_s[64]
 *       sig_s = Ed25519(server key, "outlast/transport/2 server" NUL |
 *                        M1 | server_eph_pk | server_stream_header |
 *                        server_cluster_id)
 *   M3 client -> server, OL_HS_M3_SIZE (88) bytes:
 *       client_stream_header[24] | sig_c[64]
 *       sig_c = Ed25519(client key, "outlast/transport/2 client" NUL |
 *                        M1 | M2 | client_stream_header)
 *
 * cluster_hash binds the cluster's name.  A cluster id identifies one
 * formed cluster (ol__cluster_id_*): all zero from a node that has not
 * joined one yet.  Two non-zero ids that differ fail the handshake on
 * either side, so nodes bootstrapped with different rosters, or with
 * `cluster init` run on two of them, never form one cluster.
 *
 *   M4 server -> client, OL_HS_M4_SIZE (21) bytes: the server's first
 *       frame (below), with empty plaintext.  It tells the client that M3
 *       verified, so a client never reports a connection (or sends
 *       anything on it) that the server refused.
 *
 * The ephemeral keys are crypto_kx key pairs made fresh for every
 * connection on both sides, so a recorded M3 never verifies against a new
 * M2.  Each direction's key is the crypto_kx session key mixed with
 * BLAKE2b(M1 | server_eph_pk), which ties it to the cluster, channel and
 * both ids.  Each side then sends frames
 *
 *       len u32 | ciphertext[len]
 *
 * where ciphertext is one crypto_secretstream_xchacha20poly1305 message
 * (len = plaintext + OL_FRAME_ABYTES).
 *
 * Features.  The "OLT2" handshake has no room for an offer, and a node
 * of that version refuses any other magic, so a node that offers
 * features says so with "OLT3" and falls back to "OLT2" for a peer that
 * closed an "OLT3" handshake before answering (transport_dial.c).  Both
 * feature words are covered by the signatures, so nobody in between can
 * change them; they can only make a dialler fall back, which costs the
 * features and never the authentication.  A connection uses the features
 * both sides offered (ol__hs_features()); with OL_HS_FEAT_FRAMES every
 * frame's plaintext starts with a type byte (wireframe.h).
 */
#ifndef OL_HANDSHAKE_H
#define OL_HANDSHAKE_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "base/keys.h"

#define OL_HS_WUR __attribute__((warn_unused_result))

#define OL_HS_MAGIC "OLT2"
#define OL_HS_M1_SIZE (4 + 1 + 8 + 8 + 32 + 32 + 32)
#define OL_HS_M2_SIZE (32 + 24 + 32 + 64)
#define OL_CLUSTER_ID_SIZE 32
#define OL_HS_M3_SIZE (24 + 64)
#define OL_HS_MAGIC_X "OLT3"
#define OL_HS_M1X_SIZE (OL_HS_M1_SIZE + 4)
#define OL_HS_M2X_SIZE (OL_HS_M2_SIZE + 4)
#define OL_HS_M1_MAX OL_HS_M1X_SIZE
#define OL_HS_M2_MAX OL_HS_M2X_SIZE

/* The largest handshake message; nothing longer is ever buffered before a
 * handshake completes. */
#define OL_HS_MSG_MAX OL_HS_M2X_SIZE

/* Features a node offers in an "OLT3" handshake. */
#define OL_HS_FEAT_FRAMES 0x1u /* typed frames: pings, compression flag */
#define OL_HS_FEAT_ZSTD 0x2u   /* zstd-compressed frames may be sent */
/* Reachability (transport_rev.c).  A client sets these to say something
 * of itself or of the connection; a server offers them to say it
 * understands, so an agreed bit means "the client said so and the server
 * heard it", and a server from before them agrees to neither. */
#define OL_HS_FEAT_DIAL_ONLY 0x4u /* the client cannot be dialled */
#define OL_HS_FEAT_REVERSE 0x8u   /* the server is to use this connection
                                     as its own outbound one to the client */
#define OL_HS_FEAT_KNOWN                                                   \
    (OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD | OL_HS_FEAT_DIAL_ONLY |          \
     OL_HS_FEAT_REVERSE)

/* Big-endian u32, as every length and feature word on the wire. */
static inline void ol__be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t ol__be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

/* Channels: which kind of traffic a connection carries. */
enum {
    OL_CHAN_RAFT = 1,
    OL_CHAN_MSG = 2,
};

#define OL_FRAME_HDR 4
#define OL_FRAME_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define OL_FRAME_SIZE(n) (OL_FRAME_HDR + (size_t)(n) + OL_FRAME_ABYTES)
#define OL_HS_M4_SIZE OL_FRAME_SIZE(0)

/* The two directions of an established connection.  Always in
 * sodium_malloc() memory: the states hold the session keys. */
struct ol__sstream {
    crypto_secretstream_xchacha20poly1305_state tx;
    crypto_secretstream_xchacha20poly1305_state rx;
};

struct ol__hs;

/* What each side brings to a handshake.  Everything is borrowed for the
 * call; `key` must outlive the handshake. */
struct ol__hs_self {
    uint64_t id;
    const struct ol__key *key;
    uint8_t cluster_hash[OL_HASH_SIZE];
    uint8_t cluster_id[OL_CLUSTER_ID_SIZE]; /* all zero: not known yet */
    uint32_t features; /* OL_HS_FEAT_*: offered; 0 speaks "OLT2" only as a
                          client (a server always accepts both) */
};

/* The server's roster lookup: the public key of node `id`, 0 or
 * OL_ENOTFOUND. */
typedef int (*ol__hs_lookup_fn)(void *data, uint64_t id,
                                uint8_t pk[OL_PK_SIZE]);

/* BLAKE2b-256 of the cluster name, as bound into M1. */
void ol__hs_cluster_hash(const char *cluster, uint8_t out[OL_HASH_SIZE]);

/*
 * Start a client handshake to `server_id`, whose key must be `server_pk`,
 * on `channel`, and write M1 into `m1`: ol__hs_m1_len(self) bytes, "OLT3"
 * with self->features when they are not 0, else "OLT2".  Returns 0,
 * OL_EINVAL (bad channel, id or feature bits) or OL_ENOMEM.  Free *out
 * with ol__hs_destroy().
 */
int ol__hs_client_start(const struct ol__hs_self *self, uint8_t channel,
                        uint64_t server_id,
                        const uint8_t server_pk[OL_PK_SIZE],
                        struct ol__hs **out, uint8_t m1[OL_HS_M1_MAX]);

/* How long the M1 a client with `self` sends is. */
size_t ol__hs_m1_len(const struct ol__hs_self *self);

/* Server: how long the M1 starting with these `n` bytes is (n >= 4), so
 * that the reader knows how much to wait for. */
size_t ol__hs_m1_len_peek(const uint8_t *p, size_t n);

/* How long the M2 of this handshake is: the server's after its M1 step,
 * the one the client waits for. */
size_t ol__hs_m2_len(const struct ol__hs *hs);

/* Start a server handshake.  Returns 0 or OL_ENOMEM. */
int ol__hs_server_start(const struct ol__hs_self *self, struct ol__hs **out);

/*
 * Server: check M1 (exactly `len` bytes) and write M2 (ol__hs_m2_len()
 * bytes; `m2` holds OL_HS_M2_MAX).  Returns 0,
 * OL_EMALFORMED (wrong size, magic or channel), OL_EUNAUTH (another
 * cluster name or id or server id, or a client the lookup does not know),
 * OL_EBADSIG
 * (a degenerate ephemeral key) or OL_ESTATE (called out of order).  On
 * success ol__hs_peer_id() names the (not yet proven) client.
 */
int ol__hs_server_m1(struct ol__hs *hs, const uint8_t *m1, size_t len,
                     ol__hs_lookup_fn lookup, void *data,
                     uint8_t m2[OL_HS_M2_MAX]) OL_HS_WUR;

/* Client: verify M2 and write M3.  Returns 0, OL_EMALFORMED, OL_EBADSIG,
 * OL_EUNAUTH (the server belongs to another cluster id) or OL_ESTATE.  On success the handshake is complete on this side. */
int ol__hs_client_m2(struct ol__hs *hs, const uint8_t *m2, size_t len,
                     uint8_t m3[OL_HS_M3_SIZE]) OL_HS_WUR;

/* Server: verify M3.  Returns 0, OL_EMALFORMED, OL_EBADSIG or OL_ESTATE.
 * On success the client is authenticated as ol__hs_peer_id(). */
int ol__hs_server_m3(struct ol__hs *hs, const uint8_t *m3,
                     size_t len) OL_HS_WUR;

uint64_t ol__hs_peer_id(const struct ol__hs *hs);

/* The features both sides offered (0 for an "OLT2" handshake); final once
 * M2 is verified (client) or written (server). */
uint32_t ol__hs_features(const struct ol__hs *hs);

/* Whether the peer spoke "OLT3" (server side, after M1). */
int ol__hs_extended(const struct ol__hs *hs);

/* The cluster id the peer presented (after M1 on the server, M2 on the
 * client); all zero when it has none yet. */
const uint8_t *ol__hs_peer_cluster_id(const struct ol__hs *hs);
uint8_t ol__hs_channel(const struct ol__hs *hs);

/* The key the peer is being authenticated against (after M1 on the
 * server, from the start on the client). */
const uint8_t *ol__hs_peer_pk(const struct ol__hs *hs);

/* Take the stream state out of a completed handshake.  Returns 0 or
 * OL_ESTATE.  *out is sodium_malloc'd: free it with ol__sstream_free(). */
int ol__hs_finish(struct ol__hs *hs, struct ol__sstream **out) OL_HS_WUR;

/* Server: write M4 with the established stream.  Returns 0. */
int ol__hs_accept_seal(struct ol__sstream *ss, uint8_t m4[OL_HS_M4_SIZE]);

/* Client: check M4 (exactly `len` bytes).  Returns 0, OL_EMALFORMED or
 * OL_EBADSIG. */
int ol__hs_accept_open(struct ol__sstream *ss, const uint8_t *m4,
                       size_t len) OL_HS_WUR;

/* Wipe and free.  NULL-safe. */
void ol__hs_destroy(struct ol__hs *hs);
void ol__sstream_free(struct ol__sstream *ss);

/*
 * Seal n plaintext bytes into one frame of OL_FRAME_SIZE(n) bytes at out.
 * Returns 0 or OL_ETOOBIG (n does not fit the u32 length).
 */
int ol__frame_seal(struct ol__sstream *ss, const void *p, size_t n,
                   uint8_t *out) OL_HS_WUR;

/*
 * Read a frame header: the plaintext length it announces, checked against
 * `max_plain` before the caller allocates anything.  Returns 0,
 * OL_ETOOBIG (over the cap) or OL_EMALFORMED (shorter than the tag).
 */
int ol__frame_len(const uint8_t hdr[OL_FRAME_HDR], size_t max_plain,
                  size_t *plain_len) OL_HS_WUR;

/*
 * Open the ciphertext of one frame (clen bytes after the header) into out
 * (clen - OL_FRAME_ABYTES bytes).  Returns 0, OL_EMALFORMED (too short or
 * an unexpected tag) or OL_EBADSIG (forged, reordered or corrupted).
 */
int ol__frame_open(struct ol__sstream *ss, const uint8_t *c, size_t clen,
                   uint8_t *out) OL_HS_WUR;

#endif
