/*
 * `outlast agents`, `show NAME` and `history NAME`: ask the node, or with
 * --db run the same queries on a database file.  Either way the result is a
 * response map, printed as JSON or as tables; the node's `live` map (what
 * only the running process knows) is merged into the human output.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "record/ckpt.h"
#include "base/err.h"
#include "state/query.h"
#include "state/store.h"
#include "cli.h"

enum { Q_AGENTS, Q_SHOW, Q_HISTORY };

/* Run a query on the database file and wrap it as a response. */
static int offline(struct ol__cli *c, int which, const char *name,
                   uint32_t limit, const struct ol__agent_filter *f,
                   struct ol__cli_resp *r)
{
    char err[OL_ERRMSG_SIZE] = "";
    struct ol__store st;
    struct ol__buf b;
    msgpack_packer pk;
    int rv;

    rv = ol__cli_open_db(c, &st);
    if (rv != 0)
        return rv;
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    if (which == Q_AGENTS)
        rv = ol__query_agents(st.db, &pk, f, err);
    else if (which == Q_SHOW)
        rv = ol__query_show(st.db, name, &pk, err);
    else
        rv = ol__query_history(st.db, name, limit, &pk, err);
    ol__store_close(&st);
    if (rv != 0) {
        ol__buf_close(&b);
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv), "%s: %s (%s)",
                            c->cmd, err, ol_err_name(rv));
    }
    /* The same shape as the node's answer, so --json prints the same. */
    rv = ol__cli_resp_wrap(r, which == Q_AGENTS ? "agents"
                              : which == Q_SHOW ? "agent"
                                                : "history",
                           b.base, b.len, err);
    ol__buf_close(&b);
    if (rv != 0)
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv), "%s: %s",
                            c->cmd, err);
    return 0;
}

/* ---- agents ---- */

static void status_cell(const msgpack_object *row, const msgpack_object *lv,
                        char *out, size_t cap)
{
    char st[64];

    ol__mp_gets(row, "status", st, sizeof st);
    if (ol__mp_getb(lv, "degraded"))
        snprintf(out, cap, "%s, degraded", st);
    else
        snprintf(out, cap, "%s", st);
}

static int print_agents(const struct ol__cli_resp *r)
{
    static const char *const head_live[] = {
        "NAME", "KIND", "STATUS", "OWNER", "EPOCH", "SEQ",
        "LAST CHECKPOINT", "HASH", "MAILBOX", "QUEUED", "REASON",
    };
    static const char *const head[] = {
        "NAME", "KIND", "STATUS", "OWNER", "EPOCH", "SEQ",
        "LAST CHECKPOINT", "HASH", "MAILBOX", "REASON",
    };
    const msgpack_object *rows = ol__mp_get(r->root, "agents");
    const msgpack_object *live = ol__mp_get(r->root, "live");
    struct ol__table t;
    size_t ncols = live ? 11 : 10;

    if (rows == NULL || rows->type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "outlast: agents: the response has no agent list\n");
        return OL_EXIT_FAIL;
    }
    if (rows->via.array.size == 0) {
        printf("no agents\n");
        return 0;
    }
    if (ol__table_init(&t, ncols, live ? head_live : head) != 0)
        return OL_EXIT_FAIL;
    for (uint32_t i = 0; i < rows->via.array.size; i++) {
        const msgpack_object *a = &rows->via.array.ptr[i];
        char name[128], kind[128], status[96], owner[32], epoch[32], seq[32];
        char time[96], hash[80], shorth[16], mail[32], queued[32];
        char reason[256];
        const msgpack_object *lv;
        const char *cells[11];
        size_t k = 0;

        ol__mp_gets(a, "name", name, sizeof name);
        lv = ol__mp_get(live, name);
        status_cell(a, lv, status, sizeof status);
        cells[k++] = name;
        cells[k++] = ol__mp_gets(a, "kind", kind, sizeof kind);
        cells[k++] = status;
        cells[k++] = ol__mp_gets(a, "owner", owner, sizeof owner);
        cells[k++] = ol__mp_gets(a, "epoch", epoch, sizeof epoch);
        cells[k++] = ol__mp_gets(a, "seq", seq, sizeof seq);
        cells[k++] = ol__cli_time(ol__mp_geti(a, "time_ms"), time,
                                  sizeof time);
        ol__mp_gets(a, "hash", hash, sizeof hash);
        cells[k++] = ol__cli_short(hash, shorth, sizeof shorth);
        cells[k++] = ol__mp_gets(a, "mailbox", mail, sizeof mail);
        if (live)
            cells[k++] = lv ? ol__mp_gets(lv, "queued", queued,
                                          sizeof queued)
                            : "-";
        ol__mp_gets(a, "reason", reason, sizeof reason);
        cells[k++] = reason;
        ol__table_add(&t, cells);
    }
    ol__table_print(&t, stdout);
    ol__table_free(&t);
    return 0;
}

