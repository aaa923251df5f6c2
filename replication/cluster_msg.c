/*
 * The cluster's message channel (besides raft's own): pings and answers
 * (cluster_lease.c), commands a follower forwards to the leader, the
 * leader's notices to owners that their checkpoints committed, and runtime
 * messages (MSG_APP).  Also what the leader and every node do with the
 * effects the state machine reports.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"
#include "base/pack.h"
#include "cluster_int.h"

/* Send [type, bytes] to node `to`. */
static int send_bin(struct cluster *c, uint64_t to, uint32_t type,
                    const void *p, size_t len)
{
    struct ol__buf b;
    msgpack_packer pk;
    int rv;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, type);
    msgpack_pack_bin_with_body(&pk, p, len);
    rv = b.base ? ol__transport_send(c->tr, to, b.base, b.len) : OL_ENOMEM;
    ol__buf_close(&b);
    return rv;
}

/* A follower's entry goes to the leader (the proposer's forward). */
int ol__cl_forward(void *data, const void *entry, size_t len)
{
    struct cluster *c = data;

    return send_bin(c, c->leader_id, MSG_FORWARD, entry, len);
}

int ol__cluster_send_app(struct ol__replica *r, uint64_t to, const void *p,
                         size_t len)
{
    struct cluster *c = (struct cluster *)r;

    if (c->closing || c->tr == NULL)
        return OL_ESHUTDOWN;
    if (len > UINT32_MAX)
        return OL_ETOOBIG;
    return send_bin(c, to, MSG_APP, p, len);
}

/*
 * A follower learns that an entry committed only with the leader's next
 * AppendEntries, up to a heartbeat later, and its agents wait that long
 * for every step.  The leader, which applies first, tells each owner which
 * of its checkpoints committed; a committed entry is durable on a majority,
 * so the owner may go on at once.  Its own apply comes later and finds the
 * agent already past that seq.
 */
static void notify_owners(struct cluster *c, const struct ol__effects *fx)
{
    const struct ol__sm_node *nodes;
    size_t nn = ol__sm_nodes(c->sm, &nodes);

    for (size_t k = 0; k < nn; k++) {
        uint64_t owner = nodes[k].id;
        struct ol__buf b;
        msgpack_packer pk;
        uint32_t n = 0;

        if (owner == c->cfg.self_id || nodes[k].removed)
            continue;
        for (const struct ol__effect *e = fx->head; e; e = e->next) {
            const struct ol__sm_agent *a;

            if (e->type != OL_FX_CKPT || e->u.ckpt.dup)
                continue;
            a = ol__sm_agent(c->sm, e->u.ckpt.agent);
            if (a && a->owner == owner)
                n++;
        }
        if (n == 0)
            continue;
        ol__buf_init(&b);
        msgpack_packer_init(&pk, &b, ol__buf_write);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, MSG_APPLIED);
        msgpack_pack_array(&pk, n);
        for (const struct ol__effect *e = fx->head; e; e = e->next) {
            const struct ol__sm_agent *a;

            if (e->type != OL_FX_CKPT || e->u.ckpt.dup)
                continue;
            a = ol__sm_agent(c->sm, e->u.ckpt.agent);
            if (a == NULL || a->owner != owner)
                continue;
            msgpack_pack_array(&pk, 4);
            ol__pk_str(&pk, e->u.ckpt.agent);
            msgpack_pack_uint64(&pk, e->u.ckpt.epoch);
            msgpack_pack_uint64(&pk, e->u.ckpt.seq);
            msgpack_pack_int(&pk, e->status);
        }
        if (b.base)
            (void)ol__transport_send(c->tr, owner, b.base, b.len);
        ol__buf_close(&b);
    }
}

