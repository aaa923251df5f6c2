/*
 * Tests for the effects example: the keeper agent (examples/keeper,
 * linked in) driven by the SDK's fake host, placing its orders with a
 * real outlast-exchange process on loopback ($OL_BUILD_ROOT/examples/
 * exchange), and the exchange itself: bad input, dedup, fencing and a
 * restart on the same ledger.  Also the fake host's effect service.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_test.h>
#include <outlast/agent_util.h>

#include "tests/support/exchange.h"

/* ---- an outlast-exchange process ---------------------------------------- */

static struct xch x;

static void setup(void)
{
    cr_assert_eq(xch_init(&x), 0, "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    xch_cleanup(&x);
}

TestSuite(keeper, .init = setup, .fini = teardown);

static void start_exchange(const char *a1, const char *a2)
{
    char err[PATH_MAX + 128];

    cr_assert_eq(xch_start(&x, a1, a2, err, sizeof(err)), 0, "%s", err);
}

/* ---- HTTP and files -------------------------------------------------- */

struct body {
    char data[8192];
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = size * n, room = sizeof(b->data) - 1 - b->len;

    memcpy(b->data + b->len, p, len < room ? len : room);
    b->len += len < room ? len : room;
    b->data[b->len] = '\0';
    return len;
}

/* A request to the exchange; returns the status, the body in *out. */
static long http(const char *path, const char *post, json_t **out)
{
    struct body b = {.len = 0};
    struct curl_slist *h = NULL;
    char url[256];
    long code = 0;
    CURL *c = curl_easy_init();

    cr_assert_not_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", x.port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (post != NULL) {
        h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    }
    cr_assert_eq(curl_easy_perform(c), CURLE_OK, "request %s", path);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    *out = json_loads(b.data, 0, NULL);
    cr_assert_not_null(*out, "%s: the answer is not JSON: '%s'", path, b.data);
    return code;
}

/* POSTs an order and returns the status; *out gets the answer. */
static long post(const char *key, const char *agent, long epoch,
                 json_t **out)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"key\":\"%s\",\"agent\":\"%s\",\"epoch\":%ld,"
             "\"side\":\"buy\",\"qty\":3,\"price\":10150}", key, agent, epoch);
    return http("/orders", body, out);
}

static const char *str_of(const json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));
    return s != NULL ? s : "";
}

static long long int_of(const json_t *j, const char *k)
{
    return json_integer_value(json_object_get(j, k));
}

/* ---- the keeper under the fake host -------------------------------------- */

/* {exchange, interval_ms: 10, seed, qty: 2, max_orders} */
static void keeper_open(struct ol_test *t, uint64_t seed, uint64_t max)
{
    char url[64];
    msgpack_sbuffer sb;
    msgpack_packer pk;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", x.port);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    ol_mp_pack_str(&pk, "exchange");
    ol_mp_pack_str(&pk, url);
    ol_mp_pack_str(&pk, "interval_ms");
    msgpack_pack_uint64(&pk, 10);
    ol_mp_pack_str(&pk, "seed");
    msgpack_pack_uint64(&pk, seed);
    ol_mp_pack_str(&pk, "qty");
    msgpack_pack_uint64(&pk, 2);
    ol_mp_pack_str(&pk, "max_orders");
    msgpack_pack_uint64(&pk, max);
    cr_assert_eq(ol_test_init(t, ol_agent_entry), 0, "%s", t->errmsg);
    cr_assert_eq(ol_test_open(t, "keeper-1", sb.data, sb.size), 0, "%s",
                 t->errmsg);
    msgpack_sbuffer_destroy(&sb);
    cr_assert_eq(ol_test_start(t), 0, "%s", t->errmsg);
}

/* Ticks (at most 20000 times) until n effects were declared. */
static void tick_until(struct ol_test *t, size_t n)
{
    for (int i = 0; i < 20000 && t->neffects < n; i++)
        cr_assert_eq(ol_test_timer(t, 1), 0, "%s", t->errmsg);
    cr_assert_geq(t->neffects, n, "only %zu orders in 20000 ticks",
                  t->neffects);
}

