/*
 * Crash-loop quarantine across a 3-node cluster.  The crash count is
 * replicated state: every node sees the same count, a restart or a
 * failover does not reset it, and a bad agent never cascades from node to
 * node.
 *
 * Hosted (the default): the bad agent's host process dies, the node stays
 * up, and after exactly crash_limit crashes the agent is quarantined on
 * every node, while the other agents keep committing.
 *
 * In the node (isolation = none): the plugin takes its node down.  The
 * test restarts every node that dies, as a supervisor would; the agent
 * fails over or is re-granted, and every node that died reports the crash
 * from its step-mark file when it comes back.  Every death is counted, and
 * the cluster stops losing nodes once the count reaches crash_limit.  A
 * node that is still down cannot report yet, so if the agent fails over
 * before a dead node is back, it can take down each of the other nodes
 * once more: at most crash_limit + (nodes - 1) deaths in all.  Hosted
 * agents have no such gap (the node that saw the crash reports it at
 * once), which is why they are the default.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/support/cluster.h"

#define LIMIT 3

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(quarantine, .fini = teardown, .timeout = 300);

static void spawn(int via, const char *kind, const char *name,
                  const char *cfg)
{
    char err[512];

    cr_assert_eq(td_spawn_agent(&c.nodes[via].d, kind, name, cfg, err,
                                sizeof err),
                 0, "spawn '%s': %s", name, err);
}

/* Start the cluster `o` describes and a ticker through its leader;
 * returns the leader. */
static int start_with_ticker(const struct tc_opts *o)
{
    int leader;

    tc_init(&c, o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0);
    spawn(leader, "counter", "ticker", "{\"interval_ms\": 20}");
    return leader;
}

static int64_t crashes_on(int i, const char *name)
{
    return td_crashes(&c.nodes[i].d, name);
}

static const char *status_on(int via, const char *name, char *out,
                             size_t cap)
{
    struct tc_agent a[32];
    int n = tc_agents(&c, via, a, 32);

    snprintf(out, cap, "?");
    for (int i = 0; i < n; i++)
        if (strcmp(a[i].name, name) == 0)
            snprintf(out, cap, "%s", a[i].status);
    return out;
}

static int64_t ticker_seq(int via)
{
    struct tc_agent a[32];
    int n = tc_agents(&c, via, a, 32);

    for (int i = 0; i < n; i++)
        if (strcmp(a[i].name, "ticker") == 0)
            return (int64_t)a[i].seq;
    return -1;
}

static void wait_placed(int via, int want)
{
    uint64_t end = td_ms() + 20000;
    struct tc_agent a[32];
    int n, ok = 0;

    while (td_ms() < end) {
        n = tc_agents(&c, via, a, 32);
        ok = 0;
        for (int i = 0; i < n; i++)
            ok += a[i].owner != 0 && a[i].seq > 0;
        if (ok >= want)
            return;
        td_sleep_ms(50);
    }
    cr_assert_fail("only %d of %d agents placed", ok, want);
}

Test(quarantine, a_crashing_agent_is_quarantined_cluster_wide)
{
    struct tc_opts o = {.n = 3, .tag = "qh",
                        .extra = "[agents]\nstep_deadline_ms = 1000\n"};
    char st[32];
    int leader;
    int64_t seq0, seq1;
    uint64_t t0, t1, end;

    leader = start_with_ticker(&o);
    spawn(leader, "misbehave", "sib", "{\"mode\": \"none\"}");
    wait_placed(leader, 2);
    t0 = td_ms();
    seq0 = ticker_seq(leader);
    spawn(leader, "misbehave", "bad", "{\"mode\": \"segv\"}");
    end = td_ms() + 60000;
    while (strcmp(status_on(leader, "bad", st, sizeof st), "quarantined") &&
           td_ms() < end) {
        tc_expect_running(&c);
        tc_observe(&c);
        td_sleep_ms(100);
    }
    cr_assert_str_eq(st, "quarantined", "the bad agent was not "
                                        "quarantined");
    t1 = td_ms();
    seq1 = ticker_seq(leader);
    fprintf(stderr, "quarantine/hosted: the ticker committed %.0f "
                    "checkpoints/s while the bad agent crashed\n",
            (double)(seq1 - seq0) * 1000.0 / (double)(t1 - t0));
    cr_expect_gt(seq1, seq0, "the ticker stopped committing");
    tc_expect_running(&c);
    for (int i = 0; i < 3; i++) {
        uint64_t e2 = td_ms() + 10000;

        while (crashes_on(i, "bad") < LIMIT && td_ms() < e2)
            td_sleep_ms(50);
        cr_expect_eq(crashes_on(i, "bad"), LIMIT,
                     "node %d counts %" PRId64 " crashes", i + 1,
                     crashes_on(i, "bad"));
    }
    cr_expect_str_eq(status_on(leader, "sib", st, sizeof st), "running");
    cr_expect_eq(tc_check(&c, 30000), 0, "invariants");
}

