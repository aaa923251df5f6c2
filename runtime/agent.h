/*
 * An agent hosted by this node: its queued events, timers, unsent effects
 * and the checkpoint in flight (agent.c), and the operations on it that
 * the rest of the daemon calls.  Plugins see struct ol_agent only as an
 * opaque handle.
 */
#ifndef OL_AGENT_INT_H
#define OL_AGENT_INT_H

#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "base/keys.h"
#include "base/sizes.h"
#include "record/ckpt.h"
#include "state/sm.h"
#include "outlast/agent.h"

struct ol__node;
struct ol__hostproc;
struct ol__code;
struct ol__alog;

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
    /* EFFECT (work_id: the effect id; data, len: the result) */
    uint64_t fx_seq;
    uint32_t fx_idx;
    int fx_status;
    uint32_t fx_attempts;
    char fx_key[OL_AGENT_KEY_LEN + 1];
    char fx_why[160]; /* a failure the node decided: why */
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

/* An armed timer. */
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

    /* Effects (fx.c): the open ones, in the order declared, and the
     * outcomes the next checkpoint records. */
    struct ol__fx *fx;
    uint32_t n_fx;
    struct ol__outcome *outcomes;
    uint32_t n_outcomes;
    uv_timer_t fxt; /* the next retry, or a look when it could not act */

    /* For operators: its log lines (created on the first), events handled
     * by this instance, and its last checkpoint's commit latency. */
    struct ol__alog *log;
    uint64_t steps;
    uint64_t commit_us;
    int in_runq;
    struct ol_agent *runq_next;
};

struct ol_agent *ol__agent_get(struct ol__node *n, const char *name);
/* Start hosting an agent row that names this node as owner: resume it from
 * its head checkpoint, or start it fresh. */
void ol__agent_host(struct ol__node *n, const struct ol__sm_agent *row);
/* An agent's head checkpoint loaded and verified before its turn to be
 * hosted (off the loop, resume.h): what ol__verify_load_head_cached()
 * answered, and on success the checkpoint and its hash. */
struct ol__head_pre {
    int rv;
    struct ol__ckpt c;
    uint8_t hash[OL_HASH_SIZE];
};
/* ol__agent_host() with its head loaded already: `pre` is used when it
 * still is the head the row names (the checkpoint is taken from it), and
 * otherwise the head is loaded here as ol__agent_host() does (so is any
 * head that failed: the same checks again give the same error). */
void ol__agent_host_pre(struct ol__node *n, const struct ol__sm_agent *row,
                        struct ol__head_pre *pre);
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

#endif
