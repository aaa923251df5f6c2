/*
 * The leader's loop was away: between two ticks more time went by than a
 * quarter of failover_ms.  Either the process did not run (stopped, a
 * frozen VM, blocked in a system call) or the loop was busy
 * with this node's own work (applying a large entry, a placement pass,
 * starting many agents).  What the loop's thread did over the gap tells
 * them apart: a busy loop was on a CPU, or waiting in the run queue for
 * one on a crowded machine, for all of it; a stopped process, or a loop
 * blocked in a system call, was neither.
 *
 * What the gap costs either way: nodes' pings that arrived during it sit
 * unread, and the tick that runs after it comes before the loop reads
 * them.  Judged on the times of the last pings read, a live node could
 * look silent for the whole gap, and so dead.
 *
 * Safety does not rest on this judgement.  A node's lease comes only from
 * this leader's answers to its pings, each sent after reading a ping, so
 * a node may step only until lease_ms after the last ping read from it
 * (cluster_lease.c); failover_ms outlasts that.  A gap only ever pushes a
 * node's last ping further into the past, and what is done here only ever
 * moves it later: either way no agent is moved while its node may still
 * step it.  What is at stake is needless moves off live nodes.
 *
 * Stalled (neither on a CPU nor ready for one for most of the gap): the
 * leader may have been away for
 * anything up to minutes, a new leader may have been elected meanwhile,
 * and incarnations may have changed.  Everything it knew of the nodes is
 * forgotten: every node gets a full failover period from now and counts
 * as unheard until its next ping (ol__cl_relearn_liveness).
 *
 * Busy (on a CPU or in the run queue for at least half the gap): the
 * leader was here all along and knows what it knew; only the gap's
 * unread pings are missing.  So the gap does not count as silence: each
 * node's last ping is taken to be the gap's length later than it was
 * read (never later than now).  A node's silence is then the silence the
 * leader could observe while reading messages, the same as without the
 * gap:
 *   - a node silent for longer than failover_ms before the gap began was
 *     dead before it (the leader may already be moving its agents, or
 *     would have at the tick the gap delayed); the gap changes nothing
 *     about it and it stays dead, its moves in flight kept;
 *   - a node alive when the gap began is not judged on the gap: its
 *     pings sent during the gap are read in the loop iteration that
 *     follows this tick, and renew it as usual;
 *   - a node that really died during the gap is judged dead failover_ms
 *     after its last ping, plus the gap: later, never sooner.
 * Liveness as learned (pinged at least once, incarnations) is kept, so
 * the moves this leader decides next still spread over every live node
 * instead of onto the only node it knows is up, itself.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "cluster_int.h"

/* Busy when the loop's thread ran, or was ready to, for at least
 * 1/OL_GAP_BUSY_DIV of the gap. */
#define OL_GAP_BUSY_DIV 2

uint64_t ol__cl_thread_ran_us(void)
{
    char buf[96];
    unsigned long long run = 0, wait = 0;
    struct timespec ts;
    ssize_t n = -1;
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);

    /* "<ns on a CPU> <ns waiting in the run queue> <time slices>" */
    if (fd >= 0) {
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
    }
    if (n > 0) {
        buf[n] = '\0';
        if (sscanf(buf, "%llu %llu", &run, &wait) == 2)
            return (uint64_t)(run + wait) / 1000;
    }
    /* Without schedstat: the CPU time alone. */
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int ol__cl_gap_busy(uint64_t gap_ms, uint64_t ran_us)
{
    return ran_us * OL_GAP_BUSY_DIV >= gap_ms * 1000;
}

uint64_t ol__cl_gap_discount(uint64_t last_ms, uint64_t now,
                             uint64_t gap_ms, uint64_t failover_ms)
{
    uint64_t silent = now > last_ms ? now - last_ms : 0;

    if (silent > gap_ms + failover_ms)
        return last_ms; /* dead before the gap: stays so */
    return silent > gap_ms ? last_ms + gap_ms : now;
}

/* The busy case (above): the gap does not count as any node's silence. */
static void discount_gap(struct cluster *c, uint64_t now, uint64_t gap_ms,
                         uint64_t ran_us)
{
    for (size_t i = 0; i < c->n_peers; i++)
        c->peers[i].last_ms = ol__cl_gap_discount(
            c->peers[i].last_ms, now, gap_ms, c->cfg.failover_ms);
    c->n.busy_gaps++;
    ol_log_rl(OL_LOG_INFO,
              "the loop was busy for %" PRIu64 " ms (%" PRIu64 " ms on a CPU "
              "or waiting for one): that time does not count as any node's "
              "silence",
              gap_ms, ran_us / 1000);
}

void ol__cl_check_gap(struct cluster *c, uint64_t now, uint64_t fresh)
{
    uint64_t ran = ol__cl_thread_ran_us(), gap, used;

    gap = c->last_tick_ms ? fresh - c->last_tick_ms : 0;
    used = ran - c->last_tick_ran_us;
    c->last_tick_ms = fresh;
    c->last_tick_ran_us = ran;
    if (gap <= c->cfg.failover_ms / 4 || c->role != RAFT_LEADER)
        return;
    if (ol__cl_gap_busy(gap, used))
        discount_gap(c, now, gap, used);
    else
        ol__cl_relearn_liveness(c, now, "the loop stalled");
}
