/*
 * A running node: the loop, the store, the commit path, and the agents this
 * node hosts.  Internal to the daemon; plugins see only struct ol_agent as
 * an opaque handle.
 */
#ifndef OL_NODE_H
#define OL_NODE_H

#include <stdint.h>
#include <uv.h>

#include "record/ckpt.h"
#include "replication/replica.h"
#include "state/sm.h"
#include "code.h"
#include "config.h"
#include "base/err.h"
#include "base/hist.h"
#include "ctl.h"
#include "events.h"
#include "ipc.h"
#include "base/keys.h"
#include "base/map.h"
#include "mark.h"
#include "state/nodestate.h"
#include "plugin.h"
#include "state/store.h"
#include "state/walck.h"
#include "wpool.h"

struct ol__node;
struct ol__verify_cache;
struct ol__hostproc;
struct ol__watchdog;

/* A queued event. */
struct ol__ev {
    struct ol__ev *next;
    int type; /* enum ol_event_type */
    /* TIMER */
    uint64_t timer_id;
    int64_t due_ms;
    int disarmed;       /* taken off the armed list when first stepped */
    /* MESSAGE */
    char from[OL_NAME_MAX + 1];
    uint64_t from_seq;
    uint32_t idx;
    uint8_t *data;
    uint32_t len;
    /* WORK */
    uint64_t work_id;
    void *work_arg;     /* in the node: the plugin's argument */
    uint64_t work_token; /* in a host: the host's name for it */
    uint64_t work_epoch; /* the agent's epoch when the work started */
    /* STOP */
    int final;
    /* RESUME */
    uint64_t seq;
    int64_t ckpt_time_ms;
    char prev_node[OL_NAME_MAX + 1];
};

/* Where an agent instance is in its life. */
enum ol__phase {
    OL_PHASE_ACTIVE = 1,   /* events are delivered */
    OL_PHASE_DRAINING = 2, /* shutting down: final checkpoint, then close */
    OL_PHASE_CLOSING = 3,  /* waiting for work/commit before close() */
    OL_PHASE_FAULT = 4,    /* quarantined or degraded; plugin closed */
    OL_PHASE_CRASHED = 5,  /* its code crashed: waiting for the crash to
                            * be recorded, then for its restart */
};

/* How an agent lost its host process (ol__agent_host_lost). */
enum ol__lost {
    OL_LOST_OTHER = 0,   /* another agent's code took the host down */
    OL_LOST_CRASH = 1,   /* its own code did */
    OL_LOST_LOAD = 2,    /* the plugin did not load */
};

/* How an agent's code crashed, for the counters (outlast status, and
 * outlast_agent_crashes_total{reason} in /metrics). */
enum ol__crash_kind {
    OL_CRASH_SIGNAL = 0,   /* a fault or abort killed its host */
    OL_CRASH_EXIT = 1,     /* its code called exit() */
    OL_CRASH_DEADLINE = 2, /* a step overran step_deadline_ms */
    OL_CRASH_NODE = 3,     /* it took the node down (found at restart) */
    OL_CRASH_KINDS = 4
};
/* "signal", "exit", "deadline", "node". */
const char *ol__crash_kind_name(int kind);

struct ol__armed {
    uint64_t id;
    int64_t due_ms;    /* wall clock: what checkpoints carry */
    uint64_t mono_due; /* the same moment on this node's monotonic clock,
                        * fixed when armed or restored here, so that a
                        * step of the wall clock backwards holds no timer
                        * back */
    int fired;         /* queued as an event, not yet handled */
};

/* The host-side state of one agent hosted here (struct ol_agent is the
 * plugin-visible name of this struct). */
