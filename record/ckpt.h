/*
 * Checkpoints: the signed, hash-chained record of one agent step.
 *
 * A checkpoint is its body: the canonical msgpack encoding of struct
 * ol__ckpt.  Its hash is BLAKE2b-256(body).  A checkpoint is not signed on
 * its own: the node that commits it signs a seal over a batch of hashes
 * (seal.h), and the state machine stores each body beside the seal that
 * covers it (`agents`, `checkpoints` and `seals` in state/store.c).  The
 * body names its signer, so the seal that covers it must be that node's.
 * Each body carries the hash of the agent's previous checkpoint (zeroes
 * for seq 1), which chains every agent's history.
 *
 * Verification happens before decoding: a stored or received body is
 * decoded only after its hash is found in a seal whose signature verifies
 * (state/verify.h).
 */
#ifndef OL_CKPT_H
#define OL_CKPT_H

#include <stdint.h>

#include "base/buf.h"
#include "base/keys.h"
#include "base/sizes.h"
#include "outlast/agent.h"

#define WUR __attribute__((warn_unused_result))

#define OL_CKPT_FORMAT 1
/* A checkpoint is 13 fields, or 15 when it carries effects or outcomes
 * (feature level 4): bodies without effects keep their old bytes. */
#define OL_CKPT_FIELDS 13
#define OL_CKPT_FIELDS_FX 15
#define OL_CKPT_FX_LEVEL 4

/* Bytes in an effect key (hex: OL_AGENT_KEY_LEN digits). */
#define OL_EFFECT_KEY_SIZE 16

/* Flags. */
#define OL_CKPT_FINAL 1u /* the agent stopped with this checkpoint */
/* The first checkpoint after `outlast recover` (under the recovered
 * database's epoch floor): of a chain that starts over (seq 1, after
 * --new-history), or of one that continues from a bundle (--from). */
#define OL_CKPT_NEW_HISTORY 2u
#define OL_CKPT_RECOVERED 4u
/* Messages of this checkpoint that cannot be delivered when it commits
 * come back to the agent (OL_EVENT_BOUNCE) instead of being dropped.  Set
 * by nodes whose cluster runs feature level 3 or later; older nodes never
 * see a checkpoint with it, since they hold the cluster below 3. */
#define OL_CKPT_BOUNCE 8u

/* Decoder limits (beyond those in agent.h). */
#define OL_ACKS_MAX 4096
#define OL_CKPT_MAX (OL_AGENT_STATE_MAX + (8u << 20))

/* One message in an outbox: sent by the checkpoint's agent. */
struct ol__outmsg {
    char *to;
    uint8_t *data; /* one msgpack object */
    uint32_t len;
};

struct ol__timer {
    uint64_t id;
    int64_t due_ms;
};

/* A message's identity: sender, the seq of the sender's checkpoint that
 * released it, and its index in that outbox.  "@cli" messages use a random
 * seq and index 0. */
struct ol__msgid {
    char *from;
    uint64_t seq;
    uint32_t idx;
};

/* An effect the agent declared (ol_host.effect) and has no outcome for
 * yet.  Every checkpoint carries the agent's open effects, from the one
 * that declared an effect (seq) until the one that records its outcome,
 * so the head alone tells a new owner what is in doubt. */
struct ol__intent {
    uint64_t id;   /* the plugin's effect_id */
    char *kind;
    uint8_t *payload; /* one msgpack object */
    uint32_t len;
    uint64_t seq;  /* the checkpoint that declared it */
    uint32_t idx;  /* its index among that checkpoint's new effects */
    uint8_t key[OL_EFFECT_KEY_SIZE]; /* ol__effect_key() */
};

/* The outcome of an effect, recorded by the checkpoint of the step that
 * consumed its EFFECT event; the effect leaves the open list there. */
struct ol__outcome {
    uint64_t seq;
    uint32_t idx;
    uint32_t status;   /* OL_EFFECT_DONE or OL_EFFECT_FAILED */
    uint32_t attempts;
    uint8_t *result;   /* what perform() wrote, or why it failed */
    uint32_t len;
};

struct ol__plugin_id {
    char *kind;
    char *version;
    uint8_t so_hash[OL_HASH_SIZE];
};

struct ol__ckpt {
    char *agent;
    uint64_t epoch;
    uint64_t seq;
    uint8_t prev_hash[OL_HASH_SIZE];
    int64_t time_ms;
    struct ol__plugin_id plugin;
    uint8_t signer[OL_PK_SIZE];
    uint32_t flags;
    uint8_t *state; /* one msgpack object */
    uint32_t state_len;
    struct ol__outmsg *outbox;
    uint32_t n_outbox;
    struct ol__timer *timers;
    uint32_t n_timers;
    struct ol__msgid *acks; /* messages this checkpoint consumed */
    uint32_t n_acks;
    struct ol__intent *effects; /* open after this checkpoint */
    uint32_t n_effects;
    struct ol__outcome *outcomes; /* recorded by this checkpoint */
    uint32_t n_outcomes;
};

/* Free the members of a checkpoint (not the struct).  NULL-safe. */
void ol__ckpt_free(struct ol__ckpt *c);

/* Canonical body encoding. */
int ol__ckpt_encode(const struct ol__ckpt *c, struct ol__buf *out);

void ol__ckpt_hash(const void *body, size_t len, uint8_t hash[OL_HASH_SIZE]);

/* Decode a body.  Returns 0 or OL_EMALFORMED with errmsg naming the field;
 * on error `out` holds nothing to free. */
int ol__ckpt_decode(const void *body, size_t len, struct ol__ckpt *out,
                    char *errmsg) WUR;

/* Decode everything but the state: out->state is NULL and out->state_len
 * its size; the state is only bounds-checked.  For the state machine,
 * which never looks at states (resumes decode in full, through verify). */
int ol__ckpt_decode_meta(const void *body, size_t len, struct ol__ckpt *out,
                         char *errmsg) WUR;

/* An effect's idempotency key: BLAKE2b-128 over the agent's name, the
 * declaring checkpoint's seq, the effect's index there and that
 * checkpoint's prev_hash.  The same on every node and every retry; two
 * histories of one name (a recovered --new-history) differ. */
void ol__effect_key(const char *agent, uint64_t seq, uint32_t idx,
                    const uint8_t prev_hash[OL_HASH_SIZE],
                    uint8_t key[OL_EFFECT_KEY_SIZE]);

/* True for a valid effect kind: 1..OL_AGENT_KIND_MAX bytes of
 * [a-z0-9._-]. */
int ol__kind_valid(const char *kind);

/* True for a valid agent name: 1..OL_NAME_MAX bytes of [A-Za-z0-9._-],
 * not starting with '.' or '-'. */
int ol__name_valid(const char *name);

#endif
