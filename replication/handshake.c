/*
 * The transport's handshake state machine and frame codec.  It only turns
 * bytes into bytes: the caller reads and writes the socket, which keeps the
 * cryptographic checks testable and fuzzable without a network.  Every
 * check that fails moves the handshake to a failed state, so a caller that
 * ignores an error cannot go on to use a half-verified session.  The wire
 * format is described in handshake.h.
 */
#include "handshake.h"

#include <stdbool.h>
#include <string.h>

#include "base/err.h"

enum {
    HS_C_WAIT_M2 = 1,
    HS_S_WAIT_M1,
    HS_S_WAIT_M3,
    HS_DONE,
    HS_FAILED,
    HS_SPENT,
};

#define KEY_SIZE crypto_kx_SESSIONKEYBYTES
#define HDR_SIZE crypto_secretstream_xchacha20poly1305_HEADERBYTES

/* Domain labels keep a server signature from ever passing as a client
 * one, and these signatures from passing as anything else the key signs
 * (checkpoints). */
static const char label_server[] = "outlast/transport/2 server";
static const char label_client[] = "outlast/transport/2 client";
static const char label_keys[] = "outlast/transport/2 keys";
static const char label_cluster[] = "outlast/cluster/1";

struct ol__hs {
    int state;
    uint8_t channel;
    uint64_t self_id;
    uint64_t peer_id;
    const struct ol__key *key;
    uint8_t cluster_hash[OL_HASH_SIZE];
    uint8_t cluster_id[OL_CLUSTER_ID_SIZE];
    uint8_t peer_cluster_id[OL_CLUSTER_ID_SIZE];
    uint8_t peer_pk[OL_PK_SIZE];
    uint8_t eph_pk[crypto_kx_PUBLICKEYBYTES];
    uint8_t eph_sk[crypto_kx_SECRETKEYBYTES];
    uint8_t m1[OL_HS_M1_MAX];
    uint8_t m2[OL_HS_M2_MAX];
    size_t m1_len, m2_len;
    bool ext;                /* "OLT3": feature words in M1 and M2 */
    uint32_t features;       /* self's offer, then what both offered */
    uint8_t rxkey[KEY_SIZE]; /* server: kept from M1 until M3 */
    struct ol__sstream ss;
};

_Static_assert(OL_HS_M2_SIZE == crypto_kx_PUBLICKEYBYTES + HDR_SIZE +
                                    OL_CLUSTER_ID_SIZE + crypto_sign_BYTES,
               "M2 layout");

#define M1_ID 85                        /* client_cluster_id in M1 */
#define M2_ID (32 + HDR_SIZE)           /* server_cluster_id in M2 */
#define M2_FEAT (M2_ID + OL_CLUSTER_ID_SIZE) /* "OLT3" only */

/* Where the server's signature sits in this handshake's M2. */
static size_t m2_sig(const struct ol__hs *hs)
{
    return M2_FEAT + (hs->ext ? 4 : 0);
}

/* Two nodes that both know their cluster's id must agree on it. */
static int ids_conflict(const uint8_t *a, const uint8_t *b)
{
    static const uint8_t zero[OL_CLUSTER_ID_SIZE];

    return sodium_memcmp(a, zero, OL_CLUSTER_ID_SIZE) != 0 &&
           sodium_memcmp(b, zero, OL_CLUSTER_ID_SIZE) != 0 &&
           sodium_memcmp(a, b, OL_CLUSTER_ID_SIZE) != 0;
}
_Static_assert(OL_HS_M3_SIZE == HDR_SIZE + crypto_sign_BYTES, "M3 layout");
_Static_assert(OL_SIG_SIZE == crypto_sign_BYTES, "signature size");

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void ol__hs_cluster_hash(const char *cluster, uint8_t out[OL_HASH_SIZE])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, OL_HASH_SIZE);
    crypto_generichash_update(&st, (const uint8_t *)label_cluster,
                              sizeof label_cluster);
    crypto_generichash_update(&st, (const uint8_t *)cluster,
                              strlen(cluster));
    crypto_generichash_final(&st, out, OL_HASH_SIZE);
}

