/*
 * Internals of the cluster replica, shared by its files:
 *   cluster.c          the replica's life: create, close, tick, role changes
 *   raft.c             the raft glue: setup, FSM hooks, role tracking,
 *                      submitting entries, offline bootstrap
 *   cluster_lease.c    liveness pings, leases, suspends, the feature level
 *   cluster_stall.c    the leader's loop away: stalled or busy
 *   cluster_msg.c      the message channel and what the FSM's effects cause
 *   cluster_members.c  the roster and raft membership
 *   cluster_place.c    driving placement (placement.h decides)
 *   cluster_status.c   status, metrics
 *   cluster_lead.c     leadership transfers: the operator's and
 *                      leader_preference's
 *   succession.c       a gone leader: shorter elections, its successor
 * Proposals are not here: they sit behind propose.h, and placement's
 * decisions behind placement.h; neither includes this file.
 */
#ifndef OL_CLUSTER_INT_H
#define OL_CLUSTER_INT_H

#include <raft.h>
#include <raft/uv.h>
#include <sqlite3.h>

#include "base/map.h"
#include "ackpace.h"
#include "base/sizes.h"
#include "cluster.h"
#include "fsm.h"
#include "propose.h"
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

/* The one raft membership change in flight (the leader makes them one at
 * a time, from the tick: cluster_members.c). */
struct membership_op {
    int active;
    int phase; /* 1 raft_add, 2 raft_assign, 3 raft_remove */
    uint64_t id;
    struct raft_change change;
};

/* Leadership transfers (cluster_lead.c).  One at a time: libraft holds
 * `req` from raft_transfer() until its callback. */
enum { OL_LEAD_OPERATOR = 1, OL_LEAD_PREFERENCE = 2 };
struct lead_state {
    struct ol__lead_pref pref; /* [cluster] leader_preference */
    int parsed;                /* pref read from the config */
    struct raft_transfer req;
    int busy;                  /* req is libraft's */
    int reason;                /* OL_LEAD_* of the transfer in flight */
    uint64_t target, started_ms;
    ol__cluster_transfer_cb cb; /* the operator's, until answered */
    void *cb_data;
    /* leader_preference: the better-ranked voter being watched, since
     * when it has been healthy without a break, in which term */
    uint64_t cand, cand_since_ms, cand_term;
    uint64_t next_check_ms;
    uint64_t backoff_until_ms; /* after a transfer that failed */
    uint64_t started[3], failed[3]; /* by OL_LEAD_* */
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
    unsigned drift_pct;

    struct ol__transport *tr;
    struct raft_io io;
    struct ol__fsm fsm;
    struct raft raft;
    struct raft_tracer tracer;
    int raft_inited;
    struct ol__rfix rfix; /* corrections to libraft's replies */
    struct ol__ackpace pace; /* the leader's append completions */
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

    /* lease (cluster_lease.c: the rule and why it holds) */
    uint64_t lease_until_ms;     /* agents here may step until then */
    uint64_t lead_lease_until_ms; /* leader: a majority hears us until */
    uint64_t leader_time;        /* the leader's clock in its last answer,
                                  * echoed in our next ping */
    uint64_t clock_mono, clock_boot; /* suspend detection */
    uint64_t resumed_ms; /* fresh clock when a suspend was last seen */
    /* libraft's clock (cluster_stall.c): the loop thread's CPU time at
     * the last check, and the busy time taken out of the clock so far. */
    uint64_t rc_cpu_us;
    uint64_t rc_discount_us;
    uint64_t rc_last_ms;
    uint64_t last_tick_ms;       /* fresh clock at the last tick */
    uint64_t last_tick_ran_us;   /* the loop thread's time on a CPU or
                                  * waiting for one, then */
    int lease_reported;
    /* Does the lease outlast a heartbeat and a round trip?  (lease.h) */
    uint64_t rtt_leader_us;   /* smoothed, to the leader; 0: unknown */
    uint64_t margin_checked_ms;
    uint64_t margin_warned_ms;
    uint64_t pong_commit;  /* the leader's commit index one answer ago */

    struct ol__proposer *prop; /* proposals (propose.h) */

