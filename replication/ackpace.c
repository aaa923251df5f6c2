/*
 * The pacer of a leader's append completions (ackpace.h: why, and why it
 * is safe).
 */
#include <stdlib.h>
#include <string.h>

#include "ackpace.h"
#include "rstart.h"

struct ol__ackpace_op {
    struct raft_io_append req;    /* raft_uv's request: ours */
    struct raft_io_append *outer; /* libraft's */
    raft_io_append_cb cb;
    struct ol__ackpace *p;
    uint64_t end;  /* the last index it stores */
    uint64_t term; /* the term this node led in when it asked */
    int leader;    /* asked as leader: its completion may be held */
    int done, status, held;
    uint64_t done_ms;
    struct ol__ackpace_op *next;
};

void ol__ackpace_init(struct ol__ackpace *p, struct raft *r,
                      ol__ackpace_append_fn append,
                      ol__ackpace_close_fn close, unsigned hold_max_ms,
                      uint64_t (*now_ms)(void *data), void *data)
{
    memset(p, 0, sizeof *p);
    p->r = r;
    p->append = append;
    p->close = close;
    p->hold_max_ms = hold_max_ms;
    p->now_ms = now_ms;
    p->data = data;
}

static uint64_t match_of(const struct ol__ackpace *p, uint64_t id,
                         uint64_t term)
{
    for (unsigned i = 0; i < p->n_acks; i++)
        if (p->acks[i].id == id)
            return p->acks[i].term == term ? p->acks[i].match : 0;
    return 0;
}

uint64_t ol__ackpace_quorum(const struct ol__ackpace *p,
                            const struct raft_configuration *conf,
                            uint64_t self, uint64_t term)
{
    uint64_t m[OL_ACKPACE_PEERS];
    unsigned voters = 0, self_votes = 0, k = 0, need;

    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].role != RAFT_VOTER)
            continue;
        voters++;
        if (conf->servers[i].id == self)
            self_votes = 1;
        else if (k < OL_ACKPACE_PEERS)
            m[k++] = match_of(p, conf->servers[i].id, term);
    }
    need = voters / 2 + 1 - self_votes;
    if (voters == 0 || need == 0)
        return UINT64_MAX;
    if (need > k)
        return 0;
    /* The need-th highest answer: a few voters, a selection by hand. */
    for (unsigned i = 0; i < need; i++)
        for (unsigned j = i + 1; j < k; j++)
            if (m[j] > m[i]) {
                uint64_t t = m[i];

                m[i] = m[j];
                m[j] = t;
            }
    return m[need - 1];
}

void ol__ackpace_answer(struct ol__ackpace *p, uint64_t peer, uint64_t term,
                        uint64_t last_index)
{
    unsigned i;

    for (i = 0; i < p->n_acks && p->acks[i].id != peer; i++)
        ;
    if (i == p->n_acks) {
        if (p->n_acks == OL_ACKPACE_PEERS)
            return; /* untracked: its entries wait for the guard */
        p->n_acks++;
        p->acks[i].id = peer;
        p->acks[i].term = 0;
    }
    if (term > p->acks[i].term) {
        p->acks[i].term = term;
        p->acks[i].match = last_index;
    } else if (term == p->acks[i].term && last_index > p->acks[i].match) {
        p->acks[i].match = last_index;
    }
}

/* libraft 0.15 answers a follower's finished append (a failed one too)
 * to the leader it follows, with no check that it knows one: after a term
 * change cleared it (a candidate turned follower again), the answer goes
 * to a NULL address and libraft crashes copying it.  So a follower's
 * completion waits while this node follows nobody; it goes once a leader
 * is known, this node stands or leads (libraft then answers no one), or
 * the disk closes. */
static int no_leader_known(const struct raft *r)
{
    return raft_state((struct raft *)r) == RAFT_FOLLOWER &&
           (r->follower_state.current_leader.id == 0 ||
            r->follower_state.current_leader.address == NULL);
}

/* May the oldest completion go now?  Sets *guard when only the time it
 * has been held lets it. */
static int may_pass(struct ol__ackpace *p, const struct ol__ackpace_op *op,
                    uint64_t now, int *guard)
{
    struct raft *r = p->r;

    *guard = 0;
    if (!op->leader && !p->closing && no_leader_known(r))
        return 0;
    if (!op->leader || op->status != 0 || p->closing ||
        raft_state(r) != RAFT_LEADER || r->current_term != op->term)
        return 1;
    if (op->end <= ol__ackpace_quorum(p, &r->configuration, r->id,
                                      r->current_term))
        return 1;
    if (now - op->done_ms >= p->hold_max_ms) {
        *guard = 1;
        return 1;
    }
    return 0;
}

void ol__ackpace_pump(struct ol__ackpace *p)
{
    uint64_t now = p->now_ms(p->data);

    while (p->head && p->head->done) {
        struct ol__ackpace_op *op = p->head;
        struct raft_io_append *outer = op->outer;
        raft_io_append_cb cb = op->cb;
        int status = op->status, guard;

        if (!may_pass(p, op, now, &guard)) {
            op->held = 1;
            return;
        }
        if (!op->held)
            p->n.passed++;
        else if (guard)
            p->n.by_guard++;
        else
            p->n.by_ack++;
        if (op->held)
            p->n.held_ms += now - op->done_ms;
        p->head = op->next;
        if (p->head == NULL)
            p->tail = NULL;
        free(op);
        /* libraft may append again from here: the op is already off the
         * list, so a new one queues behind what is left. */
        cb(outer, status);
    }
}

static void op_done(struct raft_io_append *req, int status)
{
    struct ol__ackpace_op *op = req->data;
    struct ol__ackpace *p = op->p;

    op->done = 1;
    op->status = status;
    op->done_ms = p->now_ms(p->data);
    ol__ackpace_pump(p);
}

int ol__ackpace_append(struct ol__ackpace *p, struct raft_io *io,
                       struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n,
                       raft_io_append_cb cb)
{
    struct ol__ackpace_op *op = calloc(1, sizeof *op), *prev;
    int rv;

    if (op == NULL)
        return RAFT_NOMEM;
    op->outer = req;
    op->cb = cb;
    op->p = p;
    /* A leader appends everything from its first unsent entry to the end
     * of its log (libraft 0.15's replicationTrigger). */
    op->end = ol__raft_last_index(p->r);
    op->term = p->r->current_term;
    op->leader = raft_state(p->r) == RAFT_LEADER && !p->closing;
    op->req.data = op;
    req->cb = cb;
    /* On the list first: a completion must find it there. */
    prev = p->tail;
    if (prev)
        prev->next = op;
    else
        p->head = op;
    p->tail = op;
    rv = p->append(io, &op->req, entries, n, op_done);
    if (rv != 0) {
        if (prev)
            prev->next = NULL;
        else
            p->head = NULL;
        p->tail = prev;
        free(op);
    }
    return rv;
}

void ol__ackpace_close(struct ol__ackpace *p, struct raft_io *io,
                       raft_io_close_cb cb)
{
    p->closing = 1;
    ol__ackpace_pump(p);
    p->close(io, cb);
}
