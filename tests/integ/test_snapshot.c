/*
 * Raft snapshots in a real 3-node cluster with a low snapshot threshold.
 *
 * A node killed with SIGKILL misses thousands of log entries, which the
 * others compact away; when it comes back it can only catch up by
 * installing a snapshot.  Its database must then hold every agent's head
 * with the leader's hash, pass the invariant checker (snapshot gaps
 * allowed), and the node must serve again: an agent placed on it commits
 * checkpoints signed with its own key.
 *
 * A follower down while the others write more than the log's bound in
 * bytes (snapshot_mb), though far fewer entries than the threshold, is
 * sent a snapshot when it comes back: the leader snapshots by bytes, and
 * keeps no more trailing entries than fit the bound.  libraft 0.15 would
 * otherwise send it every entry it missed in one message, however large.
 *
 * A node that took snapshots itself is killed and restarted: libraft 0.15
 * restores that node's own, older snapshot at start while its SQLite is
 * already ahead.  The store must skip it, and nothing the node held may be
 * lost or rolled back.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/cluster.h"

#define THRESHOLD 64
#define TRAILING 16
#define N_FAST 6         /* counters ticking every millisecond */
#define ENTRIES 2000     /* log entries committed while a node is down */
#define LOAD_MS 60000    /* ... within this time */
#define LEADER_MS 15000
#define START_MS 15000
#define CATCHUP_MS 30000 /* a restarted node installs and catches up */
#define SERVE_MS 30000   /* a fresh agent lands on it and commits */

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(snapshot, .fini = teardown, .timeout = 240);

/* ---- helpers ---- */

static void spawn(int via, const char *name, const char *config)
{
    char err[512];

    cr_assert_eq(td_spawn_agent(&c.nodes[via].d, "counter", name, config,
                                err, sizeof err),
                 0, "spawn '%s' via node %d: %s", name, via + 1, err);
}

static void spawn_fast(int via)
{
    char name[16];

    for (int i = 0; i < N_FAST; i++) {
        snprintf(name, sizeof name, "fast%d", i + 1);
        spawn(via, name, "{\"interval_ms\": 1}");
    }
}

/* Running agents with a committed checkpoint, among those named with
 * `prefix`, in node via's view. */
static int count_started(int via, const char *prefix)
{
    struct tc_agent a[64];
    int n = tc_agents(&c, via, a, 64), ok = 0;

    for (int i = 0; i < n; i++)
        ok += strncmp(a[i].name, prefix, strlen(prefix)) == 0 &&
              a[i].owner != 0 && a[i].seq > 0 &&
              strcmp(a[i].status, "running") == 0;
    return ok;
}

static void wait_started(int via, const char *prefix, int want)
{
    uint64_t end = td_ms() + 20000;

    while (count_started(via, prefix) < want && td_ms() < end)
        td_sleep_ms(50);
    cr_assert_geq(count_started(via, prefix), want,
                  "not all %d '%s*' agents were placed and started within "
                  "20 s",
                  want, prefix);
}

/* Starts the cluster o describes, with its N_FAST "fast" agents running;
 * returns the leader. */
