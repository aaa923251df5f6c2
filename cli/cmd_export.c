/*
 * `outlast export`: copy an agent's (or every agent's) history out of a
 * node's database.  A bundle is a new SQLite file with the node schema
 * holding the checkpoints, the seals they reference, the agents rows and
 * the nodes table (never the meta table: it holds the node's key), so
 * `outlast verify --db BUNDLE` checks it exactly as it checks a node.
 * With --json and no --out the history is printed with every state
 * decoded.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record/ckpt.h"
#include "base/err.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mpr.h"
#include "cli.h"

static int run_sql(sqlite3 *db, const char *sql, const char *agent,
                   char *errmsg);

/* What is copied, in order: seals after checkpoints, so that only the
 * seals the copied checkpoints reference are taken.  ?1 is the agent, or
 * NULL for all.  Columns are those the two schemas share (see
 * shared_columns), so a column added to the schema later is carried too. */
static const struct copy {
    const char *table;
    const char *where;
} copies[] = {
    {"nodes", "1"},
    {"agents", "?1 IS NULL OR name = ?1"},
    {"checkpoints", "?1 IS NULL OR agent = ?1"},
    {"seals", "id IN (SELECT seal FROM main.checkpoints)"},
    {"evidence", "?1 IS NULL OR agent = ?1"},
    {NULL, NULL},
};

/* The quoted columns of `table` present in both main and src, as
 * "a", "b", ... (sqlite3_malloc'd). */
static char *shared_columns(sqlite3 *db, const char *table, char *errmsg)
{
    sqlite3_stmt *st;
    char *cols = NULL;
    const unsigned char *t;

    if (sqlite3_prepare_v2(db,
                           "SELECT group_concat('\"' || replace(m.name, '\"',"
                           " '\"\"') || '\"', ', ')"
                           " FROM pragma_table_info(?1, 'main') m"
                           " WHERE m.name IN"
                           " (SELECT name FROM pragma_table_info(?1, 'src'))",
                           -1, &st, NULL) != SQLITE_OK) {
        ol__errf(errmsg, "%s", sqlite3_errmsg(db));
        return NULL;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && (t = sqlite3_column_text(st, 0)))
        cols = sqlite3_mprintf("%s", t);
    else
        ol__errf(errmsg, "table '%s' has no columns in common", table);
    sqlite3_finalize(st);
    return cols;
}

static int copy_table(sqlite3 *db, const struct copy *c, const char *agent,
                      char *errmsg)
{
    char *cols = shared_columns(db, c->table, errmsg), *sql;
    int rv;

    if (cols == NULL)
        return OL_EIO;
    sql = sqlite3_mprintf("INSERT INTO main.\"%w\"(%s) SELECT %s FROM"
                          " src.\"%w\" WHERE %s",
                          c->table, cols, cols, c->table, c->where);
    sqlite3_free(cols);
    if (sql == NULL) {
        ol__errf(errmsg, "out of memory");
        return OL_ENOMEM;
    }
    rv = run_sql(db, sql, agent, errmsg);
    sqlite3_free(sql);
    if (rv != 0)
        ol__errwrap(errmsg, "copy %s", c->table);
    return rv;
}

static int run_sql(sqlite3 *db, const char *sql, const char *agent,
                   char *errmsg)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ol__errf(errmsg, "%s", sqlite3_errmsg(db));
        return OL_EIO;
    }
    if (sqlite3_bind_parameter_count(st) >= 1) {
        if (agent)
            sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 1);
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        ol__errf(errmsg, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : OL_EIO;
}

static int count(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc;

    *out = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return OL_EIO;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : OL_EIO;
}

