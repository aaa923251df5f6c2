/*
 * Cluster integration test support: see cluster.h.
 *
 * The invariant checker reads every node's SQLite file directly, the same
 * bytes an auditor would read, rather than asking the daemons: what it
 * checks must hold for what is on disk.
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "record/seal.h"
#include "state/verify.h"
#include "base/err.h"
#include "base/keys.h"

/* ---- a map from (agent, number) to 32 bytes ---- */

struct mrow {
    char agent[65];
    int64_t k;
    uint8_t v[32];
    int node;
    int used;
};

struct tc_seen {
    struct mrow *t;
    size_t cap, n;
};

static uint64_t mhash(const char *agent, int64_t k)
{
    uint64_t h = 1469598103934665603ull;

    for (const char *p = agent; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    for (int i = 0; i < 8; i++)
        h = (h ^ (uint8_t)(k >> (8 * i))) * 1099511628211ull;
    return h;
}

static void map_free(struct tc_seen *m)
{
    if (m == NULL)
        return;
    free(m->t);
    m->t = NULL;
    m->cap = m->n = 0;
}

static struct mrow *map_slot(struct tc_seen *m, const char *agent, int64_t k)
{
    size_t i = (size_t)mhash(agent, k) & (m->cap - 1);

    while (m->t[i].used &&
           (m->t[i].k != k || strcmp(m->t[i].agent, agent) != 0))
        i = (i + 1) & (m->cap - 1);
    return &m->t[i];
}

/* Insert or find; *fresh tells which. */
static struct mrow *map_put(struct tc_seen *m, const char *agent, int64_t k,
                            int *fresh)
{
    struct mrow *r;

    if ((m->n + 1) * 2 > m->cap) {
        struct tc_seen big = {NULL, m->cap ? m->cap * 2 : 4096, 0};

        big.t = calloc(big.cap, sizeof *big.t);
        cr_assert_not_null(big.t);
        for (size_t i = 0; i < m->cap; i++)
            if (m->t[i].used) {
                *map_slot(&big, m->t[i].agent, m->t[i].k) = m->t[i];
                big.n++;
            }
        free(m->t);
        *m = big;
    }
    r = map_slot(m, agent, k);
    *fresh = !r->used;
    if (!r->used) {
        memset(r, 0, sizeof *r);
        snprintf(r->agent, sizeof r->agent, "%s", agent);
        r->k = k;
        r->used = 1;
        m->n++;
    }
    return r;
}

/* ---- processes ---- */

static int port_free(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static int pick_base(int n)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)td_ms();

    /* 20000..32767 is below Linux's ephemeral range, so an outgoing
     * connection never takes a node's port between its kill and its
     * restart. */
    for (int tries = 0; tries < 200; tries++) {
        int base = 20000 + (int)(rand_r(&seed) % (32700 - 20000 - n));
        int ok = 1;

        for (int i = 1; i <= n && ok; i++)
            ok = port_free(base + i);
        if (ok)
            return base;
    }
    cr_assert_fail("no free port range for %d nodes", n);
    return -1;
}

void tc_init(struct tc *c, const struct tc_opts *opts)
{
    char tag[64], path[300], err[OL_ERRMSG_SIZE];

    memset(c, 0, sizeof *c);
    cr_assert(opts->n >= 1 && opts->n <= TC_MAX_NODES);
    c->n = opts->n;
    c->opts = *opts;
    c->base_port = pick_base(c->n);
    snprintf(c->name, sizeof c->name, "tc-%d-%d", (int)getpid(),
             c->base_port);
    c->seen = calloc(1, sizeof *c->seen);
    cr_assert_not_null(c->seen);
    for (int i = 0; i < c->n; i++) {
        struct tc_node *nd = &c->nodes[i];
        struct ol__key k;

        nd->id = (uint64_t)i + 1;
        snprintf(tag, sizeof tag, "%s%d", opts->tag ? opts->tag : "cl",
                 i + 1);
        td_init(&nd->d, tag, NULL);
        snprintf(nd->addr, sizeof nd->addr, "127.0.0.1:%d",
                 c->base_port + i + 1);
        snprintf(nd->labels, sizeof nd->labels, "cloud=c%d", i + 1);
        cr_assert_eq(mkdir(nd->d.data, 0700), 0, "mkdir %s", nd->d.data);
        cr_assert_eq(ol__key_generate(&k), 0);
        snprintf(path, sizeof path, "%s/node.key", nd->d.data);
        cr_assert_eq(ol__key_save(&k, path, err), 0, "%s", err);
        ol__pk_hex(k.pk, nd->pk);
        ol__key_close(&k);
    }
}