    /* leader state */
    struct peer_state *peers;
    size_t n_peers;
    struct placing **placing; /* each malloc'd; placing_by keys them */
    size_t n_placing, placing_cap;
    struct ol__map placing_by; /* agent name -> struct placing * */
    uint64_t pl_gen;     /* changes applied that placement depends on */
    uint64_t pl_key;     /* the last pass's inputs (cluster_place.c) */
    uint64_t pl_full_ms; /* when a pass last ran */
    int pl_idle;         /* and it found nothing to do */
    struct ol__steprate *rates; /* agents' step rates (steprate.h) */
    uint64_t last_rebalance_ms;
    struct membership_op member;
    uint64_t roster_checked_ms;
    struct lead_state lead;

    uv_idle_t kick;
    uv_timer_t tick;
    uv_check_t check;
    uv_idle_t drain; /* committed entries left for later turns (fsm.h) */
    uint64_t last_ping_ms;
    uint64_t pinged_leader;      /* the leader the last ping went to */
    uint64_t beacon_ms;          /* the last beacon (ol__cl_beacon) */
    uint64_t fast_term;          /* election timeout shortened in this
                                  * term (ol__cl_peer_refused); 0: not */

    int closing;
    void (*close_cb)(void *data);
    void *close_data;
    int handles;

    struct {
        uint64_t placements;
        uint64_t leader_changes;  /* a new leader was learned */
        uint64_t lease_losses;
        uint64_t suspends;        /* the machine was seen suspended */
        uint64_t stalls;          /* leader relearned liveness after one */
        uint64_t busy_gaps;       /* leader's loop busy, not stalled */
        uint64_t refused_fwd;     /* forwarded commands not authorised */
        uint64_t beacons;         /* empty entries proposed to carry the
                                   * commit index (ol__cl_beacon) */
        uint64_t fast_elections;  /* the leader's address refused us */
        uint64_t stood;           /* ... and this node, its successor,
                                   * stood at once (raft.c) */
        uint64_t placed[5];       /* by enum ol__pl_reason */
        struct ol__phist batch_sizes; /* checkpoints per applied entry */
    } n;
};

/* raft.c */
uint64_t ol__cl_now(struct cluster *c);
/* Hand finished entry bytes to raft (leader only); the proposer's submit
 * callback (propose.h).  Returns 0, OL_ENOTLEADER, OL_ENOMEM or OL_EIO. */
int ol__cl_raft_submit(void *data, const void *p, size_t len);
int ol__cl_raft_setup(struct cluster *c, char *errmsg);
int ol__cl_cluster_id_prepare(struct cluster *c, int has_state,
                              char *errmsg);
void ol__cl_check_cb(uv_check_t *h);
/* succession.c */
/* A dial to `peer` was refused (the transport's refused_cb). */
void ol__cl_peer_refused(void *data, uint64_t peer);
/* Every check: back to the configured election timeout once a leader of a
 * later term is known, or this node leads. */
void ol__cl_election_restore(struct cluster *c, int state, uint64_t lid);

/* raft.c, again */
void ol__cl_fsm_effects(void *data, struct ol__effects *fx, uint64_t term);
void ol__cl_fsm_fatal(void *data, const char *msg);
void ol__cl_transport_hooks(struct cluster *c,
                            struct ol__transport_config *tc);

/* cluster.c */
void ol__cl_kick(struct cluster *c);
void ol__cl_role_changed(struct cluster *c, int old_role);
void ol__cl_leader_ready(struct cluster *c);
void ol__cl_tick(struct cluster *c);
void ol__cl_propose_noop(struct cluster *c);
void ol__cl_beacon(struct cluster *c);

/* cluster_lease.c */
uint64_t ol__cl_fresh_ms(void);
struct peer_state *ol__cl_peer(struct cluster *c, uint64_t id, int create);
int ol__cl_voter(struct cluster *c, uint64_t id);
/* The feature level every voter runs, as far as this node knows. */
uint32_t ol__cl_level(struct cluster *c);
void ol__cl_on_ping(struct cluster *c, uint64_t from, const uint64_t *v);
void ol__cl_on_pong(struct cluster *c, uint64_t from, const uint64_t *v);
void ol__cl_ping_leader(struct cluster *c, uint64_t now, uint64_t fresh);
void ol__cl_leader_lease(struct cluster *c, uint64_t now);
int ol__cl_notice_suspend(struct cluster *c, uint64_t now);
void ol__cl_report_lease(struct cluster *c, int ok);
/* The lease left after two heartbeats and the round trip to the leader,
 * in ms (negative: leases lapse between answers); INT64_MIN: unknown. */
