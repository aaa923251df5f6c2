/*
 * A real network partition: three outlastd processes, each in a network
 * namespace of its own, joined by a bridge that lives in a fourth
 * namespace.  Every interface the test makes is created inside those
 * namespaces, so the host's own interfaces are never touched.
 *
 * A node is cut off by setting its link down, first a follower that hosts
 * agents and, after healing, the leader.  While it is cut off:
 *  - the minority commits nothing: its lease lapses, it no longer leads,
 *    and its checkpoint rows and applied index stop growing within the
 *    lease period plus a margin and stay put for as long as it is cut off;
 *  - the majority resumes its agents: a new owner, a newer epoch and a
 *    committed checkpoint under it, while the majority keeps committing.
 * After the link comes back up the node catches up with the leader's
 * commit index, the leader sees it alive, and it serves again: an agent
 * granted to it after the heal commits checkpoints signed with its key.
 * The invariant checker then finds no divergence on any node.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "record/seal.h"
#include "base/keys.h"
#include "tests/support/cluster.h"
#include "tests/support/faults.h"

#define N 3
#define PORT 7100
#define PREFIX "olp" /* namespaces: olp<pid>-br, olp<pid>-n<i> */

#define LEASE_MS 500                /* failover_ms / 2 in tc's config */
#define QUIET_MS (LEASE_MS + 1500)  /* the minority stops committing */
#define HOLD_MS 3000   /* ... and is watched this long after the move */
#define LEADER_MS 15000
#define MOVE_MS 15000
#define CATCHUP_MS 20000
#define ALIVE_MS 15000
#define SERVE_MS 20000
#define CHECK_MS 30000
#define N_COUNTERS 6
#define BUSY 20 /* own checkpoints a node commits just before its cut */

static struct tc c;

static char ns_br[64];
static char ns_node[N][64];
static int made_br, made_node[N];

/* ---- namespaces ---- */

static void net_teardown(void)
{
    for (int i = 0; i < N; i++)
        if (made_node[i]) {
            (void)nf_sh(NULL, 0, "ip netns del %s", ns_node[i]);
            made_node[i] = 0;
        }
    if (made_br) {
        (void)nf_sh(NULL, 0, "ip netns del %s", ns_br);
        made_br = 0;
    }
}

/* The bridge namespace, one namespace per node with `eth0` wired to the
 * bridge, 10.213.0.<i>/24 on it and `lo` up.  Skips the test if a
 * namespace cannot be created. */
static void net_setup(void)
{
    char out[768];

    nf_remove_leftovers(PREFIX);
    snprintf(ns_br, sizeof ns_br, PREFIX "%d-br", (int)getpid());
    if (nf_sh(out, sizeof out, "ip netns add %s", ns_br) != 0)
        cr_skip_test("cannot create a network namespace (this test needs "
                     "CAP_SYS_ADMIN and CAP_NET_ADMIN, e.g. root): %s",
                     out);
    made_br = 1;
    NF_MUST("ip -n %s link add br0 type bridge", ns_br);
    NF_MUST("ip -n %s link set br0 up", ns_br);
    for (int i = 0; i < N; i++) {
        snprintf(ns_node[i], sizeof ns_node[i], PREFIX "%d-n%d",
                 (int)getpid(), i + 1);
        if (nf_sh(out, sizeof out, "ip netns add %s", ns_node[i]) != 0)
            cr_skip_test("cannot create a network namespace: %s", out);
        made_node[i] = 1;
        NF_MUST("ip -n %s link add v%d type veth peer name eth0 netns %s",
             ns_br, i + 1, ns_node[i]);
        NF_MUST("ip -n %s link set v%d master br0 up", ns_br, i + 1);
        NF_MUST("ip -n %s link set lo up", ns_node[i]);
        NF_MUST("ip -n %s addr add 10.213.0.%d/24 dev eth0", ns_node[i], i + 1);
        NF_MUST("ip -n %s link set eth0 up", ns_node[i]);
    }
}

static void link_set(int i, const char *updown)
{
    NF_MUST("ip -n %s link set eth0 %s", ns_node[i], updown);
}