void tc_write_config(struct tc *c, int i)
{
    struct tc_node *nd = &c->nodes[i];
    FILE *f = fopen(nd->d.conf, "w");

    cr_assert_not_null(f, "write %s", nd->d.conf);
    fprintf(f,
            "[node]\n"
            "id = %" PRIu64 "\n"
            "data_dir = %s\n"
            "plugin_dir = %s\n"
            "log_level = debug\n"
            "labels = %s\n"
            "[checkpoint]\n"
            "retain = 0\n"
            "[cluster]\n"
            "name = %s\n"
            "listen = %s\n"
            "election_timeout_ms = 300\n"
            "heartbeat_timeout_ms = 50\n"
            "failover_ms = %u\n"
            "segment_mb = %u\n"
            "bootstrap = true\n",
            nd->id, nd->d.data, td_plugin_dirs(), nd->labels, c->name,
            nd->addr, c->opts.failover_ms ? c->opts.failover_ms : 1000,
            c->opts.segment_mb ? c->opts.segment_mb : 8);
    if (c->opts.snapshot_threshold)
        fprintf(f,
                "snapshot_threshold = %u\n"
                "snapshot_trailing = %u\n",
                c->opts.snapshot_threshold, c->opts.snapshot_trailing);
    for (int j = 0; j < c->n; j++) {
        if (j == i)
            continue;
        fprintf(f,
                "[peer.%" PRIu64 "]\n"
                "address = %s\n"
                "pubkey = %s\n"
                "labels = %s\n",
                c->nodes[j].id, c->nodes[j].addr, c->nodes[j].pk,
                c->nodes[j].labels);
    }
    if (c->opts.extra)
        fprintf(f, "%s\n", c->opts.extra);
    fclose(f);
}

static void spawn_node(struct tc_node *nd)
{
    pid_t pid = fork();

    cr_assert(pid >= 0, "fork");
    if (pid == 0) {
        int fd = open(nd->d.log, O_WRONLY | O_CREAT | O_APPEND, 0644);

        /* A test process that dies (a timeout) takes its nodes along. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        for (int k = 0; k < 3; k++)
            if (nd->env[k][0])
                putenv(nd->env[k]);
        /* A preloaded library comes before the sanitizer's runtime in an
         * instrumented daemon; tell the runtime that is intended. */
        if (getenv("LD_PRELOAD")) {
            static char asan[1024];
            const char *o = getenv("ASAN_OPTIONS");

            snprintf(asan, sizeof asan,
                     "ASAN_OPTIONS=%s%sverify_asan_link_order=0", o ? o : "",
                     o && o[0] ? ":" : "");
            putenv(asan);
        }
        /* OL_OUTLASTD_ARGS: one more argument for this start (--rejoin). */
        if (nd->ns[0])
            execlp("ip", "ip", "netns", "exec", nd->ns, td_bin("outlastd"),
                   "--config", nd->d.conf, getenv("OL_OUTLASTD_ARGS"),
                   (char *)NULL);
        else
            execl(td_bin("outlastd"), "outlastd", "--config", nd->d.conf,
                  getenv("OL_OUTLASTD_ARGS"), (char *)NULL);
        _exit(127);
    }
    nd->d.pid = pid;
    nd->d.exited = 0;
}

