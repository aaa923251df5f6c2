/*
 * Rolling agents onto new plugin code (`outlast upgrade KIND [FILE]`).
 *
 * The new build is loaded first, in its own host process (or bound in the
 * node for trusted plugins), so a build for another ABI, or one that does
 * not load at all, is refused before anything changes.  A FILE given is
 * then installed as <data_dir>/plugins/KIND.so (written atomically), which
 * comes first in the search path, so a restart runs the same build.  The
 * build becomes the kind's current code and every agent of the kind on
 * this node moves to it at its next checkpoint boundary: an idle agent at
 * once, a busy one once the checkpoint of its latest step has committed.
 * Moving restarts the agent from that committed checkpoint in the new
 * code, and its next checkpoint names the new build's hash, so the chain
 * records the change.
 *
 * In a cluster the node also reports the build as wanted (a CODE command):
 * from then on agents of the kind are placed only on nodes that run it, so
 * an agent that has moved to the new code never fails over back to the
 * old.  Run the upgrade on every node, one after the other.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/pack.h"
#include "node.h"
#include "agent.h"
#include "restart.h"
#include "step.h"
#include "upgrade.h"

struct upgrade {
    struct ol__node *n;
    struct ol__ctl_req *req;
    struct ol__code *code;
    int install; /* a FILE was given */
};

/* Ask every agent of the kind to move to `c` at its next boundary. */
static uint32_t roll(struct ol__node *n, struct ol__code *c)
{
    struct ol_agent **now = NULL;
    uint32_t count = 0, n_now = 0;
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v, **grown;

        if (a->code == c || strcmp(a->row.kind, c->kind) != 0 ||
            a->phase != OL_PHASE_ACTIVE)
            continue;
        a->upgrade = 1;
        count++;
        if (a->inflight || a->busy)
            continue; /* the commit or the step's result moves it */
        if (a->steps_since_ckpt > 0) {
            ol__step_checkpoint(a);
            continue;
        }
        /* At a boundary now; moved below, since moving changes the map
         * being walked. */
        grown = realloc(now, (n_now + 1) * sizeof *now);
        if (grown == NULL)
            continue; /* its next checkpoint moves it */
        now = grown;
        now[n_now++] = a;
    }
    for (uint32_t i = 0; i < n_now; i++)
        ol__agent_rehost(now[i]);
    free(now);
    return count;
}

static int install(struct ol__node *n, struct ol__code *c, char *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 80];
    char *data = NULL;
    size_t len;
    int rv;

    if (ol__path_join(dir, sizeof dir, n->cfg.data_dir, "plugins")) {
        ol__errf(err, "data dir path too long");
        return OL_EINVAL;
    }
    rv = ol__mkdirs(dir, 0700, err);
    if (rv != 0)
        return rv;
    snprintf(path, sizeof path, "%s/%s.so", dir, c->kind);
    rv = ol__read_file(c->path, 1u << 30, &data, &len, err);
    if (rv == 0)
        rv = ol__write_file_atomic(path, data, len, 0644, err);
    free(data);
    return rv;
}

static void loaded(void *data, int status, const char *errmsg)
{
    struct upgrade *u = data;
    struct ol__node *n = u->n;
    struct ol__code *c = u->code;
    char err[OL_ERRMSG_SIZE];
    struct ol__buf b;
    struct ol__pk_map m;
    msgpack_packer pk;
    uint32_t rolling;

    if (status != 0) {
        ol__ctl_reply_error(u->req, status, "upgrade '%s': %s", c->kind,
                            errmsg);
        goto out;
    }
    if (n->stopping) {
        ol__ctl_reply_error(u->req, OL_ESHUTDOWN,
                            "upgrade '%s': the node is shutting down",
                            c->kind);
        goto out;
    }
    if (u->install && install(n, c, err) != 0) {
        ol__ctl_reply_error(u->req, OL_EIO, "upgrade '%s': install: %s",
                            c->kind, err);
        goto out;
    }
    ol__code_make_current(c);
    c->wanted = 1;
    ol__node_code_current(n, c);
    rolling = roll(n, c);
    ol_log(OL_LOG_INFO,
           "plugin '%s' upgraded to %s (%.16s); %" PRIu32 " agent(s) move "
           "at their next checkpoint",
           c->kind, c->version, c->hash_hex, rolling);
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    ol__pk_map_begin(&m, &pk, &b);
    ol__pk_kv_bool(&m, "ok", 1);
    ol__pk_kv_str(&m, "kind", c->kind);
    ol__pk_kv_str(&m, "version", c->version);
    ol__pk_kv_str(&m, "hash", c->hash_hex);
    ol__pk_kv_uint(&m, "agents", rolling);
    if (ol__pk_map_end(&m) == 0)
        ol__ctl_reply(u->req, b.base, b.len);
    else
        ol__ctl_reply_error(u->req, OL_ENOMEM, "out of memory");
    ol__buf_close(&b);
out:
    ol__code_unref(c);
    free(u);
}

void ol__op_upgrade(struct ol__node *n, struct ol__ctl_req *req,
                    const char *kind, const char *file)
{
    struct upgrade *u;
    struct ol__code *c;
    char err[OL_ERRMSG_SIZE];
    uint32_t need, have;
    int rv;

    /* A cluster holds it back until every voter can apply CODE.  A node
     * held at an older level does not know CODE at all: ol__cmd_info()
     * is NULL there, so ask for the level that introduced it. */
    need = ol__cmd_need(OL_CMD_CODE);
    have = n->replica->vt->level(n->replica);
    if (have < need) {
        ol__ctl_reply_error(req, OL_ENOTSUP,
                            "upgrade '%s': the cluster runs feature level "
                            "%" PRIu32 " and upgrades need level %" PRIu32
                            ": every voter must run a version that has it "
                            "(and no [cluster] feature_level below it); see "
                            "`outlast cluster status`",
                            kind, have, need);
        return;
    }
    if (file && file[0] != '/') {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "upgrade '%s': the file must be an absolute path",
                            kind);
        return;
    }
    if (file) {
        rv = ol__code_load(&n->codes, kind, file, &c, err);
    } else {
        rv = ol__code_current(&n->codes, kind, 1, &c, err);
        if (rv == 0)
            ol__code_ref(c);
    }
    if (rv != 0) {
        ol__ctl_reply_error(req, rv, "upgrade '%s': %s", kind, err);
        return;
    }
    u = calloc(1, sizeof *u);
    if (u == NULL) {
        ol__code_unref(c);
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
        return;
    }
    u->n = n;
    u->req = req;
    u->code = c;
    u->install = file != NULL;
    ol__code_wait(c, loaded, u);
}
