/*
 * The node side of bench_effects: a fresh node (the embedded single-node
 * replica, or a cluster from cb_outlast.h) with fxbench agents, and the
 * control calls that drive their runs and read their samples back from
 * their state (see bench/plugins/fxbench.c).
 */
#ifndef OL_BENCH_FX_DRIVER_H
#define OL_BENCH_FX_DRIVER_H

#include <stdint.h>

#include "cb_outlast.h"

/* The longest run fxbench takes (its FX_RUN_MAX). */
#define FXD_RUN_MAX 100000

struct fxd {
    struct cb_ol c;
    int via; /* the node requests go through (the leader) */
};

/* A run's samples, as fxbench took them: per cycle, [round trip or step,
 * declare -> perform, perform, perform -> EFFECT step, EFFECT step ->
 * committed] in microseconds (plain runs fill only the first). */
struct fxd_samples {
    uint32_t (*us)[5];
    uint32_t n;
    uint64_t failed;  /* effects that failed, in the agent's whole life */
    uint64_t retried; /* and that took more than one attempt */
};

/* Start one node (single-node replica) or a cluster of `nodes` and wait
 * until it can take requests; with `in_node`, plugins run inside the
 * node ([agents] isolation = none) instead of in agent-host processes.
 * 0 or -1 (message on stderr); call fxd_stop() either way. */
int fxd_start(struct fxd *d, int nodes, int in_node);
void fxd_stop(struct fxd *d);

/* Spawn fxbench agent `name` in `mode` ("plain" or "effect") and wait
 * for its first checkpoint; *owner is the index of the node that hosts
 * it.  0 or -1. */
int fxd_spawn(struct fxd *d, const char *name, const char *mode,
              int *owner);

/* Send {"run": n} to `name`, the agent's run number `run` (1 for its
 * first), and wait until the run has ended and its samples are
 * committed; fill *s (unless NULL; free with fxd_samples_free).  0 or
 * -1. */
int fxd_run(struct fxd *d, const char *name, uint64_t run, uint32_t n,
            struct fxd_samples *s);
void fxd_samples_free(struct fxd_samples *s);

#endif