int tc_start_node(struct tc *c, int i, int timeout_ms)
{
    struct tc_node *nd = &c->nodes[i];
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    spawn_node(nd);
    while (td_ms() < end) {
        struct td_resp r;
        int st;

        if (waitpid(nd->d.pid, &st, WNOHANG) == nd->d.pid) {
            nd->d.pid = 0;
            nd->d.exited = 1;
            nd->d.status = st;
            return -1;
        }
        if (td_call(&nd->d, &r, "op", "status", NULL) == 0) {
            td_resp_free(&r);
            nd->up = 1;
            return 0;
        }
        td_resp_free(&r);
        td_sleep_ms(20);
    }
    return -1;
}

void tc_start(struct tc *c)
{
    for (int i = 0; i < c->n; i++)
        tc_write_config(c, i);
    for (int i = 0; i < c->n; i++)
        cr_assert_eq(tc_start_node(c, i, 15000), 0,
                     "node %d did not start; see %s", i + 1,
                     c->nodes[i].d.log);
}

void tc_kill(struct tc *c, int i)
{
    tc_observe(c);
    td_kill9(&c->nodes[i].d);
    c->nodes[i].up = 0;
}

void tc_cleanup(struct tc *c)
{
    for (int i = 0; i < c->n; i++) {
        td_cleanup(&c->nodes[i].d);
        c->nodes[i].up = 0;
    }
    if (getenv("OL_KEEP_TMP"))
        for (int i = 0; i < c->n; i++)
            fprintf(stderr, "kept node %d: %s\n", i + 1, c->nodes[i].d.root);
    map_free(c->seen);
    free(c->seen);
    c->seen = NULL;
}

int tc_index(const struct tc *c, uint64_t id)
{
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i].id == id)
            return i;
    return -1;
}

/* ---- control calls ---- */

