/*
 * bench_cluster's shared pieces: its options, what a table row measures,
 * one repetition's figures, and the outlast side of a repetition
 * (cluster_outlast.c).
 */
#ifndef OL_BENCH_CLUSTER_H
#define OL_BENCH_CLUSTER_H

#include <stdint.h>

#define MAX_CELLS 12
#define MAX_REPS 15

enum place { SPREAD, ON_LEADER, ON_FOLLOWER };

struct opts {
    uint32_t agents[MAX_CELLS];
    int n_agents;
    int reps;
    uint32_t size, warmup_ms, window_ms, inflight;
    uint32_t etcd_max_clients;
    uint32_t spawn_budget_ms;
    const char *log_level;
    const char *cluster_extra; /* diagnostics: more [cluster] lines */
    /* raft timing for both outlast and etcd (0: the loopback defaults) */
    uint32_t election_ms, heartbeat_ms, failover_ms;
    int do_outlast, do_etcd;
    int scrape_compare; /* outlast alone (the anchor) vs scraped */
    uint32_t scrape_ms;
};

/* What one table row measures. */
struct row {
    uint32_t n;
    enum place place;
    char label[24];
};

struct cell {
    int ok;
    double rate;       /* ckpt/s or puts/s */
    double p50, p99;   /* us */
    double cpu;        /* CPU seconds per wall second of the servers */
    double client_cpu; /* etcd: of the load generator */
    uint64_t elections;   /* outlast: raft terms started in the window */
    uint64_t lease_lost;  /* outlast: "lease lost" log lines in it */
    uint64_t entries;     /* outlast: raft entries committed in it */
    uint64_t snapshots;   /* outlast: raft snapshots taken in it */
    uint64_t scrapes, scrape_failed; /* outlast scraped */
    double scrape_ms;     /* mean time of one scrape */
};

/* One repetition of row `w` on a fresh 3-node cluster (every node's HTTP
 * endpoint scraped when `scraped`): spawn, warm up, measure the window,
 * print the per-node lines and fill in `out` (out->ok on success). */
void cluster_run_outlast(const struct opts *o, const struct row *w, int rep,
                         int scraped, struct cell *out);

#endif