static int start_with_fast(const struct tc_opts *o)
{
    int leader;

    tc_init(&c, o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader elected");
    spawn_fast(leader);
    wait_started(leader, "fast", N_FAST);
    return leader;
}

static struct tc_status status_of(int i)
{
    struct tc_status st;

    cr_assert_eq(tc_status(&c, i, &st), 0, "node %d: cluster.status", i + 1);
    return st;
}

/* One checkpoint row: (agent, seq) and its hash. */
struct row {
    char agent[65];
    int64_t seq;
    uint8_t hash[32];
};

struct rows {
    struct row *r;
    size_t n;
};

/* Rows of node i's database from `sql`, which selects agent, seq, hash
 * ordered by agent, seq. */
static struct rows load(int i, const char *sql)
{
    sqlite3 *db = td_db(&c.nodes[i].d);
    sqlite3_stmt *st;
    struct rows out = {NULL, 0};
    size_t cap = 0;

    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
                 "%s", sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct row *r;

        if (out.n == cap) {
            cap = cap ? cap * 2 : 1024;
            out.r = realloc(out.r, cap * sizeof *out.r);
            cr_assert_not_null(out.r);
        }
        r = &out.r[out.n++];
        memset(r, 0, sizeof *r);
        snprintf(r->agent, sizeof r->agent, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        r->seq = sqlite3_column_int64(st, 1);
        cr_assert_eq(sqlite3_column_bytes(st, 2), 32);
        memcpy(r->hash, sqlite3_column_blob(st, 2), 32);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static struct rows heads(int i)
{
    return load(i, "SELECT agent, seq, hash FROM checkpoints k WHERE seq = "
                   "(SELECT max(seq) FROM checkpoints WHERE agent = "
                   "k.agent) ORDER BY agent");
}

static struct rows all_rows(int i)
{
    return load(i, "SELECT agent, seq, hash FROM checkpoints ORDER BY "
                   "agent, seq");
}

static void rows_free(struct rows *r)
{
    free(r->r);
    r->r = NULL;
    r->n = 0;
}

static int row_cmp(const struct row *a, const struct row *b)
{
    int d = strcmp(a->agent, b->agent);

    return d ? d : a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Do both head lists name the same agents with the same seq and hash?
 * On a difference, describe the first one in `why`. */
static int same_heads(const struct rows *a, const struct rows *b, char *why,
                      size_t cap)
{
    size_t i;

    for (i = 0; i < a->n && i < b->n; i++) {
        if (row_cmp(&a->r[i], &b->r[i]) != 0 ||
            memcmp(a->r[i].hash, b->r[i].hash, 32) != 0) {
            snprintf(why, cap,
                     "'%s' head seq %" PRId64 " vs '%s' head seq %" PRId64
                     "%s",
                     a->r[i].agent, a->r[i].seq, b->r[i].agent, b->r[i].seq,
                     row_cmp(&a->r[i], &b->r[i]) == 0 ? " (other hash)" : "");
            return 0;
        }
    }
    if (a->n != b->n) {
        snprintf(why, cap, "%zu agents vs %zu", a->n, b->n);
        return 0;
    }
    return 1;
}

/* Every row of `old` is in `now` with the same hash; reports and counts
 * the ones that are not.  Both are ordered by agent, seq. */
static int missing_rows(const struct rows *old, const struct rows *now,
                        int node, const char *when)
{
    size_t j = 0;
    int bad = 0;

    for (size_t i = 0; i < old->n; i++) {
        while (j < now->n && row_cmp(&now->r[j], &old->r[i]) < 0)
            j++;
        if (j < now->n && row_cmp(&now->r[j], &old->r[i]) == 0 &&
            memcmp(now->r[j].hash, old->r[i].hash, 32) == 0)
            continue;
        if (bad++ < 10)
            cr_expect_fail("node %d %s: '%s' seq %" PRId64 " it held before "
                           "the restart is %s",
                           node + 1, when, old->r[i].agent, old->r[i].seq,
                           j < now->n && row_cmp(&now->r[j], &old->r[i]) == 0
                               ? "replaced by another checkpoint"
                               : "gone");
    }
    return bad;
}

/* Lines of node i's log past byte `from` that contain `needle`. */
static int log_count_from(int i, long from, const char *needle)
{
    FILE *f = fopen(c.nodes[i].d.log, "r");
    char line[2048];
    int n = 0;

    if (f == NULL)
        return 0;
    fseek(f, from, SEEK_SET);
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static long log_size(int i)
{
    struct stat sb;

    return stat(c.nodes[i].d.log, &sb) == 0 ? (long)sb.st_size : 0;
}

static void stop_agent(int via, const char *name)
{
    struct td_resp r;
    char err[512];
    int rv = td_call(&c.nodes[via].d, &r, "op", "stop", "name", name, NULL);

    cr_assert_eq(rv, 0, "stop '%s' via node %d: %s", name, via + 1,
                 rv == 1 ? td_errmsg(&r, err, sizeof err) : "no answer");
    td_resp_free(&r);
}

static int all_stopped(int via)
{
    struct tc_agent a[64];
    int n = tc_agents(&c, via, a, 64), ok = n > 0;

    for (int i = 0; i < n; i++)
        ok &= strcmp(a[i].status, "stopped") == 0;
    return ok;
}

/* ---- a node that missed thousands of entries ---- */

Test(snapshot, a_node_down_for_long_catches_up_from_a_snapshot)
{
    /* The product's default segment size (the other tests use 8 MiB). */
    struct tc_opts o = {.n = 3, .tag = "snap-", .segment_mb = 32,
                        .snapshot_threshold =
                            THRESHOLD, .snapshot_trailing = TRAILING};
    struct tc_status st;
    struct rows lead_heads, vic_heads = {NULL, 0};
    char why[512] = "", name[16];
    uint64_t t0, from, end;
    int leader, victim, mine = -1, n_fresh = 3;
    int64_t own;

    leader = start_with_fast(&o);

    victim = (leader + 1) % c.n;
    from = status_of(leader).commit_index;
    tc_kill(&c, victim);
    t0 = td_ms();
    /* The others go on; the leader's log moves far past the victim. */
    end = t0 + LOAD_MS;
    do {
        leader = tc_wait_leader(&c, 0, LEADER_MS);
        cr_assert_geq(leader, 0, "no leader while node %d is down",
                      victim + 1);
        st = status_of(leader);
        if (st.commit_index >= from + ENTRIES)
            break;
        td_sleep_ms(100);
    } while (td_ms() < end);
    cr_assert_geq(st.commit_index, from + ENTRIES,
                  "only %" PRIu64 " entries committed in %d ms while node "
                  "%d was down",
                  st.commit_index - from, LOAD_MS, victim + 1);
    cr_assert_gt(st.snapshots_taken, 0, "the leader took no snapshot in %"
                                        PRIu64 " entries",
                 st.commit_index - from);
    cr_log_info("%" PRIu64 " entries committed in %" PRIu64 " ms while node "
                "%d was down; the leader took %" PRIu64 " snapshots",
                st.commit_index - from, td_ms() - t0, victim + 1,
                st.snapshots_taken);

    /* Stop the load so every head is fixed. */
    for (int i = 0; i < N_FAST; i++) {
        snprintf(name, sizeof name, "fast%d", i + 1);
        stop_agent(leader, name);
    }
    end = td_ms() + 20000;
    while (!all_stopped(leader) && td_ms() < end)
        td_sleep_ms(50);
    cr_assert(all_stopped(leader), "the agents did not all stop");
    lead_heads = heads(leader);
    cr_assert_eq(lead_heads.n, N_FAST);

    /* The victim comes back and can only catch up from a snapshot. */
    t0 = td_ms();
    cr_assert_eq(tc_start_node(&c, victim, START_MS), 0,
                 "node %d did not restart; see %s", victim + 1,
                 c.nodes[victim].d.log);
    end = td_ms() + CATCHUP_MS;
    do {
        st = status_of(victim);
        if (st.snapshots_installed > 0) {
            rows_free(&vic_heads);
            vic_heads = heads(victim);
            if (same_heads(&lead_heads, &vic_heads, why, sizeof why))
                break;
        }
        td_sleep_ms(100);
    } while (td_ms() < end);
    cr_assert_gt(st.snapshots_installed, 0,
                 "node %d installed no snapshot within %d ms (applied %"
                 PRIu64 ", commit %" PRIu64 ")",
                 victim + 1, CATCHUP_MS, st.applied_index, st.commit_index);
    cr_assert(same_heads(&lead_heads, &vic_heads, why, sizeof why),
              "node %d's heads differ from the leader's after it installed "
              "a snapshot: %s",
              victim + 1, why);
    cr_log_info("node %d installed %" PRIu64 " snapshot(s) and matched the "
                "leader's %zu heads after %" PRIu64 " ms",
                victim + 1, st.snapshots_installed, lead_heads.n,
                td_ms() - t0);
    {
        sqlite3 *db = td_db(&c.nodes[victim].d);

        cr_expect_gt(td_q1(db, "SELECT count(*) FROM checkpoints WHERE "
                               "flags & 1"),
                     0, "node %d holds no row marked as installed from a "
                        "snapshot",
                     victim + 1);
        sqlite3_close(db);
    }
    rows_free(&lead_heads);
    rows_free(&vic_heads);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");

    /* It serves again: fresh agents spread over the nodes, and the one it
     * gets commits checkpoints signed with its own key. */
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader after the restart");
    cr_assert(tc_wait_alive(&c, leader, victim, 15000),
              "leader node %d never saw node %d alive", leader + 1,
              victim + 1);
    for (int i = 0; i < n_fresh; i++) {
        snprintf(name, sizeof name, "fresh%d", i + 1);
        spawn(leader, name, "{\"interval_ms\": 20}");
    }
    wait_started(leader, "fresh", n_fresh);
    end = td_ms() + SERVE_MS;
    do {
        struct tc_agent a[8];
        int n = tc_agents_on(&c, leader, victim, a, 8);

        for (int k = 0; k < n && mine < 0; k++) {
            if (strncmp(a[k].name, "fresh", 5) == 0) {
                mine = k;
                snprintf(name, sizeof name, "%s", a[k].name);
            }
        }
        if (mine >= 0 && tc_signed_by(&c, leader, victim, name) > 0)
            break;
        td_sleep_ms(100);
    } while (td_ms() < end);
    cr_assert_geq(mine, 0, "no fresh agent was placed on node %d within %d "
                           "ms",
                  victim + 1, SERVE_MS);
    own = tc_signed_by(&c, leader, victim, name);
    cr_assert_gt(own, 0, "'%s' runs on node %d but the leader holds no "
                         "checkpoint of it signed by node %d",
                 name, victim + 1, victim + 1);
    /* The node itself learns of the commit with the leader's next append;
     * give it that long (bounded). */
    end = td_ms() + 10000;
    while (tc_signed_by(&c, victim, victim, name) <= 0 && td_ms() < end)
        td_sleep_ms(50);
    cr_expect_gt(tc_signed_by(&c, victim, victim, name), 0,
                 "node %d's own database holds none of its checkpoints of "
                 "'%s' 10 s after the leader's did",
                 victim + 1, name);
    cr_log_info("'%s' on node %d: %" PRId64 " committed checkpoints signed "
                "by it",
                name, victim + 1, own);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}

/* ---- the log bounded in bytes ---- */

/* Checkpoint bodies written while the follower is down: more than the
 * log keeps (1 MiB since the snapshot and a quarter as much behind it), though
 * the log holds more than the bodies (seals, hashes, framing). */
#define DOWN_BYTES (3u << 20)
#define DOWN_MS 30000 /* ... within this time */

/* The bytes of checkpoint bodies committed in node i's database. */
static int64_t body_bytes(int i)
{
    sqlite3 *db = td_db(&c.nodes[i].d);
    int64_t n = td_q1(db, "SELECT coalesce(sum(length(body)), 0) FROM "
                          "checkpoints");

    sqlite3_close(db);
    return n;
}

Test(snapshot, a_follower_behind_by_more_than_the_log_bytes_gets_a_snapshot)
{
    /* Thresholds in entries far above what the test writes: only the
     * bound in bytes (1 MiB) can make a snapshot. */
    struct tc_opts o = {.n = 3, .tag = "snapmb-", .snapshot_threshold =
                            1000000, .snapshot_trailing = 1000000,
                        .snapshot_mb = 1};
    struct tc_status st, lst;
    uint64_t end, from;
    int64_t bytes0;
    int leader, victim;
    char name[16];

    leader = start_with_fast(&o);
    /* Twice the load. */
    for (int i = 0; i < N_FAST; i++) {
        snprintf(name, sizeof name, "more%d", i + 1);
        spawn(leader, name, "{\"interval_ms\": 1}");
    }
    wait_started(leader, "more", N_FAST);
    victim = (leader + 1) % c.n;
    st = status_of(victim);
    cr_assert_eq(st.snapshots_installed, 0);
    from = status_of(leader).commit_index;
    bytes0 = body_bytes(leader);
    tc_kill(&c, victim);
    end = td_ms() + DOWN_MS;
    while (body_bytes(leader) - bytes0 < DOWN_BYTES && td_ms() < end)
        td_sleep_ms(200);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader while node %d is down", victim + 1);
    lst = status_of(leader);
    cr_assert_geq(body_bytes(leader) - bytes0, DOWN_BYTES,
                  "only %" PRId64 " bytes of checkpoints committed in %d ms",
                  body_bytes(leader) - bytes0, DOWN_MS);
    cr_assert_lt(lst.commit_index - from, 1000000u);
    cr_assert_gt(lst.snapshots_taken, 0,
                 "the leader took no snapshot over %" PRIu64 " entries "
                 "holding more than 3 MiB (snapshot_mb = 1)",
                 lst.commit_index - from);

    /* The follower comes back and catches up, from a snapshot. */
    cr_assert_eq(tc_start_node(&c, victim, START_MS), 0,
                 "node %d did not restart; see %s", victim + 1,
                 c.nodes[victim].d.log);
    end = td_ms() + CATCHUP_MS;
    do {
        st = status_of(victim);
        if (st.snapshots_installed > 0 &&
            st.applied_index >= lst.commit_index)
            break;
        td_sleep_ms(100);
    } while (td_ms() < end);
    cr_assert_gt(st.snapshots_installed, 0,
                 "node %d, down while %" PRIu64 " entries (over 3 MiB) "
                 "committed, installed no snapshot within %d ms (applied "
                 "%" PRIu64 ")",
                 victim + 1, lst.commit_index - from, CATCHUP_MS,
                 st.applied_index);
    cr_assert_geq(st.applied_index, lst.commit_index,
                  "node %d did not catch up within %d ms",
                  victim + 1, CATCHUP_MS);
    cr_log_info("%" PRIu64 " entries committed while node %d was down; "
                "the leader took %" PRIu64 " snapshot(s); node %d installed "
                "%" PRIu64,
                lst.commit_index - from, victim + 1, lst.snapshots_taken,
                victim + 1, st.snapshots_installed);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}

/* ---- a node restarted over its own, older snapshot ---- */

/* Kill node i, restart it, and check that nothing it held is gone. */
static void restart_over_own_snapshot(int i, const char *role)
{
    struct tc_status st = status_of(i);
    struct rows before, after, h0, h1;
    int64_t applied0, applied1, rows0;
    long log0;
    int skipped;

    cr_assert_gt(st.snapshots_taken, 0, "the %s node %d took no snapshot",
                 role, i + 1);
    /* Read the database after the kill: that is what survives it. */
    tc_kill(&c, i);
    before = all_rows(i);
    h0 = heads(i);
    applied0 = tc_db_applied(&c, i);
    rows0 = (int64_t)before.n;
    log0 = log_size(i);
    cr_assert_eq(tc_start_node(&c, i, START_MS), 0,
                 "node %d did not restart; see %s", i + 1,
                 c.nodes[i].d.log);

    /* Right after the start: raft has restored the node's own snapshot,
     * which the store must have skipped. */
    applied1 = tc_db_applied(&c, i);
    after = all_rows(i);
    h1 = heads(i);
    skipped = log_count_from(i, log0, "skipped: the store has applied");
    cr_expect_geq(skipped, 1, "the %s node %d did not report skipping its "
                              "own older snapshot at start (see %s)",
                  role, i + 1, c.nodes[i].d.log);
    cr_expect_eq(log_count_from(i, log0, "snapshot: "), 0,
                 "node %d logged a snapshot problem at start", i + 1);
    cr_expect_geq(applied1, applied0, "node %d's applied index went back "
                                      "from %" PRId64 " to %" PRId64,
                  i + 1, applied0, applied1);
    cr_expect_geq((int64_t)after.n, rows0, "node %d had %" PRId64 " rows, "
                                           "now %zu",
                  i + 1, rows0, after.n);
    cr_expect_eq(missing_rows(&before, &after, i, "at start"), 0,
                 "rows were lost or rolled back at start");
    for (size_t k = 0, j = 0; k < h0.n; k++) {
        while (j < h1.n && strcmp(h1.r[j].agent, h0.r[k].agent) < 0)
            j++;
        cr_expect(j < h1.n && strcmp(h1.r[j].agent, h0.r[k].agent) == 0 &&
                      h1.r[j].seq >= h0.r[k].seq,
                  "node %d: '%s' head went back from seq %" PRId64, i + 1,
                  h0.r[k].agent, h0.r[k].seq);
    }
    cr_log_info("%s node %d restarted over its own snapshot (%" PRIu64
                " taken): applied %" PRId64 " -> %" PRId64 ", %" PRId64
                " -> %zu rows",
                role, i + 1, st.snapshots_taken, applied0, applied1, rows0,
                after.n);
    rows_free(&after);
    rows_free(&h1);

    /* Once it has rejoined and caught up, everything is still there. */
    {
        int leader = tc_wait_leader(&c, 0, LEADER_MS);

        cr_assert_geq(leader, 0, "no leader after restarting node %d",
                      i + 1);
        /* It may have been elected again itself. */
        cr_assert(leader == i || tc_wait_alive(&c, leader, i, 15000),
                  "leader node %d never saw node %d alive", leader + 1,
                  i + 1);
    }
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed "
                                         "after restarting node %d",
                 i + 1);
    after = all_rows(i);
    cr_expect_eq(missing_rows(&before, &after, i, "after catching up"), 0,
                 "rows were lost or rolled back after catching up");
    rows_free(&after);
    rows_free(&before);
    rows_free(&h0);
}

Test(snapshot, a_node_restarted_over_its_own_snapshot_loses_nothing)
{
    struct tc_opts o = {.n = 3, .tag = "snapown-", .snapshot_threshold =
                            THRESHOLD, .snapshot_trailing = TRAILING};
    uint64_t end;
    int leader, taken = 0;

    leader = start_with_fast(&o);

    /* Every node takes snapshots of its own. */
    end = td_ms() + LOAD_MS;
    while (taken < c.n && td_ms() < end) {
        taken = 0;
        for (int i = 0; i < c.n; i++)
            taken += status_of(i).snapshots_taken >= 2;
        td_sleep_ms(100);
    }
    cr_assert_eq(taken, c.n, "only %d of %d nodes took two snapshots "
                             "within %d ms",
                 taken, c.n, LOAD_MS);

    /* A follower, then the leader, with the agents still ticking. */
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    restart_over_own_snapshot((leader + 1) % c.n, "follower");
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    restart_over_own_snapshot(leader, "leader");
}
