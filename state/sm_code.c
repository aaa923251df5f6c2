/*
 * Which build of each plugin every node runs (table code): nodes report
 * the build they load with a CODE command, and `outlast upgrade` reports
 * it as wanted (node 0 in the table).  Placement reads it: once a build
 * is wanted, agents of that kind are only ever placed on nodes that run
 * it, so a rolling upgrade never moves an agent back to old code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "sm_int.h"

static struct ol__sm_code *find(const struct ol__sm *sm, const char *kind,
                                uint64_t node)
{
    for (size_t i = 0; i < sm->n_code; i++)
        if (sm->code[i].node == node && strcmp(sm->code[i].kind, kind) == 0)
            return &sm->code[i];
    return NULL;
}

const struct ol__sm_code *ol__sm_code(const struct ol__sm *sm,
                                      const char *kind, uint64_t node)
{
    return find(sm, kind, node);
}

int ol__sm_code_ok(const struct ol__sm *sm, const char *kind, uint64_t node)
{
    const struct ol__sm_code *want = find(sm, kind, 0), *has;

    if (want == NULL)
        return 1;
    has = find(sm, kind, node);
    return has && memcmp(has->hash, want->hash, OL_HASH_SIZE) == 0;
}

static int cache(struct ol__sm *sm, const struct ol__sm_code *c)
{
    struct ol__sm_code *e = find(sm, c->kind, c->node);

    if (e == NULL) {
        e = realloc(sm->code, (sm->n_code + 1) * sizeof *e);
        if (e == NULL)
            return OL_ENOMEM;
        sm->code = e;
        e = &sm->code[sm->n_code++];
    }
    *e = *c;
    return 0;
}

static int put(struct ol__sm *sm, const struct ol__sm_code *c)
{
    sqlite3_stmt *st = sm->stmt[ST_CODE_PUT];

    sqlite3_bind_text(st, 1, c->kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c->node);
    sqlite3_bind_blob(st, 3, c->hash, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, c->version, -1, SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    return cache(sm, c);
}

int ol__sm_apply_code(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    struct ol__sm_code e;

    if (ol__sm_node(sm, c->node_id) == NULL) {
        ol__fx_cmd(fx, c, OL_EINVAL, "not a node of this cluster");
        return 0;
    }
    memset(&e, 0, sizeof e);
    snprintf(e.kind, sizeof e.kind, "%s", c->kind);
    memcpy(e.hash, c->hash, OL_HASH_SIZE);
    snprintf(e.version, sizeof e.version, "%s", c->version);
    e.node = c->node_id;
    if (put(sm, &e) != 0)
        return OL_EIO;
    if (c->wanted) {
        e.node = 0;
        if (put(sm, &e) != 0)
            return OL_EIO;
    }
    ol__fx_cmd(fx, c, 0, NULL);
    /* The outcome names the kind when a build was asked for, so every
     * node can say which build it runs. */
    if (c->wanted && fx->tail && fx->tail->type == OL_FX_CMD)
        snprintf(fx->tail->u.cmd.name, sizeof fx->tail->u.cmd.name, "%s",
                 c->kind);
    return 0;
}

int ol__sm_load_code(struct ol__sm *sm)
{
    sqlite3_stmt *st;
    int rv = ol__store_prepare(sm->st,
                               "SELECT kind, node, hash, version FROM code",
                               &st);

    if (rv != 0)
        return rv;
    free(sm->code);
    sm->code = NULL;
    sm->n_code = 0;
    while (rv == 0 && sqlite3_step(st) == SQLITE_ROW) {
        struct ol__sm_code e;

        memset(&e, 0, sizeof e);
        if (sqlite3_column_bytes(st, 2) != OL_HASH_SIZE)
            continue;
        snprintf(e.kind, sizeof e.kind, "%s", sqlite3_column_text(st, 0));
        e.node = (uint64_t)sqlite3_column_int64(st, 1);
        memcpy(e.hash, sqlite3_column_blob(st, 2), OL_HASH_SIZE);
        snprintf(e.version, sizeof e.version, "%s",
                 sqlite3_column_text(st, 3));
        rv = cache(sm, &e);
    }
    sqlite3_finalize(st);
    return rv;
}
