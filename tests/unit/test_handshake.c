/* Unit tests for the transport handshake and frame codec, without sockets:
 * every message and frame is handed over as bytes, changed on the way
 * where a test wants it. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replication/handshake.h"
#include "base/err.h"
#include "base/keys.h"

static struct ol__key k1, k2, k3;
static struct ol__hs_self self1, self2;

/* The server's roster: nodes 1 and 2. */
static int lookup(void *data, uint64_t id, uint8_t pk[OL_PK_SIZE])
{
    (void)data;
    if (id == 1) {
        memcpy(pk, k1.pk, OL_PK_SIZE);
        return 0;
    }
    if (id == 2) {
        memcpy(pk, k2.pk, OL_PK_SIZE);
        return 0;
    }
    return OL_ENOTFOUND;
}

static void setup(void)
{
    cr_assert_eq(ol__key_generate(&k1), 0);
    cr_assert_eq(ol__key_generate(&k2), 0);
    cr_assert_eq(ol__key_generate(&k3), 0);
    self1.id = 1;
    self1.key = &k1;
    ol__hs_cluster_hash("test", self1.cluster_hash);
    self2 = self1;
    self2.id = 2;
    self2.key = &k2;
}

static void teardown(void)
{
    ol__key_close(&k1);
    ol__key_close(&k2);
    ol__key_close(&k3);
}

TestSuite(handshake, .init = setup, .fini = teardown);
TestSuite(frame, .init = setup, .fini = teardown);

enum { NONE, FLIP, TRUNC, EXTEND };

static void tamper(uint8_t *m, size_t *len, int mode, size_t arg)
{
    if (mode == FLIP)
        m[arg / 8] ^= (uint8_t)(1u << (arg % 8));
    else if (mode == TRUNC)
        *len = arg;
    else if (mode == EXTEND)
        m[(*len)++] = 0;
}

/* One frame each way; 0 only if both open to what was sealed. */
static int exchange(struct ol__sstream *a, struct ol__sstream *b)
{
    static const char ping[] = "ping", pong[] = "pong!";
    uint8_t f[OL_FRAME_SIZE(16)], out[16];
    size_t n;
    int rv;

    if (ol__frame_seal(a, ping, sizeof ping, f) != 0)
        return -1;
    if ((rv = ol__frame_len(f, 16, &n)) != 0 || n != sizeof ping)
        return rv ? rv : -1;
    if ((rv = ol__frame_open(b, f + OL_FRAME_HDR, n + OL_FRAME_ABYTES,
                             out)) != 0)
        return rv;
    if (memcmp(out, ping, n) != 0)
        return -1;
    if (ol__frame_seal(b, pong, sizeof pong, f) != 0)
        return -1;
    if ((rv = ol__frame_len(f, 16, &n)) != 0 || n != sizeof pong)
        return rv ? rv : -1;
    if ((rv = ol__frame_open(a, f + OL_FRAME_HDR, n + OL_FRAME_ABYTES,
                             out)) != 0)
        return rv;
    return memcmp(out, pong, n) == 0 ? 0 : -1;
}

/*
 * A whole handshake, node 1 dialling node 2, with message `which` (1..4)
 * changed in transit.  Returns 0 only if both sides complete and a frame
 * opens in each direction.
 */
/* Start a client as `cl` dialling node `id` (key `pk`) on channel `chan`
 * and a server as `sv`, and hand the client's M1 to the server; returns
 * what the server said.  The caller destroys *c and *s. */
static int hello(const struct ol__hs_self *cl, uint8_t chan, uint64_t id,
                 const uint8_t *pk, const struct ol__hs_self *sv,
                 struct ol__hs **c, struct ol__hs **s,
                 uint8_t m1[OL_HS_M1_MAX], uint8_t m2[OL_HS_M2_MAX])
{
    cr_assert_eq(ol__hs_client_start(cl, chan, id, pk, c, m1), 0);
    cr_assert_eq(ol__hs_server_start(sv, s), 0);
    return ol__hs_server_m1(*s, m1, ol__hs_m1_len(cl), lookup, NULL, m2);
}

