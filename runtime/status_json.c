/*
 * The status page's data: one JSON object built from an observation.
 *
 *   {now_ms, node: {id, name, version, mode, role, uptime_ms, lease,
 *                   stopping, http},
 *    commits: {checkpoints, steps, refused, quarantined, p50_us, p99_us,
 *              batches},
 *    hosts: {running, started, restarts, crash_loop_quarantines,
 *            crashes: {signal, exit, deadline, node}},
 *    replica: <the replica's status map: cluster.status in a cluster>,
 *    agents: {total, running, stopping, stopped, quarantined, shown,
 *             mailbox, list: [{name, kind, status, owner, epoch, seq,
 *             time_ms, mailbox, reason, live?: {phase, queued, held, steps,
 *             commit_us}}]},
 *    events: [{time_ms, kind, agent, from, to, epoch, text}],
 *    db: {ok, error, bytes, wal_bytes}}
 *
 * `live` is present for agents hosted by the node that answered.
 */
#include <string.h>

#include "base/json.h"
#include "obs.h"
#include "state/store.h"

static void set_u(json_t *o, const char *k, uint64_t v)
{
    /* JSON numbers are doubles in the browser: keep them exact. */
    json_object_set_new(o, k, json_integer((json_int_t)(v > (1ull << 53)
                                                            ? (1ull << 53)
                                                            : v)));
}

static void set_s(json_t *o, const char *k, const char *v)
{
    json_t *s = json_string(v);

    /* Names and reasons are checked or written by us, but a database
     * file is input: a string that is not UTF-8 is shown as null. */
    json_object_set_new(o, k, s ? s : json_null());
}

static json_t *live_json(const struct ol__obs_agent *l)
{
    json_t *j = json_object();

    if (j == NULL)
        return NULL;
    set_s(j, "phase", l->phase);
    set_u(j, "epoch", l->epoch);
    set_u(j, "queued", l->queued);
    set_u(j, "held", l->held);
    set_u(j, "steps", l->steps);
    set_u(j, "committed_seq", l->committed_seq);
    set_u(j, "commit_us", l->commit_us);
    return j;
}

static const char *const status_names[] = {"?", "running", "stopping",
                                           "stopped", "quarantined",
                                           "removed"};

static json_t *node_json(const struct ol__obs *o)
{
    json_t *node = json_object();

    if (node == NULL)
        return NULL;
    set_u(node, "id", o->node_id);
    set_s(node, "name", o->node_name);
    set_s(node, "version", o->version);
    set_s(node, "mode", o->cluster ? "cluster" : "single");
    set_s(node, "role", o->leader ? "leader" : "follower");
    set_u(node, "uptime_ms", (uint64_t)(o->now_ms - o->started_ms));
    json_object_set_new(node, "lease", json_boolean(!o->paused));
    json_object_set_new(node, "stopping", json_boolean(o->stopping));
    set_s(node, "http", o->http_addr);
    return node;
}

static json_t *commits_json(const struct ol__obs *o)
{
    json_t *commits = json_object();

    if (commits == NULL)
        return NULL;
    set_u(commits, "checkpoints", o->checkpoints);
    set_u(commits, "steps", o->steps);
    set_u(commits, "refused", o->refused);
    set_u(commits, "quarantined", o->quarantined);
    set_u(commits, "p50_us", o->p50_us);
    set_u(commits, "p99_us", o->p99_us);
    set_u(commits, "batches", o->rc.batches);
    return commits;
}

/* NULL when out of memory: the section is then left out. */
static json_t *hosts_json(const struct ol__obs *o)
{
    static const char *const kinds[] = {"signal", "exit", "deadline",
                                        "node"};
    json_t *hosts = json_object(), *crashes = json_object();

    if (hosts == NULL || crashes == NULL) {
        json_decref(hosts);
        json_decref(crashes);
        return NULL;
    }
    set_u(hosts, "running", o->hosts);
    set_u(hosts, "started", o->host_starts);
    set_u(hosts, "restarts", o->host_restarts);
    for (int k = 0; k < 4; k++)
        set_u(crashes, kinds[k], o->crashes[k]);
    json_object_set_new(hosts, "crashes", crashes);
    set_u(hosts, "crash_loop_quarantines", o->quarantined_crash);
    return hosts;
}

