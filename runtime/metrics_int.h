/*
 * What the files of the /metrics exposition share: the output, which
 * remembers a failed write in `bad`, and the helpers that write one family
 * or one sample.
 */
#ifndef OL_METRICS_INT_H
#define OL_METRICS_INT_H

#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"

struct ol__obs;

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct out {
    struct ol__buf *b;
    int bad;
};

static inline void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline void put(struct out *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line ||
        ol__buf_append(o->b, line, (size_t)n) != 0)
        o->bad = 1;
}

static inline void family(struct out *o, const char *name, const char *type,
                          const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static inline void one_u64(struct out *o, const char *name, const char *type,
                           const char *help, uint64_t v)
{
    family(o, name, type, help);
    put(o, "%s %" PRIu64 "\n", name, v);
}

static inline void one_f(struct out *o, const char *name, const char *type,
                         const char *help, double v)
{
    family(o, name, type, help);
    put(o, "%s %.6f\n", name, v);
}

/* One sample of a family with one label: name{label="value"} v. */
static inline void labelled(struct out *o, const char *name, const char *label,
                            const char *value, uint64_t v)
{
    put(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, value, v);
}

/* A run of single-value families read from one struct: each row names
 * the family and where its uint64_t sits. */
struct u64_row {
    const char *name, *type, *help;
    size_t off;
};

static inline void u64_rows(struct out *o, const void *base,
                            const struct u64_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v;

        memcpy(&v, (const char *)base + rows[i].off, sizeof v);
        one_u64(o, rows[i].name, rows[i].type, rows[i].help, v);
    }
}

/* metrics_cluster.c: everything from the replica's status map `st`. */
void ol__metrics_cluster(struct out *o, const struct ol__obs *ob,
                         const msgpack_object *st);

#endif
