/*
 * The node side of bench_effects (see fx_driver.h).  A single node is
 * configured the way a user's first node is: [node] alone, no [cluster],
 * so it runs the embedded single-node replica and makes its own key.  A
 * cluster is cb_outlast.h's.
 */
#include "fx_driver.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cb_proc.h"
#include "outlast/agent_util.h"
#include "runtime/ctl.h"
#include "base/err.h"

#define START_MS 15000
#define CALL_MS 30000
#define POLL_MS 100

/* A single node's scratch directory and config in c (as cb_ol_init lays
 * out node 1).  0 or -1. */
static int single_init(struct cb_ol *c, const struct cb_ol_opts *o)
{
    struct cb_ol_node *nd = &c->nodes[0];
    FILE *f;

    memset(c, 0, sizeof *c);
    c->o = *o;
    c->o.n = 1;
    if (cb_tmpdir("olfx", c->root, sizeof c->root) != 0) {
        perror("bench: scratch directory");
        return -1;
    }
    nd->id = 1;
    snprintf(nd->dir, sizeof nd->dir, "%s/n1", c->root);
    snprintf(nd->conf, sizeof nd->conf, "%s/n1.ini", c->root);
    snprintf(nd->log, sizeof nd->log, "%s/n1.log", c->root);
    snprintf(nd->sock, sizeof nd->sock, "%s/%s", nd->dir, OL_CTL_SOCKET);
    snprintf(nd->db, sizeof nd->db, "%s/outlast.db", nd->dir);
    if (mkdir(nd->dir, 0700) != 0 || (f = fopen(nd->conf, "w")) == NULL) {
        perror("bench: node directory");
        return -1;
    }
    fprintf(f, "[node]\ndata_dir = %s\nplugin_dir = %s\nlog_level = %s\n%s",
            nd->dir, c->o.plugin_dir, c->o.log_level,
            c->o.extra ? c->o.extra : "");
    return fclose(f) == 0 ? 0 : -1;
}

int fxd_start(struct fxd *d, int nodes, int in_node)
{
    struct cb_ol_opts o;

    memset(d, 0, sizeof *d);
    cb_ol_defaults(&o);
    o.n = nodes;
    o.log_level = "warn";
    o.extra = in_node ? "[agents]\nisolation = none\n" : NULL;
    if ((nodes == 1 ? single_init(&d->c, &o) : cb_ol_init(&d->c, &o)) != 0 ||
        cb_ol_start(&d->c, START_MS) != 0)
        return -1;
    if (nodes > 1 && (d->via = cb_ol_wait_leader(&d->c, START_MS)) < 0) {
        fprintf(stderr, "bench: the cluster elected no leader\n");
        return -1;
    }
    return 0;
}

/* A node logs warnings and errors only: show the first few, since an
 * outlier in the figures may have its cause there. */
static void show_log(const struct cb_ol_node *nd, int i)
{
    char line[512];
    FILE *f = fopen(nd->log, "r");
    uint32_t n = 0;

    while (f && fgets(line, sizeof line, f))
        if (n++ < 5)
            fprintf(stderr, "bench: node %d logged: %s", i + 1, line);
    if (n > 5)
        fprintf(stderr, "bench: node %d logged %" PRIu32 " lines in all\n",
                i + 1, n);
    if (f)
        fclose(f);
}

void fxd_stop(struct fxd *d)
{
    if (d->c.root[0])
        for (int i = 0; i < d->c.o.n; i++)
            show_log(&d->c.nodes[i], i);
    cb_ol_destroy(&d->c);
}

/* Start a request {op: OP, name: NAME, ...} of `pairs` pairs in all. */
static void req(msgpack_sbuffer *sb, msgpack_packer *pk, uint32_t pairs,
                const char *op, const char *name)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, pairs);
    ol_mp_pack_str(pk, "op");
    ol_mp_pack_str(pk, op);
    ol_mp_pack_str(pk, "name");
    ol_mp_pack_str(pk, name);
}

/* Send the request in sb through node d->via; 0 or -1 (said). */
static int send_req(struct fxd *d, msgpack_sbuffer *sb, const char *what)
{
    char err[OL_ERRMSG_SIZE];
    int rv = cb_ol_request(&d->c, d->via, sb->data, sb->size, err);

    if (rv != 0)
        fprintf(stderr, "bench: %s: %s\n", what, err);
    msgpack_sbuffer_destroy(sb);
    return rv;
}

