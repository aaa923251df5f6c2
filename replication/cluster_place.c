/*
 * Driving placement on the leader: what it knows of each node's liveness
 * goes into ol__placement() (placement.h, pure logic), and the moves it
 * returns are proposed as PLACE or MOVE commands.  Moves in flight are
 * remembered so they are not decided twice, and so the node an agent
 * leaves gets no lease until it has applied the move (cluster_lease.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include <msgpack.h>
#include "cluster_int.h"
#include "placement.h"
#include "steprate.h"

/* Moves in flight at once ([cluster] moves_in_flight).  A failed node's
 * 30,000 agents decided in one pass commit together, and every node
 * applies them in one go, seconds of work queued at once behind which
 * the first agent waits as long as the last.  Paced, they land in steps,
 * and the next pass is taken once half of those in flight have landed (a
 * pass walks every agent: not on every tick). */
#define PLACE_INFLIGHT_DEFAULT 16384
/* A pass decides at most this many: its turn is not sliced. */
#define PLACE_BATCH 8192

static size_t inflight_max(const struct cluster *c)
{
    return c->cfg.moves_in_flight ? c->cfg.moves_in_flight
                                  : PLACE_INFLIGHT_DEFAULT;
}
#define PLACING_TIMEOUT_MS 3000
#define REBALANCE_EVERY_MS 2000
/* A pass whose inputs have not changed since the last one found nothing
 * is skipped (it would find nothing again: with 30,000 agents a pass is
 * a noticeable part of each tick); once a second one runs regardless. */
#define FULL_PASS_EVERY_MS 1000

static int skip_placing(void *data, const char *agent)
{
    struct cluster *c = data;

    return ol__map_get(&c->placing_by, agent) != NULL;
}

void ol__cl_placing_clear(struct cluster *c, int all)
{
    for (size_t i = 0; i < c->n_placing; i++)
        free(c->placing[i]);
    c->n_placing = 0;
    c->pl_idle = 0;
    ol__map_close(&c->placing_by);
    /* Step rates are the leader's: forgotten with its placements. */
    ol__cl_rates_forget(c);
    if (all) {
        free(c->placing);
        c->placing = NULL;
        c->placing_cap = 0;
    }
}

void ol__cl_rates_forget(struct cluster *c)
{
    ol__steprate_destroy(c->rates);
    c->rates = NULL;
}

void ol__cl_note_steps(struct cluster *c, const struct ol__effects *fx)
{
    uint64_t now;

    if (c->role != RAFT_LEADER)
        return;
    if (c->rates == NULL && (c->rates = ol__steprate_create()) == NULL)
        return;
    now = ol__cl_now(c);
    for (const struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_CKPT && !e->u.ckpt.dup && e->status == 0)
            ol__steprate_note(c->rates, e->u.ckpt.agent, now);
}

struct busy_src {
    const struct ol__steprate *rates;
    uint64_t now;
};

static int agent_busy(void *data, const struct ol__sm_agent *a)
{
    const struct busy_src *b = data;

    return ol__steprate_busy(b->rates, a->name, b->now, OL_PL_BUSY_CPS);
}

/* Each node's round trip to this leader (placement.h), from the
 * transport's pings: 0 for itself, OL_PL_RTT_UNKNOWN without a sample.
 * The lowest seen, not the average: it is the distance, which a busy
 * host's queueing does not change. */
static void fill_rtts(struct cluster *c, struct ol__pl_node *pl, size_t n)
{
    struct ol__transport_peer_stats ps[OL_TRANSPORT_PEERS_MAX];
    size_t np = c->tr ? ol__transport_peer_stats(c->tr, ps,
                                                  OL_TRANSPORT_PEERS_MAX)
                      : 0;

    for (size_t i = 0; i < n; i++) {
        pl[i].rtt_us = pl[i].id == c->cfg.self_id ? 0 : OL_PL_RTT_UNKNOWN;
        for (size_t k = 0; k < np; k++)
            if (ps[k].id == pl[i].id && ps[k].rtt_min_us)
                pl[i].rtt_us = ps[k].rtt_min_us < OL_PL_RTT_UNKNOWN
                                   ? (uint32_t)ps[k].rtt_min_us
                                   : OL_PL_RTT_UNKNOWN - 1;
    }
}

/* What the leader knows of node `id`'s liveness (enum ol__pl_health), and
 * the incarnation it last reported. */