static int agent_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int found = 0;

    if (sqlite3_prepare_v2(db, "SELECT 1 FROM agents WHERE name = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

static void remove_bundle(const char *out)
{
    char p[PATH_MAX + 8];

    unlink(out);
    snprintf(p, sizeof p, "%s-wal", out);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", out);
    unlink(p);
}

/* Fill the new bundle at `out` from the database at c->db. */
static int fill_bundle(struct ol__cli *c, const char *agent, const char *out,
                       int64_t n[3], char *err)
{
    char scratch[OL_ERRMSG_SIZE], uri[PATH_MAX * 3 + 32];
    struct ol__store dst;
    sqlite3_stmt *st;
    int rv;

    rv = ol__store_create(&dst, out, OL_STORE_WRITE_FULL);
    if (rv != 0) {
        ol__errf(err, "%s", dst.errmsg);
        return rv;
    }
    /* Read-only: a crashed node's WAL must stay where it is (a read-write
     * attach would merge it into the database and delete it). */
    if (ol__store_ro_uri(c->db, uri, sizeof uri) != 0) {
        ol__errf(err, "database path '%s' is too long", c->db);
        ol__store_close(&dst);
        return OL_EINVAL;
    }
    rv = sqlite3_prepare_v2(dst.db, "ATTACH ? AS src", -1, &st, NULL);
    if (rv == SQLITE_OK) {
        sqlite3_bind_text(st, 1, uri, -1, SQLITE_STATIC);
        rv = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_finalize(st);
    }
    if (rv != SQLITE_OK) {
        ol__errf(err, "attach '%s': %s", c->db, sqlite3_errmsg(dst.db));
        ol__store_close(&dst);
        return OL_EIO;
    }
    rv = ol__store_begin(&dst);
    for (size_t i = 0; rv == 0 && copies[i].table; i++)
        rv = copy_table(dst.db, &copies[i], agent, err);
    /* A seal's live count is the number of checkpoints that use it. */
    if (rv == 0)
        rv = run_sql(dst.db,
                     "UPDATE main.seals SET live = (SELECT count(*) FROM"
                     " main.checkpoints k WHERE k.seal = seals.id)",
                     NULL, err);
    if (rv == 0)
        rv = ol__store_meta_set_int(&dst, "exported_ms", ol__wall_ms());
    /* A bundle holds some agents' chains, not a node's whole database. */
    if (rv == 0)
        rv = ol__store_meta_set_int(&dst, "bundle", 1);
    if (rv == 0)
        rv = ol__store_commit(&dst);
    if (rv != 0) {
        if (err[0] == '\0')
            ol__errf(err, "%s", dst.errmsg);
        ol__store_rollback(&dst);
    }
    if (rv == 0)
        rv = count(dst.db, "SELECT count(*) FROM main.agents", &n[0]) |
             count(dst.db, "SELECT count(*) FROM main.checkpoints", &n[1]) |
             count(dst.db, "SELECT count(*) FROM main.seals", &n[2]);
    run_sql(dst.db, "DETACH src", NULL, scratch);
    /* One self-contained file: leave WAL mode before closing. */
    if (rv == 0 && ol__store_exec(&dst, "PRAGMA journal_mode=DELETE;") != 0) {
        ol__errf(err, "%s", dst.errmsg);
        rv = OL_EIO;
    }
    ol__store_close(&dst);
    return rv ? (rv < 0 ? rv : OL_EIO) : 0;
}

static int export_bundle(struct ol__cli *c, const char *agent,
                         const char *out)
{
    char err[OL_ERRMSG_SIZE] = "";
    struct ol__store src;
    int64_t n[3];
    int rv, found;

    /* Opening the source first checks that it is an outlast database. */
    if ((rv = ol__cli_open_db(c, &src)) != 0)
        return rv;
    found = agent ? agent_exists(src.db, agent) : 1;
    ol__store_close(&src);
    if (found != 1)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOTFOUND",
                            "export: no agent '%s' in '%s'", agent, c->db);
    if (access(out, F_OK) == 0)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_EEXISTS",
                            "export: '%s' already exists (remove it or pick "
                            "another name)",
                            out);
    rv = fill_bundle(c, agent, out, n, err);
    if (rv != 0) {
        if (rv != OL_EEXISTS)
            remove_bundle(out);
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv),
                            "export: writing '%s': %s", out, err);
    }
    if (c->json) {
        json_t *j = json_pack("{s:b, s:s, s:I, s:I, s:I}", "ok", 1, "out",
                              out, "agents", (json_int_t)n[0], "checkpoints",
                              (json_int_t)n[1], "seals", (json_int_t)n[2]);

        (void)ol__cli_put_json(j);
    } else {
        printf("exported %" PRId64 " checkpoint%s of %" PRId64 " agent%s "
               "(%" PRId64 " seal%s) to '%s'\n",
               n[1], n[1] == 1 ? "" : "s", n[0], n[0] == 1 ? "" : "s", n[2],
               n[2] == 1 ? "" : "s", out);
    }
    return 0;
}

/* ---- --json: the history with decoded states ---- */

static json_t *hex_json(const void *p, size_t n)
{
    char buf[2 * 64 + 1];

    if (p == NULL || n > 64)
        return json_string("");
    ol__hex(p, n, buf);
    return json_string(buf);
}

