/* Unit tests for what operators read: the Prometheus text built from an
 * observation (histograms cumulative and exact, labels escaped, peer
 * health only from a leader), the status page's JSON, and the recent
 * events (a move is a change of owner, not a first placement). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "runtime/events.h"
#include "base/hist.h"
#include "runtime/obs.h"
#include "state/store.h"

static void pk_s(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pk_kv(msgpack_packer *pk, const char *k, uint64_t v)
{
    pk_s(pk, k);
    msgpack_pack_uint64(pk, v);
}

/* A cluster status map as a leader (or follower) reports it. */
static void cluster_status(struct ol__obs *o, int leader)
{
    static const char *const health[] = {"self", "alive", "down"};
    struct ol__buf b;
    msgpack_packer pk;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 7);
    pk_s(&pk, "from_follower");
    if (leader)
        msgpack_pack_false(&pk);
    else
        msgpack_pack_true(&pk);
    pk_kv(&pk, "leader", 1);
    pk_kv(&pk, "term", 3);
    pk_kv(&pk, "commit_index", 100);
    pk_kv(&pk, "store_applied", 99);
    pk_s(&pk, "counters");
    msgpack_pack_map(&pk, 2);
    pk_kv(&pk, "entries", 40);
    pk_kv(&pk, "forwarded", 2);
    pk_s(&pk, "nodes");
    msgpack_pack_array(&pk, 3);
    for (int i = 0; i < 3; i++) {
        msgpack_pack_map(&pk, 4);
        pk_kv(&pk, "id", (uint64_t)i + 1);
        pk_s(&pk, "health");
        pk_s(&pk, leader ? health[i] : i == 0 ? "self" : "unknown");
        pk_kv(&pk, "applied", 90 + (uint64_t)i);
        pk_s(&pk, "last_contact_ms");
        if (i == 0 || !leader)
            msgpack_pack_nil(&pk);
        else
            msgpack_pack_uint64(&pk, 1500 * (uint64_t)i);
    }
    o->status_mp = ol__buf_steal(&b, &o->status_len);
}

static char *metrics(struct ol__obs *o, struct ol__obs_db *d)
{
    struct ol__buf b;
    size_t len;

    ol__buf_init(&b);
    cr_assert_eq(ol__metrics_text(o, d, &b), 0);
    cr_assert_eq(ol__buf_append(&b, "", 1), 0);
    return (char *)ol__buf_steal(&b, &len);
}

static void obs_init(struct ol__obs *o, struct ol__obs_db *d)
{
    memset(o, 0, sizeof *o);
    memset(d, 0, sizeof *d);
    o->node_id = 7;
    snprintf(o->node_name, sizeof o->node_name, "a \"quoted\\\" name\n");
    snprintf(o->version, sizeof o->version, "0.1.0");
    d->ok = 1;
    d->by_status[OL_AGENT_RUNNING] = 5;
    d->by_status[OL_AGENT_QUARANTINED] = 1;
    d->db_bytes = 4096;
    d->wal_bytes = -1;
}

