/*
 * A real cluster under failures: 3 and 5 outlastd processes on loopback,
 * with agents ticking, a sender streaming numbered messages to a ledger,
 * and a pricewatch feeding a second ledger.  Followers that host agents
 * and then the leader are killed with SIGKILL and restarted, round after
 * round; each time the dead node's agents must resume elsewhere under a
 * new epoch.  At the end every message reached the ledger exactly once and
 * the invariant checker passes over every node's database.
 *
 * A node whose key is not in the roster is refused: it never joins, never
 * shows up as alive, never signs anything, and the members log the failed
 * handshakes.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/keys.h"
#include "tests/support/cluster.h"

#define FIRST_BURST 100
#define BURST 50
#define MOVE_MS 20000   /* a dead node's agents resume elsewhere */
#define LEADER_MS 15000 /* a leader is elected and known to all */
#define START_MS 15000

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(cluster, .fini = teardown, .timeout = 300);

static void spawn(int via, const char *kind, const char *name,
                  const char *config)
{
    char err[512];

    cr_assert_eq(td_spawn_agent(&c.nodes[via].d, kind, name, config, err,
                                sizeof err),
                 0, "spawn '%s' via node %d: %s", name, via + 1, err);
}

static void spawn_load(int via, int extra_counters)
{
    char name[32];

    spawn(via, "ledger", "ledger", NULL);
    spawn(via, "ledger", "book", NULL);
    spawn(via, "sender", "sender", "{\"batch\": 2}");
    spawn(via, "counter", "ticker", "{\"interval_ms\": 20}");
    spawn(via, "pricewatch", "pw",
          "{\"interval_ms\": 30, \"ledger\": \"book\", \"short\": 3, "
          "\"long\": 8}");
    for (int i = 0; i < extra_counters; i++) {
        snprintf(name, sizeof name, "c%d", i + 1);
        spawn(via, "counter", name, "{\"interval_ms\": 60}");
    }
}

static void burst(int via, int n)
{
    char msg[96], err[512];

    snprintf(msg, sizeof msg, "{\"to\": \"ledger\", \"n\": %d}", n);
    cr_assert_eq(td_send_json(&c.nodes[via].d, "sender", msg, err,
                              sizeof err),
                 0, "send via node %d: %s", via + 1, err);
}

/* Every agent placed and running with a first checkpoint. */
static int all_started(int via, int want)
{
    struct tc_agent a[64];
    int n = tc_agents(&c, via, a, 64), ok = 0;

    for (int i = 0; i < n; i++)
        ok += a[i].owner != 0 && a[i].seq > 0 &&
              strcmp(a[i].status, "running") == 0;
    return ok >= want;
}

static void wait_started(int via, int want)
{
    uint64_t end = td_ms() + 20000;

    while (!all_started(via, want) && td_ms() < end)
        td_sleep_ms(50);
    cr_assert(all_started(via, want), "not all %d agents were placed and "
                                      "started within 20 s",
              want);
}

/* A follower that hosts agents, waiting a while for rebalancing to give
 * one some if none does. */
static int follower_with_agents(int leader, unsigned skip)
{
    uint64_t end = td_ms() + 15000;
    int f;

    while ((f = tc_pick_follower(&c, leader, skip)) < 0 && td_ms() < end)
        td_sleep_ms(100);
    return f;
}

/* Kill the nodes in `victims` at once; wait until their agents resume on
 * the others, then restart them and wait until the leader sees them. */
