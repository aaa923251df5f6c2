/*
 * The wire between a node and its agent-host processes (agenthost/).  A
 * socketpair carries frames: a 4-byte little-endian length, then one
 * msgpack array.  Every frame after the host's HELLO is a batch:
 *
 *     [OL_IPC_BATCH, [item, ...]]
 *
 * and every item is an array whose first element is its type.  Node to
 * host:
 *
 *     OPEN   [1, slot, gen, name, config: bin, state: bin | nil, timers]
 *     STEP   [2, slot, gen, type, now_ms, epoch, flags, n_outbox,
 *             a1: uint, a2: int, run_by: uint, s: str | nil, b: bin | nil]
 *     SAVE   [3, slot, gen]
 *     CLOSE  [4, slot, gen]
 *     FULL   [5, name, full: bool]
 *     PERFORM [6, slot, gen, token, epoch, run_by, deadline_ms, attempt,
 *             in_doubt, effect_id, node, key, kind, payload: bin]
 *
 * Host to node (HELLO is a frame of its own, the host's first):
 *
 *     HELLO  [0, status, kind, version, message]
 *     R_OPEN [1, slot, gen, rv, where: str, message: str | nil]
 *     R_STEP [2, slot, gen, rv, flags, ops, sends, works, state | nil,
 *             save_rv, effects]
 *     R_SAVE [3, slot, gen, state | nil, rv]
 *     R_WORK [6, slot, gen, work_id, token]
 *     R_LOG  [7, slot, gen, level, text]
 *     R_PERFORM [8, slot, gen, token, status, result: bin | nil,
 *             detail: str]
 *
 * `slot` names an agent instance inside one host and `gen` tells apart
 * the instances that have used the slot, so a late result for a closed
 * instance is recognised and dropped.  `timers` and `ops` are flat arrays
 * ([id, ...] and [op, id, due_ms, ...]); `sends` is [to, msg: bin, ...];
 * `effects` is [effect_id, kind, payload: bin, ...].
 *
 * STEP carries the event: RESUME: a1 = seq, a2 = downtime_ms, s = the
 * previous node; TIMER: a1 = timer id, a2 = due_ms; MESSAGE: s = sender,
 * b = the message; WORK: a1 = work id, a2 = the host's token for the
 * argument; STOP: a1 = final; EFFECT: a1 = effect id, a2 = status |
 * attempts << 8, s = the key (OL_AGENT_KEY_LEN digits) then, for a
 * failure the node decided, its reason, b = the result.
 *
 * PERFORM asks the host to run one attempt at an effect on its work pool
 * (ol__fxjob_run); R_PERFORM answers with the token.  A host that reads
 * it past run_by does not start it and answers with status
 * OL_IPC_FX_NOT_RUN.
 *
 * `run_by` is the last moment, on CLOCK_BOOTTIME in ms, at which the node's
 * lease allows the step to start (0: no limit, a single node).  A host
 * that reads the step later (the machine was suspended, or both processes
 * were stopped with the step in between) does not run it and answers
 * R_STEP with OL_IPC_NOT_RUN; the node queues the event again.
 *
 * Everything the host sends is input to the node: the node checks every
 * field as it would check a plugin's own return values.
 */
#ifndef OL_IPC_H
#define OL_IPC_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/mpr.h"
#include "base/sizes.h"
#include "outlast/agent.h"

#define OL_IPC_FRAME_MAX (64u << 20)
#define OL_IPC_HDR 4
/* A host flushes its results once this many bytes are waiting. */
#define OL_IPC_FLUSH_BYTES (256u << 10)

enum {
    OL_IPC_HELLO = 0,
    OL_IPC_BATCH = 2,
};

/* Item types (node -> host). */
enum {
    OL_IPC_OPEN = 1,
    OL_IPC_STEP = 2,
    OL_IPC_SAVE = 3,
    OL_IPC_CLOSE = 4,
    OL_IPC_FULL = 5,
    OL_IPC_PERFORM = 6,
};

/* Item types (host -> node). */
enum {
    OL_IPC_R_OPEN = 1,
    OL_IPC_R_STEP = 2,
    OL_IPC_R_SAVE = 3,
    OL_IPC_R_WORK = 6,
    OL_IPC_R_LOG = 7,
    OL_IPC_R_PERFORM = 8,
};

/* R_PERFORM status of an attempt a host did not start (past run_by). */
#define OL_IPC_FX_NOT_RUN (-1)

/* STEP flags. */
#define OL_IPC_SAVE_AFTER 1u   /* save() after handle() succeeds */
#define OL_IPC_FINAL 2u        /* the next checkpoint ends the agent */
#define OL_IPC_DISARMED 4u     /* TIMER: the node disarmed the timer */
#define OL_IPC_FX_OK 8u        /* ol_host.effect is allowed (level 4) */
/* The agent's open effects, in the bits of the flags from here up. */
#define OL_IPC_FX_OPEN_SHIFT 16
/* R_STEP flags. */
#define OL_IPC_CKPT_REQ 1u     /* the plugin called checkpoint() */
#define OL_IPC_NOT_RUN 2u      /* past run_by: handle() was not called */

