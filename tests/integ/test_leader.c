/*
 * Steering the leader, with real outlastd processes on loopback (nodes
 * labelled cloud=c<id>):
 *  - `outlast cluster transfer ID` makes node ID lead while agents keep
 *    committing, and `cluster transfer` with no id hands leadership to
 *    another voter; the invariant checker then finds every node agreeing;
 *  - bad requests get a clear error and change nothing: an unknown id,
 *    the leader itself, a follower asked (it names the leader), a transfer
 *    while one is in flight, a target that does not take over in time;
 *  - with leader_preference = cloud=c2,cloud=c3, node 2 leads; frozen
 *    (SIGSTOP), node 3 takes over (node 1 ranks last); thawed, handed
 *    away by hand, and killed and restarted, node 2 leads again within a
 *    bounded time;
 *  - a node killed just before a transfer is "down", not "unknown", in
 *    the new leader's status once a failover period has passed, and its
 *    agents move;
 *  - a malformed leader_preference keeps outlastd from starting, with an
 *    error naming the key and the value.
 * Waits are bounded; nothing is timed beyond them.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"
#include "tests/support/faults.h"

#define LEADER_MS 15000
#define STEER_MS 20000 /* a preferred node takes over: hold-down (2 x 300
                        * ms) after it is healthy, plus elections */
#define COMMIT_MS 20000
#define CHECK_MS 30000
#define N_AGENTS 6

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(leader, .fini = teardown, .timeout = 300);