static int run(int which, int mode, size_t arg)
{
    uint8_t m1[OL_HS_M1_MAX + 1], m2[OL_HS_M2_MAX + 1],
        m3[OL_HS_M3_SIZE + 1], m4[OL_HS_M4_SIZE + 1];
    size_t l1 = ol__hs_m1_len(&self1),
           l2 = self1.features ? OL_HS_M2X_SIZE : OL_HS_M2_SIZE,
           l3 = OL_HS_M3_SIZE, l4 = OL_HS_M4_SIZE;
    struct ol__hs *c = NULL, *s = NULL;
    struct ol__sstream *cs = NULL, *ss = NULL;
    int rv;

    cr_assert_eq(ol__hs_client_start(&self1, OL_CHAN_MSG, 2, k2.pk, &c, m1),
                 0);
    cr_assert_eq(ol__hs_server_start(&self2, &s), 0);
    if (which == 1)
        tamper(m1, &l1, mode, arg);
    if ((rv = ol__hs_server_m1(s, m1, l1, lookup, NULL, m2)) != 0)
        goto out;
    if (which == 2)
        tamper(m2, &l2, mode, arg);
    if ((rv = ol__hs_client_m2(c, m2, l2, m3)) != 0)
        goto out;
    if (which == 3)
        tamper(m3, &l3, mode, arg);
    if ((rv = ol__hs_server_m3(s, m3, l3)) != 0)
        goto out;
    cr_assert_eq(ol__hs_finish(c, &cs), 0);
    cr_assert_eq(ol__hs_finish(s, &ss), 0);
    cr_assert_eq(ol__hs_accept_seal(ss, m4), 0);
    if (which == 4)
        tamper(m4, &l4, mode, arg);
    if ((rv = ol__hs_accept_open(cs, m4, l4)) != 0)
        goto out;
    rv = exchange(cs, ss);
out:
    ol__hs_destroy(c);
    ol__hs_destroy(s);
    ol__sstream_free(cs);
    ol__sstream_free(ss);
    return rv;
}

static void pair(struct ol__sstream **cs, struct ol__sstream **ss)
{
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE];
    struct ol__hs *c, *s;

    cr_assert_eq(hello(&self1, OL_CHAN_RAFT, 2, k2.pk, &self2, &c, &s, m1, m2),
                 0);
    cr_assert_eq(ol__hs_client_m2(c, m2, OL_HS_M2_SIZE, m3), 0);
    cr_assert_eq(ol__hs_server_m3(s, m3, sizeof m3), 0);
    cr_assert_eq(ol__hs_peer_id(s), 1);
    cr_assert_eq(ol__hs_peer_id(c), 2);
    cr_assert_eq(ol__hs_channel(s), OL_CHAN_RAFT);
    cr_assert_eq(ol__hs_finish(c, cs), 0);
    cr_assert_eq(ol__hs_finish(s, ss), 0);
    ol__hs_destroy(c);
    ol__hs_destroy(s);
}

Test(handshake, good_handshake_derives_matching_keys)
{
    struct ol__sstream *cs, *ss;

    cr_assert_eq(run(0, NONE, 0), 0);
    pair(&cs, &ss);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(exchange(cs, ss), 0, "round %d", i);
    /* Each direction has its own key: a frame cannot be opened by the
     * side that sealed it. */
    {
        uint8_t f[OL_FRAME_SIZE(1)], out[1];

        cr_assert_eq(ol__frame_seal(cs, "x", 1, f), 0);
        cr_assert_neq(ol__frame_open(cs, f + 4, 1 + OL_FRAME_ABYTES, out), 0);
    }
    ol__sstream_free(cs);
    ol__sstream_free(ss);
}

/* Every bit of M1..M4 (of the given sizes) flipped, one at a time. */
static void every_flip(const size_t sizes[4])
{
    for (int which = 1; which <= 4; which++)
        for (size_t bit = 0; bit < sizes[which - 1] * 8; bit++)
            cr_assert_neq(run(which, FLIP, bit), 0,
                          "accepted M%d with bit %zu flipped", which, bit);
}