struct ol_agent {
    struct ol__node *node;
    char name[OL_NAME_MAX + 1];
    struct ol__code *code;    /* the code it runs (holds a reference) */
    void *self; /* in the node: the plugin's instance, once open() worked */
    struct ol__hostproc *hp;  /* its host process (hosted code) */
    uint32_t slot, gen;       /* its place in that host */
    int ready;                /* an instance exists or its OPEN is queued */
    int busy;                 /* a STEP or SAVE is at the host */
    int busy_type;            /* the event type of that STEP (0: SAVE) */
    struct ol__ev *busy_ev;   /* the event of that STEP */
    int save_due;             /* a checkpoint is due once busy clears */
    int rehost;               /* restart from the committed head when the
                               * checkpoint in flight settles */
    int upgrade;              /* move to the kind's current code at the
                               * next checkpoint boundary */
    uint64_t crash_req;       /* the CRASH proposed for it, if any */
    struct ol__sm_agent row;  /* the row it was hosted from (own config) */
    uint64_t epoch;
    int phase;
    int degraded; /* a stored checkpoint failed verification */
    char reason[OL_ERRMSG_SIZE];
    char plugin_err[OL_AGENT_ERROR_MAX + 1]; /* ol_host.error's text */
    int in_handle; /* host services that change state are allowed */

    /* The chain as proposed (head may still be in flight). */
    uint64_t seq;
    uint64_t head_epoch; /* the epoch of the newest committed checkpoint */
    uint8_t head_hash[OL_HASH_SIZE];
    uint64_t committed_seq;
    int64_t last_ckpt_ms;     /* wall clock, for people */
    uint64_t last_ckpt_mono;  /* monotonic, for the flush policy */
    uint32_t steps_since_ckpt;
    int ckpt_requested;
    int final_pending; /* the next checkpoint ends the agent */

    /* Events waiting to be delivered. */
    struct ol__ev *q_head, *q_tail;
    uint32_t q_len;
    uint32_t q_mail;        /* MESSAGE events among them */
    int64_t mail_watermark; /* mailbox rows up to here are queued */
    int mail_backlog;       /* more rows wait in the mailbox */

    /* Armed timers; part of every checkpoint. */
    struct ol__armed *timers;
    uint32_t n_timers;
    uv_timer_t timer; /* fires at the earliest due time */
    uv_timer_t flush; /* checkpoint policy by time */
    uv_timer_t handoff;     /* ends the hand-off wait */
    uint64_t handoff_until; /* handed over from a node that may still run
                             * it: no step before then (monotonic ms);
                             * 0: none */

    /* Effects of steps not yet checkpointed. */
    struct ol__outmsg *outbox;
    uint32_t n_outbox;
    struct ol__msgid *acks;
    uint32_t n_acks;

    /* The checkpoint in flight, if any. */
    int inflight;
    uint64_t inflight_seq;
    uint64_t inflight_us; /* when it was proposed */

    uint32_t work_pending;
    int handles_open; /* uv handles not yet closed */

    /* For operators: its log lines (created on the first), events handled
     * by this instance, and its last checkpoint's commit latency. */
    struct ol__alog *log;
    uint64_t steps;
    uint64_t commit_us;
    int in_runq;
    struct ol_agent *runq_next;
};

/* A control request waiting for a command to commit. */
struct ol__waiter {
    struct ol__waiter *next;
    uint64_t req;
    struct ol__ctl_req *ctl;
    char op[24];
    char name[OL_NAME_MAX + 1];
    uint64_t msg_seq;
    int first; /* a spawn waiting for the agent's first checkpoint; an rm
                * waiting for its stop (then it proposes RM with rm_id) */
    uint64_t rm_id;
};

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

    struct ol__ctl *ctl;
    struct ol__waiter *waiters;
    uv_async_t sig_async;  /* a stop signal arrived */
    int signals;           /* stop signals so far */
    int stop_signal;
    int handles_init;
    uv_timer_t drain_timer;
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

/* node.c */
int ol__node_init(struct ol__node *n, uv_loop_t *loop,
                  const struct ol__config *cfg);
int ol__node_start(struct ol__node *n);
void ol__node_shutdown(struct ol__node *n);
/* After ol__node_init() failed: close what it opened; run the loop until
 * it has, then call ol__node_free(). */
void ol__node_abort(struct ol__node *n);
void ol__node_free(struct ol__node *n);
void ol__node_effects(void *data, struct ol__effects *fx);
/* Propose commands; logs and returns the error on failure. */
int ol__node_propose(struct ol__node *n, const struct ol__entry_w *w);
/* A mailbox went over its soft limit or back under it: senders here and
 * in every host process learn of it. */
void ol__node_mail_full(struct ol__node *n, const char *name, int full);
/* In a cluster, tell the others which build of a kind this node runs
 * (CODE), unless the replicated table already says so. */