static void kill_and_recover(int round, const int *victims, int nv,
                             int leader_was)
{
    struct tc_agent moved[TC_MAX_NODES][64];
    int n_moved[TC_MAX_NODES];
    char why[512];
    uint64_t t0;
    int leader;

    for (int v = 0; v < nv; v++)
        n_moved[v] = tc_agents_on(&c, leader_was, victims[v], moved[v], 64);
    tc_observe(&c);
    t0 = td_ms();
    for (int v = 0; v < nv; v++)
        tc_kill(&c, victims[v]);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "round %d: no leader after killing node %d",
                  round, victims[0] + 1);
    for (int v = 0; v < nv; v++) {
        cr_assert(tc_wait_moved(&c, leader, moved[v], n_moved[v], victims[v],
                                MOVE_MS, why, sizeof why),
                  "round %d: node %d's %d agent(s) did not resume elsewhere "
                  "within %d ms: %s",
                  round, victims[v] + 1, n_moved[v], MOVE_MS, why);
        cr_log_info("round %d: node %d%s killed; its %d agent(s) committed "
                    "under new owners after %" PRIu64 " ms (leader now "
                    "node %d)",
                    round, victims[v] + 1,
                    victims[v] == leader_was ? " (the leader)" : "",
                    n_moved[v], td_ms() - t0, leader + 1);
    }
    for (int v = 0; v < nv; v++) {
        cr_assert_eq(tc_start_node(&c, victims[v], START_MS), 0,
                     "round %d: node %d did not restart; see %s", round,
                     victims[v] + 1, c.nodes[victims[v]].d.log);
    }
    for (int v = 0; v < nv; v++) {
        leader = tc_wait_leader(&c, 0, LEADER_MS);
        cr_assert_geq(leader, 0, "round %d: no leader after restarts",
                      round);
        cr_assert(tc_wait_alive(&c, leader, victims[v], 15000),
                  "round %d: leader node %d never saw restarted node %d "
                  "alive",
                  round, leader + 1, victims[v] + 1);
    }
}

static int ledger_full(int via, int64_t want)
{
    return tc_state_int(&c, via, "ledger", "entries", 0) >= want;
}

static void run(int n, int rounds, int followers_per_round,
                int extra_counters)
{
    struct tc_opts o = {.n = n, .tag = n == 3 ? "cl3-" : "cl5-"};
    int64_t sent = 0;
    uint64_t t_start = td_ms(), end;
    int leader;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader elected among %d nodes", n);
    spawn_load(leader, extra_counters);
    wait_started(leader, 5 + extra_counters);
    burst(leader, FIRST_BURST);
    sent += FIRST_BURST;

    for (int r = 0; r < rounds; r++) {
        int victims[TC_MAX_NODES], nv = 0;
        unsigned skip = 0;

        leader = tc_wait_leader(&c, 0, LEADER_MS);
        cr_assert_geq(leader, 0, "round %d: no leader", r);
        for (int k = 0; k < followers_per_round; k++) {
            int f = follower_with_agents(leader, skip);

            if (f < 0 && k > 0) {
                /* A second victim need not host anything. */
                for (int i = 0; i < c.n && f < 0; i++)
                    if (i != leader && !(skip & (1u << i)))
                        f = i;
            }
            cr_assert_geq(f, 0, "round %d: no follower hosts agents", r);
            victims[nv++] = f;
            skip |= 1u << f;
        }
        burst(leader, BURST);
        sent += BURST;
        kill_and_recover(r, victims, nv, leader);

        leader = tc_wait_leader(&c, 0, LEADER_MS);
        cr_assert_geq(leader, 0, "round %d: no leader", r);
        burst(leader, BURST);
        sent += BURST;
        victims[0] = leader;
        kill_and_recover(r, victims, 1, leader);
    }

    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader after the rounds");
    end = td_ms() + 60000;
    while (!ledger_full(leader, sent) && td_ms() < end)
        td_sleep_ms(100);
    cr_expect_eq(tc_state_int(&c, leader, "ledger", "entries", -1), sent,
                 "the ledger has %" PRId64 " of %" PRId64 " messages",
                 tc_state_int(&c, leader, "ledger", "entries", -1), sent);
    cr_expect_eq(tc_state_int(&c, leader, "ledger", "dups", -1), 0,
                 "a message was delivered twice");
    cr_expect_eq(tc_state_int(&c, leader, "ledger", "gaps", -1), 0,
                 "a message was lost");
    cr_expect_eq(tc_state_int(&c, leader, "book", "dups", -1), 0,
                 "a pricewatch decision was delivered twice");
    cr_expect_eq(tc_state_int(&c, leader, "book", "gaps", -1), 0,
                 "a pricewatch decision was lost");
    cr_expect_gt(tc_state_int(&c, leader, "ticker", "count", 0), 0);
    cr_expect_gt(tc_state_int(&c, leader, "pw", "tick", 0), 0);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
    cr_log_info("%d nodes, %d rounds: %" PRId64 " messages, %" PRIu64
                " ms in all",
                n, rounds, sent, td_ms() - t_start);
}

Test(cluster, three_nodes_survive_kill9_of_followers_and_leader)
{
    run(3, 4, 1, 3);
}