/* M1..M4 cut to every shorter length, and one byte too long. */
static void every_cut(const size_t sizes[4])
{
    for (int which = 1; which <= 4; which++) {
        for (size_t n = 0; n < sizes[which - 1]; n++)
            cr_assert_eq(run(which, TRUNC, n), OL_EMALFORMED,
                         "accepted a %zu-byte M%d", n, which);
        cr_assert_eq(run(which, EXTEND, 0), OL_EMALFORMED,
                     "accepted an over-long M%d", which);
    }
}

static const size_t old_sizes[] = {OL_HS_M1_SIZE, OL_HS_M2_SIZE,
                                   OL_HS_M3_SIZE, OL_HS_M4_SIZE};

Test(handshake, every_bit_flip_is_rejected)
{
    every_flip(old_sizes);
}

Test(handshake, every_truncation_and_extension_is_rejected)
{
    every_cut(old_sizes);
}

Test(handshake, unknown_id_is_rejected)
{
    struct ol__hs_self self3 = self1;
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX];
    struct ol__hs *c, *s;

    self3.id = 3;
    self3.key = &k3;
    cr_assert_eq(hello(&self3, OL_CHAN_MSG, 2, k2.pk, &self2, &c, &s, m1, m2),
                 OL_EUNAUTH);
    ol__hs_destroy(c);
    ol__hs_destroy(s);
}

Test(handshake, wrong_key_is_rejected_both_ways)
{
    struct ol__hs_self impostor = self1;
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE];
    struct ol__hs *c, *s;

    /* A client claiming node 1 with another key. */
    impostor.key = &k3;
    cr_assert_eq(
        hello(&impostor, OL_CHAN_MSG, 2, k2.pk, &self2, &c, &s, m1, m2), 0);
    cr_assert_eq(ol__hs_client_m2(c, m2, OL_HS_M2_SIZE, m3), 0);
    cr_assert_eq(ol__hs_server_m3(s, m3, sizeof m3), OL_EBADSIG);
    ol__hs_destroy(c);
    ol__hs_destroy(s);

    /* A server answering for node 2 with another key. */
    impostor = self2;
    impostor.key = &k3;
    cr_assert_eq(
        hello(&self1, OL_CHAN_MSG, 2, k2.pk, &impostor, &c, &s, m1, m2), 0);
    cr_assert_eq(ol__hs_client_m2(c, m2, OL_HS_M2_SIZE, m3), OL_EBADSIG);
    ol__hs_destroy(c);
    ol__hs_destroy(s);
}

Test(handshake, other_cluster_or_server_is_rejected)
{
    struct ol__hs_self other = self1;
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX];
    struct ol__hs *c, *s;

    ol__hs_cluster_hash("prod", other.cluster_hash);
    cr_assert_eq(hello(&other, OL_CHAN_MSG, 2, k2.pk, &self2, &c, &s, m1, m2),
                 OL_EUNAUTH);
    ol__hs_destroy(c);
    ol__hs_destroy(s);

    /* Dialled node 1, reached node 2. */
    cr_assert_eq(hello(&self1, OL_CHAN_MSG, 1, k1.pk, &self2, &c, &s, m1, m2),
                 OL_EUNAUTH);
    ol__hs_destroy(c);
    ol__hs_destroy(s);
}

Test(handshake, replayed_client_messages_fail)
{
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE];
    uint8_t m2b[OL_HS_M2_MAX];
    struct ol__hs *c, *s;

    cr_assert_eq(hello(&self1, OL_CHAN_MSG, 2, k2.pk, &self2, &c, &s, m1, m2),
                 0);
    cr_assert_eq(ol__hs_client_m2(c, m2, OL_HS_M2_SIZE, m3), 0);
    cr_assert_eq(ol__hs_server_m3(s, m3, sizeof m3), 0);
    ol__hs_destroy(c);
    ol__hs_destroy(s);

    /* An attacker replays the recorded M1 and M3 to a fresh server. */
    cr_assert_eq(ol__hs_server_start(&self2, &s), 0);
    cr_assert_eq(ol__hs_server_m1(s, m1, OL_HS_M1_SIZE, lookup, NULL, m2b), 0);
    cr_assert_neq(memcmp(m2, m2b, OL_HS_M2_SIZE), 0, "server reused an ephemeral");
    cr_assert_eq(ol__hs_server_m3(s, m3, sizeof m3), OL_EBADSIG);
    ol__hs_destroy(s);
}

