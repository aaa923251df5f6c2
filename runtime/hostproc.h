/*
 * Agent-host processes, the node's side.  Each hosted plugin code has one
 * host process (outlast-agent-host) that runs all of the node's agents of
 * that code.  The node talks to it over a socketpair with the frames of
 * ipc.h: items for many agents are batched into one frame per loop
 * iteration (flushed just before the loop would block), and results come
 * back in frames the host flushes as it goes.
 *
 * A host that dies (a crash, an abort, exit(), the kernel's OOM killer) or
 * that runs one step past the plugin's deadline (the node kills it) costs
 * only its own agents their uncommitted steps: the agent whose code was
 * running is reported as crashed, the others resume from their last
 * committed checkpoints in a new host.  Whose code was running is read
 * from the step-mark page the host shares with the node (mark.h).
 */
#ifndef OL_HOSTPROC_H
#define OL_HOSTPROC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "ipc.h"
#include "mark.h"

struct ol__node;
struct ol__code;
struct ol_agent;

enum ol__hp_state {
    OL_HP_STARTING = 1, /* spawned; no HELLO yet */
    OL_HP_READY = 2,
    OL_HP_DEAD = 3,     /* exited or being killed; agents were told */
};

struct ol__hostproc {
    struct ol__node *node;
    struct ol__code *code;
    struct ol__hostproc *next, *prev; /* the node's list */
    struct ol__hostproc *dirty_next;
    int dirty;
    int state;
    int closing;          /* the node is done with it */
    int handles;          /* uv handles not yet closed */
    uv_process_t proc;
    uv_pipe_t pipe;
    uv_timer_t watch;
    int spawned;
    int pipe_init;
    int exited;
    int64_t exit_status;
    int term_signal;
    uint64_t started_ms;  /* monotonic */
    uint64_t eof_ms;
    struct ol__mark *mark;
    /* Set when the node killed it, with why and whose step it was. */
    int killed;
    uint32_t kill_slot, kill_gen;
    char kill_reason[160];
    /* Frames out: items are appended after room for the header. */
    struct ol__buf out;
    uint32_t out_items;
    size_t write_backlog;
    /* Frames in. */
    struct ol__buf in;
    /* Agents by slot. */
    struct ol_agent **slots;
    uint32_t *gens;
    uint32_t n_slots;
    uint32_t n_agents;
    uint32_t free_hint;
    /* Counters. */
    uint64_t frames_out, frames_in, items_out, items_in;
    /* Its stdout and stderr, into the daemon log (hostproc_out.c). */
    uv_pipe_t outp;
    int out_init;
    struct ol__buf out_part;      /* a line not finished yet */
    char out_kind[OL_KIND_MAX + 1];
    int out_pid;
    uint64_t out_window_ms;
    uint32_t out_lines, out_dropped;
};

/* Spawn a host for `c`.  Returns 0 or an OL_E* code (logged). */
int ol__hostproc_create(struct ol__node *n, struct ol__code *c,
                        struct ol__hostproc **out);

/* The node is done with this host: its pending items are written, then
 * the socket is shut, and the host is killed if it has not exited within
 * a grace period.  NULL is a no-op. */
void ol__hostproc_close(struct ol__hostproc *hp);

/* At exit: kill at once and forget it (its handles must already be
 * closed by the loop, or the loop is about to be abandoned). */
void ol__hostproc_abandon(struct ol__hostproc *hp);

/* Bind an agent instance to a slot (a->hp, a->slot, a->gen).  Returns 0
 * or OL_ENOMEM. */
int ol__hostproc_attach(struct ol__hostproc *hp, struct ol_agent *a);
/* Queue CLOSE for the instance and free its slot; results still on their
 * way for it are dropped. */
void ol__hostproc_detach(struct ol__hostproc *hp, struct ol_agent *a);

/* Items.  `timers` are the ids of the armed timers. */
void ol__hp_open(struct ol__hostproc *hp, struct ol_agent *a,
                 const void *config, size_t config_len, const void *state,
                 size_t state_len, const uint64_t *timers, uint32_t n_timers);
void ol__hp_step(struct ol__hostproc *hp, const struct ol__ipc_step *s);
void ol__hp_save(struct ol__hostproc *hp, struct ol_agent *a);
struct ol__ipc_perform;
void ol__hp_perform(struct ol__hostproc *hp, const struct ol__ipc_perform *p);
void ol__hp_full(struct ol__hostproc *hp, const char *name, int full);

/* Write every host's queued items (called before the loop blocks). */
void ol__hostprocs_flush(struct ol__node *n);

/* hostproc_wire.c, for hostproc.c: write the queued items now; start
 * reading frames. */
void ol__hp_flush_one(struct ol__hostproc *hp);
void ol__hp_read_start(struct ol__hostproc *hp);

/* hostproc_out.c: the pipe for the host's stdout and stderr.  _open
 * makes it (the handle counts in hp->handles from here on, whatever the
 * outcome) and gives the end for the child; _start reads it once the host
 * runs; _close reads what is left and closes the handle with `cb`. */
int ol__hp_out_open(struct ol__hostproc *hp, uv_loop_t *loop, int *child_fd);
void ol__hp_out_start(struct ol__hostproc *hp, const char *kind, int pid);
/* What the host wrote before it exited, before its death is handled. */
void ol__hp_out_drain(struct ol__hostproc *hp);
void ol__hp_out_close(struct ol__hostproc *hp, uv_close_cb cb);

/* Kill a host because of `a`'s step (a deadline, a protocol error). */
void ol__hostproc_kill(struct ol__hostproc *hp, uint32_t slot, uint32_t gen,
                       const char *why);

#endif
