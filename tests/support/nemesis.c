/*
 * The nemesis driver: see nemesis.h.  It owns one run at a time (a
 * suite's .fini tears it down with nem_teardown()), makes the cluster and
 * its agents, plays each round's plan against it and runs the checker.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nemesis_int.h"

#define PORT 7300
#define HEALTHY_MS 30000  /* a leader, all alive, all agents running */
#define PROGRESS_MS 30000 /* every agent commits again after the faults */
#define CHECK_MS 30000
#define LEDGER_MS 20000
#define WARM_MS 400

static struct nem M;

/* ---- the plan: a pure function of (seed, round, options) ---- */

static uint64_t draw(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The (r mod popcount)-th set bit of mask. */
static int nth_bit(unsigned mask, uint64_t r)
{
    int n = __builtin_popcount(mask), want;

    if (n == 0)
        return 0;
    want = (int)(r % (uint64_t)n);
    for (int b = 0; b < 32; b++)
        if ((mask >> b) & 1 && want-- == 0)
            return b;
    return 0;
}

/* failover_ms x a factor drawn in lo..hi thousandths. */
static int scaled(int failover_ms, uint64_t r, int lo, int hi)
{
    return (int)((int64_t)failover_ms *
                 (lo + (int64_t)(r % (uint64_t)(hi - lo + 1))) / 1000);
}

void nem_plan(uint64_t seed, int round, const struct nem_opts *o,
              int failover_ms, struct nem_plan *out)
{
    uint64_t s = seed ^ ((uint64_t)round * 0xd1b54a32d192ed03ull);
    unsigned kinds = o->kinds ? o->kinds & NEM_ALL_KINDS : NEM_ALL_KINDS;
    unsigned roles = o->roles ? o->roles & NEM_ALL_ROLES : NEM_ALL_ROLES;
    int maxf = o->max_faults < 1 ? 1
               : o->max_faults > NEM_MAX_FAULTS ? NEM_MAX_FAULTS
                                                : o->max_faults;
    uint64_t r = draw(&s);

    memset(out, 0, sizeof *out);
    out->n_faults = maxf > 1 && r % 3 == 0 ? 2 : 1;
    /* Every fault takes the same draws whatever its kind, so one fault's
     * kind never shifts the next one's numbers. */
    for (int i = 0; i < NEM_MAX_FAULTS; i++) {
        struct nem_fault *f = &out->f[i];
        uint64_t rk = draw(&s), rr = draw(&s), rh = draw(&s);
        uint64_t rd = draw(&s), rp = draw(&s);

        f->kind = nth_bit(kinds, rk);
        f->role = f->kind == NEM_SPLIT_PAIR ? NEM_LEADER : nth_bit(roles, rr);
        switch (f->kind) {
        case NEM_SPLIT:
        case NEM_SPLIT_PAIR:
            f->hold_ms = scaled(failover_ms, rh, 1500, 4000);
            break;
        case NEM_SLOW_DISK:
            f->hold_ms = scaled(failover_ms, rh, 1000, 4000);
            f->delay_us = 20000 + (int64_t)(rd % 230001);
            break;
        default: /* kill, pause, suspend: 0.5-3 x failover */
            f->hold_ms = scaled(failover_ms, rh, 500, 3000);
            break;
        }
        f->pick = (uint32_t)rp;
    }
    out->gap_ms = 200 + (int)(draw(&s) % 801);
}

const char *nem_kind_name(int kind)
{
    static const char *const names[] = {"kill", "pause", "suspend",
                                        "split", "split-leader-pair",
                                        "slow-disk"};

    return kind >= 0 && kind < NEM_KINDS ? names[kind] : "?";
}

const char *nem_role_name(int role)
{
    static const char *const names[] = {"leader", "owner", "follower"};

    return role >= 0 && role < NEM_ROLES ? names[role] : "?";
}

/* ---- the cluster ---- */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long x;

    if (v == NULL || v[0] == '\0')
        return dflt;
    x = strtoull(v, &end, 0);
    cr_assert(*end == '\0', "%s='%s' is not a number", name, v);
    return (uint64_t)x;
}

