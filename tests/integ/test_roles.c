/*
 * Node roles and agent affinity on a real cluster of outlastd processes on
 * loopback:
 *  - a witness votes but never hosts an agent, also after the node
 *    hosting agents is killed, and holds no agent lease;
 *  - a standby receives the log but does not count for quorum (two of
 *    three voters down: nothing commits though the standby is up); once
 *    promoted its vote makes the majority, and demoted it is a standby
 *    again;
 *  - agents with prefer/avoid labels are placed and failed over by them,
 *    and an agent that avoids every node is still placed, with a warning;
 *  - promote of an unknown node is refused by name.
 * Every wait is bounded.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"

#define WAIT_MS 20000

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(roles, .fini = teardown, .timeout = 300);

/* Write every node's config with roles[i] ("voter", "witness",
 * "standby") for node i, in its own [cluster] section and in the others'
 * [peer] sections; `bootstrap` as given. */
static void write_with_roles(const char *const *roles, int bootstrap)
{
    for (int i = 0; i < c.n; i++) {
        struct tc_node *nd = &c.nodes[i];
        FILE *f = fopen(nd->d.conf, "w"), *h;
        char *head = NULL, *b;
        size_t len = 0;

        cr_assert_not_null(f);
        h = open_memstream(&head, &len);
        cr_assert_not_null(h);
        tc_write_head(h, &c, nd->id, nd->d.data, nd->labels, nd->addr, 1000);
        fclose(h);
        if (!bootstrap && (b = strstr(head, "bootstrap = true")) != NULL)
            memcpy(b, "bootstrap = no  ", 16);
        fputs(head, f);
        free(head);
        fprintf(f, "segment_mb = 8\nrole = %s\n", roles[i]);
        for (int j = 0; j < c.n; j++)
            if (j != i)
                fprintf(f,
                        "[peer.%" PRIu64 "]\naddress = %s\npubkey = %s\n"
                        "labels = %s\nrole = %s\n",
                        c.nodes[j].id, c.nodes[j].addr, c.nodes[j].pk,
                        c.nodes[j].labels, roles[j]);
        fclose(f);
    }
}

static void start_all(void)
{
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0,
                     "node %d did not start; see %s", i + 1,
                     c.nodes[i].d.log);
}

static void start_with_roles(const char *const *roles)
{
    write_with_roles(roles, 1);
    start_all();
}

static void spawn(int via, const char *name, const char *config)
{
    char err[512];

    cr_assert_eq(td_spawn_agent(&c.nodes[via].d, "counter", name, config,
                                err, sizeof err),
                 0, "spawn '%s' via node %d: %s", name, via + 1, err);
}

/* Node `id`'s role and whether raft has it as a voter, as node `via`'s
 * cluster.status shows; 0, or -1 when it does not answer or lists no
 * such node. */
static int role_of(int via, uint64_t id, char *role, size_t cap, int *voter)
{
    struct td_resp r;
    const msgpack_object *nodes;
    int found = -1;

    if (td_call(&c.nodes[via].d, &r, "op", "cluster.status", NULL) != 0) {
        td_resp_free(&r);
        return -1;
    }
    nodes = td_get(td_get(&r.u.data, "cluster"), "nodes");
    for (uint32_t k = 0; nodes && nodes->type == MSGPACK_OBJECT_ARRAY &&
                         k < nodes->via.array.size;
         k++) {
        const msgpack_object *nd = &nodes->via.array.ptr[k];
        const msgpack_object *ro = td_get(nd, "role");
        const msgpack_object *vo = td_get(nd, "voter");

        if ((uint64_t)td_int(nd, "id", 0) != id)
            continue;
        snprintf(role, cap, "%.*s",
                 ro && ro->type == MSGPACK_OBJECT_STR ? (int)ro->via.str.size
                                                      : 0,
                 ro && ro->type == MSGPACK_OBJECT_STR ? ro->via.str.ptr : "");
        *voter = vo && vo->type == MSGPACK_OBJECT_BOOLEAN && vo->via.boolean;
        found = 0;
    }
    td_resp_free(&r);
    return found;
}

/* Wait until node `via` shows node `id` with `role` and raft voter
 * `voter`. */
static int wait_role(int via, uint64_t id, const char *role, int voter)
{
    uint64_t end = td_ms() + WAIT_MS;
    char got[32] = "";
    int v = -1;

    do {
        if (role_of(via, id, got, sizeof got, &v) == 0 &&
            strcmp(got, role) == 0 && v == voter)
            return 1;
        td_sleep_ms(100);
    } while (td_ms() < end);
    cr_log_error("node %" PRIu64 " shows as '%s' voter %d, not '%s' voter %d",
                 id, got, v, role, voter);
    return 0;
}

