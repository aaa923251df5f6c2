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

#include "outlast/agent.h"
#include "wpool.h"

/* The host table, from functions named host_log, host_name, host_now,
 * host_timer_after, host_timer_at, host_timer_cancel, host_send,
 * host_checkpoint, host_work and host_error in the file that uses it. */
#define OL__HOST_TABLE                                                       \
    {                                                                        \
        .abi = OL_AGENT_ABI, .size = sizeof(struct ol_host),                 \
        .log = host_log, .name = host_name, .now_ms = host_now,              \
        .timer_after = host_timer_after, .timer_at = host_timer_at,          \
        .timer_cancel = host_timer_cancel, .send = host_send,                \
        .checkpoint = host_checkpoint, .work = host_work,                    \
        .error = host_error, .version = ol__host_version,                    \
    }

/* ol_host.version: the SDK version this host speaks. */
const char *ol__host_version(void);

/* A work item for agent `name` (under `epoch`) running fn(arg) as work
 * `id`; the caller sets who owns it (owner, or slot and gen).  NULL when
 * out of memory. */
struct ol__witem *ol__witem_new(ol_work_fn fn, void *arg, uint64_t id,
                                uint64_t epoch, const char *name);

#endif