Test(metrics, histograms_are_cumulative_and_exact)
{
    struct ol__obs o;
    struct ol__obs_db d;
    char *t;

    obs_init(&o, &d);
    ol__phist_add(&o.commit, ol__lat_bounds_us, ol__lat_nbounds, 50);
    ol__phist_add(&o.commit, ol__lat_bounds_us, ol__lat_nbounds, 100);
    ol__phist_add(&o.commit, ol__lat_bounds_us, ol__lat_nbounds, 101);
    ol__phist_add(&o.commit, ol__lat_bounds_us, ol__lat_nbounds, 20000000);
    ol__phist_add(&o.rc.batch_sizes, ol__batch_bounds, ol__batch_nbounds, 3);
    t = metrics(&o, &d);
    /* A value equal to a bound is in that bucket; the buckets add up. */
    cr_expect(strstr(t, "outlast_commit_latency_seconds_bucket{le=\"0.0001\"} 2\n"), "%s", t);
    cr_expect(strstr(t, "outlast_commit_latency_seconds_bucket{le=\"0.00025\"} 3\n"));
    cr_expect(strstr(t, "outlast_commit_latency_seconds_bucket{le=\"10\"} 3\n"));
    cr_expect(strstr(t, "outlast_commit_latency_seconds_bucket{le=\"+Inf\"} 4\n"));
    cr_expect(strstr(t, "outlast_commit_latency_seconds_sum 20.000251\n"), "%s", t);
    cr_expect(strstr(t, "outlast_commit_latency_seconds_count 4\n"));
    cr_expect(strstr(t, "outlast_commit_batch_checkpoints_bucket{le=\"2\"} 0\n"));
    cr_expect(strstr(t, "outlast_commit_batch_checkpoints_bucket{le=\"4\"} 1\n"));
    cr_expect(strstr(t, "outlast_commit_batch_checkpoints_sum 3\n"));
    free(t);
}

Test(metrics, labels_are_escaped_and_agents_counted)
{
    struct ol__obs o;
    struct ol__obs_db d;
    char *t;

    obs_init(&o, &d);
    t = metrics(&o, &d);
    cr_expect(strstr(t, "node_name=\"a \\\"quoted\\\\\\\" name\\n\""), "%s",
              t);
    cr_expect(strstr(t, "outlast_agents{status=\"running\"} 5\n"));
    cr_expect(strstr(t, "outlast_agents{status=\"quarantined\"} 1\n"));
    cr_expect(strstr(t, "outlast_db_size_bytes 4096\n"));
    cr_expect(strstr(t, "outlast_db_wal_size_bytes") == NULL,
              "a size that could not be read was reported");
    cr_expect(strstr(t, "outlast_raft_term") == NULL,
              "a single node reports raft metrics");
    /* Every family has HELP and TYPE before its samples. */
    for (const char *p = t; (p = strstr(p, "# TYPE ")) != NULL; p++) {
        char name[120];

        cr_assert_eq(sscanf(p, "# TYPE %119s", name), 1);
        cr_expect(strstr(t, name) < p, "TYPE %s without HELP first", name);
    }
    free(t);
    /* No database: the database figures are left out, the rest stays. */
    d.ok = 0;
    t = metrics(&o, &d);
    cr_expect(strstr(t, "outlast_agents{") == NULL);
    cr_expect(strstr(t, "outlast_steps_total 0\n"));
    free(t);
}

Test(metrics, host_restarts_crashes_and_quarantines_by_reason)
{
    struct ol__obs o;
    struct ol__obs_db d;
    json_t *j, *h;
    char *t;

    obs_init(&o, &d);
    o.quarantined = 2;
    o.quarantined_crash = 1;
    o.crashes[0] = 3; /* signal */
    o.crashes[1] = 4; /* exit */
    o.crashes[2] = 5; /* deadline */
    o.crashes[3] = 6; /* node */
    o.hosts = 2;
    o.host_starts = 9;
    o.host_restarts = 7;
    t = metrics(&o, &d);
    cr_expect(strstr(t, "outlast_agent_host_restarts_total 7\n"), "%s", t);
    cr_expect(strstr(t, "outlast_agent_host_starts_total 9\n"));
    cr_expect(strstr(t, "outlast_agent_hosts 2\n"));
    cr_expect(strstr(t, "outlast_agent_crashes_total{reason=\"signal\"} 3\n"));
    cr_expect(strstr(t, "outlast_agent_crashes_total{reason=\"exit\"} 4\n"));
    cr_expect(strstr(t, "outlast_agent_crashes_total{reason=\"deadline\"} 5\n"));
    cr_expect(strstr(t, "outlast_agent_crashes_total{reason=\"node\"} 6\n"));
    cr_expect(strstr(t, "outlast_quarantines_total{reason=\"error\"} 2\n"));
    cr_expect(strstr(t, "outlast_quarantines_total{reason=\"crash_loop\"} 1\n"));
    cr_expect(strstr(t, "# TYPE outlast_agent_crashes_total counter\n"));
    free(t);
    /* The status page's data carries the same figures. */
    j = ol__status_json(&o, &d);
    cr_assert_not_null(j);
    h = json_object_get(j, "hosts");
    cr_assert_not_null(h, "no hosts object");
    cr_expect_eq(json_integer_value(json_object_get(h, "restarts")), 7);
    cr_expect_eq(json_integer_value(json_object_get(h, "running")), 2);
    cr_expect_eq(json_integer_value(json_object_get(h,
                                                    "crash_loop_quarantines")),
                 1);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(h, "crashes"), "deadline")),
                 5);
    json_decref(j);
}

