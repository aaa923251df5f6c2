/*
 * Bulk forms of `spawn`, `stop` and `start`: many agents in one request
 * ("spawn_many", "stop_many", "start_many"), which the node commits in few
 * log entries.  The names are a list, or for spawn a prefix and a count
 * (PREFIX0 .. PREFIX<count-1>, no zero padding), or for stop and start a
 * prefix the node matches against its agents (--all: every agent).
 * Each name gets the checks a single request gets, on the node: a bad
 * name, an agent that exists, is an error for that name only.  The answer
 * is one line per agent and a summary; the exit status is 1 when any
 * agent failed.  Without --timeout, the wait grows by 20 ms per agent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"
#include "base/sizes.h"
#include "cli.h"

/* As the node's limit (runtime/handlers_int.h, OL_BULK_MAX). */
#define BULK_MAX 100000u

/* Pack the names: the list, or PREFIX0 .. PREFIX<count-1>. */
static int pack_names(struct ol__cli *c, const struct ol__cli_bulk *a,
                      struct ol__cli_req *q)
{
    char name[OL_NAME_MAX * 2 + 24];
    uint64_t count = 0;

    if (a->count == NULL) {
        ol__pk_key(&q->m, "names");
        msgpack_pack_array(&q->pk, (uint32_t)a->n_names);
        for (int i = 0; i < a->n_names; i++)
            ol__pk_str(&q->pk, a->names[i]);
        return 0;
    }
    if (ol__cli_parse_u64(a->count, BULK_MAX, &count) != 0 || count == 0)
        return ol__cli_usage_err(c, "--count must be a whole number from 1 "
                                    "to %u",
                                 BULK_MAX);
    ol__pk_key(&q->m, "names");
    msgpack_pack_array(&q->pk, (uint32_t)count);
    for (uint64_t i = 0; i < count; i++) {
        snprintf(name, sizeof name, "%s%llu", a->prefix,
                 (unsigned long long)i);
        ol__pk_str(&q->pk, name);
    }
    return 0;
}

/* Which agents: names, or a prefix (and a count for spawn), or --all. */
static int check_targets(struct ol__cli *c, const struct ol__cli_bulk *a)
{
    int spawn = strcmp(a->op, "spawn") == 0;

    if (a->n_names > 0 && (a->prefix || a->all))
        return ol__cli_usage_err(c, "give names or --prefix%s, not both",
                                 spawn ? "" : "/--all");
    if (spawn && (a->prefix != NULL) != (a->count != NULL))
        return ol__cli_usage_err(c, "--prefix and --count go together");
    if (spawn && a->n_names == 0 && a->prefix == NULL)
        return ol__cli_usage_err(c, "missing agent names");
    if (!spawn && a->n_names == 0 && a->prefix == NULL && !a->all)
        return ol__cli_usage_err(c, "missing agent names (or --prefix P, "
                                    "or --all)");
    if (!spawn && a->prefix && a->prefix[0] == '\0' && !a->all)
        return ol__cli_usage_err(c, "an empty --prefix matches every agent; "
                                    "say --all to mean that");
    if ((size_t)a->n_names > BULK_MAX)
        return ol__cli_usage_err(c, "%d names; at most %u per request",
                                 a->n_names, BULK_MAX);
    return 0;
}

/* One line per agent, then the counts. */
static int print_results(const struct ol__cli_bulk *a,
                         const msgpack_object *root)
{
    const msgpack_object *res = ol__mp_get(root, "results");
    char name[128], st[64], owner[32], epoch[32], err[512];
    uint64_t ok = ol__mp_getu(root, "succeeded");
    uint64_t bad = ol__mp_getu(root, "failed");

    if (res == NULL || res->type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "outlast: %s: the response has no results\n", a->op);
        return OL_EXIT_FAIL;
    }
    for (uint32_t i = 0; i < res->via.array.size; i++) {
        const msgpack_object *m = &res->via.array.ptr[i];

        ol__mp_gets(m, "name", name, sizeof name);
        if (ol__mp_getb(m, "ok"))
            printf("ok     %s: %s (owner %s, epoch %s)\n", name,
                   ol__mp_gets(m, "status", st, sizeof st),
                   ol__mp_gets(m, "owner", owner, sizeof owner),
                   ol__mp_gets(m, "epoch", epoch, sizeof epoch));
        else
            printf("error  %s: %s\n", name,
                   ol__mp_gets(m, "error", err, sizeof err));
    }
    printf("%s: %llu of %u agent(s) ok, %llu failed\n", a->op,
           (unsigned long long)ok, res->via.array.size,
           (unsigned long long)bad);
    return bad ? OL_EXIT_FAIL : 0;
}

int ol__cli_bulk(struct ol__cli *c, const struct ol__cli_bulk *a)
{
    struct ol__cli_resp r;
    struct ol__cli_req q;
    char op[24];
    int rv, bad = 0;

    if ((rv = check_targets(c, a)) != 0)
        return rv;
    snprintf(op, sizeof op, "%s_many", a->op);
    ol__cli_req_open(&q, op);
    if (a->rid)
        ol__pk_kv_str(&q.m, "request_id", a->rid);
    if (a->kind)
        ol__pk_kv_str(&q.m, "kind", a->kind);
    if (a->config) {
        ol__pk_key(&q.m, "config");
        bad = ol__json_pack(a->config, &q.pk);
    }
    if (strcmp(a->op, "spawn") == 0 || a->n_names > 0)
        rv = pack_names(c, a, &q);
    else if (a->prefix)
        ol__pk_kv_str(&q.m, "prefix", a->prefix);
    if (a->all)
        ol__pk_kv_bool(&q.m, "all", 1);
    if (a->no_wait)
        ol__pk_kv_bool(&q.m, "no_wait", 1);
    /* Every agent's first (or final) checkpoint takes its time: the
     * default timeout grows by 20 ms per agent named. */
    if (c->timeout_ms == OL_CLI_TIMEOUT_MS)
        c->timeout_ms += 20 * (a->count ? (int)strtol(a->count, NULL, 10)
                                        : a->n_names);
    if (rv != 0 || bad) {
        ol__buf_close(&q.b);
        return rv ? rv : ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM",
                                      "out of memory");
    }
    if ((rv = ol__cli_req_send(c, &q, &r)) != 0)
        return rv;
    if (c->json) {
        rv = ol__cli_print_json(r.root);
        if (rv == 0 && ol__mp_getu(r.root, "failed"))
            rv = OL_EXIT_FAIL;
    } else {
        rv = print_results(a, r.root);
    }
    ol__cli_resp_free(&r);
    return rv;
}
