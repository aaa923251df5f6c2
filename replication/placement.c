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

static const char *const role_names[] = {"voter", "witness", "standby"};

const char *ol__role_name(int role)
{
    return role >= 0 && role <= OL_ROLE_STANDBY ? role_names[role] : NULL;
}

int ol__role_parse(const char *name)
{
    for (int i = 0; i <= OL_ROLE_STANDBY; i++)
        if (strcmp(name, role_names[i]) == 0)
            return i;
    return -1;
}

int ol__label_role(const char *labels)
{
    char v[32];

    ol__label_get(labels, "role", v, sizeof v);
    return v[0] ? ol__role_parse(v) : OL_ROLE_VOTER;
}

int ol__labels_with_role(const char *labels, int role, char *out,
                         size_t cap)
{
    const char *p = labels;
    size_t n = 0;
    int w;

    if (cap == 0)
        return -1;
    out[0] = '\0';
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len && strncmp(p, "role=", 5) != 0) {
            w = snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)len,
                         p);
            if (w < 0 || (size_t)w >= cap - n)
                return -1;
            n += (size_t)w;
        }
        p = end ? end + 1 : NULL;
    }
    if (role != OL_ROLE_VOTER && ol__role_name(role)) {
        w = snprintf(out + n, cap - n, "%srole=%s", n ? "," : "",
                     ol__role_name(role));
        if (w < 0 || (size_t)w >= cap - n)
            return -1;
    }
    return 0;
}

static struct ol__pl_node *find(struct ol__pl_node *nodes, size_t n,
                                uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (nodes[i].id == id)
            return &nodes[i];
    return NULL;
}

/* The next item of a comma-separated list at *pp, spaces around it
 * trimmed, its length in *len; NULL past the end. */
static const char *next_item(const char **pp, size_t *len)
{
    const char *p = *pp, *end;
    size_t l;

    if (p == NULL || *p == '\0')
        return NULL;
    end = strchr(p, ',');
    l = end ? (size_t)(end - p) : strlen(p);
    while (l && *p == ' ') {
        p++;
        l--;
    }
    while (l && p[l - 1] == ' ')
        l--;
    *pp = end ? end + 1 : NULL;
    *len = l;
    return p;
}

/* Whether item "k=v" of length `len` is one of `labels`' items. */
static int has_item(const char *labels, const char *item, size_t len)
{
    const char *p = labels, *it;
    size_t l;

    while ((it = next_item(&p, &l)) != NULL)
        if (l == len && strncmp(it, item, len) == 0)
            return 1;
    return 0;
}

int ol__label_match(const char *labels, const char *list)
{
    const char *p = list, *it;
    size_t l;

    if (labels == NULL)
        return 0;
    while ((it = next_item(&p, &l)) != NULL)
        if (l && has_item(labels, it, l))
            return 1;
    return 0;
}

static int label_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

int ol__label_list_valid(const char *list)
{
    const char *p = list;

    if (list == NULL || *list == '\0')
        return 0;
    for (;;) {
        size_t k = 0, v = 0;

        while (label_char(p[k]))
            k++;
        if (k == 0 || p[k] != '=')
            return 0;
        p += k + 1;
        while (label_char(p[v]))
            v++;
        if (v == 0)
            return 0;
        p += v;
        if (*p == '\0')
            return 1;
        if (*p != ',')
            return 0;
        p++;
    }
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

static struct ol__pl_node *best(const struct ol__sm *sm, const char *kind,
                                struct ol__pl_node *nodes, size_t n,
                                const struct ol__pl_affinity *af,
                                const char *avoid_cloud, int *avoided)
{
    struct ol__pl_node *b = NULL;
    int b_rank = 0;

    for (size_t i = 0; i < n; i++) {
        struct ol__pl_node *c = &nodes[i];
        int r;

        /* After an upgrade, only nodes that run the wanted build. */
        if (c->health != OL_PL_LIVE || c->nohost ||
            !ol__sm_code_ok(sm, kind, c->id))
            continue;
        r = rank(c, af, avoid_cloud);
        if (b == NULL || r > b_rank ||
            (r == b_rank &&
             (c->load < b->load || (c->load == b->load && c->id < b->id)))) {
            b = c;
            b_rank = r;
        }
    }
    *avoided = b != NULL && b_rank < 4;
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

/* Where agent affinities come from. */
struct aff_src {
    ol__pl_affinity_fn fn;
    void *data;
};

/* The best node for agent `a`, its affinity read only now: most agents
 * stay where they are and need none. */
static struct ol__pl_node *pick(const struct ol__sm *sm,
                                const struct ol__sm_agent *a,
                                struct ol__pl_node *nodes, size_t n_nodes,
                                const struct aff_src *src,
                                const char *avoid_cloud, int *avoided)
{
    struct ol__pl_affinity af = {NULL, NULL};

    if (src->fn)
        src->fn(src->data, a, &af);
    return best(sm, a->kind, nodes, n_nodes, &af, avoid_cloud, avoided);
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
                            ol__pl_affinity_fn aff, void *aff_data,
                            struct ol__pl_move *out)
{
    const struct ol__sm_agent *a;
    struct ol__pl_node *hi = NULL, *lo = NULL;
    uint32_t total = 0, live = 0;

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
    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);) {
        if (a->owner != hi->id || a->status != OL_AGENT_RUNNING ||
            a->inc != hi->inc || !ol__sm_code_ok(sm, a->kind, lo->id) ||
            (skip && skip(skip_data, a->name)) ||
            !may_rebalance(a, hi, lo, aff, aff_data))
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
    return ol__placement_aff(sm, nodes, n_nodes, rebalance, skip, skip_data,
                             NULL, NULL, out, cap);
}

size_t ol__placement_aff(const struct ol__sm *sm, struct ol__pl_node *nodes,
                         size_t n_nodes, int rebalance, ol__pl_skip_fn skip,
                         void *skip_data, ol__pl_affinity_fn aff,
                         void *aff_data, struct ol__pl_move *out, size_t cap)
{
    const struct aff_src src = {aff, aff_data};
    const struct ol__sm_agent *a;
    size_t n = 0;
    int unknown = count_loads(sm, nodes, n_nodes);

    for (size_t i = 0; n < cap && ol__sm_agent_next(sm, &i, &a);) {
        struct ol__pl_node *o, *t;
        int reason = 0, avoided = 0;

        if (!active(a) || (skip && skip(skip_data, a->name)))
            continue;
        t = decide(sm, a, nodes, n_nodes, unknown, &src, &reason, &avoided);
        if (t == NULL)
            continue;
        move_to(&out[n], a, t, reason);
        out[n].avoided = avoided;
        o = a->owner ? find(nodes, n_nodes, a->owner) : NULL;
        if (t != o) {
            if (o && o->load)
                o->load--;
            t->load++;
        }
        n++;
    }
    if (rebalance && n == 0 && n < cap)
        n = rebalance_one(sm, nodes, n_nodes, skip, skip_data, aff, aff_data,
                          out);
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