/* Run `outlast --data-dir <node i> ARGS` (stderr too); its exit code. */
static int cli(int i, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cli(int i, char **out, const char *fmt, ...)
{
    char args[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return td_sh(out, "'%s' --data-dir '%s' %s 2>&1", td_bin("outlast"),
                 c.nodes[i].d.data, args);
}


static void spawn_agents(int via)
{
    char name[16], err[512];

    for (int k = 0; k < N_AGENTS; k++) {
        snprintf(name, sizeof name, "k%d", k);
        cr_assert_eq(td_spawn_agent(&c.nodes[via].d, "counter", name,
                                    "{\"interval_ms\": 20}", err, sizeof err),
                     0, "spawn %s: %s", name, err);
    }
}

static void start_cluster(const char *tag, const char *pref)
{
    struct tc_opts o = {.n = 3, .tag = tag};

    tc_init(&c, &o);
    for (int i = 0; i < c.n; i++) {
        FILE *f = fopen(c.nodes[i].d.conf, "w");

        cr_assert_not_null(f);
        tc_write_head(f, &c, c.nodes[i].id, c.nodes[i].d.data,
                      c.nodes[i].labels, c.nodes[i].addr, 1000);
        fprintf(f, "segment_mb = 8\n");
        if (pref)
            fprintf(f, "leader_preference = %s\n", pref);
        tc_write_peers(f, &c, c.nodes[i].id);
        fclose(f);
    }
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0,
                     "node %d did not start; see %s", i + 1,
                     c.nodes[i].d.log);
}

/* A cluster with no preference whose agents commit; the leader's index. */
static int start_committing(const char *tag)
{
    int leader;

    start_cluster(tag, NULL);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    spawn_agents(leader);
    cr_assert(tc_wait_commits(&c, leader, 30, COMMIT_MS),
              "agents never commit");
    return leader;
}

Test(leader, transfer_moves_leadership_while_agents_commit)
{
    char *out = NULL;
    int leader, target, next, rc;

    leader = start_committing("lead-xfer");

    target = (leader + 1) % c.n;
    rc = cli(leader, &out, "cluster transfer %" PRIu64, c.nodes[target].id);
    cr_assert_eq(rc, 0, "cluster transfer: exit %d: %s", rc, out);
    cr_expect(strstr(out, "leads now"), "%s", out);
    free(out);
    cr_assert(tc_wait_leads(&c, target, 0, LEADER_MS),
              "node %d does not lead after the transfer", target + 1);
    cr_assert(tc_wait_commits(&c, target, 50, COMMIT_MS),
              "agents stopped committing after the transfer");

    /* No id: libraft picks another voter. */
    rc = cli(target, &out, "--json cluster transfer");
    cr_assert_eq(rc, 0, "cluster transfer: exit %d: %s", rc, out);
    free(out);
    next = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(next, 0, "no leader after the second transfer");
    cr_expect_neq(next, target, "leadership stayed with node %d",
                  target + 1);
    cr_assert(tc_wait_commits(&c, next, 50, COMMIT_MS),
              "agents stopped committing after the second transfer");
    cr_expect_eq(tc_check(&c, CHECK_MS), 0);
}

/* Node i's cluster.status names a transfer in flight. */
/* node i's health in node `via`'s status, or "" */
static void health_in(int via, int i, char *out, size_t cap)
{
    struct tc_status st;

    snprintf(out, cap, "%s", "");
    if (tc_status(&c, via, &st) != 0)
        return;
    for (int k = 0; k < st.n_nodes; k++)
        if (st.nodes[k].id == c.nodes[i].id)
            snprintf(out, cap, "%s", st.nodes[k].health);
}

/* A leader that took over after a node died has never heard from it; a
 * failover period later its status calls that node down (what its
 * placement acts on), not unknown for ever. */
Test(leader, a_node_that_died_before_a_transfer_is_down_on_the_new_leader)
{
    struct tc_agent moved[64];
    char *out = NULL, why[256], health[16] = "";
    int leader, victim, target, n_moved, rc;
    uint64_t end;

    leader = start_committing("lead-down");
    end = td_ms() + 20000;
    while ((victim = tc_pick_follower(&c, leader, 0)) < 0 && td_ms() < end)
        td_sleep_ms(100);
    cr_assert_geq(victim, 0, "no follower hosts an agent");
    target = 3 - leader - victim;
    n_moved = tc_agents_on(&c, leader, victim, moved, 64);
    cr_assert_gt(n_moved, 0);

    tc_kill(&c, victim);
    rc = cli(leader, &out, "cluster transfer %" PRIu64, c.nodes[target].id);
    cr_assert_eq(rc, 0, "cluster transfer: exit %d: %s", rc, out);
    free(out);
    cr_assert(tc_wait_leads(&c, target, 0, LEADER_MS),
              "node %d does not lead after the transfer", target + 1);

    /* failover_ms is 1000 here; ten times that bounds the wait. */
    end = td_ms() + 10000;
    do {
        health_in(target, victim, health, sizeof health);
        if (strcmp(health, "down") == 0)
            break;
        td_sleep_ms(100);
    } while (td_ms() < end);
    cr_expect_str_eq(health, "down",
                     "the new leader calls the dead node %d '%s'", victim + 1,
                     health);
    cr_expect(tc_wait_moved(&c, target, moved, n_moved, victim, 20000, why,
                            sizeof why),
              "the dead node's agents did not move: %s", why);
    health_in(target, leader, health, sizeof health);
    cr_expect_str_eq(health, "alive", "the old leader is '%s'", health);
}

static int transfer_shown(struct td *d, void *arg)
{
    struct td_resp r;
    const msgpack_object *t;
    int shown = 0;

    (void)arg;
    if (td_call(d, &r, "op", "cluster.status", NULL) == 0) {
        t = td_get(td_get(td_get(&r.u.data, "cluster"), "leadership"),
                   "transfer");
        shown = t && t->type == MSGPACK_OBJECT_MAP;
    }
    td_resp_free(&r);
    return shown;
}

/* Wait until node i leads with its state machine current (its term's
 * first entry committed): before that a transfer is refused as busy. */
static void wait_ready(int i)
{
    uint64_t end = td_ms() + LEADER_MS;

    while (tc_log_count(&c, i, "state machine current at index") < 1 &&
           td_ms() < end)
        td_sleep_ms(50);
    cr_assert_geq(tc_log_count(&c, i, "state machine current at index"), 1,
                  "node %d leads but its state machine never became current",
                  i + 1);
}

Test(leader, bad_requests_get_clear_errors)
{
    char *out = NULL, want[256], file[256];
    int leader, follower, rc;

    start_cluster("lead-bad", NULL);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    wait_ready(leader);
    follower = (leader + 1) % c.n;

    cr_expect_eq(rc = cli(leader, &out, "cluster transfer 99"), 1, "%d", rc);
    cr_expect(strstr(out, "there is no node 99 in the cluster"), "%s", out);
    free(out);
    cr_expect_eq(cli(leader, &out, "cluster transfer %" PRIu64,
                     c.nodes[leader].id),
                 1);
    snprintf(want, sizeof want, "node %" PRIu64 " already leads",
             c.nodes[leader].id);
    cr_expect(strstr(out, want), "%s", out);
    free(out);
    cr_expect_eq(cli(follower, &out, "cluster transfer %" PRIu64,
                     c.nodes[follower].id),
                 1);
    snprintf(want, sizeof want, "the leader is node %" PRIu64 " at %s",
             c.nodes[leader].id, c.nodes[leader].addr);
    cr_expect(strstr(out, want), "wanted '%s' in %s", want, out);
    free(out);
    cr_expect_eq(cli(leader, &out, "cluster transfer two"), 2);
    cr_expect(strstr(out, "positive whole number, not 'two'"), "%s", out);
    free(out);
    cr_expect_eq(cli(leader, &out, "cluster transfer 1 2"), 2);
    cr_expect(strstr(out, "at most one node id"), "%s", out);
    free(out);
    cr_assert_eq(tc_wait_leader(&c, 0, LEADER_MS), leader,
                 "a refused transfer moved leadership");

    /* A frozen target cannot take over: the transfer in flight refuses
     * a second one, then ends in a timeout. */
    cr_assert_gt(nf_freeze(c.nodes[follower].d.pid), 0);
    snprintf(file, sizeof file, "%s/xfer.out", c.nodes[leader].d.root);
    cr_assert_eq(td_sh(NULL, "'%s' --data-dir '%s' cluster transfer %" PRIu64
                             " > '%s' 2>&1 &",
                       td_bin("outlast"), c.nodes[leader].d.data,
                       c.nodes[follower].id, file),
                 0);
    cr_assert(td_until(transfer_shown, &c.nodes[leader].d, NULL, 5000),
              "no transfer in flight shown");
    {
        struct td_resp r;
        char msg[512];

        /* Straight over the socket: the first ends within 300 ms. */
        cr_expect_neq(td_call(&c.nodes[leader].d, &r, "op",
                              "cluster.transfer", NULL),
                      0, "a second transfer was accepted");
        cr_expect(strstr(td_errmsg(&r, msg, sizeof msg),
                         "is already in progress"),
                  "%s", msg);
        td_resp_free(&r);
    }
    for (uint64_t end = td_ms() + 10000; td_ms() < end;) {
        if (td_sh(&out, "grep -c 'did not take over' '%s'", file) == 0)
            break;
        free(out);
        out = NULL;
        td_sleep_ms(100);
    }
    cr_expect(out != NULL, "the transfer to a frozen node never timed out");
    free(out);
    nf_thaw(c.nodes[follower].d.pid);
    cr_assert_geq(leader = tc_wait_leader(&c, 0, LEADER_MS), 0, "no leader");
    cr_expect_eq(tc_check(&c, CHECK_MS), 0);

    /* A roster node raft has not made a voter (it never answers) cannot
     * lead.  The add waits for a leader whose state is current. */
    for (int k = 0; (rc = cli(leader, &out, "cluster add 9 127.0.0.1:1 "
                                            "%064d", 9)) != 0;
         k++) {
        cr_assert_lt(k, 50, "cluster add: %s", out);
        free(out);
        td_sleep_ms(100);
    }
    free(out);
    /* Until the roster entry is applied, node 9 is unknown. */
    for (int k = 0; k < 50; k++) {
        cr_expect_eq(cli(leader, &out, "cluster transfer 9"), 1);
        if (strstr(out, "there is no node 9") == NULL)
            break;
        free(out);
        out = NULL;
        td_sleep_ms(100);
    }
    cr_expect(out && strstr(out, "node 9 is not a voter"), "%s", out);
    free(out);
}

/* Lines in every node's log saying a preference transfer succeeded. */
static int preference_transfers(void)
{
    int n = 0;

    for (int i = 0; i < c.n; i++)
        n += tc_log_count(&c, i, "leadership transfer (preference): node");
    return n;
}

Test(leader, preference_brings_leadership_back, .timeout = 400)
{
    const int pref = 1, second = 2; /* node 2, then node 3 */
    const unsigned others = (1u << 0) | (1u << second);
    char *out = NULL;
    int moved;

    start_cluster("lead-pref", "cloud=c2,cloud=c3");
    cr_assert(tc_wait_leads(&c, pref, 0, STEER_MS), "node 2 never leads");
    cr_assert_eq(cli(pref, &out, "cluster status"), 0);
    cr_expect(strstr(out, "preferred  yes"), "%s", out);
    free(out);
    spawn_agents(pref);
    cr_assert(tc_wait_commits(&c, pref, 30, COMMIT_MS), "agents never commit");

    /* Frozen: of the others node 3 ranks better, so it ends up leading. */
    cr_assert_gt(nf_freeze(c.nodes[pref].d.pid), 0);
    cr_assert(tc_wait_leads(&c, second, others, STEER_MS),
              "node 3 does not lead while node 2 is frozen");
    cr_assert_eq(cli(second, &out, "cluster status"), 0);
    cr_expect(strstr(out, "preferred  no"), "%s", out);
    free(out);
    cr_assert(tc_wait_commits(&c, second, 30, COMMIT_MS),
              "nothing commits while node 2 is frozen");
    moved = preference_transfers();

    /* Thawed: back to node 2. */
    nf_thaw(c.nodes[pref].d.pid);
    cr_assert(tc_wait_leads(&c, pref, 0, STEER_MS),
              "leadership did not return to node 2 after it woke");
    cr_expect_gt(preference_transfers(), moved,
                 "node 2 leads again, but not by a transfer");
    cr_assert(tc_wait_commits(&c, pref, 30, COMMIT_MS), "agents stopped");

    /* Handed by hand to node 1, which ranks last: the answer says so,
     * and the preference takes leadership back. */
    cr_assert_eq(cli(pref, &out, "cluster transfer 1"), 0, "%s", out);
    cr_expect(strstr(out, "leader_preference ranks another voter higher"),
              "%s", out);
    free(out);
    cr_assert(tc_wait_leads(&c, pref, 0, STEER_MS),
              "leadership did not return to node 2 after a transfer away");

    /* Killed and restarted: the same. */
    tc_kill(&c, pref);
    cr_assert(tc_wait_leads(&c, second, others, STEER_MS),
              "node 3 does not lead while node 2 is down");
    moved = preference_transfers();
    cr_assert_eq(tc_start_node(&c, pref, 15000), 0, "node 2 did not start");
    cr_assert(tc_wait_leads(&c, pref, 0, STEER_MS + 10000),
              "leadership did not return to node 2 after its restart");
    cr_expect_gt(preference_transfers(), moved,
                 "node 2 leads again, but not by a transfer");
    cr_assert(tc_wait_commits(&c, pref, 30, COMMIT_MS), "agents stopped");
    cr_expect_eq(tc_check(&c, CHECK_MS), 0);
}

Test(leader, malformed_preference_is_refused)
{
    static const char *const bad[] = {"cloud", "cloud=aws;cloud=gcp",
                                      "cloud=aws,,cloud=gcp"};
    struct tc_opts o = {.n = 1, .tag = "lead-conf"};
    char want[128], *out = NULL;

    tc_init(&c, &o);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        FILE *f = fopen(c.nodes[0].d.conf, "w");

        cr_assert_not_null(f);
        tc_write_head(f, &c, 1, c.nodes[0].d.data, c.nodes[0].labels,
                      c.nodes[0].addr, 1000);
        fprintf(f, "leader_preference = %s\n", bad[k]);
        fclose(f);
        cr_expect_eq(td_sh(&out, "'%s' --config '%s' 2>&1",
                           td_bin("outlastd"), c.nodes[0].d.conf),
                     2, "outlastd started with '%s'", bad[k]);
        snprintf(want, sizeof want, "'leader_preference' must be");
        cr_expect(strstr(out, want), "%s", out);
        snprintf(want, sizeof want, "not '%s'", bad[k]);
        cr_expect(strstr(out, want), "%s", out);
        free(out);
    }
}
