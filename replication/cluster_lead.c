/*
 * Steering where the raft leader sits.  Two things move leadership on
 * purpose, both through libraft's raft_transfer() (the target is brought
 * up to date, then sent TimeoutNow and elects itself at once):
 *
 *  - an operator, with `outlast cluster transfer [ID]`
 *    (ol__cluster_transfer, answered when the transfer ends);
 *  - [cluster] leader_preference, an ordered list of label matches.  The
 *    leader checks every heartbeat whether a voter ranks better than
 *    itself (ol__lead_pref_rank).  Once the best such voter has been
 *    healthy without a break for the hold-down period, two election
 *    timeouts, the leader hands leadership to it.  Healthy: it pinged this
 *    leader within three heartbeats and has applied to within
 *    OL_LEAD_LAG_MAX entries of the commit index.  A transfer that fails
 *    is not tried again for four hold-downs.
 *
 * Each leader acts on its own node's leader_preference.  Every node should
 * have the same one: where they differ, leadership can move from node to
 * node, at most once per hold-down each time, as each new leader prefers
 * another.
 *
 * While a transfer is in flight libraft refuses new entries (raft_apply
 * answers RAFT_NOTLEADER): proposals wait and are sent again to whoever
 * leads next, as after an election.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "cluster_int.h"
#include "placement.h"

/* How far behind the commit index a voter may be and still be preferred:
 * about a second's entries under heavy load.  libraft brings the target
 * fully up to date before it hands over anyway. */
#define OL_LEAD_LAG_MAX 1024

static const char *const reasons[] = {"", "operator", "preference"};

/* ---- the preference and ranking ---- */

static int label_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

/* Is `e` (len bytes) "key=value", both of label characters? */
static int entry_valid(const char *e, size_t len)
{
    const char *eq = memchr(e, '=', len);

    if (eq == NULL || eq == e || eq == e + len - 1)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (e + i != eq && !label_char(e[i]))
            return 0;
    return 1;
}

int ol__lead_pref_parse(const char *s, struct ol__lead_pref *out,
                        char *errmsg)
{
    size_t len = strlen(s), pos = 0, w = 0;

    memset(out, 0, sizeof *out);
    if (len > OL_LABELS_MAX) {
        ol__errf(errmsg, "is %zu bytes long; at most %d", len,
                 OL_LABELS_MAX);
        return OL_EINVAL;
    }
    while (s[strspn(s, " \t")] != '\0' && pos <= len) {
        size_t end = pos + strcspn(s + pos, ","), a = pos, b = end;

        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (out->n == OL_LEAD_PREF_MAX) {
            ol__errf(errmsg, "has more than %d entries", OL_LEAD_PREF_MAX);
            return OL_EINVAL;
        }
        if (!entry_valid(s + a, b - a)) {
            ol__errf(errmsg, "entry %u '%.*s' is not key=value (letters, "
                             "digits, _ . -)",
                     out->n + 1, (int)(b - a), s + a);
            return OL_EINVAL;
        }
        out->at[out->n++] = (uint16_t)w;
        memcpy(out->text + w, s + a, b - a);
        w += b - a + 1; /* and the NUL memset left */
        pos = end + 1;
    }
    return 0;
}

/* Do `labels` ("k=v,k=v") hold the pair `kv` exactly? */
static int has_label(const char *labels, const char *kv)
{
    size_t n = strlen(kv);

    while (*labels) {
        size_t len = strcspn(labels, ","), a = 0, b = len;

        while (a < b && labels[a] == ' ')
            a++;
        while (b > a && labels[b - 1] == ' ')
            b--;
        if (b - a == n && memcmp(labels + a, kv, n) == 0)
            return 1;
        labels += len + (labels[len] == ',');
    }
    return 0;
}

unsigned ol__lead_pref_rank(const struct ol__lead_pref *p,
                            const char *labels)
{
    for (unsigned i = 0; i < p->n; i++)
        if (has_label(labels ? labels : "", p->text + p->at[i]))
            return i;
    return p->n;
}

