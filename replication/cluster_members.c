/*
 * Membership.  The replicated roster (the nodes table) holds every
 * member's address and key; the transport admits exactly those nodes.  The
 * leader registers itself and the configured peers in it, and brings the
 * raft configuration in line with it one change at a time.  Operators add
 * and remove nodes through the roster: ol__cluster_add/_remove.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "cluster_int.h"
#include "placement.h"

/* The raft role the roster asks of node `id` (placement.h: a standby is
 * RAFT_STANDBY, a voter or witness RAFT_VOTER). */
static int wanted_raft_role(struct cluster *c, uint64_t id)
{
    const struct ol__sm_node *nd = ol__sm_node(c->sm, id);

    return nd && ol__label_role(nd->labels) == OL_ROLE_STANDBY
               ? RAFT_STANDBY
               : RAFT_VOTER;
}

/* Node `id`'s role in the raft configuration, or -1 when it is not in it. */
static int conf_role(struct cluster *c, uint64_t id)
{
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        if (c->raft.configuration.servers[i].id == id)
            return c->raft.configuration.servers[i].role;
    return -1;
}

static const char *raft_role_name(int role)
{
    return role == RAFT_VOTER     ? "voter"
           : role == RAFT_STANDBY ? "standby"
           : role == RAFT_SPARE   ? "spare"
                                  : "absent";
}

/* Say, once per change, when this node's configured role, the roster's
 * and raft's disagree: the roster's holds (promote/demote change it). */
static void check_own_role(struct cluster *c)
{
    static char said[160];
    const struct ol__sm_node *me = ol__sm_node(c->sm, c->cfg.self_id);
    int cfg_role = ol__label_role(c->cfg.labels), roster, raft;
    char msg[160];

    if (me == NULL || me->removed)
        return;
    roster = ol__label_role(me->labels);
    raft = conf_role(c, c->cfg.self_id);
    msg[0] = '\0';
    if (roster != cfg_role)
        snprintf(msg, sizeof msg, "configured role %s but the cluster's "
                 "roster has %s",
                 ol__role_name(cfg_role) ? ol__role_name(cfg_role) : "?",
                 ol__role_name(roster) ? ol__role_name(roster) : "?");
    else if (raft >= 0 && raft != RAFT_SPARE &&
             raft != wanted_raft_role(c, c->cfg.self_id))
        snprintf(msg, sizeof msg, "role %s but the raft configuration has "
                 "this node as a %s",
                 ol__role_name(roster) ? ol__role_name(roster) : "?",
                 raft_role_name(raft));
    if (msg[0] && strcmp(msg, said) != 0)
        ol_log(OL_LOG_WARN, "cluster: node %" PRIu64 " has %s; the roster "
                            "decides (outlast cluster promote/demote)",
               c->cfg.self_id, msg);
    snprintf(said, sizeof said, "%s", msg);
}

void ol__cl_roster_sync(struct cluster *c)
{
    struct ol__peer peers[64];
    const struct ol__sm_node *nodes;
    size_t n = 0, nn = ol__sm_nodes(c->sm, &nodes);

    for (size_t i = 0; i < nn && n < 64; i++) {
        if (nodes[i].removed || nodes[i].id == c->cfg.self_id)
            continue;
        peers[n].id = nodes[i].id;
        snprintf(peers[n].address, sizeof peers[n].address, "%s",
                 nodes[i].address);
        memcpy(peers[n].pk, nodes[i].pk, OL_PK_SIZE);
        n++;
    }
    /* Config peers the replicated roster does not know yet. */
    for (size_t i = 0; i < c->cfg.n_peers && n < 64; i++) {
        const struct ol__sm_node *known = ol__sm_node(c->sm,
                                                      c->cfg.peers[i].id);

        if (known)
            continue;
        peers[n++] = c->cfg.peers[i];
    }
    if (ol__transport_set_roster(c->tr, peers, n) != 0)
        ol_log(OL_LOG_ERROR, "transport: cannot update the roster");
    check_own_role(c);
}

/* Whether this node's roster entry says what its configuration says,
 * the role aside: once a node is in the roster its role is the roster's
 * (promote and demote change it there). */
static int self_current(struct cluster *c, const struct ol__sm_node *me)
{
    char a[OL_LABELS_MAX + 1], b[OL_LABELS_MAX + 1];

    if (me == NULL || me->removed || strcmp(me->address, c->cfg.listen))
        return 0;
    if (ol__labels_with_role(me->labels, OL_ROLE_VOTER, a, sizeof a) ||
        ol__labels_with_role(c->cfg.labels, OL_ROLE_VOTER, b, sizeof b))
        return strcmp(me->labels, c->cfg.labels) == 0;
    return strcmp(a, b) == 0;
}

