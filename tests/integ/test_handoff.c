/*
 * Hand-off of agents off a live node: three real outlastd processes
 * running steplog agents, which write down every step with its epoch and
 * the machine's CLOCK_MONOTONIC (one clock for every process here).
 *
 * The property: once an agent moves to epoch E + 1, no step under E runs
 * after the first step under E + 1, on any node.  Steps are ordered by
 * that clock, so the check needs no trust in any node's view.
 *
 *  - A node being removed while it is frozen (SIGSTOP of it and its agent
 *    hosts).  It cannot apply the move, and it is continued while the
 *    lease it held when the move committed has not run out: it may step
 *    its agents until then.  The new owners must wait that lease out.
 *  - Rebalancing onto a node that came back: the old owners are live and
 *    apply the move; the new owner starts as soon as they say they let
 *    the agent go, and still never before their last step.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/wait.h"
#include "tests/support/cluster.h"
#include "tests/support/faults.h"

#define FAILOVER_MS 2000 /* lease 800 ms; the hand-off wait 1050 ms */
#define LEADER_MS 15000
#define RUN_MS 20000
#define MOVE_MS 20000
#define N_AGENTS 6
#define CAP 64

static struct tc c;
static char dir[64], steps[128];

static void teardown(void)
{
    char *out = NULL;

    for (int i = 0; i < c.n; i++)
        if (c.nodes[i].up && c.nodes[i].d.pid > 0)
            (void)nf_thaw(c.nodes[i].d.pid);
    tc_cleanup(&c);
    if (dir[0] && getenv("OL_KEEP_TMP") == NULL)
        (void)td_sh(&out, "rm -rf %s", dir);
    else if (dir[0])
        fprintf(stderr, "kept step logs: %s\n", steps);
    free(out);
}

TestSuite(handoff, .fini = teardown, .timeout = 240);

/* ---- the step logs ---- */

struct step {
    char agent[65];
    uint64_t epoch;
    char node[65];
    uint64_t tmono; /* ns */
};

struct steps {
    struct step *v;
    size_t n, cap;
};

static void load_file(struct steps *ss, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];

    cr_assert_not_null(f, "open %s", path);
    while (fgets(line, sizeof line, f)) {
        struct step s;
        const char *t = strstr(line, " tmono=");

        memset(&s, 0, sizeof s);
        if (sscanf(line, "A=%64s E=%" SCNu64 " %*s N=%64s", s.agent, &s.epoch,
                   s.node) != 3 ||
            t == NULL || sscanf(t, " tmono=%" SCNu64, &s.tmono) != 1)
            continue;
        if (ss->n == ss->cap) {
            ss->cap = ss->cap ? ss->cap * 2 : 1024;
            ss->v = realloc(ss->v, ss->cap * sizeof *ss->v);
            cr_assert_not_null(ss->v);
        }
        ss->v[ss->n++] = s;
    }
    fclose(f);
}

static void load_steps(struct steps *ss)
{
    DIR *d = opendir(steps);
    struct dirent *e;
    char path[600];

    memset(ss, 0, sizeof *ss);
    cr_assert_not_null(d, "open %s", steps);
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".steplog") == NULL)
            continue;
        snprintf(path, sizeof path, "%s/%s", steps, e->d_name);
        load_file(ss, path);
    }
    closedir(d);
}

/* For every agent and epoch E that has steps under E + 1: the last step
 * under E (anywhere) came before the first under E + 1.  Returns how many
 * hand-offs it checked; reports each overlap. */
static int check_order(const struct steps *ss, int *overlaps)
{
    int checked = 0;

    *overlaps = 0;
    for (size_t i = 0; i < ss->n; i++) {
        const struct step *s = &ss->v[i];
        uint64_t last_old = 0, first_new = UINT64_MAX;
        const struct step *lo = NULL, *fn = NULL;
        int first = 1;

        /* Once per (agent, epoch): at its first line. */
        for (size_t j = 0; j < i && first; j++)
            if (ss->v[j].epoch == s->epoch &&
                strcmp(ss->v[j].agent, s->agent) == 0)
                first = 0;
        if (!first)
            continue;
        for (size_t j = 0; j < ss->n; j++) {
            const struct step *t = &ss->v[j];

            if (strcmp(t->agent, s->agent) != 0)
                continue;
            if (t->epoch == s->epoch && t->tmono >= last_old) {
                last_old = t->tmono;
                lo = t;
            } else if (t->epoch == s->epoch + 1 && t->tmono < first_new) {
                first_new = t->tmono;
                fn = t;
            }
        }
        if (fn == NULL)
            continue;
        checked++;
        if (last_old >= first_new) {
            (*overlaps)++;
            cr_log_error("agent '%s': node %s stepped it under epoch %" PRIu64
                         " %.1f ms after node %s took its first step under "
                         "epoch %" PRIu64,
                         s->agent, lo->node, s->epoch,
                         (double)(last_old - first_new) / 1e6, fn->node,
                         s->epoch + 1);
        }
    }
    return checked;
}

