/*
 * The etcd anchor (see cb_etcd.h).  Members run with the outlast
 * cluster's election and heartbeat timing, plain HTTP on loopback, their
 * data under the same $TMPDIR, and etcd's defaults otherwise (fsync on,
 * no auto-compaction).  Everything etcd is asked goes through the Node.js
 * helper, so this file never parses HTTP.
 */
#include "cb_etcd.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "cb_proc.h"

void cb_etcd_defaults(struct cb_etcd_opts *o)
{
    char exe[PATH_MAX];
    const char *node = getenv("NODE");

    memset(o, 0, sizeof *o);
    o->n = 3;
    o->election_ms = 300;
    o->heartbeat_ms = 50;
    o->pre_vote = 1;
    snprintf(o->etcd, sizeof o->etcd, "%s",
             getenv("ETCD") ? getenv("ETCD") : "/usr/bin/etcd");
    snprintf(o->node, sizeof o->node, "%s", node ? node : "/usr/bin/node");
    /* meson copies the helper next to the bench programs. */
    bu_exe_dir(exe, sizeof exe);
    snprintf(o->helper, sizeof o->helper, "%s/etcd_client.mjs", exe);
}

int cb_etcd_init(struct cb_etcd *e, const struct cb_etcd_opts *o)
{
    char log[PATH_MAX + 16], line[256];
    int base;

    memset(e, 0, sizeof *e);
    e->o = *o;
    e->hin = e->hout = -1;
    if (access(o->etcd, X_OK) != 0 || access(o->node, X_OK) != 0 ||
        access(o->helper, R_OK) != 0) {
        fprintf(stderr, "bench: need %s, %s and %s (scripts/deps.sh --bench "
                        "installs etcd)\n",
                o->etcd, o->node, o->helper);
        return -1;
    }
    if (cb_tmpdir("oletcd", e->root, sizeof e->root) != 0 ||
        (base = cb_ports(2 * o->n)) < 0)
        return -1;
    for (int i = 0; i < o->n; i++) {
        struct cb_etcd_member *m = &e->m[i];

        m->client_port = base + 2 * i;
        m->peer_port = base + 2 * i + 1;
        snprintf(m->name, sizeof m->name, "m%d", i + 1);
        snprintf(m->dir, sizeof m->dir, "%s/%s", e->root, m->name);
        snprintf(m->log, sizeof m->log, "%s/%s.log", e->root, m->name);
        switch (cb_wan_site(i, m->ns, m->host)) {
        case -1:
            return -1;
        case 0:
            snprintf(m->url, sizeof m->url, "http://127.0.0.1:%d",
                     m->client_port);
            break;
        default:
            /* etcd takes unix://HOST:PORT, a socket file of that name in
             * its working directory (the scratch directory). */
            snprintf(m->url, sizeof m->url, "unix:%s/c%d:1", e->root, i + 1);
        }
    }
    snprintf(log, sizeof log, "%s/helper.log", e->root);
    {
        char *argv[] = {e->o.node, e->o.helper, NULL};

        e->hpid = cb_spawn_pipes(argv, log, &e->hin, &e->hout);
    }
    if (e->hpid < 0 || cb_read_line(e->hout, line, sizeof line, 10000) < 0 ||
        strcmp(line, "ready") != 0) {
        fprintf(stderr, "bench: the etcd client helper did not start; see "
                        "%s\n",
                log);
        return -1;
    }
    return 0;
}

int cb_etcd_start_member(struct cb_etcd *e, int i)
{
    struct cb_etcd_member *m = &e->m[i];
    char cluster[512] = "", peer[96], el[16], hb[16], *p = cluster;
    char lurls[PATH_MAX + 96], advertise[96];

    for (int k = 0; k < e->o.n; k++)
        p += snprintf(p, sizeof cluster - (size_t)(p - cluster),
                      "%sm%d=http://%s:%d", k ? "," : "", k + 1,
                      e->m[k].host, e->m[k].peer_port);
    snprintf(peer, sizeof peer, "http://%s:%d", m->host, m->peer_port);
    snprintf(advertise, sizeof advertise, "http://%s:%d", m->host,
             m->client_port);
    if (m->ns[0]) {
        snprintf(lurls, sizeof lurls, "unix://c%d:1,%s", i + 1, advertise);
        /* A member killed with -9 leaves its socket file behind, and etcd
         * does not listen over it. */
        unlink(m->url + 5);
    } else
        snprintf(lurls, sizeof lurls, "%s", m->url);
    snprintf(el, sizeof el, "%u", e->o.election_ms);
    snprintf(hb, sizeof hb, "%u", e->o.heartbeat_ms);
    {
        char *argv[] = {e->o.etcd,
                        "--name", m->name,
                        "--data-dir", m->dir,
                        "--listen-client-urls", lurls,
                        "--advertise-client-urls", advertise,
                        "--listen-peer-urls", peer,
                        "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", cluster,
                        "--initial-cluster-state", "new",
                        "--initial-cluster-token", "olbench",
                        "--election-timeout", el,
                        "--heartbeat-interval", hb,
                        e->o.pre_vote ? "--pre-vote=true" : "--pre-vote=false",
                        /* Room for the whole run: etcd keeps every
                         * revision, as auto-compaction is off by default. */
                        "--quota-backend-bytes", "8589934592",
                        "--logger", "zap",
                        "--log-level", "warn",
                        NULL};

        m->pid = cb_spawn_in(m->ns, m->ns[0] ? e->root : NULL, argv, m->log);
    }
    return m->pid > 0 ? 0 : -1;
}

