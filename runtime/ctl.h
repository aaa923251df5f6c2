/*
 * The control protocol between the `outlast` CLI and a node.
 *
 * Transport: a unix stream socket, <data dir>/control.sock, mode 0600.
 * Framing: each message is a 4-byte big-endian length followed by that many
 * bytes of msgpack (one map).  Frames over OL_CTL_FRAME_MAX are refused and
 * the connection closed.  One request at a time per connection; a client may
 * send several requests in sequence.
 *
 * Request:   {"op": str, ...arguments}
 * Response:  {"ok": true, ...results}
 *        or  {"ok": false, "error": str, "code": str}   code: ol_err_name()
 *
 * Operations (arguments -> results):
 *   status {reset?}   -> node: {id, pk, version, mode ("single"|"cluster"),
 *                               role, data_dir, uptime_ms, http (the bound
 *                               HTTP address, "" when off)},
 *                        agents: {total, running, stopping, stopped,
 *                                 quarantined, degraded, local},
 *                        commits: {checkpoints, batches, refused, steps,
 *                                  latency_p50_us, latency_p99_us, ...};
 *                        with reset: true the latency histogram restarts
 *                        after this answer,
 *                        cluster: {...} (cluster mode only),
 *                        storage: {state ("ok"|"damaged"), errors, first,
 *                                  first_ms}: damage found while running
 *   agents            -> agents: [agent row], see ol__query_agents()
 *                        live: {name: {local, degraded, phase, queued,
 *                               committed_seq, reason, steps, commit_us,
 *                               held}}
 *   logs {name, after?, limit? (1..1000, 200)}
 *                     -> logs: {name, node, epoch, ring, first, next,
 *                               lines: [{seq, time_ms, level, text}]}
 *                        the lines numbered above `after`, from the node
 *                        that hosts the agent (asked over the cluster)
 *   show {name}       -> agent: see ol__query_show(), live: {...}
 *   history {name, limit?}
 *                     -> see ol__query_history()
 *   spawn {kind, name, config?: map, request_id?}
 *                     -> name, owner, epoch
 *   stop {name, request_id?}
 *                     -> name, status
 *   start {name, request_id?}
 *                     -> name, status, epoch
 *   send {name, message: any, request_id?}
 *                     -> name, msg_seq
 *   request_id (1-128 printable ASCII characters) names the request: the
 *   command's id is derived from it (BLAKE2b over a domain string, the op
 *   and the id), so the same request sent again, to any node, is applied
 *   once and answered with the first outcome (the same msg_seq for a
 *   send).  Without it the id is random.  A bad one is refused with
 *   OL_EINVAL naming "request_id".
 *   cluster.status    -> see replication/cluster docs
 *   cluster.init / cluster.add {id, address, pk, labels?} /
 *   cluster.remove {id}
 *   cluster.transfer {id?}
 *                     -> leader, address, term, elapsed_ms, message:
 *                        answered once the node asked to lead does (no
 *                        id: the most up-to-date voter), or with an
 *                        error (see ol__cluster_transfer)
 */
#ifndef OL_CTL_H
#define OL_CTL_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define OL_CTL_FRAME_MAX (64u << 20)
#define OL_CTL_SOCKET "control.sock"

/*
 * Limits that keep clients from holding the server's resources:
 *  - idle_ms: a connection with no request outstanding must deliver its
 *    next complete request within this time of connecting or of its last
 *    reply, or it is closed;
 *  - max_conns: connections open at once; one over it closes the
 *    connection idle longest, or, when every one is waiting for an answer,
 *    is refused;
 *  - budget: bytes of request buffers and unsent replies held for all
 *    connections together; a read that would pass it is refused.
 * A refused connection gets {"ok": false, "code": "OL_EBUSY", "refused":
 * true, "error": ...} before it is closed; its request was not read, so a
 * client may retry (ol__ctl_call() does, until its deadline).
 */
#define OL_CTL_IDLE_MS 10000u
#define OL_CTL_MAX_CONNS 64u
#define OL_CTL_BUDGET ((size_t)256 << 20)

struct ol__ctl_limits {
    unsigned idle_ms;   /* 0: keep the current value */
    unsigned max_conns;
    size_t budget;
};

struct ol__ctl;
struct ol__ctl_req;

/*
 * Called once per request on the loop thread.  `args` is the whole request
 * map (already checked to be well-formed msgpack), valid only during the
 * call: copy what you keep.  The handler must eventually call exactly one
 * of ol__ctl_reply() or ol__ctl_reply_error() for `req`, now or later.
 */
typedef void (*ol__ctl_handler)(void *data, struct ol__ctl_req *req,
                                const char *op, const msgpack_object *args);

/* Listen on `path` (an existing stale socket file is replaced; the socket
 * is made mode 0600).  Returns 0 or an OL_E* code with errmsg set. */
int ol__ctl_start(uv_loop_t *loop, const char *path, ol__ctl_handler h,
                  void *data, struct ol__ctl **out, char *errmsg);

/* Change the limits (zero members keep their value). */
void ol__ctl_set_limits(struct ol__ctl *c, const struct ol__ctl_limits *l);

/* Reply with a complete response map (msgpack bytes, copied), which must
 * contain "ok": true.  If the client has gone, the reply is dropped. */
void ol__ctl_reply(struct ol__ctl_req *req, const void *map, size_t len);

/* Reply {"ok": false, "error": <formatted>, "code": ol_err_name(code)}. */
void ol__ctl_reply_error(struct ol__ctl_req *req, int code, const char *fmt,
                         ...) __attribute__((format(printf, 3, 4)));

/* Stop listening, close connections, unlink the socket; `cb` fires when
 * every handle is closed.  Requests not yet replied to are dropped (their
 * later replies are ignored safely).  NULL-safe. */
void ol__ctl_close(struct ol__ctl *c, void (*cb)(void *data), void *data);

/*
 * Client side (blocking, for the CLI): send one request and wait for the
 * response, at most timeout_ms.  *resp is malloc'd.  A node that turns the
 * connection away unread (busy) is asked again, with backoff, until the
 * deadline.  Returns 0, OL_ENOTFOUND (no socket: the node is not running),
 * OL_ECONN (nothing listens on the socket), OL_EBUSY (the node is running
 * but turned the request away until the deadline), OL_ECANCELED (the node
 * closed the connection before it replied: the request may have taken
 * effect), OL_ETIMEOUT or OL_EMALFORMED, with errmsg set.
 */
int ol__ctl_call(const char *path, const void *req, size_t len, void **resp,
                 size_t *resp_len, int timeout_ms, char *errmsg);

#endif