/* A page asked for `keep` rows and got up to one more, which says there
 * is a next page: drop it, and name the last row kept. */
static int trim_page(struct ol__cli_resp *r, uint32_t keep, char *last,
                     size_t cap)
{
    msgpack_object *rows = (msgpack_object *)ol__mp_get(r->root, "agents");

    if (rows == NULL || rows->type != MSGPACK_OBJECT_ARRAY ||
        rows->via.array.size <= keep)
        return 0;
    rows->via.array.size = keep;
    ol__mp_gets(&rows->via.array.ptr[keep - 1], "name", last, cap);
    return 1;
}

/* Ask the node for a page of agents through filter `f`. */
static int ask_agents(struct ol__cli *c, const struct ol__agent_filter *f,
                      const char *status, struct ol__cli_resp *r)
{
    struct ol__cli_req q;

    ol__cli_req_open(&q, "agents");
    if (f->all)
        ol__pk_kv_bool(&q.m, "all", 1);
    if (f->status)
        ol__pk_kv_str(&q.m, "status", status);
    if (f->kind)
        ol__pk_kv_str(&q.m, "kind", f->kind);
    if (f->owner)
        ol__pk_kv_uint(&q.m, "owner", f->owner);
    if (f->prefix)
        ol__pk_kv_str(&q.m, "prefix", f->prefix);
    if (f->after)
        ol__pk_kv_str(&q.m, "after", f->after);
    if (f->limit)
        ol__pk_kv_uint(&q.m, "limit", f->limit);
    return ol__cli_req_send(c, &q, r);
}

int ol__cmd_agents(struct ol__cli *c)
{
    struct ol__cli_resp r;
    struct ol__agent_filter f;
    const char *pos[1], *status = NULL, *owner = NULL, *limit = NULL;
    int all = 0;
    const struct ol__cli_opt opts[] = {
        {.name = "--all", .flag = &all},
        {.name = "--status", .value = &status},
        {.name = "--kind", .value = &f.kind},
        {.name = "--owner", .value = &owner},
        {.name = "--prefix", .value = &f.prefix},
        {.name = "--after", .value = &f.after},
        {.name = "--limit", .value = &limit},
        {0},
    };
    char next[OL_NAME_MAX + 1] = "";
    uint64_t v;
    int n, rv, more = 0;

    memset(&f, 0, sizeof f);
    if ((rv = ol__cli_parse(c, opts, pos, 0, 0, &n)) != 0)
        return rv;
    f.all = all;
    if (status && (f.status = ol__status_parse(status)) == 0)
        return ol__cli_usage_err(c, "--status must be running, stopping, "
                                    "stopped, quarantined or removed");
    if (owner) {
        if (ol__cli_parse_u64(owner, UINT64_MAX, &v) != 0 || v == 0)
            return ol__cli_usage_err(c, "--owner must be a node id");
        f.owner = v;
    }
    if (limit) {
        if (ol__cli_parse_u64(limit, UINT32_MAX - 1, &v) != 0 || v == 0)
            return ol__cli_usage_err(c, "--limit must be 1 or more");
        /* One more than asked: whether there is a next page. */
        f.limit = (uint32_t)v + 1;
    }
    if ((f.kind && strlen(f.kind) > OL_KIND_MAX) ||
        (f.prefix && strlen(f.prefix) > OL_NAME_MAX) ||
        (f.after && strlen(f.after) > OL_NAME_MAX))
        return ol__cli_usage_err(c, "--kind, --prefix and --after take at "
                                    "most %d bytes",
                                 OL_NAME_MAX);
    if (c->db_set)
        rv = offline(c, Q_AGENTS, NULL, 0, &f, &r);
    else
        rv = ask_agents(c, &f, status, &r);
    if (rv != 0)
        return rv;
    if (f.limit)
        more = trim_page(&r, f.limit - 1, next, sizeof next);
    rv = c->json ? ol__cli_print_json(r.root) : print_agents(&r);
    if (rv == 0 && more && !c->json)
        printf("(more: outlast agents --after %s, with the same filters)\n",
               next);
    ol__cli_resp_free(&r);
    return rv;
}