static int64_t state_num(const struct ol_test *t, const char *key)
{
    msgpack_unpacked u;
    int64_t v = -1;

    cr_assert_eq(ol_test_state(t, &u), 0);
    cr_assert(ol_mp_int(ol_mp_get(&u.data, key), &v), "no '%s' in state", key);
    msgpack_unpacked_destroy(&u);
    return v;
}

/* The uint `key` of effect i's result. */
static int64_t result_num(const struct ol_test *t, size_t i, const char *key)
{
    msgpack_unpacked u;
    int64_t v = -1;

    cr_assert_eq(ol_mp_unpack(&u, t->effects[i].result,
                              t->effects[i].result_len), 0);
    cr_assert(ol_mp_int(ol_mp_get(&u.data, key), &v), "no '%s' in result", key);
    msgpack_unpacked_destroy(&u);
    return v;
}

static int result_dup(const struct ol_test *t, size_t i)
{
    msgpack_unpacked u;
    bool dup = false;

    cr_assert_eq(ol_mp_unpack(&u, t->effects[i].result,
                              t->effects[i].result_len), 0);
    cr_assert(ol_mp_bool(ol_mp_get(&u.data, "duplicate"), &dup));
    msgpack_unpacked_destroy(&u);
    return dup;
}

/* Runs perform() (reconcile() with `rec`) for effect i and checks what it
 * said; perform_ok() also delivers the outcome as ol_test_perform() does. */
static void call_ok(struct ol_test *t, size_t i, int rec, int want)
{
    int st = -1;

    cr_assert_eq(ol_test_effect_call(t, i, rec, &st), 0, "%s", t->errmsg);
    cr_assert_eq(st, want, "effect %zu: status %d, not %d", i, st, want);
}

static void perform_ok(struct ol_test *t, size_t i, int rec, int want)
{
    int st = -1;

    cr_assert_eq(ol_test_perform(t, i, rec, &st), 0, "%s", t->errmsg);
    cr_assert_eq(st, want, "effect %zu: status %d, not %d", i, st, want);
}

Test(keeper, declares_orders_at_crossings)
{
    struct ol_test t;

    x.port = 1; /* nothing is performed */
    keeper_open(&t, 7, 4);
    tick_until(&t, 4);
    for (int i = 0; i < 2000; i++)
        cr_assert_eq(ol_test_timer(&t, 1), 0);
    cr_assert_eq(t.neffects, 4, "max_orders 4, %zu declared", t.neffects);
    cr_assert_eq(state_num(&t, "declared"), 4);
    for (size_t i = 0; i < t.neffects; i++) {
        msgpack_unpacked u;
        int64_t price = 0;
        bool sell;
        cr_assert_eq(t.effects[i].id, i + 1);
        cr_assert_str_eq(t.effects[i].kind, "order");
        cr_assert_eq(strlen(t.effects[i].key), OL_AGENT_KEY_LEN);
        cr_assert_eq(ol_mp_unpack(&u, t.effects[i].payload, t.effects[i].len),
                     0);
        sell = ol_mp_str_eq(ol_mp_get(&u.data, "side"), "sell");
        cr_assert(sell || ol_mp_str_eq(ol_mp_get(&u.data, "side"), "buy"));
        cr_assert(ol_mp_int(ol_mp_get(&u.data, "price"), &price));
        /* A sell falls through low (9900), a buy rises through high. */
        cr_assert(sell ? price < 9900 : price > 10100, "price %" PRId64, price);
        cr_assert(ol_mp_str_eq(ol_mp_get(&u.data, "url"),
                               "http://127.0.0.1:1"));
        msgpack_unpacked_destroy(&u);
    }
    ol_test_close(&t);
}

