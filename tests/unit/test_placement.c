/* Unit tests for placement (replication/placement.h): table-driven cases
 * over a real state machine built from the database fixture
 * (db_fixture.h: node 1, agents "sink" and "ticker" of kind "counter"
 * owned by node 1 at incarnation 0), plus nodes 2 and 3 and the agents
 * each case spawns.  Each case names the nodes' health as the leader sees
 * it and the moves ol__placement() must decide: no more, no fewer. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db_fixture.h"
#include "replication/placement.h"

#define MAX_ROWS 8

struct spawn {
    const char *name, *kind;
    uint64_t owner, inc;
};

struct want {
    const char *agent;
    uint64_t owner;
    int reason;
};

struct pcase {
    const char *what;
    struct spawn spawns[MAX_ROWS];
    struct ol__pl_node nodes[MAX_ROWS]; /* id, inc, health, cloud */
    size_t n_nodes;
    int rebalance;
    /* An upgrade wants a new build of `upgraded` that only node
     * `upgraded_on` runs (0: no upgrade). */
    const char *upgraded;
    uint64_t upgraded_on;
    const char *skip; /* an agent the caller is already moving */
    size_t cap;       /* 0: MAX_ROWS */
    struct want want[MAX_ROWS];
};

#define LIVE(id, inc, cloud) {id, inc, OL_PL_LIVE, cloud, 0, 0, NULL, 0, 0}
#define DEAD(id, cloud) {id, 0, OL_PL_DEAD, cloud, 0, 0, NULL, 0, 0}
#define UNKNOWN(id) {id, 0, OL_PL_UNKNOWN, "", 0, 0, NULL, 0, 0}
/* A live witness or standby: it hosts nothing. */
#define NOHOST(id, inc, cloud) {id, inc, OL_PL_LIVE, cloud, 0, 1, NULL, 0, 0}