Test(handshake, replayed_server_message_fails)
{
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE];
    struct ol__hs *c, *s;

    cr_assert_eq(hello(&self1, OL_CHAN_MSG, 2, k2.pk, &self2, &c, &s, m1, m2),
                 0);
    ol__hs_destroy(c);
    ol__hs_destroy(s);

    cr_assert_eq(ol__hs_client_start(&self1, OL_CHAN_MSG, 2, k2.pk, &c, m1),
                 0);
    cr_assert_eq(ol__hs_client_m2(c, m2, OL_HS_M2_SIZE, m3), OL_EBADSIG);
    ol__hs_destroy(c);
}

Test(handshake, steps_out_of_order_or_after_failure_are_refused)
{
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE];
    struct ol__hs *c, *s;
    struct ol__sstream *ss;

    cr_assert_eq(ol__hs_client_start(&self1, OL_CHAN_MSG, 2, k2.pk, &c, m1),
                 0);
    cr_assert_eq(ol__hs_server_start(&self2, &s), 0);
    cr_assert_eq(ol__hs_server_m3(s, m3, sizeof m3), OL_ESTATE);
    cr_assert_eq(ol__hs_finish(c, &ss), OL_ESTATE);
    cr_assert_eq(ol__hs_server_m1(c, m1, OL_HS_M1_SIZE, lookup, NULL, m2),
                 OL_ESTATE);
    ol__hs_destroy(s);

    /* Once a step fails the handshake stays failed. */
    cr_assert_eq(ol__hs_server_start(&self2, &s), 0);
    m1[0] ^= 1;
    cr_assert_eq(ol__hs_server_m1(s, m1, OL_HS_M1_SIZE, lookup, NULL, m2),
                 OL_EMALFORMED);
    m1[0] ^= 1;
    cr_assert_eq(ol__hs_server_m1(s, m1, OL_HS_M1_SIZE, lookup, NULL, m2),
                 OL_ESTATE);
    cr_assert_eq(ol__hs_finish(s, &ss), OL_ESTATE);
    ol__hs_destroy(s);
    ol__hs_destroy(c);
    cr_assert_eq(ol__hs_client_start(&self1, 7, 2, k2.pk, &c, m1), OL_EINVAL);
}