Test(cluster, five_nodes_survive_two_followers_killed_at_once)
{
    run(5, 2, 2, 5);
}

/* ---- a node that is not in the roster ---- */

struct impostor {
    struct td d;
    char pk[65];
};

/* An outlastd with a fresh key claiming node `id`, listening at `addr`,
 * with the real members as its peers. */
static void impostor_start(struct impostor *im, uint64_t id,
                           const char *addr)
{
    struct ol__key k;
    char path[300], err[OL_ERRMSG_SIZE], tag[32];
    FILE *f;

    snprintf(tag, sizeof tag, "imp%" PRIu64 "-", id);
    td_init(&im->d, tag, NULL);
    cr_assert_eq(mkdir(im->d.data, 0700), 0);
    cr_assert_eq(ol__key_generate(&k), 0);
    snprintf(path, sizeof path, "%s/node.key", im->d.data);
    cr_assert_eq(ol__key_save(&k, path, err), 0, "%s", err);
    ol__pk_hex(k.pk, im->pk);
    ol__key_close(&k);
    f = fopen(im->d.conf, "w");
    cr_assert_not_null(f);
    tc_write_head(f, &c, id, im->d.data, "cloud=evil", addr, 1000);
    tc_write_peers(f, &c, id);
    /* It asks for an agent of its own, which must never be committed. */
    fprintf(f, "[agent.evil]\nkind = counter\nconfig = {\"interval_ms\": "
               "20}\n");
    fclose(f);
    cr_assert_eq(td_start(&im->d, START_MS), 0,
                 "the impostor did not start; see %s", im->d.log);
}

static int64_t signed_by_pk(int via, const char *pkhex)
{
    char sql[300];
    sqlite3 *db = td_db(&c.nodes[via].d);
    int64_t n;

    /* The seal body is [1, signer: bin32, ...]: the signer's 32 bytes
     * follow the fixarray, the 1 and the bin8 header (3 bytes). */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM seals WHERE "
             "lower(hex(substr(body, 4, 32))) = '%s'",
             pkhex);
    n = td_q1(db, sql);
    sqlite3_close(db);
    return n;
}

