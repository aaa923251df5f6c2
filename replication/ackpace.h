/*
 * Commit on the acknowledgement that completes a majority.
 *
 * libraft 0.15's leader looks for a commit at one index only: its own
 * newest stored one (r->last_stored).  It looks when its own append
 * completes and when a follower answers.  While agents keep proposing, the
 * leader's disk is faster than a round trip, so when a follower
 * acknowledges index N the leader has already stored N+1 and more; N then
 * waits for an answer that covers the leader's newest entry, a second
 * round trip on a WAN.  (Later libraft releases walk back from the newest
 * index; 0.15 does not.)
 *
 * The leader's local appends are ours to complete (raft_io.append).  The
 * pacer sits between raft_uv and libraft and holds the completion of a
 * leader's append that is durable here until enough voters have
 * acknowledged its last entry to make a majority with the leader; then it
 * passes the completion on.  libraft's last_stored therefore never runs
 * ahead of what a majority stores, and each acknowledgement that completes
 * a majority commits at once.
 *
 * Telling libraft later than the disk did that an entry is stored is
 * always safe: the commit rule only ever needs more.  What the pacer
 * learns of acknowledgements comes from the wire (raftwire.h, after the
 * follower's own cap, raftfix.h), and is used only to decide when to pass
 * a completion on; libraft still counts the answers itself.  A completion
 * is passed on at once when this node does not lead (or its term moved
 * on), when the append failed, when the cluster is closing, when this node
 * alone is a majority, and in any case once it has been held `hold_max_ms`
 * (a guard for an answer the pacer missed).  Completions are passed on in
 * the order the disk made them.
 */
#ifndef OL_ACKPACE_H
#define OL_ACKPACE_H

#include <raft.h>
#include <stdint.h>

#define OL_ACKPACE_PEERS 64 /* voters whose answers are tracked */

struct ol__ackpace_op;

typedef int (*ol__ackpace_append_fn)(struct raft_io *io,
                                     struct raft_io_append *req,
                                     const struct raft_entry entries[],
                                     unsigned n, raft_io_append_cb cb);
typedef void (*ol__ackpace_close_fn)(struct raft_io *io,
                                     raft_io_close_cb cb);

struct ol__ackpace {
    struct raft *r;
    ol__ackpace_append_fn append; /* raft_uv's */
    ol__ackpace_close_fn close;
    uint64_t (*now_ms)(void *data);
    void *data;
    unsigned hold_max_ms;
    int closing;
    struct ol__ackpace_op *head, *tail; /* appends in flight, in order */
    struct {
        uint64_t id, term, match;
    } acks[OL_ACKPACE_PEERS];
    unsigned n_acks;
    struct {
        uint64_t passed;   /* completions passed on at once */
        uint64_t by_ack;   /* held, then passed on by an answer */
        uint64_t by_guard; /* held, then passed on after hold_max_ms */
        uint64_t held_ms;  /* total time completions were held */
    } n;
};

/* Set the pacer up in front of an io's `append` and `close` (raft_uv's,
 * which the caller's own io functions then reach through
 * ol__ackpace_append() and ol__ackpace_close()). */
void ol__ackpace_init(struct ol__ackpace *p, struct raft *r,
                      ol__ackpace_append_fn append,
                      ol__ackpace_close_fn close, unsigned hold_max_ms,
                      uint64_t (*now_ms)(void *data), void *data);

/* raft_io.append and raft_io.close through the pacer. */
int ol__ackpace_append(struct ol__ackpace *p, struct raft_io *io,
                       struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n,
                       raft_io_append_cb cb);
void ol__ackpace_close(struct ol__ackpace *p, struct raft_io *io,
                       raft_io_close_cb cb);

/* A successful AppendEntries answer from `peer` arrived on the wire.  It
 * only records; the next pump passes on what it allows. */
void ol__ackpace_answer(struct ol__ackpace *p, uint64_t peer, uint64_t term,
                       uint64_t last_index);

/* Pass on every completion that may go now.  Called from the loop's check
 * phase and the tick, never from inside the transport's read path (a
 * completion runs libraft, which sends). */
void ol__ackpace_pump(struct ol__ackpace *p);

/* The highest index that the answers of term `term` put on a majority of
 * `conf`'s voters together with `self` (when `self` votes); UINT64_MAX
 * when `self` alone is a majority. */
uint64_t ol__ackpace_quorum(const struct ol__ackpace *p,
                            const struct raft_configuration *conf,
                            uint64_t self, uint64_t term);

#endif
