/*
 * What the two hosts of a plugin share: the agent host (agenthost/svc.c),
 * which runs plugins in processes of their own, and the node's in-process
 * host (host.c).  Each defines the same static functions behind struct
 * ol_host; OL__HOST_TABLE builds the table from them, so the two tables
 * cannot drift apart, and ol__witem_new() starts the work item that
 * ol_host.work queues.
 */
#ifndef OL_HOSTAPI_H
#define OL_HOSTAPI_H

#include <stdint.h>

#include "base/sizes.h"
#include "outlast/agent.h"
#include "wpool.h"

/* The host table, from functions named host_log, host_name, host_now,
 * host_timer_after, host_timer_at, host_timer_cancel, host_send,
 * host_checkpoint, host_work, host_error and host_effect in the file that
 * uses it. */
#define OL__HOST_TABLE                                                       \
    {                                                                        \
        .abi = OL_AGENT_ABI, .size = sizeof(struct ol_host),                 \
        .log = host_log, .name = host_name, .now_ms = host_now,              \
        .timer_after = host_timer_after, .timer_at = host_timer_at,          \
        .timer_cancel = host_timer_cancel, .send = host_send,                \
        .checkpoint = host_checkpoint, .work = host_work,                    \
        .error = host_error, .version = ol__host_version,                    \
        .effect = host_effect,                                               \
    }

/* ol_host.version: the SDK version this host speaks. */
const char *ol__host_version(void);

/* A work item for agent `name` (under `epoch`) running fn(arg) as work
 * `id`; the caller sets who owns it (owner, or slot and gen).  NULL when
 * out of memory. */
struct ol__witem *ol__witem_new(ol_work_fn fn, void *arg, uint64_t id,
                                uint64_t epoch, const char *name);

/* ol_host.effect's checks of its arguments, the same in the node and in
 * an agent host: 0 or an OL_AGENT_E* code.  `n_open` counts the agent's
 * open effects; `has_perform`: the plugin can perform one. */
int ol__effect_check(const char *kind, const void *payload, size_t len,
                     uint32_t n_open, int has_perform);

/*
 * One attempt at an effect, run on a work-pool thread: reconcile() first
 * when the effect is in doubt and the plugin has it, then perform()
 * unless reconcile() settled it.  The job owns copies of everything the
 * plugin sees, so it outlives the instance that asked for it.
 */
struct ol__fxjob {
    const struct ol_agent_vtable *vt;
    struct ol_effect e;
    uint64_t token;     /* the node's name for this attempt */
    uint32_t slot, gen; /* in an agent host: whose it is */
    uint64_t run_by;    /* CLOCK_BOOTTIME ms: not started after it */
    char agent[OL_NAME_MAX + 1];
    char node[OL_NAME_MAX + 1];
    char key[OL_AGENT_KEY_LEN + 1];
    char kind[OL_AGENT_KIND_MAX + 1];
    uint8_t *payload;
    /* The outcome: enum ol_effect_status, and what the plugin wrote. */
    int status;
    uint8_t *result;
    uint32_t result_len;
    char detail[120];   /* why it is not done, for people */
};

/* A job for `e` (its strings and payload copied); NULL when out of
 * memory or a string does not fit. */
struct ol__fxjob *ol__fxjob_new(const struct ol_agent_vtable *vt,
                                const struct ol_effect *e);
/* The ol_work_fn that runs a job. */
void ol__fxjob_run(void *job);
void ol__fxjob_free(struct ol__fxjob *j);

/*
 * Event types.  One table in hostapi.c names each type and, for the types
 * that reach an agent through its mailbox from a system sender (a config
 * from OL_AGENT_CONFIG_SENDER, a bounce from OL_AGENT_BOUNCE_SENDER),
 * says which sender and how its payload reads.  A new event type is its
 * constant in agent.h, its row there, and the code that queues it.
 */

/* Where a mail event's strings live while the plugin handles it. */
struct ol__mail_text {
    char to[OL_NAME_MAX + 1]; /* a bounce's recipient */
    char why[160];            /* a bounce's reason */
};

/* Fill `e` (of type OL_EVENT_MESSAGE) from one mailbox row: the message
 * itself, or, from a system sender, that sender's event.  A payload that
 * does not read as its sender's stays a plain message. */
void ol__mail_event(struct ol_event *e, const char *from, const void *data,
                    size_t len, struct ol__mail_text *t);

/* "start", "timer", ... for logs; "?" for a type this build does not
 * know. */
const char *ol__event_name(int type);

#endif