static void obj_str(const msgpack_object *o, char *out, size_t cap)
{
    out[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR)
        snprintf(out, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
}

static int obj_bool(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

void tc_expect_running(struct tc *c)
{
    for (int i = 0; i < c->n; i++) {
        struct tc_node *nd = &c->nodes[i];
        int st;

        if (!nd->up || nd->d.pid <= 0 ||
            waitpid(nd->d.pid, &st, WNOHANG) != nd->d.pid)
            continue;
        nd->d.pid = 0;
        nd->d.exited = 1;
        nd->d.status = st;
        nd->up = 0;
        if (WIFSIGNALED(st))
            cr_assert_fail("node %d died of signal %d (%s); see %s", i + 1,
                           WTERMSIG(st), strsignal(WTERMSIG(st)),
                           nd->d.log);
        cr_assert_fail("node %d exited with code %d; see %s", i + 1,
                       WEXITSTATUS(st), nd->d.log);
    }
}

int tc_status(struct tc *c, int i, struct tc_status *out)
{
    struct td_resp r;
    const msgpack_object *cl, *nodes, *ctr;

    memset(out, 0, sizeof *out);
    tc_expect_running(c);
    if (!c->nodes[i].up)
        return -1;
    if (td_call(&c->nodes[i].d, &r, "op", "cluster.status", NULL) != 0) {
        td_resp_free(&r);
        return -1;
    }
    cl = td_get(&r.u.data, "cluster");
    if (cl == NULL) {
        td_resp_free(&r);
        return -1;
    }
    obj_str(td_get(cl, "role"), out->role, sizeof out->role);
    out->leader = (uint64_t)td_int(cl, "leader", 0);
    out->term = (uint64_t)td_int(cl, "term", 0);
    out->commit_index = (uint64_t)td_int(cl, "commit_index", 0);
    out->applied_index = (uint64_t)td_int(cl, "applied_index", 0);
    out->store_applied = (uint64_t)td_int(cl, "store_applied", 0);
    out->lease = obj_bool(td_get(cl, "lease"));
    ctr = td_get(cl, "counters");
    out->snapshots_installed =
        (uint64_t)td_int(ctr, "snapshots_installed", 0);
    out->snapshots_taken = (uint64_t)td_int(ctr, "snapshots_taken", 0);
    nodes = td_get(cl, "nodes");
    for (uint32_t k = 0; nodes && nodes->type == MSGPACK_OBJECT_ARRAY &&
                         k < nodes->via.array.size && k < 16;
         k++) {
        const msgpack_object *nd = &nodes->via.array.ptr[k];

        out->nodes[k].id = (uint64_t)td_int(nd, "id", 0);
        out->nodes[k].agents = (uint64_t)td_int(nd, "agents", 0);
        out->nodes[k].voter = obj_bool(td_get(nd, "voter"));
        obj_str(td_get(nd, "health"), out->nodes[k].health,
                sizeof out->nodes[k].health);
        obj_str(td_get(nd, "pk"), out->nodes[k].pk,
                sizeof out->nodes[k].pk);
        out->n_nodes++;
    }
    td_resp_free(&r);
    return 0;
}

int tc_wait_leader(struct tc *c, unsigned mask, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    do {
        struct tc_status st;
        uint64_t lid = 0;
        int agree = 1, li;

        for (int i = 0; i < c->n && agree; i++) {
            if (!c->nodes[i].up || (mask && !(mask & (1u << i))))
                continue;
            if (tc_status(c, i, &st) != 0 || st.leader == 0 ||
                (lid && st.leader != lid))
                agree = 0;
            else
                lid = st.leader;
        }
        li = tc_index(c, lid);
        if (agree && li >= 0 && c->nodes[li].up &&
            (!mask || (mask & (1u << li))) && tc_status(c, li, &st) == 0 &&
            strcmp(st.role, "leader") == 0)
            return li;
        td_sleep_ms(50);
    } while (td_ms() < end);
    return -1;
}

int tc_agents(struct tc *c, int i, struct tc_agent *out, int cap)
{
    struct td_resp r;
    const msgpack_object *list;
    int n = 0;

    if (!c->nodes[i].up)
        return -1;
    if (td_call(&c->nodes[i].d, &r, "op", "agents", NULL) != 0) {
        td_resp_free(&r);
        return -1;
    }
    list = td_get(&r.u.data, "agents");
    for (uint32_t k = 0; list && list->type == MSGPACK_OBJECT_ARRAY &&
                         k < list->via.array.size && n < cap;
         k++) {
        const msgpack_object *a = &list->via.array.ptr[k];
        struct tc_agent *o = &out[n++];

        obj_str(td_get(a, "name"), o->name, sizeof o->name);
        obj_str(td_get(a, "status"), o->status, sizeof o->status);
        o->owner = (uint64_t)td_int(a, "owner", 0);
        o->epoch = (uint64_t)td_int(a, "epoch", 0);
        o->seq = (uint64_t)td_int(a, "seq", 0);
    }
    td_resp_free(&r);
    return n;
}

int tc_agents_on(struct tc *c, int via, int owner, struct tc_agent *out,
                 int cap)
{
    struct tc_agent all[64];
    int n = tc_agents(c, via, all, 64), k = 0;

    for (int i = 0; i < n && k < cap; i++)
        if (all[i].owner == c->nodes[owner].id &&
            strcmp(all[i].status, "running") == 0)
            out[k++] = all[i];
    return k;
}

int tc_pick_follower(struct tc *c, int leader, unsigned skip)
{
    struct tc_agent a[64];
    int best = -1, best_n = 0;

    for (int i = 0; i < c->n; i++) {
        int n;

        if (i == leader || !c->nodes[i].up || (skip & (1u << i)))
            continue;
        n = tc_agents_on(c, leader, i, a, 64);
        if (n > best_n) {
            best = i;
            best_n = n;
        }
    }
    return best;
}

static sqlite3 *open_db(struct tc *c, int i)
{
    return td_db(&c->nodes[i].d);
}

int tc_wait_moved(struct tc *c, int via, const struct tc_agent *moved,
                  int n, int from, int timeout_ms, char *why, size_t cap)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;
    int done = 0;

    do {
        sqlite3 *db;
        sqlite3_stmt *st;

        tc_expect_running(c);
        db = open_db(c, via);

        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT a.owner, a.epoch, a.status,"
                                        " a.reason, (SELECT count(*) FROM "
                                        "checkpoints k WHERE k.agent = "
                                        "a.name AND k.epoch = a.epoch) FROM"
                                        " agents a WHERE a.name = ?",
                                        -1, &st, NULL),
                     SQLITE_OK, "%s", sqlite3_errmsg(db));
        done = 1;
        for (int k = 0; k < n && done; k++) {
            uint64_t owner = 0, epoch = 0;
            int64_t cnt = 0;

            sqlite3_bind_text(st, 1, moved[k].name, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW) {
                owner = (uint64_t)sqlite3_column_int64(st, 0);
                epoch = (uint64_t)sqlite3_column_int64(st, 1);
                cnt = sqlite3_column_int64(st, 4);
                if (sqlite3_column_int(st, 2) != 1) {
                    /* Not running any more: it will never resume. */
                    snprintf(why, cap,
                             "'%s' has status %d (%s) after its owner node "
                             "%d went away",
                             moved[k].name, sqlite3_column_int(st, 2),
                             (const char *)sqlite3_column_text(st, 3),
                             from + 1);
                    sqlite3_finalize(st);
                    sqlite3_close(db);
                    return 0;
                }
            }
            sqlite3_reset(st);
            if (owner == 0 || owner == c->nodes[from].id ||
                epoch <= moved[k].epoch || cnt == 0) {
                snprintf(why, cap,
                         "'%s': owner %" PRIu64 " epoch %" PRIu64
                         " (was node %d epoch %" PRIu64 "), %" PRId64
                         " checkpoint(s) under that epoch",
                         moved[k].name, owner, epoch, from + 1,
                         moved[k].epoch, cnt);
                done = 0;
            }
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (done)
            return 1;
        td_sleep_ms(50);
    } while (td_ms() < end);
    return 0;
}

