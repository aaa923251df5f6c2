/*
 * Commands: what the replicated log carries.  One log entry (one raft entry,
 * or one local group commit) is
 *
 *     [2, term, time_ms, [cmd, ...]]
 *
 * `term` is the raft term of the leader that proposed the entry (0 on a
 * single node) and `time_ms` the proposer's wall clock when it built the
 * entry: applying an entry reads no clock of its own, so every node writes
 * the same rows.  Format 1 entries, [1, [cmd, ...]], from before the term
 * was carried, still decode, with term and time 0.
 *
 * Each command is a msgpack array whose first element is its type (the
 * command table in cmd.c writes and checks them):
 *
 *     CKPTS      [1, seal: bin, sig: bin64, [body: bin, ...]]
 *     SPAWN      [2, req, name, kind, config: bin, owner, inc]
 *     STOP       [3, req, name]
 *     PLACE      [4, req, name, owner, epoch, inc]
 *     SEND       [5, req, to, msg_seq, payload: bin]
 *     QUARANTINE [6, req, name, epoch, reason]
 *     NODE       [7, req, id, address, pk: bin32, labels]
 *     NODE_DEL   [8, req, id]
 *     START      [9, req, name]
 *     NOOP       [10]
 *     CRASH      [11, req, name, epoch, time_ms, limit, window_ms, reason]
 *     CODE       [12, req, node, kind, hash: bin32, version, wanted: bool]
 *     MOVE       [13, req, name, owner, epoch, inc, term, hold_ms]
 *     RM         [14, req, name]
 *     CONFIG     [15, req, name, msg_seq, config: bin]
 *
 * `req` is a random id chosen by the proposer, echoed in the outcome so a
 * waiting client can match it.  An owner is a node id plus that node's
 * incarnation (a random id drawn at each start), so a grant made to a node
 * before it restarted does not let the restarted node run the agent.  A
 * SPAWN with owner 0 leaves the agent for the leader to place.  A CKPTS
 * command carries a seal and the checkpoint bodies whose hashes it lists,
 * in order.  A CRASH reports that the agent's code crashed or overran its
 * deadline under `epoch`, at the reporter's `time_ms`; `limit` crashes
 * within `window_ms` quarantine it (the reporter's settings travel with the
 * report, so every node decides the same).  A CODE says which build of
 * plugin `kind` node `node` runs; with `wanted` (an upgrade) it also becomes
 * the build agents of the kind may only be placed with.  A MOVE with
 * `hold_ms` > 0 hands the agent over from a node that may still be running
 * it (a rebalance, a node being removed): the new owner applies it, then
 * waits `hold_ms` on its own monotonic clock, or until the old owner says it
 * has let go, before the agent's first step (placement.h,
 * ol__pl_handoff_ms).  The leader decides the wait, so every node applies
 * the same command.  An RM removes a stopped agent for good: its row stays
 * as a tombstone (status removed) with its checkpoints, so its history still
 * verifies and its name is never used again.  A CONFIG replaces an agent's
 * config and queues it to the agent as a message from "@config"
 * (OL_EVENT_CONFIG), numbered `msg_seq` like a SEND.
 */
#ifndef OL_CMD_H
#define OL_CMD_H

#include <stdint.h>

#include "base/buf.h"
#include "base/keys.h"
#include "base/sizes.h"
#include "ckpt.h"

#define WUR __attribute__((warn_unused_result))

#define OL_ENTRY_FORMAT 2
#define OL_ENTRY_MAX_CMDS 65536
#define OL_MOVE_HOLD_MAX_MS 600000 /* the longest hand-off wait a MOVE holds */

enum ol__cmd_type {
    OL_CMD_CKPTS = 1,
    OL_CMD_SPAWN = 2,
    OL_CMD_STOP = 3,
    OL_CMD_PLACE = 4,
    OL_CMD_SEND = 5,
    OL_CMD_QUARANTINE = 6,
    OL_CMD_NODE = 7,
    OL_CMD_NODE_DEL = 8,
    OL_CMD_START = 9,
    OL_CMD_NOOP = 10,
    OL_CMD_CRASH = 11, /* feature level 2 */
    OL_CMD_CODE = 12,  /* feature level 2 */
    OL_CMD_MOVE = 13, /* PLACE with the deciding leader's term */
    OL_CMD_RM = 14,     /* feature level 3 */
    OL_CMD_CONFIG = 15, /* feature level 3 */
};

