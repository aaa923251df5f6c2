/*
 * Corrections to libraft 0.15's match reporting (raftfix.h).  Reads the
 * raft log through the public struct raft_log: a circular buffer of the
 * entries after `offset`, plus the index and term of the last snapshot.
 */
#include "raftfix.h"

static size_t log_count(const struct raft_log *l)
{
    return l->back >= l->front ? l->back - l->front
                               : l->size - l->front + l->back;
}

uint64_t ol__raft_term_of(const struct raft *r, uint64_t index)
{
    const struct raft_log *l = &r->log;
    size_t n = log_count(l);

    if (index == 0)
        return 0;
    if (index > l->offset && index <= l->offset + n)
        return l->entries[(l->front + (index - l->offset - 1)) % l->size]
            .term;
    if (index == l->snapshot.last_index)
        return l->snapshot.last_term;
    return UINT64_MAX;
}

uint64_t ol__raft_last_of_term(const struct raft *r, uint64_t term)
{
    const struct raft_log *l = &r->log;

    /* Terms never decrease along a log: walk back from the newest entry
     * past those of later terms. */
    for (size_t k = log_count(l); k > 0; k--) {
        raft_term t = l->entries[(l->front + k - 1) % l->size].term;

        if (t == term)
            return l->offset + k;
        if (t < term)
            return 0;
    }
    return l->snapshot.last_term == term ? l->snapshot.last_index : 0;
}

static void verified(struct ol__rfix *f, uint64_t term, uint64_t index)
{
    if (term < f->term)
        return;
    if (term > f->term) {
        f->term = term;
        f->verified = 0;
    }
    if (index > f->verified)
        f->verified = index;
}

void ol__rfix_append_seen(struct ol__rfix *f, const struct raft *r,
                          uint64_t term, uint64_t prev_index,
                          uint64_t prev_term)
{
    if (ol__raft_term_of(r, prev_index) == prev_term)
        verified(f, term, prev_index);
}

void ol__rfix_snapshot_seen(struct ol__rfix *f, uint64_t term,
                            uint64_t last_index)
{
    verified(f, term, last_index);
}

uint64_t ol__rfix_result_cap(struct ol__rfix *f, const struct raft *r,
                             uint64_t term, uint64_t last_log_index)
{
    uint64_t cap = ol__raft_last_of_term(r, term);

    if (term == f->term && f->verified > cap)
        cap = f->verified;
    /* Its own snapshot holds only what it applied, which was committed:
     * every later leader's log has it.  Reporting less would make the
     * leader send entries from before the snapshot, which libraft 0.15's
     * follower cannot take. */
    if (r->log.snapshot.last_index > cap)
        cap = r->log.snapshot.last_index;
    if (cap >= last_log_index)
        return last_log_index;
    f->capped++;
    return cap;
}
