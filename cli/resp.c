/*
 * Talking to a node for the CLI: one request per call over the control
 * socket, responses checked and unpacked, and every failure turned into a
 * message and an exit code.  Offline commands build the same response
 * shape from a database file, so one printer serves both.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ctl.h"
#include "base/err.h"
#include "base/mpr.h"
#include "cli.h"

void ol__cli_resp_free(struct ol__cli_resp *r)
{
    if (r == NULL || r->raw == NULL)
        return;
    msgpack_unpacked_destroy(&r->u);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

int ol__cli_resp_take(struct ol__cli_resp *r, void *raw, size_t len,
                      char *errmsg)
{
    size_t off = 0, bad = 0;

    memset(r, 0, sizeof *r);
    if (ol__mp_check(raw, len, &bad) != 0) {
        ol__errf(errmsg, "response is not msgpack (bad byte at offset %zu)",
                 bad);
        free(raw);
        return OL_EMALFORMED;
    }
    msgpack_unpacked_init(&r->u);
    if (msgpack_unpack_next(&r->u, raw, len, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        r->u.data.type != MSGPACK_OBJECT_MAP) {
        ol__errf(errmsg, "response is not a map (or nests too deep)");
        msgpack_unpacked_destroy(&r->u);
        free(raw);
        return OL_EMALFORMED;
    }
    r->raw = raw;
    r->len = len;
    r->root = &r->u.data;
    return 0;
}

int ol__cli_resp_wrap(struct ol__cli_resp *r, const char *key, const void *p,
                      size_t len, char *errmsg)
{
    struct ol__buf b;
    msgpack_packer pk;
    struct ol__mpr rd;
    uint32_t n = 0;
    int bad = 0;
    size_t out_len;
    void *out;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    if (key == NULL) {
        ol__mpr_init(&rd, p, len);
        if (ol__mpr_map(&rd, &n) != 0 || n == UINT32_MAX) {
            ol__errf(errmsg, "query result is not a map");
            return OL_EMALFORMED;
        }
        bad |= msgpack_pack_map(&pk, n + 1);
        bad |= msgpack_pack_str_with_body(&pk, "ok", 2);
        bad |= msgpack_pack_true(&pk);
        bad |= ol__buf_append(&b, (const uint8_t *)p + rd.off, len - rd.off);
    } else {
        bad |= msgpack_pack_map(&pk, 2);
        bad |= msgpack_pack_str_with_body(&pk, "ok", 2);
        bad |= msgpack_pack_true(&pk);
        bad |= msgpack_pack_str_with_body(&pk, key, strlen(key));
        bad |= ol__buf_append(&b, p, len);
    }
    if (bad) {
        ol__buf_close(&b);
        ol__errf(errmsg, "out of memory");
        return OL_ENOMEM;
    }
    out = ol__buf_steal(&b, &out_len);
    return ol__cli_resp_take(r, out, out_len, errmsg);
}

void ol__cli_req_open(struct ol__cli_req *q, const char *op)
{
    ol__buf_init(&q->b);
    msgpack_packer_init(&q->pk, &q->b, ol__buf_write);
    ol__pk_map_begin(&q->m, &q->pk, &q->b);
    ol__pk_kv_str(&q->m, "op", op);
}

int ol__cli_req_send(struct ol__cli *c, struct ol__cli_req *q,
                     struct ol__cli_resp *r)
{
    int rv;

    rv = ol__pk_map_end(&q->m) != 0
             ? ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory")
             : ol__cli_call(c, &q->b, r);
    ol__buf_close(&q->b);
    return rv;
}

int ol__cli_call_simple(struct ol__cli *c, const char *op, const char *name,
                        struct ol__cli_resp *r)
{
    struct ol__cli_req q;

    memset(r, 0, sizeof *r);
    ol__cli_req_open(&q, op);
    if (name)
        ol__pk_kv_str(&q.m, "name", name);
    return ol__cli_req_send(c, &q, r);
}

int ol__cli_need_node(const struct ol__cli *c)
{
    if (!c->db_set)
        return 0;
    return ol__cli_usage_err(c,
                             "needs a running node; --db works only with "
                             "agents, show, history, verify and export");
}

static int unreachable(const struct ol__cli *c, int rv, const char *err)
{
    if (rv == OL_EBUSY)
        return ol__cli_fail(c, OL_EXIT_UNREACHABLE, ol_err_name(rv),
                            "the node at '%s' is running but busy and did "
                            "not take the request within %d ms (%s); try "
                            "again",
                            c->socket, c->timeout_ms, err);
    if (rv == OL_ECANCELED)
        return ol__cli_fail(c, OL_EXIT_UNREACHABLE, ol_err_name(rv),
                            "the node at '%s' closed the connection before "
                            "it replied (it may be stopping; the request may "
                            "still take effect)",
                            c->socket);
    if (rv == OL_ETIMEOUT)
        return ol__cli_fail(c, OL_EXIT_UNREACHABLE, ol_err_name(rv),
                            "the node did not answer on '%s' within %d ms "
                            "(the request may still take effect)",
                            c->socket, c->timeout_ms);
    if (c->socket_set)
        return ol__cli_fail(c, OL_EXIT_UNREACHABLE, ol_err_name(rv),
                            "no node is running at control socket '%s' (%s)",
                            c->socket, err);
    return ol__cli_fail(c, OL_EXIT_UNREACHABLE, ol_err_name(rv),
                        "no node is running with data dir '%s' (%s); start "
                        "outlastd or pass --data-dir / --db",
                        c->data_dir, err);
}

int ol__cli_call(struct ol__cli *c, const struct ol__buf *req,
                 struct ol__cli_resp *r)
{
    char err[OL_ERRMSG_SIZE], emsg[1024], code[64];
    void *raw = NULL;
    size_t len = 0;
    int rv;

    memset(r, 0, sizeof *r);
    rv = ol__ctl_call(c->socket, req->base, req->len, &raw, &len,
                      c->timeout_ms, err);
    if (rv == OL_ENOTFOUND || rv == OL_ECONN || rv == OL_ETIMEOUT ||
        rv == OL_EBUSY || rv == OL_ECANCELED)
        return unreachable(c, rv, err);
    if (rv != 0)
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv), "%s: %s",
                            c->cmd, err);
    rv = ol__cli_resp_take(r, raw, len, err);
    if (rv != 0)
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv),
                            "%s: the node's %s", c->cmd, err);
    if (ol__mp_getb(r->root, "ok"))
        return 0;
    ol__mp_gets(r->root, "error", emsg, sizeof emsg);
    ol__mp_gets(r->root, "code", code, sizeof code);
    if (c->json) {
        rv = ol__cli_print_json(r->root);
        (void)rv;
    }
    fprintf(stderr, "outlast: %s: %s (%s)\n", c->cmd,
            strcmp(emsg, "-") ? emsg : "the node reported an error", code);
    ol__cli_resp_free(r);
    return OL_EXIT_FAIL;
}

int ol__cli_open_db(struct ol__cli *c, struct ol__store *st)
{
    int rv = ol__store_open(st, c->db, OL_STORE_READ);

    if (rv == 0)
        return 0;
    if (rv == OL_ENOTFOUND && !c->db_set)
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv),
                            "%s: no database in data dir '%s' (%s); pass "
                            "--data-dir or --db",
                            c->cmd, c->data_dir, st->errmsg);
    return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv), "%s: %s", c->cmd,
                        st->errmsg);
}

/* ---- lookups ---- */

const msgpack_object *ol__mp_get(const msgpack_object *map, const char *key)
{
    size_t n = strlen(key);

    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;

        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

const char *ol__mp_text(const msgpack_object *o, char *out, size_t cap)
{
    char *json;

    if (o == NULL || o->type == MSGPACK_OBJECT_NIL) {
        snprintf(out, cap, "-");
        return out;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        snprintf(out, cap, "%s", o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(out, cap, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(out, cap, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        snprintf(out, cap, "%g", o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        snprintf(out, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
        /* Control characters from the node are not echoed raw. */
        for (char *p = out; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
        break;
    default:
        json = ol__cli_compact_json(o);
        snprintf(out, cap, "%s", json ? json : "?");
        free(json);
    }
    return out;
}

const char *ol__mp_gets(const msgpack_object *map, const char *key,
                        char *out, size_t cap)
{
    return ol__mp_text(ol__mp_get(map, key), out, cap);
}

uint64_t ol__mp_getu(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = ol__mp_get(map, key);

    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

int64_t ol__mp_geti(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = ol__mp_get(map, key);

    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        o->via.u64 <= INT64_MAX)
        return (int64_t)o->via.u64;
    return 0;
}

int ol__mp_getb(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = ol__mp_get(map, key);

    return o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}