static struct ol__hs *hs_alloc(const struct ol__hs_self *self, int state)
{
    struct ol__hs *hs;

    if (sodium_init() < 0)
        return NULL;
    hs = sodium_malloc(sizeof *hs);
    if (hs == NULL)
        return NULL;
    memset(hs, 0, sizeof *hs);
    hs->state = state;
    hs->self_id = self->id;
    hs->key = self->key;
    memcpy(hs->cluster_hash, self->cluster_hash, OL_HASH_SIZE);
    memcpy(hs->cluster_id, self->cluster_id, OL_CLUSTER_ID_SIZE);
    hs->features = self->features;
    crypto_kx_keypair(hs->eph_pk, hs->eph_sk);
    return hs;
}

void ol__hs_destroy(struct ol__hs *hs)
{
    if (hs != NULL)
        sodium_free(hs); /* wipes the ephemeral secret and session keys */
}

void ol__sstream_free(struct ol__sstream *ss)
{
    if (ss != NULL)
        sodium_free(ss);
}

int ol__hs_client_start(const struct ol__hs_self *self, uint8_t channel,
                        uint64_t server_id,
                        const uint8_t server_pk[OL_PK_SIZE],
                        struct ol__hs **out, uint8_t m1[OL_HS_M1_MAX])
{
    struct ol__hs *hs;
    uint8_t *p;

    if ((channel != OL_CHAN_RAFT && channel != OL_CHAN_MSG) ||
        server_id == 0 || self->id == 0 ||
        (self->features & ~OL_HS_FEAT_KNOWN) != 0)
        return OL_EINVAL;
    hs = hs_alloc(self, HS_C_WAIT_M2);
    if (hs == NULL)
        return OL_ENOMEM;
    hs->channel = channel;
    hs->peer_id = server_id;
    memcpy(hs->peer_pk, server_pk, OL_PK_SIZE);

    hs->ext = self->features != 0;
    hs->m1_len = ol__hs_m1_len(self);
    hs->m2_len = hs->ext ? OL_HS_M2X_SIZE : OL_HS_M2_SIZE;
    p = hs->m1;
    memcpy(p, hs->ext ? OL_HS_MAGIC_X : OL_HS_MAGIC, 4);
    p[4] = channel;
    put64(p + 5, self->id);
    put64(p + 13, server_id);
    memcpy(p + 21, hs->cluster_hash, OL_HASH_SIZE);
    memcpy(p + 53, hs->eph_pk, sizeof hs->eph_pk);
    memcpy(p + M1_ID, hs->cluster_id, OL_CLUSTER_ID_SIZE);
    if (hs->ext)
        ol__be32_put(p + OL_HS_M1_SIZE, self->features);
    memcpy(m1, hs->m1, hs->m1_len);
    *out = hs;
    return 0;
}

size_t ol__hs_m1_len(const struct ol__hs_self *self)
{
    return self->features != 0 ? OL_HS_M1X_SIZE : OL_HS_M1_SIZE;
}

size_t ol__hs_m1_len_peek(const uint8_t *p, size_t n)
{
    return n >= 4 && memcmp(p, OL_HS_MAGIC_X, 4) == 0 ? OL_HS_M1X_SIZE
                                                      : OL_HS_M1_SIZE;
}

size_t ol__hs_m2_len(const struct ol__hs *hs)
{
    return hs->m2_len;
}

int ol__hs_server_start(const struct ol__hs_self *self, struct ol__hs **out)
{
    struct ol__hs *hs = hs_alloc(self, HS_S_WAIT_M1);

    if (hs == NULL)
        return OL_ENOMEM;
    *out = hs;
    return 0;
}

/* Tie both directions' keys to the whole M1 (cluster, channel, ids) and
 * the server's ephemeral key, on top of what crypto_kx already mixes in. */
