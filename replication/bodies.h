/*
 * A growing list of checkpoint bodies with their hashes: what one seal
 * covers.  The single-node group commit (local.c) and the cluster's
 * proposer (propose.c) each fill one per batch or entry.
 */
#ifndef OL_BODIES_H
#define OL_BODIES_H

#include <stddef.h>
#include <stdint.h>

#include "record/cmd.h"

struct ol__bodies {
    struct ol__blob *bodies;
    uint8_t *hashes; /* n * OL_HASH_SIZE */
    uint32_t n, cap;
};

/* Append `body` (borrowed: the list never frees bodies) and its hash.
 * Returns 0 or OL_ENOMEM (then the list is as it was). */
int ol__bodies_add(struct ol__bodies *b, const uint8_t *body, size_t len,
                   const uint8_t hash[OL_HASH_SIZE]);
/* Free the arrays (not the bodies) and empty the list. */
void ol__bodies_close(struct ol__bodies *b);

#endif
