/*
 * Placement decisions.  An agent keeps its node while the node is alive
 * and runs the incarnation the grant names; it is re-granted (new epoch,
 * same node) when that node restarted, and moved when the node has been
 * silent past the failover time.  Targets are live nodes only, least
 * loaded first, and a failover avoids the dead node's cloud when it can.
 * Rebalancing moves one agent at a time so a returning node fills up
 * without thrashing.  After an upgrade asked for a build of a plugin,
 * agents of that kind only go to nodes that run it.  Witnesses and
 * standbys host nothing; an agent's prefer/avoid labels come before load.
 * Busy agents (placement.h) go to the nearest node to the leader below a
 * fair-share cap, and rebalancing may bring one nearer per pass.
 */
#include "placement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"

static struct ol__pl_node *find(struct ol__pl_node *nodes, size_t n,
                                uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (nodes[i].id == id)
            return &nodes[i];
    return NULL;
}

/* How well node `c` suits an agent, highest first: not avoided, then
 * preferred, then (a failover) outside the dead owner's cloud. */
static int rank(const struct ol__pl_node *c, const struct ol__pl_affinity *af,
                const char *avoid_cloud)
{
    int r = 0;

    if (!ol__label_match(c->labels, af->avoid))
        r += 4;
    if (ol__label_match(c->labels, af->prefer))
        r += 2;
    if (!avoid_cloud || !avoid_cloud[0] || strcmp(c->cloud, avoid_cloud) != 0)
        r += 1;
    return r;
}

uint32_t ol__pl_busy_cap(uint32_t busy_total, uint32_t n_nodes)
{
    uint32_t fair = n_nodes ? (busy_total + n_nodes - 1) / n_nodes
                            : busy_total;

    return fair + (fair / 4 > 1 ? fair / 4 : 1);
}

/* Whether node `c` may host an agent of `kind` now: live, not a witness
 * or standby and, after an upgrade, running the wanted build. */
static int can_host(const struct ol__sm *sm, const char *kind,
                    const struct ol__pl_node *c)
{
    return c->health == OL_PL_LIVE && !c->nohost &&
           ol__sm_code_ok(sm, kind, c->id);
}

static int less_loaded(const struct ol__pl_node *c,
                       const struct ol__pl_node *b)
{
    return c->load < b->load || (c->load == b->load && c->id < b->id);
}

/* Whether `c` is nearer the leader than `b`, in steps of the hysteresis
 * (nodes on one LAN, or loopback, are all as near); ties to the less
 * loaded. */
static int nearer(const struct ol__pl_node *c, const struct ol__pl_node *b)
{
    uint32_t cs = c->rtt_us / OL_PL_NEAR_HYST_US;
    uint32_t bs = b->rtt_us / OL_PL_NEAR_HYST_US;

    return cs < bs || (cs == bs && less_loaded(c, b));
}

/* Whether `lo` is known to be farther from the leader than `hi` by at
 * least the hysteresis. */
static int farther(const struct ol__pl_node *lo, const struct ol__pl_node *hi)
{
    return lo->rtt_us != OL_PL_RTT_UNKNOWN &&
           hi->rtt_us != OL_PL_RTT_UNKNOWN &&
           (uint64_t)hi->rtt_us + OL_PL_NEAR_HYST_US <= lo->rtt_us;
}

static int hosting(const struct ol__pl_node *c)
{
    return c->health == OL_PL_LIVE && !c->nohost;
}

/* The fair-share caps on busy agents: per node over the nodes that may
 * host agents, per cloud over their clouds (a node without a `cloud=`
 * label is a cloud of its own). */
struct caps {
    uint32_t node, cloud;
};

static struct caps busy_caps(const struct ol__pl_node *nodes, size_t n,
                             uint32_t busy_total, uint32_t n_nodes)
{
    struct caps k;
    uint32_t clouds = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j = 0;

        if (!hosting(&nodes[i]))
            continue;
        while (nodes[i].cloud[0] && j < i &&
               !(hosting(&nodes[j]) &&
                 strcmp(nodes[j].cloud, nodes[i].cloud) == 0))
            j++;
        clouds += !nodes[i].cloud[0] || j == i;
    }
    k.node = ol__pl_busy_cap(busy_total, n_nodes);
    k.cloud = ol__pl_busy_cap(busy_total, clouds);
    return k;
}