static void mix_keys(const struct ol__hs *hs, const uint8_t *server_eph,
                     uint8_t rx[KEY_SIZE], uint8_t tx[KEY_SIZE])
{
    crypto_generichash_state st;
    uint8_t th[32];
    uint8_t k[KEY_SIZE];

    crypto_generichash_init(&st, NULL, 0, sizeof th);
    crypto_generichash_update(&st, (const uint8_t *)label_keys,
                              sizeof label_keys);
    crypto_generichash_update(&st, hs->m1, hs->m1_len);
    crypto_generichash_update(&st, server_eph, crypto_kx_PUBLICKEYBYTES);
    crypto_generichash_final(&st, th, sizeof th);

    crypto_generichash(k, KEY_SIZE, th, sizeof th, rx, KEY_SIZE);
    memcpy(rx, k, KEY_SIZE);
    crypto_generichash(k, KEY_SIZE, th, sizeof th, tx, KEY_SIZE);
    memcpy(tx, k, KEY_SIZE);
    sodium_memzero(k, sizeof k);
    sodium_memzero(&st, sizeof st);
}

/* Sign or verify label | a | b | c, the transcript so far. */
static size_t transcript(uint8_t *buf, const char *label, size_t label_len,
                         const uint8_t *a, size_t alen, const uint8_t *b,
                         size_t blen, const uint8_t *c, size_t clen)
{
    size_t n = 0;

    memcpy(buf + n, label, label_len);
    n += label_len;
    memcpy(buf + n, a, alen);
    n += alen;
    if (blen) {
        memcpy(buf + n, b, blen);
        n += blen;
    }
    memcpy(buf + n, c, clen);
    return n + clen;
}

#define TBS_MAX (sizeof label_client + OL_HS_M1_MAX + OL_HS_M2_MAX + HDR_SIZE)

int ol__hs_server_m1(struct ol__hs *hs, const uint8_t *m1, size_t len,
                     ol__hs_lookup_fn lookup, void *data,
                     uint8_t m2[OL_HS_M2_MAX])
{
    uint8_t rx[KEY_SIZE], tx[KEY_SIZE];
    uint8_t tbs[TBS_MAX];
    size_t n;
    uint64_t client_id, server_id;
    int rv;

    if (hs->state != HS_S_WAIT_M1)
        return OL_ESTATE;
    hs->state = HS_FAILED;
    hs->ext = len >= 4 && memcmp(m1, OL_HS_MAGIC_X, 4) == 0;
    if (len != (hs->ext ? OL_HS_M1X_SIZE : OL_HS_M1_SIZE) ||
        (!hs->ext && memcmp(m1, OL_HS_MAGIC, 4) != 0) ||
        (m1[4] != OL_CHAN_RAFT && m1[4] != OL_CHAN_MSG))
        return OL_EMALFORMED;
    client_id = get64(m1 + 5);
    server_id = get64(m1 + 13);
    if (server_id != hs->self_id ||
        memcmp(m1 + 21, hs->cluster_hash, OL_HASH_SIZE) != 0)
        return OL_EUNAUTH;
    if (client_id == 0 || lookup(data, client_id, hs->peer_pk) != 0 ||
        ids_conflict(m1 + M1_ID, hs->cluster_id))
        return OL_EUNAUTH;
    memcpy(hs->peer_cluster_id, m1 + M1_ID, OL_CLUSTER_ID_SIZE);
    hs->channel = m1[4];
    hs->peer_id = client_id;
    memcpy(hs->m1, m1, len);
    hs->m1_len = len;
    hs->m2_len = hs->ext ? OL_HS_M2X_SIZE : OL_HS_M2_SIZE;
    /* Unknown bits from a newer peer are offers we do not take up. */
    hs->features = hs->ext ? hs->features & ol__be32_get(m1 + OL_HS_M1_SIZE) : 0;

    /* crypto_kx refuses a low-order client key (all-zero shared secret). */
    if (crypto_kx_server_session_keys(rx, tx, hs->eph_pk, hs->eph_sk,
                                      m1 + 53) != 0) {
        rv = OL_EBADSIG;
        goto out;
    }
    mix_keys(hs, hs->eph_pk, rx, tx);
    memcpy(m2, hs->eph_pk, crypto_kx_PUBLICKEYBYTES);
    crypto_secretstream_xchacha20poly1305_init_push(&hs->ss.tx, m2 + 32, tx);
    memcpy(m2 + M2_ID, hs->cluster_id, OL_CLUSTER_ID_SIZE);
    if (hs->ext)
        ol__be32_put(m2 + M2_FEAT, hs->features);
    n = transcript(tbs, label_server, sizeof label_server, hs->m1,
                   hs->m1_len, NULL, 0, m2, m2_sig(hs));
    crypto_sign_detached(m2 + m2_sig(hs), NULL, tbs, n, hs->key->sk);
    memcpy(hs->m2, m2, hs->m2_len);
    memcpy(hs->rxkey, rx, KEY_SIZE);
    hs->state = HS_S_WAIT_M3;
    rv = 0;
out:
    sodium_memzero(rx, sizeof rx);
    sodium_memzero(tx, sizeof tx);
    return rv;
}

