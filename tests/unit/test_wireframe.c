/* Unit tests for the transport's frame codec (replication/wireframe.h):
 * plaintexts round trip with and without compression, and whatever a
 * peer claims inside an authenticated frame (a huge size, corrupt or cut
 * zstd data, an unknown type) is refused with an error that says so. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "base/err.h"
#include "replication/handshake.h"
#include "replication/wireframe.h"

#define ALL (OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD)

static struct ol__wf w;

static void setup(void)
{
    ol__wf_init(&w);
}

static void teardown(void)
{
    ol__wf_close(&w);
}

TestSuite(wireframe, .init = setup, .fini = teardown);

/* Something like a checkpoint: msgpack-ish keys repeated, some noise. */
static uint8_t *compressible(size_t n)
{
    uint8_t *p = malloc(n);

    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)("state:counter=;"[i % 15] + (i % 97 == 0));
    return p;
}

static uint8_t *noise(size_t n)
{
    uint8_t *p = malloc(n);
    uint32_t x = 2463534242u;

    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

/* Encode then decode; the payload must come back and the frame type is
 * returned. */
static int round_trip(uint32_t feat, const uint8_t *p, size_t n,
                      size_t *plain_out)
{
    const uint8_t *plain;
    size_t plen;
    int zipped;
    uint8_t *copy;
    struct ol__wf_msg m;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__wf_encode(&w, feat, p, n, &plain, &plen, &zipped), 0);
    /* The codec reuses its buffer: decode from a copy, as the socket
     * would hand it over. */
    copy = malloc(plen ? plen : 1);
    memcpy(copy, plain, plen);
    cr_assert_eq(ol__wf_decode(&w, feat, copy, plen, 4 << 20, &m, err), 0,
                 "%s", err);
    cr_assert_eq(m.len, n);
    cr_assert(n == 0 || memcmp(m.p, p, n) == 0, "payload changed");
    cr_assert_eq(zipped, m.type == OL_WF_ZSTD);
    free(copy);
    *plain_out = plen;
    return m.type;
}

Test(wireframe, compressible_payloads_go_compressed_and_come_back)
{
    uint8_t *p = compressible(64 << 10);
    size_t plen;

    cr_assert_eq(round_trip(ALL, p, 64 << 10, &plen), OL_WF_ZSTD);
    cr_assert_lt(plen, (64u << 10) / 4, "64 KiB of repeats took %zu", plen);
    cr_assert_eq(round_trip(ALL, p, 1000, &plen), OL_WF_ZSTD);
    free(p);
}

Test(wireframe, small_or_random_payloads_go_as_they_are)
{
    uint8_t *p = compressible(4096), *r = noise(4096);
    size_t plen;

    cr_assert_eq(round_trip(ALL, p, OL_WF_COMPRESS_MIN - 1, &plen),
                 OL_WF_DATA);
    cr_assert_eq(plen, OL_WF_COMPRESS_MIN);
    cr_assert_eq(round_trip(ALL, r, 4096, &plen), OL_WF_DATA,
                 "random bytes do not shrink");
    cr_assert_eq(plen, 4097);
    cr_assert_eq(round_trip(ALL, p, 0, &plen), OL_WF_DATA);
    free(p);
    free(r);
}

Test(wireframe, without_compression_agreed_nothing_is_compressed)
{
    uint8_t *p = compressible(8192);
    size_t plen;

    cr_assert_eq(round_trip(OL_HS_FEAT_FRAMES, p, 8192, &plen), OL_WF_DATA);
    cr_assert_eq(plen, 8193);
    free(p);
}

Test(wireframe, old_connections_carry_the_payload_bare)
{
    uint8_t *p = compressible(8192);
    const uint8_t *plain;
    size_t plen, out;
    int zipped;

    cr_assert_eq(ol__wf_encode(&w, 0, p, 8192, &plain, &plen, &zipped), 0);
    cr_assert_eq(plain, p, "an old peer must get the payload itself");
    cr_assert_eq(plen, 8192);
    cr_assert_eq(zipped, 0);
    cr_assert_eq(round_trip(0, p, 8192, &out), OL_WF_DATA);
    free(p);
}

Test(wireframe, pings_round_trip)
{
    uint8_t f[9];
    struct ol__wf_msg m;
    char err[OL_ERRMSG_SIZE];

    ol__wf_ping(OL_WF_PING, 0x0102030405060708ull, f);
    cr_assert_eq(ol__wf_decode(&w, ALL, f, 9, 16, &m, err), 0, "%s", err);
    cr_assert_eq(m.type, OL_WF_PING);
    cr_assert_eq(m.id, 0x0102030405060708ull);
    ol__wf_ping(OL_WF_PONG, 7, f);
    cr_assert_eq(ol__wf_decode(&w, ALL, f, 9, 16, &m, err), 0, "%s", err);
    cr_assert_eq(m.type, OL_WF_PONG);
    cr_assert_eq(m.id, 7);
    cr_assert_eq(ol__wf_decode(&w, ALL, f, 8, 16, &m, err), OL_EMALFORMED);
    cr_assert(strstr(err, "ping") != NULL, "%s", err);
}

/* A ZSTD frame with `claim` in its length field and the zstd data of
 * `raw` (n bytes) compressed, into out; returns its length. */
static size_t zframe(uint32_t claim, const uint8_t *raw, size_t n,
                     uint8_t *out, size_t cap)
{
    size_t z = ZSTD_compress(out + 5, cap - 5, raw, n, 1);

    cr_assert(!ZSTD_isError(z));
    out[0] = OL_WF_ZSTD;
    out[1] = (uint8_t)(claim >> 24);
    out[2] = (uint8_t)(claim >> 16);
    out[3] = (uint8_t)(claim >> 8);
    out[4] = (uint8_t)claim;
    return 5 + z;
}

