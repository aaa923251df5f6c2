/*
 * The raft state machine: what libraft calls to apply entries, take and
 * install snapshots, over outlast's state machine (sm.h) and store.
 *
 * Debian's libraft 0.15 counts an entry of an earlier term as committed as
 * soon as a majority stores it (the Raft paper's Figure 8 forbids that:
 * only an entry of the leader's own term, stored on a majority, commits the
 * entries before it).  So an entry libraft applies may still be replaced by
 * a later leader.  This module therefore holds applied entries in memory
 * and makes them durable and visible (SQLite, effects, acknowledgements)
 * only once an entry of this node's current term has been applied after
 * them: that entry was committed by the leader of the current term, under
 * Raft's own rule, and everything before it with it.  Every entry carries
 * the term of the leader that proposed it (cmd.h), so the rule needs no
 * access to libraft's log.
 *
 * It also remembers the hash of each entry it made durable (a ring of the
 * last `ring` indexes, written in the same transaction), so that an entry
 * that comes back different at an index already applied (after a restart,
 * libraft applies again from its last snapshot) stops the node instead of
 * being skipped.  An entry it cannot decode stops the node too: a
 * committed command is never skipped.
 *
 * libraft hands over everything a commit covers in one call, and when a
 * failed node's thousands of agents move, that is thousands of moves and
 * then thousands of first checkpoints: a second or more of applying, in
 * which the loop answers nobody, so the node looks dead to its peers and
 * an election follows.  With an apply slice (`apply_slice_us`) the entries
 * known to be committed are applied while the loop turn has time left;
 * the rest stay held, in order, and ol__fsm_drain() applies them on the
 * following turns.  They are not visible or reported before that, and a
 * node's leases and a leader's readiness wait for the store (cluster.c),
 * so a node that is behind acts as one that is behind.
 *
 * Snapshots are taken from a separate read connection whose transaction
 * pins the applied state, asynchronously when libraft offers it (FSM
 * version 3).  None is taken while entries are held: libraft would record
 * it at an index the store has not reached.
 *
 * libraft 0.15 counts its snapshot threshold and trailing in entries, and
 * sends a follower every entry after its next index in one AppendEntries
 * (its own TODO: "implement a limit to the total size of the entries
 * being sent").  Entries are group commits of any size, so under load a
 * follower that lost its place was sent gigabytes at once, more than the
 * transport accepts (OL_RW_BATCH_MAX), over and over, and never caught
 * up.  So the FSM also bounds the log in bytes (`log_bytes`): once the
 * entries applied since the last snapshot hold that many, it lowers
 * libraft's threshold so a snapshot is taken at once, and when one is
 * taken it keeps only as many trailing entries as fit in a quarter of it.
 * A follower further behind than that is sent the snapshot.  So the
 * largest catch-up message is about 1.25 x log_bytes, which must stay
 * under OL_RW_BATCH_MAX (the config allows at most 200 MiB).  Each
 * snapshot costs the commit path (raft_uv closes its open segments and
 * writes and syncs the snapshot beside the appends), which is why the
 * bound is not smaller.
 */
#ifndef OL_FSM_H
#define OL_FSM_H

#include <raft.h>
#include <sqlite3.h>
#include <stdint.h>

#include "base/buf.h"
#include "state/sm.h"

struct ol__fsm_hooks {
    void *data;
    /* Effects of entries now certainly committed, in log order, after
     * their transaction has committed.  `term` is the term whose entry
     * released them (this node's current term).  The list is freed after
     * the call. */
    void (*effects)(void *data, struct ol__effects *fx, uint64_t term);
    /* The node must stop: an entry cannot be applied, the store failed,
     * or the log diverged from what was applied.  `msg` says what and how
     * to recover.  No entry is applied after this is called. */
    void (*fatal)(void *data, const char *msg);
    /* Entries known to be committed were left for a later loop turn (the
     * turn's apply slice was used up): the owner calls ol__fsm_drain()
     * once per turn until it returns 0.  May be NULL with no slice. */
    void (*deferred)(void *data);
};

struct ol__fsm_config {
    const char *db_path; /* for the snapshot reader; NULL: no snapshots */
    uint32_t ring;       /* entry hashes remembered; 0: 65536 */
    int async_snapshots; /* build snapshots on libraft's async_work */
    /* The log's bound in bytes (see above); 0: entries only.  The two
     * counts are the ones given to libraft, restored after a snapshot. */
    uint64_t log_bytes;
    uint32_t snapshot_threshold;
    uint32_t snapshot_trailing;
    /* At most about this much time per loop turn goes to applying
     * entries (a turn ends at each ol__fsm_turn()); what commits beyond
     * it waits for ol__fsm_drain().  At least one entry is applied per
     * call.  0: every entry is applied as libraft hands it over. */
    uint32_t apply_slice_us;
};

/* The size of an applied entry, by index (a ring). */
struct ol__fsm_size {
    uint64_t index;
    uint64_t len;
};

struct ol__fsm {
    struct raft_fsm fsm;    /* handed to raft_init() / raft_fixture_grow() */
    struct raft *raft;      /* set with ol__fsm_attach() */
    struct ol__store *st;
    struct ol__sm *sm;
    struct ol__fsm_hooks hooks;
    struct ol__fsm_config cfg;
    sqlite3_stmt *ring_put;
    sqlite3_stmt *ring_get;
    int stopped;

    /* Entries applied by libraft and not yet by the state machine: the
     * ones up to ready_index are known to be committed (an entry of the
     * then current term, ready_term, was applied there) and wait for a
     * loop turn with time left; the rest wait for such an entry. */
    struct ol__fsm_held *held_head, *held_tail;
    uint32_t n_held;
    size_t held_bytes;
    uint64_t ready_index, ready_term;
    uint64_t spent_us; /* applying, in this loop turn */

    /* snapshots */
    sqlite3 *snap_db;
    struct ol__buf snap_buf;
    uint64_t snap_index;
    int snap_busy;

    /* the log's size in bytes (log_bytes) */
    struct ol__fsm_size *sizes;
    size_t sizes_cap;
    uint64_t since_snap;    /* bytes applied since the last snapshot */

    struct {
        uint64_t applied;       /* entries made durable */
        uint64_t held_max;      /* most entries held at once */
        uint64_t snapshots_taken;
        uint64_t snapshots_installed;
        uint64_t snapshots_refused; /* asked while entries were held */
        uint64_t ring_checked;  /* re-applied entries compared */
        uint64_t snapshots_by_bytes; /* taken early for log_bytes */
        uint64_t deferred;      /* entries left for a later loop turn */
    } n;
};

/* Set up `f` over a store and state machine (borrowed; they must outlive
 * it).  Returns 0 or OL_EIO / OL_ENOMEM with errmsg set. */
int ol__fsm_init(struct ol__fsm *f, struct ol__store *st, struct ol__sm *sm,
                 const struct ol__fsm_config *cfg,
                 const struct ol__fsm_hooks *hooks, char *errmsg);
/* Tell the FSM which raft instance drives it (before raft_start()). */
void ol__fsm_attach(struct ol__fsm *f, struct raft *raft);
void ol__fsm_close(struct ol__fsm *f);

/* Entries applied by libraft but not yet durable. */
uint32_t ol__fsm_held(const struct ol__fsm *f);

/* A new loop turn: the apply slice starts again. */
void ol__fsm_turn(struct ol__fsm *f);

/* Apply committed entries left from earlier turns while the slice lasts.
 * Returns 1 while some are left, else 0. */
int ol__fsm_drain(struct ol__fsm *f);


#endif