int ol__hs_client_m2(struct ol__hs *hs, const uint8_t *m2, size_t len,
                     uint8_t m3[OL_HS_M3_SIZE])
{
    uint8_t rx[KEY_SIZE], tx[KEY_SIZE];
    uint8_t tbs[TBS_MAX];
    size_t n;
    int rv;

    if (hs->state != HS_C_WAIT_M2)
        return OL_ESTATE;
    hs->state = HS_FAILED;
    if (len != hs->m2_len)
        return OL_EMALFORMED;

    /* The signature covers our own fresh M1, so a recorded M2 from another
     * session, or one from a server other than the one we dialled, fails
     * here before anything in it is used. */
    n = transcript(tbs, label_server, sizeof label_server, hs->m1,
                   hs->m1_len, NULL, 0, m2, m2_sig(hs));
    if (crypto_sign_verify_detached(m2 + m2_sig(hs), tbs, n, hs->peer_pk) !=
        0) {
        rv = OL_EBADSIG;
        goto out;
    }
    if (ids_conflict(m2 + M2_ID, hs->cluster_id)) {
        rv = OL_EUNAUTH;
        goto out;
    }
    memcpy(hs->peer_cluster_id, m2 + M2_ID, OL_CLUSTER_ID_SIZE);
    if (crypto_kx_client_session_keys(rx, tx, hs->eph_pk, hs->eph_sk, m2) !=
        0) {
        rv = OL_EBADSIG;
        goto out;
    }
    memcpy(hs->m2, m2, hs->m2_len);
    /* The server answers with what both offered; it may not add any. */
    hs->features = hs->ext ? hs->features & ol__be32_get(m2 + M2_FEAT) : 0;
    mix_keys(hs, m2, rx, tx);
    if (crypto_secretstream_xchacha20poly1305_init_pull(&hs->ss.rx, m2 + 32,
                                                        rx) != 0) {
        rv = OL_EBADSIG;
        goto out;
    }
    crypto_secretstream_xchacha20poly1305_init_push(&hs->ss.tx, m3, tx);
    n = transcript(tbs, label_client, sizeof label_client, hs->m1,
                   hs->m1_len, hs->m2, hs->m2_len, m3, HDR_SIZE);
    crypto_sign_detached(m3 + HDR_SIZE, NULL, tbs, n, hs->key->sk);
    hs->state = HS_DONE;
    rv = 0;
out:
    sodium_memzero(rx, sizeof rx);
    sodium_memzero(tx, sizeof tx);
    sodium_memzero(hs->eph_sk, sizeof hs->eph_sk);
    return rv;
}

