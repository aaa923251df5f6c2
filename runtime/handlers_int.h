/*
 * What the control handlers (handlers*.c) share: reading a request's
 * arguments, writing an answer, deriving command ids, and the requests
 * waiting for a command to commit.
 */
#ifndef OL_HANDLERS_INT_H
#define OL_HANDLERS_INT_H

#include <msgpack.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/pack.h"
#include "base/sizes.h"
#include "ctl.h"
#include "record/cmd.h"
#include "state/sm.h"

struct ol__node;
struct ol__bulk;

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
    struct ol__bulk *bulk; /* a bulk request (handlers_bulk.c): it matches
                            * its own commands */
};

/* The value of `key` in the request's argument map, or NULL. */
const msgpack_object *ol__arg(const msgpack_object *args, const char *key);
/* Copy a string argument; 0, or -1 if missing, not a string or too long. */
int ol__arg_str(const msgpack_object *args, const char *key, char *out,
                size_t cap);
/* The agent name argument ("name") into `name`; 0, or -1 after
 * replying "OP: missing or bad agent name". */
int ol__arg_name(struct ol__ctl_req *req, const char *op,
                 const msgpack_object *args, char name[OL_NAME_MAX + 2]);
/* The command id for a mutating request `op` (and, when `seq` is not
 * NULL, a send's message sequence), derived from its "request_id" if it
 * has one.  Returns 0, or -1 after replying with an error. */
int ol__request_ids(struct ol__ctl_req *req, const char *op,
                    const msgpack_object *args, uint64_t *id,
                    uint64_t *seq);

/* An answer: a map that starts with "ok": true and counts its own
 * entries (m); pack into m.pk / m.buf. */
struct ol__resp {
    struct ol__buf buf;
    msgpack_packer pk;
    struct ol__pk_map m;
};
void ol__resp_begin(struct ol__resp *r);
/* Send it (or an error if it could not be built) and free it. */
void ol__resp_send(struct ol__resp *r, struct ol__ctl_req *req);
/* The agent's row in an answer: kind, owner, epoch, status. */
void ol__resp_row(struct ol__resp *r, const struct ol__sm_agent *row);

/* Propose `w` and wait for its outcome (command `id`), or reply with the
 * error. */
void ol__propose_and_wait(struct ol__node *n, struct ol__ctl_req *req,
                          struct ol__entry_w *w, uint64_t id,
                          const char *op, const char *name,
                          uint64_t msg_seq);
/* The waiter just added for `req` (the list's head), or NULL. */
struct ol__waiter *ol__waiter_of(struct ol__node *n,
                                 struct ol__ctl_req *req);

/* The operations, by group. */
void ol__op_status(struct ol__node *n, struct ol__ctl_req *req,
                   const msgpack_object *args);
void ol__op_query(struct ol__node *n, struct ol__ctl_req *req,
                  const char *op, const msgpack_object *args);
void ol__op_effects(struct ol__node *n, struct ol__ctl_req *req,
                    const msgpack_object *args);
/* Whether a spawn's config map `cfg` (may be NULL) holds well-formed
 * placement affinity: "prefer" and "avoid", when present, must be label
 * lists "k=v,k=v" (placement.h).  Writes what is wrong into err. */
int ol__affinity_ok(const msgpack_object *cfg, char *err, size_t cap);
void ol__op_spawn(struct ol__node *n, struct ol__ctl_req *req,
                  const msgpack_object *args);
void ol__op_simple(struct ol__node *n, struct ol__ctl_req *req,
                   const char *op, const msgpack_object *args);
void ol__op_send(struct ol__node *n, struct ol__ctl_req *req,
                 const msgpack_object *args);
void ol__op_rm(struct ol__node *n, struct ol__ctl_req *req,
               const msgpack_object *args);
void ol__op_config(struct ol__node *n, struct ol__ctl_req *req,
                   const msgpack_object *args);

/* Bulk requests (handlers_bulk.c): "spawn_many", "stop_many" and
 * "start_many", at most OL_BULK_MAX agents each. */
#define OL_BULK_MAX 100000u
void ol__op_bulk(struct ol__node *n, struct ol__ctl_req *req,
                 const char *op, const msgpack_object *args);
/* A command's outcome: 1 if it was the bulk request's last, which is then
 * answered and freed (its waiter is the caller's to free). */
int ol__bulk_effect(struct ol__bulk *b, const struct ol__effect *e,
                    const struct ol__sm_agent *row);
/* An agent's first checkpoint committed, or its row changed to a status
 * other than running or stopping: the same, 1 if it answered the request
 * (ol__waiters_ckpt/_agent call these). */
int ol__bulk_ckpt(struct ol__bulk *b, const char *name);
int ol__bulk_agent(struct ol__bulk *b, const struct ol__sm_agent *row);
/* The node is shutting down: answer so and free it. */
void ol__bulk_drop(struct ol__bulk *b);

#endif