Test(keeper, perform_executes_once_by_key)
{
    struct ol_test t;
    json_t *j;

    start_exchange(NULL, NULL);
    keeper_open(&t, 7, 0);
    tick_until(&t, 1);
    perform_ok(&t, 0, 0, OL_EFFECT_DONE);
    cr_assert_eq(result_num(&t, 0, "id"), 1);
    cr_assert_not(result_dup(&t, 0));
    cr_assert_eq(state_num(&t, "done"), 1);
    cr_assert_eq(state_num(&t, "last_id"), 1);
    cr_assert_eq(llabs(state_num(&t, "position")), 2);

    /* The same key again: the exchange answers with the stored order. */
    call_ok(&t, 0, 0, OL_EFFECT_DONE);
    cr_assert_eq(result_num(&t, 0, "id"), 1);
    cr_assert(result_dup(&t, 0));
    cr_assert_eq(xch_lines(x.ledger), 1);
    cr_assert(xch_file_has(x.ledger, t.effects[0].key));
    cr_assert_eq(http("/ledger", NULL, &j), 200);
    cr_assert_eq(json_array_size(j), 1);
    cr_assert_str_eq(str_of(json_array_get(j, 0), "agent"), "keeper-1");
    json_decref(j);
    ol_test_close(&t);
}

Test(keeper, stale_epoch_fails_and_is_logged)
{
    struct ol_test t;
    char want[128];

    start_exchange(NULL, NULL);
    keeper_open(&t, 7, 0);
    tick_until(&t, 2);
    t.epoch = 5;
    perform_ok(&t, 0, 0, OL_EFFECT_DONE);
    t.epoch = 3; /* a zombie: an older owner */
    perform_ok(&t, 1, 0, OL_EFFECT_FAILED);
    cr_assert_eq(t.effects[1].status, OL_EFFECT_FAILED);
    cr_assert_eq(state_num(&t, "failed"), 1);
    cr_assert_eq(state_num(&t, "done"), 1);
    cr_assert(ol_test_logged(&t, "stale epoch"), "the failure is not logged");
    cr_assert_eq(xch_lines(x.ledger), 1);
    snprintf(want, sizeof(want), "\"key\":\"%s\"", t.effects[1].key);
    cr_assert_eq(xch_lines(x.rejects), 1);
    cr_assert(xch_file_has(x.rejects, want));
    cr_assert(xch_file_has(x.rejects, "\"epoch\":3,\"seen\":5"));
    ol_test_close(&t);
}

Test(keeper, reconcile_finds_done_and_missing_keys)
{
    struct ol_test t;

    start_exchange(NULL, NULL);
    keeper_open(&t, 7, 0);
    tick_until(&t, 2);
    call_ok(&t, 0, 0, OL_EFFECT_DONE);
    /* A new owner asks about both: one was executed, one never was. */
    perform_ok(&t, 0, 1, OL_EFFECT_DONE);
    cr_assert_eq(result_num(&t, 0, "id"), 1);
    cr_assert_eq(state_num(&t, "last_id"), 1);
    perform_ok(&t, 1, 1, OL_EFFECT_UNKNOWN);
    cr_assert_eq(t.effects[1].status, -1, "UNKNOWN delivers no event");
    cr_assert_eq(t.effects[1].result_len, 0);
    cr_assert_eq(state_num(&t, "done"), 1);
    cr_assert_eq(xch_lines(x.ledger), 1);
    ol_test_close(&t);
}

Test(keeper, unavailable_or_unreachable_exchange_is_retry)
{
    struct ol_test t;

    start_exchange("--fail-every", "1");
    keeper_open(&t, 7, 0);
    tick_until(&t, 1);
    perform_ok(&t, 0, 0, OL_EFFECT_RETRY);
    cr_assert_eq(t.effects[0].status, -1, "RETRY delivers no event");
    cr_assert_eq(state_num(&t, "done") + state_num(&t, "failed"), 0);
    cr_assert_eq(xch_lines(x.ledger), 0);

    /* Nobody listens on the port any more. */
    xch_stop(&x, SIGKILL);
    perform_ok(&t, 0, 0, OL_EFFECT_RETRY);
    perform_ok(&t, 0, 1, OL_EFFECT_RETRY);
    ol_test_close(&t);
}

