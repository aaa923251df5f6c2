/*
 * `outlast status` and `outlast cluster ...`: node-wide questions and
 * roster changes.  Cluster operations are passed through as control ops
 * (cluster.status, cluster.init, cluster.add, cluster.remove,
 * cluster.transfer) and whatever
 * comes back is printed generically, so the CLI does not need to follow
 * every field the replication layer reports.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record/cmd.h"
#include "base/err.h"
#include "base/keys.h"
#include "replication/rstart.h"
#include "cli.h"
#include "replication/cluster.h"
#include "runtime/config.h"
#include "base/fsutil.h"
#include "replication/placement.h"

static void kv(const char *key, const char *value)
{
    printf("%-9s %s\n", key, value);
}

static void kvf(const char *key, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void kvf(const char *key, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    kv(key, text);
}

static int known_key(const msgpack_object *k)
{
    static const char *const keys[] = {"ok", "node", "agents", "commits",
                                       "hosts", "storage", NULL};

    if (k->type != MSGPACK_OBJECT_STR)
        return 0;
    for (size_t i = 0; keys[i]; i++)
        if (k->via.str.size == strlen(keys[i]) &&
            memcmp(k->via.str.ptr, keys[i], k->via.str.size) == 0)
            return 1;
    return 0;
}

static void print_node(const msgpack_object *node)
{
    char a[160], b[160], d[32];

    kvf("node", "%s (key %s)", ol__mp_gets(node, "id", a, sizeof a),
        ol__mp_gets(node, "pk", b, sizeof b));
    kv("version", ol__mp_gets(node, "version", a, sizeof a));
    kvf("mode", "%s, %s", ol__mp_gets(node, "mode", a, sizeof a),
        ol__mp_gets(node, "role", b, sizeof b));
    kv("data dir", ol__mp_gets(node, "data_dir", a, sizeof a));
    if (ol__mp_gets(node, "http", a, sizeof a)[0] && strcmp(a, "-") != 0)
        kvf("http", "http://%s/ (metrics at /metrics)", a);
    kv("uptime",
       ol__cli_duration(ol__mp_getu(node, "uptime_ms"), d, sizeof d));
}

static void print_agents(const msgpack_object *ag)
{
    kvf("agents",
        "%" PRIu64 " total: %" PRIu64 " running, %" PRIu64
        " stopping, %" PRIu64 " stopped, %" PRIu64 " quarantined, %" PRIu64
        " degraded; %" PRIu64 " run here",
        ol__mp_getu(ag, "total"), ol__mp_getu(ag, "running"),
        ol__mp_getu(ag, "stopping"), ol__mp_getu(ag, "stopped"),
        ol__mp_getu(ag, "quarantined"), ol__mp_getu(ag, "degraded"),
        ol__mp_getu(ag, "local"));
}

static void print_storage(const msgpack_object *sg)
{
    char a[160], d2[48];
    uint64_t errors = ol__mp_getu(sg, "errors");

    if (errors == 0)
        kv("storage", "ok");
    else
        kvf("storage",
            "DAMAGED: %" PRIu64 " error%s since %s; first: %s "
            "(run outlast verify)",
            errors, errors == 1 ? "" : "s",
            ol__cli_iso(ol__mp_geti(sg, "first_ms"), d2, sizeof d2),
            ol__mp_gets(sg, "first", a, sizeof a));
}

static void print_commits(const msgpack_object *cm)
{
    kvf("commits",
        "%" PRIu64 " checkpoints in %" PRIu64 " batches, %" PRIu64
        " refused",
        ol__mp_getu(cm, "checkpoints"), ol__mp_getu(cm, "batches"),
        ol__mp_getu(cm, "refused"));
}

static void print_hosts(const msgpack_object *hs)
{
    const msgpack_object *cr = ol__mp_get(hs, "crashes");

    kvf("hosts", "%" PRIu64 " running, %" PRIu64 " started, %" PRIu64
        " died unasked",
        ol__mp_getu(hs, "running"), ol__mp_getu(hs, "started"),
        ol__mp_getu(hs, "restarts"));
    kvf("crashes",
        "%" PRIu64 " signal, %" PRIu64 " exit, %" PRIu64 " deadline, %" PRIu64
        " node; %" PRIu64 " crash-loop quarantines",
        ol__mp_getu(cr, "signal"), ol__mp_getu(cr, "exit"),
        ol__mp_getu(cr, "deadline"), ol__mp_getu(cr, "node"),
        ol__mp_getu(hs, "crash_loop_quarantines"));
}

static void print_status(const msgpack_object *root)
{
    const msgpack_object *sect;
    char a[160], b[160];

    if ((sect = ol__mp_get(root, "node")) != NULL)
        print_node(sect);
    if ((sect = ol__mp_get(root, "agents")) != NULL)
        print_agents(sect);
    if ((sect = ol__mp_get(root, "storage")) != NULL)
        print_storage(sect);
    if ((sect = ol__mp_get(root, "commits")) != NULL)
        print_commits(sect);
    if ((sect = ol__mp_get(root, "hosts")) != NULL)
        print_hosts(sect);
    /* Anything else (the cluster section, fields added later). */
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key;
        const msgpack_object *v = &root->via.map.ptr[i].val;

        if (known_key(k))
            continue;
        ol__mp_text(k, a, sizeof a);
        if (v->type == MSGPACK_OBJECT_MAP || v->type == MSGPACK_OBJECT_ARRAY) {
            printf("%s:\n", a);
            ol__cli_print_generic(v, 2);
        } else {
            kv(a, ol__mp_text(v, b, sizeof b));
        }
    }
}