Test(cluster, a_node_outside_the_roster_is_refused)
{
    struct tc_opts o = {.n = 3, .tag = "imp-"};
    struct impostor same_id, new_id;
    struct tc_agent moved[64];
    char why[512], addr9[64];
    int leader, victim, n_moved, hs_members = 0;
    int64_t before, ticks;
    uint64_t end;
    struct tc_status st;

    memset(&same_id, 0, sizeof same_id);
    memset(&new_id, 0, sizeof new_id);
    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    spawn(leader, "counter", "ticker", "{\"interval_ms\": 20}");
    spawn(leader, "counter", "c1", "{\"interval_ms\": 50}");
    spawn(leader, "counter", "c2", "{\"interval_ms\": 50}");
    spawn(leader, "counter", "c3", "{\"interval_ms\": 50}");
    wait_started(leader, 4);

    /* A real member dies and an impostor with another key takes its id
     * and its address. */
    victim = follower_with_agents(leader, 0);
    cr_assert_geq(victim, 0, "no follower hosts agents");
    n_moved = tc_agents_on(&c, leader, victim, moved, 64);
    tc_kill(&c, victim);
    impostor_start(&same_id, c.nodes[victim].id, c.nodes[victim].addr);
    /* And one with an id nobody knows. */
    snprintf(addr9, sizeof addr9, "127.0.0.1:%d", c.base_port + 9);
    impostor_start(&new_id, 9, addr9);

    before = tc_state_int(&c, leader, "ticker", "count", 0);
    cr_assert(tc_wait_moved(&c, leader, moved, n_moved, victim, MOVE_MS, why,
                            sizeof why),
              "node %d's agents did not move while an impostor held its "
              "id: %s",
              victim + 1, why);

    /* Watch for a while: the impostors never become members or alive. */
    end = td_ms() + 6000;
    while (td_ms() < end) {
        int li = tc_wait_leader(&c, 0, LEADER_MS);

        cr_assert_geq(li, 0, "the cluster lost its leader");
        cr_assert_eq(tc_status(&c, li, &st), 0);
        cr_assert_eq(st.n_nodes, 3, "the roster has %d nodes", st.n_nodes);
        for (int k = 0; k < st.n_nodes; k++) {
            int i = tc_index(&c, st.nodes[k].id);

            cr_assert_geq(i, 0, "node %" PRIu64 " joined the roster",
                          st.nodes[k].id);
            cr_assert_str_eq(st.nodes[k].pk, c.nodes[i].pk,
                             "node %d's key in the roster changed",
                             i + 1);
            if (i == victim)
                cr_assert_str_neq(st.nodes[k].health, "alive",
                                  "the impostor made node %d look alive",
                                  i + 1);
        }
        td_sleep_ms(200);
    }
    ticks = tc_state_int(&c, leader, "ticker", "count", 0);
    cr_expect_gt(ticks, before + 50, "the cluster stopped committing "
                                     "(ticker %" PRId64 " -> %" PRId64 ")",
                 before, ticks);

    /* The impostors have nothing of the cluster, and nothing of theirs
     * was committed. */
    for (int i = 0; i < c.n; i++) {
        if (i == victim)
            continue;
        cr_expect_eq(signed_by_pk(i, same_id.pk), 0,
                     "node %d holds seals by the impostor", i + 1);
        cr_expect_eq(signed_by_pk(i, new_id.pk), 0,
                     "node %d holds seals by the impostor", i + 1);
        {
            sqlite3 *db = td_db(&c.nodes[i].d);

            cr_expect_eq(td_q1(db, "SELECT count(*) FROM agents WHERE "
                                   "name = 'evil'"),
                         0, "node %d committed the impostor's agent", i + 1);
            sqlite3_close(db);
        }
        hs_members += tc_log_count(&c, i, "transport: handshake");
    }
    {
        sqlite3 *db = td_db(&same_id.d);

        cr_expect_eq(td_q1(db, "SELECT count(*) FROM checkpoints"), 0,
                     "the impostor stored checkpoints");
        cr_expect_eq(td_q1(db, "SELECT count(*) FROM agents"), 0,
                     "the impostor learned the cluster's agents");
        sqlite3_close(db);
    }
    for (int k = 0; k < 2; k++) {
        struct td *im = k == 0 ? &same_id.d : &new_id.d;
        struct td_resp r;
        const msgpack_object *cl;
        char role[16] = "";

        cr_assert_eq(td_call(im, &r, "op", "cluster.status", NULL), 0);
        cl = td_get(&r.u.data, "cluster");
        if (td_get(cl, "role") && td_get(cl, "role")->type ==
                                      MSGPACK_OBJECT_STR)
            snprintf(role, sizeof role, "%.*s",
                     (int)td_get(cl, "role")->via.str.size,
                     td_get(cl, "role")->via.str.ptr);
        cr_expect_eq(td_int(cl, "leader", -1), 0,
                     "impostor %d learned of a leader (node %" PRId64 ")",
                     k + 1, td_int(cl, "leader", -1));
        cr_expect_str_neq(role, "leader", "impostor %d leads", k + 1);
        td_resp_free(&r);
    }
    cr_expect_gt(hs_members, 0, "the members logged no failed handshake");
    cr_log_info("members logged %d failed handshake line(s)", hs_members);
    for (int i = 0; i < c.n; i++)
        if (i != victim)
            cr_log_info("node %d: %d 'refused hello', %d 'did not "
                        "authenticate'",
                        i + 1, tc_log_count(&c, i, "refused hello"),
                        tc_log_count(&c, i, "did not authenticate"));

    /* The real node comes back once the impostors are gone. */
    td_cleanup(&same_id.d);
    td_cleanup(&new_id.d);
    cr_assert_eq(tc_start_node(&c, victim, START_MS), 0);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    cr_assert(tc_wait_alive(&c, leader, victim, 15000),
              "node %d did not rejoin", victim + 1);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}


/* ---- commits under load ---- */

/* libraft 0.15's leader looks for a commit only at its newest stored
 * entry; the pacer (replication/ackpace.h) holds the leader's own append
 * completions until followers' answers make them a majority, so that the
 * answer itself commits.  Under steady load from agents on every node the
 * leader must see those answers on the wire: its completions are released
 * by answers, not by the guard. */
