/*
 * The state machine: applies log entries (see cmd.h) to the store.  It is
 * the only writer of the agents, checkpoints, seals, mailbox and nodes
 * tables, and it is deterministic: every node that applies the same entries
 * in the same order ends with the same rows.  The single-node group commit
 * and the raft FSM both drive it.
 *
 * Rules it enforces for each checkpoint:
 *  - the seal's signature verifies and its signer is a live node;
 *  - the body's hash is the one the seal lists at its position;
 *  - the signer owns the agent, and the checkpoint's epoch is the agent's
 *    current epoch (a stale epoch never commits);
 *  - seq is head + 1 and prev_hash is the head's hash;
 *  - a different checkpoint for a stored (agent, seq) is divergence: the
 *    evidence is stored, the agent is quarantined, nothing is replaced.
 *
 * What applying changed is reported as a list of effects, which the caller
 * hands to the runtime once the transaction has committed.
 */
#ifndef OL_SM_H
#define OL_SM_H

#include <stdint.h>

#include "base/sizes.h"
#include "base/map.h"
#include "store.h"
#include "record/ckpt.h"
#include "record/cmd.h"

struct ol__sm_agent {
    char name[OL_NAME_MAX + 1];
    char kind[OL_KIND_MAX + 1];
    uint8_t *config; /* one msgpack object */
    uint32_t config_len;
    uint64_t owner;  /* node id; 0: not placed yet */
    uint64_t inc;    /* the owner's incarnation the grant is for */
    uint64_t epoch;
    int status; /* enum ol__agent_status */
    char reason[OL_REASON_MAX + 1];
    uint64_t req;
    uint64_t head_seq; /* 0: no checkpoint yet */
    uint8_t head_hash[OL_HASH_SIZE];
    int64_t head_time_ms;
    /* Crashes of its code (table crashes, sm_crash.c). */
    uint32_t crashes;        /* in the current window */
    int64_t crash_since_ms;  /* the window's start (the proposer's clock) */
    uint64_t crash_floor;    /* crashes reported under older epochs than
                              * this (before a START) are not counted */
    uint64_t crash_req;      /* the last CRASH counted, for retries */
    /* Messages waiting in its mailbox. */
    uint32_t mail_n;
    uint64_t mail_bytes;
    int mail_full;           /* over the soft limit (reported) */
    /* Set only in the effect of the MOVE that hands the agent over from a
     * node that may still run it (never stored): the node it leaves and
     * how long the new owner waits before its first step (cmd.h). */
    uint64_t handoff_from;
    uint32_t handoff_ms;
};

/* A build of a plugin: the one node `node` runs, or (node 0) the one an
 * upgrade asked for. */
struct ol__sm_code {
    char kind[OL_KIND_MAX + 1];
    uint64_t node;
    uint8_t hash[OL_HASH_SIZE];
    char version[OL_VERSION_MAX + 1];
};

struct ol__sm_node {
    uint64_t id;
    uint8_t pk[OL_PK_SIZE];
    char address[OL_ADDR_MAX];
    char labels[OL_LABELS_MAX + 1];
    int removed;
};

enum ol__effect_type {
    OL_FX_CKPT = 1,  /* a checkpoint committed, or was refused */
    OL_FX_AGENT = 2, /* an agent row changed (a copy is attached) */
    OL_FX_MAIL = 3,  /* a message is waiting for `to` */
    OL_FX_CMD = 4,   /* outcome of a non-checkpoint command */
    OL_FX_NODE = 5,  /* the roster changed */
    OL_FX_DIVERGED = 6, /* a snapshot install found this node's row for
                         * (u.ckpt.agent, u.ckpt.seq) differs from the
                         * cluster's: evidence stored, row replaced */
    OL_FX_MAILBOX = 7, /* a mailbox crossed its soft limit */
    OL_FX_STORAGE = 8, /* the database failed (errmsg); not from apply */
};

