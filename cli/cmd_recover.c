/*
 * `outlast recover`: give a single node that refuses to start (its
 * database is missing, empty, replaced or behind its node record) a new
 * database, explicitly, while it is stopped.
 *
 *   --from FILE      every agent continues from FILE (an export bundle, or
 *                    a copy of a database, the refused one included) once
 *                    FILE verifies;
 *   --new-history    every agent starts over from seq 1.
 *
 * Either way the new database gets a new identity, a history number one
 * above the old, and an epoch floor above every epoch the node record says
 * the node used: agents run under that epoch, so no (agent, epoch, seq) is
 * ever signed twice with different contents, and each agent's first
 * checkpoint under it carries a flag that says what happened.  The old
 * database is kept beside it (outlast.db.replaced-TIME), and node.state
 * is rewritten to name the new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "state/verify.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/keys.h"
#include "base/log.h"
#include "state/nodestate.h"
#include "state/store.h"
#include "cli.h"

struct recover {
    struct ol__cli *c;
    const char *from;     /* --from FILE, or NULL */
    int new_history;
    uint64_t floor_arg;   /* --epoch-floor */
    uint64_t node_id_arg; /* --node-id */
    char db[PATH_MAX], ns[PATH_MAX], tmp[PATH_MAX + 16];
    struct ol__key key;
    struct ol__nstate rec;
    int have_rec;
    uint64_t node_id;
    uint64_t floor;   /* the epoch agents run under from now on */
    uint64_t history; /* the new database's */
    int lock_fd;
};

static int fail(struct recover *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct recover *r, const char *code, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ol__cli_fail(r->c, OL_EXIT_FAIL, code, "recover: %s", msg);
}

