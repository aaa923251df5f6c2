/*
 * A deterministic simulation of an outlast cluster: the real state machine
 * and raft FSM (state/sm.c, fsm.c) over real SQLite files, driven by
 * libraft 0.15's own simulated cluster (raft_fixture: in-memory log and
 * network, simulated time).  A seeded nemesis kills and revives nodes,
 * partitions and heals, drops and delays messages, slows disks and forces
 * elections, while owners propose checkpoint batches and the leader moves
 * agents.  Every decision comes from the seed, so a failing seed reruns
 * exactly.
 *
 * After each schedule the checker asserts:
 *   - every checkpoint any node ever reported committed is present, with
 *     the same hash, on every node;
 *   - every node's tables agree (agents, checkpoint heads, mailbox), and
 *     rows present on two nodes are identical;
 *   - every node's chains verify (signatures, hashes, links, no gaps
 *     beyond snapshot installs), and no (agent, epoch) has two signers;
 *   - no node stopped on a divergence, and no evidence was recorded.
 */
#ifndef OL_TEST_SIM_H
#define OL_TEST_SIM_H

#include <stdint.h>

struct sim_opts {
    uint64_t seed;
    unsigned nodes;       /* 3 or 5; 0: chosen by the seed */
    unsigned agents;      /* 0: chosen by the seed */
    unsigned duration_ms; /* simulated time under faults; 0: by the seed */
    int naive;            /* apply entries as libraft 0.15 commits them,
                           * without holding: shows what the FSM prevents */
    int as_is;            /* leave libraft's messages as they are (no
                           * commit and match caps, raftwire.h) */
    int verbose;          /* print the schedule */
    const char *tmpdir;   /* where the databases go; NULL: $TMPDIR or /tmp */
    int keep;             /* keep the databases (always kept on failure) */
};

struct sim_result {
    unsigned violations;
    char first[512];      /* the first violation found */
    char dir[256];        /* the databases, when kept */
    unsigned nodes, agents;
    uint64_t acked;       /* checkpoints reported committed */
    uint64_t entries;     /* raft entries proposed */
    uint64_t leaders;     /* leaderships seen */
    uint64_t kills, partitions, installs, held_max, refusals;
    uint64_t paced;       /* leader appends held until answers made a
                           * majority (replication/ackpace.h) */
    uint64_t sim_ms;
    int abandoned;        /* the schedule left what the fixture models
                           * faithfully (a truncate with writes pending):
                           * not checked */
};

/* Run one schedule.  Returns 0 when it ran (see r->violations), or -1 when
 * the harness itself failed (r->first says why). */
int sim_run(const struct sim_opts *o, struct sim_result *r);

/* The Figure-8 schedule of libraft 0.15 (../shared/reference/raft-fig8)
 * against outlast's FSM and wire rewrites, or with `naive` against an FSM
 * that applies what libraft commits at once, with libraft's messages as
 * they are.  r->violations counts checkpoints reported
 * committed that the survivors do not have; r->acked how many were
 * reported; r->held_max how many entries S1's FSM held back. */
int sim_figure8(int naive, int verbose, struct sim_result *r);
/* The same with the FSM and the wire rewrites chosen separately. */
int sim_figure8_as(int naive, int as_is, int verbose, struct sim_result *r);

#endif