int tc_wait_alive(struct tc *c, int via, int i, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    do {
        struct tc_status st;

        if (tc_status(c, via, &st) == 0)
            for (int k = 0; k < st.n_nodes; k++)
                if (st.nodes[k].id == c->nodes[i].id &&
                    strcmp(st.nodes[k].health, "alive") == 0)
                    return 1;
        td_sleep_ms(50);
    } while (td_ms() < end);
    return 0;
}

/* ---- database reads ---- */

int64_t tc_state_int(struct tc *c, int i, const char *agent,
                     const char *key, int64_t dflt)
{
    return td_state_int(&c->nodes[i].d, agent, key, dflt);
}

int64_t tc_ckpt_count(struct tc *c, int i)
{
    sqlite3 *db = open_db(c, i);
    int64_t v = td_q1(db, "SELECT count(*) FROM checkpoints");

    sqlite3_close(db);
    return v;
}

int64_t tc_db_applied(struct tc *c, int i)
{
    sqlite3 *db = open_db(c, i);
    int64_t v = td_q1(db, "SELECT coalesce((SELECT CAST(value AS INTEGER) "
                          "FROM meta WHERE key = 'applied_index'), 0)");

    sqlite3_close(db);
    return v;
}

static int signer_of(const void *seal, size_t len, uint8_t out[32])
{
    struct ol__seal s;

    if (seal == NULL || ol__seal_parse(seal, len, &s) != 0)
        return -1;
    memcpy(out, s.signer, 32);
    return 0;
}

static int node_of_pk(struct tc *c, const uint8_t pk[32])
{
    char hex[OL_PK_HEX_SIZE];

    ol__pk_hex(pk, hex);
    for (int i = 0; i < c->n; i++)
        if (strcmp(hex, c->nodes[i].pk) == 0)
            return i;
    return -1;
}