static const struct pcase cases[] = {
    {"every agent in place: nothing moves",
     {{0}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a"), LIVE(3, 3, "b")}, 3, 0, NULL, 0,
     NULL, 0, {{0}}},
    {"new agents spread to the least loaded nodes, ties to the lowest id",
     {{"n1", "counter", 0, 0}, {"n2", "counter", 0, 0},
      {"n3", "counter", 0, 0}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a"), LIVE(3, 3, "b")}, 3, 0, NULL, 0,
     NULL, 0,
     /* loads 2/0/0: the three go to 2, 3 and then 2 (2 and 3 tied at 1),
      * in whatever order they are met; checked as counts below */
     {{"n1", 0, OL_PL_PLACE}, {"n2", 0, OL_PL_PLACE},
      {"n3", 0, OL_PL_PLACE}}},
    {"new agents wait while any node's health is unknown",
     {{"n1", "counter", 0, 0}},
     {LIVE(1, 0, "a"), UNKNOWN(2), LIVE(3, 3, "b")}, 3, 0, NULL, 0, NULL,
     0, {{0}}},
    {"a dead node's agents fail over to another cloud first",
     {{"w2", "counter", 2, 2}, {"w2b", "counter", 2, 2}},
     {DEAD(1, "a"), LIVE(2, 2, "a"), LIVE(3, 3, "b")}, 3, 0, NULL, 0,
     NULL, 0,
     {{"sink", 3, OL_PL_FAILOVER}, {"ticker", 3, OL_PL_FAILOVER}}},
    {"failover without another cloud goes to the least loaded node",
     {{"w3", "counter", 3, 3}},
     {DEAD(1, "a"), LIVE(2, 2, "a"), LIVE(3, 3, "a")}, 3, 0, NULL, 0,
     NULL, 0,
     /* loads 0 and 1: the first to 2, the second to 2 or 3 (tie at 1,
      * lowest id: 2) */
     {{"sink", 2, OL_PL_FAILOVER}, {"ticker", 2, OL_PL_FAILOVER}}},
    {"an owner placement is not told of (a removed node) counts as dead",
     {{"lost", "counter", 3, 3}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a")}, 2, 0, NULL, 0, NULL, 0,
     {{"lost", 2, OL_PL_FAILOVER}}},
    {"a restarted owner gets its agents again under a new epoch",
     {{0}},
     {LIVE(1, 11, "a"), LIVE(2, 2, "a")}, 2, 0, NULL, 0, NULL, 0,
     {{"sink", 1, OL_PL_REGRANT}, {"ticker", 1, OL_PL_REGRANT}}},
    {"an owner whose health is unknown keeps its agents",
     {{0}},
     {UNKNOWN(1), LIVE(2, 2, "a")}, 2, 0, NULL, 0, NULL, 0, {{0}}},
    {"no live node: nothing to fail over to",
     {{0}},
     {DEAD(1, "a"), DEAD(2, "a")}, 2, 0, NULL, 0, NULL, 0, {{0}}},
    {"after an upgrade, agents of that kind go only where the build runs",
     {{"n1", "counter", 0, 0}, {"e1", "echo", 0, 0}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a"), LIVE(3, 3, "b")}, 3, 0, "counter",
     3, NULL, 0,
     {{"n1", 3, OL_PL_PLACE}, {"e1", 2, OL_PL_PLACE}}},
    {"after an upgrade, failover waits for a node with the build",
     {{0}},
     {DEAD(1, "a"), LIVE(2, 2, "a"), LIVE(3, 3, "b")}, 3, 0, "counter", 1,
     NULL, 0, {{0}}},
    {"agents the caller is already moving are left alone",
     {{0}},
     {DEAD(1, "a"), LIVE(2, 2, "a")}, 2, 0, NULL, 0, "sink", 0,
     {{"ticker", 2, OL_PL_FAILOVER}}},
    {"at most `cap` moves",
     {{0}},
     {DEAD(1, "a"), LIVE(2, 2, "a")}, 2, 0, NULL, 0, NULL, 1,
     {{"*", 2, OL_PL_FAILOVER}}},
    {"rebalance moves one agent from the busiest node to the idlest",
     {{"w1", "counter", 1, 0}, {"w1b", "counter", 1, 0}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a")}, 2, 1, NULL, 0, NULL, 0,
     {{"*", 2, OL_PL_BALANCE}}},
    {"no rebalance without asking for it",
     {{"w1", "counter", 1, 0}, {"w1b", "counter", 1, 0}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a")}, 2, 0, NULL, 0, NULL, 0, {{0}}},
    {"no rebalance for a difference of one",
     {{"w2", "counter", 2, 2}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a")}, 2, 1, NULL, 0, NULL, 0, {{0}}},
    {"no rebalance while other moves are decided",
     {{"w1", "counter", 1, 0}, {"w1b", "counter", 1, 0},
      {"n1", "counter", 0, 0}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a")}, 2, 1, NULL, 0, NULL, 0,
     {{"n1", 2, OL_PL_PLACE}}},
    {"a witness gets no new agents",
     {{"n1", "counter", 0, 0}, {"n2", "counter", 0, 0}},
     {LIVE(1, 0, "a"), NOHOST(2, 2, "a"), LIVE(3, 3, "b")}, 3, 0, NULL, 0,
     NULL, 0, {{"n1", 3, OL_PL_PLACE}, {"n2", 3, OL_PL_PLACE}}},
    {"agents on a node that became a witness or standby move off",
     {{"w1", "counter", 2, 2}},
     {LIVE(1, 0, "a"), NOHOST(2, 2, "a"), LIVE(3, 3, "b")}, 3, 0, NULL, 0,
     NULL, 0, {{"w1", 3, OL_PL_BALANCE}}},
    {"failover never lands on a witness, even in another cloud",
     {{"w1", "counter", 2, 2}},
     {LIVE(1, 0, "a"), DEAD(2, "a"), NOHOST(3, 3, "b")}, 3, 0, NULL, 0,
     NULL, 0, {{"w1", 1, OL_PL_FAILOVER}}},
    {"only witnesses up: nothing is placed",
     {{"n1", "counter", 0, 0}},
     {NOHOST(1, 0, "a"), NOHOST(2, 2, "a"), DEAD(3, "b")}, 3, 0, NULL, 0,
     NULL, 0, {{0}}},
    {"rebalance never fills a witness",
     {{"w1", "counter", 1, 0}, {"w1b", "counter", 1, 0},
      {"w1c", "counter", 1, 0}},
     {LIVE(1, 0, "a"), NOHOST(2, 2, "a")}, 2, 1, NULL, 0, NULL, 0,
     {{0}}},
    {"rebalance skips agents of a kind the idlest node cannot run",
     {{"w1", "counter", 1, 0}, {"w1b", "counter", 1, 0}},
     {LIVE(1, 0, "a"), LIVE(2, 2, "a")}, 2, 1, "counter", 1, NULL, 0,
     {{0}}},
};

static char dir[64], path[128];
static struct ol__store st;
static struct ol__sm *sm;

static void put_node(uint64_t id)
{
    struct ol__entry_w w;
    struct ol__key k;
    char addr[32];

    cr_assert_eq(ol__key_generate(&k), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:74%02u", (unsigned)id);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_node(&w, 100 + id, id, addr, k.pk, ""), 0);
    fx_apply(&st, sm, &w);
    ol__entry_w_close(&w);
}

/* The fixture database, nodes 2 and 3, and the case's agents and code. */
static void build(const struct pcase *c)
{
    static const uint8_t cfg[] = {0x80};
    struct ol__sm_config smc = {.retain = 0};
    char err[OL_ERRMSG_SIZE];
    struct ol__entry_w w;

    snprintf(dir, sizeof dir, "/tmp/ol-place-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/node.db", dir);
    fx_build_db(path);
    cr_assert_eq(ol__store_open(&st, path, OL_STORE_WRITE_FULL), 0, "%s",
                 st.errmsg);
    cr_assert_eq(ol__sm_open(&st, &smc, &sm, err), 0, "%s", err);
    put_node(2);
    put_node(3);
    ol__entry_w_init(&w);
    for (size_t i = 0; i < MAX_ROWS && c->spawns[i].name; i++)
        cr_assert_eq(ol__entry_add_spawn(&w, 200 + i, c->spawns[i].name,
                                         c->spawns[i].kind, cfg, sizeof cfg,
                                         c->spawns[i].owner,
                                         c->spawns[i].inc),
                     0);
    if (c->upgraded) {
        uint8_t hash[OL_HASH_SIZE];

        memset(hash, 0x5a, sizeof hash);
        cr_assert_eq(ol__entry_add_code(&w, 300, c->upgraded_on,
                                        c->upgraded, hash, "2.0", 1),
                     0);
    }
    if (w.n)
        fx_apply(&st, sm, &w);
    ol__entry_w_close(&w);
}

static void unbuild(void)
{
    char cmd[96];

    ol__sm_close(sm);
    ol__store_close(&st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    (void)fx_flip_body_byte; /* the fixture's; not needed here */
}

static int skip_one(void *data, const char *agent)
{
    return strcmp((const char *)data, agent) == 0;
}

/* Every move decided is one the case wants, for the agent it names ("*":
 * any one agent) and each wanted agent moves exactly once. */
static void check(const struct pcase *c, const struct ol__pl_move *out,
                  size_t n)
{
    size_t n_want = 0;

    while (n_want < MAX_ROWS && c->want[n_want].agent)
        n_want++;
    cr_expect_eq(n, n_want, "%s: %zu moves, wanted %zu", c->what, n,
                 n_want);
    for (size_t i = 0; i < n; i++) {
        const struct ol__sm_agent *a = ol__sm_agent(sm, out[i].agent);
        const struct want *w = NULL;

        for (size_t k = 0; k < n_want; k++)
            if (strcmp(c->want[k].agent, out[i].agent) == 0 ||
                strcmp(c->want[k].agent, "*") == 0)
                w = &c->want[k];
        cr_assert_not_null(w, "%s: unexpected move of '%s'", c->what,
                           out[i].agent);
        cr_assert_not_null(a);
        cr_expect_eq(out[i].reason, w->reason, "%s: '%s' reason %d",
                     c->what, out[i].agent, out[i].reason);
        if (w->owner)
            cr_expect_eq(out[i].owner, w->owner, "%s: '%s' to node %llu",
                         c->what, out[i].agent,
                         (unsigned long long)out[i].owner);
        cr_expect_eq(out[i].epoch, a->epoch + 1, "%s: a new epoch",
                     c->what);
        for (size_t k = 0; k < c->n_nodes; k++)
            if (c->nodes[k].id == out[i].owner)
                cr_expect_eq(out[i].inc, c->nodes[k].inc,
                             "%s: the grant names the target's "
                             "incarnation",
                             c->what);
    }
}

Test(placement, table)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct pcase *c = &cases[i];
        struct ol__pl_node nodes[MAX_ROWS];
        struct ol__pl_move out[MAX_ROWS];
        size_t n;

        build(c);
        memcpy(nodes, c->nodes, sizeof nodes);
        n = ol__placement(sm, nodes, c->n_nodes, c->rebalance,
                          c->skip ? skip_one : NULL, (void *)c->skip, out,
                          c->cap ? c->cap : MAX_ROWS);
        check(c, out, n);
        unbuild();
    }
}

/* The spread case in detail: its outcome depends on the order agents are
 * met only in which agent goes where, never in how many each node gets. */
Test(placement, new_agents_even_out_the_load)
{
    const struct pcase *c = &cases[1];
    struct ol__pl_node nodes[MAX_ROWS];
    struct ol__pl_move out[MAX_ROWS];
    size_t n, to2 = 0, to3 = 0;

    build(c);
    memcpy(nodes, c->nodes, sizeof nodes);
    n = ol__placement(sm, nodes, c->n_nodes, 0, NULL, NULL, out, MAX_ROWS);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        to2 += out[i].owner == 2;
        to3 += out[i].owner == 3;
    }
    cr_expect_eq(to2, 2);
    cr_expect_eq(to3, 1);
    cr_expect_eq(nodes[0].load, 2, "loads are left filled in");
    cr_expect_eq(nodes[1].load, 2);
    cr_expect_eq(nodes[2].load, 1);
    unbuild();
}

/* Affinity: node 1 cloud=home (load 2: the fixture's agents), node 2
 * cloud=aws (load 3), node 3 cloud=gcp (dead unless a case says). */
static const char *const node_labels[] = {"", "cloud=home,disk=ssd",
                                          "cloud=aws", "cloud=gcp"};

struct aff_row {
    const char *agent, *prefer, *avoid;
};

static const struct aff_row aff_rows[] = {
    {"pa", "cloud=aws", NULL},
    {"ah", NULL, "cloud=home"},
    {"all", NULL, "cloud=home, cloud=aws"},
    {"fo", "cloud=aws", NULL},
    {"x1", NULL, "disk=ssd"},
    {"x2", NULL, "disk=ssd"},
    {"x3", NULL, "disk=ssd"},
};

static void aff_of(void *data, const struct ol__sm_agent *a,
                   struct ol__pl_affinity *out)
{
    (void)data;
    for (size_t i = 0; i < sizeof aff_rows / sizeof aff_rows[0]; i++)
        if (strcmp(aff_rows[i].agent, a->name) == 0) {
            out->prefer = aff_rows[i].prefer;
            out->avoid = aff_rows[i].avoid;
        }
}

/* Run placement with affinity over `c`; returns the move of `agent` (its
 * owner 0 when it did not move) and how many moves there were. */
static size_t run_aff(const struct pcase *c, int rebalance,
                      const char *agent, struct ol__pl_move *m)
{
    struct ol__pl_node nodes[MAX_ROWS];
    struct ol__pl_move out[MAX_ROWS];
    size_t n;

    build(c);
    memcpy(nodes, c->nodes, sizeof nodes);
    for (size_t i = 0; i < c->n_nodes; i++)
        nodes[i].labels = node_labels[nodes[i].id];
    n = ol__placement_aff(sm, nodes, c->n_nodes, rebalance, NULL, NULL,
                          aff_of, NULL, out, MAX_ROWS);
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].agent, agent) == 0)
            *m = out[i];
    unbuild();
    return n;
}

#define X_ON_2 {"x1", "counter", 2, 2}, {"x2", "counter", 2, 2}, \
               {"x3", "counter", 2, 2}

Test(placement, affinity)
{
    struct ol__pl_move m;
    const struct pcase prefer = {
        .what = "prefer", .spawns = {X_ON_2, {"pa", "counter", 0, 0}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), DEAD(3, "gcp")}, .n_nodes = 3};
    const struct pcase plain = {
        .what = "no affinity", .spawns = {X_ON_2, {"none", "counter", 0, 0}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), DEAD(3, "gcp")}, .n_nodes = 3};
    const struct pcase avoid = {
        .what = "avoid", .spawns = {X_ON_2, {"ah", "counter", 0, 0}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), DEAD(3, "gcp")}, .n_nodes = 3};
    const struct pcase all = {
        .what = "all avoided", .spawns = {X_ON_2, {"all", "counter", 0, 0}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), DEAD(3, "gcp")}, .n_nodes = 3};
    const struct pcase fo = {
        .what = "failover keeps the preference", .spawns = {X_ON_2, {"fo", "counter", 3, 3}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), DEAD(3, "gcp")}, .n_nodes = 3};
    const struct pcase reb = {
        .what = "rebalance keeps off avoided nodes",
        .spawns = {X_ON_2, {"x4", "counter", 2, 2}, {"x5", "counter", 2, 2}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws")}, .n_nodes = 2};

    run_aff(&plain, 0, "none", &m);
    cr_expect_eq(m.owner, 1, "without affinity the idlest node (1) wins");
    run_aff(&prefer, 0, "pa", &m);
    cr_expect_eq(m.owner, 2, "prefer cloud=aws beats load");
    cr_expect_eq(m.avoided, 0);
    run_aff(&avoid, 0, "ah", &m);
    cr_expect_eq(m.owner, 2, "avoid cloud=home beats load");
    cr_expect_eq(m.avoided, 0);
    run_aff(&all, 0, "all", &m);
    cr_expect_eq(m.owner, 1, "every node avoided: the idlest, said so");
    cr_expect_eq(m.avoided, 1);
    run_aff(&fo, 0, "fo", &m);
    cr_expect_eq(m.owner, 2, "failover goes to the preferred node");
    cr_expect_eq(m.reason, OL_PL_FAILOVER);
    /* x1..x3 avoid disk=ssd (node 1); x4, x5 do not: only they may go. */
    cr_expect_eq(run_aff(&reb, 1, "x4", &m) +
                     run_aff(&reb, 1, "x5", &m),
                 2, "one rebalance move each run");
    run_aff(&reb, 1, "x1", &m);
    cr_expect_eq(m.owner, 0, "x1 avoids node 1: never rebalanced there");
}

Test(placement, labels_and_roles)
{
    char out[OL_LABELS_MAX + 1];

    cr_expect(ol__label_match("cloud=aws,zone=a", "cloud=gcp, zone=a"));
    cr_expect(!ol__label_match("cloud=aws", "cloud=aw"));
    cr_expect(!ol__label_match("cloud=aws", NULL));
    cr_expect(!ol__label_match(NULL, "cloud=aws"));
    cr_expect(ol__label_list_valid("cloud=aws"));
    cr_expect(ol__label_list_valid("cloud=aws,zone=a-1"));
    cr_expect(!ol__label_list_valid(""));
    cr_expect(!ol__label_list_valid("cloud"));
    cr_expect(!ol__label_list_valid("cloud="));
    cr_expect(!ol__label_list_valid("=aws"));
    cr_expect(!ol__label_list_valid("cloud=aws,"));
    cr_expect(!ol__label_list_valid("cloud=a ws"));
    cr_expect_eq(ol__label_role(""), OL_ROLE_VOTER);
    cr_expect_eq(ol__label_role("cloud=a,role=witness"), OL_ROLE_WITNESS);
    cr_expect_eq(ol__label_role("role=standby"), OL_ROLE_STANDBY);
    cr_expect_eq(ol__label_role("role=boss"), -1);
    cr_expect_eq(ol__role_parse("voter"), OL_ROLE_VOTER);
    cr_expect_eq(ol__role_parse("leader"), -1);
    cr_assert_eq(ol__labels_with_role("cloud=a,role=standby", OL_ROLE_VOTER,
                                      out, sizeof out), 0);
    cr_expect_str_eq(out, "cloud=a");
    cr_assert_eq(ol__labels_with_role("role=standby,cloud=a",
                                      OL_ROLE_WITNESS, out, sizeof out), 0);
    cr_expect_str_eq(out, "cloud=a,role=witness");
    cr_assert_eq(ol__labels_with_role("", OL_ROLE_STANDBY, out, sizeof out),
                 0);
    cr_expect_str_eq(out, "role=standby");
    cr_expect_eq(ol__labels_with_role("cloud=aws", OL_ROLE_STANDBY, out, 8),
                 -1);
}

Test(placement, handoff_wait)
{
    static const struct {
        uint64_t from, to;
        int health;
        uint32_t want;
    } rows[] = {
        {0, 2, OL_PL_LIVE, 0},      /* first placement */
        {2, 2, OL_PL_LIVE, 0},      /* re-grant */
        {1, 2, OL_PL_DEAD, 0},      /* off a dead node */
        {1, 2, OL_PL_LIVE, 1078},   /* ceil(800 * 110 / 90) + 100 */
        {1, 2, OL_PL_UNKNOWN, 1078},
    };

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        cr_expect_eq(ol__pl_handoff_ms(rows[i].from, rows[i].to,
                                       rows[i].health, 800, 10, 100),
                     rows[i].want, "row %zu", i);
    /* at 1%: ceil(800 * 101 / 99) + 100 */
    cr_expect_eq(ol__pl_handoff_ms(1, 2, OL_PL_LIVE, 800, 1, 100), 917);
    cr_expect_eq(ol__pl_handoff_ms(1, 2, OL_PL_LIVE, 4000000000u, 10, 100),
                 OL_MOVE_HOLD_MAX_MS, "capped");
}

Test(placement, labels)
{
    char v[16];

    ol__label_get("zone=z1, cloud=aws,rack=7", "cloud", v, sizeof v);
    cr_expect_str_eq(v, "aws");
    ol__label_get("cloudy=x,cloud=gcp", "cloud", v, sizeof v);
    cr_expect_str_eq(v, "gcp", "a key that only starts the same is not it");
    ol__label_get("rack=7", "cloud", v, sizeof v);
    cr_expect_str_eq(v, "");
    ol__label_get("", "cloud", v, sizeof v);
    cr_expect_str_eq(v, "");
    ol__label_get("cloud=averyveryverylongname", "cloud", v, 8);
    cr_expect_str_eq(v, "averyve", "truncated to the buffer");
}

/* Busy agents near the leader (placement.h).  Node 1 is the leader (RTT
 * 0); the RTTs of nodes 2 and 3 are each case's.  Agents whose names start
 * with 'b' are busy, and so are those `busy_also` names. */
struct near {
    const struct pcase *c;
    uint32_t rtt2_us, rtt3_us;
    const char *busy_also;
    int rebalance;
    int labels; /* node_labels and aff_of as in the affinity test */
};

static int busy_of(void *data, const struct ol__sm_agent *a)
{
    const char *also = data;

    return a->name[0] == 'b' || (also && strstr(also, a->name) != NULL);
}

static size_t run_near(const struct near *t, struct ol__pl_move *out)
{
    struct ol__pl_node nodes[MAX_ROWS];
    struct ol__pl_opts o = {.rebalance = t->rebalance,
                            .busy = busy_of,
                            .busy_data = (void *)t->busy_also};
    size_t n;

    build(t->c);
    memcpy(nodes, t->c->nodes, sizeof nodes);
    for (size_t i = 0; i < t->c->n_nodes; i++) {
        nodes[i].rtt_us = nodes[i].id == 2   ? t->rtt2_us
                          : nodes[i].id == 3 ? t->rtt3_us
                                             : 0;
        if (t->labels)
            nodes[i].labels = node_labels[nodes[i].id];
    }
    if (t->labels)
        o.aff = aff_of;
    n = ol__placement_run(sm, nodes, t->c->n_nodes, &o, out, MAX_ROWS);
    unbuild();
    return n;
}

static uint64_t owner_of(const struct ol__pl_move *out, size_t n,
                         const char *agent)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].agent, agent) == 0)
            return out[i].owner;
    return 0;
}

