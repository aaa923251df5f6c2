/*
 * Seal encoding, signing and verification.  See seal.h for why checkpoints
 * are signed in batches.
 */
#include "seal.h"

#include <msgpack.h>
#include <sodium.h>
#include <string.h>

#include "base/err.h"
#include "base/mpr.h"

int ol__seal_make(const struct ol__key *key, int64_t time_ms,
                  const uint8_t *hashes, uint32_t n, struct ol__buf *body,
                  uint8_t sig[OL_SIG_SIZE])
{
    msgpack_packer pk;
    size_t start = body->len;

    if (n == 0 || n > OL_SEAL_MAX_HASHES)
        return OL_EINVAL;
    msgpack_packer_init(&pk, body, ol__buf_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, OL_SEAL_FORMAT);
    msgpack_pack_bin(&pk, OL_PK_SIZE);
    msgpack_pack_bin_body(&pk, key->pk, OL_PK_SIZE);
    msgpack_pack_int64(&pk, time_ms);
    msgpack_pack_bin(&pk, (size_t)n * OL_HASH_SIZE);
    msgpack_pack_bin_body(&pk, hashes, (size_t)n * OL_HASH_SIZE);
    if (body->base == NULL ||
        body->len - start < (size_t)n * OL_HASH_SIZE + OL_PK_SIZE)
        return OL_ENOMEM;
    crypto_sign_detached(sig, NULL, body->base + start, body->len - start,
                         key->sk);
    return 0;
}

int ol__seal_parse(const void *body, size_t len, struct ol__seal *out)
{
    struct ol__mpr r;
    uint32_t n, hlen;
    uint64_t format;
    const void *h;

    ol__mpr_init(&r, body, len);
    if (ol__mpr_array(&r, &n) || n != 4 || ol__mpr_uint(&r, &format) ||
        format != OL_SEAL_FORMAT ||
        ol__mpr_bin_fixed(&r, out->signer, OL_PK_SIZE) ||
        ol__mpr_int(&r, &out->time_ms) || ol__mpr_bin(&r, &h, &hlen) ||
        !ol__mpr_done(&r))
        return OL_EMALFORMED;
    if (hlen == 0 || hlen % OL_HASH_SIZE != 0 ||
        hlen / OL_HASH_SIZE > OL_SEAL_MAX_HASHES)
        return OL_EMALFORMED;
    out->hashes = h;
    out->n = hlen / OL_HASH_SIZE;
    return 0;
}

int ol__seal_verify(const void *body, size_t len,
                    const uint8_t sig[OL_SIG_SIZE], struct ol__seal *out)
{
    if (ol__seal_parse(body, len, out) != 0)
        return OL_EMALFORMED;
    if (crypto_sign_verify_detached(sig, body, len, out->signer) != 0)
        return OL_EBADSIG;
    return 0;
}

void ol__seal_hash(const void *body, size_t len, uint8_t out[OL_HASH_SIZE])
{
    crypto_generichash(out, OL_HASH_SIZE, body, len, NULL, 0);
}