Test(cluster, the_leader_commits_on_the_answer_that_makes_a_majority)
{
    struct tc_opts o = {.n = 3, .tag = "pace-"};
    struct tc_status st;
    char name[32];
    int leader;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    for (int i = 0; i < 9; i++) {
        snprintf(name, sizeof name, "p%d", i + 1);
        spawn(leader, "counter", name, "{\"interval_ms\": 20}");
    }
    wait_started(leader, 9);
    td_sleep_ms(3000);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    cr_assert_eq(tc_status(&c, leader, &st), 0);
    cr_log_info("leader %d: appends passed %" PRIu64 ", held to a majority "
                "%" PRIu64 ", held to the guard %" PRIu64,
                leader + 1, st.appends_passed, st.appends_held_to_majority,
                st.appends_held_to_guard);
    cr_assert_gt(st.appends_held_to_majority, 0,
                 "no completion was released by a follower's answer");
    cr_assert_leq(st.appends_held_to_guard * 10,
                  st.appends_held_to_majority,
                  "the guard, not the answers, released the completions");
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}

/* A killed leader's address refuses connections: its followers shorten
 * their election timeout (replication/raft.c), and its successor (with no
 * leader_preference, the survivor with the lowest id) stands at once, as
 * the target of a leadership transfer would; one of them leads. */
Test(cluster, followers_of_a_killed_leader_stand_sooner)
{
    struct tc_opts o = {.n = 3, .tag = "fast-"};
    int leader, next, seen = 0, successor = -1;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    spawn(leader, "counter", "f1", "{\"interval_ms\": 50}");
    wait_started(leader, 1);
    tc_kill(&c, leader);
    next = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(next, 0, "no new leader after the leader was killed");
    cr_assert_neq(next, leader);
    for (int i = 0; i < 3; i++)
        if (i != leader)
            seen += tc_log_count(&c, i, "refuses connections: election "
                                        "timeout") > 0;
    cr_assert_geq(seen, 1, "no follower saw the leader refuse connections");
    for (int i = 0; i < 3 && successor < 0; i++)
        if (i != leader)
            successor = i;
    for (int i = 0; i < 3; i++) {
        int stood;

        if (i == leader)
            continue;
        stood = tc_log_count(&c, i, "successor: it stands for election at "
                                    "once");
        if (i == successor)
            cr_expect_eq(stood, 1, "node %d, the lowest survivor, stood %d "
                                   "times",
                         i + 1, stood);
        else
            cr_expect_eq(stood, 0, "node %d is not the successor but stood",
                         i + 1);
    }
    cr_assert_eq(tc_start_node(&c, leader, START_MS), 0);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}

/* ---- rebalancing ---- */

/* A restarted node gets agents back: the leader moves busy agents off
 * live nodes one at a time.  Every node must stay up through those moves
 * and the invariants must hold afterwards. */
Test(cluster, rebalancing_busy_agents_keeps_every_node_up)
{
    struct tc_opts o = {.n = 3, .tag = "rebal-"};
    char name[32], why[512];
    int leader;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "f%d", i);
        spawn(leader, "counter", name, "{\"interval_ms\": 1}");
    }
    wait_started(leader, 12);
    for (int r = 0; r < 2; r++) {
        struct tc_agent moved[64];
        uint64_t end;
        int f, n, back = 0;

        leader = tc_wait_leader(&c, 0, LEADER_MS);
        cr_assert_geq(leader, 0, "round %d: no leader", r);
        f = follower_with_agents(leader, 0);
        cr_assert_geq(f, 0, "round %d: no follower hosts agents", r);
        n = tc_agents_on(&c, leader, f, moved, 64);
        tc_kill(&c, f);
        cr_assert(tc_wait_moved(&c, leader, moved, n, f, MOVE_MS, why,
                                sizeof why),
                  "round %d: %s", r, why);
        cr_assert_eq(tc_start_node(&c, f, START_MS), 0,
                     "round %d: node %d did not restart", r, f + 1);
        /* One agent moves every 2 s; wait for three. */
        end = td_ms() + 30000;
        while (back < 3 && td_ms() < end) {
            struct tc_agent a[64];
            int li = tc_wait_leader(&c, 0, LEADER_MS);

            cr_assert_geq(li, 0, "round %d: no leader", r);
            back = tc_agents_on(&c, li, f, a, 64);
            td_sleep_ms(100);
        }
        cr_assert_geq(back, 3, "round %d: restarted node %d got only %d "
                               "agent(s) back",
                      r, f + 1, back);
    }
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}

/* ---- exactly-once sends with a client request id ---- */