/* Whether node `c` is below both caps. */
static int under_caps(const struct ol__pl_node *nodes, size_t n,
                      const struct ol__pl_node *c, struct caps k)
{
    uint32_t in_cloud = 0;

    if (c->busy >= k.node)
        return 0;
    if (c->cloud[0] == '\0')
        return c->busy < k.cloud;
    for (size_t i = 0; i < n; i++)
        if (hosting(&nodes[i]) && strcmp(nodes[i].cloud, c->cloud) == 0)
            in_cloud += nodes[i].busy;
    return in_cloud < k.cloud;
}

/* Among the nodes of rank `top` below the caps, the nearest the leader;
 * NULL if none. */
static struct ol__pl_node *nearest(const struct ol__sm *sm, const char *kind,
                                   struct ol__pl_node *nodes, size_t n,
                                   const struct ol__pl_affinity *af,
                                   const char *avoid_cloud, int top,
                                   struct caps k)
{
    struct ol__pl_node *b = NULL;

    for (size_t i = 0; i < n; i++) {
        struct ol__pl_node *c = &nodes[i];

        if (can_host(sm, kind, c) && rank(c, af, avoid_cloud) == top &&
            (b == NULL || nearer(c, b)) && under_caps(nodes, n, c, k))
            b = c;
    }
    return b;
}

/* The node for an agent of `kind`; `busy_total` is 0 for an idle agent,
 * else how many busy agents there are. */
static struct ol__pl_node *best(const struct ol__sm *sm, const char *kind,
                                struct ol__pl_node *nodes, size_t n,
                                const struct ol__pl_affinity *af,
                                const char *avoid_cloud, uint32_t busy_total,
                                int *avoided)
{
    struct ol__pl_node *b = NULL, *near;
    int b_rank = 0;
    uint32_t n_top = 0;

    for (size_t i = 0; i < n; i++) {
        struct ol__pl_node *c = &nodes[i];
        int r;

        if (!can_host(sm, kind, c))
            continue;
        r = rank(c, af, avoid_cloud);
        if (b == NULL || r > b_rank) {
            b = c;
            b_rank = r;
            n_top = 1;
        } else if (r == b_rank) {
            n_top++;
            if (less_loaded(c, b))
                b = c;
        }
    }
    *avoided = b != NULL && b_rank < 4;
    if (b != NULL && busy_total) {
        near = nearest(sm, kind, nodes, n, af, avoid_cloud, b_rank,
                       busy_caps(nodes, n, busy_total, n_top));
        if (near)
            b = near;
    }
    return b;
}

static int active(const struct ol__sm_agent *a)
{
    return a->status == OL_AGENT_RUNNING || a->status == OL_AGENT_STOPPING;
}

/* Where agent affinities and step rates come from. */
struct aff_src {
    ol__pl_affinity_fn fn;
    void *data;
    ol__pl_busy_fn busy;
    void *busy_data;
    uint32_t busy_total; /* active busy agents */
};

static int is_busy(const struct aff_src *src, const struct ol__sm_agent *a)
{
    return src->busy && src->busy(src->busy_data, a);
}

/* Whether agent `a`, active on `o` (NULL: no such node), stays where it
 * is: decide() would say so without looking further. */
static int stays(const struct ol__sm_agent *a, const struct ol__pl_node *o,
                 int unknown)
{
    if (a->owner == 0)
        return unknown;
    return o != NULL && o->health != OL_PL_DEAD &&
           !(o->nohost && o->health == OL_PL_LIVE) &&
           !(o->health == OL_PL_LIVE && o->inc != a->inc);
}

/* The agents a pass must decide on, in the state machine's order. */
struct todo {
    const struct ol__sm_agent **a;
    size_t n, cap;
};

/* Count each node's active agents, and the busy ones, and collect in `t`
 * the agents that may have to go elsewhere and are not skipped: one walk
 * over every agent, as each walk is a cache miss per agent (60,000
 * agents: about 20 ms on a shared vCPU).  Returns whether any node's
 * health is unknown, or -1 when out of memory. */