Test(metrics, peer_health_comes_only_from_a_leader)
{
    struct ol__obs o;
    struct ol__obs_db d;
    char *t;

    obs_init(&o, &d);
    o.cluster = 1;
    o.leader = 1;
    o.cm.placed[2] = 4;
    o.cm.transfers[1] = 2;
    o.cm.transfers[2] = 5;
    o.cm.transfers_failed[2] = 1;
    o.cm.transport.handshakes_failed = 9;
    cluster_status(&o, 1);
    t = metrics(&o, &d);
    cr_expect(strstr(t, "outlast_raft_term 3\n"));
    cr_expect(strstr(t, "outlast_raft_leader 1\n"));
    cr_expect(strstr(t, "outlast_peer_up{peer=\"2\"} 1\n"), "%s", t);
    cr_expect(strstr(t, "outlast_peer_up{peer=\"3\"} 0\n"));
    cr_expect(strstr(t, "outlast_peer_up{peer=\"1\"}") == NULL,
              "the leader reports itself as a peer");
    cr_expect(strstr(t, "outlast_peer_last_contact_seconds{peer=\"3\"} 3.000\n"));
    cr_expect(strstr(t, "outlast_placements_total{reason=\"failover\"} 4\n"));
    cr_expect(strstr(t, "outlast_leader_transfers_total{reason=\"operator\"} "
                        "2\n"));
    cr_expect(strstr(t, "outlast_leader_transfers_total{reason="
                        "\"preference\"} 5\n"));
    cr_expect(strstr(t, "outlast_leader_transfers_failed_total{reason="
                        "\"preference\"} 1\n"));
    cr_expect(strstr(t, "outlast_transport_handshakes_total{result=\"refused\"} 9\n"));
    free(t);
    free(o.status_mp);
    cluster_status(&o, 0);
    o.leader = 0;
    t = metrics(&o, &d);
    cr_expect(strstr(t, "outlast_raft_leader 0\n"));
    cr_expect(strstr(t, "outlast_peer_up{") == NULL,
              "a follower reports peer health it does not know");
    free(t);
    free(o.status_mp);
}