/* Steps of `agent` under `epoch` that ran at or after `since_ns`. */
static int steps_after(const struct steps *ss, const char *agent,
                       uint64_t epoch, uint64_t since_ns)
{
    int n = 0;

    for (size_t i = 0; i < ss->n; i++)
        n += strcmp(ss->v[i].agent, agent) == 0 && ss->v[i].epoch == epoch &&
             ss->v[i].tmono >= since_ns;
    return n;
}

static uint64_t tmono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the cluster ---- */

static int start(const char *tag)
{
    struct tc_opts o = {.n = 3, .tag = tag, .failover_ms = FAILOVER_MS};
    char cfg[512], err[512], name[16];
    struct tc_agent a[CAP];
    uint64_t end;
    int leader, n, ok;

    tc_init(&c, &o);
    /* Agent hosts may run as another user: they write the step logs. */
    snprintf(dir, sizeof dir, "/tmp/ol-ho-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp");
    chmod(dir, 0755);
    snprintf(steps, sizeof steps, "%s/steps", dir);
    cr_assert_eq(mkdir(steps, 0777), 0, "mkdir %s", steps);
    chmod(steps, 0777);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    snprintf(cfg, sizeof cfg, "{\"dir\": \"%s\", \"interval_ms\": 10}",
             steps);
    for (int i = 0; i < N_AGENTS; i++) {
        snprintf(name, sizeof name, "h%d", i);
        cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "steplog", name,
                                    cfg, err, sizeof err),
                     0, "spawn '%s': %s", name, err);
    }
    end = td_ms() + RUN_MS;
    do {
        tc_expect_running(&c);
        n = tc_agents(&c, leader, a, CAP);
        ok = 0;
        for (int i = 0; i < n; i++)
            ok += a[i].owner != 0 && a[i].seq > 2 &&
                  strcmp(a[i].status, "running") == 0;
        if (ok == N_AGENTS)
            return leader;
        td_sleep_ms(50);
    } while (td_ms() < end);
    cr_assert_fail("only %d of %d agents running", ok, N_AGENTS);
    return -1;
}

static int cli(int via, const char *args)
{
    char *out = NULL;
    int rv = td_sh(&out, "%s --socket %s %s", td_bin("outlast"),
                   c.nodes[via].d.sock, args);

    if (rv != 0)
        cr_log_error("outlast %s: %s", args, out ? out : "");
    free(out);
    return rv;
}

/* The agents node `via` shows away from node `from` (index): 1 when every
 * one in `moved` has. */
static int all_moved(int via, const struct tc_agent *moved, int n, int from)
{
    struct tc_agent a[CAP];
    int na = tc_agents(&c, via, a, CAP), gone = 0;

    for (int i = 0; i < n; i++)
        for (int j = 0; j < na; j++)
            if (strcmp(a[j].name, moved[i].name) == 0 &&
                a[j].owner != c.nodes[from].id &&
                a[j].epoch > moved[i].epoch)
                gone++;
    return gone == n;
}

/* 1 if `outlast show NAME` on the agent's new owner (as node `via` sees
 * it) says it is handing over, 0 if not, -1 if the answer came too late
 * to tell (the wait may have ended). */
static int shows_handing_over(int via, const char *name)
{
    struct tc_agent a[CAP];
    char args[128];
    char *out = NULL;
    uint64_t t0 = td_ms();
    int na = tc_agents(&c, via, a, CAP), owner = -1, rv;

    for (int i = 0; i < na; i++)
        if (strcmp(a[i].name, name) == 0)
            owner = tc_index(&c, a[i].owner);
    cr_assert_geq(owner, 0, "'%s' has no owner", name);
    snprintf(args, sizeof args, "show %s", name);
    rv = td_sh(&out, "%s --socket %s %s", td_bin("outlast"),
               c.nodes[owner].d.sock, args);
    cr_assert_eq(rv, 0, "outlast %s: %s", args, out ? out : "");
    rv = strstr(out, "phase handing over") != NULL;
    if (!rv && td_ms() - t0 > 500)
        rv = -1;
    if (rv <= 0)
        cr_log_info("outlast show %s:\n%s", name, out);
    free(out);
    return rv;
}

/* A node being removed is frozen before the move commits and continued
 * while its lease still runs: it steps its agents once more, and the new
 * owners, which never hear from it, wait out that lease. */