struct ol__effect {
    struct ol__effect *next;
    int type;
    int status; /* 0 or OL_E* */
    union {
        struct {
            char agent[OL_NAME_MAX + 1];
            uint64_t epoch;
            uint64_t seq;
            uint8_t hash[OL_HASH_SIZE];
            int dup; /* already committed before */
        } ckpt;
        struct ol__sm_agent agent; /* config is a copy owned here */
        struct {
            char to[OL_NAME_MAX + 1];
            char from[OL_NAME_MAX + 1];
            uint64_t seq;
            uint32_t idx;
            uint8_t *payload; /* owned here */
            uint32_t len;
            int64_t rowid; /* mailbox row, rising in arrival order */
        } mail;
        struct {
            uint32_t cmd_type;
            uint64_t req;
            char name[OL_NAME_MAX + 1];
        } cmd;
        struct ol__sm_node node;
        struct {
            char name[OL_NAME_MAX + 1];
            int full;
        } box;
    } u;
    char errmsg[160]; /* why status is not 0 */
};

struct ol__effects {
    struct ol__effect *head;
    struct ol__effect *tail;
    uint32_t n;
    /* The last command outcome added (kept even when its effect could not
     * be allocated), which the table of applied request ids records. */
    uint64_t last_req;
    int last_status;
    char last_why[160];
};

void ol__effects_init(struct ol__effects *fx);
void ol__effects_free(struct ol__effects *fx);
/* Move all of `from` to the end of `to`. */
void ol__effects_splice(struct ol__effects *to, struct ol__effects *from);

struct ol__sm_config {
    uint32_t retain; /* keep the last N checkpoints per agent; 0: all */
    /* A mailbox this full is reported (OL_FX_MAILBOX) so senders are
     * refused before the hard cap below drops anything; 0: no report. */
    uint32_t mail_soft_n;
    uint64_t mail_soft_bytes;
    /* How many request ids the table of applied commands keeps; 0:
     * OL_SM_REQS_MAX.  Every node of a cluster must use the same value
     * (only tests set it). */
    uint32_t reqs_max;
};

/* The table of applied request ids (sm_reqs.c) keeps the ids of the
 * newest this many commands (checkpoints excluded): a proposer's retry or
 * a client's repeat of a request id later than this many commands after
 * the first is applied again.  About 2.4 MiB of memory at most, and a few
 * MiB in the store and in each snapshot. */
#define OL_SM_REQS_MAX 100000u

/* No mailbox ever holds more: a message past this is dropped (and
 * counted) when its checkpoint commits, and a SEND is refused. */
#define OL_MAILBOX_HARD_MSGS 1000000u
#define OL_MAILBOX_HARD_BYTES (1ull << 30)

struct ol__sm;

/* Open over a writable store and load the cache.  Returns 0 or an OL_E*
 * code with errmsg set. */
int ol__sm_open(struct ol__store *st, const struct ol__sm_config *cfg,
                struct ol__sm **out, char *errmsg);
void ol__sm_close(struct ol__sm *sm);

/*
 * Apply one entry inside the caller's transaction.  `trusted` skips seal
 * signature checks for entries this process has just sealed itself.
 * Every time written comes from the entry (its proposer's clock), never
 * from this node's, so that every node writes the same rows.  Returns 0
 * (refused commands are effects, not errors), OL_EMALFORMED for an entry
 * that does not decode or OL_ENOTSUP for one from a newer version (nothing
 * applied; ol__sm_errmsg() says why), or OL_EIO when the store failed: the
 * caller must roll back, call ol__sm_reload() and drop `fx`.
 */
int ol__sm_apply(struct ol__sm *sm, const void *entry, size_t len,
                 int trusted, struct ol__effects *fx);

/* Why the last apply failed. */
const char *ol__sm_errmsg(const struct ol__sm *sm);

/* Does this build's state machine apply command `type`? */
int ol__sm_knows(uint32_t type);

/* Add an OL_FX_AGENT effect for every agent (after the tables were
 * replaced wholesale, e.g. by a snapshot). */
void ol__sm_effects_all(const struct ol__sm *sm, struct ol__effects *fx);
/* Add an OL_FX_MAIL effect for every mailbox row, in id order (after a
 * snapshot install: rows this node missed are delivered; rows it queued
 * already keep their ids and are ignored by the runtime). */
