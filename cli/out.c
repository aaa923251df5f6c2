/*
 * Output helpers for the CLI: times as ISO-8601 UTC with an age, short
 * hashes, durations, JSON printing through jansson, and a generic printer
 * for responses whose shape the CLI does not know (cluster operations).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/json.h"
#include "base/log.h"
#include "cli.h"

const char *ol__cli_iso(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || gmtime_r(&t, &tm) == NULL) {
        snprintf(out, cap, "-");
        return out;
    }
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

const char *ol__cli_duration(uint64_t ms, char *out, size_t cap)
{
    uint64_t s = ms / 1000;

    if (s < 60)
        snprintf(out, cap, "%" PRIu64 "s", s);
    else if (s < 3600)
        snprintf(out, cap, "%" PRIu64 "m%" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, cap, "%" PRIu64 "h%" PRIu64 "m", s / 3600,
                 s / 60 % 60);
    else
        snprintf(out, cap, "%" PRIu64 "d%" PRIu64 "h", s / 86400,
                 s / 3600 % 24);
    return out;
}

const char *ol__cli_time(int64_t ms, char *out, size_t cap)
{
    char iso[40], d[32];
    int64_t now = ol__wall_ms();

    if (ms <= 0) {
        snprintf(out, cap, "-");
        return out;
    }
    ol__cli_iso(ms, iso, sizeof iso);
    if (ms <= now)
        snprintf(out, cap, "%s (%s ago)", iso,
                 ol__cli_duration((uint64_t)(now - ms), d, sizeof d));
    else
        snprintf(out, cap, "%s (in %s)", iso,
                 ol__cli_duration((uint64_t)(ms - now), d, sizeof d));
    return out;
}

const char *ol__cli_short(const char *hex, char *out, size_t cap)
{
    if (hex == NULL || hex[0] == '\0' || strcmp(hex, "-") == 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.12s", hex);
    return out;
}

char *ol__cli_compact_json(const msgpack_object *o)
{
    json_t *j = ol__json_from_object(o);
    char *s;

    if (j == NULL)
        return NULL;
    s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

int ol__cli_print_json(const msgpack_object *o)
{
    json_t *j = ol__json_from_object(o);
    int rc;

    if (j == NULL) {
        fprintf(stderr, "outlast: out of memory converting to JSON\n");
        return OL_EXIT_FAIL;
    }
    rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    json_decref(j);
    fputc('\n', stdout);
    return rc == 0 ? 0 : OL_EXIT_FAIL;
}

static int is_scalar(const msgpack_object *o)
{
    return o->type != MSGPACK_OBJECT_MAP && o->type != MSGPACK_OBJECT_ARRAY;
}

static int all_scalars(const msgpack_object_array *a)
{
    for (uint32_t i = 0; i < a->size; i++)
        if (!is_scalar(&a->ptr[i]))
            return 0;
    return 1;
}

/* A map's key as text, for the generic printer. */
static const char *key_text(const msgpack_object *k, char *out, size_t cap)
{
    return ol__mp_text(k, out, cap);
}

/* Print one "key  value" line (or a nested block) at `indent`. */
static void print_entry(const char *key, int width, const msgpack_object *v,
                        int indent)
{
    char text[1024];

    if (is_scalar(v) || (v->type == MSGPACK_OBJECT_ARRAY &&
                         all_scalars(&v->via.array) &&
                         v->via.array.size <= 16)) {
        if (v->type == MSGPACK_OBJECT_ARRAY) {
            char *s = ol__cli_compact_json(v);

            snprintf(text, sizeof text, "%s", s ? s : "?");
            free(s);
        } else {
            ol__mp_text(v, text, sizeof text);
        }
        printf("%*s%-*s  %s\n", indent, "", width, key, text);
        return;
    }
    if (v->type == MSGPACK_OBJECT_MAP && v->via.map.size == 0) {
        printf("%*s%-*s  {}\n", indent, "", width, key);
        return;
    }
    if (v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 0) {
        printf("%*s%-*s  []\n", indent, "", width, key);
        return;
    }
    printf("%*s%s:\n", indent, "", key);
    ol__cli_print_generic(v, indent + 2);
}

void ol__cli_print_generic(const msgpack_object *o, int indent)
{
    char k[256];
    int width = 0;

    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            char idx[32];

            snprintf(idx, sizeof idx, "[%u]", i);
            print_entry(idx, 0, &o->via.array.ptr[i], indent);
        }
        return;
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        char text[1024];

        printf("%*s%s\n", indent, "", ol__mp_text(o, text, sizeof text));
        return;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        int n = (int)strlen(key_text(&o->via.map.ptr[i].key, k, sizeof k));

        if (is_scalar(&o->via.map.ptr[i].val) && n > width)
            width = n;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        key_text(&o->via.map.ptr[i].key, k, sizeof k);
        if (indent == 0 && strcmp(k, "ok") == 0)
            continue;
        print_entry(k, width, &o->via.map.ptr[i].val, indent);
    }
}

int ol__cli_put_json(json_t *j)
{
    if (j == NULL)
        return OL_EXIT_FAIL;
    json_dumpf(j, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(j);
    return 0;
}