Test(metrics, promtool_accepts_the_text)
{
    struct ol__obs o;
    struct ol__obs_db d;
    char path[] = "/tmp/ol-metrics-XXXXXX", cmd[200];
    char *t;
    FILE *f;
    int fd;

    if (system("command -v promtool >/dev/null 2>&1") != 0)
        cr_skip_test("promtool is not installed (Debian package prometheus)");
    obs_init(&o, &d);
    o.cluster = 1;
    o.leader = 1;
    cluster_status(&o, 1);
    ol__phist_add(&o.commit, ol__lat_bounds_us, ol__lat_nbounds, 700);
    o.crashes[2] = 1;
    o.host_restarts = 1;
    t = metrics(&o, &d);
    fd = mkstemp(path);
    f = fdopen(fd, "w");
    fputs(t, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    cr_expect_eq(system(cmd), 0, "promtool rejects:\n%s", t);
    unlink(path);
    free(t);
    free(o.status_mp);
}

Test(metrics, status_json_attaches_live_rows_to_their_agents)
{
    struct ol__obs o;
    struct ol__obs_db d;
    struct ol__obs_row rows[2];
    struct ol__obs_agent live[2];
    json_t *j, *list;

    obs_init(&o, &d);
    memset(rows, 0, sizeof rows);
    memset(live, 0, sizeof live);
    snprintf(rows[0].name, sizeof rows[0].name, "here");
    snprintf(rows[1].name, sizeof rows[1].name, "elsewhere");
    rows[0].status = OL_AGENT_RUNNING;
    rows[1].status = OL_AGENT_QUARANTINED;
    snprintf(rows[1].reason, sizeof rows[1].reason, "bad \xff byte");
    live[0].hosted = 1;
    live[0].steps = 42;
    snprintf(live[0].phase, sizeof live[0].phase, "active");
    d.rows = rows;
    d.n_rows = 2;
    o.live = live;
    o.n_live = 2;
    o.n_events = 1;
    o.events[0].kind = OL_EV_MOVED;
    snprintf(o.events[0].agent, sizeof o.events[0].agent, "here");
    o.events[0].from = 2;
    o.events[0].to = 7;
    j = ol__status_json(&o, &d);
    cr_assert_not_null(j);
    list = json_object_get(json_object_get(j, "agents"), "list");
    cr_assert_eq(json_array_size(list), 2);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(json_array_get(list, 0), "live"),
                     "steps")),
                 42);
    cr_expect_null(json_object_get(json_array_get(list, 1), "live"));
    cr_expect(json_is_null(json_object_get(json_array_get(list, 1), "reason")),
              "a reason that is not UTF-8 became a string");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "events"), 0),
                         "kind")),
                     "moved");
    json_decref(j);
}

static struct ol__sm_agent row(const char *name, uint64_t owner, int status)
{
    struct ol__sm_agent r;

    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", name);
    r.owner = owner;
    r.status = status;
    r.epoch = owner;
    return r;
}

Test(metrics, events_see_moves_and_quarantines_once)
{
    struct ol__events ev;
    struct ol__event out[OL_EVENTS_MAX];
    struct ol__sm_agent r;

    ol__events_init(&ev, 1);
    r = row("a", 1, OL_AGENT_RUNNING);
    ol__events_agent(&ev, &r, 1);          /* known at start */
    r = row("b", 0, OL_AGENT_RUNNING);
    ol__events_agent(&ev, &r, 0);          /* spawned, not placed */
    r = row("b", 2, OL_AGENT_RUNNING);
    ol__events_agent(&ev, &r, 0);          /* placed: not a move */
    cr_expect_eq(ol__events_copy(&ev, out), 0);
    r = row("a", 3, OL_AGENT_RUNNING);
    ol__events_agent(&ev, &r, 0);          /* failover */
    cr_assert_eq(ol__events_copy(&ev, out), 1);
    cr_expect_eq(out[0].kind, OL_EV_MOVED);
    cr_expect_eq(out[0].from, 1);
    cr_expect_eq(out[0].to, 3);
    r = row("a", 3, OL_AGENT_QUARANTINED);
    ol__events_agent(&ev, &r, 0);
    ol__events_agent(&ev, &r, 0);          /* reported again: once */
    cr_assert_eq(ol__events_copy(&ev, out), 2);
    cr_expect_eq(out[1].kind, OL_EV_QUARANTINED);
    /* The ring keeps the newest. */
    for (int i = 0; i < OL_EVENTS_MAX + 10; i++)
        ol__events_add(&ev, OL_EV_LEASE_LOST, NULL, 0, 0, (uint64_t)i, NULL);
    cr_assert_eq(ol__events_copy(&ev, out), OL_EVENTS_MAX);
    cr_expect_eq(out[OL_EVENTS_MAX - 1].epoch, OL_EVENTS_MAX + 9);
    ol__events_close(&ev);
}
