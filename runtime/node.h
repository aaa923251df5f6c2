/*
 * A running node: the loop, the store, the commit path, and the agents this
 * node hosts (struct ol_agent is in agent.h).  Internal to the daemon; the
 * control handlers see the node only through node_view.h.
 */
#ifndef OL_NODE_H
#define OL_NODE_H

#include <limits.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "base/hist.h"
#include "base/keys.h"
#include "base/map.h"
#include "record/ckpt.h"
#include "replication/replica.h"
#include "state/nodestate.h"
#include "state/sm.h"
#include "state/store.h"
#include "state/walck.h"
#include "code.h"
#include "config.h"
#include "ctl.h"
#include "events.h"
#include "ipc.h"
#include "mark.h"
#include "node_view.h"
#include "plugin.h"
#include "restart.h"
#include "wpool.h"

struct ol__node;
struct ol__rbatch;
struct ol__rloader;
struct ol__verify_cache;
struct ol__hostproc;
struct ol__watchdog;
struct ol__waiter;
struct ol_agent;

#define OL_LET_GO_MAX 16

struct ol__node {
    uv_loop_t *loop;
    struct ol__config cfg;
    struct ol__key key;
    uint64_t self_id;
    char errmsg[OL_NSTATE_ERR_SIZE];
    int64_t started_ms;

    struct ol__store store;  /* writer: owned by the commit path */
    struct ol__store reader; /* the loop thread's reads */
    struct ol__sm *sm;
    struct ol__replica *replica;
    int cluster;
    uint64_t inc;  /* this start's incarnation (0 on a single node) */
    int paused;    /* no lease: agents take no steps */
    int code_later; /* a plugin's announcement waits for the cluster's
                       feature level (ol__node_code_current) */
    /* Old owners that said they let an agent go before this node applied
     * the move that hands it here (agent.c). */
    struct {
        uint64_t from, epoch;
        char name[OL_NAME_MAX + 1];
    } let_go[OL_LET_GO_MAX];
    unsigned let_go_next;

    struct ol__codes codes;
    char host_exe[PATH_MAX];          /* outlast-agent-host */
    struct ol__hostproc *hps;         /* live host processes */
    struct ol__hostproc *hp_dirty;    /* hosts with items to write */
    uv_prepare_t hp_flusher;          /* writes them before the loop waits */
    struct ol__wpool *wpool;          /* work of plugins run in the node */
    uv_async_t wp_async;
    int inproc_init;
    struct ol__mark *mark;            /* in-process step marks (a file) */
    struct ol__watchdog *watchdog;
    struct ol__map full;              /* name -> name: mailbox is full */
    struct ol__map agents; /* name -> struct ol_agent *, hosted here */
    struct ol_agent *runq_head, *runq_tail;
    uv_idle_t runner;
    uv_check_t checker;
    struct {                   /* agents to host, in slices (resume.h) */
        char **names;          /* FIFO: [head, n) wait */
        size_t head, n, cap;
        struct ol__map queued; /* name -> its entry in names */
        uv_idle_t idle;
        uint64_t iter_ms, spent_us;
        /* Heads loaded off the loop (resume_load.c): batches in the
         * order they were queued, each loaded by one of the loaders (a
         * connection and a verify cache of its own). */
        struct ol__rbatch *first, *last;
        struct ol__rloader *loaders; /* OL_RESUME_LOADERS, or NULL */
        int db_failed, closing;
    } resume;
    struct {                   /* the plugin file last looked at (agent.c) */
        char kind[OL_KIND_MAX + 1];
        uint64_t ms;           /* in the loop iteration of this time */
        int set;
    } code_seen;

    struct ol__ctl *ctl;
    struct ol__waiter *waiters;
    uv_async_t sig_async;  /* a stop signal arrived */
    int signals;           /* stop signals so far */
    int stop_signal;
    int handles_init;
    uv_timer_t drain_timer;
    uv_timer_t linger_timer; /* after "stopped": what keeps the loop */
    int linger_open;
    uv_timer_t crash_timer; /* re-reports crashes not yet on record */
    uint64_t drain_waited_ms;
    int stopping;
    int exit_code;