static void teardown(void)
{
    tc_cleanup(&c);
    net_teardown();
}

TestSuite(partition, .fini = teardown, .timeout = 180);

/* ---- helpers ---- */

static void spawn(int via, const char *name, const char *config)
{
    char err[512];

    cr_assert_eq(td_spawn_agent(&c.nodes[via].d, "counter", name, config,
                                err, sizeof err),
                 0, "spawn '%s' via node %d: %s", name, via + 1, err);
}

static int count_started(int via)
{
    struct tc_agent a[64];
    int n = tc_agents(&c, via, a, 64), ok = 0;

    for (int i = 0; i < n; i++)
        ok += a[i].owner != 0 && a[i].seq > 0 &&
              strcmp(a[i].status, "running") == 0;
    return ok;
}

static struct tc_status status_of(int i)
{
    struct tc_status st;

    cr_assert_eq(tc_status(&c, i, &st), 0, "node %d: cluster.status", i + 1);
    return st;
}

static unsigned all_but(int i)
{
    return ((1u << N) - 1) & ~(1u << i);
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Rows of `st` (which selects seal bodies) signed with node signer's key;
 * finalizes st. */
static int64_t count_signed(sqlite3_stmt *st, int signer)
{
    int64_t n = 0;

    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ol__seal s;
        char hex[OL_PK_HEX_SIZE];

        if (ol__seal_parse(sqlite3_column_blob(st, 0),
                           (size_t)sqlite3_column_bytes(st, 0), &s) != 0)
            continue;
        ol__pk_hex(s.signer, hex);
        n += strcmp(hex, c.nodes[signer].pk) == 0;
    }
    sqlite3_finalize(st);
    return n;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;

    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
                 "%s", sqlite3_errmsg(db));
    return st;
}

/* Checkpoints of (agent, epoch) in node via's database signed with node
 * signer's key. */
static int64_t signed_under(int via, const char *agent, uint64_t epoch,
                            int signer)
{
    sqlite3 *db = td_db(&c.nodes[via].d);
    sqlite3_stmt *st = prepare(db, "SELECT s.body FROM checkpoints k JOIN "
                                   "seals s ON s.id = k.seal WHERE "
                                   "k.agent = ?1 AND k.epoch = ?2");
    int64_t n;

    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)epoch);
    n = count_signed(st, signer);
    sqlite3_close(db);
    return n;
}

/* Checkpoints in node via's database that node signer stepped (wall
 * clock) strictly between from and to. */
static int64_t signed_between(int via, int signer, int64_t from, int64_t to)
{
    sqlite3 *db = td_db(&c.nodes[via].d);
    sqlite3_stmt *st = prepare(db, "SELECT s.body FROM checkpoints k JOIN "
                                   "seals s ON s.id = k.seal WHERE "
                                   "k.time_ms > ?1 AND k.time_ms < ?2");
    int64_t n;

    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    n = count_signed(st, signer);
    sqlite3_close(db);
    return n;
}

/* Does node v run an agent granted to it after `before` was taken (a
 * newer epoch, or an agent spawned since) with a committed checkpoint
 * under that grant signed with v's key, as node via's database shows? */
static int serves(int via, int v, const struct tc_agent *before,
                  int n_before, char *what, size_t cap)
{
    struct tc_agent a[64];
    int n = tc_agents(&c, via, a, 64);

    for (int k = 0; k < n; k++) {
        uint64_t old = 0;
        int64_t cnt;

        if (a[k].owner != c.nodes[v].id ||
            strcmp(a[k].status, "running") != 0)
            continue;
        for (int j = 0; j < n_before; j++)
            if (strcmp(before[j].name, a[k].name) == 0)
                old = before[j].epoch;
        if (a[k].epoch <= old)
            continue;
        cnt = signed_under(via, a[k].name, a[k].epoch, v);
        if (cnt > 0) {
            snprintf(what, cap, "'%s' epoch %" PRIu64 " (was %" PRIu64
                                "): %" PRId64 " checkpoint(s) signed by "
                                "node %d",
                     a[k].name, a[k].epoch, old, cnt, v + 1);
            return 1;
        }
    }
    return 0;
}

