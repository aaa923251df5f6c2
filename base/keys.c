/*
 * Node key files.  The format is text so an operator can read the public
 * half out of it:
 *
 *     # outlast node key - keep secret
 *     seed = <64 hex digits>
 *     public = <64 hex digits>
 *
 * Only the seed is secret; the public key is re-derived on load and must
 * match the file, which catches a truncated or hand-edited key.
 */
#include "keys.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "err.h"
#include "fsutil.h"

static int alloc_sk(struct ol__key *k)
{
    k->sk = sodium_malloc(OL_SK_SIZE);
    return k->sk ? 0 : OL_ENOMEM;
}

int ol__key_generate(struct ol__key *k)
{
    memset(k, 0, sizeof *k);
    if (sodium_init() < 0 || alloc_sk(k) != 0)
        return OL_ENOMEM;
    crypto_sign_keypair(k->pk, k->sk);
    return 0;
}

void ol__key_close(struct ol__key *k)
{
    if (k == NULL || k->sk == NULL)
        return;
    sodium_free(k->sk); /* sodium_free wipes before freeing */
    k->sk = NULL;
}

void ol__pk_hex(const uint8_t pk[OL_PK_SIZE], char out[OL_PK_HEX_SIZE])
{
    ol__hex(pk, OL_PK_SIZE, out);
}

int ol__pk_parse(const char *hex, uint8_t pk[OL_PK_SIZE])
{
    return ol__unhex(hex, pk, OL_PK_SIZE);
}

/* Find "name = value" in text and copy the value (64 hex digits). */
static int field(const char *text, const char *name, char out[OL_PK_HEX_SIZE])
{
    size_t nlen = strlen(name);

    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);

        if (len > nlen && strncmp(line, name, nlen) == 0) {
            const char *v = line + nlen;
            const char *end = line + len;

            while (v < end && (*v == ' ' || *v == '='))
                v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\r'))
                end--;
            if (end - v != 64)
                return OL_EMALFORMED;
            memcpy(out, v, 64);
            out[64] = '\0';
            return 0;
        }
        line = eol ? eol + 1 : NULL;
    }
    return OL_ENOTFOUND;
}

int ol__key_load(struct ol__key *k, const char *path, char *errmsg)
{
    struct stat st;
    char *text = NULL;
    size_t len;
    char hex[OL_PK_HEX_SIZE];
    uint8_t seed[32], pk[OL_PK_SIZE];
    int rv;

    memset(k, 0, sizeof *k);
    if (sodium_init() < 0)
        return OL_ENOMEM;
    if (stat(path, &st) != 0) {
        ol__errf(errmsg, "key file '%s': %s", path, strerror(errno));
        return errno == ENOENT ? OL_ENOTFOUND : OL_EIO;
    }
    if (st.st_mode & 077) {
        ol__errf(errmsg,
                 "key file '%s' is readable by others (mode %04o); "
                 "run chmod 600 on it",
                 path, (unsigned)(st.st_mode & 07777));
        return OL_EUNAUTH;
    }
    rv = ol__read_file(path, 4096, &text, &len, errmsg);
    if (rv != 0)
        return rv;
    if (field(text, "seed", hex) != 0 || ol__unhex(hex, seed, 32) != 0) {
        ol__errf(errmsg, "key file '%s': no valid 'seed' line", path);
        rv = OL_EMALFORMED;
        goto out;
    }
    if (field(text, "public", hex) != 0 || ol__pk_parse(hex, pk) != 0) {
        ol__errf(errmsg, "key file '%s': no valid 'public' line", path);
        rv = OL_EMALFORMED;
        goto out;
    }
    rv = alloc_sk(k);
    if (rv != 0)
        goto out;
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    if (sodium_memcmp(k->pk, pk, OL_PK_SIZE) != 0) {
        ol__errf(errmsg,
                 "key file '%s': public key does not match the seed", path);
        ol__key_close(k);
        rv = OL_EMALFORMED;
    }
out:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(hex, sizeof hex);
    if (text) {
        sodium_memzero(text, len);
        free(text);
    }
    return rv;
}

int ol__key_save(const struct ol__key *k, const char *path, char *errmsg)
{
    char text[256];
    char seed_hex[OL_PK_HEX_SIZE], pk_hex[OL_PK_HEX_SIZE];
    uint8_t seed[32];
    int n, rv;

    crypto_sign_ed25519_sk_to_seed(seed, k->sk);
    ol__hex(seed, 32, seed_hex);
    ol__pk_hex(k->pk, pk_hex);
    n = snprintf(text, sizeof text,
                 "# outlast node key - keep secret\nseed = %s\npublic = %s\n",
                 seed_hex, pk_hex);
    rv = ol__write_file_atomic(path, text, (size_t)n, 0600, errmsg);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(seed_hex, sizeof seed_hex);
    sodium_memzero(text, sizeof text);
    return rv;
}

int ol__key_load_or_create(struct ol__key *k, const char *path, int *created,
                           char *errmsg)
{
    int rv = ol__key_load(k, path, errmsg);

    if (created)
        *created = 0;
    if (rv != OL_ENOTFOUND)
        return rv;
    rv = ol__key_generate(k);
    if (rv != 0)
        return rv;
    rv = ol__key_save(k, path, errmsg);
    if (rv != 0) {
        ol__key_close(k);
        return rv;
    }
    if (created)
        *created = 1;
    return 0;
}