Test(placement, busy_agents_fail_over_near_the_leader)
{
    /* Node 1 (the leader, cloud a) holds the fixture's two idle agents;
     * node 2 (cloud b) is empty and 30 ms away; node 3 died. */
    const struct pcase c = {
        .what = "busy and idle fail over",
        .spawns = {{"b1", "counter", 3, 3}, {"i1", "counter", 3, 3}},
        .nodes = {LIVE(1, 0, "a"), LIVE(2, 2, "b"), DEAD(3, "c")},
        .n_nodes = 3};
    const struct near t = {&c, 30000, 80000, NULL, 0, 0};
    struct ol__pl_move out[MAX_ROWS];
    size_t n = run_near(&t, out);

    cr_assert_eq(n, 2);
    cr_expect_eq(owner_of(out, n, "b1"), 1,
                 "the busy agent goes to the leader (RTT 0), not the "
                 "idlest node");
    cr_expect_eq(owner_of(out, n, "i1"), 2,
                 "the idle agent keeps the least-loaded rule");
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(out[i].reason, OL_PL_FAILOVER);
}

Test(placement, busy_agents_spread_by_fair_share)
{
    /* Six busy agents lose node 3; nodes 1 and 2 may host them: fair
     * share ceil(6 / 2) = 3, cap 3 + 1 = 4.  The near node fills to the
     * cap, the rest go to node 2. */
    const struct pcase c = {
        .what = "six busy agents fail over",
        .spawns = {{"b1", "counter", 3, 3}, {"b2", "counter", 3, 3},
                   {"b3", "counter", 3, 3}, {"b4", "counter", 3, 3},
                   {"b5", "counter", 3, 3}, {"b6", "counter", 3, 3}},
        .nodes = {LIVE(1, 0, "a"), LIVE(2, 2, "b"), DEAD(3, "c")},
        .n_nodes = 3};
    const struct near t = {&c, 30000, 80000, NULL, 0, 0};
    struct ol__pl_move out[MAX_ROWS];
    size_t n = run_near(&t, out), to1 = 0, to2 = 0;

    cr_expect_eq(ol__pl_busy_cap(6, 2), 4);
    cr_expect_eq(ol__pl_busy_cap(300, 3), 125, "fair 100 + a quarter");
    cr_expect_eq(ol__pl_busy_cap(1, 3), 2);
    cr_assert_eq(n, 6);
    for (size_t i = 0; i < n; i++) {
        to1 += out[i].owner == 1;
        to2 += out[i].owner == 2;
    }
    cr_expect_eq(to1, 4, "the leader takes up to the cap (%zu)", to1);
    cr_expect_eq(to2, 2, "the rest spread to node 2 (%zu)", to2);
}