int ol__cmd_status(struct ol__cli *c)
{
    struct ol__cli_resp r;
    const char *pos[1];
    int n, rv;

    if ((rv = ol__cli_parse(c, NULL, pos, 0, 0, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0)
        return rv;
    if ((rv = ol__cli_call_simple(c, "status", NULL, &r)) != 0)
        return rv;
    if (c->json)
        rv = ol__cli_print_json(r.root);
    else
        print_status(r.root);
    ol__cli_resp_free(&r);
    return rv;
}

/* ---- cluster ---- */

/* Labels are "k=v,k=v": keys and values of [A-Za-z0-9_.-], keys not
 * empty. */
static int labels_valid(const char *s)
{
    int in_key = 1, key_len = 0;

    if (strlen(s) > OL_LABELS_MAX)
        return 0;
    for (; *s; s++) {
        char ch = *s;

        if (ch == '=' && in_key && key_len > 0) {
            in_key = 0;
        } else if (ch == ',' && !in_key) {
            in_key = 1;
            key_len = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
                   ch == '-') {
            key_len += in_key;
        } else {
            return 0;
        }
    }
    return !in_key;
}

static int parse_id(const struct ol__cli *c, const char *s, uint64_t *id)
{
    if (ol__cli_parse_u64(s, INT64_MAX, id) != 0 || *id == 0)
        return ol__cli_usage_err(c, "node id must be a positive whole number, "
                                    "not '%s'",
                                 s);
    return 0;
}

/* Whether `cfg` may start a cluster: it has a [cluster] section, and is
 * not a standby (raft needs a voter to lead).  Frees `cfg` and returns
 * the usage error, or returns 0. */
static int init_config_ok(struct ol__cli *c, struct ol__config *cfg,
                          const char *config, int all)
{
    if (!cfg->cluster) {
        ol__config_free(cfg);
        return ol__cli_fail(c, OL_EXIT_USAGE, "OL_ECONFIG",
                            "%s has no [cluster] section", config);
    }
    /* With --all every node holds the same first configuration, a
     * standby as a non-voter; alone, a standby would be a cluster that
     * cannot elect. */
    if (cfg->role != OL_ROLE_STANDBY || all)
        return 0;
    ol__config_free(cfg);
    return ol__cli_fail(c, OL_EXIT_USAGE, "OL_ECONFIG",
                        "%s gives this node role standby: a standby does not "
                        "vote, so run cluster init on a voter (or on every "
                        "node with --all)",
                        config);
}

/* Every [peer.ID] of `cfg` as the bootstrap roster: `peers` and their
 * labels; `*n` of them.  0, or the CLI's failure (cfg freed). */
static int roster_of(struct ol__cli *c, struct ol__config *cfg,
                     struct ol__peer *peers,
                     char (*labels)[OL_LABELS_MAX + 1], size_t *n)
{
    for (uint32_t i = 0; i < cfg->n_peers; i++) {
        peers[i].id = cfg->peers[i].id;
        snprintf(peers[i].address, sizeof peers[i].address, "%s",
                 cfg->peers[i].address);
        snprintf(labels[i], sizeof labels[i], "%s", cfg->peers[i].labels);
        if (ol__pk_parse(cfg->peers[i].pubkey, peers[i].pk) != 0) {
            uint64_t id = cfg->peers[i].id;

            ol__config_free(cfg);
            return ol__cli_fail(c, OL_EXIT_USAGE, "OL_ECONFIG",
                                "peer %llu has no valid pubkey",
                                (unsigned long long)id);
        }
    }
    *n = cfg->n_peers;
    return 0;
}

/* `cluster init --config FILE [--all]`: write the first raft
 * configuration into the node's data dir, before its first start.  Raft
 * can only be bootstrapped while it is not running, so this is offline. */
static int cluster_init(struct ol__cli *c, const char *config, int all)
{
    struct ol__config cfg;
    struct ol__peer peers[OL_CONFIG_MAX_PEERS];
    char labels[OL_CONFIG_MAX_PEERS][OL_LABELS_MAX + 1];
    char err[OL_ERRMSG_SIZE], dir[PATH_MAX + 8], keypath[PATH_MAX + 16];
    uint8_t id[OL_CLUSTER_ID_SIZE];
    size_t n = 0, voters;
    int rv;

    if (config == NULL)
        return ol__cli_usage_err(c, "cluster init needs --config FILE (the "
                                    "node's config, with [cluster] and its "
                                    "[peer.ID] sections)");
    ol__config_defaults(&cfg);
    if (ol__config_load(&cfg, config, err) != 0) {
        ol__config_free(&cfg);
        return ol__cli_fail(c, OL_EXIT_USAGE, "OL_ECONFIG", "%s", err);
    }
    if ((rv = init_config_ok(c, &cfg, config, all)) != 0)
        return rv;
    if (all && (rv = roster_of(c, &cfg, peers, labels, &n)) != 0)
        return rv;
    /* Every listed node a voter: the id every node bootstrapped the same
     * way computes too.  This node alone: a new random one, which the
     * others take when they join. */
    if (all) {
        struct ol__key key;

        snprintf(keypath, sizeof keypath, "%s/node.key", cfg.data_dir);
        if (ol__key_load(&key, keypath, err) != 0) {
            ol__config_free(&cfg);
            return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOTFOUND",
                                "cluster init --all needs this node's key: "
                                "%s (create it with `outlast keygen "
                                "--data-dir %s`)",
                                err, cfg.data_dir);
        }
        ol__cluster_id_roster(cfg.cluster_name, cfg.node_id, key.pk, peers,
                              n, id);
        ol__key_close(&key);
    } else {
        ol__cluster_id_random(id);
    }
    if (ol__mkdirs(cfg.data_dir, 0700, err) != 0) {
        ol__config_free(&cfg);
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_EIO", "%s", err);
    }
    snprintf(dir, sizeof dir, "%s/raft", cfg.data_dir);
    /* Standbys are bootstrapped as non-voters, as `bootstrap = true`
     * does in the daemon. */
    rv = ol__cluster_bootstrap_dir(dir, cfg.node_id, cfg.listen, cfg.labels,
                                   peers, labels, n, id, err);
    voters = cfg.role != OL_ROLE_STANDBY;
    for (size_t i = 0; i < n; i++)
        voters += cfg.peers[i].role != OL_ROLE_STANDBY;
    if (rv != 0) {
        ol__config_free(&cfg);
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv), "cluster init: %s",
                            err);
    }
    if (c->json)
        printf("{\"ok\": true, \"node\": %llu, \"voters\": %zu}\n",
               (unsigned long long)cfg.node_id, voters);
    else
        printf("cluster initialized in %s: node %llu%s; start it, then the "
               "others\n",
               dir, (unsigned long long)cfg.node_id,
               all ? " and every listed peer (standbys as non-voters)"
                   : " is the only voter (the leader adds the peers)");
    ol__config_free(&cfg);
    return 0;
}