static void hold(struct nem *m, int ms)
{
    uint64_t end = td_ms() + (uint64_t)ms;

    while (td_ms() < end) {
        tc_expect_running(&m->c);
        td_sleep_ms(end - td_ms() > 50 ? 50 : (int)(end - td_ms()));
    }
}

static void spawn_agent(struct nem *m, int via, const char *name,
                        int interval_ms)
{
    char cfg[512], err[512];

    snprintf(cfg, sizeof cfg, "{\"dir\": \"%s\", \"interval_ms\": %d}",
             m->steps, interval_ms);
    cr_assert_eq(td_spawn_agent(&m->c.nodes[via].d, "steplog", name, cfg,
                                err, sizeof err),
                 0, "spawn '%s' via node %d: %s", name, via + 1, err);
}

/* A leader that every running node names, every node alive in its view
 * and every agent running on a node; the leader's index, or -1 with the
 * reason in `why`. */
static int healthy(struct nem *m, int timeout_ms, char *why, size_t cap)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    snprintf(why, cap, "no leader that every node names");
    do {
        struct tc_status st;
        struct tc_agent a[NEM_AGENTS_MAX + 2];
        int li = tc_wait_leader(&m->c, 0, 0), n, ok = 1;

        if (li < 0 || tc_status(&m->c, li, &st) != 0)
            continue;
        for (int k = 0; k < st.n_nodes && ok; k++)
            if (st.nodes[k].id != m->c.nodes[li].id &&
                strcmp(st.nodes[k].health, "alive") != 0) {
                snprintf(why, cap, "leader node %d sees node %" PRIu64
                                   " as '%s'",
                         li + 1, st.nodes[k].id, st.nodes[k].health);
                ok = 0;
            }
        n = tc_agents(&m->c, li, a, NEM_AGENTS_MAX + 2);
        if (ok && n < m->n_agents) {
            snprintf(why, cap, "leader node %d lists %d of %d agents",
                     li + 1, n, m->n_agents);
            ok = 0;
        }
        for (int k = 0; k < n && ok; k++)
            if (strcmp(a[k].status, "running") != 0 || a[k].owner == 0 ||
                a[k].seq == 0) {
                snprintf(why, cap, "agent '%s' is %s on node %" PRIu64
                                   " at seq %" PRIu64,
                         a[k].name, a[k].status, a[k].owner, a[k].seq);
                ok = 0;
            }
        if (ok)
            return li;
        td_sleep_ms(100);
    } while (td_ms() < end);
    return -1;
}

/* Every agent has committed a checkpoint stamped at or after `since`
 * (wall ms), as node via's database shows; 1, or 0 naming one that has
 * not in `why`. */