/* ---- the minority ---- */

/* What the cut-off node holds, watched from the cut until the heal. */
struct minority {
    int i;
    uint64_t t_cut, t_frozen;
    int frozen;
    int64_t ckpts, applied;       /* at t_frozen */
    int64_t last_ckpts, last_applied;
    uint64_t last_change;         /* when either last grew */
    int lost_before;              /* "lease lost" log lines before the cut */
};

/* Poll once.  Until QUIET_MS after the cut the node may still apply what
 * reached it; from then on nothing it holds may change, its lease must be
 * gone and it must not lead. */
static void watch(struct minority *m)
{
    uint64_t now = td_ms();
    int64_t ck = tc_ckpt_count(&c, m->i), ap = tc_db_applied(&c, m->i);

    if (ck != m->last_ckpts || ap != m->last_applied) {
        m->last_ckpts = ck;
        m->last_applied = ap;
        m->last_change = now;
    }
    if (!m->frozen && now >= m->t_cut + QUIET_MS) {
        struct tc_status st = status_of(m->i);

        m->frozen = 1;
        m->t_frozen = now;
        m->ckpts = ck;
        m->applied = ap;
        cr_assert_not(st.lease, "node %d still holds its lease %" PRIu64
                                " ms after it was cut off",
                      m->i + 1, now - m->t_cut);
        cr_assert_str_neq(st.role, "leader",
                          "node %d still leads %" PRIu64 " ms after it was "
                          "cut off from the majority",
                          m->i + 1, now - m->t_cut);
        cr_assert_gt(tc_log_count(&c, m->i, "lease lost: agents here are "
                                            "paused"),
                     m->lost_before,
                     "node %d never logged that it paused its agents",
                     m->i + 1);
        return;
    }
    if (m->frozen) {
        cr_assert_eq(ck, m->ckpts,
                     "cut-off node %d committed: %" PRId64 " checkpoint "
                     "rows %" PRIu64 " ms after the cut, %" PRId64 " at %"
                     PRIu64 " ms",
                     m->i + 1, m->ckpts, m->t_frozen - m->t_cut, ck,
                     now - m->t_cut);
        cr_assert_eq(ap, m->applied,
                     "cut-off node %d applied more: index %" PRId64 " %"
                     PRIu64 " ms after the cut, %" PRId64 " at %" PRIu64
                     " ms",
                     m->i + 1, m->applied, m->t_frozen - m->t_cut, ap,
                     now - m->t_cut);
    }
}

/* Sleep up to `ms` in steps, watching the minority. */
static void watch_for(struct minority *m, int ms)
{
    uint64_t end = td_ms() + (uint64_t)ms;

    do {
        tc_expect_running(&c);
        watch(m);
        td_sleep_ms(50);
    } while (td_ms() < end);
}

/* ---- one round ---- */

/* Agents that node v runs in node via's view, waiting (bounded) for
 * placement or rebalancing to give it some. */
static int hosted(int via, int v, struct tc_agent *out)
{
    uint64_t end = td_ms() + 15000;
    int n;

    while ((n = tc_agents_on(&c, via, v, out, 64)) < 1 && td_ms() < end)
        td_sleep_ms(100);
    return n;
}

/* Cut node v off, check both sides, heal, check that v is back.  Returns
 * the leader after the heal. */