/* The data dir must not be in use: the daemon holds this lock. */
static int lock_dir(struct recover *r)
{
    char path[PATH_MAX];

    if (ol__path_join(path, sizeof path, r->c->data_dir, "outlastd.lock"))
        return fail(r, "OL_EINVAL", "data dir path is too long");
    r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (r->lock_fd < 0)
        return fail(r, "OL_EIO", "cannot open '%s': %s", path,
                    strerror(errno));
    if (flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return fail(r, "OL_EBUSY",
                    "a node is running on data dir '%s'; stop it first",
                    r->c->data_dir);
    return 0;
}

/* The node's identity and what it has used: node.key and node.state. */
static int load_node(struct recover *r)
{
    char path[PATH_MAX], err[OL_ERRMSG_SIZE];
    int rv;

    if (ol__path_join(path, sizeof path, r->c->data_dir, OL_CLI_KEY_NAME))
        return fail(r, "OL_EINVAL", "data dir path is too long");
    rv = ol__key_load(&r->key, path, err);
    if (rv != 0)
        return fail(r, ol_err_name(rv), "%s (recover signs the new node "
                                        "record with this node's key)",
                    err);
    rv = ol__nstate_load(r->ns, r->key.pk, &r->rec, err);
    if (rv == 0) {
        r->have_rec = 1;
        r->node_id = r->rec.node_id;
    } else if (rv != OL_ENOTFOUND && r->floor_arg == 0) {
        return fail(r, ol_err_name(rv),
                    "%s; without it the highest epoch this node used is "
                    "unknown: pass --epoch-floor N with N above every epoch "
                    "the node's agents have had",
                    err);
    }
    if (r->node_id_arg) {
        if (r->have_rec && r->node_id_arg != r->rec.node_id)
            return fail(r, "OL_EINVAL",
                        "--node-id %" PRIu64 " differs from node.state "
                        "(node %" PRIu64 ")",
                        r->node_id_arg, r->rec.node_id);
        r->node_id = r->node_id_arg;
    }
    return 0;
}

static void on_problem(void *data, const char *agent, uint64_t seq,
                       const char *problem)
{
    (void)data;
    if (agent[0])
        fprintf(stderr, "  agent '%s' seq %" PRIu64 ": %s\n", agent, seq,
                problem);
    else
        fprintf(stderr, "  database: %s\n", problem);
}

static int64_t q1(sqlite3 *db, const char *sql, int64_t dflt)
{
    sqlite3_stmt *st;
    int64_t v = dflt;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return dflt;
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* FILE must verify whole, and hold this node. */
static int check_source(struct recover *r, struct ol__store *src,
                        uint64_t *max_epoch)
{
    uint8_t trust[1][OL_PK_SIZE];
    struct ol__verify_report rep;
    sqlite3_stmt *st;
    int64_t id = -1;
    int rv;

    rv = ol__store_open(src, r->from, OL_STORE_READ);
    if (rv != 0)
        return fail(r, ol_err_name(rv), "%s", src->errmsg);
    memcpy(trust[0], r->key.pk, OL_PK_SIZE);
    rv = ol__verify_store(src->db, NULL, (const uint8_t(*)[OL_PK_SIZE])trust,
                          1, on_problem, NULL, &rep);
    if (rv != 0 || rep.bad)
        return fail(r, "OL_EBADCHAIN",
                    "'%s' does not verify (%" PRIu64 " problems, above); "
                    "recover only from a file that does",
                    r->from, rep.bad);
    if (sqlite3_prepare_v2(src->db, "SELECT id FROM nodes WHERE pk = ?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, r->key.pk, OL_PK_SIZE, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            id = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (q1(src->db, "SELECT count(*) FROM checkpoints", 0) == 0 &&
        q1(src->db, "SELECT count(*) FROM agents", 0) == 0)
        return fail(r, "OL_ENOTFOUND",
                    "'%s' holds no agents and no checkpoints: there is "
                    "nothing to continue from (--new-history starts over)",
                    r->from);
    if (id <= 0)
        return fail(r, "OL_EUNAUTH",
                    "'%s' is not this node's: its nodes table lacks this "
                    "node's key",
                    r->from);
    if (r->node_id && (uint64_t)id != r->node_id)
        return fail(r, "OL_EINVAL",
                    "'%s' knows this node's key as node %" PRId64
                    ", but this is node %" PRIu64,
                    r->from, id, r->node_id);
    r->node_id = (uint64_t)id;
    if (q1(src->db, "SELECT count(*) FROM nodes WHERE removed = 0", 0) > 1 ||
        q1(src->db, "SELECT value FROM meta WHERE key = 'applied_index'",
           0) > 0)
        return fail(r, "OL_EINVAL",
                    "'%s' comes from a cluster: a cluster node recovers from "
                    "its peers, not with `outlast recover`",
                    r->from);
    *max_epoch = (uint64_t)q1(src->db,
                              "SELECT max(m) FROM (SELECT max(epoch) AS m "
                              "FROM agents UNION ALL SELECT max(epoch) FROM "
                              "checkpoints)",
                              0);
    r->history = src->history;
    return 0;
}

/* The columns `table` has in both databases, quoted, comma-separated. */
static int shared_columns(sqlite3 *a, sqlite3 *b, const char *table,
                          char *out, size_t cap)
{
    sqlite3_stmt *st;
    int n = 0;

    out[0] = '\0';
    if (sqlite3_prepare_v2(a, "SELECT name FROM pragma_table_info(?)", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *col = (const char *)sqlite3_column_text(st, 0);
        sqlite3_stmt *q;
        int both = 0;

        if (sqlite3_prepare_v2(b,
                               "SELECT 1 FROM pragma_table_info(?) WHERE name "
                               "= ?",
                               -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, table, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, col, -1, SQLITE_STATIC);
            both = sqlite3_step(q) == SQLITE_ROW;
            sqlite3_finalize(q);
        }
        if (both) {
            size_t len = strlen(out);

            snprintf(out + len, cap - len, "%s\"%s\"", n ? ", " : "", col);
            n++;
        }
    }
    sqlite3_finalize(st);
    return n;
}

/* Copy every row of `table` (the columns both have) from src to dst. */
static int copy_table(struct recover *r, sqlite3 *src, sqlite3 *dst,
                      const char *table)
{
    char cols[2048], sql[4600], marks[512] = "";
    sqlite3_stmt *get = NULL, *put = NULL;
    int n = shared_columns(src, dst, table, cols, sizeof cols), rc, rv = 0;

    if (n <= 0)
        return 0; /* a table the source does not have */
    for (int i = 0; i < n; i++)
        strcat(marks, i ? ", ?" : "?");
    snprintf(sql, sizeof sql, "SELECT %s FROM \"%s\"", cols, table);
    if (sqlite3_prepare_v2(src, sql, -1, &get, NULL) != SQLITE_OK)
        return fail(r, "OL_EIO", "read %s: %s", table, sqlite3_errmsg(src));
    snprintf(sql, sizeof sql, "INSERT INTO \"%s\"(%s) VALUES(%s)", table,
             cols, marks);
    if (sqlite3_prepare_v2(dst, sql, -1, &put, NULL) != SQLITE_OK) {
        sqlite3_finalize(get);
        return fail(r, "OL_EIO", "write %s: %s", table, sqlite3_errmsg(dst));
    }
    while ((rc = sqlite3_step(get)) == SQLITE_ROW) {
        for (int i = 0; i < n; i++)
            sqlite3_bind_value(put, i + 1, sqlite3_column_value(get, i));
        if (sqlite3_step(put) != SQLITE_DONE) {
            rv = fail(r, "OL_EIO", "write %s: %s", table,
                      sqlite3_errmsg(dst));
            break;
        }
        sqlite3_reset(put);
    }
    if (rv == 0 && rc != SQLITE_DONE)
        rv = fail(r, "OL_EIO", "read %s: %s", table, sqlite3_errmsg(src));
    sqlite3_finalize(get);
    sqlite3_finalize(put);
    return rv;
}

static int fill_from(struct recover *r, struct ol__store *src,
                     struct ol__store *dst)
{
    static const char *const tables[] = {"nodes", "agents", "seals",
                                         "checkpoints", "mailbox",
                                         "evidence"};
    sqlite3_stmt *st;
    int rv = 0;

    for (size_t i = 0; rv == 0 && i < sizeof tables / sizeof tables[0]; i++)
        rv = copy_table(r, src->db, dst->db, tables[i]);
    if (rv != 0)
        return rv;
    /* Every agent is this node's, under the new epoch. */
    if (sqlite3_prepare_v2(dst->db,
                           "UPDATE agents SET epoch = ?, owner = ?, inc = 0",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(r, "OL_EIO", "%s", sqlite3_errmsg(dst->db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->floor);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->node_id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rv = fail(r, "OL_EIO", "%s", sqlite3_errmsg(dst->db));
    sqlite3_finalize(st);
    return rv;
}

static int fill_new(struct recover *r, struct ol__store *dst)
{
    sqlite3_stmt *st;
    int rv = 0;

    if (sqlite3_prepare_v2(dst->db,
                           "INSERT INTO nodes(id, pk, address) VALUES(?, ?, "
                           "'')",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(r, "OL_EIO", "%s", sqlite3_errmsg(dst->db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->node_id);
    sqlite3_bind_blob(st, 2, r->key.pk, OL_PK_SIZE, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rv = fail(r, "OL_EIO", "%s", sqlite3_errmsg(dst->db));
    sqlite3_finalize(st);
    return rv;
}

static void remove_db(const char *path)
{
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};

    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        char p[PATH_MAX + 16];

        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

/* Say in the database how it was made (the node logs it at start). */
static int set_how(struct recover *r, struct ol__store *dst)
{
    char how[256], when[32];
    time_t t = time(NULL);
    struct tm tm;
    sqlite3_stmt *st;
    int rv = 0;

    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (r->from)
        snprintf(how, sizeof how, "recover --from '%.180s' at %s", r->from,
                 when);
    else
        snprintf(how, sizeof how, "recover --new-history at %s", when);
    if (sqlite3_prepare_v2(dst->db,
                           "INSERT OR REPLACE INTO meta(key, value) "
                           "VALUES('recovered', ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(r, "OL_EIO", "%s", sqlite3_errmsg(dst->db));
    sqlite3_bind_text(st, 1, how, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rv = fail(r, "OL_EIO", "%s", sqlite3_errmsg(dst->db));
    sqlite3_finalize(st);
    return rv;
}

/* Build the new database at r->tmp. */
static int build(struct recover *r, struct ol__store *src)
{
    struct ol__store dst;
    int rv;

    remove_db(r->tmp);
    rv = ol__store_create(&dst, r->tmp, OL_STORE_WRITE_FULL);
    if (rv != 0)
        return fail(r, ol_err_name(rv), "%s", dst.errmsg);
    rv = ol__store_begin(&dst);
    if (rv == 0)
        rv = r->from ? fill_from(r, src, &dst) : fill_new(r, &dst);
    if (rv == 0)
        rv = set_how(r, &dst);
    if (rv == 0 &&
        (ol__store_meta_set_int(&dst, "history", (int64_t)r->history) != 0 ||
         ol__store_meta_set_int(&dst, "epoch_floor", (int64_t)r->floor) !=
             0 ||
         ol__store_meta_set_int(&dst, "recovered_ms", ol__wall_ms()) != 0 ||
         ol__store_commit(&dst) != 0))
        rv = fail(r, "OL_EIO", "%s", dst.errmsg);
    if (rv != 0)
        ol__store_rollback(&dst);
    if (rv == 0) {
        r->rec.commits = dst.commits;
        memcpy(r->rec.db_id, dst.db_id, OL_DBID_SIZE);
    }
    ol__store_close(&dst);
    if (rv != 0)
        remove_db(r->tmp);
    return rv;
}

/* Move the old database (if any) aside and the new one into place. */
static int swap_in(struct recover *r, char *kept, size_t cap)
{
    const char *sfx[] = {"", "-wal", "-shm"};
    char stamp[32], err[OL_ERRMSG_SIZE];
    time_t t = time(NULL);
    struct tm tm;

    kept[0] = '\0';
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    if (access(r->db, F_OK) == 0)
        snprintf(kept, cap, "%s.replaced-%s", r->db, stamp);
    for (size_t i = 0; kept[0] && i < sizeof sfx / sizeof sfx[0]; i++) {
        char a[PATH_MAX + 16], b[PATH_MAX + 64];

        snprintf(a, sizeof a, "%s%s", r->db, sfx[i]);
        snprintf(b, sizeof b, "%s%s", kept, sfx[i]);
        if (rename(a, b) != 0 && errno != ENOENT)
            return fail(r, "OL_EIO", "move '%s' aside: %s", a,
                        strerror(errno));
    }
    if (rename(r->tmp, r->db) != 0)
        return fail(r, "OL_EIO", "move the new database into place: %s",
                    strerror(errno));
    if (ol__fsync_dir_of(r->db, err) != 0)
        return fail(r, "OL_EIO", "%s", err);
    return 0;
}

static int report(struct recover *r, const char *kept, int64_t agents,
                  int64_t ckpts)
{
    if (r->c->json) {
        json_t *j = json_pack("{s:b, s:s, s:s?, s:I, s:I, s:I, s:I, s:s?}",
                              "ok", 1, "mode",
                              r->from ? "from" : "new-history", "from",
                              r->from, "history", (json_int_t)r->history,
                              "epoch", (json_int_t)r->floor, "agents",
                              (json_int_t)agents, "checkpoints",
                              (json_int_t)ckpts, "kept",
                              kept[0] ? kept : NULL);

        (void)ol__cli_put_json(j);
        return 0;
    }
    if (r->from)
        printf("recovered %" PRId64 " agent%s (%" PRId64 " checkpoint%s) "
               "from '%s': they continue from their newest checkpoints "
               "there under epoch %" PRIu64 " (history %" PRIu64 ")\n",
               agents, agents == 1 ? "" : "s", ckpts, ckpts == 1 ? "" : "s",
               r->from, r->floor, r->history);
    else
        printf("started history %" PRIu64 ": agents start over at seq 1 "
               "under epoch %" PRIu64 "\n",
               r->history, r->floor);
    if (kept[0])
        printf("the replaced database is kept as '%s'\n", kept);
    return 0;
}

static int run(struct recover *r)
{
    struct ol__store src;
    uint64_t src_epoch = 0;
    char kept[PATH_MAX + 64], err[OL_ERRMSG_SIZE], raft[PATH_MAX];
    int64_t agents = 0, ckpts = 0;
    int rv;

    memset(&src, 0, sizeof src);
    if (ol__path_join(r->db, sizeof r->db, r->c->data_dir, OL_CLI_DB_NAME) ||
        ol__path_join(r->ns, sizeof r->ns, r->c->data_dir, OL_NSTATE_FILE) ||
        ol__path_join(raft, sizeof raft, r->c->data_dir, "raft"))
        return fail(r, "OL_EINVAL", "data dir path is too long");
    if (access(r->c->data_dir, F_OK) != 0)
        return fail(r, "OL_ENOTFOUND", "no data dir '%s'", r->c->data_dir);
    if (access(raft, F_OK) == 0)
        return fail(r, "OL_EINVAL",
                    "'%s' is a cluster node's data dir: a cluster node "
                    "recovers from its peers, not with `outlast recover`",
                    r->c->data_dir);
    snprintf(r->tmp, sizeof r->tmp, "%s.recover", r->db);
    if ((rv = lock_dir(r)) != 0 || (rv = load_node(r)) != 0)
        return rv;
    if (r->from && (rv = check_source(r, &src, &src_epoch)) != 0)
        goto out;
    if (r->node_id == 0) {
        rv = fail(r, "OL_EINVAL",
                  "there is no node record (node.state) to name this node: "
                  "pass --node-id N");
        goto out;
    }
    /* Above every epoch the node, the file and the operator know of. */
    r->floor = r->rec.max_epoch;
    if (src_epoch > r->floor)
        r->floor = src_epoch;
    if (r->floor_arg > r->floor)
        r->floor = r->floor_arg;
    r->floor++;
    if (r->rec.history > r->history)
        r->history = r->rec.history;
    r->history++;
    rv = build(r, &src);
    if (rv == 0 && r->from) {
        agents = (int64_t)q1(src.db, "SELECT count(*) FROM agents", 0);
        ckpts = (int64_t)q1(src.db, "SELECT count(*) FROM checkpoints", 0);
    }
    ol__store_close(&src);
    if (rv != 0)
        goto out;
    rv = swap_in(r, kept, sizeof kept);
    if (rv != 0)
        goto out;
    r->rec.node_id = r->node_id;
    r->rec.max_epoch = r->floor;
    r->rec.history = r->history;
    r->rec.applied = 0;
    r->rec.run = OL_NSTATE_STOPPED;
    rv = ol__nstate_write(r->ns, &r->key, &r->rec, err);
    if (rv != 0) {
        rv = fail(r, ol_err_name(rv), "%s", err);
        goto out;
    }
    rv = report(r, kept, agents, ckpts);
out:
    ol__store_close(&src);
    return rv;
}

int ol__cmd_recover(struct ol__cli *c)
{
    const char *from = NULL, *floor = NULL, *node = NULL, *pos[1];
    int new_history = 0, n, rv;
    const struct ol__cli_opt opts[] = {
        {.name = "--from", .value = &from},
        {.name = "--new-history", .flag = &new_history},
        {.name = "--epoch-floor", .value = &floor},
        {.name = "--node-id", .value = &node},
        {0},
    };
    struct recover r;

    if ((rv = ol__cli_parse(c, opts, pos, 0, 0, &n)) != 0)
        return rv;
    if (c->db_set)
        return ol__cli_usage_err(c, "recover works on a data dir "
                                    "(--data-dir DIR), not --db");
    if ((from != NULL) == (new_history != 0))
        return ol__cli_usage_err(c, "pass either --from FILE or "
                                    "--new-history");
    if (from && from[0] == '\0')
        return ol__cli_usage_err(c, "--from needs a file name");
    memset(&r, 0, sizeof r);
    r.c = c;
    r.from = from;
    r.new_history = new_history;
    r.lock_fd = -1;
    if (floor && ol__cli_parse_u64(floor, UINT64_MAX / 2, &r.floor_arg))
        return ol__cli_usage_err(c, "--epoch-floor needs a whole number, "
                                    "not '%s'",
                                 floor);
    if (node && (ol__cli_parse_u64(node, UINT64_MAX, &r.node_id_arg) ||
                 r.node_id_arg == 0))
        return ol__cli_usage_err(c, "--node-id needs a positive whole "
                                    "number, not '%s'",
                                 node);
    rv = run(&r);
    ol__key_close(&r.key);
    if (r.lock_fd >= 0)
        close(r.lock_fd);
    return rv;
}