static json_t *msgpack_json(const void *p, size_t n)
{
    char err[OL_ERRMSG_SIZE];
    json_t *j;

    if (ol__json_from_msgpack(p, n, &j, err) != 0)
        return json_pack("{s:s}", "$error", err);
    return j;
}

/* The result of an outcome: as JSON when it is msgpack, else its bytes in
 * hex beside a null result. */
static void result_json(json_t *o, const uint8_t *p, uint32_t n)
{
    char *hex;

    if (n && ol__mp_check(p, n, NULL) == 0) {
        json_object_set_new(o, "result", msgpack_json(p, n));
        json_object_set_new(o, "result_hex", json_null());
        return;
    }
    hex = malloc(2 * (size_t)n + 1);
    json_object_set_new(o, "result", json_null());
    if (hex)
        sodium_bin2hex(hex, 2 * (size_t)n + 1, p, n);
    json_object_set_new(o, "result_hex",
                        hex && n ? json_string(hex) : json_null());
    free(hex);
}

/* A checkpoint's open effects and the outcomes it records, added to `j`. */
static json_t *with_effects(json_t *j, const struct ol__ckpt *k)
{
    json_t *fx = json_array(), *out = json_array();
    char key[2 * OL_EFFECT_KEY_SIZE + 1];

    for (uint32_t i = 0; i < k->n_effects; i++) {
        const struct ol__intent *e = &k->effects[i];

        sodium_bin2hex(key, sizeof key, e->key, OL_EFFECT_KEY_SIZE);
        json_array_append_new(
            fx, json_pack("{s:I, s:s, s:s, s:I, s:I, s:o}", "id",
                          (json_int_t)e->id, "kind", e->kind, "key", key,
                          "seq", (json_int_t)e->seq, "idx",
                          (json_int_t)e->idx, "payload",
                          msgpack_json(e->payload, e->len)));
    }
    for (uint32_t i = 0; i < k->n_outcomes; i++) {
        const struct ol__outcome *o = &k->outcomes[i];
        json_t *r = json_pack("{s:I, s:I, s:s, s:I}", "seq",
                              (json_int_t)o->seq, "idx", (json_int_t)o->idx,
                              "status",
                              o->status == OL_EFFECT_DONE ? "done"
                                                          : "failed",
                              "attempts", (json_int_t)o->attempts);

        if (r)
            result_json(r, o->result, o->len);
        json_array_append_new(out, r);
    }
    if (j == NULL) {
        json_decref(fx);
        json_decref(out);
        return NULL;
    }
    json_object_set_new(j, "effects", fx);
    json_object_set_new(j, "outcomes", out);
    return j;
}

static json_t *ckpt_json(const struct ol__ckpt *k, sqlite3_stmt *st)
{
    char iso[40];
    json_t *timers = json_array(), *outbox = json_array(),
           *acks = json_array();

    for (uint32_t i = 0; i < k->n_timers; i++)
        json_array_append_new(timers,
                              json_pack("{s:I, s:I}", "id",
                                        (json_int_t)k->timers[i].id, "due_ms",
                                        (json_int_t)k->timers[i].due_ms));
    for (uint32_t i = 0; i < k->n_outbox; i++)
        json_array_append_new(outbox,
                              json_pack("{s:s, s:o}", "to", k->outbox[i].to,
                                        "message",
                                        msgpack_json(k->outbox[i].data,
                                                     k->outbox[i].len)));
    for (uint32_t i = 0; i < k->n_acks; i++)
        json_array_append_new(acks, json_pack("{s:s, s:I, s:I}", "from",
                                              k->acks[i].from, "seq",
                                              (json_int_t)k->acks[i].seq,
                                              "idx",
                                              (json_int_t)k->acks[i].idx));
    return json_pack(
        "{s:I, s:I, s:I, s:s, s:o, s:o, s:o, s:I, s:b, s:b,"
        " s:{s:s, s:s, s:o}, s:o, s:o, s:o, s:o}",
        "seq", (json_int_t)k->seq, "epoch", (json_int_t)k->epoch, "time_ms",
        (json_int_t)k->time_ms, "time", ol__cli_iso(k->time_ms, iso, 40),
        "hash", hex_json(sqlite3_column_blob(st, 3),
                         (size_t)sqlite3_column_bytes(st, 3)),
        "prev_hash", hex_json(k->prev_hash, OL_HASH_SIZE), "signer",
        hex_json(k->signer, OL_PK_SIZE), "size",
        (json_int_t)sqlite3_column_bytes(st, 4), "final",
        (k->flags & OL_CKPT_FINAL) != 0, "snapshot",
        (sqlite3_column_int64(st, 5) & 1) != 0, "plugin", "kind",
        k->plugin.kind, "version", k->plugin.version, "so_hash",
        hex_json(k->plugin.so_hash, OL_HASH_SIZE), "state",
        msgpack_json(k->state, k->state_len), "timers", timers, "outbox",
        outbox, "acks", acks);
}