/* ---- show ---- */

static void line(const char *key, const char *value)
{
    printf("%-9s %s\n", key, value[0] ? value : "-");
}

static void print_json_field(const char *key, const msgpack_object *v)
{
    char *s = v ? ol__cli_compact_json(v) : NULL;

    if (s && strlen(s) <= 60) {
        line(key, s);
    } else if (v) {
        printf("%s:\n", key);
        ol__cli_print_json(v);
    } else {
        line(key, "-");
    }
    free(s);
}

static void print_timers(const msgpack_object *timers)
{
    char due[96], text[160];

    if (timers == NULL || timers->type != MSGPACK_OBJECT_ARRAY ||
        timers->via.array.size == 0) {
        line("timers", "none");
        return;
    }
    for (uint32_t i = 0; i < timers->via.array.size; i++) {
        const msgpack_object *t = &timers->via.array.ptr[i];
        char id[32] = "?";
        int64_t ms = 0;

        if (t->type == MSGPACK_OBJECT_ARRAY && t->via.array.size == 2) {
            ol__mp_text(&t->via.array.ptr[0], id, sizeof id);
            if (t->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                ms = (int64_t)t->via.array.ptr[1].via.u64;
        }
        snprintf(text, sizeof text, "#%s due %s", id,
                 ol__cli_time(ms, due, sizeof due));
        line(i == 0 ? "timers" : "", text);
    }
}

static int print_show(const struct ol__cli_resp *r)
{
    const msgpack_object *a = ol__mp_get(r->root, "agent");
    const msgpack_object *lv = ol__mp_get(r->root, "live");
    const msgpack_object *pl;
    char v[512], w[512], x[128], y[16], text[1024];

    if (a == NULL || a->type != MSGPACK_OBJECT_MAP) {
        fprintf(stderr, "outlast: show: the response has no agent\n");
        return OL_EXIT_FAIL;
    }
    line("name", ol__mp_gets(a, "name", v, sizeof v));
    line("kind", ol__mp_gets(a, "kind", v, sizeof v));
    status_cell(a, lv, v, sizeof v);
    line("status", v);
    ol__mp_gets(a, "reason", v, sizeof v);
    if (v[0] && strcmp(v, "-") != 0)
        line("reason", v);
    snprintf(text, sizeof text, "node %s, epoch %s",
             ol__mp_gets(a, "owner", v, sizeof v),
             ol__mp_gets(a, "epoch", w, sizeof w));
    line("owner", text);
    if (lv) {
        snprintf(text, sizeof text, "%s, phase %s, %s queued",
                 ol__mp_getb(lv, "local") ? "runs here" : "runs elsewhere",
                 ol__mp_gets(lv, "phase", v, sizeof v),
                 ol__mp_gets(lv, "queued", w, sizeof w));
        line("live", text);
    }
    line("seq", ol__mp_gets(a, "seq", v, sizeof v));
    line("time", ol__cli_time(ol__mp_geti(a, "time_ms"), v, sizeof v));
    line("hash", ol__mp_gets(a, "hash", v, sizeof v));
    line("signer", ol__mp_gets(a, "signer", v, sizeof v));
    pl = ol__mp_get(a, "plugin");
    if (pl && pl->type == MSGPACK_OBJECT_MAP) {
        snprintf(text, sizeof text, "%s %s (so %s)",
                 ol__mp_gets(pl, "kind", v, sizeof v),
                 ol__mp_gets(pl, "version", w, sizeof w),
                 ol__cli_short(ol__mp_gets(pl, "so_hash", x, sizeof x), y,
                               sizeof y));
        line("plugin", text);
    }
    snprintf(text, sizeof text, "%s waiting",
             ol__mp_gets(a, "mailbox", v, sizeof v));
    line("mailbox", text);
    print_timers(ol__mp_get(a, "timers"));
    print_json_field("config", ol__mp_get(a, "config"));
    print_json_field("state", ol__mp_get(a, "state"));
    return 0;
}

int ol__cmd_show(struct ol__cli *c)
{
    struct ol__cli_resp r;
    const char *pos[1];
    int n, rv;

    if ((rv = ol__cli_parse(c, NULL, pos, 1, 1, &n)) != 0)
        return rv;
    if ((rv = ol__cli_check_name(c, pos[0])) != 0)
        return rv;
    rv = c->db_set ? offline(c, Q_SHOW, pos[0], 0, NULL, &r)
                   : ol__cli_call_simple(c, "show", pos[0], &r);
    if (rv != 0)
        return rv;
    rv = c->json ? ol__cli_print_json(r.root) : print_show(&r);
    ol__cli_resp_free(&r);
    return rv;
}

/* ---- history ---- */

static int print_history(const struct ol__cli_resp *r)
{
    static const char *const head[] = {
        "SEQ", "EPOCH", "TIME", "HASH", "PREV", "SIGNER",
        "SIZE", "OUT", "ACKS", "FLAGS",
    };
    const msgpack_object *rows = ol__mp_get(r->root, "checkpoints");
    const msgpack_object *h = ol__mp_get(r->root, "history");
    struct ol__table t;
    uint32_t errors = 0;

    if (rows == NULL && h) /* tolerate {"history": {...}} */
        rows = ol__mp_get(h, "checkpoints");
    if (rows == NULL || rows->type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "outlast: history: the response has no "
                        "checkpoints\n");
        return OL_EXIT_FAIL;
    }
    if (rows->via.array.size == 0) {
        printf("no checkpoints\n");
        return 0;
    }
    if (ol__table_init(&t, 10, head) != 0)
        return OL_EXIT_FAIL;
    for (uint32_t i = 0; i < rows->via.array.size; i++) {
        const msgpack_object *k = &rows->via.array.ptr[i];
        char seq[32], epoch[32], time[96], hx[3][80], sh[3][16], size[32];
        char out[32], acks[32], flags[64] = "";
        const char *cells[10];

        if (ol__mp_getb(k, "final"))
            strcat(flags, "final ");
        if (ol__mp_getb(k, "snapshot"))
            strcat(flags, "snapshot ");
        if (ol__mp_getb(k, "new_history"))
            strcat(flags, "new-history ");
        if (ol__mp_getb(k, "recovered"))
            strcat(flags, "recovered ");
        if (ol__mp_get(k, "error")) {
            strcat(flags, "undecodable ");
            errors++;
        }
        if (flags[0])
            flags[strlen(flags) - 1] = '\0';
        cells[0] = ol__mp_gets(k, "seq", seq, sizeof seq);
        cells[1] = ol__mp_gets(k, "epoch", epoch, sizeof epoch);
        cells[2] = ol__cli_time(ol__mp_geti(k, "time_ms"), time, sizeof time);
        cells[3] = ol__cli_short(ol__mp_gets(k, "hash", hx[0], 80), sh[0], 16);
        cells[4] = ol__cli_short(ol__mp_gets(k, "prev_hash", hx[1], 80),
                                 sh[1], 16);
        cells[5] = ol__cli_short(ol__mp_gets(k, "signer", hx[2], 80), sh[2],
                                 16);
        cells[6] = ol__mp_gets(k, "size", size, sizeof size);
        cells[7] = ol__mp_gets(k, "outbox", out, sizeof out);
        cells[8] = ol__mp_gets(k, "acks", acks, sizeof acks);
        cells[9] = flags;
        ol__table_add(&t, cells);
    }
    ol__table_print(&t, stdout);
    ol__table_free(&t);
    if (errors)
        printf("%u checkpoint(s) do not decode; run 'outlast verify'\n",
               errors);
    return 0;
}