Test(keeper, state_survives_save_and_restore)
{
    struct ol_test a, b;
    const char *keys[] = {"tick", "price", "rng", "zone", "declared", "done",
                          "failed", "last_id", "position"};

    start_exchange(NULL, NULL);
    keeper_open(&a, 11, 0);
    tick_until(&a, 1);
    perform_ok(&a, 0, 0, OL_EFFECT_DONE);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(ol_test_timer(&a, 1), 0);
    cr_assert_eq(ol_test_reopen(&a), 0, "%s", a.errmsg);
    cr_assert_eq(state_num(&a, "done"), 1);
    cr_assert_eq(state_num(&a, "last_id"), 1);
    cr_assert_neq(state_num(&a, "position"), 0);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(ol_test_timer(&a, 1), 0);

    /* The same seed without the restart: the same market and orders. */
    keeper_open(&b, 11, 0);
    tick_until(&b, 1);
    perform_ok(&b, 0, 0, OL_EFFECT_DONE);
    for (int i = 0; i < 600; i++)
        cr_assert_eq(ol_test_timer(&b, 1), 0);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cr_assert_eq(state_num(&a, keys[i]), state_num(&b, keys[i]),
                     "'%s' differs after a restart", keys[i]);
    cr_assert_eq(a.neffects, b.neffects);
    ol_test_close(&a);
    ol_test_close(&b);
}

Test(keeper, bad_config_is_refused)
{
    static const char bad_url[] = "\x81\xa8" "exchange\xa6" "ftp://";
    static const char bad_band[] = "\x82\xa3" "low\xcd\x27\x10\xa4" "high\x01";
    struct ol_test t;

    cr_assert_eq(ol_test_init(&t, ol_agent_entry), 0);
    cr_assert_eq(ol_test_open(&t, "k", bad_url, sizeof(bad_url) - 1),
                 OL_AGENT_EINVAL);
    cr_assert(strstr(t.error, "'exchange'") != NULL, "error: %s", t.error);
    cr_assert_eq(ol_test_open(&t, "k", bad_band, sizeof(bad_band) - 1),
                 OL_AGENT_EINVAL);
    cr_assert(strstr(t.error, "'low'") != NULL, "error: %s", t.error);
    ol_test_close(&t);
}

Test(keeper, the_built_module_loads)
{
    const char *root = getenv("OL_BUILD_ROOT");
    char so[PATH_MAX];
    struct ol_test t;

    cr_assert_not_null(root, "OL_BUILD_ROOT is not set (run with meson test)");
    snprintf(so, sizeof(so), "%s/examples/keeper/keeper.so", root);
    cr_assert_eq(ol_test_load(&t, so), 0, "%s", t.errmsg);
    cr_assert_str_eq(t.vt->kind, "keeper");
    cr_assert(OL_VTABLE_HAS(t.vt, reconcile));
    cr_assert(t.vt->perform != NULL && t.vt->reconcile != NULL);
    ol_test_close(&t);
}

/* ---- the fake host's effect service -------------------------------------- */

static struct ol_agent_vtable no_perform;

static int no_perform_entry(const struct ol_host *h,
                            const struct ol_agent_vtable **out)
{
    const struct ol_agent_vtable *vt;
    int rv = ol_agent_entry(h, &vt);

    no_perform = *vt;
    no_perform.perform = NULL;
    *out = &no_perform;
    return rv;
}