int64_t tc_signed_by(struct tc *c, int i, int signer, const char *agent)
{
    sqlite3 *db = open_db(c, i);
    sqlite3_stmt *st;
    int64_t n = 0;

    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT s.body FROM checkpoints k JOIN "
                                    "seals s ON s.id = k.seal WHERE ?1 IS "
                                    "NULL OR k.agent = ?1",
                                    -1, &st, NULL),
                 SQLITE_OK);
    if (agent)
        sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint8_t pk[32];

        if (signer_of(sqlite3_column_blob(st, 0),
                      (size_t)sqlite3_column_bytes(st, 0), pk) == 0 &&
            node_of_pk(c, pk) == signer)
            n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

int tc_log_count(struct tc *c, int i, const char *needle)
{
    FILE *f = fopen(c->nodes[i].d.log, "r");
    char line[2048];
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* ---- observed rows ---- */

static void observe_node(struct tc *c, int i)
{
    sqlite3 *db = open_db(c, i);
    sqlite3_stmt *st;

    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT agent, seq, hash FROM "
                                    "checkpoints",
                                    -1, &st, NULL),
                 SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *agent = (const char *)sqlite3_column_text(st, 0);
        int64_t seq = sqlite3_column_int64(st, 1);
        const void *hash = sqlite3_column_blob(st, 2);
        int fresh;
        struct mrow *r;

        cr_assert_eq(sqlite3_column_bytes(st, 2), 32,
                     "node %d: '%s' seq %" PRId64 " has a %d-byte hash",
                     i + 1, agent, seq, sqlite3_column_bytes(st, 2));
        r = map_put(c->seen, agent, seq, &fresh);
        if (fresh) {
            memcpy(r->v, hash, 32);
            r->node = i;
        } else {
            cr_expect_eq(memcmp(r->v, hash, 32), 0,
                         "'%s' seq %" PRId64 ": node %d holds another "
                         "checkpoint than the one seen on node %d",
                         agent, seq, i + 1, r->node + 1);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

void tc_observe(struct tc *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i].up)
            observe_node(c, i);
}

/* ---- the checker ---- */

struct nrow {
    char agent[65];
    int64_t seq;
    int64_t epoch;
    int flags;
    uint8_t hash[32];
    uint8_t signer[32];
    int has_signer;
};

struct ndb {
    struct nrow *rows; /* ordered by agent, seq */
    size_t n;
};