int ol__cmd_history(struct ol__cli *c)
{
    const char *limit_s = NULL, *pos[1];
    const struct ol__cli_opt opts[] = {
        {.name = "--limit", .value = &limit_s},
        {0},
    };
    struct ol__cli_resp r;
    struct ol__cli_req q;
    uint64_t limit = 0;
    int n, rv;

    if ((rv = ol__cli_parse(c, opts, pos, 1, 1, &n)) != 0)
        return rv;
    if ((rv = ol__cli_check_name(c, pos[0])) != 0)
        return rv;
    if (limit_s && ol__cli_parse_u64(limit_s, UINT32_MAX, &limit) != 0)
        return ol__cli_usage_err(c, "--limit must be a whole number, not "
                                    "'%s'", limit_s);
    if (c->db_set) {
        rv = offline(c, Q_HISTORY, pos[0], (uint32_t)limit, NULL, &r);
    } else {
        ol__cli_req_open(&q, "history");
        ol__pk_kv_str(&q.m, "name", pos[0]);
        if (limit_s)
            ol__pk_kv_uint(&q.m, "limit", (uint32_t)limit);
        rv = ol__cli_req_send(c, &q, &r);
    }
    if (rv != 0)
        return rv;
    rv = c->json ? ol__cli_print_json(r.root) : print_history(&r);
    ol__cli_resp_free(&r);
    return rv;
}