static int progressed(struct nem *m, int via, int64_t since, int timeout_ms,
                      char *why, size_t cap)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    do {
        sqlite3 *db = td_db(&m->c.nodes[via].d);
        sqlite3_stmt *st;
        int ok = 1;

        cr_assert_eq(sqlite3_prepare_v2(db, "SELECT max(time_ms) FROM "
                                            "checkpoints WHERE agent = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
        for (int k = 0; k < m->n_agents && ok; k++) {
            int64_t t = 0;

            sqlite3_bind_text(st, 1, m->agents[k], -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW)
                t = sqlite3_column_int64(st, 0);
            sqlite3_reset(st);
            if (t < since) {
                snprintf(why, cap, "'%s' has committed nothing since the "
                                   "faults ended (last at %" PRId64
                                   ", ended at %" PRId64 ")",
                         m->agents[k], t, since);
                ok = 0;
            }
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (ok)
            return 1;
        td_sleep_ms(100);
    } while (td_ms() < end);
    return 0;
}

/* The node running the ledger, in node via's view; -1 if none. */
static int ledger_owner(struct nem *m, int via)
{
    struct tc_agent a[NEM_AGENTS_MAX + 2];
    int n = tc_agents(&m->c, via, a, NEM_AGENTS_MAX + 2);

    for (int k = 0; k < n; k++)
        if (strcmp(a[k].name, NEM_LEDGER) == 0)
            return tc_index(&m->c, a[k].owner);
    return -1;
}

/* The (pick mod count)-th node in `mask`; -1 if the mask is empty. */
static int pick_in(unsigned mask, uint32_t pick)
{
    return mask ? nth_bit(mask, pick) : -1;
}

static unsigned up_mask(const struct nem *m)
{
    unsigned mask = 0;

    for (int i = 0; i < m->c.n; i++)
        if (m->c.nodes[i].up)
            mask |= 1u << i;
    return mask;
}

/* The node a fault aimed at `role` hits, given the leader. */
static int target(struct nem *m, const struct nem_fault *f, int leader)
{
    unsigned others = up_mask(m) & ~(1u << leader);
    int owner;

    switch (f->role) {
    case NEM_LEADER:
        return leader;
    case NEM_OWNER:
        owner = ledger_owner(m, leader);
        return owner >= 0 ? owner : leader;
    default:
        owner = ledger_owner(m, leader);
        if (owner >= 0 && (others & ~(1u << owner)))
            others &= ~(1u << owner);
        return others ? pick_in(others, f->pick) : leader;
    }
}

static void add_what(struct nem *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_what(struct nem *m, const char *fmt, ...)
{
    size_t o = strlen(m->what);
    va_list ap;

    if (o && o + 2 < sizeof m->what) {
        memcpy(m->what + o, "; ", 3);
        o += 2;
    }
    va_start(ap, fmt);
    vsnprintf(m->what + o, sizeof m->what - o, fmt, ap);
    va_end(ap);
}

static void apply(struct nem *m, const struct nem_fault *f)
{
    char why[300];
    int leader = healthy(m, HEALTHY_MS, why, sizeof why), t;
    struct tc_node *nd;
    unsigned side;

    if (leader < 0)
        leader = tc_wait_leader(&m->c, 0, HEALTHY_MS);
    cr_assert_geq(leader, 0, "round %d: no leader to aim a fault at: %s",
                  m->round, why);
    t = target(m, f, leader);
    nd = &m->c.nodes[t];
    switch (f->kind) {
    case NEM_KILL:
        add_what(m, "kill -9 %s node %d, down %d ms",
                 nem_role_name(f->role), t + 1, f->hold_ms);
        tc_kill(&m->c, t);
        hold(m, f->hold_ms);
        cr_assert_eq(tc_start_node(&m->c, t, 20000), 0,
                     "round %d: node %d did not restart; see %s", m->round,
                     t + 1, nd->d.log);
        break;
    case NEM_PAUSE:
        add_what(m, "pause %s node %d for %d ms", nem_role_name(f->role),
                 t + 1, f->hold_ms);
        nf_freeze(nd->d.pid);
        nd->up = 0; /* nothing may wait on a stopped node */
        hold(m, f->hold_ms);
        nf_thaw(nd->d.pid);
        nd->up = 1;
        break;
    case NEM_SUSPEND:
        add_what(m, "suspend %s node %d for %d ms", nem_role_name(f->role),
                 t + 1, f->hold_ms);
        nd->up = 0;
        (void)nf_suspend(&m->ctl[t], nd->d.pid, f->hold_ms);
        nd->up = 1;
        break;
    case NEM_SPLIT:
    case NEM_SPLIT_PAIR:
        side = 1u << t;
        if (f->kind == NEM_SPLIT_PAIR)
            side |= 1u << pick_in(((1u << m->c.n) - 1) & ~side, f->pick);
        else if (m->c.n >= 5)
            side |= 1u << pick_in(((1u << m->c.n) - 1) & ~side &
                                      ~(1u << leader),
                                  f->pick);
        {
            char list[64] = "";
            size_t o = 0;

            for (int i = 0; i < m->c.n && o < sizeof list; i++)
                if (side & (1u << i))
                    o += (size_t)snprintf(list + o, sizeof list - o, "%s%d%s",
                                          o ? "," : "", i + 1,
                                          i == leader ? "(leader)" : "");
            add_what(m, "split {%s} from the rest (aimed at the %s, node "
                        "%d) for %d ms",
                     list, nem_role_name(f->role), t + 1, f->hold_ms);
        }
        nf_net_split(&m->net, side);
        hold(m, f->hold_ms);
        nf_net_split(&m->net, 0);
        break;
    case NEM_SLOW_DISK: {
        struct ol_shim_ctl *p = m->ctl[t].page;
        uint64_t s0 = p->syncs_delayed, w0 = p->submits_delayed;

        add_what(m, "slow disk on %s node %d, %" PRId64 " ms per sync for "
                    "%d ms",
                 nem_role_name(f->role), t + 1, f->delay_us / 1000,
                 f->hold_ms);
        nf_ctl_slow_disk(&m->ctl[t], f->delay_us);
        hold(m, f->hold_ms);
        nf_ctl_slow_disk(&m->ctl[t], 0);
        cr_log_info("round %d: node %d's slow disk delayed %" PRIu64
                    " syncs and %" PRIu64 " raft writes",
                    m->round, t + 1, p->syncs_delayed - s0,
                    p->submits_delayed - w0);
        /* The shim must have acted, or the round tested nothing. */
        cr_expect_gt(p->syncs_delayed + p->submits_delayed, s0 + w0,
                     "round %d: the slow-disk shim delayed nothing on node "
                     "%d",
                     m->round, t + 1);
        break;
    }
    }
}

/* ---- rounds ---- */

/* Runs round r; 0, or -1 when the cluster did not recover (the run
 * stops: later rounds would only measure the same breakage). */
static int run_round(struct nem *m, int r)
{
    struct nem_plan plan;
    char why[300];
    int leader, ok;
    int64_t healed;
    int before = m->res.violations;
    uint64_t t0 = td_ms();

    m->round = r;
    m->what[0] = '\0';
    nem_plan(m->seed, r, &m->o, m->failover_ms, &plan);
    leader = healthy(m, HEALTHY_MS, why, sizeof why);
    if (leader < 0) {
        nem_violation(m, NEM_INV_R, "unhealthy-before", "round %d: the "
                      "cluster was not healthy before the round: %s",
                      r, why);
        return -1;
    }
    if (!m->o.no_client)
        nem_client_start(m);
    hold(m, WARM_MS);
    for (int i = 0; i < plan.n_faults; i++) {
        if (i > 0)
            hold(m, plan.gap_ms);
        apply(m, &plan.f[i]);
    }
    healed = nem_wall_ms();
    cr_log_info("nemesis %s seed %" PRIu64 " round %d: %s", m->o.name,
                m->seed, r, m->what);

    leader = healthy(m, HEALTHY_MS, why, sizeof why);
    ok = leader >= 0 &&
         progressed(m, leader, healed, PROGRESS_MS, why, sizeof why);
    nem_client_stop(m);
    if (!ok) {
        char key[64];

        snprintf(key, sizeof key, "recovery-%d", r);
        nem_violation(m, NEM_INV_R, key, "the cluster did not recover "
                      "within %d ms after the faults: %s",
                      HEALTHY_MS + PROGRESS_MS, why);
        /* What can still be checked without every node: */
        leader = leader >= 0 ? leader : tc_wait_leader(&m->c, 0, 5000);
        if (leader >= 0)
            nem_check_steps(m, leader);
        return -1;
    }
    {
        int bad = tc_check(&m->c, CHECK_MS);
        char key[64];

        snprintf(key, sizeof key, "a-%d", r);
        if (bad)
            nem_violation(m, NEM_INV_A, key, "the invariant checker found "
                          "%d problem(s) (listed above)", bad);
    }
    if (!m->o.no_client && !nem_wait_ledger(m, leader, LEDGER_MS))
        cr_log_info("round %d: the ledger's committed state still lacks "
                    "acknowledged messages after %d ms",
                    r, LEDGER_MS);
    nem_check_steps(m, leader);
    if (!m->o.no_client)
        nem_check_sends(m, leader);
    nem_check_placements(m, leader);
    cr_log_info("nemesis %s seed %" PRIu64 " round %d: %d new "
                "violation(s), %" PRIu64 " ms",
                m->o.name, m->seed, r, m->res.violations - before,
                td_ms() - t0);
    return 0;
}

static void setup(struct nem *m, const struct nem_opts *o)
{
    struct tc_opts to = {.n = o->n, .tag = "nem",
                         .snapshot_threshold = o->snapshot_threshold,
                         .snapshot_trailing = o->snapshot_trailing,
                         .snapshot_mb = o->snapshot_mb};
    char why[600], name[32];
    int needs_net = (o->kinds & (NEM_K(NEM_SPLIT) | NEM_K(NEM_SPLIT_PAIR))) ||
                    o->kinds == 0;
    int leader;

    memset(m, 0, sizeof *m);
    m->o = *o;
    m->seed = env_u64("OL_NEMESIS_SEED", o->seed);
    m->rounds = (int)env_u64("OL_NEMESIS_ROUNDS", (uint64_t)o->rounds);
    m->res.seed = m->seed;
    m->failover_ms = 1000; /* tc_write_config's timing */
    m->made = 1;
    snprintf(m->dir, sizeof m->dir, "/tmp/ol-nem-XXXXXX");
    cr_assert_not_null(mkdtemp(m->dir), "mkdtemp");
    /* Agent hosts may run as another user: they write the step logs. */
    chmod(m->dir, 0755);
    snprintf(m->steps, sizeof m->steps, "%s/steps", m->dir);
    cr_assert_eq(mkdir(m->steps, 0777), 0, "mkdir %s", m->steps);
    chmod(m->steps, 0777);
    fprintf(stderr, "nemesis %s: seed %" PRIu64 ", %d rounds, %d nodes, "
                    "files in %s\n",
            o->name, m->seed, m->rounds, o->n, m->dir);
    cr_log_info("nemesis %s: seed %" PRIu64 ", %d rounds, %d nodes",
                o->name, m->seed, m->rounds, o->n);

    if (o->wan_rtt) {
        if (nf_wan_setup(&m->net, o->n, "olnw", o->wan_rtt, why,
                         sizeof why) != 0)
            cr_skip_test("nemesis %s runs over the WAN bed: %s", o->name,
                         why);
        m->use_net = 1;
    } else if (nf_net_setup(&m->net, o->n, "olnm", why, sizeof why) == 0)
        m->use_net = 1;
    else if (needs_net)
        cr_skip_test("nemesis %s needs network namespaces for its splits: "
                     "%s",
                     o->name, why);
    else
        cr_log_info("nemesis %s runs on loopback: %s", o->name, why);

    tc_init(&m->c, &to);
    for (int i = 0; i < o->n; i++) {
        struct tc_node *nd = &m->c.nodes[i];
        char path[300];

        if (m->use_net) {
            nf_net_addr(&m->net, i, PORT, nd->addr, sizeof nd->addr);
            snprintf(nd->ns, sizeof nd->ns, "%s", m->net.ns_node[i]);
        }
        snprintf(path, sizeof path, "%s/node%d.ctl", m->dir, i + 1);
        nf_ctl_create(&m->ctl[i], path);
        snprintf(nd->env[0], sizeof nd->env[0], "%s", nf_preload_env());
        snprintf(nd->env[1], sizeof nd->env[1], "%s=%s", OL_SHIM_CTL_ENV,
                 path);
    }
    tc_start(&m->c);
    leader = tc_wait_leader(&m->c, 0, 20000);
    cr_assert_geq(leader, 0, "nemesis %s: no leader elected", o->name);
    m->n_agents = 1 + (o->agents < NEM_AGENTS_MAX ? o->agents
                                                  : NEM_AGENTS_MAX);
    snprintf(m->agents[0], sizeof m->agents[0], NEM_LEDGER);
    spawn_agent(m, leader, NEM_LEDGER, 100);
    for (int k = 1; k < m->n_agents; k++) {
        snprintf(name, sizeof name, "s%d", k);
        snprintf(m->agents[k], sizeof m->agents[k], "%s", name);
        spawn_agent(m, leader, name, 25);
    }
    cr_assert_geq(healthy(m, HEALTHY_MS, why, sizeof why), 0,
                  "nemesis %s: the cluster did not come up: %s", o->name,
                  why);
}

void nem_run(const struct nem_opts *o, struct nem_result *out)
{
    struct nem *m = &M;
    char line[600];
    const char *sum = getenv("OL_NEMESIS_SUMMARY");

    setup(m, o);
    for (int r = 1; r <= m->rounds; r++) {
        m->res.rounds = r;
        if (run_round(m, r) != 0)
            break;
    }
    m->res.sends_acked = m->res.sends_unacked = 0;
    for (uint64_t k = 1; k < m->cl.next && k <= m->cl.cap; k++) {
        if (m->cl.msgs[k - 1].acked)
            m->res.sends_acked++;
        else
            m->res.sends_unacked++;
    }
    snprintf(line, sizeof line,
             "nemesis %s seed %" PRIu64 " rounds %d violations %d a=%d b=%d "
             "c=%d d=%d r=%d sends acked %" PRIu64 " unacked %" PRIu64
             " steps %" PRIu64,
             o->name, m->seed, m->res.rounds, m->res.violations,
             m->res.by_inv[NEM_INV_A], m->res.by_inv[NEM_INV_B],
             m->res.by_inv[NEM_INV_C], m->res.by_inv[NEM_INV_D],
             m->res.by_inv[NEM_INV_R], m->res.sends_acked,
             m->res.sends_unacked, m->res.steps);
    cr_log_info("%s", line);
    fprintf(stderr, "%s\n", line);
    if (sum) {
        FILE *f = fopen(sum, "a");

        if (f) {
            fprintf(f, "%s\n", line);
            fclose(f);
        }
    }
    if (out)
        *out = m->res;
    cr_expect_eq(m->res.violations, 0,
                 "nemesis %s, seed %" PRIu64 ": %d violation(s) in %d "
                 "round(s) (see the lines above); rerun with "
                 "OL_NEMESIS_SEED=%" PRIu64 " OL_NEMESIS_ROUNDS=%d "
                 "OL_NEMESIS_ALL=1 build/tests/integ_nemesis --filter "
                 "'nemesis/%s'",
                 o->name, m->seed, m->res.violations, m->res.rounds,
                 m->seed, m->res.rounds, o->name);
}

void nem_teardown(void)
{
    struct nem *m = &M;
    char cmd[300];

    if (!m->made)
        return;
    nem_client_free(m);
    for (int i = 0; i < m->c.n; i++)
        if (m->c.nodes[i].d.pid > 0)
            nf_thaw(m->c.nodes[i].d.pid);
    if (m->c.seen)
        tc_cleanup(&m->c);
    for (int i = 0; i < TC_MAX_NODES; i++)
        nf_ctl_close(&m->ctl[i]);
    if (m->use_net)
        nf_net_teardown(&m->net);
    for (size_t i = 0; i < m->n_seen; i++)
        free(m->seen[i]);
    free(m->seen);
    if (getenv("OL_KEEP_TMP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", m->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", m->dir);
    } else {
        fprintf(stderr, "kept nemesis files: %s\n", m->dir);
    }
    memset(m, 0, sizeof *m);
}
