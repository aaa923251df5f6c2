/*
 * Cluster integration test support (see cluster.h), the processes and
 * control half: ports, config files, starting and killing nodes, and what
 * the nodes answer over their control sockets (status, leader, agents,
 * moves).  Reading the nodes' database files is in cluster_db.c.
 */
#include "cluster.h"
#include "cluster_int.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
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

#include "base/err.h"
#include "base/keys.h"

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

void tc_write_head(FILE *f, const struct tc *c, uint64_t id,
                   const char *data, const char *labels, const char *addr,
                   unsigned failover_ms)
{
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
            "bootstrap = true\n",
            id, data, td_plugin_dirs(), labels, c->name, addr, failover_ms);
}

void tc_write_peers(FILE *f, const struct tc *c, uint64_t self)
{
    for (int j = 0; j < c->n; j++)
        if (c->nodes[j].id != self)
            fprintf(f,
                    "[peer.%" PRIu64 "]\n"
                    "address = %s\n"
                    "pubkey = %s\n"
                    "labels = %s\n",
                    c->nodes[j].id, c->nodes[j].addr, c->nodes[j].pk,
                    c->nodes[j].labels);
}

void tc_write_config(struct tc *c, int i)
{
    struct tc_node *nd = &c->nodes[i];
    FILE *f = fopen(nd->d.conf, "w");

    cr_assert_not_null(f, "write %s", nd->d.conf);
    tc_write_head(f, c, nd->id, nd->d.data, nd->labels, nd->addr,
                  c->opts.failover_ms ? c->opts.failover_ms : 1000);
    fprintf(f, "segment_mb = %u\n",
            c->opts.segment_mb ? c->opts.segment_mb : 8);
    if (c->opts.snapshot_threshold)
        fprintf(f,
                "snapshot_threshold = %u\n"
                "snapshot_trailing = %u\n",
                c->opts.snapshot_threshold, c->opts.snapshot_trailing);
    if (c->opts.snapshot_mb)
        fprintf(f, "snapshot_mb = %u\n", c->opts.snapshot_mb);
    if (c->opts.cluster_extra)
        fprintf(f, "%s\n", c->opts.cluster_extra);
    tc_write_peers(f, c, nd->id);
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
    tc__seen_free(c->seen);
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
    out->lease_ms = td_int(cl, "lease_ms", -1);
    out->lease_margin_ms = td_int(cl, "lease_margin_ms", INT64_MIN);
    ctr = td_get(cl, "counters");
    out->snapshots_installed =
        (uint64_t)td_int(ctr, "snapshots_installed", 0);
    out->snapshots_taken = (uint64_t)td_int(ctr, "snapshots_taken", 0);
    out->appends_passed = (uint64_t)td_int(ctr, "appends_passed", 0);
    out->appends_held_to_majority =
        (uint64_t)td_int(ctr, "appends_held_to_majority", 0);
    out->appends_held_to_guard =
        (uint64_t)td_int(ctr, "appends_held_to_guard", 0);
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

int tc_wait_leads(struct tc *c, int want, unsigned mask, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    do {
        if (tc_wait_leader(c, mask, 1000) == want)
            return 1;
        td_sleep_ms(100);
    } while (td_ms() < end);
    return 0;
}

int tc_wait_commits(struct tc *c, int i, int64_t more, int timeout_ms)
{
    int64_t want = tc_ckpt_count(c, i) + more;
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    do {
        if (tc_ckpt_count(c, i) >= want)
            return 1;
        td_sleep_ms(100);
    } while (td_ms() < end);
    return 0;
}