static int walk(const struct ol__sm *sm, struct ol__pl_node *nodes,
                size_t n_nodes, struct aff_src *src, ol__pl_skip_fn skip,
                void *skip_data, struct todo *t)
{
    const struct ol__sm_agent *a;
    int unknown = 0;

    src->busy_total = 0;
    for (size_t i = 0; i < n_nodes; i++) {
        nodes[i].load = 0;
        nodes[i].busy = 0;
        unknown |= nodes[i].health == OL_PL_UNKNOWN;
    }
    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);) {
        struct ol__pl_node *o;
        int b;

        if (!active(a))
            continue;
        o = a->owner ? find(nodes, n_nodes, a->owner) : NULL;
        b = is_busy(src, a);
        src->busy_total += (uint32_t)b;
        if (o) {
            o->load++;
            o->busy += (uint32_t)b;
        }
        if (t == NULL || stays(a, o, unknown) ||
            (skip && skip(skip_data, a->name)))
            continue;
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 256;
            const struct ol__sm_agent **m = realloc(t->a, cap * sizeof *m);

            if (m == NULL)
                return -1;
            t->a = m;
            t->cap = cap;
        }
        t->a[t->n++] = a;
    }
    return unknown;
}

/* The best node for agent `a`, its affinity read only now: most agents
 * stay where they are and need none. */
static struct ol__pl_node *pick(const struct ol__sm *sm,
                                const struct ol__sm_agent *a,
                                struct ol__pl_node *nodes, size_t n_nodes,
                                const struct aff_src *src,
                                const char *avoid_cloud, int *avoided)
{
    struct ol__pl_affinity af = {NULL, NULL};
    uint32_t busy_total = 0;

    if (src->fn)
        src->fn(src->data, a, &af);
    if (is_busy(src, a))
        busy_total = src->busy_total ? src->busy_total : 1;
    return best(sm, a->kind, nodes, n_nodes, &af, avoid_cloud, busy_total,
                avoided);
}

/* Where agent `a` must go now (NULL: it stays), and why. */
static struct ol__pl_node *decide(const struct ol__sm *sm,
                                  const struct ol__sm_agent *a,
                                  struct ol__pl_node *nodes, size_t n_nodes,
                                  int unknown, const struct aff_src *src,
                                  int *reason, int *avoided)
{
    struct ol__pl_node *o = a->owner ? find(nodes, n_nodes, a->owner)
                                     : NULL;

    if (a->owner == 0) {
        /* Spread new agents once every node has checked in (or been
         * declared dead), not onto whoever answered first. */
        if (unknown)
            return NULL;
        *reason = OL_PL_PLACE;
        return pick(sm, a, nodes, n_nodes, src, NULL, avoided);
    }
    if (o == NULL || o->health == OL_PL_DEAD) {
        *reason = OL_PL_FAILOVER;
        return pick(sm, a, nodes, n_nodes, src, o ? o->cloud : NULL,
                    avoided);
    }
    if (o->nohost && o->health == OL_PL_LIVE) {
        /* Its node became a witness or a standby: hand it over. */
        *reason = OL_PL_BALANCE;
        return pick(sm, a, nodes, n_nodes, src, NULL, avoided);
    }
    if (o->health == OL_PL_LIVE && o->inc != a->inc) {
        *reason = OL_PL_REGRANT;
        return o;
    }
    return NULL;
}

static void move_to(struct ol__pl_move *m, const struct ol__sm_agent *a,
                    const struct ol__pl_node *t, int reason)
{
    snprintf(m->agent, sizeof m->agent, "%s", a->name);
    m->owner = t->id;
    m->inc = t->inc;
    m->epoch = a->epoch + 1;
    m->reason = reason;
    m->avoided = 0;
    m->closer = 0;
    m->rtt_from_us = m->rtt_to_us = 0;
}

/* Whether moving agent `a` from `hi` to `lo` keeps to its affinity. */
static int may_rebalance(const struct ol__sm_agent *a,
                         const struct ol__pl_node *hi,
                         const struct ol__pl_node *lo,
                         ol__pl_affinity_fn aff, void *aff_data)
{
    struct ol__pl_affinity af = {NULL, NULL};

    if (aff)
        aff(aff_data, a, &af);
    if (ol__label_match(lo->labels, af.avoid))
        return 0;
    return !ol__label_match(hi->labels, af.prefer) ||
           ol__label_match(lo->labels, af.prefer);
}

