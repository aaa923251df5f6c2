/*
 * The cluster replica: the commit path over libraft (Debian's libraft 0.15)
 * behind the replica interface, plus what a cluster needs around it:
 * liveness pings, leases that stop a cut-off node's agents before the
 * leader moves them, placement by the leader, and membership changes.
 * Every raft call in outlast lives in replication/raft.c and cluster*.c
 * (cluster_int.h lists the files).
 */
#ifndef OL_CLUSTER_H
#define OL_CLUSTER_H

#include <msgpack.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "base/sizes.h"
#include "handshake.h"
#include "replica.h"
#include "transport.h"

struct ol__cluster_config {
    uint64_t self_id;
    char node_name[OL_NODE_NAME_MAX + 1];
    char listen[OL_ADDR_MAX];     /* this node's raft/transport address */
    char labels[OL_LABELS_MAX + 1];
    char cluster[OL_CLUSTER_NAME_MAX + 1];             /* name, bound into every handshake */
    char raft_dir[4096];
    char db_path[4096];           /* for the snapshot reader */
    unsigned election_ms;
    unsigned heartbeat_ms;
    unsigned failover_ms;         /* silence before a node's agents move */
    unsigned drift_pct;           /* clock rates differ by less (lease.h);
                                     0: 10 */
    unsigned snapshot_threshold;
    unsigned snapshot_trailing;
    unsigned snapshot_mb;         /* log bytes between snapshots, MiB;
                                     0: entries only (fsm.h) */
    unsigned segment_mb;          /* raft log segment size; 0: libraft's */
    unsigned moves_in_flight;     /* placements proposed and not yet
                                     applied, at most; 0: 16384 */
    unsigned feature_level;       /* run at most this level; 0: the build's */
    int bootstrap;                /* bootstrap all roster nodes as voters */
    int compress_off;             /* never offer compression (transport.h) */
    int dial_only;                /* cannot be dialled (transport.h) */
    char leader_preference[OL_LABELS_MAX + 1]; /* see ol__lead_pref_parse */
    struct ol__peer peers[16];    /* the other nodes from the config */
    char peer_labels[16][OL_LABELS_MAX + 1];
    size_t n_peers;
};

/* Notifications from the replica to the node besides effects. */
struct ol__cluster_hooks {
    void *data;
    ol__replica_effects_cb effects;
    /* The lease to run agents was gained (ok=1) or lost (ok=0). */
    void (*lease)(void *data, int ok);
    /* A runtime message from node `from` (see ol__cluster_send_app);
     * `p` is borrowed for the call.  May be NULL. */
    void (*app)(void *data, uint64_t from, const void *p, size_t len);
};

int ol__cluster_create(uv_loop_t *loop, const struct ol__cluster_config *cfg,
                       struct ol__store *st, struct ol__sm *sm,
                       const struct ol__key *key,
                       const struct ol__cluster_hooks *hooks,
                       struct ol__replica **out, char *errmsg);
void ol__cluster_destroy(struct ol__replica *r);

/* This start's incarnation: grants name it, so only this run of the node
 * may use them. */
uint64_t ol__cluster_incarnation(const struct ol__replica *r);

/* For how many more ms may this node start steps of its agents (it holds
 * a lease from a leader that a majority can still hear)?  0 when it may
 * not.  Reads the clocks afresh: ask before every step and every dispatch
 * of work.  A suspend of the machine seen here drops the lease, and a
 * lease found gone is reported to the node at once. */
int64_t ol__cluster_lease_left(struct ol__replica *r);

/* The feature level every voter runs (the least any reported; 1 until all
 * have reported), as the leader knows it, or as the leader last said. */
uint32_t ol__cluster_level(struct ol__replica *r);

/* Counters for /metrics beyond what ol__cluster_status() shows. */
struct ol__cluster_metrics {
    uint64_t leader_changes; /* leaders learned since start */
    uint64_t lease_losses;
    uint64_t suspends;       /* suspends of the machine seen */
    uint64_t stalls;         /* leader relearned liveness after a stall */
    uint64_t busy_gaps;      /* leader's loop busy (not stalled) for over
                              * failover_ms/4: no relearning */
    uint64_t refused_fwd;    /* forwarded commands not authorised */
    uint64_t placed[5];      /* placements this node made as leader, by
                              * reason: [1] place, [2] failover,
                              * [3] re-grant, [4] rebalance */
    struct ol__transport_stats transport;
    uint64_t transfers[3];        /* leadership transfers this node began
                                   * as leader: [1] asked by an operator,
                                   * [2] by leader_preference */
    uint64_t transfers_failed[3]; /* ... that did not make the target
                                   * lead */
};
void ol__cluster_metrics(struct ol__replica *r,
                         struct ol__cluster_metrics *out);

/*
 * Send a runtime message (opaque bytes, copied) to node `to` over the
 * authenticated transport; it arrives at that node's hooks.app.  Best
 * effort, like every message: the caller times out and retries.  Returns
 * 0 or the transport's error (OL_ENOTFOUND, OL_ETOOBIG, OL_EBUSY, ...).
 */
int ol__cluster_send_app(struct ol__replica *r, uint64_t to, const void *p,
                         size_t len);

/* cluster.status as one msgpack map. */
void ol__cluster_status(struct ol__replica *r, msgpack_packer *pk);

