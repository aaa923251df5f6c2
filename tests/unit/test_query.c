/* Unit tests for the read-only queries over a real database built by the
 * state machine: the fields of agents/show/history, and a tampered head. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_fixture.h"
#include "base/mpr.h"
#include "state/query.h"
#include "state/store.h"

static char dir[64], dbpath[128];
static struct ol__store ro;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ol-query-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/outlast.db", dir);
    fx_build_db(dbpath);
    cr_assert_eq(ol__store_open(&ro, dbpath, OL_STORE_READ), 0, "%s",
                 ro.errmsg);
}

static void teardown(void)
{
    char cmd[128];

    ol__store_close(&ro);
    ol__key_close(&fx_key);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(query, .init = setup, .fini = teardown);

/* The result of one query, unpacked. */
struct result {
    struct ol__buf b;
    msgpack_unpacked u;
};

static void unpack(struct result *r)
{
    size_t off = 0;

    cr_assert_eq(ol__mp_check(r->b.base, r->b.len, NULL), 0,
                 "query wrote malformed msgpack");
    msgpack_unpacked_init(&r->u);
    cr_assert_eq(msgpack_unpack_next(&r->u, (const char *)r->b.base, r->b.len,
                                     &off),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, r->b.len, "trailing bytes after the value");
}

static void result_free(struct result *r)
{
    msgpack_unpacked_destroy(&r->u);
    ol__buf_close(&r->b);
}

static const msgpack_object *get(const msgpack_object *m, const char *k)
{
    cr_assert_eq(m->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *key = &m->via.map.ptr[i].key;

        if (key->type == MSGPACK_OBJECT_STR &&
            key->via.str.size == strlen(k) &&
            memcmp(key->via.str.ptr, k, key->via.str.size) == 0)
            return &m->via.map.ptr[i].val;
    }
    cr_assert_fail("no key '%s'", k);
    return NULL;
}

static int str_is(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static uint64_t u64(const msgpack_object *o)
{
    cr_assert_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return o->via.u64;
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    ol__hex(p, n, out);
}

Test(query, agents_lists_every_agent_with_its_head)
{
    struct result r;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE], hex[65];

    ol__buf_init(&r.b);
    msgpack_packer_init(&pk, &r.b, ol__buf_write);
    cr_assert_eq(ol__query_agents(ro.db, &pk, NULL, err), 0, "%s", err);
    unpack(&r);
    cr_assert_eq(r.u.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(r.u.data.via.array.size, 2);
    const msgpack_object *sink = &r.u.data.via.array.ptr[0];
    const msgpack_object *tick = &r.u.data.via.array.ptr[1];

    cr_assert(str_is(get(sink, "name"), "sink"), "ordered by name");
    cr_assert_eq(u64(get(sink, "seq")), 0);
    cr_assert(str_is(get(sink, "hash"), ""));
    cr_assert_eq(u64(get(sink, "mailbox")), 3);
    cr_assert(str_is(get(tick, "name"), "ticker"));
    cr_assert(str_is(get(tick, "kind"), "counter"));
    cr_assert(str_is(get(tick, "status"), "running"));
    cr_assert_eq(u64(get(tick, "owner")), 1);
    cr_assert_eq(u64(get(tick, "epoch")), 1);
    cr_assert_eq(u64(get(tick, "seq")), 3);
    cr_assert_eq(u64(get(tick, "time_ms")), 1700000000123);
    hex_of(fx_hash[3], 32, hex);
    cr_assert(str_is(get(tick, "hash"), hex));
    cr_assert(str_is(get(tick, "reason"), ""));
    cr_assert_eq(u64(get(tick, "mailbox")), 0);
    result_free(&r);
}

Test(query, show_gives_verified_state_config_and_timers)
{
    struct result r;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE], hex[65];
    const msgpack_object *a, *st, *cfg, *timers, *plugin;

    ol__buf_init(&r.b);
    msgpack_packer_init(&pk, &r.b, ol__buf_write);
    cr_assert_eq(ol__query_show(ro.db, "ticker", &pk, err), 0, "%s", err);
    unpack(&r);
    a = &r.u.data;
    cr_assert(str_is(get(a, "name"), "ticker"));
    cr_assert_eq(u64(get(a, "seq")), 3);
    hex_of(fx_hash[3], 32, hex);
    cr_assert(str_is(get(a, "hash"), hex));
    ol__pk_hex(fx_key.pk, hex);
    cr_assert(str_is(get(a, "signer"), hex));
    st = get(a, "state");
    cr_assert_eq(u64(get(st, "v")), 3);
    cfg = get(a, "config");
    cr_assert_eq(u64(get(cfg, "every")), 5);
    timers = get(a, "timers");
    cr_assert_eq(timers->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(timers->via.array.size, 1);
    cr_assert_eq(u64(&timers->via.array.ptr[0].via.array.ptr[0]), 7);
    cr_assert_eq(u64(&timers->via.array.ptr[0].via.array.ptr[1]),
                 1700000001000);
    plugin = get(a, "plugin");
    cr_assert(str_is(get(plugin, "kind"), "counter"));
    cr_assert(str_is(get(plugin, "version"), "1.0.0"));
    cr_assert_eq(u64(get(a, "mailbox")), 0);
    result_free(&r);
}

Test(query, show_of_an_agent_without_checkpoints)
{
    struct result r;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE];

    ol__buf_init(&r.b);
    msgpack_packer_init(&pk, &r.b, ol__buf_write);
    cr_assert_eq(ol__query_show(ro.db, "sink", &pk, err), 0, "%s", err);
    unpack(&r);
    cr_assert_eq(u64(get(&r.u.data, "seq")), 0);
    cr_assert_eq(get(&r.u.data, "state")->type, MSGPACK_OBJECT_NIL);
    cr_assert_eq(u64(get(&r.u.data, "mailbox")), 3);
    result_free(&r);
}