static void on_applied(struct cluster *c, uint64_t from, struct ol__mpr *r)
{
    struct ol__effects fx;
    uint32_t n, m;

    if (from != c->leader_id || c->role == RAFT_LEADER ||
        ol__mpr_array(r, &n) != 0)
        return;
    ol__effects_init(&fx);
    for (uint32_t i = 0; i < n; i++) {
        struct ol__effect *e = calloc(1, sizeof *e);
        int64_t status;

        if (e == NULL)
            break;
        e->type = OL_FX_CKPT;
        if (ol__mpr_array(r, &m) || m != 4 ||
            ol__mpr_strcpy(r, e->u.ckpt.agent, sizeof e->u.ckpt.agent) ||
            ol__mpr_uint(r, &e->u.ckpt.epoch) ||
            ol__mpr_uint(r, &e->u.ckpt.seq) || ol__mpr_int(r, &status) ||
            status > 0 || status < -1000) {
            free(e);
            ol_log_rl(OL_LOG_WARN, "applied notice from node %" PRIu64
                                   " is malformed", from);
            break;
        }
        e->status = (int)status;
        if (status != 0)
            snprintf(e->errmsg, sizeof e->errmsg, "refused by the leader: %s",
                     ol_strerror((int)status));
        if (fx.tail)
            fx.tail->next = e;
        else
            fx.head = e;
        fx.tail = e;
        fx.n++;
    }
    ol__proposer_on_effects(c->prop, &fx);
    if (!c->closing && c->hooks.effects)
        c->hooks.effects(c->hooks.data, &fx);
    ol__effects_free(&fx);
}

/* May node `from` ask for command `cmd`?  Members forward what operators
 * ask of them; decisions that only a leader makes (placements, removals)
 * are never forwarded, and a node speaks only for itself and its own
 * agents. */
static int forward_allowed(struct cluster *c, uint64_t from,
                           const struct ol__cmd_info *ci,
                           const struct ol__cmd *cmd)
{
    const struct ol__sm_agent *a;

    switch (ci->auth) {
    case OL_AUTH_ANY:
        return 1;
    case OL_AUTH_SELF:
        return cmd->node_id == from;
    case OL_AUTH_OWNER:
        a = ol__sm_agent(c->sm, cmd->name);
        return a != NULL && a->owner == from;
    default:
        return 0;
    }
}

static void on_forward(struct cluster *c, uint64_t from, struct ol__mpr *r)
{
    struct ol__entry e;
    const void *p;
    uint32_t len;
    char err[OL_ERRMSG_SIZE];

    if (ol__mpr_bin(r, &p, &len) != 0)
        return;
    if (c->role != RAFT_LEADER)
        return; /* the sender retries with whoever leads */
    if (ol__entry_decode(p, len, &e, err) != 0) {
        ol_log_rl(OL_LOG_WARN, "forward from node %" PRIu64 ": %s", from,
                  err);
        return;
    }
    /* Forwarded commands wait for the next entry; past the cap the sender
     * retries later rather than making an entry too big to apply. */
    if (ol__proposer_n_forwarded(c->prop) + e.n > OL_ENTRY_MAX_CMDS / 2) {
        ol_log_rl(OL_LOG_WARN, "forward from node %" PRIu64 " deferred: "
                               "%u commands already waiting",
                  from, ol__proposer_n_forwarded(c->prop));
    } else {
        uint32_t level = ol__cl_level(c);

        for (uint32_t i = 0; i < e.n; i++) {
            const struct ol__cmd_info *ci = ol__cmd_info(e.cmds[i].type);

            /* Not every voter could apply it yet: the sender keeps it and
             * tries again. */
            if (ci == NULL || ci->level > level)
                continue;
            if (!forward_allowed(c, from, ci, &e.cmds[i])) {
                c->n.refused_fwd++;
                ol_log_rl(OL_LOG_WARN,
                          "forward from node %" PRIu64 ": a %s command is "
                          "not that node's to propose; refused",
                          from, ci->name);
                continue;
            }
            (void)ol__proposer_add_forwarded(
                c->prop, &e.cmds[i].raw,
                e.cmds[i].type == OL_CMD_CKPTS ? e.cmds[i].n_bodies : 1);
        }
    }
    ol__entry_free(&e);
    ol__cl_kick(c);
}

