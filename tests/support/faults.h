/*
 * Fault injection for integration tests over real outlastd processes:
 * pauses (SIGSTOP of a node and every process it started), simulated
 * system suspend, network partitions between per-node network namespaces,
 * and a slow disk.  Every fault is undone by its counterpart, and every
 * wait here is bounded.
 *
 * The slow disk and the suspended clock are LD_PRELOAD shims in outlastd
 * (tests/shim/), driven through one control page per node (shimctl.h).
 */
#ifndef OL_TEST_FAULTS_H
#define OL_TEST_FAULTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/shim/shimctl.h"

#define NF_MAX_NODES 8

/* ---- processes ---- */

/* SIGSTOP `pid` and every process below it (a node and its agent hosts),
 * as a VM pause stops them all; returns how many were stopped.  The tree
 * is walked again until no new child shows up, parents first, so none is
 * left running. */
int nf_freeze(pid_t pid);

/* SIGCONT the same tree; returns how many were continued. */
int nf_thaw(pid_t pid);

/* ---- shims ---- */

struct nf_ctl {
    char path[256];
    struct ol_shim_ctl *page;
};

/* Create the control page at `path` and map it.  Fails the test on error. */
void nf_ctl_create(struct nf_ctl *c, const char *path);
void nf_ctl_close(struct nf_ctl *c);

/* Every durable write of the node waits `us` microseconds; 0 ends it. */
void nf_ctl_slow_disk(struct nf_ctl *c, int64_t us);

/* The main thread of process `pid` (a node) spins the CPU for `us`
 * microseconds at the top of its next loop iteration: a loop busy with its
 * own work.  Returns the spins done before this one (compare with
 * c->page->busy_spins to see it happen). */
uint64_t nf_ctl_busy(struct nf_ctl *c, pid_t pid, int64_t us);

/* Suspend: stop the tree at `pid`, wait `ms`, move the node's monotonic
 * clocks back by the time it really was stopped, and continue it.  The
 * node sees its monotonic clock stand still across the stop while
 * CLOCK_BOOTTIME went on by `ms`.  Returns how long it was stopped (ms). */
int64_t nf_suspend(struct nf_ctl *c, pid_t pid, int ms);

/* "LD_PRELOAD=..." naming both shims, for a node's environment. */
const char *nf_preload_env(void);

/* ---- network namespaces ---- */

/* Run a command line through the shell; its exit code, and the command
 * with the first line of its output in `out` (if not NULL). */
int nf_sh(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Run a command line that must succeed; fails the test with its output
 * otherwise. */
#define NF_MUST(...)                                                    \
    do {                                                                \
        char out_[768];                                                 \
                                                                        \
        cr_assert_eq(nf_sh(out_, sizeof out_, __VA_ARGS__), 0,          \
                     "network setup: %s", out_);                        \
    } while (0)

/* Delete the network namespaces named <prefix><pid>-... whose creating
 * process is gone (a run that crashed or timed out before its teardown)
 * or is this process. */
void nf_remove_leftovers(const char *prefix);

/*
 * One namespace per node with `eth0` (10.214.0.<i+1>/24) wired by a veth
 * pair into a bridge namespace holding two bridges.  Every node's port
 * sits on bridge 0; a partition moves one side's ports onto bridge 1, so
 * the two sides drop each other's packets (nothing is refused, as on a
 * real split) and heal by moving back.
 */
struct nf_net {
    int n;
    char prefix[32];
    char ns_br[64];
    char ns_node[NF_MAX_NODES][64];
    int made_br, made_node[NF_MAX_NODES];
    unsigned side; /* nodes on bridge 1 (or beyond the cut links) */
    /* The WAN bed instead of the bridges (nf_wan_setup). */
    int wan;
    char wan_cmd[1024]; /* wan.sh with its environment */
    char wan_state[256];
};

/* Make the namespaces for n nodes (names start with `prefix` and the
 * test's pid); removes leftovers of runs that died.  Returns 0, or -1
 * with the reason in `why` when namespaces cannot be made (not root): the
 * caller skips. */
int nf_net_setup(struct nf_net *net, int n, const char *prefix, char *why,
                 size_t cap);

/* The address node i listens on, "10.214.0.<i+1>:<port>". */
void nf_net_addr(const struct nf_net *net, int i, int port, char *out,
                 size_t cap);

/* Put the nodes in `side` (bit i: node i) on one side of a split and
 * every other node on the other; 0 heals. */
void nf_net_split(struct nf_net *net, unsigned side);

void nf_net_teardown(struct nf_net *net);

/*
 * The same, over the WAN test bed (scripts/wan.sh and its delaying
 * forwarder, built as tests/olwan): node i sits in site "s<i+1>" at
 * 10.79.0.<i+1>, and `rtt` gives the links' round trips in wan.sh's form
 * ("s1-s2=20,s1-s3=40,s2-s3=60").  A split cuts every link between the
 * two sides (packets dropped both ways, nothing refused) and heals them.
 * nf_net_addr, nf_net_split and nf_net_teardown work on it as on the
 * bridges.  Returns 0, or -1 with the reason in `why` (not root, no
 * /dev/net/tun, not run under meson): the caller skips.
 */
int nf_wan_setup(struct nf_net *net, int n, const char *prefix,
                 const char *rtt, char *why, size_t cap);

#endif
