/*
 * Node labels ("k=v,k=v", the roster's free-form description of a node):
 * reading one key, matching an agent's prefer/avoid lists against them,
 * checking such a list, and the `role=` label that makes a node a witness
 * or a standby (placement.h declares them).
 */
#include "placement.h"

#include <stdio.h>
#include <string.h>

void ol__label_get(const char *labels, const char *key, char *out,
                   size_t cap)
{
    size_t klen = strlen(key);
    const char *p = labels;

    if (cap)
        out[0] = '\0';
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        while (len && *p == ' ') {
            p++;
            len--;
        }
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            snprintf(out, cap, "%.*s", (int)(len - klen - 1), p + klen + 1);
            return;
        }
        p = end ? end + 1 : NULL;
    }
}

static const char *const role_names[] = {"voter", "witness", "standby"};

const char *ol__role_name(int role)
{
    return role >= 0 && role <= OL_ROLE_STANDBY ? role_names[role] : NULL;
}

int ol__role_parse(const char *name)
{
    for (int i = 0; i <= OL_ROLE_STANDBY; i++)
        if (strcmp(name, role_names[i]) == 0)
            return i;
    return -1;
}

int ol__label_role(const char *labels)
{
    char v[32];

    ol__label_get(labels, "role", v, sizeof v);
    return v[0] ? ol__role_parse(v) : OL_ROLE_VOTER;
}

int ol__labels_with_role(const char *labels, int role, char *out,
                         size_t cap)
{
    const char *p = labels;
    size_t n = 0;
    int w;

    if (cap == 0)
        return -1;
    out[0] = '\0';
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len && strncmp(p, "role=", 5) != 0) {
            w = snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)len,
                         p);
            if (w < 0 || (size_t)w >= cap - n)
                return -1;
            n += (size_t)w;
        }
        p = end ? end + 1 : NULL;
    }
    if (role != OL_ROLE_VOTER && ol__role_name(role)) {
        w = snprintf(out + n, cap - n, "%srole=%s", n ? "," : "",
                     ol__role_name(role));
        if (w < 0 || (size_t)w >= cap - n)
            return -1;
    }
    return 0;
}

/* The next item of a comma-separated list at *pp, spaces around it
 * trimmed, its length in *len; NULL past the end. */
static const char *next_item(const char **pp, size_t *len)
{
    const char *p = *pp, *end;
    size_t l;

    if (p == NULL || *p == '\0')
        return NULL;
    end = strchr(p, ',');
    l = end ? (size_t)(end - p) : strlen(p);
    while (l && *p == ' ') {
        p++;
        l--;
    }
    while (l && p[l - 1] == ' ')
        l--;
    *pp = end ? end + 1 : NULL;
    *len = l;
    return p;
}

/* Whether item "k=v" of length `len` is one of `labels`' items. */
static int has_item(const char *labels, const char *item, size_t len)
{
    const char *p = labels, *it;
    size_t l;

    while ((it = next_item(&p, &l)) != NULL)
        if (l == len && strncmp(it, item, len) == 0)
            return 1;
    return 0;
}

int ol__label_match(const char *labels, const char *list)
{
    const char *p = list, *it;
    size_t l;

    if (labels == NULL)
        return 0;
    while ((it = next_item(&p, &l)) != NULL)
        if (l && has_item(labels, it, l))
            return 1;
    return 0;
}

static int label_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

int ol__label_list_valid(const char *list)
{
    const char *p = list;

    if (list == NULL || *list == '\0')
        return 0;
    for (;;) {
        size_t k = 0, v = 0;

        while (label_char(p[k]))
            k++;
        if (k == 0 || p[k] != '=')
            return 0;
        p += k + 1;
        while (label_char(p[v]))
            v++;
        if (v == 0)
            return 0;
        p += v;
        if (*p == '\0')
            return 1;
        if (*p != ',')
            return 0;
        p++;
    }
}
