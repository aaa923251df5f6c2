/*
 * Checkpoint bodies with their hashes, for one seal (bodies.h).
 */
#include "bodies.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int ol__bodies_add(struct ol__bodies *b, const uint8_t *body, size_t len,
                   const uint8_t hash[OL_HASH_SIZE])
{
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 64;
        struct ol__blob *nb = realloc(b->bodies, cap * sizeof *nb);
        uint8_t *nh;

        if (nb == NULL)
            return OL_ENOMEM;
        b->bodies = nb;
        nh = realloc(b->hashes, (size_t)cap * OL_HASH_SIZE);
        if (nh == NULL)
            return OL_ENOMEM;
        b->hashes = nh;
        b->cap = cap;
    }
    b->bodies[b->n].p = body;
    b->bodies[b->n].len = (uint32_t)len;
    memcpy(b->hashes + (size_t)b->n * OL_HASH_SIZE, hash, OL_HASH_SIZE);
    b->n++;
    return 0;
}

void ol__bodies_close(struct ol__bodies *b)
{
    free(b->bodies);
    free(b->hashes);
    memset(b, 0, sizeof *b);
}