static int decode(uint32_t feat, const uint8_t *f, size_t n, size_t max,
                  char *err)
{
    struct ol__wf_msg m;

    return ol__wf_decode(&w, feat, f, n, max, &m, err);
}

Test(wireframe, a_claimed_size_over_the_cap_is_refused_before_decoding)
{
    uint8_t *raw = compressible(4096), f[8192];
    char err[OL_ERRMSG_SIZE];
    size_t n = zframe(4096, raw, 4096, f, sizeof f);

    cr_assert_eq(decode(ALL, f, n, 4096, err), 0, "%s", err);
    cr_assert_eq(decode(ALL, f, n, 4095, err), OL_ETOOBIG);
    cr_assert(strstr(err, "over the cap") != NULL, "%s", err);
    /* A frame claiming 4 GiB of output: refused, nothing allocated for
     * it (under ASan a 4 GiB allocation would fail loudly). */
    n = zframe(UINT32_MAX, raw, 4096, f, sizeof f);
    cr_assert_eq(decode(ALL, f, n, 64 << 10, err), OL_ETOOBIG);
    free(raw);
}

Test(wireframe, a_claim_that_disagrees_with_the_data_is_refused)
{
    uint8_t *raw = compressible(4096), f[8192];
    char err[OL_ERRMSG_SIZE];
    size_t n;

    /* Claims less than the data holds, then more. */
    n = zframe(1000, raw, 4096, f, sizeof f);
    cr_assert_eq(decode(ALL, f, n, 1 << 20, err), OL_EMALFORMED);
    cr_assert(strstr(err, "corrupt") != NULL, "%s", err);
    n = zframe(8000, raw, 4096, f, sizeof f);
    cr_assert_eq(decode(ALL, f, n, 1 << 20, err), OL_EMALFORMED);
    /* A zero claim. */
    n = zframe(0, raw, 4096, f, sizeof f);
    cr_assert_eq(decode(ALL, f, n, 1 << 20, err), OL_EMALFORMED);
    free(raw);
}

Test(wireframe, truncated_compressed_data_is_refused)
{
    uint8_t *raw = compressible(4096), f[8192];
    char err[OL_ERRMSG_SIZE];
    size_t n = zframe(4096, raw, 4096, f, sizeof f);

    for (size_t cut = 0; cut < n; cut++) {
        int rv = decode(ALL, f, cut, 1 << 20, err);

        cr_assert(rv == OL_EMALFORMED, "a frame cut to %zu of %zu bytes: %d",
                  cut, n, rv);
    }
    free(raw);
}

Test(wireframe, corrupted_compressed_data_is_refused_or_exact)
{
    uint8_t *raw = noise(600), f[2048], g[2048];
    char err[OL_ERRMSG_SIZE];
    size_t n;
    struct ol__wf_msg m;
    unsigned refused = 0;

    /* Half noise, half repeats, so the frame has literals and matches. */
    memcpy(raw + 300, raw, 300);
    n = zframe(600, raw, 600, f, sizeof f);
    cr_assert_lt(n, 5 + 600);
    for (size_t bit = 5 * 8; bit < n * 8; bit++) {
        int rv;

        memcpy(g, f, n);
        g[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        rv = ol__wf_decode(&w, ALL, g, n, 1 << 20, &m, err);
        /* zstd carries no checksum here (the frame is authenticated), so
         * a flip inside literals may decode; it must then be exactly the
         * claimed size, and anything else an error. */
        if (rv == 0)
            cr_assert_eq(m.len, 600);
        else {
            cr_assert_eq(rv, OL_EMALFORMED, "bit %zu: %d", bit, rv);
            refused++;
        }
    }
    cr_assert_gt(refused, 0, "no flip was noticed at all");
    free(raw);
}

Test(wireframe, unknown_types_and_unagreed_compression_are_refused)
{
    uint8_t *raw = compressible(1024), f[2048];
    char err[OL_ERRMSG_SIZE];
    size_t n = zframe(1024, raw, 1024, f, sizeof f);
    uint8_t odd[3] = {9, 1, 2};

    cr_assert_eq(decode(OL_HS_FEAT_FRAMES, f, n, 1 << 20, err),
                 OL_EMALFORMED);
    cr_assert(strstr(err, "not agreed") != NULL, "%s", err);
    cr_assert_eq(decode(ALL, odd, 3, 1 << 20, err), OL_EMALFORMED);
    cr_assert(strstr(err, "unknown frame type 9") != NULL, "%s", err);
    cr_assert_eq(decode(ALL, odd, 0, 1 << 20, err), OL_EMALFORMED);
    cr_assert_eq(decode(ALL, f, 4, 1 << 20, err), OL_EMALFORMED);
    free(raw);
}

Test(wireframe, plain_payloads_over_the_cap_are_refused)
{
    uint8_t f[101] = {OL_WF_DATA};
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(decode(ALL, f, 101, 100, err), 0);
    cr_assert_eq(decode(ALL, f, 101, 99, err), OL_ETOOBIG);
    cr_assert_eq(decode(0, f, 101, 100, err), OL_ETOOBIG);
}

Test(wireframe, buffers_grown_by_a_large_message_are_given_back)
{
    uint8_t *p = noise(2u << 20);
    size_t plen;

    cr_assert_eq(round_trip(ALL, p, 2u << 20, &plen), OL_WF_DATA);
    cr_assert_gt(w.enc.cap, 1u << 20);
    ol__wf_trim(&w);
    cr_assert_eq(w.enc.cap, 0);
    cr_assert_eq(round_trip(ALL, p, 4096, &plen), OL_WF_DATA);
    ol__wf_trim(&w);
    cr_assert_gt(w.enc.cap, 0, "small buffers are kept");
    free(p);
}