Test(keeper, fake_host_checks_effects)
{
    const struct ol_host *h = ol_test_host();
    static char big[OL_AGENT_EFFECT_MAX + 1];
    struct ol_test t;
    struct ol_agent *a;
    int rv;

    x.port = 1;
    keeper_open(&t, 7, 0);
    a = (struct ol_agent *)(void *)&t;
    cr_assert_eq(h->effect(a, 1, "order", "\x80", 1), OL_AGENT_ESTATE);
    t.in_handle = 1; /* as inside handle() */
    cr_assert_eq(h->effect(a, 1, "Order", "\x80", 1), OL_AGENT_EINVAL);
    cr_assert_eq(h->effect(a, 1, "", "\x80", 1), OL_AGENT_EINVAL);
    cr_assert_eq(h->effect(a, 1, NULL, "\x80", 1), OL_AGENT_EINVAL);
    cr_assert_eq(h->effect(a, 1, "a-very-long-kind-name-of-33-bytes", "\x80",
                           1), OL_AGENT_EINVAL);
    cr_assert_eq(h->effect(a, 1, "order", "\x81", 1), OL_AGENT_EMALFORMED);
    cr_assert_eq(h->effect(a, 1, "order", "\x80\x80", 2), OL_AGENT_EMALFORMED);
    cr_assert_eq(h->effect(a, 1, "order", NULL, 0), OL_AGENT_EMALFORMED);
    big[0] = (char)0xc0; /* nil, then too many bytes */
    cr_assert_eq(h->effect(a, 1, "order", big, sizeof(big)), OL_AGENT_ETOOBIG);
    for (int i = 0; i < OL_AGENT_EFFECTS_MAX; i++)
        cr_assert_eq(h->effect(a, (uint64_t)i, "order.v1", "\xc0", 1), 0);
    rv = h->effect(a, 999, "order", "\xc0", 1);
    cr_assert_eq(rv, OL_AGENT_ETOOBIG, "%d effects waiting",
                 OL_AGENT_EFFECTS_MAX + 1);
    cr_assert_eq(t.neffects, OL_AGENT_EFFECTS_MAX);
    cr_assert_str_neq(t.effects[0].key, t.effects[1].key);
    t.in_handle = 0;
    /* An outcome frees a slot; keys depend only on name and index. */
    cr_assert_eq(ol_test_effect_event(&t, 0, OL_EFFECT_FAILED, "test", NULL, 0),
                 0, "%s", t.errmsg);
    t.in_handle = 1;
    cr_assert_eq(h->effect(a, 999, "order", "\xc0", 1), 0);
    t.in_handle = 0;
    {
        struct ol_test u;
        cr_assert_eq(ol_test_init(&u, ol_agent_entry), 0);
        strcpy(u.name, "keeper-1");
        ol_test__key(u.name, 0, u.error);
        cr_assert_str_eq(u.error, t.effects[0].key);
        ol_test_close(&u);
    }
    ol_test_close(&t);

    cr_assert_eq(ol_test_init(&t, no_perform_entry), 0);
    cr_assert_eq(ol_test_open(&t, "k", NULL, 0), 0);
    t.in_handle = 1;
    cr_assert_eq(h->effect(a, 1, "order", "\xc0", 1), OL_AGENT_ENOTSUP);
    t.in_handle = 0;
    ol_test_close(&t);
}

/* A plugin that declares an effect on every message and fails the step
 * when the message is `true`; its perform() writes a bad result. */
static const struct ol_host *fx_host;

static int fx_open(struct ol_agent *a, const void *c, size_t len, void **self)
{
    *self = NULL;
    return 0;
}

static int fx_restore(void *self, struct ol_agent *a, const void *s, size_t n)
{
    return 0;
}

static int fx_handle(void *self, struct ol_agent *a, const struct ol_event *ev)
{
    if (ev->type != OL_EVENT_MESSAGE)
        return 0;
    if (fx_host->effect(a, 7, "fx", "\xc0", 1) != 0)
        return OL_AGENT_EINVAL;
    return ev->len == 1 && *(const char *)ev->data == (char)0xc3
               ? OL_AGENT_EINVAL
               : 0;
}

static int fx_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    return out->write(out->data, "\xc0", 1);
}

static int fx_perform(const struct ol_effect *e, const struct ol_sink *r)
{
    r->write(r->data, "\xc1", 1); /* a byte msgpack never uses */
    return OL_EFFECT_DONE;
}

static const struct ol_agent_vtable fx_vt = {
    .abi = OL_AGENT_ABI, .size = sizeof(fx_vt), .kind = "fx", .version = "0",
    .open = fx_open, .restore = fx_restore, .handle = fx_handle,
    .save = fx_save, .perform = fx_perform,
};

static int fx_entry(const struct ol_host *h, const struct ol_agent_vtable **out)
{
    fx_host = h;
    *out = &fx_vt;
    return 0;
}