Test(query, show_unknown_agent_is_not_found)
{
    struct ol__buf b;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE];

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    cr_assert_eq(ol__query_show(ro.db, "nobody", &pk, err), OL_ENOTFOUND);
    cr_assert(strstr(err, "nobody") != NULL, "%s", err);
    cr_assert_eq(b.len, 0, "a failed query packed something");
    cr_assert_eq(ol__query_history(ro.db, "nobody", 0, &pk, err),
                 OL_ENOTFOUND);
    ol__buf_close(&b);
}

Test(query, show_of_a_tampered_head_reports_it)
{
    struct ol__buf b;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE];
    int rv;

    fx_flip_body_byte(dbpath, "ticker", 3, 1);
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    rv = ol__query_show(ro.db, "ticker", &pk, err);
    cr_assert(rv == OL_EBADHASH || rv == OL_EBADSIG, "got %s",
              ol_err_name(rv));
    cr_assert(strstr(err, "seq 3") != NULL, "errmsg does not name the seq: %s",
              err);
    cr_assert_eq(b.len, 0, "state of a bad head was packed");
    ol__buf_close(&b);
}

Test(query, history_newest_first_with_limit)
{
    struct result r;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE], hex[65];
    const msgpack_object *rows, *k;

    ol__buf_init(&r.b);
    msgpack_packer_init(&pk, &r.b, ol__buf_write);
    cr_assert_eq(ol__query_history(ro.db, "ticker", 2, &pk, err), 0, "%s",
                 err);
    unpack(&r);
    cr_assert(str_is(get(&r.u.data, "agent"), "ticker"));
    rows = get(&r.u.data, "checkpoints");
    cr_assert_eq(rows->via.array.size, 2);
    k = &rows->via.array.ptr[0];
    cr_assert_eq(u64(get(k, "seq")), 3);
    cr_assert_eq(u64(get(k, "epoch")), 1);
    hex_of(fx_hash[3], 32, hex);
    cr_assert(str_is(get(k, "hash"), hex));
    hex_of(fx_hash[2], 32, hex);
    cr_assert(str_is(get(k, "prev_hash"), hex));
    ol__pk_hex(fx_key.pk, hex);
    cr_assert(str_is(get(k, "signer"), hex));
    cr_assert(u64(get(k, "size")) > 0);
    cr_assert_eq(u64(get(k, "outbox")), 2);
    cr_assert_eq(u64(get(k, "acks")), 0);
    cr_assert_eq(get(k, "final")->type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert_eq(get(k, "final")->via.boolean, false);
    cr_assert_eq(u64(get(&rows->via.array.ptr[1], "seq")), 2);
    result_free(&r);

    ol__buf_init(&r.b);
    msgpack_packer_init(&pk, &r.b, ol__buf_write);
    cr_assert_eq(ol__query_history(ro.db, "ticker", 0, &pk, err), 0);
    unpack(&r);
    cr_assert_eq(get(&r.u.data, "checkpoints")->via.array.size, 3);
    result_free(&r);
}

