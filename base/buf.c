/*
 * Growable byte buffers, plus hex helpers for ids, hashes and keys.
 */
#include "buf.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void ol__buf_init(struct ol__buf *b)
{
    memset(b, 0, sizeof *b);
}

void ol__buf_close(struct ol__buf *b)
{
    free(b->base);
    memset(b, 0, sizeof *b);
}

void ol__buf_reset(struct ol__buf *b)
{
    b->len = 0;
}

int ol__buf_append(struct ol__buf *b, const void *p, size_t n)
{
    if (b->max && (n > b->max || b->len > b->max - n))
        return OL_ETOOBIG;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        uint8_t *nb;

        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2)
                return OL_ENOMEM;
            cap *= 2;
        }
        nb = realloc(b->base, cap);
        if (nb == NULL)
            return OL_ENOMEM;
        b->base = nb;
        b->cap = cap;
    }
    if (n)
        memcpy(b->base + b->len, p, n);
    b->len += n;
    return 0;
}

int ol__buf_write(void *data, const char *p, size_t n)
{
    return ol__buf_append(data, p, n);
}

uint8_t *ol__buf_steal(struct ol__buf *b, size_t *len)
{
    uint8_t *p = b->base;

    *len = b->len;
    memset(b, 0, sizeof *b);
    return p;
}

void ol__hex(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

int ol__unhex(const char *s, uint8_t *out, size_t n)
{
    size_t len = strlen(s), got = 0;
    const char *end = NULL;

    if (len != 2 * n ||
        sodium_hex2bin(out, n, s, len, NULL, &got, &end) != 0 || got != n ||
        end != s + len)
        return OL_EMALFORMED;
    return 0;
}