/* Restart every node that has died; returns how many had. */
static int revive(void)
{
    int died = 0;

    for (int i = 0; i < c.n; i++) {
        struct td *d = &c.nodes[i].d;
        int st;

        if (!c.nodes[i].up || d->pid <= 0)
            continue;
        if (waitpid(d->pid, &st, WNOHANG) != d->pid)
            continue;
        d->pid = 0;
        d->status = st;
        d->exited = 1;
        c.nodes[i].up = 0;
        died++;
        fprintf(stderr, "quarantine/inproc: node %d died (%s %d)\n", i + 1,
                WIFSIGNALED(st) ? "signal" : "exit",
                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        cr_assert_eq(tc_start_node(&c, i, 15000), 0, "restart node %d",
                     i + 1);
    }
    return died;
}

static int quarantined_anywhere(void)
{
    char st[32];

    for (int i = 0; i < c.n; i++)
        if (c.nodes[i].up && c.nodes[i].d.pid > 0 &&
            strcmp(status_on(i, "bad", st, sizeof st), "quarantined") == 0)
            return 1;
    return 0;
}

Test(quarantine, an_agent_that_crashes_its_node_does_not_cascade)
{
    struct tc_opts o = {.n = 3, .tag = "qn", .failover_ms = 3000,
                        .extra = "[plugin.misbehave]\nisolation = none\n"};
    int leader, deaths = 0;
    uint64_t end;

    leader = start_with_ticker(&o);
    wait_placed(leader, 1);
    spawn(leader, "misbehave", "bad", "{\"mode\": \"segv\"}");
    end = td_ms() + 120000;
    while (!quarantined_anywhere() && td_ms() < end) {
        deaths += revive();
        td_sleep_ms(50);
    }
    cr_assert(quarantined_anywhere(), "not quarantined after %d node "
                                      "deaths",
              deaths);
    /* Quarantined for good: no node dies any more. */
    end = td_ms() + 3000;
    while (td_ms() < end) {
        deaths += revive();
        td_sleep_ms(50);
    }
    fprintf(stderr, "quarantine/inproc: %d node deaths in all\n", deaths);
    cr_expect_geq(deaths, LIMIT, "quarantined after %d node deaths", deaths);
    cr_expect_leq(deaths, LIMIT + 2, "%d node deaths: it cascaded", deaths);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0);
    for (int i = 0; i < 3; i++) {
        uint64_t e2 = td_ms() + 10000;

        while (crashes_on(i, "bad") < LIMIT && td_ms() < e2)
            td_sleep_ms(50);
        cr_expect_eq(crashes_on(i, "bad"), LIMIT, "node %d", i + 1);
    }
    cr_expect_eq(tc_check(&c, 30000), 0, "invariants");
}

/* Every way of misbehaving at once, spread over the cluster: each bad
 * agent is quarantined after exactly crash_limit crashes of its own code
 * (a host that another agent took down does not count against the
 * agents it also held), the flood stays bounded, and no node dies. */
Test(quarantine, every_kind_of_bad_agent_at_once)
{
    static const char *const modes[] = {
        "segv", "abort", "exit", "stack", "loop", "sleep", "workcrash",
#if !defined(__SANITIZE_ADDRESS__)
        "hog",
#endif
    };
    const int n_modes = (int)(sizeof modes / sizeof modes[0]);
    struct tc_opts o = {.n = 3, .tag = "qall",
                        .extra = "[agents]\nstep_deadline_ms = 500\n"
                                 "mailbox_max = 300\n"
                                 "[plugin.misbehave]\nmemory_mb = 128\n"};
    char name[32], cfg[96], st[32];
    int leader, done;
    int64_t seq0, rows, most_rows = 0;
    uint64_t end;

    leader = start_with_ticker(&o);
    spawn(leader, "misbehave", "sib", "{\"mode\": \"none\"}");
    spawn(leader, "misbehave", "flood", "{\"mode\": \"flood\", "
                                         "\"after\": 1}");
    wait_placed(leader, 3);
    seq0 = ticker_seq(leader);
    for (int i = 0; i < n_modes; i++) {
        snprintf(name, sizeof name, "bad-%s", modes[i]);
        snprintf(cfg, sizeof cfg, "{\"mode\": \"%s\"}", modes[i]);
        spawn(leader, "misbehave", name, cfg);
    }
    end = td_ms() + 150000;
    do {
        sqlite3 *db;

        tc_expect_running(&c);
        tc_observe(&c);
        db = td_db(&c.nodes[leader].d);
        rows = td_q1(db, "SELECT count(*) FROM mailbox WHERE to_agent = "
                         "'flood'");
        sqlite3_close(db);
        if (rows > most_rows)
            most_rows = rows;
        done = 0;
        for (int i = 0; i < n_modes; i++) {
            snprintf(name, sizeof name, "bad-%s", modes[i]);
            done += strcmp(status_on(leader, name, st, sizeof st),
                           "quarantined") == 0;
        }
        td_sleep_ms(200);
    } while (done < n_modes && td_ms() < end);
    cr_assert_eq(done, n_modes, "only %d of %d bad agents quarantined", done,
                 n_modes);
    fprintf(stderr, "quarantine/all: the ticker went from seq %" PRId64
                    " to %" PRId64 "; the flood's mailbox peaked at %" PRId64
                    " rows (limit 300)\n",
            seq0, ticker_seq(leader), most_rows);
    cr_expect_gt(ticker_seq(leader), seq0, "the ticker stopped");
    cr_expect_leq(most_rows, 300 + 2 * 1024);
    cr_expect_str_eq(status_on(leader, "sib", st, sizeof st), "running");
    cr_expect_str_eq(status_on(leader, "flood", st, sizeof st), "running");
    for (int i = 0; i < n_modes; i++) {
        snprintf(name, sizeof name, "bad-%s", modes[i]);
        for (int k = 0; k < 3; k++) {
            uint64_t e2 = td_ms() + 10000;

            while (crashes_on(k, name) < LIMIT && td_ms() < e2)
                td_sleep_ms(50);
            cr_expect_eq(crashes_on(k, name), LIMIT,
                         "'%s' on node %d: %" PRId64 " crashes", name, k + 1,
                         crashes_on(k, name));
        }
    }
    tc_expect_running(&c);
    cr_expect_eq(tc_check(&c, 30000), 0, "invariants");
}