void ol__sm_effects_mail(struct ol__sm *sm, struct ol__effects *fx);

/* Apply checkpoint bodies sealed by this process at `time_ms` without
 * encoding them into an entry first (the single-node group commit): the
 * same checks and effects as a CKPTS command.  Returns 0 or OL_EIO like
 * ol__sm_apply(). */
int ol__sm_apply_sealed(struct ol__sm *sm, int64_t time_ms, const void *seal,
                        size_t seal_len, const uint8_t sig[OL_SIG_SIZE],
                        const struct ol__blob *bodies, uint32_t n,
                        struct ol__effects *fx);

/* Rebuild the cache from the store (after a rollback or a restore). */
int ol__sm_reload(struct ol__sm *sm);

/* The raft index this store has applied up to (0 if none), and its update
 * inside the apply transaction. */
uint64_t ol__sm_applied(const struct ol__sm *sm);
int ol__sm_set_applied(struct ol__sm *sm, uint64_t index);

/* Read the cache.  Valid until the next apply or reload. */
const struct ol__sm_agent *ol__sm_agent(const struct ol__sm *sm,
                                        const char *name);
int ol__sm_agent_next(const struct ol__sm *sm, size_t *iter,
                      const struct ol__sm_agent **out);
const struct ol__sm_node *ol__sm_node(const struct ol__sm *sm, uint64_t id);
size_t ol__sm_nodes(const struct ol__sm *sm,
                    const struct ol__sm_node **out);

/* The build of `kind` node `node` runs (node 0: the wanted one), or NULL.
 * ol__sm_code_ok(): may an agent of `kind` run on `node`?  (Yes unless an
 * upgrade asked for a build the node does not run.) */
const struct ol__sm_code *ol__sm_code(const struct ol__sm *sm,
                                      const char *kind, uint64_t node);
int ol__sm_code_ok(const struct ol__sm *sm, const char *kind, uint64_t node);

/* Put a node directly (outside the log): a single node registering its
 * own key on first start.  Runs its own transaction. */
int ol__sm_put_node(struct ol__sm *sm, const struct ol__sm_node *n);

/* The table of applied request ids: how many it holds, and whether it
 * holds `req` (1, with its first outcome in *status) or not (0). */
size_t ol__sm_reqs_count(const struct ol__sm *sm);
int ol__sm_reqs_get(const struct ol__sm *sm, uint64_t req, int *status);

/* Counters. */
struct ol__sm_stats {
    uint64_t ckpts_applied;
    uint64_t ckpts_refused;
    uint64_t entries_malformed;
    uint64_t mail_dropped; /* recipient does not exist, or is full */
    uint64_t mail_bounced; /* of those, returned to their sender */
};
void ol__sm_stats(const struct ol__sm *sm, struct ol__sm_stats *out);

/* Snapshots for raft (sm_snap.c): the agents, nodes and mailbox tables
 * and each agent's latest checkpoint with its seal. */
int ol__sm_snapshot(struct ol__sm *sm, struct ol__buf *out);
/* The same from any connection whose read transaction pins the state at
 * raft index `index` (safe on a worker thread). */
int ol__sm_snapshot_db(sqlite3 *db, uint64_t index, struct ol__buf *out);
/* Install a snapshot.  `index`, when not 0, is the raft index it was taken
 * at, and the snapshot's own header must agree (raft 0.15 does not tell
 * its fsm, so the replica passes 0).  If the store has already applied
 * past the snapshot, nothing changes.  Runs its own transaction.  A head
 * checkpoint that differs from the one stored here replaces it; the old
 * row goes into the evidence table and an OL_FX_DIVERGED effect into `fx`
 * (may be NULL).
 * Returns 0 or OL_EMALFORMED / OL_EIO with errmsg set (nothing changed). */
int ol__sm_restore(struct ol__sm *sm, const void *p, size_t len,
                   uint64_t index, struct ol__effects *fx, char *errmsg);

#endif
