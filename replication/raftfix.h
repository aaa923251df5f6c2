/*
 * What outlast corrects in Debian's libraft 0.15 commit bookkeeping, as
 * decisions over a node's own raft log (raftwire.h applies them to the
 * bytes on the wire; the simulation applies them to the fixture's
 * messages).
 *
 * libraft 0.15's follower answers a successful AppendEntries with its last
 * stored index, and the leader takes that as the follower's match index.
 * A follower whose log has a stale tail (entries of an earlier term past
 * what the request covered) is then counted for entries it does not have.
 * A follower knows its log matches the leader of term T up to:
 *   - the newest entry of term T it stores (only that leader makes them),
 *   - the prev_log_index of any AppendEntries of term T whose
 *     (prev_log_index, prev_log_term) its log held when the request arrived
 *     (Raft's Log Matching Property);
 *   - the last index of a snapshot the leader of term T sent it.  Counting
 *     the follower up to there before the install completes cannot make
 *     anything commit: a leader's snapshot holds only what it committed;
 *   - the last index of its own snapshot, which holds only what it applied
 *     (fsm.h), so what was committed.
 * Its answers are capped at the higher of the two.
 */
#ifndef OL_RAFTFIX_H
#define OL_RAFTFIX_H

#include <raft.h>
#include <stdint.h>

struct ol__rfix {
    uint64_t term;     /* the leader's term `verified` is for */
    uint64_t verified; /* log matches that leader's up to here */
    uint64_t capped;   /* answers lowered */
};

/* An AppendEntries of `term` arrived, before libraft processes it. */
void ol__rfix_append_seen(struct ol__rfix *f, const struct raft *r,
                          uint64_t term, uint64_t prev_index,
                          uint64_t prev_term);

/* An InstallSnapshot of `term` up to `last_index` arrived. */
void ol__rfix_snapshot_seen(struct ol__rfix *f, uint64_t term,
                            uint64_t last_index);

/* The last_log_index a successful answer of `term` may report. */
uint64_t ol__rfix_result_cap(struct ol__rfix *f, const struct raft *r,
                             uint64_t term, uint64_t last_log_index);

/* The newest index in r's log (or its snapshot) with an entry of `term`;
 * 0 when there is none. */
uint64_t ol__raft_last_of_term(const struct raft *r, uint64_t term);

/* The term of the entry at `index` in r's log: 0 for index 0, or
 * UINT64_MAX when r's log does not say (compacted, or past its end). */
uint64_t ol__raft_term_of(const struct raft *r, uint64_t index);

#endif