int cb_etcd_start(struct cb_etcd *e, int timeout_ms)
{
    uint64_t end = cb_now_ms() + (uint64_t)timeout_ms;

    for (int i = 0; i < e->o.n; i++)
        if (cb_etcd_start_member(e, i) != 0)
            return -1;
    while (cb_now_ms() < end) {
        if (cb_etcd_leader(e, NULL, NULL) >= 0)
            return 0;
        cb_sleep_ms(50);
    }
    fprintf(stderr, "bench: etcd did not elect a leader; see %s/m*.log\n",
            e->root);
    return -1;
}

void cb_etcd_kill(struct cb_etcd *e, int i)
{
    cb_kill(e->m[i].pid, SIGKILL);
    e->m[i].pid = 0;
}

void cb_etcd_destroy(struct cb_etcd *e)
{
    if (e == NULL || e->root[0] == '\0')
        return;
    for (int i = 0; i < e->o.n; i++)
        if (e->m[i].pid > 0)
            cb_etcd_kill(e, i);
    if (e->hpid > 0) {
        close(e->hin);
        close(e->hout);
        cb_kill(e->hpid, SIGKILL);
        e->hpid = 0;
    }
    cb_tmpdir_remove(e->root);
    e->root[0] = '\0';
}

json_t *cb_etcd_call(struct cb_etcd *e, json_t *req, int timeout_ms)
{
    static char line[1 << 16];
    char *s = json_dumps(req, JSON_COMPACT);
    json_error_t jerr;
    json_t *r;
    int rv;

    if (s == NULL)
        return NULL;
    rv = cb_write_str(e->hin, s) == 0 && cb_write_str(e->hin, "\n") == 0
             ? 0
             : -1;
    free(s);
    if (rv != 0 || cb_read_line(e->hout, line, sizeof line, timeout_ms) < 0) {
        fprintf(stderr, "bench: no answer from the etcd client helper\n");
        return NULL;
    }
    r = json_loads(line, 0, &jerr);
    if (r == NULL) {
        fprintf(stderr, "bench: helper: %s\n", line);
        return NULL;
    }
    if (!json_is_true(json_object_get(r, "ok"))) {
        fprintf(stderr, "bench: helper: %s\n", line);
        json_decref(r);
        return NULL;
    }
    return r;
}

json_t *cb_etcd_urls(struct cb_etcd *e, unsigned mask)
{
    json_t *a = json_array();

    for (int i = 0; i < e->o.n; i++)
        if (mask & (1u << i))
            json_array_append_new(a, json_string(e->m[i].url));
    return a;
}

int cb_etcd_leader(struct cb_etcd *e, uint64_t *applied_min,
                   uint64_t *applied_max)
{
    unsigned mask = 0;
    json_t *req, *r, *members;
    const char *leader = NULL, *ids[CB_ETCD_MAX] = {0};
    uint64_t lo = UINT64_MAX, hi = 0;
    int li = -1, agree = 1;
    size_t k;
    json_t *m;

    for (int i = 0; i < e->o.n; i++)
        if (e->m[i].pid > 0)
            mask |= 1u << i;
    req = json_pack("{s:s, s:o}", "cmd", "status", "endpoints",
                    cb_etcd_urls(e, mask));
    r = cb_etcd_call(e, req, 5000);
    json_decref(req);
    if (r == NULL)
        return -1;
    members = json_object_get(r, "members");
    json_array_foreach(members, k, m) {
        const char *l = json_string_value(json_object_get(m, "leader"));
        const char *id = json_string_value(json_object_get(m, "member_id"));
        json_t *ai = json_object_get(m, "applied");
        uint64_t a = ai ? (uint64_t)json_integer_value(ai) : 0;

        if (l == NULL || id == NULL || strcmp(l, "0") == 0 ||
            (leader && strcmp(l, leader) != 0)) {
            agree = 0;
            break;
        }
        leader = l;
        /* Members answer in the order of the endpoints asked. */
        for (int i = 0, seen = 0; i < e->o.n; i++)
            if (mask & (1u << i) && seen++ == (int)k)
                ids[i] = id;
        if (a < lo)
            lo = a;
        if (a > hi)
            hi = a;
    }
    if (agree && leader)
        for (int i = 0; i < e->o.n; i++)
            if (ids[i] && strcmp(ids[i], leader) == 0)
                li = i;
    json_decref(r);
    if (applied_min)
        *applied_min = lo;
    if (applied_max)
        *applied_max = hi;
    return li;
}
