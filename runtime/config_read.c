/*
 * Reading the config file for inih: one whole line per call, however
 * long; section headers checked and noted, lines too long for inih's
 * buffer kept aside, and a problem stops the parse at its line.
 */
#include "config_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Index `n` entries of `name`-keyed elements of size `size` at `base`
 * (the key at offset 0) in `m`, values index + 1.  Returns 0 or -1. */
int ol__config_index(struct ol__map *m, const void *base, size_t size,
                     size_t n)
{
    ol__map_close(m);
    ol__map_init(m);
    for (size_t i = 0; i < n; i++)
        if (ol__map_put(m, (const char *)base + i * size,
                        (void *)(uintptr_t)(i + 1)) != 0)
            return -1;
    return 0;
}

int ol__config_seen(struct parse *p, const char *name, const char *what)
{
    uintptr_t at = (uintptr_t)ol__map_get(&p->seen_by_name, name);
    struct seen *v;

    if (at) {
        snprintf(p->err, sizeof p->err, "%s is given twice (lines %d and %d)",
                 what, p->seen[at - 1].line, p->line);
        return -1;
    }
    if (p->n_seen == p->cap_seen) {
        size_t cap = p->cap_seen ? p->cap_seen * 2 : 32;

        v = realloc(p->seen, cap * sizeof *v);
        if (v == NULL ||
            ol__config_index(&p->seen_by_name, v, sizeof *v, p->n_seen)) {
            if (v)
                p->seen = v;
            snprintf(p->err, sizeof p->err, "out of memory");
            return -1;
        }
        p->seen = v;
        p->cap_seen = cap;
    }
    v = &p->seen[p->n_seen++];
    snprintf(v->name, sizeof v->name, "%s", name);
    v->line = p->line;
    if (ol__map_put(&p->seen_by_name, v->name,
                    (void *)(uintptr_t)p->n_seen) != 0) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return -1;
    }
    return 0;
}

static int section_known(const char *s)
{
    return strcmp(s, "node") == 0 || strcmp(s, "checkpoint") == 0 ||
           strcmp(s, "cluster") == 0 || strcmp(s, "http") == 0 ||
           strcmp(s, "agents") == 0 || strncmp(s, "agent.", 6) == 0 ||
           strncmp(s, "plugin.", 7) == 0 || strncmp(s, "peer.", 5) == 0 ||
           strcmp(s, "effects") == 0 || strncmp(s, "effects.", 8) == 0;
}

char *ol__config_value_trim(char *v)
{
    char *e;

    while (*v == ' ' || *v == '\t')
        v++;
    for (e = v; *e; e++)
        if (*e == ';' && e > v && (e[-1] == ' ' || e[-1] == '\t')) {
            *e = '\0';
            break;
        }
    e = v + strlen(v);
    while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return v;
}

/* A problem the reader found on the current line: parsing stops there. */
static char *feed_fail(struct parse *p, const char *fmt, const char *a)
{
    snprintf(p->err, sizeof p->err, fmt, a);
    p->err_line = p->line;
    return NULL;
}

/* A section header line (without its leading blanks): check it, note it,
 * and hand inih the bare "[name]". */
