/*
 * keeper_http.c - the keeper's perform() and reconcile().
 *
 * Both run on a work-pool thread and see only the effect: the payload
 * {url, side, qty, price} says where and what, e->key and e->epoch go to
 * the exchange as the idempotency key and the fencing token, and
 * e->deadline_ms bounds the request.  How answers map to outcomes:
 *   POST /orders      201 or 200 (a duplicate)  DONE  {id, duplicate, side,
 *                                                      qty, price}
 *                     409 (stale epoch), 4xx    FAILED {status, error}
 *                     5xx, no answer, timeout   RETRY
 *   GET /orders/KEY   200                       DONE  (as above)
 *                     404                       UNKNOWN
 *                     anything else             RETRY
 */
#include "keeper_http.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <msgpack.h>
#include <outlast/agent_util.h>

#define RESP_MAX (16u << 10) /* bytes kept of an answer */

struct order {
    char url[KEEPER_URL_MAX + 1];
    char side[5];
    uint64_t qty;
    int64_t price;
};

struct resp {
    char data[RESP_MAX];
    size_t len;
};

int keeper_url_check(char *url)
{
    size_t n = strlen(url);
    size_t skip = strncmp(url, "http://", 7) == 0    ? 7
                  : strncmp(url, "https://", 8) == 0 ? 8
                                                     : 0;

    while (skip > 0 && n > skip && url[n - 1] == '/')
        url[--n] = '\0';
    return skip > 0 && n > skip ? 0 : -1; /* a scheme and a host */
}

