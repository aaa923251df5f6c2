/*
 * The agent host's internals shared by svc.c (the host services a plugin
 * calls) and items.c (the items of a batch from the node).
 */
#ifndef OL_AGENTHOST_INT_H
#define OL_AGENTHOST_INT_H

#include <msgpack.h>
#include <pthread.h>

#include "agenthost.h"
#include "runtime/hostapi.h"

#define AGENT_MAGIC 0x61676e74u
#define LOGS_PER_STEP 64

/* An agent instance; `struct ol_agent` is its name in the plugin SDK. */
struct ol_agent {
    uint32_t magic;
    uint32_t slot, gen;
    uint64_t epoch;
    char name[OL_NAME_MAX + 1];
    void *self;
    char err[OL_AGENT_ERROR_MAX + 1]; /* ol_host.error's text */
    int open;          /* open() succeeded */
    int in_handle;
    int final_pending;
    uint32_t n_outbox; /* messages sent since the last checkpoint */
    uint64_t *timers;  /* armed timer ids (the node keeps the due times) */
    uint32_t n_timers;
    uint32_t work_pending;
    uint32_t fx_open;  /* the node's count of its open effects */
    int fx_ok;         /* the cluster allows effects */
    int closing;       /* CLOSE arrived; close() once work is back */
    struct ol_agent *next_closing;
};

/* A finished work item waiting for its WORK event. */
struct done {
    void *arg;
    uint32_t slot, gen;
    uint64_t id;
    uint64_t epoch; /* the agent's epoch when the work started */
    int used;
};

struct ahost_state {
    const struct ahost_opts *o;
    const struct ol_agent_vtable *vt;
    struct ol__mark *mark;
    struct ol__wpool *pool;
    pthread_t main_thread;
    struct ol_agent **slots;
    uint32_t n_slots;
    struct ol_agent *closing;
    struct done *done;
    uint32_t n_done;
    struct ol__map full;  /* recipients whose mailbox is full */
    /* The record of the step in progress. */
    struct ol__buf ops, sends, effects;
    uint32_t n_ops, n_sends, works, logs, n_effects;
    int ckpt_requested;
    struct ol_agent *stepping;
};

extern struct ahost_state ah;

int64_t ahost_wall_ms(void);
int ahost_timer_find(const struct ol_agent *a, uint64_t id);
/* A packer appending to the frame being built, and the item bookkeeping
 * around it. */
msgpack_packer *ahost_packer(void);
void ahost_item_head(msgpack_packer *pk, uint32_t n, uint32_t type,
                     const struct ol_agent *a);
void ahost_item_done(void);

/* Where a step's event keeps its strings while it is handled. */
struct ahost_step_text {
    char from[OL_NAME_MAX + 2], prev[OL_NAME_MAX + 2];
    struct ol__mail_text mail;
    char fx_key[OL_AGENT_KEY_LEN + 1], fx_why[160];
};

/* Effects (items_fx.c): run a PERFORM item; answer a finished attempt
 * (a work item whose fn is ol__fxjob_run). */
int ahost_do_perform(struct ol__mpr *r);
void ahost_fx_done(struct ol__witem *it);
/* The instance in `slot` if it is generation `gen`, else NULL. */
struct ol_agent *ahost_lookup(uint32_t slot, uint32_t gen);

struct ol__ipc_step;
/* The event step `s` delivers to `a` (items_event.c).  Returns 0 or
 * OL_EMALFORMED. */
int ahost_step_event(struct ol_agent *a, const struct ol__ipc_step *s,
                     struct ol_event *e, struct ahost_step_text *t);

#endif