Test(query, history_lists_an_undecodable_row_with_an_error)
{
    struct result r;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE];
    const msgpack_object *rows;
    sqlite3 *db;

    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "UPDATE checkpoints SET body = x'c1' WHERE "
                              "agent = 'ticker' AND seq = 2",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    ol__buf_init(&r.b);
    msgpack_packer_init(&pk, &r.b, ol__buf_write);
    cr_assert_eq(ol__query_history(ro.db, "ticker", 0, &pk, err), 0, "%s",
                 err);
    unpack(&r);
    rows = get(&r.u.data, "checkpoints");
    cr_assert_eq(rows->via.array.size, 3);
    cr_assert_eq(get(&rows->via.array.ptr[1], "error")->type,
                 MSGPACK_OBJECT_STR);
    result_free(&r);
}

Test(query, bad_stored_config_is_refused_not_embedded)
{
    struct ol__buf b;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE];
    sqlite3 *db;

    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "UPDATE agents SET config = x'92c3' WHERE "
                              "name = 'ticker'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    cr_assert_eq(ol__query_show(ro.db, "ticker", &pk, err), OL_EMALFORMED);
    cr_assert(strstr(err, "config") != NULL, "%s", err);
    ol__buf_close(&b);
}

/* How many agents a filter keeps, and the first one's name. */
static uint32_t listed(const struct ol__agent_filter *f, char *first,
                       size_t cap)
{
    struct result r;
    msgpack_packer pk;
    char err[OL_ERRMSG_SIZE];
    uint32_t n;

    ol__buf_init(&r.b);
    msgpack_packer_init(&pk, &r.b, ol__buf_write);
    cr_assert_eq(ol__query_agents(ro.db, &pk, f, err), 0, "%s", err);
    unpack(&r);
    cr_assert_eq(r.u.data.type, MSGPACK_OBJECT_ARRAY);
    n = r.u.data.via.array.size;
    first[0] = '\0';
    if (n) {
        const msgpack_object *o = get(&r.u.data.via.array.ptr[0], "name");

        snprintf(first, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    }
    result_free(&r);
    return n;
}

Test(query, agents_filters_and_pages)
{
    struct ol__agent_filter f;
    char first[80];
    sqlite3 *db;

    memset(&f, 0, sizeof f);
    f.prefix = "ti";
    cr_expect_eq(listed(&f, first, sizeof first), 1);
    cr_expect_str_eq(first, "ticker");
    memset(&f, 0, sizeof f);
    f.after = "sink";
    cr_expect_eq(listed(&f, first, sizeof first), 1);
    cr_expect_str_eq(first, "ticker");
    memset(&f, 0, sizeof f);
    f.limit = 1;
    cr_expect_eq(listed(&f, first, sizeof first), 1);
    cr_expect_str_eq(first, "sink");
    memset(&f, 0, sizeof f);
    f.kind = "other";
    cr_expect_eq(listed(&f, first, sizeof first), 0);
    f.kind = "counter";
    f.owner = 1;
    f.status = OL_AGENT_RUNNING;
    cr_expect_eq(listed(&f, first, sizeof first), 2);
    f.owner = 2;
    cr_expect_eq(listed(&f, first, sizeof first), 0);

    /* A tombstone is listed only when asked for. */
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "UPDATE agents SET status = 5 WHERE "
                                  "name = 'sink'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    /* A read-only store reads the file as it was: open it again. */
    ol__store_close(&ro);
    cr_assert_eq(ol__store_open(&ro, dbpath, OL_STORE_READ), 0, "%s",
                 ro.errmsg);
    memset(&f, 0, sizeof f);
    cr_expect_eq(listed(&f, first, sizeof first), 1);
    cr_expect_str_eq(first, "ticker");
    f.all = 1;
    cr_expect_eq(listed(&f, first, sizeof first), 2);
    f.all = 0;
    f.status = OL_AGENT_REMOVED;
    cr_expect_eq(listed(&f, first, sizeof first), 1);
    cr_expect_str_eq(first, "sink");
}
