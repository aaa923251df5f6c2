/*
 * The node as the control handlers see it: a handle and the few
 * questions and operations they need, without struct ol__node's fields.
 * node.h includes this; the handlers include only this.
 */
#ifndef OL_NODE_VIEW_H
#define OL_NODE_VIEW_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/pack.h"
#include "record/cmd.h"
#include "state/sm.h"

struct ol__node;
struct ol__codes;
struct ol__replica;
struct ol__waiter;

/* Propose commands; logs and returns the error on failure. */
int ol__node_propose(struct ol__node *n, const struct ol__entry_w *w);
/* The database failed while running (a damaged page, a failed write):
 * log it, show it in status, and, when `agent` names an agent hosted here
 * whose records it touches, stop that agent (degraded). */
void ol__node_storage_fault(struct ol__node *n, const char *agent,
                            const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Is this SQLite error code damage rather than a transient failure? */
int ol__sqlite_damaged(sqlite3 *db);

/* The node is shutting down: no new changes. */
int ol__node_stopping(const struct ol__node *n);
/* It has a [cluster] section (else it runs alone). */
int ol__node_clustered(const struct ol__node *n);
/* Its node id. */
uint64_t ol__node_self(const struct ol__node *n);
/* The loop thread's read-only connection. */
sqlite3 *ol__node_reader(struct ol__node *n);
struct ol__replica *ol__node_replica(struct ol__node *n);
struct ol__codes *ol__node_codes(struct ol__node *n);
/* The replicated row of agent `name` (borrowed), or NULL. */
const struct ol__sm_agent *ol__node_row(struct ol__node *n,
                                        const char *name);
/* Iterate the replicated rows (start with *iter = 0): 1 and *row, or 0
 * past the end.  Valid until the next apply. */
int ol__node_row_next(struct ol__node *n, size_t *iter,
                      const struct ol__sm_agent **row);
/* The list of control requests waiting for commands (handlers_wait.c). */
struct ol__waiter **ol__node_waiters(struct ol__node *n);

/* node_status.c: the node's figures for `outlast status`, as entries of
 * the answer map `m` (storage, node, agents, commits, hosts, stopping,
 * replica). */
void ol__node_pack_status(struct ol__node *n, struct ol__pk_map *m);
/* node_status.c: the "wire" entry of cluster.status: bytes on the wire
 * to and from each peer, compression and round trips (an empty map on a
 * node without a cluster). */
void ol__node_pack_wire(struct ol__node *n, struct ol__pk_map *top);
/* Start a new window for the commit latency figures. */
void ol__node_status_reset(struct ol__node *n);
/* {name: {steps, commit_us, ...}} for the agents hosted here, or with
 * `only` that agent's own map (empty if not hosted here); packed with
 * `pk`, which writes into `buf`. */
void ol__node_pack_live(struct ol__node *n, msgpack_packer *pk,
                        struct ol__buf *buf, const char *only);

#endif
