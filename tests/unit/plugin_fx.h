/*
 * The plugin tests' fixture, shared by test_plugins*.c: msgpack building
 * and reading helpers, and an instance of a built plugin loaded into the
 * SDK's fake host (outlast/agent_test.h), stepped by hand the way outlastd
 * steps it.  Header-only (static inline) so each test binary takes what it
 * uses.
 */
#ifndef OL_TEST_PLUGIN_FX_H
#define OL_TEST_PLUGIN_FX_H

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <outlast/agent.h>
#include <outlast/agent_test.h>
#include <outlast/agent_util.h>

#include "ol_config.h"
#include "runtime/host.h"
#include "runtime/node.h"

/* A byte-string test vector: its bytes and its length. */
#define B(lit) {lit, sizeof(lit) - 1}

/* A msgpack builder: mb_begin(), then pack with mb.pk, then use mb.sb. */
struct mb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static inline void mb_begin(struct mb *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static inline void mb_str(struct mb *m, const char *s)
{
    msgpack_pack_str_with_body(&m->pk, s, strlen(s));
}

static inline void mb_end(struct mb *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

/* Unpacks bytes that must be exactly one object. */
static inline void unpack(msgpack_unpacked *u, const void *p, size_t len)
{
    size_t off = 0;

    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, p, len, &off),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, len, "trailing bytes after the object");
}

static inline int64_t get_i64(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = ol_mp_get(m, key);

    cr_assert_not_null(v, "no key '%s'", key);
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)v->via.u64;
    cr_assert_eq(v->type, MSGPACK_OBJECT_NEGATIVE_INTEGER,
                 "'%s' is not an integer", key);
    return v->via.i64;
}

static inline uint64_t get_u64(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = ol_mp_get(m, key);

    cr_assert_not_null(v, "no key '%s'", key);
    cr_assert_eq(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER,
                 "'%s' is not a uint", key);
    return v->via.u64;
}

static inline double get_f64(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = ol_mp_get(m, key);

    cr_assert_not_null(v, "no key '%s'", key);
    cr_assert_eq(v->type, MSGPACK_OBJECT_FLOAT64, "'%s' is not a float64",
                 key);
    return v->via.f64;
}

