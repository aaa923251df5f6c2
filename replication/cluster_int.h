/*
 * Internals shared by raft.c (consensus, FSM, proposals) and cluster.c
 * (liveness, leases, placement, membership).
 */
#ifndef OL_CLUSTER_INT_H
#define OL_CLUSTER_INT_H

#include <raft.h>
#include <raft/uv.h>
#include <sqlite3.h>

#include "base/sizes.h"
#include "base/map.h"
#include "cluster.h"
#include "fsm.h"
#include "raftfix.h"

/* Messages on the transport's message channel: a msgpack array whose first
 * element is the type. */
enum {
    MSG_PING = 1,    /* [1, node, inc, applied, sent_ms, level]
                      *                               follower -> leader
                      * (level: the feature level it runs; absent: 1) */
    MSG_PONG = 2,    /* [2, term, leader, applied, echo_ms, level]
                      *                               leader -> node
                      * (level: what every voter runs; absent: 1) */
    MSG_FORWARD = 3, /* [3, entry: bin]                  follower -> leader */
    MSG_APPLIED = 4, /* [4, [[agent, epoch, seq, status]...]] leader -> owner:
                      * those checkpoints committed (or were refused) */
    MSG_APP = 5,     /* [5, bytes: bin]  any -> any: for hooks.app */
};

/* A suspend shorter than this is not told apart from clock noise. */
#define OL_SUSPEND_SLACK_MS 250

/* A proposal this node made and has not yet seen applied. */
struct pend {
    struct pend *next_unsent;
    int is_ckpt;
    char agent[OL_NAME_MAX + 1];
    uint64_t epoch, seq;
    uint64_t req;
    uint8_t *bytes; /* ckpt body, or one encoded command */
    size_t len;
    uint8_t hash[OL_HASH_SIZE];
    uint64_t sent_ms; /* 0: never sent */
    int queued;       /* on the unsent list */
    char key[OL_NAME_MAX + 24]; /* map key */
};

/* What the leader knows about a node. */
struct peer_state {
    uint64_t id;
    uint64_t last_ms;  /* last ping received (monotonic) */
    uint64_t inc;      /* incarnation it last reported */
    uint64_t applied;
    uint32_t level;    /* feature level it reported; 0: not heard */
    uint64_t contact_ms; /* newest of our answers it echoed (our clock);
                          * 0: none.  Never seeded: the leader's lease */
    int seen;          /* pinged this leader at least once */
    /* Leader: the node gets no lease while agents are being moved off it
     * (moving_off), nor until it has applied fence_index, the state the
     * leader had when the last such move landed: a node must learn that
     * its agents went elsewhere before it may step anything again. */
    uint32_t moving_off;
    uint64_t fence_index;
};

/* A placement the leader proposed and has not seen applied. */
struct placing {
    char agent[OL_NAME_MAX + 1];
    uint64_t epoch;
    uint64_t since_ms;
    uint64_t from; /* the owner it moves off (0: none) */
};

struct membership_op {
    int active;
    int phase; /* 0 node cmd, 1 raft_add, 2 raft_assign, 3 raft_remove */
    uint64_t id;
    uint64_t req;
    char address[OL_ADDR_MAX];
    uint8_t pk[OL_PK_SIZE];
    char labels[OL_LABELS_MAX + 1];
    struct raft_change change;
    ol__cluster_done_cb cb;
    void *data;
};

struct cluster {
    struct ol__replica base;
    uv_loop_t *loop;
    struct ol__cluster_config cfg;
    struct ol__cluster_hooks hooks;
    struct ol__store *st;
    struct ol__sm *sm;
    const struct ol__key *key;
    uint64_t inc;
    unsigned lease_ms;
    unsigned retry_ms;

    struct ol__transport *tr;
    struct raft_io io;
    struct ol__fsm fsm;
    struct raft raft;
    struct raft_tracer tracer;
    int raft_inited;
    struct ol__rfix rfix; /* corrections to libraft's replies */
    uint8_t cluster_id[OL_CLUSTER_ID_SIZE]; /* zero: not joined yet */