void ol__node_code_current(struct ol__node *n, struct ol__code *c);

/* The database failed while running (a damaged page, a failed write):
 * log it, show it in status, and, when `agent` names an agent hosted here
 * whose records it touches, stop that agent (degraded). */
void ol__node_storage_fault(struct ol__node *n, const char *agent,
                            const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Is this SQLite error code damage rather than a transient failure? */
int ol__sqlite_damaged(sqlite3 *db);

/* node_store.c: the record (node.state) and the checks at start. */
int ol__node_check_start(struct ol__node *n, const char *db, const char *ns,
                         struct ol__nstate *rec, int *have_rec);
int ol__node_record_start(struct ol__node *n, const char *ns,
                          const struct ol__nstate *rec);
/* Final figures into the record, the database closed in between. */
void ol__node_record_finish(struct ol__node *n);
void ol__node_walck_fault(void *data, const char *msg);
/* node.c: close the state machine, checkpointer and connections. */
void ol__node_close_store(struct ol__node *n);

/* Should this node run the agent `row` describes? */
int ol__node_owns(const struct ol__node *n, const struct ol__sm_agent *row);

/* agent.c: instances */
struct ol_agent *ol__agent_get(struct ol__node *n, const char *name);
/* Start hosting an agent row that names this node as owner: resume it from
 * its head checkpoint, or start it fresh. */
void ol__agent_host(struct ol__node *n, const struct ol__sm_agent *row);
/* Node `from`, the previous owner of agent `name`, let it go: an instance
 * here under `epoch` waiting for that hand-off may step now. */
void ol__agent_handed_over(struct ol__node *n, uint64_t from,
                           const char *name, uint64_t epoch);
/* This node applied the MOVE `row` that hands an agent it owned to
 * another node: let the agent go and, unless a step of it is still at its
 * host, tell the new owner so (a runtime message, logs.c). */
void ol__agent_hand_over(struct ol__node *n, const struct ol__sm_agent *row);
/* The same for an instance started again on this node: the new one takes
 * over `log`, the old instance's log lines (transferred; may be NULL). */
void ol__agent_host_again(struct ol__node *n, const struct ol__sm_agent *row,
                          struct ol__alog *log);
/* Stop hosting: no more events; close once work and commits settle. */
void ol__agent_release(struct ol_agent *a, const char *why);
/* Stop an agent whose stored records cannot be used (degraded): nothing is
 * proposed, nothing deleted; the reason is shown by the CLI. */
void ol__agent_degrade(struct ol_agent *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Quarantine after a plugin failure: close and propose QUARANTINE. */
void ol__agent_fail(struct ol_agent *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ol__agent_push(struct ol_agent *a, struct ol__ev *ev);
void ol__agent_mail(struct ol_agent *a, const char *from, uint64_t seq,
                    uint32_t idx, const void *data, uint32_t len,
                    int64_t rowid);
/* Queue the next page of waiting mail once the queued mail is handled. */
void ol__agent_mail_more(struct ol_agent *a);
void ol__agent_timers_rearm(struct ol_agent *a);
void ol__agent_free_ev(struct ol__ev *ev);
void ol__agents_close_all(struct ol__node *n);
/* "active", "committing", "draining", "closing", "fault" or "degraded". */
const char *ol__agent_phase_name(const struct ol_agent *a);
void ol__agent_settle(struct ol_agent *a);
/* Drop the queued events; close the instance's handles (it is freed in
 * their close callbacks). */
void ol__agent_drop_queue(struct ol_agent *a);
void ol__agent_finish(struct ol_agent *a);
/* restart.c: drop the instance and start again from the committed head (same epoch,
 * the kind's current code), once no checkpoint is in flight. */
void ol__agent_rehost(struct ol_agent *a);
/* Start the instance again after `ms`, for a reason that is this node's
 * trouble rather than the agent's (nothing is counted). */
void ol__agent_retry_later(struct ol_agent *a, uint64_t ms, const char *why);
/* Arm a timer from a plugin's record (no phase check); 0 or OL_E*. */
int ol__agent_arm(struct ol_agent *a, uint64_t id, int64_t due);
int ol__agent_cancel(struct ol_agent *a, uint64_t id);
/* Append a checked message to the outbox (copied); 0 or OL_ENOMEM. */
int ol__agent_outbox_add(struct ol_agent *a, const char *to,
                         const void *msg, uint32_t len);
/* From a host process: OPEN's outcome, a finished work item, and the
 * host's death. */
void ol__agent_opened(struct ol_agent *a, int rv, const char *where,
                      const char *msg);
void ol__agent_work_done(struct ol_agent *a, uint64_t id, uint64_t token);
/* `kind` (enum ol__crash_kind) says how, when `how` is OL_LOST_CRASH. */
void ol__agent_host_lost(struct ol_agent *a, int how, int kind,
                         const char *why);
/* A CRASH command's outcome (req matches a->crash_req or a marked
 * crash); `row` is the agent row it left, or NULL. */
void ol__agent_crash_recorded(struct ol__node *n, const char *name,
                              uint64_t req, int status,
                              const struct ol__sm_agent *row);

/* step.c: delivering events and taking checkpoints */
void ol__runq_add(struct ol_agent *a);
/* Take an agent off the run queue (before it is freed). */
void ol__runq_remove(struct ol_agent *a);
void ol__runner_cb(uv_idle_t *h);
void ol__step_committed(struct ol_agent *a, const struct ol__effect *e);
int ol__step_checkpoint(struct ol_agent *a);
/* A host's results: one step, one save. */
void ol__step_result(struct ol_agent *a, const struct ol__ipc_result *r);
void ol__step_saved(struct ol_agent *a, const void *state, uint32_t len,
                    int rv);

/* host.c: the host services for plugins run inside the node */
extern const struct ol_host ol__host_table;
int ol__inproc_bind(struct ol__node *n, struct ol__code *c, char *errmsg);
int ol__inproc_start(struct ol__node *n, char *errmsg);
void ol__inproc_stop(struct ol__node *n);
/* Enter and leave plugin code on the loop thread. */
void ol__inproc_enter(struct ol_agent *a, uint32_t phase, int event);
void ol__inproc_leave(struct ol_agent *a);

/* logs.c: an agent's log lines, from whichever node hosts it */
struct ol__alog;
/* Append a line to the agent's ring (created on demand) and, unless
 * `ring_only`, to the daemon log. */
void ol__agent_note(struct ol_agent *a, int level, int ring_only,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A line a plugin logged through ol_host.log, in the node or in its host
 * process (`text` need not be NUL-terminated; at most 511 bytes are kept):
 * control characters become '?', the line goes to the agent's ring and,
 * rate-limited, to the daemon log. */
void ol__agent_plugin_log(struct ol_agent *a, int level, const char *text,
                          size_t len);
/* Fetch lines of `name` numbered above `after` (at most `limit`) from the
 * node hosting it.  `cb` gets 0 and a msgpack map
 *   {name, node, ring, first, next, lines: [{seq, time_ms, level, text}]}
 * (borrowed for the call), or an OL_E* code and a message.  It may run
 * before this returns, or later (the agent lives on another node). */
typedef void (*ol__logs_cb)(void *data, int status, const char *errmsg,
                            const void *map, size_t len);
void ol__logs_fetch(struct ol__node *n, const char *name, uint64_t after,
                    uint32_t limit, ol__logs_cb cb, void *data);
/* A runtime message from another node (cluster hooks.app). */
void ol__logs_app(void *data, uint64_t from, const void *p, size_t len);
/* Tell node `to` that this node let agent `name` go (its new owner holds
 * it under `epoch`): best effort. */
void ol__logs_send_handed_over(struct ol__node *n, uint64_t to,
                               const char *name, uint64_t epoch);
/* Answer every fetch still waiting with OL_ESHUTDOWN. */
void ol__logs_close(struct ol__node *n);

/* handlers.c */
void ol__ctl_handle(void *data, struct ol__ctl_req *req, const char *op,
                    const msgpack_object *args);
void ol__waiters_effect(struct ol__node *n, const struct ol__effect *e,
                        const struct ol__sm_agent *row);
void ol__waiters_agent(struct ol__node *n, const struct ol__sm_agent *row);
/* A spawn that waits for the agent's first checkpoint: it committed. */
void ol__waiters_ckpt(struct ol__node *n, const char *name);
void ol__waiters_drop(struct ol__node *n);

#endif