/* ---- what the leader knows of the nodes ---- */

static const struct ol__lead_pref *pref(struct cluster *c)
{
    char err[OL_ERRMSG_SIZE];

    if (!c->lead.parsed) {
        c->lead.parsed = 1;
        if (ol__lead_pref_parse(c->cfg.leader_preference, &c->lead.pref,
                                err) != 0)
            ol_log(OL_LOG_ERROR, "leader_preference '%s' %s: ignored",
                   c->cfg.leader_preference, err);
    }
    return &c->lead.pref;
}

static const char *labels_of(struct cluster *c, uint64_t id)
{
    const struct ol__sm_node *nd = ol__sm_node(c->sm, id);

    if (nd && nd->labels[0])
        return nd->labels;
    if (id == c->cfg.self_id)
        return c->cfg.labels;
    for (size_t i = 0; i < c->cfg.n_peers; i++)
        if (c->cfg.peers[i].id == id)
            return c->cfg.peer_labels[i];
    return "";
}

uint64_t ol__cl_successor(struct cluster *c, uint64_t gone)
{
    const struct ol__lead_pref *p = pref(c);
    uint64_t best = 0;
    unsigned best_rank = 0;

    for (unsigned i = 0; i < c->raft.configuration.n; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        const char *labels = labels_of(c, s->id);
        unsigned rank;

        if (s->role != RAFT_VOTER || s->id == gone)
            continue;
        /* A witness leads only when no other voter is there to. */
        rank = ol__lead_pref_rank(p, labels) +
               (ol__label_role(labels) == OL_ROLE_WITNESS ? 1000 : 0);
        if (best == 0 || rank < best_rank ||
            (rank == best_rank && s->id < best)) {
            best = s->id;
            best_rank = rank;
        }
    }
    return best;
}

static const struct raft_server *server_of(struct cluster *c, uint64_t id)
{
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        if (c->raft.configuration.servers[i].id == id)
            return &c->raft.configuration.servers[i];
    return NULL;
}

static const char *address_of(struct cluster *c, uint64_t id)
{
    const struct ol__sm_node *nd = ol__sm_node(c->sm, id);
    const struct raft_server *s = server_of(c, id);

    if (nd && nd->address[0])
        return nd->address;
    return s ? s->address : "";
}

/* Heard from lately, and applied close to the commit index. */
static int healthy(struct cluster *c, uint64_t id, uint64_t now)
{
    struct peer_state *ps = ol__cl_peer(c, id, 0);

    return ps && ps->seen && now - ps->last_ms <= 3ull * c->cfg.heartbeat_ms &&
           ps->applied + OL_LEAD_LAG_MAX >= c->raft.commit_index;
}

/* Between two healthy voters of one rank: keep watching the one being
 * watched, else take the more up to date. */
static int wins_tie(struct cluster *c, uint64_t id, uint64_t applied,
                    uint64_t pick, uint64_t pick_applied)
{
    if (pick == c->lead.cand)
        return 0;
    return id == c->lead.cand || applied > pick_applied;
}

/* The healthy voter that ranks best, if it ranks better than this node;
 * 0 if none does. */
static uint64_t better_voter(struct cluster *c, uint64_t now)
{
    const struct ol__lead_pref *p = pref(c);
    unsigned mine = ol__lead_pref_rank(p, labels_of(c, c->cfg.self_id));
    unsigned best = mine;
    uint64_t pick = 0, pick_applied = 0;

    for (unsigned i = 0; i < c->raft.configuration.n; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        unsigned rank = ol__lead_pref_rank(p, labels_of(c, s->id));
        struct peer_state *ps = ol__cl_peer(c, s->id, 0);

        if (s->id == c->cfg.self_id || s->role != RAFT_VOTER ||
            rank >= mine || rank > best || !healthy(c, s->id, now))
            continue;
        if (pick == 0 || rank < best ||
            wins_tie(c, s->id, ps->applied, pick, pick_applied)) {
            best = rank;
            pick = s->id;
            pick_applied = ps->applied;
        }
    }
    return pick;
}