static bool valid_key(const char *key)
{
    if (key == NULL || strlen(key) != OL_AGENT_KEY_LEN)
        return false;
    for (const char *p = key; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static int parse_payload(const struct ol_effect *e, struct order *o)
{
    msgpack_unpacked u;
    const msgpack_object *side;
    bool ok;

    if (ol_mp_unpack(&u, e->payload, e->len) != 0)
        return -1;
    side = ol_mp_get(&u.data, "side");
    ok = ol_mp_str(ol_mp_get(&u.data, "url"), o->url, sizeof(o->url)) &&
         keeper_url_check(o->url) == 0 &&
         (ol_mp_str_eq(side, "buy") || ol_mp_str_eq(side, "sell")) &&
         ol_mp_str(side, o->side, sizeof(o->side)) &&
         ol_mp_uint(ol_mp_get(&u.data, "qty"), &o->qty) && o->qty > 0 &&
         o->qty <= KEEPER_NUM_MAX &&
         ol_mp_int(ol_mp_get(&u.data, "price"), &o->price) && o->price > 0 &&
         (uint64_t)o->price <= KEEPER_NUM_MAX;
    msgpack_unpacked_destroy(&u);
    return ok && valid_key(e->key) ? 0 : -1;
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t len = size * n, room = sizeof(r->data) - r->len;

    memcpy(r->data + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    return len;
}

/* One request (a POST when `post` is not NULL) that ends by deadline_ms.
 * Returns 0 with *code and r filled, or -1: no answer in time. */
static int http(const char *url, const char *post, int64_t deadline_ms,
                long *code, struct resp *r)
{
    int64_t left = deadline_ms - wall_ms();
    struct curl_slist *h = NULL;
    CURL *c;
    int rv = -1;

    r->len = 0;
    if (left <= 0 || (c = curl_easy_init()) == NULL)
        return -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    if (post != NULL) {
        h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    }
    if (curl_easy_perform(c) == CURLE_OK &&
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code) == CURLE_OK)
        rv = 0;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rv;
}

static int64_t int_field(const json_t *j, const char *name)
{
    return json_integer_value(json_object_get(j, name));
}

/* Writes {id, duplicate, side, qty, price} from the exchange's order. */
static int done(const struct ol_sink *result, const json_t *j)
{
    const json_t *id = json_object_get(j, "id");
    const char *side = json_string_value(json_object_get(j, "side"));
    msgpack_packer pk;

    if (!json_is_integer(id) || json_integer_value(id) < 1 || side == NULL)
        return OL_EFFECT_RETRY; /* not the exchange's answer: ask again */
    ol_mp_packer_init(&pk, result);
    if (msgpack_pack_map(&pk, 5) != 0 || ol_mp_pack_str(&pk, "id") != 0 ||
        msgpack_pack_uint64(&pk, (uint64_t)json_integer_value(id)) != 0 ||
        ol_mp_pack_str(&pk, "duplicate") != 0 ||
        (json_is_true(json_object_get(j, "duplicate"))
             ? msgpack_pack_true(&pk)
             : msgpack_pack_false(&pk)) != 0 ||
        ol_mp_pack_str(&pk, "side") != 0 || ol_mp_pack_str(&pk, side) != 0 ||
        ol_mp_pack_str(&pk, "qty") != 0 ||
        msgpack_pack_int64(&pk, int_field(j, "qty")) != 0 ||
        ol_mp_pack_str(&pk, "price") != 0 ||
        msgpack_pack_int64(&pk, int_field(j, "price")) != 0)
        return OL_EFFECT_RETRY;
    return OL_EFFECT_DONE;
}

/* Writes {status, error} and returns OL_EFFECT_FAILED. */
static int failed(const struct ol_sink *result, long status, const char *why)
{
    msgpack_packer pk;

    ol_mp_packer_init(&pk, result);
    if (msgpack_pack_map(&pk, 2) != 0 || ol_mp_pack_str(&pk, "status") != 0 ||
        msgpack_pack_long(&pk, status) != 0 ||
        ol_mp_pack_str(&pk, "error") != 0)
        return OL_EFFECT_FAILED;
    ol_mp_pack_str(&pk, why);
    return OL_EFFECT_FAILED;
}

/* The outcome of the exchange's answer to a POST. */
static int posted(long code, const struct resp *r, const struct ol_sink *result)
{
    json_t *j = json_loadb(r->data, r->len, 0, NULL);
    const char *err = json_string_value(json_object_get(j, "error"));
    char why[160];
    int rv;

    if (code == 200 || code == 201) {
        rv = done(result, j);
    } else if (code == 409) {
        snprintf(why, sizeof(why), "stale epoch: the exchange has seen %"
                 JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(j, "seen")));
        rv = failed(result, code, why);
    } else if (code >= 400 && code < 500) {
        snprintf(why, sizeof(why), "refused (%ld): %s", code,
                 err != NULL ? err : "no reason given");
        rv = failed(result, code, why);
    } else {
        rv = OL_EFFECT_RETRY;
    }
    json_decref(j);
    return rv;
}

int keeper_perform(const struct ol_effect *e, const struct ol_sink *result)
{
    char url[KEEPER_URL_MAX + 16], *body = NULL;
    struct resp *r;
    struct order o;
    long code = 0;
    json_t *j;
    int rv = OL_EFFECT_RETRY;

    if (parse_payload(e, &o) != 0)
        return failed(result, 0, "bad payload or key");
    j = json_pack("{ss, ss, sI, ss, sI, sI}", "key", e->key, "agent",
                  e->agent, "epoch", (json_int_t)e->epoch, "side", o.side,
                  "qty", (json_int_t)o.qty, "price", (json_int_t)o.price);
    if (j != NULL)
        body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (body == NULL || (r = malloc(sizeof(*r))) == NULL) {
        free(body);
        return OL_EFFECT_RETRY;
    }
    snprintf(url, sizeof(url), "%s/orders", o.url);
    if (http(url, body, e->deadline_ms, &code, r) == 0)
        rv = posted(code, r, result);
    free(body);
    free(r);
    return rv;
}

int keeper_reconcile(const struct ol_effect *e, const struct ol_sink *result)
{
    char url[KEEPER_URL_MAX + 64];
    struct resp *r;
    struct order o;
    long code = 0;
    int rv = OL_EFFECT_RETRY;

    if (parse_payload(e, &o) != 0)
        return failed(result, 0, "bad payload or key");
    if ((r = malloc(sizeof(*r))) == NULL)
        return OL_EFFECT_RETRY;
    snprintf(url, sizeof(url), "%s/orders/%s", o.url, e->key);
    if (http(url, NULL, e->deadline_ms, &code, r) == 0) {
        if (code == 200) {
            json_t *j = json_loadb(r->data, r->len, 0, NULL);
            rv = done(result, j);
            json_decref(j);
        } else if (code == 404) {
            rv = OL_EFFECT_UNKNOWN;
        }
    }
    free(r);
    return rv;
}
