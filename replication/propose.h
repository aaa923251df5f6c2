/*
 * Proposals in a cluster, behind a narrow interface.
 *
 * A proposer collects checkpoint bodies and commands and turns them into
 * log entries: one entry (one seal, one signature) per flush.  It keeps
 * every proposal until the state machine reports its outcome, and offers
 * it again when nothing came back in time or the leader changed.  It knows
 * nothing of raft, sockets or the loop: its owner (the cluster) gives it a
 * table of callbacks, below, and calls it on the loop thread.
 *
 *     owner                           proposer
 *     replica vt propose_* ---------> ol__proposer_ckpt / _cmds
 *     idle handle (after wake) -----> ol__proposer_flush
 *                         <---------- ops.submit (leader) / ops.forward
 *     raft apply callback ----------> ol__proposer_submitted
 *     FSM effects ------------------> ol__proposer_on_effects
 *     tick, leader changed ---------> ol__proposer_retry
 *     MSG_FORWARD from a follower --> ol__proposer_add_forwarded
 *
 * A retry carries the same request id (see propose.c for why a retry never
 * duplicates).
 */
#ifndef OL_PROPOSE_H
#define OL_PROPOSE_H

#include <stddef.h>
#include <stdint.h>

#include "record/cmd.h"
#include "state/sm.h"

struct ol__proposer;

/* One entry holds at most this many of the proposer's own checkpoints and
 * commands and about this many bytes, so that with the forwarded commands
 * merged in it stays under OL_ENTRY_MAX_CMDS, and so that applying one
 * takes a few ms: the FSM's apply slice cannot split an entry (fsm.h), and
 * 8,192 moves took 100-150 ms. */
#define OL_PROP_ENTRY_MAX_CKPTS 1024
#define OL_PROP_ENTRY_MAX_OWN_CMDS 1024
#define OL_PROP_ENTRY_MAX_BYTES (1u << 20)
/* The leader stops submitting while this many entries are in flight. */
#define OL_PROP_APPLIES_MAX 64

/* What the proposer asks of its owner.  Every callback gets `data`. */
struct ol__proposer_ops {
    void *data;
    /* This node leads: entries go to submit().  Otherwise they go to
     * forward() when has_leader(), and wait when not. */
    int (*is_leader)(void *data);
    int (*has_leader)(void *data);
    /* The leader's current term (tags the entry, fsm.h). */
    uint64_t (*term)(void *data);
    /* The feature level every voter runs: commands above it are refused
     * with OL_ENOTSUP. */
    uint32_t (*level)(void *data);
    /* A monotonic clock in ms, for retries. */
    uint64_t (*now)(void *data);
    /* Nonzero while this node has committed entries it has not applied
     * yet: the retry clock stands still meanwhile.  May be NULL. */
    int (*behind)(void *data);
    /* Leader: hand the finished entry bytes (borrowed for the call) to
     * consensus.  Returns 0, after which the owner calls
     * ol__proposer_submitted() once the entry is applied or failed; or an
     * OL_E* code, and then never calls it. */
    int (*submit)(void *data, const void *entry, size_t len);
    /* Follower: send the entry bytes (borrowed) to the leader.  Returns 0
     * or an OL_E* code. */
    int (*forward)(void *data, const void *entry, size_t len);
    /* Call ol__proposer_flush() soon (from an idle callback). */
    void (*wake)(void *data);
};

struct ol__proposer_config {
    const struct ol__key *key;  /* seals checkpoints; borrowed */
    unsigned retry_ms;          /* resend what has no outcome after this */
};

struct ol__proposer_counters {
    uint64_t entries;        /* entries submitted (leader) */
    uint64_t ckpts_proposed;
    uint64_t forwarded;      /* entries forwarded to a leader */
    uint64_t retries;        /* proposals offered again */
};

/* Create a proposer; `ops` is copied.  Returns 0 or OL_ENOMEM. */
int ol__proposer_create(const struct ol__proposer_config *cfg,
                        const struct ol__proposer_ops *ops,
                        struct ol__proposer **out);