/* The owner of `agent` as node `via` shows it (0: not placed or absent),
 * once it runs with a checkpoint under its current owner. */
static uint64_t owner_of(int via, const char *agent)
{
    struct tc_agent a[64];
    int n = tc_agents(&c, via, a, 64);

    for (int i = 0; i < n; i++)
        if (strcmp(a[i].name, agent) == 0 &&
            strcmp(a[i].status, "running") == 0 && a[i].seq > 0)
            return a[i].owner;
    return 0;
}

static uint64_t wait_owner(int via, const char *agent, uint64_t not_on)
{
    uint64_t end = td_ms() + WAIT_MS, o = 0;

    do {
        o = owner_of(via, agent);
        if (o && o != not_on)
            return o;
        td_sleep_ms(100);
    } while (td_ms() < end);
    return 0;
}

/* Run `outlast ARGS` against node i; returns its exit status, its output
 * in `out` (may be NULL). */
static int cli(int i, char *out, size_t cap, const char *args)
{
    char *o = NULL;
    int rv = td_sh(&o, "'%s' --socket '%s' %s 2>&1", td_bin("outlast"),
                   c.nodes[i].d.sock, args);

    if (out)
        snprintf(out, cap, "%s", o ? o : "");
    free(o);
    return rv;
}

Test(roles, witness_hosts_no_agents, .timeout = 300)
{
    static const char *const roles[] = {"voter", "voter", "voter",
                                        "witness"};
    struct tc_opts o = {.n = 4, .tag = "witness"};
    struct tc_agent moved[64];
    struct tc_status st;
    char name[16], why[512];
    int leader, victim, n_moved;

    tc_init(&c, &o);
    start_with_roles(roles);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0, "no leader");
    cr_assert(wait_role(leader, 4, "witness", 1),
              "the witness is a raft voter with role witness");
    {
        char out[4096];

        cr_assert_eq(cli(leader, out, sizeof out, "cluster status"), 0, "%s",
                     out);
        cr_expect(strstr(out, "witness") != NULL,
                  "cluster status shows no witness:\n%s", out);
    }
    for (int i = 0; i < 9; i++) {
        snprintf(name, sizeof name, "w%d", i);
        spawn(leader, name, "{\"interval_ms\": 50}");
    }
    for (int i = 0; i < 9; i++) {
        snprintf(name, sizeof name, "w%d", i);
        cr_assert_neq(wait_owner(leader, name, 0), 0, "'%s' not running",
                      name);
    }
    cr_expect_eq(tc_agents_on(&c, leader, 3, moved, 64), 0,
                 "an agent was placed on the witness");
    cr_assert_eq(tc_status(&c, 3, &st), 0);
    cr_expect_eq(st.lease, 0, "the witness holds an agent lease");

    /* Kill a voter hosting agents (not the leader, nor the witness). */
    victim = tc_pick_follower(&c, leader, 1u << 3);
    cr_assert_geq(victim, 0, "no follower hosts an agent");
    n_moved = tc_agents_on(&c, leader, victim, moved, 64);
    tc_kill(&c, victim);
    cr_assert(tc_wait_moved(&c, leader, moved, n_moved, victim, WAIT_MS, why,
                            sizeof why),
              "node %d's agents did not move: %s", victim + 1, why);
    cr_expect_eq(tc_agents_on(&c, leader, 3, moved, 64), 0,
                 "failover put an agent on the witness");
}