Test(keeper, fake_host_takes_back_a_failed_steps_effects)
{
    struct ol_test t;
    int st = -1;

    cr_assert_eq(ol_test_init(&t, fx_entry), 0);
    cr_assert_eq(ol_test_open(&t, "fx", NULL, 0), 0);
    cr_assert_eq(ol_test_message(&t, "@cli", "\xc0", 1), 0, "%s", t.errmsg);
    cr_assert_eq(t.neffects, 1);
    cr_assert_eq(ol_test_message(&t, "@cli", "\xc3", 1), OL_AGENT_EINVAL);
    cr_assert_eq(t.neffects, 1, "a failed step's effect was kept");
    cr_assert_eq(ol_test_effect_call(&t, 0, 0, &st), OL_AGENT_EMALFORMED);
    cr_assert_eq(st, OL_EFFECT_DONE);
    cr_assert_eq(t.effects[0].attempts, 1);
    ol_test_close(&t);
}

/* ---- the exchange on its own ------------------------------------------ */

#define KEY_A "00112233445566778899aabbccddeeff"
#define KEY_B "ffeeddccbbaa99887766554433221100"
#define KEY_C "0123456789abcdef0123456789abcdef"

/* POSTs `body` and checks a 400 whose error mentions `what`. */
static void refused(const char *body, const char *what)
{
    json_t *j;
    long code = http("/orders", body, &j);

    cr_assert_eq(code, 400, "%s: status %ld", body, code);
    cr_assert(strstr(str_of(j, "error"), what) != NULL,
              "%s: error '%s' does not name %s", body, str_of(j, "error"),
              what);
    json_decref(j);
}

Test(keeper, exchange_refuses_bad_input)
{
    json_t *j;

    start_exchange(NULL, NULL);
    refused("{\"key\":", "malformed JSON");
    refused("[1,2]", "JSON object");
    refused("{\"agent\":\"a\",\"epoch\":1,\"side\":\"buy\",\"qty\":1,"
            "\"price\":1}", "'key'");
    refused("{\"key\":\"00112233445566778899aabbccddeef\",\"agent\":\"a\","
            "\"epoch\":1,\"side\":\"buy\",\"qty\":1,\"price\":1}", "'key'");
    refused("{\"key\":\"00112233445566778899AABBCCDDEEFF\",\"agent\":\"a\","
            "\"epoch\":1,\"side\":\"buy\",\"qty\":1,\"price\":1}", "'key'");
    refused("{\"key\":\"" KEY_A "\",\"epoch\":1,\"side\":\"buy\",\"qty\":1,"
            "\"price\":1}", "'agent'");
    refused("{\"key\":\"" KEY_A "\",\"agent\":\"a\",\"epoch\":-1,"
            "\"side\":\"buy\",\"qty\":1,\"price\":1}", "'epoch'");
    refused("{\"key\":\"" KEY_A "\",\"agent\":\"a\",\"epoch\":1,"
            "\"side\":\"hold\",\"qty\":1,\"price\":1}", "'side'");
    refused("{\"key\":\"" KEY_A "\",\"agent\":\"a\",\"epoch\":1,"
            "\"side\":\"buy\",\"price\":1}", "'qty'");
    refused("{\"key\":\"" KEY_A "\",\"agent\":\"a\",\"epoch\":1,"
            "\"side\":\"buy\",\"qty\":0,\"price\":1}", "'qty'");
    refused("{\"key\":\"" KEY_A "\",\"agent\":\"a\",\"epoch\":1,"
            "\"side\":\"sell\",\"qty\":1,\"price\":\"1\"}", "'price'");
    cr_assert_eq(http("/orders/short", NULL, &j), 400);
    json_decref(j);
    cr_assert_eq(http("/orders/" KEY_A, NULL, &j), 404);
    cr_assert_str_eq(str_of(j, "error"), "no such order");
    json_decref(j);
    cr_assert_eq(http("/nowhere", NULL, &j), 404);
    json_decref(j);
    cr_assert_eq(http("/ledger", NULL, &j), 200);
    cr_assert_eq(json_array_size(j), 0, "bad input executed nothing");
    json_decref(j);
    cr_assert_eq(xch_lines(x.ledger), 0);
}

