/*
 * Commands that change an agent through the node: `spawn`, `stop`, `start`,
 * `restart`, `rm`, `config` and `send`, and `upgrade`, which changes the
 * code agents of a kind run.  JSON arguments are parsed by jansson and
 * sent as msgpack; a parse error names the line and column and is a usage
 * error.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "record/ckpt.h"
#include "base/err.h"
#include "base/json.h"
#include "replication/placement.h"
#include "cli.h"

/* --request-id ID: 1-128 printable ASCII characters.  The node derives
 * the command's id from it, so running the same command again with the
 * same ID (after a timeout, through any node) applies it once. */
#define REQUEST_ID_MAX 128

static int check_request_id(const struct ol__cli *c, const char *id)
{
    size_t n = id ? strlen(id) : 0;

    if (id == NULL)
        return 0;
    if (n == 0 || n > REQUEST_ID_MAX)
        return ol__cli_usage_err(c, "--request-id must be 1-%d characters",
                                 REQUEST_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || (unsigned char)id[i] > 0x7e)
            return ol__cli_usage_err(c,
                                     "--request-id must be printable ASCII "
                                     "(byte %zu is not)",
                                     i);
    return 0;
}

static void pack_request_id(struct ol__pk_map *m, const char *id)
{
    if (id != NULL)
        ol__pk_kv_str(m, "request_id", id);
}

/* Print a finished response: JSON, or one line built by `human`. */
static int done(struct ol__cli *c, struct ol__cli_resp *r,
                void (*human)(const msgpack_object *root, const char *arg),
                const char *arg)
{
    int rv = 0;

    if (c->json)
        rv = ol__cli_print_json(r->root);
    else
        human(r->root, arg);
    ol__cli_resp_free(r);
    return rv;
}

/* Send the request unless packing it failed (`bad`). */
static int call(struct ol__cli *c, struct ol__cli_req *q, int bad,
                struct ol__cli_resp *r)
{
    if (bad) {
        ol__buf_close(&q->b);
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory");
    }
    return ol__cli_req_send(c, q, r);
}

/* ---- spawn ---- */

static void spawned(const msgpack_object *m, const char *kind)
{
    char name[128], owner[32], epoch[32];

    printf("spawned '%s' (kind %s) on node %s, epoch %s\n",
           ol__mp_gets(m, "name", name, sizeof name), kind,
           ol__mp_gets(m, "owner", owner, sizeof owner),
           ol__mp_gets(m, "epoch", epoch, sizeof epoch));
}

/* --config JSON: a JSON object, into *cfg.  Returns 0 or a usage error. */
static int parse_config(struct ol__cli *c, const char *config, json_t **cfg)
{
    char err[OL_ERRMSG_SIZE];
    int rv;

    *cfg = NULL;
    if (config == NULL)
        return 0;
    rv = ol__json_parse(config, strlen(config), cfg, err);
    if (rv == OL_ETOOBIG)
        return ol__cli_usage_err(c, "--config %s", err);
    if (rv != 0)
        return ol__cli_usage_err(c, "--config is not valid JSON: %s", err);
    if (!json_is_object(*cfg)) {
        json_decref(*cfg);
        *cfg = NULL;
        return ol__cli_usage_err(c, "--config must be a JSON object "
                                    "({...})");
    }
    return 0;
}

/* --prefer / --avoid LABELS: into the config object as its "prefer" and
 * "avoid" keys, where placement reads them.  Returns 0 or a usage error. */
static int add_affinity(struct ol__cli *c, json_t **cfg, const char *key,
                        const char *labels)
{
    if (labels == NULL)
        return 0;
    if (strlen(labels) > OL_LABELS_MAX || !ol__label_list_valid(labels))
        return ol__cli_usage_err(c, "--%s must be labels k=v,k=v (letters, "
                                    "digits, _ . -), not '%s'",
                                 key, labels);
    if (*cfg == NULL && (*cfg = json_object()) == NULL)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory");
    json_object_set_new(*cfg, key, json_string(labels));
    return 0;
}

/* More than one name, or --prefix/--count: the bulk form. */
static int spawn_many(struct ol__cli *c, const char **pos, int n,
                      const char *prefix, const char *count,
                      const char *rid, json_t *cfg, int no_wait)
{
    struct ol__cli_bulk a = {
        .op = "spawn", .kind = pos[0], .config = cfg, .names = pos + 1,
        .n_names = n - 1, .prefix = prefix, .count = count, .rid = rid,
        .no_wait = no_wait,
    };
    int rv = ol__cli_bulk(c, &a);

    json_decref(cfg);
    return rv;
}

