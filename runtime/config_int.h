/*
 * What the config reader's files share: the state of one parse.
 * config_read.c feeds inih the file a line at a time, config_keys.c
 * takes each key, and config.c checks the whole and loads it.
 */
#ifndef OL_CONFIG_INT_H
#define OL_CONFIG_INT_H

#include <stddef.h>

#include "base/map.h"
#include "config.h"

/* A key or section seen so far, to report repeats with both lines. */
struct seen {
    char name[OL_CONFIG_NAME_MAX + 1]; /* "section" or "section\nkey" */
    int line;
};

struct parse {
    struct ol__config *c;
    int named; /* [node] name was given */
    char err[200]; /* first problem; inih supplies the line */
    int err_line;  /* a problem found by the reader, at this line */
    /* The file, fed to inih one line per call (feed()). */
    const char *pos, *end;
    int line;
    char section[OL_CONFIG_NAME_MAX + 1];
    struct seen *seen;
    size_t n_seen, cap_seen;
    /* Lookups by name, so a config of many thousands of sections reads
     * in linear time: seen[] and c->agents[] indexes plus one, rebuilt
     * when the arrays move. */
    struct ol__map seen_by_name;
    struct ol__map agent_by_name;
    uint32_t cap_agents;
    /* Values of lines too long for inih's line buffer, by slot. */
    char **longv;
    size_t n_longv;
};

#define LONG_MARK '\x01' /* "<mark><slot>" stands for a long value */

/* config_read.c: inih's reader (one whole line per call). */
char *ol__config_feed(char *out, int cap, void *stream);
/* Record `name` (a section, or "section\nkey"); a repeat is an error. */
int ol__config_seen(struct parse *p, const char *name, const char *what);
/* Rebuild `m` over `n` elements of `size` bytes at `base`, each keyed by
 * the string at its start, values index + 1.  Returns 0 or -1. */
int ol__config_index(struct ol__map *m, const void *base, size_t size,
                     size_t n);
/* A value as inih would have it: leading blanks, an inline comment (';'
 * after a blank) and trailing blanks removed. */
char *ol__config_value_trim(char *v);

/* config_place.c: where nodes and agents may run.  `role = voter |
 * witness | standby` into *out (`where` names the section in errors);
 * an agent's `prefer`/`avoid` (-1: not one of those).  Both return 1, or
 * 0 with p->err set. */
int ol__config_role_key(struct parse *p, int *out, const char *where,
                        const char *value);
int ol__config_affinity_key(struct parse *p, struct ol__config_agent *a,
                            const char *name, const char *value);
/* Once the file is read: fold roles into labels, and affinities into the
 * agents' configs.  Returns 0, or -1 with err set. */
int ol__config_fold_placement(struct ol__config *c, char *err, size_t cap);

/* config_keys.c: inih's handler, one key at a time. */
int ol__config_key(void *user, const char *section, const char *name,
                   const char *value);

#endif
