/*
 * `outlast status` and `outlast cluster ...`: node-wide questions and
 * roster changes.  Cluster operations are passed through as control ops
 * (cluster.status, cluster.init, cluster.add, cluster.remove) and whatever
 * comes back is printed generically, so the CLI does not need to follow
 * every field the replication layer reports.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../../replication/cmd.h"
#include "../err.h"
#include "../keys.h"
#include "cli.h"

static void kv(const char *key, const char *value)
{
    printf("%-9s %s\n", key, value);
}

static int known_key(const msgpack_object *k)
{
    static const char *const keys[] = {"ok", "node", "agents", "commits",
                                       NULL};

    if (k->type != MSGPACK_OBJECT_STR)
        return 0;
    for (size_t i = 0; keys[i]; i++)
        if (k->via.str.size == strlen(keys[i]) &&
            memcmp(k->via.str.ptr, keys[i], k->via.str.size) == 0)
            return 1;
    return 0;
}

static void print_status(const msgpack_object *root)
{
    const msgpack_object *node = ol__mp_get(root, "node");
    const msgpack_object *ag = ol__mp_get(root, "agents");
    const msgpack_object *cm = ol__mp_get(root, "commits");
    char a[160], b[160], d[32], text[512];

    if (node) {
        snprintf(text, sizeof text, "%s (key %s)",
                 ol__mp_gets(node, "id", a, sizeof a),
                 ol__mp_gets(node, "pk", b, sizeof b));
        kv("node", text);
        kv("version", ol__mp_gets(node, "version", a, sizeof a));
        snprintf(text, sizeof text, "%s, %s",
                 ol__mp_gets(node, "mode", a, sizeof a),
                 ol__mp_gets(node, "role", b, sizeof b));
        kv("mode", text);
        kv("data dir", ol__mp_gets(node, "data_dir", a, sizeof a));
        kv("uptime", ol__cli_duration(ol__mp_getu(node, "uptime_ms"), d,
                                      sizeof d));
    }
    if (ag) {
        snprintf(text, sizeof text,
                 "%" PRIu64 " total: %" PRIu64 " running, %" PRIu64
                 " stopping, %" PRIu64 " stopped, %" PRIu64
                 " quarantined, %" PRIu64 " degraded; %" PRIu64
                 " run here",
                 ol__mp_getu(ag, "total"), ol__mp_getu(ag, "running"),
                 ol__mp_getu(ag, "stopping"), ol__mp_getu(ag, "stopped"),
                 ol__mp_getu(ag, "quarantined"), ol__mp_getu(ag, "degraded"),
                 ol__mp_getu(ag, "local"));
        kv("agents", text);
    }
    if (cm) {
        snprintf(text, sizeof text,
                 "%" PRIu64 " checkpoints in %" PRIu64 " batches, %" PRIu64
                 " refused",
                 ol__mp_getu(cm, "checkpoints"), ol__mp_getu(cm, "batches"),
                 ol__mp_getu(cm, "refused"));
        kv("commits", text);
    }
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

int ol__cmd_cluster(struct ol__cli *c)
{
    const char *labels = NULL, *pos[4], *sub;
    const struct ol__cli_opt opts[] = {
        {.name = "--labels", .takes_value = 1, .value = &labels},
        {0},
    };
    struct ol__cli_resp r;
    struct ol__buf b;
    msgpack_packer pk;
    uint8_t pkey[OL_PK_SIZE];
    uint64_t id = 0;
    int n, rv, bad = 0, want;

    if ((rv = ol__cli_parse(c, opts, pos, 1, 4, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0)
        return rv;
    sub = pos[0];
    want = strcmp(sub, "add") == 0      ? 4
           : strcmp(sub, "remove") == 0 ? 2
           : strcmp(sub, "status") == 0 || strcmp(sub, "init") == 0 ? 1
                                                                     : -1;
    if (want < 0)
        return ol__cli_usage_err(c, "unknown subcommand '%s' (status, init, "
                                    "add, remove)",
                                 sub);
    if (n != want)
        return ol__cli_usage_err(c, "'cluster %s' takes %d argument%s", sub,
                                 want - 1, want == 2 ? "" : "s");
    if (labels && want != 4)
        return ol__cli_usage_err(c, "--labels only goes with 'cluster add'");
    if (want >= 2 && (rv = parse_id(c, pos[1], &id)) != 0)
        return rv;
    if (want == 4) {
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
    }
    ol__buf_init(&b);
    if (want == 1) {
        char op[32];

        snprintf(op, sizeof op, "cluster.%s", sub);
        bad = ol__cli_req_begin(&b, &pk, op, 0);
    } else if (want == 2) {
        bad = ol__cli_req_begin(&b, &pk, "cluster.remove", 1);
        bad |= ol__cli_pack_str(&pk, "id") | msgpack_pack_uint64(&pk, id);
    } else {
        bad = ol__cli_req_begin(&b, &pk, "cluster.add", labels ? 4 : 3);
        bad |= ol__cli_pack_str(&pk, "id") | msgpack_pack_uint64(&pk, id);
        bad |= ol__cli_pack_str(&pk, "address") |
               ol__cli_pack_str(&pk, pos[2]);
        bad |= ol__cli_pack_str(&pk, "pk") | ol__cli_pack_str(&pk, pos[3]);
        if (labels)
            bad |= ol__cli_pack_str(&pk, "labels") |
                   ol__cli_pack_str(&pk, labels);
    }
    rv = bad ? ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory")
             : ol__cli_call(c, &b, &r);
    ol__buf_close(&b);
    if (rv != 0)
        return rv;
    if (c->json)
        rv = ol__cli_print_json(r.root);
    else if (r.root->via.map.size <= 1)
        printf("ok\n");
    else
        ol__cli_print_generic(r.root, 0);
    ol__cli_resp_free(&r);
    return rv;
}
