/*
 * A seeded process nemesis over a real outlastd cluster (3 or 5 nodes in
 * network namespaces made by the test, or on loopback when a scenario
 * needs no partition and namespaces cannot be made).
 *
 * Every round: the cluster is checked healthy; a client starts sending
 * numbered messages to a ledger agent through the nodes' control sockets,
 * retrying on a timeout or error on the next node as a client would; the
 * round's faults are applied and undone one after the other (kill -9 and
 * restart, SIGSTOP/SIGCONT of a node and its agent hosts, a simulated
 * suspend, a split into two sides, a slow disk), aimed at the leader, the
 * ledger's owner or another follower; the cluster must recover; the client
 * stops; and the checker runs:
 *  (a) no committed checkpoint lost, one history per agent on every node
 *      (tc_check);
 *  (b) one place at a time: no node stepped an agent under an older epoch
 *      after the first committed step of a newer epoch on another node
 *      (from the step log of every agent, tests/plugins/steplog.c, ordered
 *      by the machine's one CLOCK_MONOTONIC);
 *  (c) every acknowledged `send` delivered exactly once, and no message
 *      delivered twice, as the ledger's committed state records them;
 *  (d) no placement from an old term applied: a placement a node decided
 *      as leader of term T after another node had become leader of a
 *      later term, whose epoch then took effect (from the nodes' logs and
 *      their databases);
 *  (r) recovery: a leader, every node seen alive, every agent committing
 *      again, within a bound after the faults end.
 * Violations are logged with their evidence (step-log lines, client
 * attempts, log lines) and counted.
 *
 * The schedule (fault kinds, whom they aim at by role, how long they last,
 * slow-disk delays) is a pure function of the seed and the round; which
 * node holds a role, and timing, vary from run to run.  The seed is printed
 * at the start; OL_NEMESIS_SEED=S reruns it, OL_NEMESIS_ROUNDS=R sets the
 * number of rounds, and OL_NEMESIS_SUMMARY=FILE appends one line per run
 * ("nemesis NAME seed S rounds R violations V a=.. b=.. c=.. d=.. r=..").
 */
#ifndef OL_TEST_NEMESIS_H
#define OL_TEST_NEMESIS_H

#include <stdint.h>

enum nem_kind {
    NEM_KILL,        /* kill -9, restart after the hold */
    NEM_PAUSE,       /* SIGSTOP the node's process tree, SIGCONT after */
    NEM_SUSPEND,     /* a pause across which its monotonic clock stands */
    NEM_SPLIT,       /* the target (and in 5 nodes one more) cut off */
    NEM_SPLIT_PAIR,  /* the leader and one follower cut off from the rest */
    NEM_SLOW_DISK,   /* every durable write of the target delayed */
    NEM_KINDS
};

enum nem_role {
    NEM_LEADER,   /* the leader when the fault starts */
    NEM_OWNER,    /* the node running the ledger agent */
    NEM_FOLLOWER, /* a follower, preferably not the ledger's owner */
    NEM_ROLES
};

#define NEM_K(k) (1u << (k))
#define NEM_ALL_KINDS ((1u << NEM_KINDS) - 1)
#define NEM_ALL_ROLES ((1u << NEM_ROLES) - 1)
#define NEM_MAX_FAULTS 2

enum nem_inv { NEM_INV_A, NEM_INV_B, NEM_INV_C, NEM_INV_D, NEM_INV_R,
               NEM_INVS };

struct nem_fault {
    int kind;         /* enum nem_kind */
    int role;         /* enum nem_role */
    int hold_ms;      /* how long the fault lasts */
    int64_t delay_us; /* NEM_SLOW_DISK: per durable write */
    uint32_t pick;    /* chooses among candidates at run time */
};

struct nem_plan {
    int n_faults;
    struct nem_fault f[NEM_MAX_FAULTS];
    int gap_ms; /* between two faults */
};

struct nem_opts {
    const char *name;   /* scenario name, for logs and the summary */
    int n;              /* nodes: 3 or 5 */
    unsigned kinds;     /* NEM_K() of the kinds to draw from */
    unsigned roles;     /* 1u << role of the roles to aim at */
    int rounds;         /* default number of rounds */
    uint64_t seed;      /* default seed */
    int max_faults;     /* faults per round, 1..NEM_MAX_FAULTS */
    int agents;         /* steplog agents besides the ledger */
    int no_client;      /* 1: send nothing; (c) is not checked */
    const char *wan_rtt; /* not NULL: run over the WAN test bed with
                            these round trips (nf_wan_setup); the test
                            skips where the bed cannot be made */
    /* Snapshot settings (tc_opts); 0: the product's defaults. */
    unsigned snapshot_threshold, snapshot_trailing, snapshot_mb;
};

struct nem_result {
    uint64_t seed;
    int rounds;
    int violations;
    int by_inv[NEM_INVS];
    uint64_t sends_acked, sends_unacked, steps;
};

/* The round's plan: a pure function of its arguments.  failover_ms scales
 * the hold times (pauses last 0.5-3 x failover_ms). */
void nem_plan(uint64_t seed, int round, const struct nem_opts *o,
              int failover_ms, struct nem_plan *out);

const char *nem_kind_name(int kind);
const char *nem_role_name(int role);

/* Run a whole scenario: make the cluster, run the rounds, check after
 * each, tear down.  The seed and rounds come from OL_NEMESIS_SEED and
 * OL_NEMESIS_ROUNDS when set.  Violations are reported as test failures
 * (cr_expect) naming the seed and the command that reruns it.  Skips the
 * test when the scenario needs namespaces and they cannot be made. */
void nem_run(const struct nem_opts *o, struct nem_result *out);

/* Kill the cluster and remove namespaces and files (a suite's .fini: it
 * also runs when a test stops on a failed assertion). */
void nem_teardown(void);

#endif