    struct ol__buf scratch; /* save() output, reused */
    struct ol__verify_cache *vcache; /* seals verified for resumes */
    struct ol__walck walck;          /* WAL checkpoints off the writer */
    struct ol__nstate_w nst;         /* node.state: what was committed */
    struct {
        uint64_t errors;  /* damage found while running */
        int64_t first_ms;
        char first[OL_ERRMSG_SIZE];
        char last[OL_ERRMSG_SIZE];
    } storage;
    uint64_t max_epoch;              /* highest agent epoch seen */
    struct {
        uint64_t steps;
        uint64_t steps_refused; /* reached a host after the lease ran out */
        uint64_t fx_attempts; /* effect attempts answered */
        uint64_t fx_done;     /* effect outcomes recorded */
        uint64_t fx_dropped;  /* answers that came after the agent left */
        uint64_t checkpoints;
        uint64_t refused;
        uint64_t quarantined;
        uint64_t crashes;    /* agent code crashed or overran */
        uint64_t crash_kind[OL_CRASH_KINDS]; /* the same by kind */
        uint64_t host_starts; /* agent-host processes started */
        uint64_t host_deaths; /* ... that died without being asked to */
        uint64_t quarantined_crash; /* crash loops this node reported */
    } n;
    struct ol__hist commit_lat; /* propose -> committed, us */
    struct ol__phist commit_hist; /* the same, never reset, for /metrics */
    struct ol__events events;     /* recent moves, quarantines, leases */
    struct ol__http *http;        /* [http] endpoint, or NULL */
    struct ol__logfwd *logfwd;    /* log requests waiting on other nodes */
    uint64_t sd_watchdog_us;      /* systemd watchdog interval, or 0 */
    uv_timer_t sd_watchdog;       /* answers it from the loop */
    int lock_fd;
};

/* node_init.c, node_start.c, node_stop.c: the node's life. */
int ol__node_init(struct ol__node *n, uv_loop_t *loop,
                  const struct ol__config *cfg);
int ol__node_start(struct ol__node *n);
void ol__node_shutdown(struct ol__node *n);
/* After ol__node_init() failed: close what it opened; run the loop until
 * it has, then call ol__node_free(). */
void ol__node_abort(struct ol__node *n);
void ol__node_free(struct ol__node *n);

/* node.c: the state machine's effects, and what they lead to. */
void ol__node_effects(void *data, struct ol__effects *fx);
/* A mailbox went over its soft limit or back under it: senders here and
 * in every host process learn of it. */
void ol__node_mail_full(struct ol__node *n, const char *name, int full);
/* In a cluster, tell the others which build of a kind this node runs
 * (CODE), unless the replicated table already says so. */
void ol__node_code_current(struct ol__node *n, struct ol__code *c);
/* Announce again the plugins whose announcement had to wait for the
 * cluster's feature level (called when a lease is first held). */
void ol__node_code_later(struct ol__node *n);
/* Should this node run the agent `row` describes? */
int ol__node_owns(const struct ol__node *n, const struct ol__sm_agent *row);
/* Is the state machine being changed off the loop right now (one node's
 * group commit, replica.h)?  Outside the effects callback the loop reads
 * its rows only while this is 0. */
int ol__node_sm_busy(const struct ol__node *n);

/* node_store.c: the record (node.state) and the checks at start. */
int ol__node_check_start(struct ol__node *n, const char *db, const char *ns,
                         struct ol__nstate *rec, int *have_rec);
int ol__node_record_start(struct ol__node *n, const char *ns,
                          const struct ol__nstate *rec);
/* Final figures into the record, the database closed in between. */
void ol__node_record_finish(struct ol__node *n);
void ol__node_walck_fault(void *data, const char *msg);
/* node_stop.c: close the state machine, checkpointer and connections. */
void ol__node_close_store(struct ol__node *n);

#endif