static json_t *row_json(const struct ol__obs_row *r,
                        const struct ol__obs_agent *l)
{
    json_t *a = json_object(), *live;

    if (a == NULL)
        return NULL;
    set_s(a, "name", r->name);
    set_s(a, "kind", r->kind);
    set_s(a, "status",
          r->status >= 1 && r->status <= 4 ? status_names[r->status] : "?");
    set_u(a, "owner", r->owner);
    set_u(a, "epoch", r->epoch);
    set_u(a, "seq", r->seq);
    set_u(a, "time_ms", (uint64_t)(r->time_ms > 0 ? r->time_ms : 0));
    set_u(a, "mailbox", r->mailbox);
    set_s(a, "reason", r->reason);
    if (l && l->hosted && (live = live_json(l)) != NULL)
        json_object_set_new(a, "live", live);
    return a;
}

static json_t *agents_json(const struct ol__obs *o,
                           const struct ol__obs_db *d)
{
    json_t *agents = json_object(), *list = json_array(), *a;

    if (agents == NULL || list == NULL) {
        json_decref(agents);
        json_decref(list);
        return NULL;
    }
    set_u(agents, "total", d->total);
    for (int s = 1; s <= OL_AGENT_STATUS_MAX; s++)
        set_u(agents, status_names[s], d->by_status[s]);
    set_u(agents, "mailbox", d->mailbox_total);
    set_u(agents, "hosted_here", o->hosted);
    set_u(agents, "shown", d->n_rows);
    for (uint32_t i = 0; i < d->n_rows; i++) {
        a = row_json(&d->rows[i], i < o->n_live ? &o->live[i] : NULL);
        if (a == NULL)
            break;
        json_array_append_new(list, a);
    }
    json_object_set_new(agents, "list", list);
    return agents;
}

static json_t *events_json(const struct ol__obs *o)
{
    json_t *events = json_array();

    for (uint32_t i = 0; events && i < o->n_events; i++) {
        const struct ol__event *e = &o->events[i];
        json_t *j = json_object();

        if (j == NULL)
            break;
        set_u(j, "time_ms", (uint64_t)e->time_ms);
        set_s(j, "kind", ol__event_kind_name(e->kind));
        set_s(j, "agent", e->agent);
        set_u(j, "from", e->from);
        set_u(j, "to", e->to);
        set_u(j, "epoch", e->epoch);
        set_s(j, "text", e->text);
        json_array_append_new(events, j);
    }
    return events;
}

static json_t *db_json(const struct ol__obs_db *d)
{
    json_t *db = json_object();

    if (db == NULL)
        return NULL;
    json_object_set_new(db, "ok", json_boolean(d->ok));
    set_s(db, "error", d->errmsg);
    json_object_set_new(db, "bytes", json_integer(d->db_bytes));
    json_object_set_new(db, "wal_bytes", json_integer(d->wal_bytes));
    return db;
}

json_t *ol__status_json(const struct ol__obs *o, const struct ol__obs_db *d)
{
    json_t *root = json_object(), *node = node_json(o),
           *commits = commits_json(o), *agents = agents_json(o, d),
           *events = events_json(o), *db = db_json(d), *hosts,
           *replica = NULL;
    char err[256];

    if (!root || !node || !commits || !agents || !events || !db) {
        json_decref(root);
        json_decref(node);
        json_decref(commits);
        json_decref(agents);
        json_decref(events);
        json_decref(db);
        return NULL;
    }
    set_u(root, "now_ms", (uint64_t)o->now_ms);
    json_object_set_new(root, "node", node);
    json_object_set_new(root, "commits", commits);
    if ((hosts = hosts_json(o)) != NULL)
        json_object_set_new(root, "hosts", hosts);
    if (o->status_mp &&
        ol__json_from_msgpack(o->status_mp, o->status_len, &replica, err) !=
            0)
        replica = NULL;
    json_object_set_new(root, "replica", replica ? replica : json_null());
    json_object_set_new(root, "agents", agents);
    json_object_set_new(root, "events", events);
    json_object_set_new(root, "db", db);
    return root;
}
