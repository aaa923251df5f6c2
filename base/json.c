/*
 * JSON <-> msgpack conversion.  jansson does all JSON parsing and printing;
 * this module only maps values between the two models.  Bytes that came
 * from a socket or a file are checked with the bounded reader before
 * msgpack-c's unpacker sees them.
 */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "mpr.h"

/* A hex string of n bytes as a new JSON string. */
static json_t *hex_string(const void *p, size_t n)
{
    char *hex = malloc(2 * n + 1);
    json_t *j;

    if (hex == NULL)
        return NULL;
    ol__hex(p, n, hex);
    j = json_stringn(hex, 2 * n);
    free(hex);
    return j;
}

/* {"<tag>": <value>} with a stolen value. */
static json_t *tagged(const char *tag, json_t *v)
{
    json_t *o;

    if (v == NULL)
        return NULL;
    o = json_object();
    if (o == NULL) {
        json_decref(v);
        return NULL;
    }
    if (json_object_set_new(o, tag, v) != 0) { /* takes v either way */
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *real_value(double d)
{
    if (isnan(d))
        return json_string("nan");
    if (isinf(d))
        return json_string(d > 0 ? "inf" : "-inf");
    return json_real(d);
}

static json_t *ext_value(const msgpack_object_ext *e)
{
    json_t *o = json_object();

    if (o == NULL ||
        json_object_set_new(o, "$ext", json_integer(e->type)) != 0 ||
        json_object_set_new(o, "hex", hex_string(e->ptr, e->size)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The text of a map key that is not a UTF-8 string; malloc'd. */
static char *key_text(const msgpack_object *k)
{
    char tmp[64];
    char *s = NULL;
    json_t *j;

    switch (k->type) {
    case MSGPACK_OBJECT_NIL:
        return strdup("null");
    case MSGPACK_OBJECT_BOOLEAN:
        return strdup(k->via.boolean ? "true" : "false");
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(tmp, sizeof tmp, "%" PRIu64, k->via.u64);
        return strdup(tmp);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(tmp, sizeof tmp, "%" PRId64, k->via.i64);
        return strdup(tmp);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        snprintf(tmp, sizeof tmp, "%.17g", k->via.f64);
        return strdup(tmp);
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        s = malloc(2 * (size_t)k->via.bin.size + 1);
        if (s)
            ol__hex((const uint8_t *)k->via.bin.ptr, k->via.bin.size, s);
        return s;
    default:
        j = ol__json_from_object(k);
        if (j == NULL)
            return NULL;
        s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        return s;
    }
}

static json_t *map_value(const msgpack_object_map *m)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        json_t *v = ol__json_from_object(&m->ptr[i].val);
        json_t *probe = NULL;
        char *text = NULL;
        const char *kp;
        size_t kn;
        int rc;

        if (v == NULL)
            goto fail;
        /* A str key that is valid UTF-8 is used as is (json_stringn is
         * the only public UTF-8 check); anything else is stringified. */
        if (k->type == MSGPACK_OBJECT_STR)
            probe = json_stringn(k->via.str.ptr, k->via.str.size);
        if (probe != NULL) {
            json_decref(probe);
            kp = k->via.str.ptr;
            kn = k->via.str.size;
        } else {
            text = key_text(k);
            if (text == NULL) {
                json_decref(v);
                goto fail;
            }
            kp = text;
            kn = strlen(text);
        }
        rc = json_object_setn_new(o, kp, kn, v); /* takes v either way */
        free(text);
        if (rc != 0)
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

json_t *ol__json_from_object(const msgpack_object *o)
{
    json_t *a, *v;

    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) {
            char tmp[32];

            snprintf(tmp, sizeof tmp, "%" PRIu64, o->via.u64);
            return json_string(tmp);
        }
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return real_value(o->via.f64);
    case MSGPACK_OBJECT_STR:
        v = json_stringn(o->via.str.ptr, o->via.str.size);
        if (v)
            return v;
        return tagged("$str", hex_string(o->via.str.ptr, o->via.str.size));
    case MSGPACK_OBJECT_BIN:
        return tagged("$bin", hex_string(o->via.bin.ptr, o->via.bin.size));
    case MSGPACK_OBJECT_EXT:
        return ext_value(&o->via.ext);
    case MSGPACK_OBJECT_ARRAY:
        a = json_array();
        if (a == NULL)
            return NULL;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (json_array_append_new(
                    a, ol__json_from_object(&o->via.array.ptr[i])) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    case MSGPACK_OBJECT_MAP:
        return map_value(&o->via.map);
    }
    return NULL;
}

int ol__json_from_msgpack(const void *p, size_t len, json_t **out,
                          char *errmsg)
{
    msgpack_unpacked u;
    size_t off = 0, bad = 0;
    int rc;

    *out = NULL;
    if (ol__mp_check(p, len, &bad) != 0) {
        ol__errf(errmsg, "not one msgpack value (bad byte at offset %zu)",
                 bad);
        return OL_EMALFORMED;
    }
    msgpack_unpacked_init(&u);
    rc = msgpack_unpack_next(&u, p, len, &off);
    if (rc != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        if (rc == MSGPACK_UNPACK_NOMEM_ERROR) {
            ol__errf(errmsg, "value nests deeper than the unpacker allows");
            return OL_EMALFORMED;
        }
        ol__errf(errmsg, "msgpack value does not unpack");
        return OL_EMALFORMED;
    }
    *out = ol__json_from_object(&u.data);
    msgpack_unpacked_destroy(&u);
    if (*out == NULL) {
        ol__errf(errmsg, "out of memory converting to JSON");
        return OL_ENOMEM;
    }
    return 0;
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str_with_body(pk, s, n) == 0 ? 0 : OL_ENOMEM;
}

int ol__json_pack(const json_t *j, msgpack_packer *pk)
{
    const char *key;
    json_t *v;
    size_t i, klen;
    int rc = 0;

    switch (json_typeof(j)) {
    case JSON_NULL:
        rc = msgpack_pack_nil(pk);
        break;
    case JSON_TRUE:
        rc = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false(pk);
        break;
    case JSON_INTEGER:
        rc = msgpack_pack_int64(pk, json_integer_value(j));
        break;
    case JSON_REAL:
        rc = msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_STRING:
        return pack_str(pk, json_string_value(j), json_string_length(j));
    case JSON_ARRAY:
        if (msgpack_pack_array(pk, json_array_size(j)) != 0)
            return OL_ENOMEM;
        json_array_foreach ((json_t *)j, i, v)
            if (ol__json_pack(v, pk) != 0)
                return OL_ENOMEM;
        return 0;
    case JSON_OBJECT:
        if (msgpack_pack_map(pk, json_object_size(j)) != 0)
            return OL_ENOMEM;
        json_object_keylen_foreach ((json_t *)j, key, klen, v) {
            if (pack_str(pk, key, klen) != 0 ||
                ol__json_pack(v, pk) != 0)
                return OL_ENOMEM;
        }
        return 0;
    }
    return rc == 0 ? 0 : OL_ENOMEM;
}

size_t ol__json_depth(const json_t *j)
{
    size_t d = 0, sub;

    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j) && d <= OL_JSON_MAX_DEPTH;
             i++)
            if ((sub = ol__json_depth(json_array_get(j, i))) > d)
                d = sub;
        return d + 1;
    }
    if (json_is_object(j)) {
        const char *k;
        json_t *v;

        json_object_foreach((json_t *)j, k, v) {
            if ((sub = ol__json_depth(v)) > d)
                d = sub;
            if (d > OL_JSON_MAX_DEPTH)
                break;
        }
        return d + 1;
    }
    return 0;
}

size_t ol__mp_object_depth(const msgpack_object *o)
{
    size_t d = 0, sub;

    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size && d <= OL_JSON_MAX_DEPTH;
             i++)
            if ((sub = ol__mp_object_depth(&o->via.array.ptr[i])) > d)
                d = sub;
        return d + 1;
    }
    if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size && d <= OL_JSON_MAX_DEPTH;
             i++) {
            if ((sub = ol__mp_object_depth(&o->via.map.ptr[i].key)) > d)
                d = sub;
            if ((sub = ol__mp_object_depth(&o->via.map.ptr[i].val)) > d)
                d = sub;
        }
        return d + 1;
    }
    return 0;
}