/* A node's ROLE cell: its role (voter, witness, standby; a voter raft
 * has not made one yet shows as spare), marked when it leads. */
static const char *node_role(const msgpack_object *n, char *out, size_t cap)
{
    char role[24];

    ol__mp_gets(n, "role", role, sizeof role);
    if (!role[0] || strcmp(role, "-") == 0)
        snprintf(role, sizeof role, "voter");
    if (strcmp(role, "voter") == 0 && !ol__mp_getb(n, "voter"))
        snprintf(role, sizeof role, "spare");
    snprintf(out, cap, "%s%s", ol__mp_getb(n, "leader") ? "leader, " : "",
             role);
    return out;
}

/* Where the leader is, and whether leader_preference is met. */
static void print_leader(const msgpack_object *cl)
{
    const msgpack_object *ld = ol__mp_get(cl, "leadership");
    const msgpack_object *pref = ol__mp_get(ld, "preferred");
    const msgpack_object *tr = ol__mp_get(ld, "transfer");
    char a[64], b[32], addr[130], labels[210];

    ol__mp_gets(ld, "address", addr, sizeof addr);
    ol__mp_gets(ld, "labels", labels, sizeof labels);
    printf("leader     node %s%s%s%s%s%s, term %s\n",
           ol__mp_gets(cl, "leader", a, sizeof a), addr[0] ? " at " : "",
           addr, labels[0] ? " (" : "", labels, labels[0] ? ")" : "",
           ol__mp_gets(cl, "term", b, sizeof b));
    if (pref && pref->type == MSGPACK_OBJECT_BOOLEAN)
        printf("preferred  %s (leader_preference = %s)\n",
               pref->via.boolean ? "yes: no voter ranks better"
                                 : "no: a voter ranks better; it takes over "
                                   "once healthy",
               ol__mp_gets(ld, "preference", labels, sizeof labels));
    if (tr && tr->type == MSGPACK_OBJECT_MAP)
        printf("transfer   to node %s (%s), %s ms so far\n",
               ol__mp_gets(tr, "target", a, sizeof a),
               ol__mp_gets(tr, "reason", addr, sizeof addr),
               ol__mp_gets(tr, "elapsed_ms", b, sizeof b));
}