static void load_rows(struct tc *c, int i, struct ndb *out)
{
    sqlite3 *db = open_db(c, i);
    sqlite3_stmt *st;
    size_t cap = 1024;

    out->n = 0;
    out->rows = malloc(cap * sizeof *out->rows);
    cr_assert_not_null(out->rows);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT k.agent, k.seq, k.epoch, "
                                    "k.flags, k.hash, s.body FROM "
                                    "checkpoints k LEFT JOIN seals s ON "
                                    "s.id = k.seal ORDER BY k.agent, k.seq",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct nrow *r;

        if (out->n == cap) {
            out->rows = realloc(out->rows, (cap *= 2) * sizeof *out->rows);
            cr_assert_not_null(out->rows);
        }
        r = &out->rows[out->n++];
        memset(r, 0, sizeof *r);
        snprintf(r->agent, sizeof r->agent, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        r->seq = sqlite3_column_int64(st, 1);
        r->epoch = sqlite3_column_int64(st, 2);
        r->flags = sqlite3_column_int(st, 3);
        if (sqlite3_column_bytes(st, 4) == 32)
            memcpy(r->hash, sqlite3_column_blob(st, 4), 32);
        r->has_signer =
            signer_of(sqlite3_column_blob(st, 5),
                      (size_t)sqlite3_column_bytes(st, 5), r->signer) == 0;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int row_cmp(const struct nrow *r, const char *agent, int64_t seq)
{
    int d = strcmp(r->agent, agent);

    if (d)
        return d;
    return r->seq < seq ? -1 : r->seq > seq;
}

/* Index of the first row >= (agent, seq). */
static size_t lower_bound(const struct ndb *d, const char *agent,
                          int64_t seq)
{
    size_t lo = 0, hi = d->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (row_cmp(&d->rows[mid], agent, seq) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Is (agent, seq), missing from d, inside a gap that ends at a row
 * installed from a snapshot? */
static int in_snapshot_gap(const struct ndb *d, const char *agent,
                           int64_t seq)
{
    size_t k = lower_bound(d, agent, seq);

    return k < d->n && strcmp(d->rows[k].agent, agent) == 0 &&
           (d->rows[k].flags & 1);
}

static void verify_cb(void *data, const char *agent, uint64_t seq,
                      const char *problem)
{
    cr_log_error("node %d: verify: '%s' seq %" PRIu64 ": %s",
                 *(int *)data + 1, agent, seq, problem);
}

/* Report at most this many rows per kind of problem. */
#define SHOW 10

int tc_check(struct tc *c, int timeout_ms)
{
    struct ndb dbs[TC_MAX_NODES];
    struct tc_seen pairs = {0}, epochs = {0};
    uint64_t target = 0, end = td_ms() + (uint64_t)timeout_ms;
    int bad = 0, caught_up = 0;

    for (int i = 0; i < c->n; i++)
        cr_assert(c->nodes[i].up, "tc_check: node %d is not running", i + 1);
    tc_observe(c);
    /* Every row just observed was committed at or below this index. */
    for (int i = 0; i < c->n; i++) {
        struct tc_status st;

        cr_assert_eq(tc_status(c, i, &st), 0, "node %d: cluster.status",
                     i + 1);
        if (st.commit_index > target)
            target = st.commit_index;
    }
    while (!caught_up) {
        caught_up = 1;
        for (int i = 0; i < c->n && caught_up; i++)
            caught_up = (uint64_t)tc_db_applied(c, i) >= target;
        if (caught_up || td_ms() > end)
            break;
        td_sleep_ms(50);
    }
    for (int i = 0; i < c->n; i++)
        cr_expect_geq(tc_db_applied(c, i), (int64_t)target,
                      "node %d applied only up to index %" PRId64
                      " of %" PRIu64 " within %d ms",
                      i + 1, tc_db_applied(c, i), target, timeout_ms);

    for (int i = 0; i < c->n; i++) {
        struct ol__verify_report rep;
        sqlite3 *db = open_db(c, i);
        int64_t ev;
        int shown = 0;

        cr_expect_eq(ol__verify_store(db, NULL, NULL, 0, verify_cb, &i,
                                      &rep),
                     0, "node %d: verify could not read the store", i + 1);
        cr_expect_eq(rep.bad, 0, "node %d: %" PRIu64 " of %" PRIu64
                                 " checkpoints fail verification",
                     i + 1, rep.bad, rep.checkpoints);
        bad += rep.bad != 0;
        ev = td_q1(db, "SELECT count(*) FROM evidence");
        cr_expect_eq(ev, 0, "node %d holds %" PRId64 " divergence reports",
                     i + 1, ev);
        bad += ev != 0;
        sqlite3_close(db);

        load_rows(c, i, &dbs[i]);
        /* Gaps: each agent's seqs run 1, 2, 3...; a jump is allowed only
         * onto a row that a snapshot installed. */
        for (size_t k = 0; k < dbs[i].n; k++) {
            const struct nrow *r = &dbs[i].rows[k];
            int64_t prev = k > 0 && strcmp(dbs[i].rows[k - 1].agent,
                                           r->agent) == 0
                               ? dbs[i].rows[k - 1].seq
                               : 0;

            if (r->seq != prev + 1 && !(r->flags & 1)) {
                if (shown++ < SHOW)
                    cr_expect_fail("node %d: '%s' seqs %" PRId64 "..%" PRId64
                                   " are missing (not a snapshot gap)",
                                   i + 1, r->agent, prev + 1, r->seq - 1);
                bad++;
            }
        }
    }

    /* Agreement: one checkpoint per (agent, seq) across all nodes, and one
     * signer per (agent, epoch). */
    for (int i = 0; i < c->n; i++) {
        int shown_h = 0, shown_s = 0;

        for (size_t k = 0; k < dbs[i].n; k++) {
            const struct nrow *r = &dbs[i].rows[k];
            struct mrow *m;
            int fresh;

            m = map_put(&pairs, r->agent, r->seq, &fresh);
            if (fresh) {
                memcpy(m->v, r->hash, 32);
                m->node = i;
            } else if (memcmp(m->v, r->hash, 32) != 0) {
                if (shown_h++ < SHOW)
                    cr_expect_fail("'%s' seq %" PRId64 ": nodes %d and %d "
                                   "hold different checkpoints",
                                   r->agent, r->seq, m->node + 1, i + 1);
                bad++;
            }
            if (!r->has_signer) {
                if (shown_s++ < SHOW)
                    cr_expect_fail("node %d: '%s' seq %" PRId64 " has no "
                                   "readable seal",
                                   i + 1, r->agent, r->seq);
                bad++;
                continue;
            }
            m = map_put(&epochs, r->agent, r->epoch, &fresh);
            if (fresh) {
                memcpy(m->v, r->signer, 32);
                m->node = i;
            } else if (memcmp(m->v, r->signer, 32) != 0) {
                if (shown_s++ < SHOW)
                    cr_expect_fail("'%s' epoch %" PRId64 " was committed by "
                                   "two nodes: node %d and node %d signed "
                                   "checkpoints of it (seq %" PRId64
                                   " on node %d's copy)",
                                   r->agent, r->epoch,
                                   node_of_pk(c, m->v) + 1,
                                   node_of_pk(c, r->signer) + 1, r->seq,
                                   i + 1);
                bad++;
            }
        }
    }

    /* Nothing committed is lost: every row observed at any time is on
     * every node, unless that node skipped it by installing a snapshot. */
    for (int i = 0; i < c->n; i++) {
        size_t shown = 0, skipped = 0;

        for (size_t s = 0; s < c->seen->cap; s++) {
            const struct mrow *m = &c->seen->t[s];
            size_t k;

            if (!m->used)
                continue;
            k = lower_bound(&dbs[i], m->agent, m->k);
            if (k < dbs[i].n && row_cmp(&dbs[i].rows[k], m->agent, m->k) ==
                                    0) {
                if (memcmp(dbs[i].rows[k].hash, m->v, 32) != 0) {
                    if (shown++ < SHOW)
                        cr_expect_fail("'%s' seq %" PRId64 ": node %d now "
                                       "holds another checkpoint than the "
                                       "one observed on node %d",
                                       m->agent, m->k, i + 1, m->node + 1);
                    bad++;
                }
            } else if (in_snapshot_gap(&dbs[i], m->agent, m->k)) {
                skipped++;
            } else {
                if (shown++ < SHOW)
                    cr_expect_fail("'%s' seq %" PRId64 " (observed on node "
                                   "%d) is missing on node %d",
                                   m->agent, m->k, m->node + 1, i + 1);
                bad++;
            }
        }
        cr_log_info("node %d: %zu checkpoint rows, %zu observed rows inside "
                    "snapshot gaps",
                    i + 1, dbs[i].n, skipped);
    }
    cr_log_info("checker: %zu distinct (agent, seq), %zu (agent, epoch), "
                "%zu observed, applied target %" PRIu64 ", %d problem(s)",
                pairs.n, epochs.n, c->seen->n, target, bad);
    for (int i = 0; i < c->n; i++)
        free(dbs[i].rows);
    map_free(&pairs);
    map_free(&epochs);
    return bad;
}