/* Does the leader rank best among the voters? */
static int leader_preferred(struct cluster *c, uint64_t leader)
{
    const struct ol__lead_pref *p = pref(c);
    unsigned lr = ol__lead_pref_rank(p, labels_of(c, leader));

    for (unsigned i = 0; i < c->raft.configuration.n; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];

        if (s->role == RAFT_VOTER &&
            ol__lead_pref_rank(p, labels_of(c, s->id)) < lr)
            return 0;
    }
    return 1;
}

/* ---- transfers ---- */

static void fill_result(struct cluster *c,
                        struct ol__cluster_transfer_result *res)
{
    raft_id lid = 0;
    const char *laddr = NULL;

    raft_leader(&c->raft, &lid, &laddr);
    res->target = c->lead.target;
    res->leader = lid;
    snprintf(res->address, sizeof res->address, "%s",
             lid ? address_of(c, lid) : "");
    res->term = c->raft.current_term;
    res->elapsed_ms = ol__cl_now(c) - c->lead.started_ms;
}

/* Why the transfer in `res` did not make its target lead. */
static int transfer_failed(struct cluster *c,
                           struct ol__cluster_transfer_result *res)
{
    if (c->closing) {
        ol__errf(res->message, "the node is shutting down; node %" PRIu64
                               " may or may not lead",
                 res->target);
        return OL_ESHUTDOWN;
    }
    if (res->leader == c->cfg.self_id)
        ol__errf(res->message,
                 "node %" PRIu64 " did not take over within the election "
                 "timeout (%u ms); this node (%" PRIu64 ") still leads",
                 res->target, c->cfg.election_ms, c->cfg.self_id);
    else if (res->leader == 0)
        ol__errf(res->message,
                 "node %" PRIu64 " did not take over within the election "
                 "timeout (%u ms) and no leader is known yet; see `outlast "
                 "cluster status`",
                 res->target, c->cfg.election_ms);
    else
        ol__errf(res->message,
                 "node %" PRIu64 " leads now (%s), not node %" PRIu64,
                 res->leader, res->address, res->target);
    return OL_ETIMEOUT;
}

/* libraft: the target leads, the election timeout passed, or raft is
 * closing. */
static void transfer_cb(struct raft_transfer *req)
{
    struct cluster *c = req->data;
    struct lead_state *l = &c->lead;
    struct ol__cluster_transfer_result res;
    ol__cluster_transfer_cb cb = l->cb;
    int status = 0;

    memset(&res, 0, sizeof res);
    l->busy = 0;
    l->cb = NULL;
    fill_result(c, &res);
    if (res.leader == res.target) {
        snprintf(res.message, sizeof res.message,
                 "node %" PRIu64 " (%s) leads now, term %" PRIu64
                 ", after %" PRIu64 " ms%s",
                 res.leader, res.address, res.term, res.elapsed_ms,
                 pref(c)->n && !leader_preferred(c, res.leader)
                     ? "; leader_preference ranks another voter higher: "
                       "leadership goes there once it has been healthy "
                       "for two election timeouts"
                     : "");
        ol_log(OL_LOG_INFO, "leadership transfer (%s): %s",
               reasons[l->reason], res.message);
    } else {
        status = transfer_failed(c, &res);
        l->failed[l->reason]++;
        if (l->reason == OL_LEAD_PREFERENCE)
            l->backoff_until_ms = ol__cl_now(c) +
                                  8ull * c->cfg.election_ms;
        ol_log(OL_LOG_WARN, "leadership transfer (%s) failed: %s",
               reasons[l->reason], res.message);
    }
    if (cb)
        cb(l->cb_data, status, &res);
}

/* Begin a transfer to `id` (0: libraft picks).  Returns 0 or an OL_E*
 * code with errmsg set. */