/* Membership, on the leader only: add a node (its key goes into the
 * replicated roster; the leader's tick then adds it to raft as a spare and
 * promotes it to voter) or remove one (its agents move once it is gone).
 * The call returns once the roster change is proposed: 0, or
 * OL_ENOTLEADER, OL_EBUSY, OL_EEXISTS, OL_EINVAL, OL_ENOTFOUND or the
 * proposer's error, with a message in errmsg.  On 0 only, `cb` (may be
 * NULL) runs once before the call returns, with status 0 and a message
 * saying what follows; the raft change itself is not reported to it. */
typedef void (*ol__cluster_done_cb)(void *data, int status, const char *msg);
int ol__cluster_add(struct ol__replica *r, uint64_t id, const char *address,
                    const uint8_t pk[OL_PK_SIZE], const char *labels,
                    ol__cluster_done_cb cb, void *data, char *errmsg);
int ol__cluster_remove(struct ol__replica *r, uint64_t id,
                       ol__cluster_done_cb cb, void *data, char *errmsg);
/* Promote node `id` to a voter (OL_ROLE_VOTER) or demote it to a standby
 * (OL_ROLE_STANDBY), on the leader: its roster entry's role= label
 * changes, and the leader's tick then brings raft in line (raft_assign).
 * A demoted node's agents move off it.  Returns like ol__cluster_add:
 * OL_ENOTLEADER, OL_ENOTFOUND (no such member), OL_EEXISTS (already in
 * that role), OL_EINVAL (the leader itself to standby). */
int ol__cluster_set_role(struct ol__replica *r, uint64_t id, int role,
                         ol__cluster_done_cb cb, void *data, char *errmsg);

/* ---- leadership (cluster_lead.c) ---- */

/*
 * [cluster] leader_preference: an ordered list of label matches,
 * "key=value,key=value" (keys and values of letters, digits, _ . -; at
 * most OL_LEAD_PREF_MAX entries; spaces around entries are ignored; ""
 * means no preference).  A node's rank is the position of the first entry
 * its labels contain (0 is best); a node that matches none ranks last,
 * with rank n.  The leader hands leadership to a voter that ranks better
 * than itself once that voter has been healthy for a hold-down period.
 */
#define OL_LEAD_PREF_MAX 16
struct ol__lead_pref {
    char text[OL_LABELS_MAX + 1];  /* the entries, each ending in NUL */
    uint16_t at[OL_LEAD_PREF_MAX]; /* entry i starts at text + at[i] */
    unsigned n;                    /* 0: no preference */
};

/* Parse `s` into `out`.  Returns 0, or OL_EINVAL with errmsg saying which
 * entry is wrong and why. */
__attribute__((warn_unused_result)) int
ol__lead_pref_parse(const char *s, struct ol__lead_pref *out, char *errmsg);

/* The rank of a node with labels `labels` ("k=v,k=v"): the first entry of
 * `p` among them, or p->n when none is. */
unsigned ol__lead_pref_rank(const struct ol__lead_pref *p,
                            const char *labels);

/* The outcome of a leadership transfer. */
struct ol__cluster_transfer_result {
    uint64_t target;             /* the node asked to lead */
    uint64_t leader;             /* who leads now, as this node knows (0:
                                  * none known) */
    char address[OL_ADDR_MAX];   /* the leader's address ("" unknown) */
    uint64_t term;
    uint64_t elapsed_ms;
    char message[OL_ERRMSG_SIZE];
};
typedef void (*ol__cluster_transfer_cb)(
    void *data, int status, const struct ol__cluster_transfer_result *res);

/*
 * Hand leadership to voter `id` (0: libraft picks the most up-to-date
 * voter), on the leader only, with libraft's raft_transfer(): the target
 * is brought up to date, then told to start an election at once.
 * Returns 0 once the transfer has begun, or OL_ENOTLEADER (this node does
 * not lead: errmsg names the leader and its address), OL_EBUSY (a
 * transfer is in progress, or this leader's state machine is not current
 * yet), OL_EINVAL (`id` is this node, or not a voter),
 * OL_ENOTFOUND (no such node, or no other voter), OL_ESTATE (the target
 * has been silent for failover_ms) or OL_EIO, with errmsg set; `cb` then
 * never runs.  On 0, `cb` runs exactly once, later: status 0 when the
 * target leads, OL_ETIMEOUT when it did not take over within the election
 * timeout (or another node leads), OL_ESHUTDOWN when the cluster closes
 * first.
 */
int ol__cluster_transfer(struct ol__replica *r, uint64_t id,
                         ol__cluster_transfer_cb cb, void *data,
                         char *errmsg);

/* Write the initial raft configuration into a fresh raft directory: this
 * node alone as a voter (the leader then adds the roster's other nodes), or
 * every listed node when all are bootstrapped identically, each in the raft
 * role its labels name (a `role=standby` node is a non-voter; `self_labels`
 * and `other_labels` may be NULL: every node a voter); and the new
 * cluster's id (rstart.h).  Returns 0, OL_EEXISTS if the directory already
 * holds raft state, or OL_EIO. */
int ol__cluster_bootstrap_dir(const char *raft_dir, uint64_t self_id,
                              const char *address, const char *self_labels,
                              const struct ol__peer *others,
                              char (*other_labels)[OL_LABELS_MAX + 1],
                              size_t n_others,
                              const uint8_t cluster_id[OL_CLUSTER_ID_SIZE],
                              char *errmsg);

#endif