int64_t ol__cl_lease_margin(const struct cluster *c);
void ol__cl_check_margin(struct cluster *c, uint64_t now);
void ol__cl_relearn_liveness(struct cluster *c, uint64_t now,
                             const char *why);

/* cluster_stall.c: the leader's loop away for long, stalled or busy */
/* The calling thread's time on a CPU or waiting in the run queue, in us
 * since it started. */
uint64_t ol__cl_thread_ran_us(void);
/* The clock libraft runs on (raft_io's time): the monotonic clock in ms,
 * less what the loop's own long turns kept it busy on a CPU. */
uint64_t ol__cl_raft_time(struct cluster *c);
/* A loop turn ended (the check phase): what it spent on a CPU past the
 * allowance leaves libraft's clock for good. */
void ol__cl_raft_time_mark(struct cluster *c);
/* Whether a gap of gap_ms in which the loop's thread ran (or was ready
 * to) for ran_us was the loop busy (1) rather than a stall (0). */
int ol__cl_gap_busy(uint64_t gap_ms, uint64_t ran_us);
/* A node's last ping time `last_ms` after a busy gap of gap_ms, at `now`. */
uint64_t ol__cl_gap_discount(uint64_t last_ms, uint64_t now,
                             uint64_t gap_ms, uint64_t failover_ms);
/* At each tick: the gap since the last, handled as cluster_stall.c says. */
void ol__cl_check_gap(struct cluster *c, uint64_t now, uint64_t fresh);

/* cluster_msg.c */
void ol__cl_recv(void *data, uint64_t from, const void *msg, size_t len);
void ol__cl_dispatch(struct cluster *c, struct ol__effects *fx);
int ol__cl_forward(void *data, const void *entry, size_t len);

/* cluster_members.c */
void ol__cl_roster_sync(struct cluster *c);
void ol__cl_register_roster(struct cluster *c, uint64_t now);
void ol__cl_reconcile_members(struct cluster *c);

/* cluster_place.c */
void ol__cl_place(struct cluster *c, uint64_t now);
/* Whether applied effect `e` may change what a placement pass decides
 * (cluster_place.c): counted in pl_gen, which lets an unchanged pass be
 * skipped. */
int ol__cl_place_wanted(struct cluster *c, const struct ol__effect *e);
/* Forget every placement in flight (leadership lost);
 * with `all`, also free what holds them (the cluster is going). */
void ol__cl_placing_clear(struct cluster *c, int all);
/* Forget the agents' step rates (after a stall: what came before it says
 * little of what comes next). */
void ol__cl_rates_forget(struct cluster *c);
/* Leader: count the committed checkpoints in `fx` into each agent's step
 * rate (steprate.h); a no-op on other nodes. */
void ol__cl_note_steps(struct cluster *c, const struct ol__effects *fx);

/* cluster_lead.c */
struct ol__pk_map;
/* Leader, every tick: hand leadership to a better-ranked voter that has
 * been healthy for the hold-down period. */
void ol__cl_lead_tick(struct cluster *c, uint64_t now);
/* The cluster closes: answer an operator's transfer still waiting. */
void ol__cl_lead_close(struct cluster *c);
/* The voter that stands first once leader `gone` is known to be gone:
 * the best ranked by leader_preference (a witness last), then the lowest
 * id.  Every survivor computes the same from the same configuration, so
 * one stands and the others vote for it.  0: no voter but `gone`. */
uint64_t ol__cl_successor(struct cluster *c, uint64_t gone);
/* cluster.status's "leadership" map (after its key). */
void ol__cl_lead_status(struct cluster *c, struct ol__pk_map *parent);
void ol__cl_lead_metrics(struct cluster *c, struct ol__cluster_metrics *out);

#endif
