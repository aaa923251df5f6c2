/*
 * The anchor of the cluster benchmarks: a 3-member etcd cluster (Debian's
 * etcd-server, /usr/bin/etcd) on loopback with fresh data directories and
 * the same raft timing as the outlast cluster beside it, and its client:
 * a long-lived Node.js helper (bench/etcd_client.mjs) that talks to etcd's
 * v3 JSON gateway with Node's own `http` module and answers one JSON line
 * per request.
 *
 * With OL_WAN_SITES set, member i runs in the WAN test bed's site i (see
 * cb_wan_site() in cb_proc.h): its peers talk over the bed, and the
 * helper, in the root namespace, reaches it on a unix socket, as the
 * outlast benchmarks reach each node's control socket.
 */
#ifndef OL_BENCH_CB_ETCD_H
#define OL_BENCH_CB_ETCD_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "cb_proc.h"

#define CB_ETCD_MAX 3

struct cb_etcd_opts {
    int n;
    uint32_t election_ms;
    uint32_t heartbeat_ms;
    int pre_vote;          /* outlast's libraft runs pre-vote */
    char etcd[PATH_MAX];   /* /usr/bin/etcd */
    char node[PATH_MAX];   /* node (Node.js) */
    char helper[PATH_MAX]; /* etcd_client.mjs */
};

struct cb_etcd_member {
    pid_t pid;
    int client_port, peer_port;
    char name[16];
    char dir[PATH_MAX];
    char log[PATH_MAX];
    char url[PATH_MAX + 16]; /* http://127.0.0.1:PORT, or on the WAN bed
                                "unix:" and its client socket's path */
    char host[CB_WAN_NAME]; /* its peer (and client) address */
    char ns[CB_WAN_NAME];   /* its WAN site's network namespace, or "" */
};

struct cb_etcd {
    struct cb_etcd_opts o;
    char root[PATH_MAX];
    struct cb_etcd_member m[CB_ETCD_MAX];
    /* the client helper */
    pid_t hpid;
    int hin, hout;
};

void cb_etcd_defaults(struct cb_etcd_opts *o);

/* Scratch directory, ports, the helper process.  0 or -1. */
int cb_etcd_init(struct cb_etcd *e, const struct cb_etcd_opts *o);

/* Start member i (again, after a kill: the same flags; its data
 * directory holds the membership). */
int cb_etcd_start_member(struct cb_etcd *e, int i);

/* Start all members and wait until they agree on a leader.  0 or -1. */
int cb_etcd_start(struct cb_etcd *e, int timeout_ms);

void cb_etcd_kill(struct cb_etcd *e, int i);

/* Kill the members and the helper, remove the scratch directory. */
void cb_etcd_destroy(struct cb_etcd *e);

/* Send one request (a JSON object, borrowed) to the helper and wait for
 * its answer (new reference, or NULL on timeout/garbage/"ok": false, with
 * a message on stderr). */
json_t *cb_etcd_call(struct cb_etcd *e, json_t *req, int timeout_ms);

/* Status of every running member: index of the member they all name as
 * leader, or -1.  applied_min and applied_max (NULL-safe) get the lowest
 * and highest raft applied index among them. */
int cb_etcd_leader(struct cb_etcd *e, uint64_t *applied_min,
                   uint64_t *applied_max);

/* A JSON array of the client URLs of the members in `mask` (bit i). */
json_t *cb_etcd_urls(struct cb_etcd *e, unsigned mask);

#endif