static void print_cluster(const msgpack_object *root)
{
    const msgpack_object *cl = ol__mp_get(root, "cluster");
    const msgpack_object *nodes = ol__mp_get(cl, "nodes");
    static const char *const head[] = {"ID", "ADDRESS", "LABELS", "ROLE",
                                       "HEALTH", "LAST CONTACT", "APPLIED",
                                       "AGENTS"};
    struct ol__table t;
    char a[64], b[64], d[64];

    printf("cluster    %s (node %s answering as %s%s)\n",
           ol__mp_gets(cl, "cluster", a, sizeof a),
           ol__mp_gets(cl, "self", b, sizeof b),
           ol__mp_gets(cl, "role", d, sizeof d),
           ol__mp_getb(cl, "from_follower")
               ? "; a follower's view: health is the leader's to know"
               : "");
    print_leader(cl);
    printf("log        commit %s, applied %s (store %s)\n",
           ol__mp_gets(cl, "commit_index", a, sizeof a),
           ol__mp_gets(cl, "applied_index", b, sizeof b),
           ol__mp_gets(cl, "store_applied", d, sizeof d));
    printf("lease      %s\n", ol__mp_getb(cl, "lease")
                                  ? "held: agents may run here"
                                  : "not held: agents here are paused");
    if (ol__table_init(&t, 8, head) != 0)
        return;
    for (uint32_t i = 0; nodes && nodes->type == MSGPACK_OBJECT_ARRAY &&
                         i < nodes->via.array.size;
         i++) {
        const msgpack_object *n = &nodes->via.array.ptr[i];
        const msgpack_object *lc = ol__mp_get(n, "last_contact_ms");
        char id[24], addr[130], labels[210], health[24], applied[24],
            agents[24], last[32], role[48];
        const char *cells[8];

        if (lc && lc->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            snprintf(last, sizeof last, "%llu ms ago",
                     (unsigned long long)lc->via.u64);
        else
            snprintf(last, sizeof last, "-");
        cells[0] = ol__mp_gets(n, "id", id, sizeof id);
        cells[1] = ol__mp_gets(n, "address", addr, sizeof addr);
        cells[2] = ol__mp_gets(n, "labels", labels, sizeof labels);
        cells[3] = node_role(n, role, sizeof role);
        cells[4] = ol__mp_gets(n, "health", health, sizeof health);
        cells[5] = last;
        cells[6] = ol__mp_gets(n, "applied", applied, sizeof applied);
        cells[7] = ol__mp_gets(n, "agents", agents, sizeof agents);
        ol__table_add(&t, cells);
    }
    ol__table_print(&t, stdout);
    ol__table_free(&t);
}

/* The arguments of `cluster add ID ADDRESS PUBKEY [--labels ...]`. */
static int check_add(struct ol__cli *c, const char *const *pos,
                     const char *labels)
{
    uint8_t pkey[OL_PK_SIZE];

    if (pos[2][0] == '\0' || strlen(pos[2]) >= 128)
        return ol__cli_usage_err(c, "address must be 1-127 bytes "
                                    "(host:port)");
    if (ol__pk_parse(pos[3], pkey) != 0)
        return ol__cli_usage_err(c, "public key must be 64 hex digits "
                                    "(from 'outlast keygen'), not '%s'",
                                 pos[3]);
    if (labels && !labels_valid(labels))
        return ol__cli_usage_err(c, "--labels must look like "
                                    "'k=v,k=v' (letters, digits, "
                                    "_ . -), not '%s'",
                                 labels);
    return 0;
}

/* The request for a subcommand with `want` words (1 status, 2 remove,
 * 4 add). */
static void cluster_req(struct ol__cli_req *q, const char *sub, int want,
                        uint64_t id, const char *const *pos,
                        const char *labels)
{
    char op[32];

    snprintf(op, sizeof op, "cluster.%s", sub);
    ol__cli_req_open(q, op);
    if (want == 1 || id == 0)
        return;
    ol__pk_kv_uint(&q->m, "id", id);
    if (want == 2)
        return;
    ol__pk_kv_str(&q->m, "address", pos[2]);
    ol__pk_kv_str(&q->m, "pk", pos[3]);
    if (labels)
        ol__pk_kv_str(&q->m, "labels", labels);
}

/* `cluster promote ID` (to voter) and `cluster demote ID` (to standby):
 * one node id, like remove. */
static int role_sub(const char *sub)
{
    return strcmp(sub, "promote") == 0 || strcmp(sub, "demote") == 0;
}

/* How many words a node's subcommand takes, or -1 for none known. */
static int sub_words(const char *sub)
{
    if (strcmp(sub, "add") == 0)
        return 4;
    if (strcmp(sub, "remove") == 0 || strcmp(sub, "transfer") == 0 ||
        role_sub(sub))
        return 2;
    if (strcmp(sub, "status") == 0 || strcmp(sub, "init") == 0)
        return 1;
    return -1;
}

/* Ask the node and print its answer. */
static int cluster_call(struct ol__cli *c, const char *sub, int want,
                        uint64_t id, const char *const *pos,
                        const char *labels)
{
    struct ol__cli_resp r;
    struct ol__cli_req q;
    int rv;

    cluster_req(&q, sub, want, id, pos, labels);
    if ((rv = ol__cli_req_send(c, &q, &r)) != 0)
        return rv;
    if (c->json)
        rv = ol__cli_print_json(r.root);
    else if (strcmp(sub, "status") == 0) {
        print_cluster(r.root);
        ol__cli_print_wire(r.root);
    } else if (ol__mp_get(r.root, "message"))
        printf("%s\n", ol__mp_gets(r.root, "message", (char[256]){0}, 256));
    else
        printf("ok\n");
    ol__cli_resp_free(&r);
    return rv;
}

int ol__cmd_cluster(struct ol__cli *c)
{
    const char *labels = NULL, *config = NULL, *pos[4], *sub;
    int all = 0;
    const struct ol__cli_opt opts[] = {
        {.name = "--labels", .value = &labels},
        {.name = "--config", .value = &config},
        {.name = "--all", .flag = &all},
        {0},
    };
    uint64_t id = 0;
    int n, rv, want;

    if ((rv = ol__cli_parse(c, opts, pos, 1, 4, &n)) != 0)
        return rv;
    sub = pos[0];
    if (strcmp(sub, "init") == 0) {
        if (n != 1)
            return ol__cli_usage_err(c, "'cluster init' takes no arguments "
                                        "(use --config FILE)");
        return cluster_init(c, config, all);
    }
    if (config || all)
        return ol__cli_usage_err(c, "--config and --all only go with "
                                    "'cluster init'");
    if ((rv = ol__cli_need_node(c)) != 0)
        return rv;
    if ((want = sub_words(sub)) < 0)
        return ol__cli_usage_err(c, "unknown subcommand '%s' (status, init, "
                                    "add, remove, transfer, promote, demote)",
                                 sub);
    if (strcmp(sub, "transfer") == 0 && n > 2)
        return ol__cli_usage_err(c, "'cluster transfer' takes at most one "
                                    "node id");
    if (strcmp(sub, "transfer") == 0 && n == 1)
        want = 1; /* no ID: the most up-to-date voter */
    if (n != want)
        return ol__cli_usage_err(c, "'cluster %s' takes %d argument%s", sub,
                                 want - 1, want == 2 ? "" : "s");
    if (labels && want != 4)
        return ol__cli_usage_err(c, "--labels only goes with 'cluster add'");
    if (want >= 2 && (rv = parse_id(c, pos[1], &id)) != 0)
        return rv;
    if (want == 4 && (rv = check_add(c, pos, labels)) != 0)
        return rv;
    return cluster_call(c, sub, want, id, pos, labels);
}