    /* role */
    int role;          /* RAFT_* state last seen */
    uint64_t leader_id;
    uint64_t prev_leader_id;
    int leader_ready;  /* an entry of this term committed: the state
                        * machine is current */
    uint64_t leader_since_ms;
    uint64_t last_pong_ms;
    uint32_t level;         /* the feature level this node runs */
    uint32_t cluster_level; /* what every voter runs (the leader's view) */

    /* lease (cluster.c: the rule and why it holds) */
    uint64_t lease_until_ms;     /* agents here may step until then */
    uint64_t lead_lease_until_ms; /* leader: a majority hears us until */
    uint64_t leader_time;        /* the leader's clock in its last answer,
                                  * echoed in our next ping */
    uint64_t clock_mono, clock_boot; /* suspend detection */
    uint64_t resumed_ms; /* fresh clock when a suspend was last seen */
    uint64_t last_tick_ms;
    int lease_reported;
    uint64_t pong_commit;  /* the leader's commit index one answer ago */

    /* proposals */
    struct ol__map pend;  /* key -> struct pend * */
    struct pend *unsent_head, *unsent_tail;
    struct ol__entry_w fwd; /* commands forwarded to this leader */
    unsigned applies_inflight;
    uint64_t last_retry_scan_ms;

    /* leader state */
    struct peer_state *peers;
    size_t n_peers;
    struct placing *placing;
    size_t n_placing;
    uint64_t last_rebalance_ms;
    struct membership_op member;
    uint64_t roster_checked_ms;

    uv_idle_t kick;
    uv_timer_t tick;
    uv_check_t check;
    uint64_t last_ping_ms;
    uint64_t pinged_leader;      /* the leader the last ping went to */

    int closing;
    void (*close_cb)(void *data);
    void *close_data;
    int handles;

    struct {
        uint64_t entries;
        uint64_t ckpts_proposed;
        uint64_t forwarded;
        uint64_t retries;
        uint64_t placements;
        uint64_t leader_changes;  /* a new leader was learned */
        uint64_t lease_losses;
        uint64_t suspends;        /* the machine was seen suspended */
        uint64_t stalls;          /* leader relearned liveness after one */
        uint64_t refused_fwd;     /* forwarded commands not authorised */
        uint64_t placed[5];       /* by enum ol__pl_reason */
        struct ol__phist batch_sizes; /* checkpoints per applied entry */
    } n;
};

uint64_t ol__cl_now(struct cluster *c);
void ol__cl_dispatch(struct cluster *c, struct ol__effects *fx);
void ol__cl_notify_owners(struct cluster *c, const struct ol__effects *fx);
void ol__cl_kick(struct cluster *c);
void ol__cl_roster_sync(struct cluster *c);
void ol__cl_recv(void *data, uint64_t from, const void *msg, size_t len);
void ol__cl_tick(struct cluster *c);
void ol__cl_role_changed(struct cluster *c, int old_role);
void ol__cl_leader_ready(struct cluster *c);
void ol__cl_on_effects(struct cluster *c, const struct ol__effects *fx);
int ol__cl_propose_raw(struct cluster *c, const struct ol__entry_w *w,
                       uint64_t req);
int ol__cl_apply_entry(struct cluster *c, const void *p, size_t len);
/* The feature level every voter runs, as far as this node knows. */
uint32_t ol__cl_level(struct cluster *c);

/* propose.c */
void ol__cl_pend_free(struct pend *p);
int ol__cl_propose_ckpt(struct ol__replica *r, const char *agent,
                        uint64_t epoch, uint64_t seq, uint8_t *body,
                        size_t len, const uint8_t hash[OL_HASH_SIZE]);
int ol__cl_propose_cmds(struct ol__replica *r, const struct ol__entry_w *w);
void ol__cl_retry_stale(struct cluster *c, int all);

#endif