int ol__json_parse(const char *text, size_t len, json_t **out,
                   char *errmsg)
{
    json_error_t e;

    *out = json_loadb(text, len,
                      JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
                          JSON_ALLOW_NUL,
                      &e);
    if (*out != NULL && ol__json_depth(*out) > OL_JSON_MAX_DEPTH) {
        json_decref(*out);
        *out = NULL;
        ol__errf(errmsg, "nests deeper than %d levels of arrays and objects "
                         "(the limit)", OL_JSON_MAX_DEPTH);
        return OL_ETOOBIG;
    }
    if (*out != NULL)
        return 0;
    if (json_error_code(&e) == json_error_out_of_memory) {
        ol__errf(errmsg, "out of memory parsing JSON");
        return OL_ENOMEM;
    }
    ol__errf(errmsg, "line %d column %d: %s", e.line, e.column, e.text);
    return OL_EMALFORMED;
}

int ol__json_to_msgpack(const char *text, size_t len, struct ol__buf *out,
                        char *errmsg)
{
    msgpack_packer pk;
    json_t *j;
    int rv = ol__json_parse(text, len, &j, errmsg);

    if (rv != 0)
        return rv;
    msgpack_packer_init(&pk, out, ol__buf_write);
    rv = ol__json_pack(j, &pk);
    json_decref(j);
    if (rv != 0)
        ol__errf(errmsg, "out of memory packing JSON as msgpack");
    return rv;
}