Test(keeper, exchange_keeps_keys_and_epochs_across_a_restart)
{
    json_t *j;
    FILE *f;

    start_exchange(NULL, NULL);
    cr_assert_eq(post(KEY_A, "k1", 7, &j), 201);
    cr_assert_eq(int_of(j, "id"), 1);
    json_decref(j);
    /* A duplicate under a newer epoch raises the agent's epoch to 9. */
    cr_assert_eq(post(KEY_A, "k1", 9, &j), 200);
    cr_assert(json_is_true(json_object_get(j, "duplicate")));
    json_decref(j);
    xch_stop(&x, SIGKILL);

    /* A write the crash cut short. */
    f = fopen(x.ledger, "a");
    cr_assert_not_null(f);
    fputs("{\"id\":2,\"key\":\"" KEY_B, f);
    fclose(f);

    start_exchange(NULL, NULL);
    cr_assert(xch_file_has(x.log, "line 2 is damaged"), "not reported");
    cr_assert_eq(post(KEY_A, "k1", 9, &j), 200, "the key was forgotten");
    cr_assert_eq(int_of(j, "id"), 1);
    cr_assert(json_is_true(json_object_get(j, "duplicate")));
    json_decref(j);
    cr_assert_eq(post(KEY_B, "k1", 8, &j), 409, "epoch 9 was forgotten");
    cr_assert_eq(int_of(j, "seen"), 9);
    cr_assert_str_eq(str_of(j, "error"), "stale epoch");
    json_decref(j);
    cr_assert_eq(post(KEY_C, "k2", 1, &j), 201, "another agent's epochs");
    cr_assert_eq(int_of(j, "id"), 2);
    json_decref(j);
    cr_assert_eq(http("/orders/" KEY_C, NULL, &j), 200);
    cr_assert_str_eq(str_of(j, "agent"), "k2");
    json_decref(j);
    cr_assert_eq(xch_lines(x.ledger), 2);

    /* Once more, with the rejects file to load as well. */
    xch_stop(&x, SIGKILL);
    start_exchange(NULL, NULL);
    cr_assert_eq(http("/ledger", NULL, &j), 200);
    cr_assert_eq(json_array_size(j), 2);
    cr_assert_str_eq(str_of(json_array_get(j, 1), "key"), KEY_C);
    json_decref(j);
    cr_assert(xch_file_has(x.log, "2 orders, 1 rejects loaded"));
}

static void *post_a(void *arg)
{
    json_t *j;
    long code = post(KEY_A, "k1", 1, &j);

    *(long *)arg = code * 1000 + int_of(j, "id");
    json_decref(j);
    return NULL;
}

Test(keeper, exchange_executes_a_key_once_under_concurrency)
{
    pthread_t th[2];
    long got[2] = {0, 0};

    start_exchange("--delay-ms", "300");
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, post_a, &got[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* One executed it (201), the other found it done (200); both id 1. */
    cr_assert_eq(got[0] + got[1], 201001 + 200001, "answers %ld, %ld",
                 got[0], got[1]);
    cr_assert_eq(xch_lines(x.ledger), 1);
}

Test(keeper, exchange_refuses_a_ledger_damaged_before_its_end)
{
    const char *root = getenv("OL_BUILD_ROOT");
    char exe[PATH_MAX];
    FILE *f = fopen(x.ledger, "w");
    int status = -1;
    pid_t pid;

    cr_assert_not_null(root);
    cr_assert_not_null(f);
    fputs("{\"id\":1,\"key\":\"" KEY_A "\"}\n"
          "{\"id\":1,\"key\":\"" KEY_A "\",\"agent\":\"a\",\"epoch\":1,"
          "\"side\":\"buy\",\"qty\":1,\"price\":1}\n", f);
    fclose(f);
    snprintf(exe, sizeof(exe), "%s/examples/exchange/outlast-exchange", root);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int log = open(x.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(log, 1);
        dup2(log, 2);
        execl(exe, exe, "--port", "0", "--ledger", x.ledger, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(100 * 1000);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1,
              "the exchange started on a damaged ledger");
    cr_assert(xch_file_has(x.log, "line 1: missing field 'agent'"),
              "the error does not say where");
}