Test(placement, affinity_beats_nearness)
{
    /* Node 1 is cloud=home (the leader), node 2 cloud=aws (30 ms), node 3
     * cloud=gcp, dead.  "pa" prefers aws, "ah" avoids home: both busy. */
    const struct pcase c = {
        .what = "busy agents with affinity",
        .spawns = {{"pa", "counter", 3, 3}, {"ah", "counter", 3, 3}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), DEAD(3, "gcp")},
        .n_nodes = 3};
    const struct near t = {&c, 30000, 80000, "pa,ah", 0, 1};
    struct ol__pl_move out[MAX_ROWS];
    size_t n = run_near(&t, out);

    cr_assert_eq(n, 2);
    cr_expect_eq(owner_of(out, n, "pa"), 2, "prefer beats nearness");
    cr_expect_eq(owner_of(out, n, "ah"), 2, "avoid beats nearness");
}

Test(placement, rebalance_brings_one_busy_agent_nearer)
{
    /* Loads 2 / 1 / 2: even enough that the load rule moves nothing.
     * Two busy agents sit on node 3, 80 ms from the leader. */
    const struct pcase c = {
        .what = "nearer",
        .spawns = {{"b1", "counter", 3, 3}, {"b2", "counter", 3, 3},
                   {"i1", "counter", 2, 2}},
        .nodes = {LIVE(1, 0, "a"), LIVE(2, 2, "b"), LIVE(3, 3, "c")},
        .n_nodes = 3};
    struct near t = {&c, 30000, 80000, NULL, 1, 0};
    struct ol__pl_move out[MAX_ROWS];
    size_t n = run_near(&t, out);

    cr_assert_eq(n, 1, "one move per pass");
    cr_expect(out[0].agent[0] == 'b', "a busy agent moves ('%s')",
              out[0].agent);
    cr_expect_eq(out[0].owner, 1, "to the leader, the nearest");
    cr_expect_eq(out[0].reason, OL_PL_BALANCE);
    cr_expect(out[0].closer);
    cr_expect_eq(out[0].rtt_from_us, 80000);
    cr_expect_eq(out[0].rtt_to_us, 0);
    t.rebalance = 0;
    cr_expect_eq(run_near(&t, out), 0, "only when rebalancing");
    t.rebalance = 1;
    t.busy_also = NULL;
    {
        /* The same agents idle: nothing moves. */
        const struct pcase idle = {
            .what = "idle",
            .spawns = {{"i2", "counter", 3, 3}, {"i3", "counter", 3, 3},
                       {"i1", "counter", 2, 2}},
            .nodes = {LIVE(1, 0, "a"), LIVE(2, 2, "b"), LIVE(3, 3, "c")},
            .n_nodes = 3};
        const struct near ti = {&idle, 30000, 80000, NULL, 1, 0};

        cr_expect_eq(run_near(&ti, out), 0, "idle agents stay");
    }
}