static int partition_round(int r, int v, int leader)
{
    struct minority m;
    struct tc_agent moved[64], before[64];
    char why[512], what[512];
    int n_moved, n_before, maj_leader = -1, moved_ok = 0;
    int64_t maj_at_freeze, maj_end, own;
    uint64_t t_moved = 0, t_heal, end;
    int64_t cut_wall, heal_wall;
    const char *role = v == leader ? "leader" : "follower";
    char fresh[32];

    n_moved = hosted(leader, v, moved);
    cr_assert_geq(n_moved, 1, "round %d: the %s, node %d, hosts no agent",
                  r, role, v + 1);
    /* Cut it off while it is busy: its own checkpoints keep committing. */
    own = tc_signed_by(&c, v, v, NULL);
    end = td_ms() + 15000;
    while (tc_signed_by(&c, v, v, NULL) < own + BUSY && td_ms() < end) {
        tc_expect_running(&c);
        td_sleep_ms(50);
    }
    cr_assert_geq(tc_signed_by(&c, v, v, NULL), own + BUSY,
                  "round %d: node %d committed fewer than %d checkpoints of "
                  "its own in 15 s before the cut",
                  r, v + 1, BUSY);
    tc_observe(&c);

    memset(&m, 0, sizeof m);
    m.i = v;
    m.lost_before = tc_log_count(&c, v, "lease lost: agents here are "
                                        "paused");
    m.last_ckpts = tc_ckpt_count(&c, v);
    m.last_applied = tc_db_applied(&c, v);
    m.t_cut = m.last_change = td_ms();
    link_set(v, "down");
    cut_wall = wall_ms();
    cr_log_info("round %d: cut off the %s, node %d, which runs %d agent(s)",
                r, role, v + 1, n_moved);

    /* The majority elects (or keeps) a leader and resumes v's agents. */
    end = m.t_cut + LEADER_MS;
    while (maj_leader < 0) {
        watch(&m);
        maj_leader = tc_wait_leader(&c, all_but(v), 0);
        cr_assert(maj_leader >= 0 || td_ms() < end,
                  "round %d: the majority had no leader within %d ms of "
                  "cutting off node %d",
                  r, LEADER_MS, v + 1);
    }
    end = m.t_cut + MOVE_MS;
    while (!moved_ok) {
        watch(&m);
        moved_ok = tc_wait_moved(&c, maj_leader, moved, n_moved, v, 0, why,
                                 sizeof why);
        if (!moved_ok) {
            /* Leadership may still move within the majority. */
            int li = tc_wait_leader(&c, all_but(v), 0);

            if (li >= 0)
                maj_leader = li;
        }
        cr_assert(moved_ok || td_ms() < end,
                  "round %d: cut-off node %d's %d agent(s) did not resume "
                  "on the majority within %d ms: %s",
                  r, v + 1, n_moved, MOVE_MS, why);
    }
    t_moved = td_ms();
    cr_log_info("round %d: node %d's agents committed under new owners "
                "after %" PRIu64 " ms (majority leader node %d)",
                r, v + 1, t_moved - m.t_cut, maj_leader + 1);

    /* Keep it cut off a while longer: the minority holds still while the
     * majority keeps committing. */
    while (!m.frozen)
        watch_for(&m, 50);
    maj_at_freeze = tc_ckpt_count(&c, maj_leader);
    watch_for(&m, HOLD_MS);
    maj_end = tc_ckpt_count(&c, maj_leader);
    cr_assert_gt(maj_end, maj_at_freeze,
                 "round %d: the majority committed nothing in %d ms while "
                 "node %d was cut off (%" PRId64 " rows)",
                 r, HOLD_MS, v + 1, maj_end);
    cr_log_info("round %d: node %d stopped growing %" PRIu64 " ms after the "
                "cut (at %" PRId64 " rows, index %" PRId64 ") and held "
                "still for %" PRIu64 " ms; the majority committed %" PRId64
                " rows meanwhile",
                r, v + 1, m.last_change - m.t_cut, m.ckpts, m.applied,
                td_ms() - m.t_frozen, maj_end - maj_at_freeze);

    /* Heal. */
    watch(&m);
    tc_observe(&c);
    heal_wall = wall_ms();
    link_set(v, "up");
    t_heal = td_ms();
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "round %d: no leader known to all within %d ms "
                             "of healing node %d",
                  r, LEADER_MS, v + 1);
    {
        uint64_t target = status_of(leader).commit_index;

        end = td_ms() + CATCHUP_MS;
        while ((uint64_t)tc_db_applied(&c, v) < target && td_ms() < end) {
            tc_expect_running(&c);
            td_sleep_ms(50);
        }
        cr_assert_geq(tc_db_applied(&c, v), (int64_t)target,
                      "round %d: healed node %d applied only up to %" PRId64
                      " of the leader's commit index %" PRIu64
                      " within %d ms",
                      r, v + 1, tc_db_applied(&c, v), target, CATCHUP_MS);
        cr_log_info("round %d: node %d caught up to index %" PRIu64
                    " %" PRIu64 " ms after the heal",
                    r, v + 1, target, td_ms() - t_heal);
    }
    cr_assert(tc_wait_alive(&c, leader, v, ALIVE_MS),
              "round %d: leader node %d never saw healed node %d alive", r,
              leader + 1, v + 1);
    end = td_ms() + ALIVE_MS;
    while (!status_of(v).lease && td_ms() < end)
        td_sleep_ms(50);
    cr_assert(status_of(v).lease, "round %d: healed node %d never got its "
                                  "lease back",
              r, v + 1);

    /* It serves again: a fresh agent (placed on the least loaded node) or
     * rebalancing gives it work, which it signs and commits. */
    n_before = tc_agents(&c, leader, before, 64);
    cr_assert_geq(n_before, 0);
    snprintf(fresh, sizeof fresh, "fresh%d", r);
    spawn(leader, fresh, "{\"interval_ms\": 30}");
    end = td_ms() + SERVE_MS;
    while (!serves(leader, v, before, n_before, what, sizeof what) &&
           td_ms() < end) {
        int li = tc_wait_leader(&c, 0, 0);

        if (li >= 0)
            leader = li;
    }
    cr_assert(serves(leader, v, before, n_before, what, sizeof what),
              "round %d: healed node %d committed no checkpoint of its own "
              "under a new grant within %d ms of being seen alive",
              r, v + 1, SERVE_MS);
    cr_log_info("round %d: node %d serves again %" PRIu64 " ms after the "
                "heal: %s",
                r, v + 1, td_ms() - t_heal, what);

    /* Nothing node v stepped while it was cut off ever committed: its
     * agents had moved, so whatever it sent after the heal was fenced. */
    for (int i = 0; i < N; i++)
        cr_assert_eq(signed_between(i, v, cut_wall, heal_wall), 0,
                     "round %d: node %d holds checkpoints that node %d "
                     "signed while it was cut off",
                     r, i + 1, v + 1);
    cr_assert_eq(tc_check(&c, CHECK_MS), 0,
                 "round %d: the invariant checker failed after healing "
                 "node %d",
                 r, v + 1);
    return leader;
}