/* Free it with everything it still holds.  NULL is a no-op. */
void ol__proposer_destroy(struct ol__proposer *p);
/* From now on proposals are refused with OL_ESHUTDOWN and wake() is not
 * called. */
void ol__proposer_shutdown(struct ol__proposer *p);

/* Propose checkpoint (agent, epoch, seq) whose encoded body is `body`
 * (malloc'd; ownership passes to the proposer on success only).  A newer
 * checkpoint of the same agent replaces one not yet sent.  Returns 0,
 * OL_ESHUTDOWN or OL_ENOMEM. */
int ol__proposer_ckpt(struct ol__proposer *p, const char *agent,
                      uint64_t epoch, uint64_t seq, uint8_t *body,
                      size_t len, const uint8_t hash[OL_HASH_SIZE]);
/* Propose the commands in `w` (copied), each under its own request id or
 * `req` when it has none.  Returns 0, OL_ESHUTDOWN, OL_ENOTSUP (a command
 * above the cluster's level), OL_ENOMEM or an encoding error. */
int ol__proposer_cmds(struct ol__proposer *p, const struct ol__entry_w *w,
                      uint64_t req);
/* Leader: propose the commands in `w` (copied) as this leader's own
 * decisions (placements): as ol__proposer_cmds(), but once this node no
 * longer leads, ol__proposer_drop_lead() forgets them instead of their
 * being forwarded to the next leader.  Returns what ol__proposer_cmds()
 * does, or OL_ENOTLEADER. */
int ol__proposer_lead_cmds(struct ol__proposer *p,
                           const struct ol__entry_w *w);
/* Leadership lost: forget the commands proposed with
 * ol__proposer_lead_cmds() that have no outcome yet.  Returns how many. */
size_t ol__proposer_drop_lead(struct ol__proposer *p);
/* Submit already finished entry bytes as they are (leader only), counted
 * as one entry in flight.  Returns what ops.submit returns. */
int ol__proposer_submit_raw(struct ol__proposer *p, const void *entry,
                            size_t len);

/* Send what is unsent, an entry at a time, until nothing is left or an
 * entry cannot go (no leader, too many in flight, a failed send). */
void ol__proposer_flush(struct ol__proposer *p);
/* An entry handed to ops.submit was applied, or failed (`failed`).  A
 * proposal in an entry this node submitted as leader is not sent again on
 * the timer: it commits, or leadership is lost and everything is sent
 * again.  After a failed entry every proposal goes back to the timer. */
void ol__proposer_submitted(struct ol__proposer *p, int failed);
/* Offer again what has had no outcome for retry_ms (all: everything sent,
 * as when the leader changed).  Without `all` it scans at most twice per
 * retry interval. */
void ol__proposer_retry(struct ol__proposer *p, int all);
/* Forget proposals the state machine decided on. */
void ol__proposer_on_effects(struct ol__proposer *p,
                             const struct ol__effects *fx);

/* Leader: a command a follower forwarded, merged into an entry soon.
 * `weight` is what applying it costs: 1 for a command, the number of
 * bodies for a CKPTS command.  An entry takes forwarded commands up to
 * OL_PROP_ENTRY_MAX_CKPTS of weight in all, or one batch alone. */
int ol__proposer_add_forwarded(struct ol__proposer *p,
                               const struct ol__blob *raw, uint32_t weight);
/* How many forwarded commands wait. */
uint32_t ol__proposer_n_forwarded(const struct ol__proposer *p);
/* Drop them (leadership lost: their senders retry elsewhere). */
void ol__proposer_drop_forwarded(struct ol__proposer *p);

/* Proposals without an outcome yet, and the counters. */
size_t ol__proposer_pending(const struct ol__proposer *p);
/* The first few of them and where each stands, for a log line. */
void ol__proposer_describe(struct ol__proposer *p, char *buf, size_t size);
void ol__proposer_counters(const struct ol__proposer *p,
                           struct ol__proposer_counters *out);

#endif