/* `outlast send` through node i's control socket; returns the exit code
 * and the output in out. */
static int cli_send(int i, const char *to, const char *json,
                    const char *request_id, char *out, size_t cap)
{
    char *o = NULL;
    int rc;

    rc = td_sh(&o, "%s --socket %s --json send %s '%s' --request-id '%s'",
               td_bin("outlast"), c.nodes[i].d.sock, to, json, request_id);
    snprintf(out, cap, "%s", o ? o : "");
    free(o);
    return rc;
}

static void wait_ledger(int via, int64_t want)
{
    uint64_t end = td_ms() + 20000;

    while (!ledger_full(via, want) && td_ms() < end)
        td_sleep_ms(50);
    cr_assert(ledger_full(via, want), "the ledger never recorded message %"
                                      PRId64, want);
}

/* Messages from the CLI waiting in node i's mailbox table. */
static int64_t cli_rows(int i)
{
    sqlite3 *db = td_db(&c.nodes[i].d);
    int64_t n = td_q1(db, "SELECT count(*) FROM mailbox WHERE from_agent = "
                          "'@cli'");

    sqlite3_close(db);
    return n;
}

/* A client sends a message with a request id through one node; once the
 * agent has consumed it (and its ack removed the mailbox row) the client,
 * not having heard back, sends the same request id through another node.
 * The agent sees the message once, and the retry answers as the first
 * send did (same msg_seq).  A bad request id is refused by name. */
Test(cluster, a_send_retried_with_its_request_id_on_another_node_lands_once)
{
    struct tc_opts o = {.n = 3, .tag = "once-"};
    char out1[1024], out2[1024], out3[1024];
    const char *seq1, *seq2;
    uint64_t end;
    int leader, a, b;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    spawn(leader, "ledger", "ledger", NULL);
    wait_started(leader, 1);
    a = (leader + 1) % c.n;
    b = (leader + 2) % c.n;
    cr_assert_eq(cli_send(a, "ledger", "{\"n\": 1}", "order-7", out1,
                          sizeof out1),
                 0, "send via node %d: %s", a + 1, out1);
    wait_ledger(leader, 1);
    /* Consumed and acknowledged: the row is gone on the retry's node. */
    end = td_ms() + 20000;
    while (cli_rows(b) != 0 && td_ms() < end)
        td_sleep_ms(50);
    cr_assert_eq(cli_rows(b), 0, "message 1 was never acknowledged");

    cr_assert_eq(cli_send(b, "ledger", "{\"n\": 1}", "order-7", out2,
                          sizeof out2),
                 0, "retry via node %d: %s", b + 1, out2);
    seq1 = strstr(out1, "\"msg_seq\"");
    seq2 = strstr(out2, "\"msg_seq\"");
    cr_assert(seq1 && seq2, "no msg_seq in %s / %s", out1, out2);
    cr_expect_eq(strtoull(strchr(seq1, ':') + 1, NULL, 10),
                 strtoull(strchr(seq2, ':') + 1, NULL, 10),
                 "the retry was answered as another message: %s / %s", out1,
                 out2);
    /* A new request behind it: once it is recorded, a duplicate (queued
     * before it) would have been seen. */
    cr_assert_eq(cli_send(b, "ledger", "{\"n\": 2}", "order-8", out3,
                          sizeof out3),
                 0, "send via node %d: %s", b + 1, out3);
    wait_ledger(leader, 2);
    cr_expect_eq(tc_state_int(&c, leader, "ledger", "dups", -1), 0,
                 "the retried message was delivered again");
    cr_expect_eq(tc_state_int(&c, leader, "ledger", "entries", -1), 2);

    /* Bad request ids: refused by the CLI, and by the node. */
    cr_expect_neq(cli_send(a, "ledger", "{\"n\": 3}", "", out3, sizeof out3),
                  0);
    cr_expect(strstr(out3, "--request-id") != NULL, "%s", out3);
    {
        struct td_resp r;
        char err[512];

        cr_expect_neq(td_call(&c.nodes[a].d, &r, "op", "stop", "name",
                              "ledger", "request_id", "bad\tid", NULL),
                      0);
        cr_expect(strstr(td_errmsg(&r, err, sizeof err), "request_id") !=
                      NULL,
                  "%s", err);
        td_resp_free(&r);
    }
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}