/* Register this node and the configured peers in the replicated roster. */
void ol__cl_register_roster(struct cluster *c, uint64_t now)
{
    struct ol__entry_w w;
    const struct ol__sm_node *me = ol__sm_node(c->sm, c->cfg.self_id);

    if (now - c->roster_checked_ms < 1000)
        return;
    c->roster_checked_ms = now;
    ol__entry_w_init(&w);
    if (!self_current(c, me)) {
        char labels[OL_LABELS_MAX + 1];

        /* Known: keep the roster's role; new: the configured one. */
        if (me == NULL || me->removed ||
            ol__labels_with_role(c->cfg.labels,
                                 ol__label_role(me->labels) < 0
                                     ? OL_ROLE_VOTER
                                     : ol__label_role(me->labels),
                                 labels, sizeof labels) != 0)
            snprintf(labels, sizeof labels, "%s", c->cfg.labels);
        (void)ol__entry_add_node(&w, ol__random_id(), c->cfg.self_id,
                                 c->cfg.listen, c->key->pk, labels);
    }
    for (size_t i = 0; i < c->cfg.n_peers; i++) {
        const struct ol__peer *p = &c->cfg.peers[i];

        if (ol__sm_node(c->sm, p->id) == NULL)
            (void)ol__entry_add_node(&w, ol__random_id(), p->id, p->address,
                                     p->pk, c->cfg.peer_labels[i]);
    }
    if (w.n)
        (void)ol__proposer_cmds(c->prop, &w, 0);
    ol__entry_w_close(&w);
}

static void change_cb(struct raft_change *req, int status)
{
    struct cluster *c = req->data;
    struct membership_op *m = &c->member;
    char msg[160];
    int rv;

    if (!m->active)
        return;
    if (status != 0) {
        snprintf(msg, sizeof msg, "raft refused the change: %s",
                 raft_strerror(status));
        goto done;
    }
    if (m->phase == 1) {
        /* Added as a spare; promote once it has caught up (a standby
         * only as far as standby). */
        m->phase = 2;
        m->change.data = c;
        rv = raft_assign(&c->raft, &m->change, m->id,
                         wanted_raft_role(c, m->id), change_cb);
        if (rv == 0)
            return;
        snprintf(msg, sizeof msg, "raft_assign: %s", raft_strerror(rv));
        status = rv;
        goto done;
    }
    snprintf(msg, sizeof msg, "node %" PRIu64 " %s", m->id,
             m->phase == 3                                  ? "removed"
             : wanted_raft_role(c, m->id) == RAFT_STANDBY ? "is a standby"
                                                          : "is a voter");
    ol_log(OL_LOG_INFO, "membership: %s", msg);
done:
    m->active = 0;
    if (status != 0)
        ol_log_rl(OL_LOG_WARN, "membership change for node %" PRIu64 ": %s",
                  m->id, msg);
}

static int in_config(struct cluster *c, uint64_t id)
{
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        if (c->raft.configuration.servers[i].id == id)
            return 1;
    return 0;
}

/* Bring the raft configuration in line with the roster, one change at a
 * time: add roster nodes it lacks, promote spares, drop removed nodes. */
void ol__cl_reconcile_members(struct cluster *c)
{
    const struct ol__sm_node *nodes;
    size_t nn = ol__sm_nodes(c->sm, &nodes);
    struct membership_op *m = &c->member;
    int rv = 0;

    if (m->active || c->raft.leader_state.change != NULL)
        return;
    for (size_t i = 0; i < nn; i++) {
        const struct ol__sm_node *nd = &nodes[i];

        memset(m, 0, sizeof *m);
        m->id = nd->id;
        m->change.data = c;
        if (nd->removed && in_config(c, nd->id) &&
            nd->id != c->cfg.self_id) {
            m->active = 1;
            m->phase = 3;
            rv = raft_remove(&c->raft, &m->change, nd->id, change_cb);
        } else if (!nd->removed && !in_config(c, nd->id) &&
                   nd->address[0]) {
            m->active = 1;
            m->phase = 1;
            rv = raft_add(&c->raft, &m->change, nd->id, nd->address,
                          change_cb);
        } else if (!nd->removed && in_config(c, nd->id) &&
                   conf_role(c, nd->id) != wanted_raft_role(c, nd->id) &&
                   nd->id != c->cfg.self_id) {
            m->active = 1;
            m->phase = 2;
            rv = raft_assign(&c->raft, &m->change, nd->id,
                             wanted_raft_role(c, nd->id), change_cb);
        }
        if (m->active) {
            if (rv != 0) {
                ol_log_rl(OL_LOG_WARN, "membership change for node %" PRIu64
                                       ": %s",
                          nd->id, raft_strerror(rv));
                m->active = 0;
            }
            return;
        }
    }
}

/* May node `id` be added (or removed) now?  Requests go to a leader
 * whose state machine is current.  Returns 0 or the error, with a
 * message. */