Test(roles, standby_replicates_without_voting, .timeout = 300)
{
    static const char *const roles[] = {"voter", "voter", "voter",
                                        "standby"};
    struct tc_opts o = {.n = 4, .tag = "standby"};
    struct tc_agent none[64];
    struct tc_status st;
    char out[1024], err[512], args[64];
    int leader, alive, back;
    uint64_t end, commit;

    tc_init(&c, &o);
    start_with_roles(roles);
    leader = tc_wait_leader(&c, 7, 15000);
    cr_assert_geq(leader, 0, "no leader");
    cr_assert_neq(leader, 3, "the standby leads");
    cr_assert(wait_role(leader, 4, "standby", 0),
              "node 4 is a raft standby");
    spawn(leader, "s1", "{\"interval_ms\": 30}");
    cr_assert_neq(wait_owner(leader, "s1", 0), 0);
    cr_expect_eq(tc_agents_on(&c, leader, 3, none, 64), 0,
                 "an agent was placed on the standby");
    /* The standby receives the log: the agent's checkpoints reach it. */
    end = td_ms() + WAIT_MS;
    while (tc_ckpt_count(&c, 3) < 5 && td_ms() < end)
        td_sleep_ms(100);
    cr_assert_geq(tc_ckpt_count(&c, 3), 5, "the standby got no log");

    /* Promote of an unknown node is refused by name. */
    cr_expect_neq(cli(leader, out, sizeof out, "cluster promote 99"), 0);
    cr_expect(strstr(out, "no node 99") != NULL, "answer: %s", out);

    /* Two of three voters down: no quorum, the standby does not count. */
    alive = leader;
    back = -1;
    for (int i = 0; i < 3; i++)
        if (i != alive) {
            tc_kill(&c, i);
            if (back < 0)
                back = i;
        }
    td_sleep_ms(2500); /* the lone voter's leadership lapses */
    cr_assert_eq(tc_status(&c, alive, &st), 0);
    commit = st.commit_index;
    cr_expect_neq(td_spawn_agent(&c.nodes[alive].d, "counter", "nq", NULL,
                                 err, sizeof err),
                  0, "a spawn committed without a majority of voters");
    td_sleep_ms(1500);
    cr_assert_eq(tc_status(&c, alive, &st), 0);
    cr_expect_eq(st.commit_index, commit, "commits went on without quorum");
    cr_assert_eq(tc_status(&c, 3, &st), 0);
    cr_expect(strcmp(st.role, "leader") != 0, "the standby was elected");

    /* One voter back: a leader; promote the standby. */
    cr_assert_eq(tc_start_node(&c, back, 15000), 0);
    leader = tc_wait_leader(&c, (1u << alive) | (1u << back), 15000);
    cr_assert_geq(leader, 0, "no leader with two voters back");
    snprintf(args, sizeof args, "cluster promote 4");
    end = td_ms() + WAIT_MS;
    while (cli(leader, out, sizeof out, args) != 0 && td_ms() < end) {
        td_sleep_ms(300);
        leader = tc_wait_leader(&c, (1u << alive) | (1u << back), 5000);
        cr_assert_geq(leader, 0);
    }
    cr_assert(wait_role(leader, 4, "voter", 1), "promotion did not land");
    /* Node 4's config still says standby: it says the roster differs. */
    end = td_ms() + WAIT_MS;
    while (tc_log_count(&c, 3, "configured role standby but the cluster's "
                               "roster has voter") == 0 &&
           td_ms() < end)
        td_sleep_ms(100);
    cr_expect_gt(tc_log_count(&c, 3, "configured role standby but the "
                                     "cluster's roster has voter"),
                 0, "node 4 did not report its role mismatch");
    /* Four voters with one down: a majority (3) needs the promoted
     * standby's vote. Kill nothing more; a spawn must commit. */
    spawn(leader, "after", "{\"interval_ms\": 50}");
    cr_assert_neq(wait_owner(leader, "after", 0), 0,
                  "no commit with the promoted standby's vote");
    /* Its vote is needed: with it down too, nothing commits. */
    tc_kill(&c, 3);
    td_sleep_ms(2500);
    cr_expect_neq(td_spawn_agent(&c.nodes[leader].d, "counter", "nq2", NULL,
                                 err, sizeof err),
                  0, "committed without the promoted node's vote");
    cr_assert_eq(tc_start_node(&c, 3, 15000), 0);
    leader = tc_wait_leader(&c, (1u << alive) | (1u << back) | 8u, 15000);
    cr_assert_geq(leader, 0);
    /* Demote it again: raft makes it a standby. */
    end = td_ms() + WAIT_MS;
    while (cli(leader, out, sizeof out, "cluster demote 4") != 0 &&
           td_ms() < end) {
        td_sleep_ms(300);
        leader = tc_wait_leader(&c, (1u << alive) | (1u << back), 5000);
        cr_assert_geq(leader, 0);
    }
    cr_expect(wait_role(leader, 4, "standby", 0), "demotion did not land");
}