Test(frame, tampered_frame_is_rejected)
{
    struct ol__sstream *cs, *ss;
    static const char msg[] = "append entries 17..42";
    uint8_t f[OL_FRAME_SIZE(sizeof msg)], g[sizeof f], out[sizeof msg];

    pair(&cs, &ss);
    cr_assert_eq(ol__frame_seal(cs, msg, sizeof msg, f), 0);
    for (size_t bit = 0; bit < sizeof f * 8; bit++) {
        struct ol__sstream *rx = sodium_malloc(sizeof *rx);
        size_t n;
        int rv;

        /* Fresh copy of the receiving state: a failed open must be
         * judged on this flip alone. */
        memcpy(rx, ss, sizeof *rx);
        memcpy(g, f, sizeof f);
        g[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        rv = ol__frame_len(g, 1024, &n);
        if (rv == 0 && OL_FRAME_SIZE(n) <= sizeof g)
            rv = ol__frame_open(rx, g + OL_FRAME_HDR, n + OL_FRAME_ABYTES,
                                out);
        else if (rv == 0)
            rv = -1; /* announces more bytes than exist: never completes */
        cr_assert_neq(rv, 0, "accepted a frame with bit %zu flipped", bit);
        ol__sstream_free(rx);
    }
    /* The untouched frame still opens. */
    cr_assert_eq(ol__frame_open(ss, f + 4, sizeof f - 4, out), 0);
    cr_assert_eq(memcmp(out, msg, sizeof msg), 0);
    ol__sstream_free(cs);
    ol__sstream_free(ss);
}

Test(frame, reordered_and_replayed_frames_are_rejected)
{
    struct ol__sstream *cs, *ss;
    uint8_t f1[OL_FRAME_SIZE(3)], f2[OL_FRAME_SIZE(3)], out[3];

    pair(&cs, &ss);
    cr_assert_eq(ol__frame_seal(cs, "one", 3, f1), 0);
    cr_assert_eq(ol__frame_seal(cs, "two", 3, f2), 0);
    cr_assert_eq(ol__frame_open(ss, f2 + 4, sizeof f2 - 4, out), OL_EBADSIG);
    cr_assert_eq(ol__frame_open(ss, f1 + 4, sizeof f1 - 4, out), 0);
    cr_assert_eq(ol__frame_open(ss, f1 + 4, sizeof f1 - 4, out), OL_EBADSIG);
    cr_assert_eq(ol__frame_open(ss, f2 + 4, sizeof f2 - 4, out), 0);
    cr_assert_eq(memcmp(out, "two", 3), 0);
    ol__sstream_free(cs);
    ol__sstream_free(ss);
}

Test(frame, lengths_are_checked_before_anything_is_allocated)
{
    uint8_t hdr[4];
    size_t n = 12345;
    uint32_t cap = 65536;
    uint32_t len;

    /* Announces cap + 1 bytes of plaintext. */
    len = cap + 1 + OL_FRAME_ABYTES;
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
    cr_assert_eq(ol__frame_len(hdr, cap, &n), OL_ETOOBIG);
    cr_assert_eq(n, 12345, "wrote a length it rejected");
    len--;
    hdr[3] = (uint8_t)len;
    cr_assert_eq(ol__frame_len(hdr, cap, &n), 0);
    cr_assert_eq(n, cap);

    memset(hdr, 0xff, sizeof hdr);
    cr_assert_eq(ol__frame_len(hdr, cap, &n), OL_ETOOBIG);
    memset(hdr, 0, sizeof hdr);
    cr_assert_eq(ol__frame_len(hdr, cap, &n), OL_EMALFORMED);
    hdr[3] = OL_FRAME_ABYTES - 1;
    cr_assert_eq(ol__frame_len(hdr, cap, &n), OL_EMALFORMED);
    hdr[3] = OL_FRAME_ABYTES;
    cr_assert_eq(ol__frame_len(hdr, cap, &n), 0);
    cr_assert_eq(n, 0);
}

Test(frame, short_ciphertext_and_huge_plaintext_are_refused)
{
    struct ol__sstream *cs, *ss;
    uint8_t buf[64] = {0};

    pair(&cs, &ss);
    for (size_t n = 0; n < OL_FRAME_ABYTES; n++)
        cr_assert_eq(ol__frame_open(ss, buf, n, buf + 32), OL_EMALFORMED);
    /* Refused on the size alone: nothing is read from the pointer. */
    cr_assert_eq(ol__frame_seal(cs, buf, SIZE_MAX, buf), OL_ETOOBIG);
    ol__sstream_free(cs);
    ol__sstream_free(ss);
}

/* --- features: "OLT3" hellos, and old and new nodes meeting */

TestSuite(handshake_ext, .init = setup, .fini = teardown);

/* A whole handshake with the selves as they are; the features each side
 * ends with go to *fc and *fs. */
static void agree(uint32_t *fc, uint32_t *fs, size_t *m1_len,
                  size_t *m2_len)
{
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE];
    struct ol__hs *c, *s;
    struct ol__sstream *cs, *ss;

    cr_assert_eq(hello(&self1, OL_CHAN_MSG, 2, k2.pk, &self2, &c, &s, m1, m2),
                 0);
    *m1_len = ol__hs_m1_len(&self1);
    *m2_len = ol__hs_m2_len(s);
    cr_assert_eq(ol__hs_m2_len(c), *m2_len, "client waits for another M2");
    cr_assert_eq(ol__hs_client_m2(c, m2, ol__hs_m2_len(c), m3), 0);
    cr_assert_eq(ol__hs_server_m3(s, m3, sizeof m3), 0);
    *fc = ol__hs_features(c);
    *fs = ol__hs_features(s);
    cr_assert_eq(ol__hs_finish(c, &cs), 0);
    cr_assert_eq(ol__hs_finish(s, &ss), 0);
    cr_assert_eq(exchange(cs, ss), 0);
    ol__hs_destroy(c);
    ol__hs_destroy(s);
    ol__sstream_free(cs);
    ol__sstream_free(ss);
}