Test(partition, minority_commits_nothing_and_heals_without_divergence)
{
    struct tc_opts o = {.n = N, .tag = "part-"};
    char name[32];
    uint64_t t0 = td_ms();
    int leader, f;

    net_setup();
    tc_init(&c, &o);
    for (int i = 0; i < N; i++) {
        snprintf(c.nodes[i].addr, sizeof c.nodes[i].addr, "10.213.0.%d:%d",
                 i + 1, PORT);
        snprintf(c.nodes[i].ns, sizeof c.nodes[i].ns, "%s", ns_node[i]);
    }
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader elected across the namespaces");
    for (int i = 0; i < N_COUNTERS; i++) {
        snprintf(name, sizeof name, "c%d", i + 1);
        spawn(leader, name, "{\"interval_ms\": 30}");
    }
    {
        uint64_t end = td_ms() + 20000;

        while (count_started(leader) < N_COUNTERS && td_ms() < end)
            td_sleep_ms(50);
        cr_assert_geq(count_started(leader), N_COUNTERS,
                      "not all %d agents were placed and started within "
                      "20 s",
                      N_COUNTERS);
    }

    /* A follower that hosts agents. */
    f = -1;
    {
        uint64_t end = td_ms() + 15000;

        while ((f = tc_pick_follower(&c, leader, 0)) < 0 && td_ms() < end)
            td_sleep_ms(100);
    }
    cr_assert_geq(f, 0, "no follower hosts agents");
    leader = partition_round(0, f, leader);

    /* Then the leader. */
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader before cutting the leader off");
    (void)partition_round(1, leader, leader);

    cr_log_info("partition test: %" PRIu64 " ms in all", td_ms() - t0);
}