Test(placement, nearer_only_past_the_hysteresis_and_affinity)
{
    /* Node 1 (cloud=home, the leader) holds two idle agents; "ah" (busy,
     * avoids home) on node 3 (gcp, 80 ms) may only go to node 2 (aws);
     * "i1" keeps the loads even (2 / 1 / 1). */
    const struct pcase c = {
        .what = "hysteresis",
        .spawns = {{"ah", "counter", 3, 3}, {"i1", "counter", 2, 2}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), LIVE(3, 3, "gcp")},
        .n_nodes = 3};
    const struct pcase pref = {
        .what = "prefer holds",
        .spawns = {{"fo", "counter", 2, 2}, {"i1", "counter", 3, 3}},
        .nodes = {LIVE(1, 0, "home"), LIVE(2, 2, "aws"), LIVE(3, 3, "gcp")},
        .n_nodes = 3};
    struct near t = {&c, 75000, 80000, "ah,fo", 1, 1};
    struct ol__pl_move out[MAX_ROWS];
    size_t n;

    cr_expect_eq(run_near(&t, out), 0, "5 ms nearer: it stays");
    t.rtt2_us = 80000 - OL_PL_NEAR_HYST_US + 1;
    cr_expect_eq(run_near(&t, out), 0, "just short of the hysteresis");
    t.rtt2_us = 80000 - OL_PL_NEAR_HYST_US;
    n = run_near(&t, out);
    cr_assert_eq(n, 1);
    cr_expect_eq(owner_of(out, n, "ah"), 2,
                 "nearer by the hysteresis, never onto the avoided leader");
    t.c = &pref;
    t.rtt2_us = 30000;
    cr_expect_eq(run_near(&t, out), 0,
                 "a busy agent on a node it prefers stays there");
}