static int check_request(struct cluster *c, uint64_t id, int adding,
                         char *errmsg)
{
    const struct ol__sm_node *nd = ol__sm_node(c->sm, id);

    if (c->role != RAFT_LEADER || !c->leader_ready) {
        ol__errf(errmsg, "this node is not the leader; ask node %" PRIu64,
                 c->leader_id);
        return OL_ENOTLEADER;
    }
    if (adding && c->member.active) {
        ol__errf(errmsg, "another membership change is in progress");
        return OL_EBUSY;
    }
    if (adding && nd && !nd->removed) {
        ol__errf(errmsg, "node %" PRIu64 " is already a member", id);
        return OL_EEXISTS;
    }
    if (!adding && id == c->cfg.self_id) {
        ol__errf(errmsg, "the leader cannot remove itself; remove it from "
                         "another node after a new leader is elected");
        return OL_EINVAL;
    }
    if (!adding && nd == NULL) {
        ol__errf(errmsg, "no node %" PRIu64 " in the roster", id);
        return OL_ENOTFOUND;
    }
    return 0;
}

/* Propose the roster change in `w` (closed here) that `rv` says was
 * written; on success tell `cb`, if any, what follows. */
static int propose_roster(struct cluster *c, struct ol__entry_w *w, int rv,
                          ol__cluster_done_cb cb, void *data,
                          const char *next, char *errmsg)
{
    if (rv == 0)
        rv = ol__proposer_cmds(c->prop, w, 0);
    ol__entry_w_close(w);
    if (rv != 0) {
        ol__errf(errmsg, "propose: %s", ol_strerror(rv));
        return rv;
    }
    if (cb)
        cb(data, 0, next);
    return 0;
}

int ol__cluster_add(struct ol__replica *r, uint64_t id, const char *address,
                    const uint8_t pk[OL_PK_SIZE], const char *labels,
                    ol__cluster_done_cb cb, void *data, char *errmsg)
{
    struct cluster *c = (struct cluster *)r;
    struct ol__entry_w w;
    int rv = check_request(c, id, 1, errmsg);

    if (rv != 0)
        return rv;
    /* The key goes into the replicated roster first: the transport admits
     * the new node once every member has applied it, and the tick adds it
     * to the raft configuration and promotes it to voter. */
    ol__entry_w_init(&w);
    rv = ol__entry_add_node(&w, ol__random_id(), id, address, pk,
                            labels ? labels : "");
    return propose_roster(c, &w, rv, cb, data,
                          "roster entry proposed; raft membership follows",
                          errmsg);
}

int ol__cluster_set_role(struct ol__replica *r, uint64_t id, int role,
                         ol__cluster_done_cb cb, void *data, char *errmsg)
{
    struct cluster *c = (struct cluster *)r;
    const struct ol__sm_node *nd;
    char labels[OL_LABELS_MAX + 1];
    struct ol__entry_w w;
    int rv;

    if (c->role != RAFT_LEADER || !c->leader_ready) {
        ol__errf(errmsg, "this node is not the leader; ask node %" PRIu64,
                 c->leader_id);
        return OL_ENOTLEADER;
    }
    nd = ol__sm_node(c->sm, id);
    if (nd == NULL || nd->removed) {
        ol__errf(errmsg, "no node %" PRIu64 " in the roster", id);
        return OL_ENOTFOUND;
    }
    if (id == c->cfg.self_id && role == OL_ROLE_STANDBY) {
        ol__errf(errmsg, "node %" PRIu64 " is the leader and cannot become "
                         "a standby; move leadership first",
                 id);
        return OL_EINVAL;
    }
    if (ol__label_role(nd->labels) == role) {
        ol__errf(errmsg, "node %" PRIu64 " is already a %s", id,
                 ol__role_name(role));
        return OL_EEXISTS;
    }
    if (ol__labels_with_role(nd->labels, role, labels, sizeof labels) != 0) {
        ol__errf(errmsg, "node %" PRIu64 "'s labels leave no room for "
                         "role=%s",
                 id, ol__role_name(role));
        return OL_EINVAL;
    }
    ol__entry_w_init(&w);
    rv = ol__entry_add_node(&w, ol__random_id(), id, nd->address, nd->pk,
                            labels);
    return propose_roster(c, &w, rv, cb, data,
                          role == OL_ROLE_VOTER
                              ? "promotion proposed; raft makes it a voter"
                              : "demotion proposed; its agents move off and "
                                "raft makes it a standby",
                          errmsg);
}

int ol__cluster_remove(struct ol__replica *r, uint64_t id,
                       ol__cluster_done_cb cb, void *data, char *errmsg)
{
    struct cluster *c = (struct cluster *)r;
    struct ol__entry_w w;
    int rv = check_request(c, id, 0, errmsg);

    if (rv == 0) {
        ol__entry_w_init(&w);
        rv = ol__entry_add_node_del(&w, ol__random_id(), id);
        rv = propose_roster(c, &w, rv, cb, data,
                            "removal proposed; its agents move once it is "
                            "gone",
                            errmsg);
    }
    return rv;
}