int ol__cmd_spawn(struct ol__cli *c)
{
    const char *config = NULL, *rid = NULL, *prefix = NULL, *count = NULL;
    const char *prefer = NULL, *avoid = NULL;
    const char **pos = calloc((size_t)c->argc + 1, sizeof *pos);
    int no_wait = 0;
    const struct ol__cli_opt opts[] = {
        {.name = "--config", .value = &config},
        {.name = "--prefer", .value = &prefer},
        {.name = "--avoid", .value = &avoid},
        {.name = "--request-id", .value = &rid},
        {.name = "--no-wait", .flag = &no_wait},
        {.name = "--prefix", .value = &prefix},
        {.name = "--count", .value = &count},
        {0},
    };
    struct ol__cli_resp r;
    struct ol__cli_req q;
    json_t *cfg = NULL;
    int n, rv, bad = 0;

    if (pos == NULL)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory");
    if ((rv = ol__cli_parse(c, opts, pos, 1, c->argc, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0)
        goto out;
    rv = OL_EXIT_USAGE;
    if (strlen(pos[0]) == 0 || strlen(pos[0]) > OL_KIND_MAX) {
        ol__cli_usage_err(c, "kind must be 1-%d bytes", OL_KIND_MAX);
        goto out;
    }
    if ((rv = check_request_id(c, rid)) != 0 ||
        (rv = parse_config(c, config, &cfg)) != 0)
        goto out;
    if ((rv = add_affinity(c, &cfg, "prefer", prefer)) != 0 ||
        (rv = add_affinity(c, &cfg, "avoid", avoid)) != 0) {
        json_decref(cfg);
        goto out;
    }
    if (n != 2 || prefix || count) {
        rv = spawn_many(c, pos, n, prefix, count, rid, cfg, no_wait);
        goto out;
    }
    if ((rv = ol__cli_check_name(c, pos[1])) != 0) {
        json_decref(cfg);
        goto out;
    }
    ol__cli_req_open(&q, "spawn");
    pack_request_id(&q.m, rid);
    if (no_wait)
        ol__pk_kv_bool(&q.m, "no_wait", 1);
    ol__pk_kv_str(&q.m, "kind", pos[0]);
    ol__pk_kv_str(&q.m, "name", pos[1]);
    if (cfg) {
        ol__pk_key(&q.m, "config");
        bad = ol__json_pack(cfg, &q.pk);
    }
    json_decref(cfg);
    if ((rv = call(c, &q, bad, &r)) == 0)
        rv = done(c, &r, spawned, pos[0]);
out:
    free(pos);
    return rv;
}

/* ---- stop / start ---- */

static void stopped(const msgpack_object *m, const char *name)
{
    char st[64];

    printf("agent '%s' is %s\n", name,
           ol__mp_gets(m, "status", st, sizeof st));
}

static void started(const msgpack_object *m, const char *name)
{
    char st[64], epoch[32];

    printf("agent '%s' is %s (epoch %s)\n", name,
           ol__mp_gets(m, "status", st, sizeof st),
           ol__mp_gets(m, "epoch", epoch, sizeof epoch));
}

/* Send {op, name, request_id} and print the answer. */
static int name_req(struct ol__cli *c, const char *op, const char *name,
                    const char *rid,
                    void (*human)(const msgpack_object *, const char *))
{
    struct ol__cli_resp r;
    struct ol__cli_req q;
    int rv;

    if ((rv = ol__cli_check_name(c, name)) != 0)
        return rv;
    ol__cli_req_open(&q, op);
    ol__pk_kv_str(&q.m, "name", name);
    pack_request_id(&q.m, rid);
    if ((rv = ol__cli_req_send(c, &q, &r)) != 0)
        return rv;
    return done(c, &r, human, name);
}

static int name_op(struct ol__cli *c, const char *op,
                   void (*human)(const msgpack_object *, const char *))
{
    const char *rid = NULL, *pos[1];
    const struct ol__cli_opt opts[] = {
        {.name = "--request-id", .value = &rid},
        {0},
    };
    int n, rv;

    if ((rv = ol__cli_parse(c, opts, pos, 1, 1, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0 ||
        (rv = check_request_id(c, rid)) != 0)
        return rv;
    return name_req(c, op, pos[0], rid, human);
}

/* stop/start NAME, or the bulk forms: NAME NAME..., --prefix P, --all. */
static int names_op(struct ol__cli *c, const char *op,
                    void (*human)(const msgpack_object *, const char *))
{
    const char *rid = NULL, *prefix = NULL;
    const char **pos = calloc((size_t)c->argc + 1, sizeof *pos);
    int all = 0, n, rv;
    const struct ol__cli_opt opts[] = {
        {.name = "--request-id", .value = &rid},
        {.name = "--prefix", .value = &prefix},
        {.name = "--all", .flag = &all},
        {0},
    };

    if (pos == NULL)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory");
    if ((rv = ol__cli_parse(c, opts, pos, 0, c->argc, &n)) == 0 &&
        (rv = ol__cli_need_node(c)) == 0 &&
        (rv = check_request_id(c, rid)) == 0) {
        struct ol__cli_bulk a = {.op = op, .names = pos, .n_names = n,
                                 .prefix = prefix, .all = all, .rid = rid};

        if (n == 1 && !prefix && !all)
            rv = name_req(c, op, pos[0], rid, human);
        else
            rv = ol__cli_bulk(c, &a);
    }
    free(pos);
    return rv;
}

int ol__cmd_stop(struct ol__cli *c)
{
    return names_op(c, "stop", stopped);
}

int ol__cmd_start(struct ol__cli *c)
{
    return names_op(c, "start", started);
}

static void removed(const msgpack_object *m, const char *name)
{
    (void)m;
    printf("agent '%s' is removed; its history is kept and verifies "
           "(outlast history %s)\n",
           name, name);
}

int ol__cmd_rm(struct ol__cli *c)
{
    return name_op(c, "rm", removed);
}

/* `restart`: stop (a final checkpoint), then start under a new epoch, so
 * the agent is opened again with its current config and plugin build. */
int ol__cmd_restart(struct ol__cli *c)
{
    const char *pos[1];
    const struct ol__cli_opt opts[] = {{0}};
    struct ol__cli_resp r;
    int n, rv;

    if ((rv = ol__cli_parse(c, opts, pos, 1, 1, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0 ||
        (rv = ol__cli_check_name(c, pos[0])) != 0)
        return rv;
    if ((rv = ol__cli_call_simple(c, "stop", pos[0], &r)) != 0)
        return rv;
    ol__cli_resp_free(&r);
    if ((rv = ol__cli_call_simple(c, "start", pos[0], &r)) != 0)
        return rv;
    return done(c, &r, started, pos[0]);
}

/* ---- config ---- */

static void configured(const msgpack_object *m, const char *name)
{
    (void)m;
    printf("agent '%s' has a new config; it sees it as a CONFIG event\n",
           name);
}

/* `config NAME JSON` and `send NAME JSON`: a JSON argument under `key`
 * (`object`: it must be a JSON object), with an optional request id. */
static int name_json_op(struct ol__cli *c, const char *op, const char *key,
                        int object,
                        void (*human)(const msgpack_object *, const char *))
{
    char err[OL_ERRMSG_SIZE];
    struct ol__cli_resp r;
    struct ol__cli_req q;
    const char *rid = NULL, *pos[2];
    const struct ol__cli_opt opts[] = {
        {.name = "--request-id", .value = &rid},
        {0},
    };
    json_t *v;
    int n, rv, bad;

    if ((rv = ol__cli_parse(c, opts, pos, 2, 2, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0 ||
        (rv = ol__cli_check_name(c, pos[0])) != 0 ||
        (rv = check_request_id(c, rid)) != 0)
        return rv;
    rv = ol__json_parse(pos[1], strlen(pos[1]), &v, err);
    if (rv == OL_ETOOBIG)
        return ol__cli_usage_err(c, "%s %s", key, err);
    if (rv != 0)
        return ol__cli_usage_err(c, "%s is not valid JSON: %s", key, err);
    if (object && !json_is_object(v)) {
        json_decref(v);
        return ol__cli_usage_err(c, "%s must be a JSON object ({...})", key);
    }
    ol__cli_req_open(&q, op);
    pack_request_id(&q.m, rid);
    ol__pk_kv_str(&q.m, "name", pos[0]);
    ol__pk_key(&q.m, key);
    bad = ol__json_pack(v, &q.pk);
    json_decref(v);
    if ((rv = call(c, &q, bad, &r)) != 0)
        return rv;
    return done(c, &r, human, pos[0]);
}

int ol__cmd_config(struct ol__cli *c)
{
    return name_json_op(c, "config", "config", 1, configured);
}

/* ---- send ---- */

static void sent(const msgpack_object *m, const char *name)
{
    char seq[32];

    printf("sent to '%s' (msg_seq %s)\n", name,
           ol__mp_gets(m, "msg_seq", seq, sizeof seq));
}

int ol__cmd_send(struct ol__cli *c)
{
    return name_json_op(c, "send", "message", 0, sent);
}

/* ---- upgrade ---- */

static void upgraded(const msgpack_object *m, const char *kind)
{
    char version[80], hash[80], agents[32];

    printf("plugin '%s' is now %s (%.16s...); %s agent(s) here move to it "
           "at their next checkpoint\n",
           kind, ol__mp_gets(m, "version", version, sizeof version),
           ol__mp_gets(m, "hash", hash, sizeof hash),
           ol__mp_gets(m, "agents", agents, sizeof agents));
}

int ol__cmd_upgrade(struct ol__cli *c)
{
    struct ol__cli_resp r;
    struct ol__cli_req q;
    const char *pos[2];
    char path[PATH_MAX];
    int n, rv;

    if ((rv = ol__cli_parse(c, NULL, pos, 1, 2, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0)
        return rv;
    if (!ol__name_valid(pos[0]))
        return ol__cli_usage_err(c, "'%s' is not a valid plugin kind",
                                 pos[0]);
    /* The node resolves paths from its own directory: send an absolute
     * one, and say here if the file is not there. */
    if (n == 2 && realpath(pos[1], path) == NULL)
        return ol__cli_usage_err(c, "plugin file '%s': %s", pos[1],
                                 strerror(errno));
    ol__cli_req_open(&q, "upgrade");
    ol__pk_kv_str(&q.m, "kind", pos[0]);
    if (n == 2)
        ol__pk_kv_str(&q.m, "file", path);
    if ((rv = ol__cli_req_send(c, &q, &r)) != 0)
        return rv;
    return done(c, &r, upgraded, pos[0]);
}