void ol__cl_recv(void *data, uint64_t from, const void *msg, size_t len)
{
    struct cluster *c = data;
    struct ol__mpr r;
    uint32_t n;
    uint64_t type, v[7];

    if (c->closing)
        return;
    ol__mpr_init(&r, msg, len);
    if (ol__mpr_array(&r, &n) || n < 2 || ol__mpr_uint(&r, &type)) {
        ol_log_rl(OL_LOG_WARN, "message from node %" PRIu64 " is malformed",
                  from);
        return;
    }
    if (type == MSG_FORWARD && n == 2) {
        on_forward(c, from, &r);
        return;
    }
    if (type == MSG_APPLIED && n == 2) {
        on_applied(c, from, &r);
        return;
    }
    if (type == MSG_APP && n == 2) {
        const void *p;
        uint32_t plen;

        if (ol__mpr_bin(&r, &p, &plen) == 0 && c->hooks.app)
            c->hooks.app(c->hooks.data, from, p, plen);
        return;
    }
    if ((type == MSG_PING && (n < 5 || n > 7)) ||
        (type == MSG_PONG && (n < 5 || n > 8)) ||
        (type != MSG_PING && type != MSG_PONG))
        return;
    /* Fields after the first four are newer: absent, they take the values
     * an older node meant (level 1, no echo, a granting answer). */
    v[4] = 1;
    v[5] = 0;
    v[6] = 1;
    for (uint32_t i = 0; i < n - 1; i++)
        if (ol__mpr_uint(&r, &v[i]) != 0)
            return;
    if (v[4] == 0 || v[4] > UINT32_MAX)
        return;
    if (type == MSG_PING)
        ol__cl_on_ping(c, from, v);
    else
        ol__cl_on_pong(c, from, v);
}

/* A snapshot install found this node's row for an agent differs from the
 * cluster's: the whole cluster quarantines the agent, so that an operator
 * looks at the evidence before it runs again. */
static void quarantine_diverged(struct cluster *c, const struct ol__effect *e)
{
    const struct ol__sm_agent *a = ol__sm_agent(c->sm, e->u.ckpt.agent);
    struct ol__entry_w w;

    if (a == NULL || (a->status != OL_AGENT_RUNNING &&
                      a->status != OL_AGENT_STOPPING))
        return;
    ol__entry_w_init(&w);
    if (ol__entry_add_quarantine(&w, ol__random_id(), a->name, a->epoch,
                                 e->errmsg) == 0)
        (void)ol__proposer_cmds(c->prop, &w, 0);
    ol__entry_w_close(&w);
}

void ol__cl_dispatch(struct cluster *c, struct ol__effects *fx)
{
    uint64_t ckpts = 0;
    int moved = 0;

    for (const struct ol__effect *e = fx->head; e; e = e->next) {
        ckpts += e->type == OL_FX_CKPT;
        c->pl_gen += (uint64_t)ol__cl_place_wanted(c, e);
        moved |= e->type == OL_FX_AGENT && e->u.agent.owner != 0 &&
                 e->u.agent.owner != c->cfg.self_id;
    }
    /* An agent's new owner learns of it when it applies the entry. */
    if (moved && c->role == RAFT_LEADER)
        ol__cl_beacon(c);
    if (ckpts)
        ol__phist_add(&c->n.batch_sizes, ol__batch_bounds, ol__batch_nbounds,
                      ckpts);
    if (c->role == RAFT_LEADER)
        notify_owners(c, fx);
    ol__cl_note_steps(c, fx);
    ol__proposer_on_effects(c->prop, fx);
    for (const struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_DIVERGED)
            quarantine_diverged(c, e);
    for (const struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_NODE) {
            ol__cl_roster_sync(c);
            break;
        }
    if (!c->closing && c->hooks.effects)
        c->hooks.effects(c->hooks.data, fx);
}