Test(roles, affinity_places_and_fails_over, .timeout = 300)
{
    struct tc_opts o = {.n = 3, .tag = "affinity"};
    char name[16];
    int leader;
    uint64_t got;

    tc_init(&c, &o); /* labels cloud=c1, cloud=c2, cloud=c3 */
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0, "no leader");
    /* Node 2 busy with agents that want it. */
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "z%d", i);
        spawn(leader, name, "{\"interval_ms\": 80, \"prefer\": \"cloud=c2\"}");
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "z%d", i);
        got = wait_owner(leader, name, 0);
        cr_assert_eq(got, 2, "'%s' (prefer cloud=c2) on node %" PRIu64,
                     name, got);
    }
    spawn(leader, "pa", "{\"interval_ms\": 50, \"prefer\": "
                        "\"cloud=c3,cloud=c2\"}");
    spawn(leader, "av", "{\"interval_ms\": 50, \"avoid\": "
                        "\"cloud=c2,cloud=c3\"}");
    got = wait_owner(leader, "pa", 0);
    cr_assert_eq(got, 3, "'pa' (prefer c3, c2) on node %" PRIu64, got);
    got = wait_owner(leader, "av", 0);
    cr_assert_eq(got, 1, "'av' (avoid c2, c3) on node %" PRIu64, got);

    /* Node 3 dies: 'pa' goes to the other node it prefers (node 2, with
     * three agents) rather than the idler node 1; 'av' stays. */
    tc_kill(&c, 2);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0, "no leader after killing node 3");
    got = wait_owner(leader, "pa", 3);
    cr_expect_eq(got, 2, "'pa' failed over to node %" PRIu64 ", not 2", got);
    got = wait_owner(leader, "av", 0);
    cr_expect_eq(got, 1, "'av' now on node %" PRIu64, got);

    /* Every node avoided: placed anyway, and the leader says so. */
    spawn(leader, "ax", "{\"interval_ms\": 50, \"avoid\": "
                        "\"cloud=c1,cloud=c2,cloud=c3\"}");
    cr_expect_neq(wait_owner(leader, "ax", 0), 0, "'ax' was not placed");
    cr_expect_gt(tc_log_count(&c, leader, "but no other node that may host "
                                          "it is up"),
                 0, "no warning that 'ax' went to a node it avoids");
}

Test(roles, bad_affinity_at_spawn_is_refused, .timeout = 120)
{
    struct tc_opts o = {.n = 1, .tag = "badaff"};
    char err[512], out[1024];

    tc_init(&c, &o);
    tc_start(&c);
    cr_assert_geq(tc_wait_leader(&c, 0, 15000), 0);
    cr_expect_neq(td_spawn_agent(&c.nodes[0].d, "counter", "b1",
                                 "{\"prefer\": \"cloud\"}", err, sizeof err),
                  0);
    cr_expect(strstr(err, "config key 'prefer' must be labels") != NULL,
              "error: %s", err);
    cr_expect_neq(cli(0, out, sizeof out,
                      "spawn counter b2 --avoid 'cloud=a,'"),
                  0);
    cr_expect(strstr(out, "--avoid must be labels k=v,k=v") != NULL,
              "answer: %s", out);
    cr_expect_eq(cli(0, out, sizeof out,
                     "spawn counter b3 --prefer cloud=c1 --avoid zone=z"),
                 0, "answer: %s", out);
}

/* `outlast cluster init --all` bootstraps every node offline the way
 * `bootstrap = true` does: a node whose role is standby is a raft
 * non-voter from the first configuration on, so two of the three voters
 * elect a leader before the standby or the third voter ever started (were
 * the standby a voter, two of four would not). */
Test(roles, cluster_init_all_makes_a_standby_a_non_voter, .timeout = 300)
{
    static const char *const roles[] = {"voter", "voter", "voter",
                                        "standby"};
    struct tc_opts o = {.n = 4, .tag = "initall"};
    int leader;

    tc_init(&c, &o);
    write_with_roles(roles, 0);
    for (int i = 0; i < c.n; i++) {
        char *out = NULL;
        int rv = td_sh(&out, "'%s' --json cluster init --config '%s' --all "
                             "2>&1",
                       td_bin("outlast"), c.nodes[i].d.conf);

        cr_assert_eq(rv, 0, "cluster init of node %d: %s", i + 1,
                     out ? out : "");
        cr_expect(strstr(out, "\"voters\": 3") != NULL,
                  "node %d: init counts the standby as a voter: %s", i + 1,
                  out);
        free(out);
    }
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0,
                     "node %d did not start; see %s", i + 1,
                     c.nodes[i].d.log);
    leader = tc_wait_leader(&c, 3, 15000);
    cr_assert(leader == 0 || leader == 1,
              "two of three voters elected no leader: the first "
              "configuration has more voters");
    for (int i = 2; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0,
                     "node %d did not start; see %s", i + 1,
                     c.nodes[i].d.log);
    cr_assert(wait_role(leader, 4, "standby", 0),
              "node 4 is not a raft standby after cluster init --all");
    cr_expect(wait_role(leader, 1, "voter", 1), "node 1 is no voter");
}