/* At most one move from the busiest live node to the idlest, when they
 * differ by enough.  Returns 1 when `out` holds it. */
static size_t rebalance_one(const struct ol__sm *sm,
                            struct ol__pl_node *nodes, size_t n_nodes,
                            ol__pl_skip_fn skip, void *skip_data,
                            const struct aff_src *src,
                            struct ol__pl_move *out)
{
    const struct ol__sm_agent *a;
    struct ol__pl_node *hi = NULL, *lo = NULL;
    uint32_t total = 0, live = 0, cap;

    for (size_t i = 0; i < n_nodes; i++) {
        struct ol__pl_node *c = &nodes[i];

        if (c->health != OL_PL_LIVE || c->nohost)
            continue;
        total += c->load;
        live++;
        if (hi == NULL || c->load > hi->load)
            hi = c;
        if (lo == NULL || c->load < lo->load)
            lo = c;
    }
    if (live < 2 || hi->load < lo->load + 2 + total / live / 4)
        return 0;
    cap = ol__pl_busy_cap(src->busy_total, live);
    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);) {
        if (a->owner != hi->id || a->status != OL_AGENT_RUNNING ||
            a->inc != hi->inc || !ol__sm_code_ok(sm, a->kind, lo->id) ||
            (skip && skip(skip_data, a->name)) ||
            !may_rebalance(a, hi, lo, src->fn, src->data) ||
            /* a busy agent goes farther from the leader only off a
             * node over the fair-share cap */
            (farther(lo, hi) && hi->busy <= cap && is_busy(src, a)))
            continue;
        move_to(out, a, lo, OL_PL_BALANCE);
        return 1;
    }
    return 0;
}

/* The node busy agent `a` on `h` may move to: at least the hysteresis
 * nearer the leader, below `cap`, allowed by its affinity, the nearest of
 * those; NULL if none. */
static struct ol__pl_node *closer_node(const struct ol__sm *sm,
                                       const struct ol__sm_agent *a,
                                       const struct ol__pl_node *h,
                                       struct ol__pl_node *nodes, size_t n,
                                       const struct aff_src *src,
                                       struct caps k)
{
    struct ol__pl_node *b = NULL;

    for (size_t i = 0; i < n; i++) {
        struct ol__pl_node *c = &nodes[i];

        if (c == h || !can_host(sm, a->kind, c) ||
            c->rtt_us == OL_PL_RTT_UNKNOWN ||
            (uint64_t)c->rtt_us + OL_PL_NEAR_HYST_US > h->rtt_us ||
            (b != NULL && !nearer(c, b)) ||
            /* leaving h lowers h's cloud's count: moving within one
             * cloud is not held back by the cloud's cap */
            (strcmp(c->cloud, h->cloud) == 0 && c->cloud[0]
                 ? c->busy >= k.node
                 : !under_caps(nodes, n, c, k)) ||
            !may_rebalance(a, h, c, src->fn, src->data))
            continue;
        b = c;
    }
    return b;
}

/* At most one busy agent moved nearer the leader: the one that gains the
 * most.  Returns 1 when `out` holds it. */
static size_t closer_one(const struct ol__sm *sm, struct ol__pl_node *nodes,
                         size_t n_nodes, ol__pl_skip_fn skip,
                         void *skip_data, const struct aff_src *src,
                         struct ol__pl_move *out)
{
    const struct ol__sm_agent *a, *best_a = NULL;
    struct ol__pl_node *best_h = NULL, *best_t = NULL;
    uint64_t best_gain = 0;
    uint32_t hosts = 0;
    struct caps k;

