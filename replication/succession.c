/*
 * When the leader is gone: shorter elections, and the successor that
 * stands at once (cluster_int.h).
 *
 * libraft 0.15 gives a follower's election a whole timeout, and its
 * pre-vote is refused by any follower that still has a leader, so a
 * killed leader's replacement waits for the slower follower's timeout.
 * A refused connection to the leader's address says its process is gone:
 * the followers then shorten their timeouts, and the one every survivor
 * agrees is the successor stands at once, through the path libraft keeps
 * for leadership transfers.
 */
#include <inttypes.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "cluster_int.h"

/* The shortened election timeout: a third, and never under two
 * heartbeats (which the operator sizes to the round trips), so a
 * candidate's two rounds (pre-vote, vote) fit in it over a WAN. */
static unsigned fast_election_ms(const struct cluster *c)
{
    unsigned ms = c->cfg.election_ms / 3, floor = 2 * c->cfg.heartbeat_ms;

    return ms < floor ? floor : ms;
}

/* The leader's address refuses connections: its process is gone (a
 * machine that crashed or a network that was cut refuses nothing).
 * libraft 0.15 would wait out a whole election timeout, and its pre-vote
 * is refused by any follower that still has a leader, so an election
 * waits for the slower follower's timeout.  A follower that sees the
 * refusal stands sooner: its election timeout is shortened until a leader
 * of a later term is known.  Elections are safe at any timing; pre-vote
 * keeps a follower that is wrong about this from disturbing a live
 * leader, since the others still hear it and refuse. */
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The term of this node's last log entry, as libraft keeps it. */
static uint64_t last_log_term(const struct raft *r)
{
    const struct raft_log *l = &r->log;

    if (l->front == l->back)
        return l->snapshot.last_term;
    return l->entries[(l->back + l->size - 1) % l->size].term;
}

/* The leader is gone and this node is its successor
 * (ol__cl_successor): stand at once, as the target of a leadership
 * transfer does.  libraft 0.15 starts such an election only on the
 * leader's TimeoutNow, so that message (raft_uv's encoding: type, header
 * length, then term, last index and last term) is handed to it as if from
 * the leader.  Its RequestVote then says the leader may be disrupted, and
 * a follower that still counts the dead leader as its own votes without
 * waiting out its timeout.  Raft's safety does not depend on when an
 * election starts.  Should anything not match (the term, this node's
 * log), libraft ignores the message and the shortened timeout stands. */
static void stand_now(struct cluster *c, uint64_t leader)
{
    uint8_t msg[40];
    int rv;


    put64(msg, RAFT_IO_TIMEOUT_NOW);
    put64(msg + 8, 24);
    put64(msg + 16, c->raft.current_term);
    put64(msg + 24, raft_last_index(&c->raft));
    put64(msg + 32, last_log_term(&c->raft));
    rv = ol__transport_raft_inject(c->tr, leader, msg, sizeof msg);
    if (rv != 0) {
        ol_log(OL_LOG_WARN, "could not stand at once for the gone leader "
                            "(node %" PRIu64 "): %s",
               leader, ol_strerror(rv));
        return;
    }
    c->n.stood++;
    ol_log(OL_LOG_INFO, "this node is the gone leader's successor: it "
                        "stands for election at once");
}

void ol__cl_peer_refused(void *data, uint64_t peer)
{
    struct cluster *c = data;

    if (!c->raft_inited || c->closing || c->role != RAFT_FOLLOWER ||
        peer == 0 || peer != c->leader_id || c->fast_term != 0)
        return;
    c->fast_term = c->raft.current_term;
    c->n.fast_elections++;
    raft_set_election_timeout(&c->raft, fast_election_ms(c));
    ol_log(OL_LOG_INFO, "the leader (node %" PRIu64 ") refuses "
                        "connections: election timeout %u ms until a new "
                        "leader is known",
           peer, fast_election_ms(c));
    if (ol__cl_successor(c, peer) == c->cfg.self_id)
        stand_now(c, peer);
}

/* A leader of a later term is known, or this node leads: back to the
 * configured election timeout. */
void ol__cl_election_restore(struct cluster *c, int state, uint64_t lid)
{
    if (c->fast_term == 0 ||
        (state != RAFT_LEADER &&
         (lid == 0 || c->raft.current_term == c->fast_term)))
        return;
    c->fast_term = 0;
    raft_set_election_timeout(&c->raft, c->cfg.election_ms);
}