Test(placement, load_rebalance_keeps_busy_agents_near)
{
    /* The fixture's two agents on the leader, node 2 empty (30 ms): the
     * load rule would move one.  Busy, they stay: the leader is within
     * the fair-share cap (2 of 2). */
    const struct pcase c = {
        .what = "busy on the leader",
        .spawns = {{0}},
        .nodes = {LIVE(1, 0, "a"), LIVE(2, 2, "b"), DEAD(3, "c")},
        .n_nodes = 3};
    struct near t = {&c, 30000, 80000, "sink,ticker", 1, 0};
    struct ol__pl_move out[MAX_ROWS];

    struct ol__pl_move m[MAX_ROWS];
    const struct pcase over = {
        .what = "over the cap",
        .spawns = {{"b1", "counter", 1, 0}, {"b2", "counter", 1, 0}},
        .nodes = {LIVE(1, 0, "a"), LIVE(2, 2, "b"), DEAD(3, "c")},
        .n_nodes = 3};
    const struct near t4 = {&over, 30000, 80000, "sink,ticker", 1, 0};

    cr_expect_eq(run_near(&t, out), 0, "busy agents stay near the leader");
    t.busy_also = NULL;
    cr_expect_eq(run_near(&t, out), 1, "idle ones are balanced as before");
    /* Four busy agents on the leader, cap ceil(4 / 2) + 1 = 3: one goes. */
    cr_expect_eq(run_near(&t4, m), 1, "over the cap, one is moved off");
    cr_expect_eq(m[0].owner, 2);
}