/* Timer ops in R_STEP. */
#define OL_IPC_ARM 1
#define OL_IPC_CANCEL 2

/* One STEP as both sides see it.  Strings and bytes are borrowed. */
struct ol__ipc_step {
    uint32_t slot, gen;
    uint32_t type;
    int64_t now_ms;
    uint64_t epoch;
    uint32_t flags;
    uint32_t n_outbox;
    uint64_t a1;
    int64_t a2;
    uint64_t run_by; /* CLOCK_BOOTTIME ms; 0: none */
    const char *s; /* NUL-terminated on the node side only */
    uint32_t s_len;
    const void *b;
    uint32_t b_len;
};

/* One R_STEP as the node reads it; ops and sends are left to readers
 * positioned at their arrays. */
struct ol__ipc_result {
    uint32_t slot, gen;
    int64_t rv;
    uint32_t flags;
    struct ol__mpr ops;   /* positioned at the ops array */
    uint32_t n_ops;       /* elements (3 per op) */
    struct ol__mpr sends; /* positioned at the sends array */
    uint32_t n_sends;     /* elements (2 per send) */
    uint32_t works;
    const void *state;    /* NULL: not saved */
    uint32_t state_len;
    int64_t save_rv;
    struct ol__mpr effects; /* positioned at the effects array */
    uint32_t n_effects;     /* elements (3 per effect) */
};

/* One PERFORM as both sides see it.  Strings and bytes are borrowed. */
struct ol__ipc_perform {
    uint32_t slot, gen;
    uint64_t token;
    uint64_t run_by;
    struct ol_effect e;
    char node[OL_NAME_MAX + 1];
    char key[OL_AGENT_KEY_LEN + 1];
    char kind[OL_AGENT_KIND_MAX + 1];
};

/* The checks ol_host.send() makes of its arguments, the same in the node
 * (plugins run there) and in an agent host: 0 or an OL_AGENT_E* code.
 * `n_outbox` counts the messages sent since the last checkpoint. */
int ol__send_check(const char *to, const void *msg, size_t len,
                   uint32_t n_outbox);

/* Write the 4-byte frame header for a body of `len` bytes. */
void ol__ipc_hdr(uint8_t out[OL_IPC_HDR], uint32_t len);
/* Read a frame header; returns the body length. */
uint32_t ol__ipc_hdr_len(const uint8_t in[OL_IPC_HDR]);

/* CLOCK_BOOTTIME in ms: the clock that runs on through a suspend, and is
 * the same for the node and its hosts. */
uint64_t ol__boot_ms(void);

/* Pack a STEP item. */
void ol__ipc_pack_step(msgpack_packer *pk, const struct ol__ipc_step *s);

/* Decode the fields of a STEP item after its type (the reader is past
 * the array header and the type).  Returns 0 or OL_EMALFORMED. */
int ol__ipc_read_step(struct ol__mpr *r, struct ol__ipc_step *s)
    __attribute__((warn_unused_result));

/* Decode the fields of an R_STEP item after its type; ops and sends are
 * skipped over and left for the caller to walk.  Returns 0 or
 * OL_EMALFORMED. */
int ol__ipc_read_result(struct ol__mpr *r, struct ol__ipc_result *res)
    __attribute__((warn_unused_result));

/* Pack a PERFORM item; decode its fields after the type (the strings
 * are copied into `p`, the payload borrowed).  0 or OL_EMALFORMED. */
void ol__ipc_pack_perform(msgpack_packer *pk, const struct ol__ipc_perform *p);
int ol__ipc_read_perform(struct ol__mpr *r, struct ol__ipc_perform *p)
    __attribute__((warn_unused_result));

/* Pack a str (NULL packs nil) or a bin. */
void ol__ipc_str(msgpack_packer *pk, const char *s);
void ol__ipc_bin(msgpack_packer *pk, const void *p, size_t n);

/* The bytes of one msgpack value at the reader's position, and skip it.
 * Returns 0 or OL_EMALFORMED. */
int ol__ipc_raw(struct ol__mpr *r, const void **p, size_t *len)
    __attribute__((warn_unused_result));

/* A bounce's mailbox payload, [to, reason, message] (sm_mail.c): the
 * names copied out (to: OL_NAME_MAX + 1 bytes, why: 160), the message
 * pointed at.  Returns 0 or OL_EMALFORMED. */
int ol__bounce_parse(const void *p, size_t len, char *to, char *why,
                     const void **msg, size_t *msg_len);

#endif