static inline bool str_is(const msgpack_object *o, const char *s)
{
    return o != NULL && o->type == MSGPACK_OBJECT_STR &&
           o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* ---- plugin instances ------------------------------------------------- */

static inline void plugin_path(char *path, size_t cap, const char *kind)
{
    const char *root = getenv("OL_BUILD_ROOT");

    cr_assert_not_null(root, "OL_BUILD_ROOT is not set");
    snprintf(path, cap, "%s/agents/%s.so", root, kind);
}

static inline const struct ol_agent_vtable *load(const char *kind, void **dl)
{
    int (*entry)(const struct ol_host *, const struct ol_agent_vtable **);
    const struct ol_agent_vtable *vt = NULL;
    char path[4096];
    void *sym;

    plugin_path(path, sizeof(path), kind);
    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(*dl, "dlopen %s: %s", path, dlerror());
    sym = dlsym(*dl, OL_AGENT_ENTRY_SYMBOL);
    cr_assert_not_null(sym, "%s: no %s", path, OL_AGENT_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof(entry));
    cr_assert_eq(entry(ol_test_host(), &vt), 0);
    cr_assert_not_null(vt);
    return vt;
}

struct inst {
    struct ol_test t;
};

/* Opens an instance with config bytes (NULL: an empty map). */
static inline int inst_open(struct inst *in, const char *kind,
                            const char *name, const void *cfg,
                            size_t cfg_len)
{
    char path[4096];

    plugin_path(path, sizeof(path), kind);
    cr_assert_eq(ol_test_load(&in->t, path), 0, "%s", in->t.errmsg);
    in->t.now_ms = 1700000000000;
    return ol_test_open(&in->t, name, cfg, cfg_len);
}

static inline void inst_close(struct inst *in)
{
    ol_test_close(&in->t);
}

/* Saves into in->t.state; the fake host checks it. */
static inline void inst_save(struct inst *in)
{
    cr_assert_eq(ol_test_save(&in->t), 0, "%s", in->t.errmsg);
}

/* 1 when p..p+len is exactly one msgpack object. */
static inline int one_object(const void *p, size_t len)
{
    msgpack_unpacked u;

    if (ol_mp_unpack(&u, p, len) != 0)
        return 0;
    msgpack_unpacked_destroy(&u);
    return 1;
}

/* One step: handle the event, then save, as the host does. */
static inline int inst_step(struct inst *in, struct ol_event *ev)
{
    int rv = ol_test_event(&in->t, ev);

    cr_assert(rv == 0 || strcmp(in->t.errmsg, "handle() failed") == 0,
              "%s", in->t.errmsg);
    return rv;
}

static inline void start(struct inst *in)
{
    cr_assert_eq(ol_test_start(&in->t), 0, "%s", in->t.errmsg);
}

static inline void resume(struct inst *in)
{
    struct ol_event ev = {.type = OL_EVENT_RESUME, .node = "n2",
                          .prev_node = "n1", .downtime_ms = 1500, .seq = 7,
                          .epoch = 2};

    cr_assert_eq(inst_step(in, &ev), 0);
}

static inline const struct ol_test_timer *timer_find(struct inst *in,
                                                     uint64_t id)
{
    return ol_test_timer_find(&in->t, id);
}

/* Advances the clock to timer `id` and fires it. */
static inline void fire(struct inst *in, uint64_t id)
{
    const struct ol_test_timer *t = timer_find(in, id);

    cr_assert_not_null(t, "timer %" PRIu64 " is not armed", id);
    if (t->due_ms > in->t.now_ms)
        in->t.now_ms = t->due_ms;
    cr_assert_eq(ol_test_timer(&in->t, id), 0, "%s", in->t.errmsg);
}

static inline int deliver(struct inst *in, const char *from,
                          const void *msg, size_t len)
{
    return ol_test_message(&in->t, from, msg, len);
}

/* Restores `state` into a fresh instance. */
static inline int inst_reopen(struct inst *in, const char *kind,
                              const char *name, const void *cfg,
                              size_t cfg_len, const void *state,
                              size_t state_len)
{
    int rv = inst_open(in, kind, name, cfg, cfg_len);

    cr_assert_eq(rv, 0);
    return ol_test_restore(&in->t, state, state_len);
}

static inline void state_of(struct inst *in, msgpack_unpacked *u)
{
    unpack(u, in->t.state, in->t.state_len);
    cr_assert_eq(u->data.type, MSGPACK_OBJECT_MAP, "state is not a map");
}

/* Every strict prefix of a good state must be refused, not crash. */
static inline void expect_prefixes_refused(const char *kind,
                                           const void *cfg, size_t cfg_len,
                                           const struct inst *good)
{
    for (size_t n = 0; n < good->t.state_len; n++) {
        struct inst in;
        int rv = inst_reopen(&in, kind, "t", cfg, cfg_len, good->t.state,
                             n);
        cr_expect_eq(rv, OL_AGENT_EMALFORMED,
                     "%s accepted a %zu-byte prefix of its state", kind, n);
        inst_close(&in);
    }
}

/* The pricewatch config the pricewatch and ledger tests run with. */
static inline void pw_cfg(struct mb *m, uint64_t seed, const char *ledger)
{
    mb_begin(m);
    msgpack_pack_map(&m->pk, 3);
    mb_str(m, "seed");
    msgpack_pack_uint64(&m->pk, seed);
    mb_str(m, "ledger");
    mb_str(m, ledger);
    mb_str(m, "interval_ms");
    msgpack_pack_uint64(&m->pk, 200);
}

static inline void run_ticks(struct inst *in, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        fire(in, 1);
}

#endif
