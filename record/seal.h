/*
 * Seals: one Ed25519 signature over a batch of checkpoint hashes.
 *
 * Signing each checkpoint on its own would cost more than writing it (16 us
 * to sign and 41 us to verify, against about 4 us for a batched SQLite
 * insert), so a node signs batches: a seal is the msgpack array
 *
 *     [1, signer: bin32, time_ms: int, hashes: bin(32 * n)]
 *
 * signed with the signer's Ed25519 key.  A checkpoint is authentic when its
 * BLAKE2b-256 hash is hashes[idx] of a seal whose signature verifies.  The
 * seal's own hash identifies it.
 */
#ifndef OL_SEAL_H
#define OL_SEAL_H

#include <stdint.h>

#include "base/buf.h"
#include "base/keys.h"

#define WUR __attribute__((warn_unused_result))

#define OL_SEAL_FORMAT 1
#define OL_SEAL_MAX_HASHES 65536

struct ol__seal {
    uint8_t signer[OL_PK_SIZE];
    int64_t time_ms;
    const uint8_t *hashes; /* n * OL_HASH_SIZE bytes, points into the seal */
    uint32_t n;
};

/* Encode a seal over `n` hashes (n * 32 contiguous bytes) into `body` and
 * sign it into `sig`.  Returns 0, OL_EINVAL or OL_ENOMEM. */
int ol__seal_make(const struct ol__key *key, int64_t time_ms,
                  const uint8_t *hashes, uint32_t n, struct ol__buf *body,
                  uint8_t sig[OL_SIG_SIZE]);

/* Parse a seal body; `out` points into `body`.  0 or OL_EMALFORMED. */
int ol__seal_parse(const void *body, size_t len, struct ol__seal *out) WUR;

/* Verify `sig` over `body` by the signer named inside it.  Parses first
 * (only fixed-size fields, nothing is trusted before the check).  Returns
 * 0, OL_EMALFORMED or OL_EBADSIG. */
int ol__seal_verify(const void *body, size_t len,
                    const uint8_t sig[OL_SIG_SIZE], struct ol__seal *out) WUR;

/* The seal's identity: BLAKE2b-256 of its body. */
void ol__seal_hash(const void *body, size_t len, uint8_t out[OL_HASH_SIZE]);

#endif