    for (size_t i = 0; i < n_nodes; i++)
        hosts += (uint32_t)hosting(&nodes[i]);
    if (src->busy == NULL || hosts < 2)
        return 0;
    k = busy_caps(nodes, n_nodes, src->busy_total, hosts);
    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);) {
        struct ol__pl_node *h, *t;

        if (a->status != OL_AGENT_RUNNING ||
            (h = find(nodes, n_nodes, a->owner)) == NULL ||
            h->health != OL_PL_LIVE || h->nohost || a->inc != h->inc ||
            h->rtt_us <= best_gain || (skip && skip(skip_data, a->name)) ||
            !is_busy(src, a) ||
            (t = closer_node(sm, a, h, nodes, n_nodes, src, k)) == NULL ||
            (uint64_t)h->rtt_us - t->rtt_us <= best_gain)
            continue;
        best_a = a;
        best_h = h;
        best_t = t;
        best_gain = (uint64_t)h->rtt_us - t->rtt_us;
    }
    if (best_a == NULL)
        return 0;
    move_to(out, best_a, best_t, OL_PL_BALANCE);
    out->closer = 1;
    out->rtt_from_us = best_h->rtt_us;
    out->rtt_to_us = best_t->rtt_us;
    return 1;
}

size_t ol__placement(const struct ol__sm *sm, struct ol__pl_node *nodes,
                     size_t n_nodes, int rebalance, ol__pl_skip_fn skip,
                     void *skip_data, struct ol__pl_move *out, size_t cap)
{
    return ol__placement_aff(sm, nodes, n_nodes, rebalance, skip, skip_data,
                             NULL, NULL, out, cap);
}

size_t ol__placement_aff(const struct ol__sm *sm, struct ol__pl_node *nodes,
                         size_t n_nodes, int rebalance, ol__pl_skip_fn skip,
                         void *skip_data, ol__pl_affinity_fn aff,
                         void *aff_data, struct ol__pl_move *out, size_t cap)
{
    const struct ol__pl_opts o = {rebalance, skip, skip_data, aff, aff_data,
                                  NULL, NULL};

    return ol__placement_run(sm, nodes, n_nodes, &o, out, cap);
}

size_t ol__placement_run(const struct ol__sm *sm, struct ol__pl_node *nodes,
                         size_t n_nodes, const struct ol__pl_opts *opt,
                         struct ol__pl_move *out, size_t cap)
{
    struct aff_src src = {opt->aff, opt->aff_data, opt->busy, opt->busy_data,
                          0};
    ol__pl_skip_fn skip = opt->skip;
    void *skip_data = opt->skip_data;
    struct todo todo = {NULL, 0, 0};
    size_t n = 0;
    int unknown = walk(sm, nodes, n_nodes, &src, skip, skip_data, &todo);

    if (unknown < 0) {
        free(todo.a);
        return 0;
    }
    for (size_t i = 0; n < cap && i < todo.n; i++) {
        const struct ol__sm_agent *a = todo.a[i];
        struct ol__pl_node *o, *t;
        int reason = 0, avoided = 0;

        t = decide(sm, a, nodes, n_nodes, unknown, &src, &reason, &avoided);
        if (t == NULL)
            continue;
        move_to(&out[n], a, t, reason);
        out[n].avoided = avoided;
        o = a->owner ? find(nodes, n_nodes, a->owner) : NULL;
        if (t != o) {
            uint32_t b = (uint32_t)is_busy(&src, a);

            if (o && o->load)
                o->load--;
            if (o && o->busy >= b)
                o->busy -= b;
            t->load++;
            t->busy += b;
        }
        n++;
    }
    free(todo.a);
    if (opt->rebalance && n == 0 && n < cap)
        n = rebalance_one(sm, nodes, n_nodes, skip, skip_data, &src, out);
    if (opt->rebalance && n == 0 && n < cap)
        n = closer_one(sm, nodes, n_nodes, skip, skip_data, &src, out);
    return n;
}

uint32_t ol__pl_handoff_ms(uint64_t from, uint64_t to, int from_health,
                           unsigned lease_ms, unsigned drift_pct,
                           unsigned heartbeat_ms)
{
    uint64_t ms;

    if (from == 0 || from == to || from_health == OL_PL_DEAD)
        return 0;
    ms = (uint64_t)ol__cluster_lease_stretch_ms(lease_ms, drift_pct) +
         heartbeat_ms;
    return ms > OL_MOVE_HOLD_MAX_MS ? OL_MOVE_HOLD_MAX_MS : (uint32_t)ms;
}
