/*
 * Shared pieces of the in-process benchmarks: scratch directories, memory
 * readings, a node configured for benchmarking, and a spawner that feeds
 * SPAWN commands to a node in chunks so no single batch grows unbounded.
 */
#ifndef OL_BENCH_UTIL_H
#define OL_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* node.h uses OL_ERRMSG_SIZE without including err.h. */
#include "base/err.h"
#include "runtime/node.h"
#include "runtime/agent.h"

/* A fresh directory under $TMPDIR (or /tmp).  0 or -1 with errno. */
int bu_tmpdir(char *out, size_t cap);

/* rm -rf; errors are ignored. */
void bu_rmrf(const char *path);

/* A field of /proc/self/status in KiB ("VmRSS", "VmHWM"); -1 if absent. */
long bu_status_kib(const char *field);

/* CPU seconds (user + system) this process has used. */
double bu_cpu_s(void);

/* The directory this executable lives in (where benchload.so is built). */
void bu_exe_dir(char *out, size_t cap);

/* For profiling only the measured window: when $OL_BENCH_PERF_FIFO names
 * the control FIFO of `perf record -D -1 --control fifo:PATH`, write `cmd`
 * ("enable" or "disable") to it.  Otherwise a no-op. */
void bu_perf(const char *cmd);

/* Defaults for a benchmark node: single node, no example agents, warnings
 * only, data in `data_dir`, plugins from `plugin_dir`. */
void bu_config(struct ol__config *cfg, const char *data_dir,
               const char *plugin_dir);

/* Run fn(arg, out) in a forked child (a clean process for every run) and
 * copy its `out_size` bytes of result back.  0, or -1 if the child died
 * without a result. */
int bu_fork_call(void (*fn)(void *arg, void *out), void *arg, void *out,
                 size_t out_size);

/* The median of n values (sorts them); 0 for none. */
double bu_median(double *v, uint32_t n);

/* The single-node replica's batch and checkpoint counters. */
int bu_replica_counters(struct ol__node *n, uint64_t *batches,
                        uint64_t *ckpts);

/* Agents hosted here whose first checkpoint has committed. */
uint32_t bu_ready(struct ol__node *n);

/* Agents hosted here (ready or not). */
uint32_t bu_hosted(struct ol__node *n);

/* Feeds SPAWN commands for `total` benchload agents named "<prefix>NNNNNN",
 * `chunk` at a time, the next chunk only once the previous one is hosted. */
struct bu_spawner {
    struct ol__node *node;
    const char *prefix;
    uint32_t total;
    uint32_t chunk;
    uint32_t proposed;
    uint8_t *config; /* msgpack; malloc'd */
    size_t config_len;
};

/* config: {size: size} or {size: size, idle: true}.  0 or OL_ENOMEM. */
int bu_spawner_init(struct bu_spawner *s, struct ol__node *n,
                    const char *prefix, uint32_t total, uint32_t chunk,
                    uint32_t size, int idle);
/* Propose the next chunk if the previous one is hosted.  Returns 0 or the
 * propose error. */
int bu_spawner_step(struct bu_spawner *s);
void bu_spawner_close(struct bu_spawner *s);
/* One tick of a benchmark's setup: bu_spawner_step(), then a check that no
 * agent was quarantined.  Returns 0, or -1 with the reason in err. */
int bu_setup_tick(struct bu_spawner *s, char *err, size_t cap);

/* The targets a benchmark met or missed, printed after its table. */
struct bu_targets {
    char line[128][160];
    uint32_t n;
};

/* Add a line (printf-style); lines past the 128th are dropped. */
void bu_target(struct bu_targets *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An empty line, then "# target: LINE" for each. */
void bu_targets_print(const struct bu_targets *t);

/* The start of a turn of a "--name VALUE" argument loop, at argv[i]: for
 * --help, usage(stdout) and 1; for a last argument with no value,
 * usage(stderr) and -1; otherwise 0 with the value in *v. */
int bu_arg_value(int argc, char **argv, int i, void (*usage)(FILE *),
                 const char **v);

/* One numeric "--name VALUE" option of a benchmark's argument loop. */
struct bu_num_opt {
    const char *name;
    uint32_t *val;
};

/* If `a` names one of `opts` (ended by a NULL name), store
 * strtoul(v, NULL, 10) in its value and return 1; otherwise 0. */
int bu_num_opt(const struct bu_num_opt *opts, const char *a, const char *v);

/* Agent i's name, as the spawner chose it. */
void bu_agent_name(const char *prefix, uint32_t i, char *out, size_t cap);

#endif