Test(handoff, a_frozen_node_being_removed_steps_before_the_new_owner)
{
    struct tc_agent moved[CAP];
    struct steps ss;
    char args[64], why[256];
    uint64_t stop_ns, thaw_ns, end;
    int leader, x, n, overlaps, checked, late = 0, waited = 0, shown;

    leader = start("ho-remove");
    x = tc_pick_follower(&c, leader, 0);
    cr_assert_geq(x, 0, "no follower owns an agent");
    n = tc_agents_on(&c, leader, x, moved, CAP);
    cr_assert_gt(n, 0);

    stop_ns = tmono_ns();
    cr_assert_gt(nf_freeze(c.nodes[x].d.pid), 0);
    snprintf(args, sizeof args, "cluster remove %" PRIu64, c.nodes[x].id);
    cr_assert_eq(cli(leader, args), 0);
    /* The move commits well inside the failover time: the leader still
     * counts the frozen node as live, so this is a hand-off. */
    end = td_ms() + FAILOVER_MS;
    while (td_ms() < end && !all_moved(leader, moved, n, x))
        td_sleep_ms(5);
    cr_assert(all_moved(leader, moved, n, x),
              "the agents did not move off node %d in time", x + 1);
    shown = shows_handing_over(leader, moved[0].name);
    thaw_ns = tmono_ns();
    cr_assert_gt(nf_thaw(c.nodes[x].d.pid), 0);
    /* The wait lasts 1050 ms from the move; -1: asked too late to tell. */
    cr_expect_neq(shown, 0, "'outlast show %s' on its new owner did not "
                            "say it is handing over",
                  moved[0].name);
    cr_log_info("node %d frozen %.0f ms; %d agents moved", x + 1,
                (double)(thaw_ns - stop_ns) / 1e6, n);

    cr_assert(tc_wait_moved(&c, leader, moved, n, x, MOVE_MS, why,
                            sizeof why),
              "%s", why);
    /* Observation window: whatever the removed node still does, its lease
     * has run out by the end of it, so every step it could take is in the
     * logs checked below. */
    tw_window_ms(2 * FAILOVER_MS);
    load_steps(&ss);
    for (int i = 0; i < n; i++)
        late += steps_after(&ss, moved[i].name, moved[i].epoch, thaw_ns);
    cr_log_info("the removed node took %d steps after it was continued",
                late);
    checked = check_order(&ss, &overlaps);
    cr_expect_geq(checked, n, "only %d hand-offs in the step logs", checked);
    cr_expect_eq(overlaps, 0, "%d agents ran on two nodes at once",
                 overlaps);
    /* Each new owner waited out the lease: the frozen node never said it
     * let go.  (Counted per moved agent: placement may move others.) */
    for (int k = 0; k < n; k++) {
        char needle[160];
        int seen = 0;

        snprintf(needle, sizeof needle, "agent '%s': handed over: the "
                                        "previous owner's lease has run out",
                 moved[k].name);
        for (int i = 0; i < c.n; i++)
            if (i != x)
                seen += tc_log_count(&c, i, needle);
        waited += seen > 0;
    }
    cr_expect_eq(waited, n, "%d of %d new owners waited out the lease",
                 waited, n);
    free(ss.v);
}

/* A node comes back and the leader spreads agents onto it from live
 * nodes: the old owners apply the move and let the agents go, and say so;
 * the new owner starts then, never before the old owner's last step. */
Test(handoff, rebalancing_waits_for_the_old_owner_to_let_go)
{
    struct tc_agent moved[CAP], a[CAP];
    struct steps ss;
    char why[256];
    uint64_t end;
    int leader, f, n, overlaps, checked, got = 0;

    leader = start("ho-rebalance");
    f = tc_pick_follower(&c, leader, 0);
    cr_assert_geq(f, 0, "no follower owns an agent");
    n = tc_agents_on(&c, leader, f, moved, CAP);
    tc_kill(&c, f);
    cr_assert(tc_wait_moved(&c, leader, moved, n, f, MOVE_MS, why,
                            sizeof why),
              "%s", why);
    cr_assert_eq(tc_start_node(&c, f, 15000), 0, "see %s", c.nodes[f].d.log);
    /* Rebalancing moves one agent every two seconds onto the node that
     * came back, until the load is even. */
    end = td_ms() + 30000;
    while (td_ms() < end && got < 2) {
        tc_expect_running(&c);
        got = 0;
        n = tc_agents(&c, leader, a, CAP);
        for (int i = 0; i < n; i++)
            got += a[i].owner == c.nodes[f].id && a[i].seq > 0;
        td_sleep_ms(100);
    }
    cr_assert_geq(got, 2, "node %d got %d agents back", f + 1, got);
    cr_expect_gt(tc_log_count(&c, f, "the previous owner let it go"), 0,
                 "no old owner said it let go (see %s)", c.nodes[f].d.log);
    load_steps(&ss);
    checked = check_order(&ss, &overlaps);
    cr_expect_geq(checked, 2);
    cr_expect_eq(overlaps, 0, "%d agents ran on two nodes at once",
                 overlaps);
    free(ss.v);
    cr_expect_eq(tc_check(&c, 30000), 0);
}