Test(placement, busy_agents_spread_over_clouds)
{
    /* Nodes 1 (the leader) and 2 (1 ms: as near) share cloud a, node 3
     * (30 ms) is cloud b.  Six new busy agents: node cap ceil(6 / 3) + 1
     * = 3, cloud cap ceil(6 / 2) + 1 = 4.  Cloud a fills to 4 (by load
     * between its two nodes, each within 3), then the last two go to
     * cloud b. */
    const struct pcase c = {
        .what = "six busy agents placed",
        .spawns = {{"b1", "counter", 0, 0}, {"b2", "counter", 0, 0},
                   {"b3", "counter", 0, 0}, {"b4", "counter", 0, 0},
                   {"b5", "counter", 0, 0}, {"b6", "counter", 0, 0}},
        .nodes = {LIVE(1, 0, "a"), LIVE(2, 2, "a"), LIVE(3, 3, "b")},
        .n_nodes = 3};
    const struct near t = {&c, 1000, 30000, NULL, 0, 0};
    struct ol__pl_move out[MAX_ROWS];
    size_t n = run_near(&t, out), to[4] = {0};

    cr_assert_eq(n, 6);
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(out[i].reason, OL_PL_PLACE);
        if (out[i].owner <= 3)
            to[out[i].owner]++;
    }
    cr_expect_eq(to[1] + to[2], 4, "the leader's cloud fills to its cap "
                 "(%zu + %zu)", to[1], to[2]);
    cr_expect(to[1] <= 3 && to[2] <= 3, "each node within the node cap");
    cr_expect_eq(to[2], 3, "node 2, idler, first (%zu)", to[2]);
    cr_expect_eq(to[3], 2, "the rest to the other cloud (%zu)", to[3]);
}
