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

/*
 * libraft's clock.  libraft judges time on the clock raft_io gives it, in
 * timers that the loop runs before it reads what arrived meanwhile.  After
 * a loop turn that kept the thread busy for longer than the election
 * timeout (applying a failed node's thousands of moves, starting the
 * agents they bring), the next tick would find the leader's followers, or
 * a follower's leader, silent, though their messages are waiting to be
 * read:
 *   - a leader steps down (no contact with a majority in the last
 *     election timeout), and every placement it had in flight is dropped;
 *   - a follower stands for election and deposes a healthy leader.
 * Either costs an election, about a second, in the middle of a failover.
 *
 * So libraft's clock leaves out what a loop turn spent on a CPU past an
 * allowance of a heartbeat: the monotonic clock less that busy time.
 *   - Only CPU time is left out.  A process that was stopped, a frozen
 *     VM, or a loop blocked in a system call used none: that time counts
 *     in full, and a paused leader is replaced as before.
 *   - The clock never runs backwards: the busy time taken out grows no
 *     faster than the monotonic clock does.
 *   - Raft's safety does not rest on time; the agents' leases rest on
 *     this node's own clock and its pings (cluster_lease.c), not on
 *     libraft's.  What changes is when libraft starts an election or
 *     steps down after its own loop was busy: later, by that busy time.
 */
static uint64_t thread_cpu_us(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The busy time of the current turn to take out, so far. */
static uint64_t turn_excess_us(const struct cluster *c, uint64_t cpu)
{
    uint64_t allow = (uint64_t)c->cfg.heartbeat_ms * 1000;
    uint64_t busy = cpu > c->rc_cpu_us ? cpu - c->rc_cpu_us : 0;

    return busy > allow ? busy - allow : 0;
}

uint64_t ol__cl_raft_time(struct cluster *c)
{
    uint64_t mono = uv_hrtime() / 1000;
    uint64_t out = c->rc_discount_us + turn_excess_us(c, thread_cpu_us());
    uint64_t ms = (mono > out ? mono - out : 0) / 1000;

    if (ms < c->rc_last_ms)
        ms = c->rc_last_ms;
    c->rc_last_ms = ms;
    return ms;
}

void ol__cl_raft_time_mark(struct cluster *c)
{
    uint64_t cpu = thread_cpu_us();

    if (c->rc_cpu_us) /* not the first turn: the start is no turn */
        c->rc_discount_us += turn_excess_us(c, cpu);
    c->rc_cpu_us = cpu;
}
