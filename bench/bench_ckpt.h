/*
 * bench_ckpt's shared pieces: its options, one repetition's figures, and
 * the node side of a repetition (ckpt_node.c).
 */
#ifndef OL_BENCH_CKPT_H
#define OL_BENCH_CKPT_H

#include <limits.h>
#include <stdint.h>

#define MAX_LIST 8
#define MAX_REPS 15

struct opts {
    uint32_t agents[MAX_LIST], n_agents;
    uint32_t sizes[MAX_LIST], n_sizes;
    uint32_t reps;
    uint32_t warmup_ms;
    uint32_t window_ms;
    uint32_t singles; /* single-row inserts for the latency anchor */
    int fork;
    int node_only; /* for profiling: skip the anchor */
    int scrape;    /* serve HTTP and scrape it every scrape_ms */
    int scrape_compare; /* each rep twice: unscraped (the anchor), scraped */
    uint32_t scrape_ms;
    int isolation; /* enum ol__isolation */
    char plugin_dir[PATH_MAX];
};

/* One repetition's figures, passed from the child through a pipe. */
struct result {
    int ok;
    char err[200];
    /* node */
    double setup_s;     /* spawn until every agent committed once */
    double ckpt_per_s;
    double avg_batch;   /* checkpoints per group commit in the window */
    double window_s;    /* as stretched to hold enough batches */
    uint32_t batches;   /* whole batches the rate is taken over */
    double cpu;         /* process CPU seconds per wall second */
    uint64_t p50_us, p99_us, mean_us;
    double drain_s;
    double body_avg;    /* stored checkpoint body, bytes */
    /* scraping (when on) */
    uint64_t scrapes, scrape_failed, scrape_bytes;
    double scrape_mean_ms, scrape_max_ms;
    uint64_t http_jobs, http_loop_us; /* the loop's share of serving */
    /* anchor */
    uint32_t raw_batch;
    double raw_rows_per_s;
    double raw_cpu;
    uint64_t raw_p50_us, raw_p99_us, raw_mean_us;
};

/* Run a fresh node in `data_dir` with `agents` benchload agents of `size`
 * bytes of state through warm-up and the measured window, shut it down,
 * and fill in the node's half of `r`.  Returns 0, or an OL_E* code with
 * r->err set. */
int ckpt_run_node(const struct opts *o, uint32_t agents, uint32_t size,
                  const char *data_dir, struct result *r);

#endif