static int start(struct cluster *c, uint64_t id, int reason, char *errmsg)
{
    struct lead_state *l = &c->lead;
    int rv;

    memset(&l->req, 0, sizeof l->req);
    l->req.data = c;
    rv = raft_transfer(&c->raft, &l->req, id, transfer_cb);
    if (rv != 0) {
        /* Should libraft keep the request anyway, its callback comes. */
        l->busy = c->raft.transfer == &l->req;
        l->reason = reason;
        l->target = id;
        l->started_ms = ol__cl_now(c);
        if (rv == RAFT_NOTFOUND) {
            ol__errf(errmsg, "there is no other voter to hand leadership "
                             "to");
            return OL_ENOTFOUND;
        }
        ol__errf(errmsg, "raft_transfer: %s", raft_strerror(rv));
        return rv == RAFT_BADID ? OL_EINVAL : OL_EIO;
    }
    l->busy = 1;
    l->reason = reason;
    l->target = l->req.id;
    l->started_ms = ol__cl_now(c);
    l->started[reason]++;
    ol_log(OL_LOG_INFO, "leadership transfer (%s) to node %" PRIu64 " (%s) "
                        "begun, term %" PRIu64,
           reasons[reason], l->target, labels_of(c, l->target),
           (uint64_t)c->raft.current_term);
    return 0;
}

/* This node does not lead: say who does. */
static int not_leader(struct cluster *c, char *errmsg)
{
    raft_id lid = 0;
    const char *laddr = NULL;

    raft_leader(&c->raft, &lid, &laddr);
    if (lid == 0)
        ol__errf(errmsg, "this node is not the leader, and no leader is "
                         "known yet (an election is under way); try again "
                         "shortly");
    else
        ol__errf(errmsg, "this node is not the leader; the leader is node "
                         "%" PRIu64 " at %s: ask it",
                 (uint64_t)lid, address_of(c, lid));
    return OL_ENOTLEADER;
}

/* May leadership go to `id` (0: any voter) now? */
static int check_transfer(struct cluster *c, uint64_t id, char *errmsg)
{
    const struct raft_server *s = server_of(c, id);
    const struct ol__sm_node *nd = ol__sm_node(c->sm, id);
    struct peer_state *ps = ol__cl_peer(c, id, 0);
    uint64_t now = ol__cl_now(c);

    if (c->role != RAFT_LEADER)
        return not_leader(c, errmsg);
    if (!c->leader_ready) {
        ol__errf(errmsg, "this node was elected moments ago and its state "
                         "machine is not current yet; try again shortly");
        return OL_EBUSY;
    }
    if (c->lead.busy) {
        ol__errf(errmsg, "a leadership transfer (%s) to node %" PRIu64
                         " is already in progress, begun %" PRIu64
                         " ms ago",
                 reasons[c->lead.reason], c->lead.target,
                 now - c->lead.started_ms);
        return OL_EBUSY;
    }
    if (id == 0)
        return 0;
    if (id == c->cfg.self_id) {
        ol__errf(errmsg, "node %" PRIu64 " already leads", id);
        return OL_EINVAL;
    }
    if (s == NULL && (nd == NULL || nd->removed)) {
        ol__errf(errmsg, "there is no node %" PRIu64 " in the cluster", id);
        return OL_ENOTFOUND;
    }
    if (s == NULL || s->role != RAFT_VOTER) {
        ol__errf(errmsg, "node %" PRIu64 " is not a voter (%s), so it "
                         "cannot lead",
                 id, s == NULL ? "not yet in the raft configuration"
                               : "a spare or standby");
        return OL_EINVAL;
    }
    if (ps && ps->seen && now - ps->last_ms > c->cfg.failover_ms) {
        ol__errf(errmsg, "node %" PRIu64 " has not been heard from for %" PRIu64
                         " ms; it cannot take over",
                 id, now - ps->last_ms);
        return OL_ESTATE;
    }
    return 0;
}