static char *feed_section(struct parse *p, const char *s, size_t n,
                          char *out, int cap)
{
    const char *close = memchr(s, ']', n), *rest;
    char name[OL_CONFIG_NAME_MAX + 1], what[OL_CONFIG_NAME_MAX + 16];
    char text[64];
    size_t len;

    /* The line as it may be quoted in a message. */
    snprintf(text, sizeof text, "%.*s%s", n > 48 ? 48 : (int)n, s,
             n > 48 ? "..." : "");
    if (close == NULL)
        return feed_fail(p, "section header '%s' has no closing ']'", text);
    len = (size_t)(close - s - 1);
    if (len == 0)
        return feed_fail(p, "empty section name '[]'%s", "");
    if (len > OL_CONFIG_NAME_MAX / 2)
        return feed_fail(p, "section name in '%s' is too long", text);
    for (rest = close + 1; rest < s + n; rest++) {
        if (*rest == ';' || *rest == '#')
            break;
        if (*rest != ' ' && *rest != '\t' && *rest != '\r')
            return feed_fail(p, "text after the section header '%s'",
                             text);
    }
    memcpy(name, s + 1, len);
    name[len] = '\0';
    if (memchr(name, '\n', len) || memchr(name, '[', len))
        return feed_fail(p, "malformed section header '%s'", text);
    if (!section_known(name)) {
        snprintf(p->err, sizeof p->err,
                 "unknown section [%s] (expected node, checkpoint, cluster, "
                 "http, agents, agent.NAME, plugin.KIND, effects, "
                 "effects.KIND or peer.ID)",
                 name);
        p->err_line = p->line;
        return NULL;
    }
    snprintf(what, sizeof what, "section [%s]", name);
    if (ol__config_seen(p, name, what) != 0) {
        p->err_line = p->line;
        return NULL;
    }
    snprintf(p->section, sizeof p->section, "%s", name);
    snprintf(out, (size_t)cap, "[%s]\n", name);
    return out;
}

/* Keep the value of a line too long for inih's buffer; inih gets
 * "key = <mark><slot>" and the handler swaps the value back in. */
static char *feed_long(struct parse *p, const char *s, size_t n, char *out,
                       int cap)
{
    const char *eq = s;
    char **v;
    size_t klen;

    while (eq < s + n && *eq != '=' && *eq != ':')
        eq++;
    klen = (size_t)(eq - s);
    while (klen > 0 && (s[klen - 1] == ' ' || s[klen - 1] == '\t'))
        klen--;
    if (eq == s + n || klen == 0)
        return feed_fail(p, "syntax error (expected [section] or key = "
                            "value)%s", "");
    if (klen > 64) {
        char key[48];

        snprintf(key, sizeof key, "%.40s...", s);
        return feed_fail(p, "key '%s' is too long (at most 64 bytes)", key);
    }
    v = realloc(p->longv, (p->n_longv + 1) * sizeof *v);
    if (v == NULL)
        return feed_fail(p, "out of memory%s", "");
    p->longv = v;
    v[p->n_longv] = strndup(eq + 1, (size_t)(s + n - eq - 1));
    if (v[p->n_longv] == NULL)
        return feed_fail(p, "out of memory%s", "");
    snprintf(out, (size_t)cap, "%.*s = %c%zu\n", (int)klen, s, LONG_MARK,
             p->n_longv);
    p->n_longv++;
    return out;
}

/* Does the line hold "key = ..." or "key: ..." with a key? */
static int key_line(const char *s, size_t n)
{
    size_t k = 0;

    while (k < n && s[k] != '=' && s[k] != ':')
        k++;
    if (k == n)
        return 0;
    while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
        k--;
    return k > 0;
}

/* inih's reader: one whole line of the file per call, however long.  Lines
 * lose their leading blanks (so an indented key is a key, never inih's
 * continuation of the previous value). */
char *ol__config_feed(char *out, int cap, void *stream)
{
    struct parse *p = stream;
    const char *s, *nl;
    size_t n;

    if (p->err_line || p->err[0] || p->pos >= p->end)
        return NULL;
    nl = memchr(p->pos, '\n', (size_t)(p->end - p->pos));
    s = p->pos;
    n = nl ? (size_t)(nl - s) : (size_t)(p->end - s);
    p->pos = nl ? nl + 1 : p->end;
    p->line++;
    if (memchr(s, '\0', n))
        return feed_fail(p, "the line holds a NUL byte%s", "");
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && s[n - 1] == '\r')
        n--;
    if (n == 0 || *s == ';' || *s == '#') {
        snprintf(out, (size_t)cap, "\n");
        return out;
    }
    if (*s == '[')
        return feed_section(p, s, n, out, cap);
    if (!key_line(s, n))
        return feed_fail(p, "syntax error (expected [section] or key = "
                            "value)%s", "");
    if (n + 2 > (size_t)cap)
        return feed_long(p, s, n, out, cap);
    memcpy(out, s, n);
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}