int ol__hs_server_m3(struct ol__hs *hs, const uint8_t *m3, size_t len)
{
    uint8_t tbs[TBS_MAX];
    size_t n;
    int rv = OL_EBADSIG;

    if (hs->state != HS_S_WAIT_M3)
        return OL_ESTATE;
    hs->state = HS_FAILED;
    if (len != OL_HS_M3_SIZE) {
        rv = OL_EMALFORMED;
        goto out;
    }
    n = transcript(tbs, label_client, sizeof label_client, hs->m1,
                   hs->m1_len, hs->m2, hs->m2_len, m3, HDR_SIZE);
    if (crypto_sign_verify_detached(m3 + HDR_SIZE, tbs, n, hs->peer_pk) != 0)
        goto out;
    if (crypto_secretstream_xchacha20poly1305_init_pull(&hs->ss.rx, m3,
                                                        hs->rxkey) != 0)
        goto out;
    hs->state = HS_DONE;
    rv = 0;
out:
    sodium_memzero(hs->rxkey, sizeof hs->rxkey);
    sodium_memzero(hs->eph_sk, sizeof hs->eph_sk);
    return rv;
}

uint64_t ol__hs_peer_id(const struct ol__hs *hs)
{
    return hs->peer_id;
}

uint32_t ol__hs_features(const struct ol__hs *hs)
{
    return hs->ext ? hs->features : 0;
}

int ol__hs_extended(const struct ol__hs *hs)
{
    return hs->ext;
}

const uint8_t *ol__hs_peer_cluster_id(const struct ol__hs *hs)
{
    return hs->peer_cluster_id;
}

uint8_t ol__hs_channel(const struct ol__hs *hs)
{
    return hs->channel;
}

const uint8_t *ol__hs_peer_pk(const struct ol__hs *hs)
{
    return hs->peer_pk;
}

int ol__hs_finish(struct ol__hs *hs, struct ol__sstream **out)
{
    struct ol__sstream *ss;

    if (hs->state != HS_DONE)
        return OL_ESTATE;
    ss = sodium_malloc(sizeof *ss);
    if (ss == NULL)
        return OL_ENOMEM;
    memcpy(ss, &hs->ss, sizeof *ss);
    sodium_memzero(&hs->ss, sizeof hs->ss);
    hs->state = HS_SPENT;
    *out = ss;
    return 0;
}

int ol__frame_seal(struct ol__sstream *ss, const void *p, size_t n,
                   uint8_t *out)
{
    if (n > UINT32_MAX - OL_FRAME_ABYTES)
        return OL_ETOOBIG;
    ol__be32_put(out, (uint32_t)(n + OL_FRAME_ABYTES));
    crypto_secretstream_xchacha20poly1305_push(
        &ss->tx, out + OL_FRAME_HDR, NULL, p, n, NULL, 0,
        crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    return 0;
}

int ol__frame_len(const uint8_t hdr[OL_FRAME_HDR], size_t max_plain,
                  size_t *plain_len)
{
    uint32_t len = ol__be32_get(hdr);

    if (len < OL_FRAME_ABYTES)
        return OL_EMALFORMED;
    if (len - OL_FRAME_ABYTES > max_plain)
        return OL_ETOOBIG;
    *plain_len = len - OL_FRAME_ABYTES;
    return 0;
}

int ol__frame_open(struct ol__sstream *ss, const uint8_t *c, size_t clen,
                   uint8_t *out)
{
    unsigned char tag;

    if (clen < OL_FRAME_ABYTES)
        return OL_EMALFORMED;
    if (crypto_secretstream_xchacha20poly1305_pull(&ss->rx, out, NULL, &tag,
                                                   c, clen, NULL, 0) != 0)
        return OL_EBADSIG;
    /* We only ever send plain message tags; anything else is not ours. */
    if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        return OL_EMALFORMED;
    return 0;
}

int ol__hs_accept_seal(struct ol__sstream *ss, uint8_t m4[OL_HS_M4_SIZE])
{
    static const uint8_t none[1];

    return ol__frame_seal(ss, none, 0, m4);
}

int ol__hs_accept_open(struct ol__sstream *ss, const uint8_t *m4, size_t len)
{
    size_t plain;
    int rv;

    if (len != OL_HS_M4_SIZE)
        return OL_EMALFORMED;
    rv = ol__frame_len(m4, 0, &plain);
    if (rv != 0)
        return OL_EMALFORMED;
    return ol__frame_open(ss, m4 + OL_FRAME_HDR, len - OL_FRAME_HDR,
                          (uint8_t[1]){0});
}