Test(handshake_ext, both_offering_agree_on_what_both_offered)
{
    uint32_t fc, fs;
    size_t l1, l2;

    self1.features = OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD;
    self2.features = OL_HS_FEAT_FRAMES;
    agree(&fc, &fs, &l1, &l2);
    cr_assert_eq(l1, OL_HS_M1X_SIZE);
    cr_assert_eq(l2, OL_HS_M2X_SIZE);
    cr_assert_eq(fc, OL_HS_FEAT_FRAMES, "client: %#x", fc);
    cr_assert_eq(fs, OL_HS_FEAT_FRAMES, "server: %#x", fs);

    self2.features = OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD;
    agree(&fc, &fs, &l1, &l2);
    cr_assert_eq(fc, OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD);
    cr_assert_eq(fs, fc);
}

Test(handshake_ext, an_old_client_gets_the_old_handshake)
{
    uint32_t fc, fs;
    size_t l1, l2;

    self1.features = 0; /* what a node from before features sends */
    self2.features = OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD;
    agree(&fc, &fs, &l1, &l2);
    cr_assert_eq(l1, OL_HS_M1_SIZE);
    cr_assert_eq(l2, OL_HS_M2_SIZE, "an old client cannot read a longer M2");
    cr_assert_eq(fc, 0);
    cr_assert_eq(fs, 0);
}

Test(handshake_ext, a_server_offering_nothing_agrees_to_nothing)
{
    uint32_t fc, fs;
    size_t l1, l2;

    self1.features = OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD;
    self2.features = 0;
    agree(&fc, &fs, &l1, &l2);
    cr_assert_eq(l2, OL_HS_M2X_SIZE);
    cr_assert_eq(fc, 0);
    cr_assert_eq(fs, 0);
}

Test(handshake_ext, unknown_feature_bits_are_refused_at_home)
{
    uint8_t m1[OL_HS_M1_MAX];
    struct ol__hs *c = NULL;

    self1.features = 0x80;
    cr_assert_eq(ol__hs_client_start(&self1, OL_CHAN_MSG, 2, k2.pk, &c, m1),
                 OL_EINVAL);
}

Test(handshake_ext, every_bit_flip_and_truncation_is_rejected)
{
    static const size_t sizes[] = {OL_HS_M1X_SIZE, OL_HS_M2X_SIZE,
                                   OL_HS_M3_SIZE, OL_HS_M4_SIZE};

    self1.features = OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD;
    self2.features = OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD;
    cr_assert_eq(run(0, NONE, 0), 0);
    every_flip(sizes);
    every_cut(sizes);
}

Test(handshake_ext, an_extended_hello_cut_to_the_old_size_is_refused)
{
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX];
    struct ol__hs *c, *s;

    self1.features = OL_HS_FEAT_FRAMES;
    cr_assert_eq(ol__hs_client_start(&self1, OL_CHAN_MSG, 2, k2.pk, &c, m1),
                 0);
    cr_assert_eq(memcmp(m1, OL_HS_MAGIC_X, 4), 0);
    cr_assert_eq(ol__hs_m1_len_peek(m1, 4), OL_HS_M1X_SIZE);
    cr_assert_eq(ol__hs_server_start(&self2, &s), 0);
    /* What an old server reads of it: the old size, a magic it refuses. */
    cr_assert_eq(ol__hs_server_m1(s, m1, OL_HS_M1_SIZE, lookup, NULL, m2),
                 OL_EMALFORMED);
    ol__hs_destroy(c);
    ol__hs_destroy(s);
}
