/*
 * Configuration keys about where things run: a node's `role` ([cluster]
 * and [peer.ID]) and an agent's `prefer` and `avoid` ([agent.NAME]).
 * Once the file is read, a role becomes the node's `role=` label (the
 * replicated roster carries it there: replication/placement.h) and an
 * affinity becomes the "prefer"/"avoid" keys of the agent's config, where
 * the leader's placement reads them.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "replication/placement.h"

/* The first problem of a parse is the one reported (config_keys.c). */
#define REFUSE(p, ...)                                                     \
    do {                                                                   \
        if ((p)->err[0] == '\0')                                           \
            snprintf((p)->err, sizeof (p)->err, __VA_ARGS__);              \
        return 0;                                                          \
    } while (0)

int ol__config_role_key(struct parse *p, int *out, const char *where,
                        const char *value)
{
    int r = ol__role_parse(value);

    if (r < 0)
        REFUSE(p, "%s role must be voter, witness or standby, not '%.40s'",
               where, value);
    *out = r;
    return 1;
}

int ol__config_affinity_key(struct parse *p, struct ol__config_agent *a,
                            const char *name, const char *value)
{
    int prefer = strcmp(name, "prefer") == 0;

    if (!prefer && strcmp(name, "avoid") != 0)
        return -1;
    if (strlen(value) > OL_LABELS_MAX || !ol__label_list_valid(value))
        REFUSE(p, "[agent.%s] %s must be labels k=v,k=v (letters, digits, "
                  "_ . -), not '%.60s'",
               a->name, name, value);
    snprintf(prefer ? a->prefer : a->avoid, sizeof a->prefer, "%s", value);
    return 1;
}

/* Fold `role` into `labels` as its role= item (the replicated roster
 * carries it there: placement.h).  A role= label written by hand is
 * refused: the role key says it. */
static int fold_role(char *labels, size_t lcap, int role, const char *where,
                     char *err, size_t cap)
{
    char tmp[OL_LABELS_MAX + 1];
    char v[32];

    ol__label_get(labels, "role", v, sizeof v);
    if (v[0]) {
        snprintf(err, cap,
                 "%s labels hold 'role=%s': set the role with the 'role' key "
                 "(voter, witness or standby), not as a label",
                 where, v);
        return -1;
    }
    if (ol__labels_with_role(labels, role, tmp, sizeof tmp) != 0 ||
        strlen(tmp) >= lcap) {
        snprintf(err, cap, "%s labels are too long to add role=%s", where,
                 ol__role_name(role));
        return -1;
    }
    memcpy(labels, tmp, strlen(tmp) + 1);
    return 0;
}

static int check_roles(struct ol__config *c, char *err, size_t cap)
{
    char where[48];

    if (fold_role(c->labels, sizeof c->labels, c->role, "[node]", err, cap))
        return -1;
    for (uint32_t i = 0; i < c->n_peers; i++) {
        snprintf(where, sizeof where, "[peer.%llu]",
                 (unsigned long long)c->peers[i].id);
        if (fold_role(c->peers[i].labels, sizeof c->peers[i].labels,
                      c->peers[i].role, where, err, cap))
            return -1;
    }
    return 0;
}

/* An [agent.NAME]'s prefer and avoid go into its config object, where
 * the leader's placement reads them (they travel in the SPAWN's config). */
static int fold_affinity(struct ol__config_agent *a, char *err, size_t cap)
{
    json_error_t je;
    json_t *o;
    char *s;

    if (!a->prefer[0] && !a->avoid[0])
        return 0;
    o = json_loads(a->config_json ? a->config_json : "{}", 0, &je);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        snprintf(err, cap, "[agent.%s] config must be a JSON object",
                 a->name);
        return -1;
    }
    if (a->prefer[0])
        json_object_set_new(o, "prefer", json_string(a->prefer));
    if (a->avoid[0])
        json_object_set_new(o, "avoid", json_string(a->avoid));
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s == NULL) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    free(a->config_json);
    a->config_json = strdup(s);
    free(s);
    if (a->config_json == NULL) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    return 0;
}

int ol__config_fold_placement(struct ol__config *c, char *err, size_t cap)
{
    if (check_roles(c, err, cap) != 0)
        return -1;
    for (uint32_t i = 0; i < c->n_agents; i++)
        if (fold_affinity(&c->agents[i], err, cap) != 0)
            return -1;
    return 0;
}
