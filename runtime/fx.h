/*
 * Effects on the outside world (ol_host.effect), as the node that hosts
 * an agent tracks them.
 *
 * An effect is declared in a step and gets a place in that step's
 * checkpoint: its seq, its index among the checkpoint's new effects, and
 * its key (record/ckpt.h).  Once the checkpoint has committed the node
 * asks the agent's code to perform it, off the loop (a PERFORM item to
 * the agent's host process, or the node's work pool for isolation =
 * none), with the epoch as fencing token, and only while its lease lets
 * it start steps.  A retryable failure is tried again after the backoff
 * of the kind's policy ([effects] in the config); the final outcome (done,
 * or failed) becomes an OL_EVENT_EFFECT, and the checkpoint of the step
 * that consumed it records the outcome and closes the effect.  A node
 * that resumes an agent finds its open effects in the head checkpoint:
 * they are in doubt (an earlier owner may have performed them) and go to
 * reconcile() first, when the plugin has it.
 *
 * A result that arrives for an instance that is gone, or under another
 * epoch, is dropped and logged: the new owner has the effect in doubt.
 */
#ifndef OL_FX_H
#define OL_FX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "record/ckpt.h"

struct ol_agent;
struct ol__ev;
struct ol__node;
struct ol__witem;

/* Where an open effect is, on the node that hosts its agent. */
enum ol__fx_state {
    OL_FX_DECLARED = 1, /* its checkpoint is not yet committed */
    OL_FX_READY = 2,    /* to be performed */
    OL_FX_RUNNING = 3,  /* perform() or reconcile() is running */
    OL_FX_BACKOFF = 4,  /* waiting to try again */
    OL_FX_ANSWERED = 5, /* its EFFECT event is queued */
};

/* One open effect: its record and how it is going here. */
struct ol__fx {
    struct ol__intent rec; /* seq 0 until its checkpoint is built */
    int state;             /* enum ol__fx_state */
    int in_doubt;          /* found open at resume */
    uint32_t attempts;     /* perform()/reconcile() calls on this node */
    uint64_t token;        /* names the attempt running now */
    uint64_t first_mono;   /* the first attempt here (monotonic ms) */
    uint64_t due_mono;     /* BACKOFF: when to try again */
    char last[120];        /* the last attempt's failure, for people */
};

/* "declared", "pending", "in flight", "backoff", "answered". */
const char *ol__fx_state_name(int state);

/* ol_host.effect's checks and record (`has_perform`: the plugin can
 * perform effects; a host process checked that itself).  0 or an
 * OL_AGENT_E* code. */
int ol__fx_declare(struct ol_agent *a, uint64_t id, const char *kind,
                   const void *payload, size_t len, int has_perform);

/* Fill the effect fields of the checkpoint `c` being built (seq set):
 * new effects get their place and key.  `buf` gets an array the record
 * borrows; free it after encoding.  0 or OL_ENOMEM. */
int ol__fx_fill(struct ol_agent *a, struct ol__ckpt *c,
                struct ol__intent **buf);
/* `c` was proposed: its outcomes are in it now. */
void ol__fx_proposed(struct ol_agent *a);
/* The agent's checkpoint `seq` committed: perform what it declared. */
void ol__fx_committed(struct ol_agent *a, uint64_t seq);
/* Take the open effects of the head checkpoint `c` (in doubt).  0 or
 * OL_ENOMEM. */
int ol__fx_restore(struct ol_agent *a, const struct ol__ckpt *c);
/* Start what is ready, if the agent may act now. */
void ol__fx_kick(struct ol_agent *a);
/* A step consumed the EFFECT event `ev`: record its outcome for the next
 * checkpoint.  0 or OL_ENOMEM. */
int ol__fx_consumed(struct ol_agent *a, const struct ol__ev *ev);
/* Does the next checkpoint have effects to record? */
int ol__fx_pending_ckpt(const struct ol_agent *a);
/* The result of an attempt: `status` is enum ol_effect_status, `result`
 * what the plugin wrote (or NULL), `detail` a note for people. */
void ol__fx_result(struct ol__node *n, struct ol_agent *a, uint64_t token,
                   int status, const void *result, uint32_t len,
                   const char *detail);
/* The open effect at (seq, idx) of an agent hosted here, or NULL. */
const struct ol__fx *ol__fx_find(const struct ol_agent *a, uint64_t seq,
                                 uint32_t idx);
/* The agent's retry timer fired. */
void ol__fx_timer_cb(uv_timer_t *t);
/* A finished attempt of an agent in the node (a work-pool item whose fn
 * is ol__fxjob_run): hand its answer over and free it. */
void ol__fx_inproc_done(struct ol__node *n, struct ol__witem *it);
/* Free an instance's effects. */
void ol__fx_free(struct ol_agent *a);

#endif
