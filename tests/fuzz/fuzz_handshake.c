/*
 * libFuzzer target for the transport's handshake and frame decoders.  The
 * first input byte picks what the rest is fed to:
 *
 *   0  M1 to a fresh server (then, if it passes, M3 from what follows);
 *   1  M1 built correctly, with the input XORed over it, to a server;
 *   2  M2 to a client that sent a real M1;
 *   3  M3 to a server that answered a real M1;
 *   4  M4 to a client with an established session;
 *   5  a byte stream cut into frames the way a connection reads them.
 *
 * Keys are derived from fixed seeds so that every crash reproduces.
 * Nothing here may crash, leak or read out of bounds, whatever the bytes.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replication/handshake.h"
#include "base/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ol__key k1, k2;
static struct ol__hs_self self1, self2;

static void seed_key(struct ol__key *k, uint8_t b)
{
    uint8_t seed[crypto_sign_SEEDBYTES];

    memset(seed, b, sizeof seed);
    k->sk = sodium_malloc(OL_SK_SIZE);
    if (k->sk == NULL)
        abort();
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
}

static void init(void)
{
    static bool done;

    if (done)
        return;
    if (sodium_init() < 0)
        abort();
    seed_key(&k1, 1);
    seed_key(&k2, 2);
    self1.id = 1;
    self1.key = &k1;
    ol__hs_cluster_hash("fuzz", self1.cluster_hash);
    self2 = self1;
    self2.id = 2;
    self2.key = &k2;
    done = true;
}

static int lookup(void *arg, uint64_t id, uint8_t pk[OL_PK_SIZE])
{
    (void)arg;
    if (id == 1 || id == 2) {
        memcpy(pk, id == 1 ? k1.pk : k2.pk, OL_PK_SIZE);
        return 0;
    }
    return -1;
}

/* Client (node 1) and server (node 2) up to the step `upto`:
 * 1 = client sent M1; 2 = server answered M2; 3 = both complete. */
struct session {
    struct ol__hs *c, *s;
    uint8_t m1[OL_HS_M1_MAX], m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE];
};

static bool session(struct session *x, int upto)
{
    memset(x, 0, sizeof *x);
    if (ol__hs_client_start(&self1, OL_CHAN_MSG, 2, k2.pk, &x->c, x->m1) != 0)
        return false;
    if (ol__hs_server_start(&self2, &x->s) != 0)
        return false;
    if (upto >= 2 &&
        ol__hs_server_m1(x->s, x->m1, OL_HS_M1_SIZE, lookup, NULL, x->m2) != 0)
        return false;
    if (upto >= 3 && (ol__hs_client_m2(x->c, x->m2, OL_HS_M2_SIZE, x->m3) != 0 ||
                      ol__hs_server_m3(x->s, x->m3, sizeof x->m3) != 0))
        return false;
    return true;
}

static void session_free(struct session *x)
{
    ol__hs_destroy(x->c);
    ol__hs_destroy(x->s);
}

/* Read frames as transport_conn.c does: length first, checked against
 * the cap, then the ciphertext. */
static void frames(struct ol__sstream *rx, const uint8_t *p, size_t n)
{
    while (n >= OL_FRAME_HDR) {
        size_t plain, total;
        uint8_t *out;
        int rv;

        if (ol__frame_len(p, 1u << 16, &plain) != 0)
            return;
        total = OL_FRAME_SIZE(plain);
        if (n < total)
            return;
        out = malloc(plain ? plain : 1);
        if (out == NULL)
            return;
        rv = ol__frame_open(rx, p + OL_FRAME_HDR, total - OL_FRAME_HDR, out);
        free(out);
        if (rv != 0)
            return;
        p += total;
        n -= total;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct session x;
    struct ol__sstream *cs = NULL, *ss = NULL;
    uint8_t m2[OL_HS_M2_MAX], m3[OL_HS_M3_SIZE], m1[OL_HS_M1_MAX];
    uint8_t mode;

    init();
    if (size < 1)
        return 0;
    mode = data[0] % 6;
    data++;
    size--;

    switch (mode) {
    case 0: {
        size_t n = size < OL_HS_M1_SIZE ? size : OL_HS_M1_SIZE;
        struct ol__hs *s;

        if (ol__hs_server_start(&self2, &s) != 0)
            return 0;
        /* Short inputs go in whole, so that every length is tried; the
         * rest of a long one is M3. */
        if (ol__hs_server_m1(s, data, n, lookup, NULL, m2) == 0)
            (void)ol__hs_server_m3(s, data + n, size - n);
        ol__hs_destroy(s);
        return 0;
    }
    case 1:
        if (!session(&x, 1))
            break;
        memcpy(m1, x.m1, OL_HS_M1_SIZE);
        for (size_t i = 0; i < size && i < OL_HS_M1_SIZE; i++)
            m1[i] ^= data[i];
        (void)ol__hs_server_m1(x.s, m1, OL_HS_M1_SIZE, lookup, NULL, m2);
        break;
    case 2:
        if (!session(&x, 1))
            break;
        (void)ol__hs_client_m2(x.c, data, size, m3);
        break;
    case 3:
        if (!session(&x, 2))
            break;
        (void)ol__hs_server_m3(x.s, data, size);
        break;
    case 4:
        if (!session(&x, 3) || ol__hs_finish(x.c, &cs) != 0)
            break;
        (void)ol__hs_accept_open(cs, data, size);
        break;
    default:
        if (!session(&x, 3) || ol__hs_finish(x.c, &cs) != 0 ||
            ol__hs_finish(x.s, &ss) != 0)
            break;
        frames(ss, data, size);
        break;
    }
    ol__sstream_free(cs);
    ol__sstream_free(ss);
    session_free(&x);
    return 0;
}
