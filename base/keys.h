/*
 * Node identity: an Ed25519 key pair.  The secret half lives in
 * sodium_malloc() memory and is wiped on close; key files are mode 0600.
 */
#ifndef OL_KEYS_H
#define OL_KEYS_H

#include <stdint.h>

#define OL_PK_SIZE 32
#define OL_SK_SIZE 64
#define OL_SIG_SIZE 64
#define OL_HASH_SIZE 32
#define OL_PK_HEX_SIZE (2 * OL_PK_SIZE + 1)

struct ol__key {
    uint8_t pk[OL_PK_SIZE];
    uint8_t *sk; /* sodium_malloc'd, OL_SK_SIZE bytes */
};

/* Create a fresh key pair.  Returns 0 or OL_ENOMEM. */
int ol__key_generate(struct ol__key *k);

/* Load a key file.  Refuses files readable by group or others.  Returns 0,
 * OL_ENOTFOUND, OL_EUNAUTH (bad mode) or OL_EMALFORMED, with errmsg set. */
int ol__key_load(struct ol__key *k, const char *path, char *errmsg)
    __attribute__((warn_unused_result));

/* Write a key file atomically with mode 0600. */
int ol__key_save(const struct ol__key *k, const char *path, char *errmsg);

/* Load `path`, or generate and save a new key there if it does not exist.
 * *created (may be NULL) tells which happened. */
int ol__key_load_or_create(struct ol__key *k, const char *path, int *created,
                           char *errmsg);

/* Wipe and free the secret.  NULL-safe, idempotent. */
void ol__key_close(struct ol__key *k);

/* Parse 64 hex digits into a public key.  Returns 0 or OL_EMALFORMED. */
int ol__pk_parse(const char *hex, uint8_t pk[OL_PK_SIZE])
    __attribute__((warn_unused_result));

void ol__pk_hex(const uint8_t pk[OL_PK_SIZE], char out[OL_PK_HEX_SIZE]);

#endif