static int health(struct cluster *c, uint64_t id, uint64_t now,
                  uint64_t *inc)
{
    struct peer_state *ps;

    if (id == c->cfg.self_id) {
        *inc = c->inc;
        return OL_PL_LIVE;
    }
    ps = ol__cl_peer(c, id, 0);
    if (ps == NULL)
        return now - c->leader_since_ms > c->cfg.failover_ms
                   ? OL_PL_DEAD
                   : OL_PL_UNKNOWN;
    if (now - ps->last_ms > c->cfg.failover_ms)
        return OL_PL_DEAD;
    if (!ps->seen)
        return OL_PL_UNKNOWN;
    *inc = ps->inc;
    return OL_PL_LIVE;
}

/* The hand-off wait of one move (placement.h): none off a node that has
 * been silent for the failover time, so a failover is never slowed. */
static uint32_t handoff_ms(struct cluster *c, const struct ol__pl_move *m,
                           uint64_t now)
{
    const struct ol__sm_agent *a = ol__sm_agent(c->sm, m->agent);
    uint64_t inc = 0;

    if (a == NULL || a->owner == 0)
        return 0;
    return ol__pl_handoff_ms(a->owner, m->owner,
                             health(c, a->owner, now, &inc), c->lease_ms,
                             c->drift_pct, c->cfg.heartbeat_ms);
}

/* Forget placements that landed or did not land in time (those may be
 * decided again); the node each moved off may get a lease again once it
 * has applied what is applied now.  Returns how many did not land. */
static size_t forget_landed(struct cluster *c, uint64_t now)
{
    size_t lost = 0;

    for (size_t i = 0; i < c->n_placing;) {
        struct placing *p = c->placing[i];
        const struct ol__sm_agent *a = ol__sm_agent(c->sm, p->agent);
        struct peer_state *ps;

        if (a != NULL && a->epoch < p->epoch &&
            now - p->since_ms <= PLACING_TIMEOUT_MS) {
            i++;
            continue;
        }
        lost += a != NULL && a->epoch < p->epoch;
        ps = p->from ? ol__cl_peer(c, p->from, 0) : NULL;
        if (ps) {
            if (ps->moving_off)
                ps->moving_off--;
            if (ps->fence_index < ol__sm_applied(c->sm))
                ps->fence_index = ol__sm_applied(c->sm);
        }
        ol__map_del(&c->placing_by, p->agent);
        free(p);
        c->placing[i] = c->placing[--c->n_placing];
    }
    return lost;
}

int ol__cl_place_wanted(struct cluster *c, const struct ol__effect *e)
{
    const struct ol__sm_agent *a;
    uint64_t inc = 0;

    switch (e->type) {
    case OL_FX_CKPT:
    case OL_FX_MAIL:
    case OL_FX_MAILBOX:
        return 0;
    case OL_FX_CMD:
        /* A placement's outcome: its agent's row says what changed. */
        return e->u.cmd.cmd_type != OL_CMD_PLACE &&
               e->u.cmd.cmd_type != OL_CMD_MOVE;
    case OL_FX_AGENT:
        break;
    default:
        return 1;
    }
    /* An agent row that changed where nothing is left to decide: a move
     * that landed on a live node, a stop.  A failed node's thousands of
     * landing moves would otherwise each start a full pass over every
     * agent.  Loads change too, but a rebalance waits for its turn. */
    a = &e->u.agent;
    if (c->role != RAFT_LEADER)
        return 1;
    if (a->status != OL_AGENT_RUNNING && a->status != OL_AGENT_STOPPING)
        return 0;
    return a->owner == 0 ||
           health(c, a->owner, ol__cl_now(c), &inc) != OL_PL_LIVE ||
           inc != a->inc;
}

/* The roster's members as placement sees them; returns how many. */
static size_t fill_nodes(struct cluster *c, uint64_t now,
                         const struct ol__sm_node *nodes, size_t nn,
                         struct ol__pl_node *pl)
{
    size_t n_pl = 0;

    for (size_t i = 0; i < nn; i++) {
        struct ol__pl_node *p = &pl[n_pl];

        if (nodes[i].removed)
            continue;
        p->id = nodes[i].id;
        ol__label_get(nodes[i].labels, "cloud", p->cloud, sizeof p->cloud);
        p->labels = nodes[i].labels;
        /* A witness or standby by the roster, or a node raft holds as a
         * non-voter (a standby not yet promoted), hosts nothing. */
        p->nohost = ol__label_role(nodes[i].labels) != OL_ROLE_VOTER ||
                    !ol__cl_voter(c, nodes[i].id);
        p->health = health(c, nodes[i].id, now, &p->inc);
        n_pl++;
    }
    return n_pl;
}

/* An agent's affinity: the string values of "prefer" and "avoid" in its
 * config map (README: placement).  Borrowed into `bufs` until the next
 * call. */
struct aff_bufs {
    char prefer[OL_LABELS_MAX + 1];
    char avoid[OL_LABELS_MAX + 1];
};

