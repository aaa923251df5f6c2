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
    if (me == NULL || strcmp(me->address, c->cfg.listen) != 0 ||
        strcmp(me->labels, c->cfg.labels) != 0 || me->removed)
        (void)ol__entry_add_node(&w, ol__random_id(), c->cfg.self_id,
                                 c->cfg.listen, c->key->pk, c->cfg.labels);
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
        /* Added as a spare; promote once it has caught up. */
        m->phase = 2;
        m->change.data = c;
        rv = raft_assign(&c->raft, &m->change, m->id, RAFT_VOTER, change_cb);
        if (rv == 0)
            return;
        snprintf(msg, sizeof msg, "raft_assign: %s", raft_strerror(rv));
        status = rv;
        goto done;
    }
    snprintf(msg, sizeof msg, "node %" PRIu64 " %s", m->id,
             m->phase == 3 ? "removed" : "is a voter");
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
                   !ol__cl_voter(c, nd->id)) {
            m->active = 1;
            m->phase = 2;
            rv = raft_assign(&c->raft, &m->change, nd->id, RAFT_VOTER,
                             change_cb);
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
