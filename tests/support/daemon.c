/*
 * Integration test support: see daemon.h.
 */
#include "daemon.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "runtime/ctl.h"
#include "base/err.h"
#include "base/json.h"

uint64_t td_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void td_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

const char *td_bin(const char *name)
{
    static char path[4][512];
    static int k;
    const char *root = getenv("OL_BUILD_ROOT");

    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/runtime/bin/%s",
             root ? root : "build", name);
    return path[k];
}

const char *td_plugin_dirs(void)
{
    static char dirs[1100];
    const char *root = getenv("OL_BUILD_ROOT");

    snprintf(dirs, sizeof dirs, "%s/agents:%s/tests/plugins",
             root ? root : "build", root ? root : "build");
    return dirs;
}

void td_init(struct td *d, const char *tag, const char *extra)
{
    FILE *f;

    memset(d, 0, sizeof *d);
    snprintf(d->root, sizeof d->root, "/tmp/ol-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(d->root), "mkdtemp");
    snprintf(d->data, sizeof d->data, "%s/data", d->root);
    snprintf(d->conf, sizeof d->conf, "%s/outlast.ini", d->root);
    snprintf(d->log, sizeof d->log, "%s/outlastd.log", d->root);
    snprintf(d->sock, sizeof d->sock, "%s/control.sock", d->data);
    f = fopen(d->conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "[node]\n"
            "data_dir = %s\n"
            "plugin_dir = %s\n"
            "log_level = debug\n"
            "%s\n",
            d->data, td_plugin_dirs(), extra ? extra : "");
    fclose(f);
}

void td_spawn(struct td *d)
{
    pid_t pid = fork();

    cr_assert(pid >= 0, "fork");
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (d->conf[0])
            execl(td_bin("outlastd"), "outlastd", "--config", d->conf,
                  (char *)NULL);
        else /* the embedded single-node default */
            execl(td_bin("outlastd"), "outlastd", "--data-dir", d->data,
                  (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    d->exited = 0;
}

static int reaped(struct td *d)
{
    int st;

    if (d->pid <= 0)
        return 1;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
        d->status = st;
        d->exited = 1;
        d->pid = 0;
        return 1;
    }
    return 0;
}

int td_start(struct td *d, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    td_spawn(d);
    while (td_ms() < end) {
        struct td_resp r;

        if (reaped(d))
            return -1;
        if (td_call(d, &r, "op", "status", NULL) == 0) {
            td_resp_free(&r);
            return 0;
        }
        td_resp_free(&r);
        td_sleep_ms(20);
    }
    return -1;
}

void td_kill9(struct td *d)
{
    int st;

    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    d->status = st;
    d->exited = 1;
    d->pid = 0;
}

int td_wait_exit(struct td *d, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    while (td_ms() < end) {
        if (reaped(d))
            return WIFEXITED(d->status) ? WEXITSTATUS(d->status) : -1;
        td_sleep_ms(10);
    }
    return -1;
}

int td_term(struct td *d, int timeout_ms)
{
    int code;

    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    code = td_wait_exit(d, timeout_ms);
    if (d->pid > 0) {
        /* Still there: what each of its threads waits on, and the
         * handles its loop holds (printed into its log), go beside its
         * log when gdb is installed, for the failure to name. */
        char cmd[1024];

        snprintf(cmd, sizeof cmd,
                 "command -v gdb >/dev/null && timeout 60 gdb -p %ld -batch "
                 "-ex 'thread apply all bt' -ex 'thread 1' "
                 "-ex 'frame function run' -ex 'p loop.active_handles' "
                 "-ex 'p loop.active_reqs' "
                 "-ex 'call (void)uv_print_all_handles(&loop, "
                 "*(void **)&stderr)' -ex 'call (int)fflush(0)' "
                 "> '%s/stacks.txt' 2>&1",
                 (long)d->pid, d->root);
        if (system(cmd) == 0)
            fprintf(stderr, "node did not exit %d ms after SIGTERM; its "
                            "threads: %s/stacks.txt\n",
                    timeout_ms, d->root);
        td_kill9(d);
    }
    return code;
}

void td_cleanup(struct td *d)
{
    char cmd[256];

    if (d->pid > 0)
        td_kill9(d);
    if (d->root[0] && getenv("OL_KEEP_TMP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->root);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", d->root);
    }
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

int td_call_raw(struct td *d, const void *req, size_t len,
                struct td_resp *resp)
{
    char err[OL_ERRMSG_SIZE];
    void *raw = NULL;
    size_t rlen = 0;
    size_t off = 0;
    const msgpack_object *ok;
    int rv;

    memset(resp, 0, sizeof *resp);
    msgpack_unpacked_init(&resp->u);
    rv = ol__ctl_call(d->sock, req, len, &raw, &rlen, 10000, err);
    if (rv != 0)
        return -1;
    resp->raw = raw;
    if (msgpack_unpack_next(&resp->u, raw, rlen, &off) !=
        MSGPACK_UNPACK_SUCCESS)
        return -1;
    ok = td_get(&resp->u.data, "ok");
    return ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean ? 0
                                                                       : 1;
}

int td_call(struct td *d, struct td_resp *resp, ...)
{
    struct ol__buf b;
    msgpack_packer pk;
    const char *k, *v;
    va_list ap;
    int n = 0, rv;

    va_start(ap, resp);
    while ((k = va_arg(ap, const char *)) != NULL) {
        v = va_arg(ap, const char *);
        (void)v;
        n++;
    }
    va_end(ap);
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, (size_t)n);
    va_start(ap, resp);
    while ((k = va_arg(ap, const char *)) != NULL) {
        v = va_arg(ap, const char *);
        pack_str(&pk, k);
        /* Values starting with '{' or '[' are JSON-ish maps the caller
         * pre-packed elsewhere; here every value is a string. */
        pack_str(&pk, v);
    }
    va_end(ap);
    rv = td_call_raw(d, b.base, b.len, resp);
    ol__buf_close(&b);
    return rv;
}

void td_resp_free(struct td_resp *r)
{
    msgpack_unpacked_destroy(&r->u);
    free(r->raw);
    r->raw = NULL;
}

const msgpack_object *td_get(const msgpack_object *map, const char *key)
{
    size_t klen = strlen(key);

    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];

        if (kv->key.type == MSGPACK_OBJECT_STR &&
            kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return &kv->val;
    }
    return NULL;
}

int64_t td_int(const msgpack_object *map, const char *key, int64_t dflt)
{
    const msgpack_object *o = td_get(map, key);

    if (o == NULL)
        return dflt;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    return dflt;
}

const char *td_errmsg(struct td_resp *r, char *buf, size_t cap)
{
    const msgpack_object *e = td_get(&r->u.data, "error");

    if (e == NULL || e->type != MSGPACK_OBJECT_STR)
        snprintf(buf, cap, "(no error message)");
    else
        snprintf(buf, cap, "%.*s", (int)e->via.str.size, e->via.str.ptr);
    return buf;
}

int td_sh(char **out, const char *fmt, ...)
{
    char cmd[4096];
    struct ol__buf b;
    char chunk[4096];
    va_list ap;
    FILE *p;
    size_t n;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    ol__buf_init(&b);
    p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        ol__buf_append(&b, chunk, n);
    st = pclose(p);
    ol__buf_append(&b, "", 1);
    if (out)
        *out = (char *)b.base;
    else
        ol__buf_close(&b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

sqlite3 *td_db(struct td *d)
{
    char path[256];
    sqlite3 *db = NULL;

    snprintf(path, sizeof path, "%s/outlast.db", d->data);
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                 SQLITE_OK, "open %s", path);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

int64_t td_q1(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
                 "%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int64_t td_crashes(struct td *d, const char *name)
{
    sqlite3 *db = td_db(d);
    char sql[200];
    int64_t n;

    snprintf(sql, sizeof sql, "SELECT n FROM crashes WHERE name = '%s'",
             name);
    n = td_q1(db, sql);
    sqlite3_close(db);
    return n;
}

int td_head_state(struct td *d, const char *agent, void **out, size_t *len)
{
    sqlite3 *db = td_db(d);
    sqlite3_stmt *st;
    int rv = -1;

    *out = NULL;
    *len = 0;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT body FROM checkpoints WHERE "
                                    "agent = ? ORDER BY seq DESC LIMIT 1",
                                    -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        /* The body is [fmt, agent, epoch, seq, prev, time, plugin,
         * signer, flags, state(bin), ...]: state is element 9. */
        msgpack_unpacked u;
        size_t off = 0;

        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, sqlite3_column_blob(st, 0),
                                (size_t)sqlite3_column_bytes(st, 0),
                                &off) == MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size > 9 &&
            u.data.via.array.ptr[9].type == MSGPACK_OBJECT_BIN) {
            const msgpack_object_bin *b = &u.data.via.array.ptr[9].via.bin;

            *out = malloc(b->size ? b->size : 1);
            cr_assert_not_null(*out);
            memcpy(*out, b->ptr, b->size);
            *len = b->size;
            rv = 0;
        }
        msgpack_unpacked_destroy(&u);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rv;
}

int64_t td_state_int(struct td *d, const char *agent, const char *key,
                     int64_t dflt)
{
    void *state;
    size_t len, off = 0;
    msgpack_unpacked s;
    int64_t v = dflt;

    if (td_head_state(d, agent, &state, &len) != 0)
        return dflt;
    msgpack_unpacked_init(&s);
    if (msgpack_unpack_next(&s, state, len, &off) == MSGPACK_UNPACK_SUCCESS)
        v = td_int(&s.data, key, dflt);
    msgpack_unpacked_destroy(&s);
    free(state);
    return v;
}

int td_until(int (*cond)(struct td *d, void *arg), struct td *d, void *arg,
             int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    while (td_ms() < end) {
        if (cond(d, arg))
            return 1;
        td_sleep_ms(20);
    }
    return cond(d, arg);
}

static int call_with_json(struct td *d, const char *op, const char *name,
                          const char *k2, const char *v2, const char *jkey,
                          const char *json, char *err, size_t errcap)
{
    struct ol__buf b, j;
    msgpack_packer pk;
    struct td_resp r;
    char jerr[OL_ERRMSG_SIZE];
    int rv, n = 2 + (k2 != NULL) + (json != NULL);

    ol__buf_init(&b);
    ol__buf_init(&j);
    if (json)
        cr_assert_eq(ol__json_to_msgpack(json, strlen(json), &j, jerr), 0,
                     "test json: %s", jerr);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, (size_t)n);
    pack_str(&pk, "op");
    pack_str(&pk, op);
    pack_str(&pk, "name");
    pack_str(&pk, name);
    if (k2) {
        pack_str(&pk, k2);
        pack_str(&pk, v2);
    }
    if (json) {
        pack_str(&pk, jkey);
        ol__buf_append(&b, j.base, j.len);
    }
    rv = td_call_raw(d, b.base, b.len, &r);
    if (err)
        td_errmsg(&r, err, errcap);
    td_resp_free(&r);
    ol__buf_close(&b);
    ol__buf_close(&j);
    return rv;
}

int td_spawn_agent(struct td *d, const char *kind, const char *name,
                   const char *config_json, char *err, size_t errcap)
{
    return call_with_json(d, "spawn", name, "kind", kind, "config",
                          config_json, err, errcap);
}

int td_send_json(struct td *d, const char *name, const char *json, char *err,
                 size_t errcap)
{
    return call_with_json(d, "send", name, NULL, NULL, "message", json, err,
                          errcap);
}

static void copy_str(const msgpack_object *o, char *out, size_t cap)
{
    if (cap == 0)
        return;
    out[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR)
        snprintf(out, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
}

void td_agent_status(struct td *d, const char *name, char *status,
                     size_t cap, int *degraded, char *reason,
                     size_t reason_cap)
{
    struct td_resp r;
    const msgpack_object *list, *live, *mine;

    copy_str(NULL, status, cap);
    if (reason)
        copy_str(NULL, reason, reason_cap);
    if (degraded)
        *degraded = 0;
    if (td_call(d, &r, "op", "agents", NULL) != 0) {
        td_resp_free(&r);
        return;
    }
    list = td_get(&r.u.data, "agents");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY &&
                         i < list->via.array.size;
         i++) {
        const msgpack_object *a = &list->via.array.ptr[i];
        const msgpack_object *n = td_get(a, "name");

        if (n && n->type == MSGPACK_OBJECT_STR &&
            n->via.str.size == strlen(name) &&
            memcmp(n->via.str.ptr, name, n->via.str.size) == 0) {
            copy_str(td_get(a, "status"), status, cap);
            if (reason)
                copy_str(td_get(a, "reason"), reason, reason_cap);
        }
    }
    live = td_get(&r.u.data, "live");
    mine = td_get(live, name);
    if (mine && degraded) {
        const msgpack_object *g = td_get(mine, "degraded");

        *degraded = g && g->type == MSGPACK_OBJECT_BOOLEAN && g->via.boolean;
        if (*degraded && reason)
            copy_str(td_get(mine, "reason"), reason, reason_cap);
    }
    td_resp_free(&r);
}

int64_t td_page(const char *path, const char *name, const char *type,
                int nth)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t pg = -1;

    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                 SQLITE_OK, "open %s", path);

    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT pageno FROM dbstat WHERE name = ? "
                                    "AND pagetype = ? ORDER BY pageno LIMIT 1 "
                                    "OFFSET ?",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, nth);
    if (sqlite3_step(st) == SQLITE_ROW)
        pg = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    cr_assert(pg > 1, "no %s page %d of %s", type, nth, name);
    return pg;
}

void td_smash_page(const char *path, int64_t pg)
{
    uint8_t junk[4096];
    FILE *f = fopen(path, "r+b");

    cr_assert_not_null(f);
    memset(junk, 0xee, sizeof junk);
    cr_assert_eq(fseek(f, (long)((pg - 1) * 4096), SEEK_SET), 0);
    cr_assert_eq(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    fclose(f);
}