static void copy_key(const msgpack_object *map, const char *key, char *out,
                     size_t cap)
{
    size_t klen = strlen(key);

    out[0] = '\0';
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        const msgpack_object *v = &map->via.map.ptr[i].val;

        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0 &&
            v->type == MSGPACK_OBJECT_STR && v->via.str.size < cap) {
            memcpy(out, v->via.str.ptr, v->via.str.size);
            out[v->via.str.size] = '\0';
            return;
        }
    }
}

static void agent_affinity(void *data, const struct ol__sm_agent *a,
                           struct ol__pl_affinity *out)
{
    struct aff_bufs *b = data;
    msgpack_unpacked u;

    if (a->config == NULL || a->config_len == 0)
        return;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)a->config, a->config_len,
                            NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        copy_key(&u.data, "prefer", b->prefer, sizeof b->prefer);
        copy_key(&u.data, "avoid", b->avoid, sizeof b->avoid);
        out->prefer = b->prefer[0] ? b->prefer : NULL;
        out->avoid = b->avoid[0] ? b->avoid : NULL;
    }
    msgpack_unpacked_destroy(&u);
}

/* Add move `m` to `w`.  A placement carries this leader's term where
 * every voter can read it, so that a deposed leader's is refused when
 * applied (level 2); level 1 has only PLACE. */
static int propose_move(struct cluster *c, struct ol__entry_w *w,
                        const struct ol__pl_move *m, uint32_t level,
                        uint64_t now)
{
    if (level >= 2)
        return ol__entry_add_move(w, ol__random_id(), m->agent, m->owner,
                                  m->epoch, m->inc, c->raft.current_term,
                                  handoff_ms(c, m, now));
    return ol__entry_add_place(w, ol__random_id(), m->agent, m->owner,
                               m->epoch, m->inc);
}

static const char *const why[] = {"", "place", "failover", "re-grant",
                                  "rebalance"};

/* A pass that moves more agents than this logs each at debug and sums
 * them up at info (a failed node's thousands of agents would otherwise
 * be thousands of lines, written on the loop). */
#define PLACE_LOG_EACH 16

/* Remember move `m` as in flight.  Returns 0 or OL_ENOMEM. */
static int record_move(struct cluster *c, const struct ol__pl_move *m,
                       uint64_t now, int bulk)
{
    const struct ol__sm_agent *cur;
    struct peer_state *ps;
    struct placing **arr, *np = calloc(1, sizeof *np);

    if (np == NULL)
        return OL_ENOMEM;
    if (c->n_placing == c->placing_cap) {
        size_t cap = c->placing_cap ? c->placing_cap * 2 : 256;

        arr = realloc(c->placing, cap * sizeof *arr);
        if (arr == NULL) {
            free(np);
            return OL_ENOMEM;
        }
        c->placing = arr;
        c->placing_cap = cap;
    }
    arr = c->placing;
    snprintf(np->agent, sizeof np->agent, "%s", m->agent);
    if (ol__map_put(&c->placing_by, np->agent, np) != 0) {
        free(np);
        return OL_ENOMEM;
    }
    arr[c->n_placing++] = np;
    np->epoch = m->epoch;
    np->since_ms = now;
    cur = ol__sm_agent(c->sm, m->agent);
    np->from = cur && cur->owner != m->owner ? cur->owner : 0;
    if (np->from && (ps = ol__cl_peer(c, np->from, 0)) != NULL)
        ps->moving_off++;
    if (m->reason == OL_PL_BALANCE)
        c->last_rebalance_ms = now;
    if ((unsigned)m->reason < 5)
        c->n.placed[m->reason]++;
    ol_log(m->reason == OL_PL_REGRANT || bulk ? OL_LOG_DEBUG : OL_LOG_INFO,
           "placement: '%s' -> node %" PRIu64 " epoch %" PRIu64 " (%s)",
           m->agent, m->owner, m->epoch, why[m->reason]);
    if (m->closer)
        ol_log(OL_LOG_INFO,
               "placement: busy agent '%s' moves nearer the leader: node "
               "%" PRIu64 " (rtt %.1f ms) -> node %" PRIu64 " (rtt %.1f ms)",
               m->agent, cur ? cur->owner : 0,
               m->rtt_from_us == OL_PL_RTT_UNKNOWN ? -1.0
                                                   : m->rtt_from_us / 1000.0,
               m->owner, m->rtt_to_us / 1000.0);
    if (m->avoided)
        ol_log(OL_LOG_WARN,
               "placement: '%s' avoids node %" PRIu64 " but no other node "
               "that may host it is up: placed there anyway",
               m->agent, m->owner);
    return 0;
}

/* One line per reason and target for a pass of many moves (there are few
 * targets; more than 64 pairs are summed up as "other"). */