int ol__cluster_transfer(struct ol__replica *r, uint64_t id,
                         ol__cluster_transfer_cb cb, void *data,
                         char *errmsg)
{
    struct cluster *c = (struct cluster *)r;
    int rv = check_transfer(c, id, errmsg);

    if (rv == 0)
        rv = start(c, id, OL_LEAD_OPERATOR, errmsg);
    if (rv != 0)
        return rv;
    c->lead.cb = cb;
    c->lead.cb_data = data;
    return 0;
}

void ol__cl_lead_tick(struct cluster *c, uint64_t now)
{
    struct lead_state *l = &c->lead;
    char err[OL_ERRMSG_SIZE];
    uint64_t best, hold = 2ull * c->cfg.election_ms;

    if (pref(c)->n == 0 || l->busy || now < l->next_check_ms)
        return;
    l->next_check_ms = now + c->cfg.heartbeat_ms;
    best = better_voter(c, now);
    if (best != l->cand || l->cand_term != c->raft.current_term) {
        /* A new one to watch, or the same seen anew this term. */
        l->cand = best;
        l->cand_since_ms = now;
        l->cand_term = c->raft.current_term;
        return;
    }
    if (best == 0 || now - l->cand_since_ms < hold ||
        now < l->backoff_until_ms || c->member.active)
        return;
    if (start(c, best, OL_LEAD_PREFERENCE, err) != 0) {
        l->backoff_until_ms = now + 4 * hold;
        ol_log_rl(OL_LOG_WARN, "leadership transfer to node %" PRIu64
                               " (leader_preference) not begun: %s",
                  best, err);
    }
}

void ol__cl_lead_close(struct cluster *c)
{
    struct ol__cluster_transfer_result res;
    ol__cluster_transfer_cb cb = c->lead.cb;

    if (cb == NULL)
        return;
    c->lead.cb = NULL;
    memset(&res, 0, sizeof res);
    fill_result(c, &res);
    ol__errf(res.message, "the node is shutting down; node %" PRIu64
                          " may or may not lead",
             res.target);
    cb(c->lead.cb_data, OL_ESHUTDOWN, &res);
}

/* ---- what status and metrics show ---- */

void ol__cl_lead_status(struct cluster *c, struct ol__pk_map *parent)
{
    struct lead_state *l = &c->lead;
    uint64_t leader = c->leader_id;
    struct ol__pk_map m, t;

    ol__pk_map_begin(&m, parent->pk, parent->buf);
    ol__pk_kv_uint(&m, "id", leader);
    ol__pk_kv_str(&m, "address", leader ? address_of(c, leader) : "");
    ol__pk_kv_str(&m, "labels", leader ? labels_of(c, leader) : "");
    ol__pk_kv_str(&m, "preference", c->cfg.leader_preference);
    ol__pk_key(&m, "preferred");
    if (pref(c)->n == 0 || leader == 0)
        msgpack_pack_nil(m.pk);
    else if (leader_preferred(c, leader))
        msgpack_pack_true(m.pk);
    else
        msgpack_pack_false(m.pk);
    ol__pk_key(&m, "transfer");
    if (!l->busy) {
        msgpack_pack_nil(m.pk);
    } else {
        ol__pk_map_begin(&t, m.pk, m.buf);
        ol__pk_kv_uint(&t, "target", l->target);
        ol__pk_kv_str(&t, "reason", reasons[l->reason]);
        ol__pk_kv_uint(&t, "elapsed_ms", ol__cl_now(c) - l->started_ms);
        (void)ol__pk_map_end(&t);
    }
    (void)ol__pk_map_end(&m);
}

void ol__cl_lead_metrics(struct cluster *c, struct ol__cluster_metrics *out)
{
    memcpy(out->transfers, c->lead.started, sizeof out->transfers);
    memcpy(out->transfers_failed, c->lead.failed,
           sizeof out->transfers_failed);
}
