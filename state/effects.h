/*
 * An agent's effects as its stored checkpoints tell them, for `outlast
 * effects`: every effect an open list or an outcome of a stored
 * checkpoint names, with what it is (key, id, kind, payload), where it
 * was declared, and how it ended, if it has.
 *
 * Checkpoints are read in seq order and each is verified (its seal's
 * signature, its hash) before it is decoded, as `outlast verify` does.
 * A node keeps the newest [node] retain checkpoints of each agent: an
 * effect that closed before the oldest one kept is not listed; an open
 * one always is, since every checkpoint, the head included, carries the
 * open effects.
 *
 * The node that hosts the agent knows more than the store (an effect
 * being performed, or waiting to be tried again): the daemon sets that in
 * a row before packing (runtime/handlers_effects.c); read offline, the
 * states are the store's alone.
 */
#ifndef OL_EFFECTS_H
#define OL_EFFECTS_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/map.h"
#include "base/sizes.h"
#include "record/ckpt.h"

#define WUR __attribute__((warn_unused_result))

/* An effect's state, as listed. */
enum ol__fxrow_state {
    OL_FXROW_PENDING = 1,   /* open, committed, not known to be running */
    OL_FXROW_IN_FLIGHT = 2, /* being performed on the hosting node */
    OL_FXROW_RETRYING = 3,  /* failed, to be tried again there */
    OL_FXROW_DONE = 4,      /* outcome recorded: done */
    OL_FXROW_FAILED = 5,    /* outcome recorded: failed */
    OL_FXROW_IN_DOUBT = 6,  /* open, declared under an older epoch: an
                             * earlier owner may have performed it */
};
/* The --state filter for every state but done and failed. */
#define OL_FXROW_OPEN 100

/* One effect. */
struct ol__fxrow {
    char at[48];   /* "seq.idx": its name in the list's map */
    uint64_t seq;  /* the checkpoint that declared it */
    uint32_t idx;
    uint64_t id;
    char *kind;
    uint8_t key[OL_EFFECT_KEY_SIZE];
    uint8_t *payload; /* one msgpack object */
    uint32_t len;
    uint64_t epoch;      /* of the declaring checkpoint; 0: not stored */
    uint64_t seen_epoch; /* of the oldest stored checkpoint naming it */
    int state;           /* enum ol__fxrow_state */
    int in_doubt;
    uint32_t attempts;   /* recorded with the outcome, or the hosting
                          * node's count while open (0 unknown) */
    uint64_t closed_seq; /* the checkpoint with its outcome; 0: open */
    uint8_t *result;
    uint32_t result_len;
    char note[120]; /* the hosting node's last failure, for people */
};

struct ol__fxlist {
    char agent[OL_NAME_MAX + 1];
    uint64_t epoch;     /* the agent's current epoch */
    uint64_t first_seq; /* the oldest stored checkpoint (0: none) */
    uint64_t head_seq;
    struct ol__fxrow **v; /* in (seq, idx) order */
    size_t n, cap;
    struct ol__map by_at;
};

/*
 * Read `agent`'s effects.  Returns 0, OL_ENOTFOUND (no such agent), a
 * verification error (OL_EBADSIG, OL_EBADHASH, OL_EMALFORMED) with errmsg
 * naming the seq, OL_EIO or OL_ENOMEM.  Free with ol__fxlist_free (also
 * after an error).
 */
int ol__fxlist_load(sqlite3 *db, const char *agent, struct ol__fxlist *l,
                    char *errmsg) WUR;
void ol__fxlist_free(struct ol__fxlist *l);

/* "pending", "in flight", "retrying", "done", "failed", "in doubt". */
const char *ol__fxrow_state_name(int state);
/* A --state value (the names above, with '-' or '_' for the space, or
 * "open"), or 0. */
int ol__fxrow_state_parse(const char *s);

/*
 * One map: {agent, epoch, first_seq, head_seq, total, effects: [...]},
 * the effects newest first, only those in `state` (0: all; OL_FXROW_OPEN:
 * those without an outcome), at most `limit` (0: all); `total` counts the
 * ones that passed the filter.  Each effect:
 *   {key (32 hex), id, kind, seq, idx, epoch (nil: not stored), state,
 *    in_doubt, attempts, payload (its msgpack object), closed_seq,
 *    result (its msgpack object, or nil when it is none, or not msgpack),
 *    result_hex (the bytes in hex when they are not msgpack, else nil),
 *    note}
 */
int ol__fxlist_pack(const struct ol__fxlist *l, int state, uint32_t limit,
                    msgpack_packer *pk, char *errmsg) WUR;

#endif