/*
 * Feature levels.  Every command type belongs to the level that introduced
 * it.  A node runs OL_FEATURE_LEVEL (or less, when configured to stay at an
 * older level during a rolling upgrade) and reports it to the leader; the
 * leader proposes a command only when every voter runs its level.  A node
 * that meets a command it does not know stops rather than skip it.
 * Level 4 added no command: it lets checkpoints carry effects
 * (record/ckpt.h), which a node below it refuses to decode.
 */
#define OL_FEATURE_LEVEL 4

/* Who may ask the leader, through a forward, to propose a command. */
enum ol__cmd_auth {
    OL_AUTH_ANY = 0,       /* any member (operators ask any node) */
    OL_AUTH_LEADER = 1,    /* only the leader decides it: never forwarded */
    OL_AUTH_SELF = 2,      /* a node about itself (node_id is the sender) */
    OL_AUTH_OWNER = 3,     /* the agent's owner */
};

/* What the codec knows about one command type. */
struct ol__cmd_info {
    uint32_t type;
    const char *name;
    uint32_t level; /* the feature level that introduced it */
    int auth;       /* enum ol__cmd_auth */
};

/* The entry for `type`, or NULL for a type this build does not know (or
 * one above the level set with ol__cmd_set_level()). */
const struct ol__cmd_info *ol__cmd_info(uint32_t type);

/* Decode only commands up to `level` (1..OL_FEATURE_LEVEL), as a build of
 * that level would: a node held at an older level during a rolling
 * upgrade.  Process-wide; the default is OL_FEATURE_LEVEL. */
void ol__cmd_set_level(uint32_t level);
uint32_t ol__cmd_level(void);
/* The feature level that introduced `type`, whatever level this node is
 * held at; 0 for a type this build does not know. */
uint32_t ol__cmd_need(uint32_t type);
/* Iterate the table: returns NULL past the end. */
const struct ol__cmd_info *ol__cmd_info_at(size_t i);

struct ol__blob {
    const uint8_t *p;
    uint32_t len;
};

/* A command, decoded or to encode.  Which members a type carries, in
 * which order, is its row in the command table (cmd.c).  Decoded
 * pointers point into the entry bytes. */
struct ol__cmd {
    uint32_t type;
    uint64_t req;
    struct ol__blob raw; /* the whole command, for re-batching */
    /* CKPTS */
    struct ol__blob seal;
    const uint8_t *sig;
    struct ol__blob *bodies; /* malloc'd array */
    uint32_t n_bodies;
    /* The agent (SEND: the recipient) of every agent command */
    char name[OL_NAME_MAX + 1];
    char kind[OL_KIND_MAX + 1];          /* SPAWN, CODE */
    struct ol__blob config;  /* SPAWN, CONFIG: one msgpack object */
    uint64_t owner;          /* SPAWN, PLACE, MOVE */
    uint64_t inc;            /* SPAWN, PLACE, MOVE: the owner's incarnation */
    uint64_t epoch;          /* PLACE, MOVE, QUARANTINE, CRASH */
    uint64_t term;           /* MOVE: the term of the leader deciding it */
    uint32_t hold_ms;        /* MOVE: the new owner's hand-off wait */
    int64_t time_ms;         /* CRASH */
    uint32_t limit;          /* CRASH */
    uint32_t window_ms;      /* CRASH */
    uint8_t hash[OL_HASH_SIZE];          /* CODE */
    char version[OL_VERSION_MAX + 1];    /* CODE */
    int wanted;                          /* CODE */
    uint64_t msg_seq;        /* SEND, CONFIG */
    struct ol__blob payload; /* SEND: one msgpack object */
    char reason[OL_REASON_MAX + 1];      /* QUARANTINE, CRASH */
    uint64_t node_id;        /* NODE, NODE_DEL, CODE */
    char address[OL_ADDR_MAX];           /* NODE */
    uint8_t pk[OL_PK_SIZE];              /* NODE */
    char labels[OL_LABELS_MAX + 1];      /* NODE */
};

struct ol__entry {
    uint32_t format;
    uint64_t term;    /* the proposing leader's term; 0 if not carried */
    int64_t time_ms;  /* the proposer's wall clock; 0 if not carried */
    struct ol__cmd *cmds;
    uint32_t n;
};

