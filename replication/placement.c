/*
 * Placement decisions.  An agent keeps its node while the node is alive
 * and runs the incarnation the grant names; it is re-granted (new epoch,
 * same node) when that node restarted, and moved when the node has been
 * silent past the failover time.  Targets are live nodes only, least
 * loaded first, and a failover avoids the dead node's cloud when it can.
 * Rebalancing moves one agent at a time so a returning node fills up
 * without thrashing.  After an upgrade asked for a build of a plugin,
 * agents of that kind only go to nodes that run it.
 */
#include "placement.h"

#include <stdio.h>
#include <string.h>

#include "lease.h"

void ol__label_get(const char *labels, const char *key, char *out,
                   size_t cap)
{
    size_t klen = strlen(key);
    const char *p = labels;

    if (cap)
        out[0] = '\0';
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        while (len && *p == ' ') {
            p++;
            len--;
        }
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            snprintf(out, cap, "%.*s", (int)(len - klen - 1), p + klen + 1);
            return;
        }
        p = end ? end + 1 : NULL;
    }
}

static struct ol__pl_node *find(struct ol__pl_node *nodes, size_t n,
                                uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (nodes[i].id == id)
            return &nodes[i];
    return NULL;
}

static struct ol__pl_node *best(const struct ol__sm *sm, const char *kind,
                                struct ol__pl_node *nodes, size_t n,
                                const char *avoid_cloud)
{
    struct ol__pl_node *b = NULL;
    int b_other = 0;

    for (size_t i = 0; i < n; i++) {
        struct ol__pl_node *c = &nodes[i];
        int other;

        /* After an upgrade, only nodes that run the wanted build. */
        if (c->health != OL_PL_LIVE || !ol__sm_code_ok(sm, kind, c->id))
            continue;
        other = !avoid_cloud || !avoid_cloud[0] ||
                strcmp(c->cloud, avoid_cloud) != 0;
        if (b == NULL || other > b_other ||
            (other == b_other &&
             (c->load < b->load || (c->load == b->load && c->id < b->id)))) {
            b = c;
            b_other = other;
        }
    }
    return b;
}

static int active(const struct ol__sm_agent *a)
{
    return a->status == OL_AGENT_RUNNING || a->status == OL_AGENT_STOPPING;
}

/* Count each node's active agents; returns whether any node's health is
 * unknown. */
static int count_loads(const struct ol__sm *sm, struct ol__pl_node *nodes,
                       size_t n_nodes)
{
    const struct ol__sm_agent *a;
    int unknown = 0;

    for (size_t i = 0; i < n_nodes; i++) {
        nodes[i].load = 0;
        unknown |= nodes[i].health == OL_PL_UNKNOWN;
    }
    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);) {
        struct ol__pl_node *o = find(nodes, n_nodes, a->owner);

        if (active(a) && o)
            o->load++;
    }
    return unknown;
}

/* Where agent `a` must go now (NULL: it stays), and why. */
static struct ol__pl_node *decide(const struct ol__sm *sm,
                                  const struct ol__sm_agent *a,
                                  struct ol__pl_node *nodes, size_t n_nodes,
                                  int unknown, int *reason)
{
    struct ol__pl_node *o = a->owner ? find(nodes, n_nodes, a->owner)
                                     : NULL;

    if (a->owner == 0) {
        /* Spread new agents once every node has checked in (or been
         * declared dead), not onto whoever answered first. */
        if (unknown)
            return NULL;
        *reason = OL_PL_PLACE;
        return best(sm, a->kind, nodes, n_nodes, NULL);
    }
    if (o == NULL || o->health == OL_PL_DEAD) {
        *reason = OL_PL_FAILOVER;
        return best(sm, a->kind, nodes, n_nodes, o ? o->cloud : NULL);
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
}

/* At most one move from the busiest live node to the idlest, when they
 * differ by enough.  Returns 1 when `out` holds it. */
static size_t rebalance_one(const struct ol__sm *sm,
                            struct ol__pl_node *nodes, size_t n_nodes,
                            ol__pl_skip_fn skip, void *skip_data,
                            struct ol__pl_move *out)
{
    const struct ol__sm_agent *a;
    struct ol__pl_node *hi = NULL, *lo = NULL;
    uint32_t total = 0, live = 0;

    for (size_t i = 0; i < n_nodes; i++) {
        struct ol__pl_node *c = &nodes[i];

        if (c->health != OL_PL_LIVE)
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
    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);) {
        if (a->owner != hi->id || a->status != OL_AGENT_RUNNING ||
            a->inc != hi->inc || !ol__sm_code_ok(sm, a->kind, lo->id) ||
            (skip && skip(skip_data, a->name)))
            continue;
        move_to(out, a, lo, OL_PL_BALANCE);
        return 1;
    }
    return 0;
}

size_t ol__placement(const struct ol__sm *sm, struct ol__pl_node *nodes,
                     size_t n_nodes, int rebalance, ol__pl_skip_fn skip,
                     void *skip_data, struct ol__pl_move *out, size_t cap)
{
    const struct ol__sm_agent *a;
    size_t n = 0;
    int unknown = count_loads(sm, nodes, n_nodes);

    for (size_t i = 0; n < cap && ol__sm_agent_next(sm, &i, &a);) {
        struct ol__pl_node *o, *t;
        int reason = 0;

        if (!active(a) || (skip && skip(skip_data, a->name)))
            continue;
        t = decide(sm, a, nodes, n_nodes, unknown, &reason);
        if (t == NULL)
            continue;
        move_to(&out[n], a, t, reason);
        o = a->owner ? find(nodes, n_nodes, a->owner) : NULL;
        if (t != o) {
            if (o && o->load)
                o->load--;
            t->load++;
        }
        n++;
    }
    if (rebalance && n == 0 && n < cap)
        n = rebalance_one(sm, nodes, n_nodes, skip, skip_data, out);
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