static void log_summary(const struct ol__pl_move *moves, size_t n)
{
    struct {
        int reason;
        uint64_t owner;
        size_t k;
    } sum[64];
    size_t n_sum = 0, other = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j = 0;

        if (moves[i].reason == OL_PL_REGRANT)
            continue;
        while (j < n_sum && (sum[j].reason != moves[i].reason ||
                             sum[j].owner != moves[i].owner))
            j++;
        if (j == n_sum && n_sum == 64) {
            other++;
            continue;
        }
        if (j == n_sum) {
            sum[j].reason = moves[i].reason;
            sum[j].owner = moves[i].owner;
            sum[j].k = 0;
            n_sum++;
        }
        sum[j].k++;
    }
    for (size_t j = 0; j < n_sum; j++)
        ol_log(OL_LOG_INFO, "placement: %zu agent(s) -> node %" PRIu64
                            " (%s)",
               sum[j].k, sum[j].owner, why[sum[j].reason]);
    if (other)
        ol_log(OL_LOG_INFO, "placement: %zu agent(s) to other nodes", other);
}

/* What a placement pass depends on besides the state machine's agents
 * and code (c->pl_gen counts their changes) and the moves in flight: the
 * nodes' liveness, and whether a rebalance is due. */
static uint64_t pass_key(const struct cluster *c, const struct ol__pl_node *pl,
                         size_t n, int rebalance)
{
    uint64_t h = 0xcbf29ce484222325ull;
    uint64_t v[3];

    h = (h ^ c->pl_gen) * 0x100000001b3ull;
    h = (h ^ (uint64_t)rebalance) * 0x100000001b3ull;
    for (size_t i = 0; i < n; i++) {
        v[0] = pl[i].id;
        v[1] = (uint64_t)pl[i].health;
        v[2] = pl[i].inc;
        for (int k = 0; k < 3; k++)
            h = (h ^ v[k]) * 0x100000001b3ull;
    }
    return h;
}

/* Whether this pass would find what the last one found: nothing. */
static int pass_unchanged(struct cluster *c, uint64_t key, size_t forgot,
                          uint64_t now)
{
    int same = c->pl_idle && key == c->pl_key && forgot == 0 &&
               now - c->pl_full_ms < FULL_PASS_EVERY_MS;

    c->pl_key = key;
    if (!same)
        c->pl_full_ms = now;
    return same;
}

/* Decide and propose the moves placement asks for now. */
void ol__cl_place(struct cluster *c, uint64_t now)
{
    uint32_t level = ol__cl_level(c);
    const struct ol__sm_node *nodes;
    size_t nn = ol__sm_nodes(c->sm, &nodes), n_pl, n_moves, forgot, room;
    struct ol__pl_node *pl = calloc(nn ? nn : 1, sizeof *pl);
    struct ol__pl_move *moves = NULL;
    struct ol__entry_w w;
    struct aff_bufs aff;
    struct busy_src busy = {c->rates, now};
    struct ol__pl_opts opt = {
        .rebalance = now - c->last_rebalance_ms >= REBALANCE_EVERY_MS,
        .skip = skip_placing, .skip_data = c,
        .aff = agent_affinity, .aff_data = &aff,
        .busy = ol__steprate_hot(c->rates) ? agent_busy : NULL,
        .busy_data = &busy};

    if (pl == NULL)
        goto out;
    forgot = forget_landed(c, now);
    if (c->n_placing > inflight_max(c) / 2)
        goto out;
    room = inflight_max(c) - c->n_placing;
    if (room > PLACE_BATCH)
        room = PLACE_BATCH;
    n_pl = fill_nodes(c, now, nodes, nn, pl);
    if (pass_unchanged(c, pass_key(c, pl, n_pl, opt.rebalance), forgot,
                       now) ||
        (moves = calloc(room, sizeof *moves)) == NULL)
        goto out;
    fill_rtts(c, pl, n_pl);
    n_moves = ol__placement_run(c->sm, pl, n_pl, &opt, moves, room);
    c->pl_idle = n_moves == 0;
    if (n_moves == 0)
        goto out;
    ol__entry_w_init(&w);
    for (size_t i = 0; i < n_moves; i++) {
        if (propose_move(c, &w, &moves[i], level, now) != 0 ||
            record_move(c, &moves[i], now, n_moves > PLACE_LOG_EACH) != 0)
            break;
    }
    if (n_moves > PLACE_LOG_EACH)
        log_summary(moves, w.n);
    c->n.placements += w.n;
    (void)ol__proposer_lead_cmds(c->prop, &w);
    ol__entry_w_close(&w);
out:
    free(pl);
    free(moves);
}