/* Decode an entry; every command is checked for shape and limits.  Returns
 * 0, OL_EMALFORMED with errmsg naming the command and field, or
 * OL_ENOTSUP for a command type (or entry format) this build does not know:
 * the entry may be well formed, from a newer version. */
int ol__entry_decode(const void *p, size_t len, struct ol__entry *e,
                     char *errmsg) WUR;

/* Read only the header of an entry: format, term and time.  Returns 0,
 * OL_EMALFORMED or OL_ENOTSUP like ol__entry_decode(). */
int ol__entry_peek(const void *p, size_t len, struct ol__entry *e) WUR;

void ol__entry_free(struct ol__entry *e);

/* Building an entry: add commands, set the header, then finish. */
struct ol__entry_w {
    struct ol__buf cmds;
    uint32_t n;
    uint32_t level;  /* highest feature level of the commands added */
    uint64_t term;   /* header fields written by ol__entry_w_finish() */
    int64_t time_ms;
};

void ol__entry_w_init(struct ol__entry_w *w);
void ol__entry_w_close(struct ol__entry_w *w);
void ol__entry_w_reset(struct ol__entry_w *w);

/* Add command `c` (any type but CKPTS): the command table in cmd.c says
 * which members of `c` go on the wire, in which order.  Returns 0,
 * OL_EINVAL (CKPTS, or a type this build does not know), OL_ETOOBIG (the
 * entry is full) or OL_ENOMEM.  Values are not checked here: every node's
 * decoder checks them. */
int ol__entry_add(struct ol__entry_w *w, const struct ol__cmd *c) WUR;

/* Seal n bodies with `key` and add them as one CKPTS command. */
int ol__entry_add_ckpts(struct ol__entry_w *w, const struct ol__key *key,
                        int64_t time_ms, const struct ol__blob *bodies,
                        const uint8_t *hashes, uint32_t n);
/* The typed adders fill a struct ol__cmd for ol__entry_add().  A string
 * too long for its member is refused (OL_EINVAL), except a reason, which
 * comes from an error message and is clipped to OL_REASON_MAX. */
int ol__entry_add_spawn(struct ol__entry_w *w, uint64_t req,
                        const char *name, const char *kind,
                        const void *config, size_t config_len,
                        uint64_t owner, uint64_t inc);
int ol__entry_add_stop(struct ol__entry_w *w, uint64_t req,
                       const char *name);
int ol__entry_add_rm(struct ol__entry_w *w, uint64_t req,
                     const char *name) WUR;
int ol__entry_add_config(struct ol__entry_w *w, uint64_t req,
                         const char *name, uint64_t msg_seq,
                         const void *config, size_t config_len) WUR;
int ol__entry_add_start(struct ol__entry_w *w, uint64_t req,
                        const char *name);
int ol__entry_add_place(struct ol__entry_w *w, uint64_t req,
                        const char *name, uint64_t owner, uint64_t epoch,
                        uint64_t inc);
int ol__entry_add_send(struct ol__entry_w *w, uint64_t req, const char *to,
                       uint64_t msg_seq, const void *payload, size_t len);
int ol__entry_add_quarantine(struct ol__entry_w *w, uint64_t req,
                             const char *name, uint64_t epoch,
                             const char *reason);
int ol__entry_add_crash(struct ol__entry_w *w, uint64_t req,
                        const char *name, uint64_t epoch, int64_t time_ms,
                        uint32_t limit, uint32_t window_ms,
                        const char *reason);
int ol__entry_add_code(struct ol__entry_w *w, uint64_t req, uint64_t node,
                       const char *kind, const uint8_t hash[OL_HASH_SIZE],
                       const char *version, int wanted);
int ol__entry_add_node(struct ol__entry_w *w, uint64_t req, uint64_t id,
                       const char *address, const uint8_t pk[OL_PK_SIZE],
                       const char *labels);
int ol__entry_add_node_del(struct ol__entry_w *w, uint64_t req, uint64_t id);
int ol__entry_add_noop(struct ol__entry_w *w);
int ol__entry_add_move(struct ol__entry_w *w, uint64_t req, const char *name,
                       uint64_t owner, uint64_t epoch, uint64_t inc,
                       uint64_t term, uint32_t hold_ms);
/* Add an already encoded command (from a decoded entry). */
int ol__entry_add_raw(struct ol__entry_w *w, const struct ol__blob *raw);

/* Write the finished entry to `out` (appended). */
int ol__entry_w_finish(const struct ol__entry_w *w, struct ol__buf *out);

#endif