/* {agent, kind, checkpoints: [...]} oldest first. */
static json_t *agent_json(sqlite3 *db, const char *name, const char *kind)
{
    json_t *rows = json_array();
    sqlite3_stmt *st;
    int rc;

    if (rows == NULL ||
        sqlite3_prepare_v2(db,
                           "SELECT seq, epoch, time_ms, hash, body, flags"
                           " FROM checkpoints WHERE agent = ? ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK) {
        json_decref(rows);
        return NULL;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char err[OL_ERRMSG_SIZE];
        struct ol__ckpt k;
        const void *body = sqlite3_column_blob(st, 4);
        size_t len = (size_t)sqlite3_column_bytes(st, 4);

        if (body && ol__ckpt_decode(body, len, &k, err) == 0) {
            json_array_append_new(rows,
                                  with_effects(ckpt_json(&k, st), &k));
            ol__ckpt_free(&k);
        } else {
            json_array_append_new(
                rows, json_pack("{s:I, s:o, s:s}", "seq",
                                (json_int_t)sqlite3_column_int64(st, 0),
                                "hash",
                                hex_json(sqlite3_column_blob(st, 3),
                                         (size_t)sqlite3_column_bytes(st, 3)),
                                "error", body ? err : "no body"));
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(rows);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:o}", "agent", name, "kind", kind,
                     "checkpoints", rows);
}

static int export_json(struct ol__cli *c, const char *agent)
{
    struct ol__store st;
    sqlite3_stmt *q;
    json_t *list = json_array(), *out = NULL;
    int rc, rv;

    if ((rv = ol__cli_open_db(c, &st)) != 0) {
        json_decref(list);
        return rv;
    }
    rc = sqlite3_prepare_v2(st.db,
                            "SELECT name, kind FROM agents"
                            " WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
                            -1, &q, NULL);
    if (rc == SQLITE_OK) {
        if (agent)
            sqlite3_bind_text(q, 1, agent, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            json_t *a = agent_json(st.db, (const char *)sqlite3_column_text(
                                              q, 0),
                                   (const char *)sqlite3_column_text(q, 1));

            if (a == NULL) {
                rc = SQLITE_ERROR;
                break;
            }
            json_array_append_new(list, a);
        }
        sqlite3_finalize(q);
    }
    if (rc != SQLITE_DONE) {
        rv = ol__cli_fail(c, OL_EXIT_FAIL, "OL_EIO", "export: reading '%s': "
                          "%s", c->db, sqlite3_errmsg(st.db));
    } else if (agent && json_array_size(list) == 0) {
        rv = ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOTFOUND",
                          "export: no agent '%s' in '%s'", agent, c->db);
    } else {
        out = agent ? json_incref(json_array_get(list, 0))
                    : json_pack("{s:O}", "agents", list);
        if (out == NULL || json_dumpf(out, stdout, JSON_INDENT(2)) != 0)
            rv = ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM",
                              "export: could not print the history");
        else
            fputc('\n', stdout);
    }
    json_decref(out);
    json_decref(list);
    ol__store_close(&st);
    return rv;
}

int ol__cmd_export(struct ol__cli *c)
{
    const char *out = NULL, *pos[1];
    int all = 0, n, rv;
    const struct ol__cli_opt opts[] = {
        {.name = "--out", .value = &out},
        {.name = "--all", .flag = &all},
        {0},
    };
    const char *agent;

    if ((rv = ol__cli_parse(c, opts, pos, 0, 1, &n)) != 0)
        return rv;
    if (all == (n == 1))
        return ol__cli_usage_err(c, "name one agent or pass --all");
    agent = n ? pos[0] : NULL;
    if (agent && !ol__name_valid(agent))
        return ol__cli_usage_err(c, "'%s' is not a valid agent name", agent);
    if (out && out[0] == '\0')
        return ol__cli_usage_err(c, "--out needs a file name");
    if (out)
        return export_bundle(c, agent, out);
    if (c->json)
        return export_json(c, agent);
    return ol__cli_usage_err(c, "pass --out FILE for a bundle, or --json to "
                                "print the history");
}
