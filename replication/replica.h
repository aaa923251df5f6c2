/*
 * The commit path as the runtime sees it.  A replica takes proposals
 * (checkpoint bodies and commands) and, once they are durable (fsynced on
 * a single node, committed on a majority in a cluster), applies them
 * through the state machine and reports what changed as effects.  Every
 * proposal eventually yields an effect unless the replica shuts down.
 *
 * Two implementations: local.c (one node: group commit into SQLite on the
 * thread pool) and cluster.c with the files cluster_int.h lists (the
 * cluster).
 */
#ifndef OL_REPLICA_H
#define OL_REPLICA_H

#include <msgpack.h>
#include <stdint.h>
#include <uv.h>

#include "base/hist.h"
#include "base/pack.h"
#include "record/cmd.h"
#include "state/sm.h"

struct ol__replica;

/* Handed a batch of effects on the loop thread; the list is freed by the
 * replica after the call. */
typedef void (*ol__replica_effects_cb)(void *data, struct ol__effects *fx);

struct ol__replica_counters {
    uint64_t batches;
    uint64_t ckpts;
    uint64_t cmds;
    uint64_t failures;
    /* Checkpoints per batch (a group commit, or an applied raft entry),
     * over ol__batch_bounds. */
    struct ol__phist batch_sizes;
};

struct ol__replica_vt {
    /* Propose the checkpoint (agent, epoch, seq) whose encoded body is
     * `body` (ownership of `body`, malloc'd, passes to the replica).
     * Returns 0, or OL_ESHUTDOWN / OL_ENOMEM (then the caller still owns
     * body). */
    int (*propose_ckpt)(struct ol__replica *r, const char *agent,
                        uint64_t epoch, uint64_t seq, uint8_t *body,
                        size_t len, const uint8_t hash[OL_HASH_SIZE]);
    /* Propose the commands in `w` (copied). */
    int (*propose_cmds)(struct ol__replica *r, const struct ol__entry_w *w);
    /* Nothing queued or in flight. */
    int (*idle)(struct ol__replica *r);
    /* The state machine is being changed off the loop right now (one
     * node's group commit applies a batch on the thread pool): the loop may
     * read it only while this is 0, or from the effects callback.  Always
     * 0 in a cluster, whose state machine changes on the loop. */
    int (*sm_busy)(struct ol__replica *r);
    /* True when this node may decide placements (always on one node). */
    int (*is_leader)(struct ol__replica *r);
    /* For how many more ms this node may start steps of its agents: 0 or
     * less, none; INT64_MAX on one node; in a cluster what is left of its
     * lease, read on a fresh clock (asked before every step, so cheap). */
    int64_t (*lease_left)(struct ol__replica *r);
    /* The feature level every voter runs, which bounds the commands that
     * may be proposed (cmd.h); on one node, its own. */
    uint32_t (*level)(struct ol__replica *r);
    /* Commit counters (batches = group commits or raft entries). */
    void (*counters)(struct ol__replica *r,
                     struct ol__replica_counters *out);
    /* Write replica status as one msgpack map. */
    void (*status)(struct ol__replica *r, msgpack_packer *pk);
    /* Close; cb fires when done.  Proposals not yet durable are dropped. */
    void (*close)(struct ol__replica *r, void (*cb)(void *data), void *data);
    /* Free a replica after its close callback (or one never started). */
    void (*destroy)(struct ol__replica *r);
};

struct ol__replica {
    const struct ol__replica_vt *vt;
};


/* The single-node replica.  Borrows the loop, store, state machine and key;
 * they must outlive it.  The state machine belongs to the commit worker
 * while a batch is in flight: the loop thread must not touch it. */
struct ol__store;
int ol__local_create(uv_loop_t *loop, struct ol__store *st, struct ol__sm *sm,
                     const struct ol__key *key, ol__replica_effects_cb cb,
                     void *data, struct ol__replica **out);
/* Free a closed single-node replica (after its close callback). */
void ol__local_destroy(struct ol__replica *r);

/* Write one msgpack map to `out` (a packer writing anywhere): `fill` adds
 * its pairs with the map writer of base/pack.h (nested maps: begin them
 * on m->pk and m->buf).  For status output, never for replicated bytes.
 * Returns 0 or OL_ENOMEM. */
int ol__replica_pack_map(msgpack_packer *out,
                         void (*fill)(struct ol__pk_map *m, void *data),
                         void *data);

#endif