int fxd_spawn(struct fxd *d, const char *name, const char *mode,
              int *owner)
{
    struct cb_ol_agent *rows = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int n;

    req(&sb, &pk, 4, "spawn", name);
    ol_mp_pack_str(&pk, "kind");
    ol_mp_pack_str(&pk, "fxbench");
    ol_mp_pack_str(&pk, "config");
    msgpack_pack_map(&pk, 1);
    ol_mp_pack_str(&pk, "mode");
    ol_mp_pack_str(&pk, mode);
    if (send_req(d, &sb, "spawn") != 0)
        return -1;
    *owner = -1;
    n = cb_ol_agents(&d->c, d->via, &rows, NULL);
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].name, name) == 0)
            *owner = cb_ol_index(&d->c, rows[i].owner);
    free(rows);
    if (*owner < 0 && d->c.o.n == 1)
        *owner = 0;
    if (*owner < 0) {
        fprintf(stderr, "bench: no owner for agent '%s'\n", name);
        return -1;
    }
    return 0;
}

void fxd_samples_free(struct fxd_samples *s)
{
    free(s->us);
    s->us = NULL;
    s->n = 0;
}

/* The samples array of a state into s.  0, or -1 if malformed. */
static int take_samples(const msgpack_object *arr, struct fxd_samples *s)
{
    uint32_t n = arr->via.array.size;

    s->us = calloc(n ? n : 1, sizeof *s->us);
    if (s->us == NULL)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *row = &arr->via.array.ptr[i];

        if (row->type != MSGPACK_OBJECT_ARRAY || row->via.array.size != 5)
            return -1;
        for (uint32_t c = 0; c < 5; c++) {
            uint64_t v;

            if (!ol_mp_uint(&row->via.array.ptr[c], &v) || v > UINT32_MAX)
                return -1;
            s->us[i][c] = (uint32_t)v;
        }
    }
    s->n = n;
    return 0;
}

/* Ask for the agent's committed state: 1 once run `run` has ended with
 * `n` samples (taken into s unless NULL), 0 while it has not, -1 on an
 * error. */
static int poll_state(struct fxd *d, const char *name, uint64_t run,
                      uint32_t n, struct fxd_samples *s)
{
    char err[OL_ERRMSG_SIZE];
    const msgpack_object *st, *smp;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    void *buf = NULL;
    size_t len = 0;
    uint64_t runs = 0, left = 1, failed = 0, retried = 0;
    int rv = -1;

    req(&sb, &pk, 2, "show", name);
    if (ol__ctl_call(d->c.nodes[d->via].sock, sb.data, sb.size, &buf, &len,
                     CALL_MS, err) != 0) {
        fprintf(stderr, "bench: show '%s': %s\n", name, err);
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_init(&u);
    if (ol_mp_unpack(&u, buf, len) == 0) {
        st = ol_mp_get(ol_mp_get(&u.data, "agent"), "state");
        smp = ol_mp_get(st, "samples");
        rv = ol_mp_uint(ol_mp_get(st, "runs"), &runs) &&
                     ol_mp_uint(ol_mp_get(st, "left"), &left) &&
                     ol_mp_uint(ol_mp_get(st, "failed"), &failed) &&
                     ol_mp_uint(ol_mp_get(st, "retried"), &retried)
                 ? 0
                 : -1;
        if (rv == 0 && runs == run && left == 0 && smp &&
            smp->type == MSGPACK_OBJECT_ARRAY && smp->via.array.size == n) {
            rv = s == NULL ? 1 : take_samples(smp, s) == 0 ? 1 : -1;
            if (s) {
                s->failed = failed;
                s->retried = retried;
            }
        }
        msgpack_unpacked_destroy(&u);
    }
    if (rv < 0)
        fprintf(stderr, "bench: show '%s': not fxbench's state\n", name);
    free(buf);
    return rv;
}

int fxd_run(struct fxd *d, const char *name, uint64_t run, uint32_t n,
            struct fxd_samples *s)
{
    /* Generous: a cycle takes milliseconds. */
    uint64_t end = cb_now_ms() + 60000 + (uint64_t)n * 200;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rv;

    req(&sb, &pk, 3, "send", name);
    ol_mp_pack_str(&pk, "message");
    msgpack_pack_map(&pk, 1);
    ol_mp_pack_str(&pk, "run");
    msgpack_pack_uint32(&pk, n);
    if (send_req(d, &sb, "send") != 0)
        return -1;
    while ((rv = poll_state(d, name, run, n, s)) == 0 && cb_now_ms() < end)
        cb_sleep_ms(POLL_MS);
    if (rv == 0)
        fprintf(stderr, "bench: agent '%s' did not finish run %" PRIu64
                " of %" PRIu32 " cycles in time\n", name, run, n);
    return rv == 1 ? 0 : -1;
}
