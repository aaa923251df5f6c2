/*
 * The node record (see nodestate.h): encoding, signing, the two-slot file,
 * the start-up verdict, and the background writer.
 *
 * A slot is
 *
 *     "OLNS" | format: u8 | len: u16 BE | body: msgpack map | sig: 64
 *
 * zero-padded to OL_NSTATE_SLOT bytes, where sig is the node key's Ed25519
 * signature of everything before it.  The body's map is read by name, so
 * a later format may add keys.
 */
#include "nodestate.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/mpr.h"
#include "base/pack.h"

#define HDR 7
#define SIG 64

const char *ol__nstate_run_name(int run)
{
    switch (run) {
    case OL_NSTATE_RUNNING:
        return "running";
    case OL_NSTATE_CLOSING:
        return "closing its database";
    case OL_NSTATE_STOPPED:
        return "stopped";
    }
    return "unknown";
}

/* ---- one slot ---- */

/* The record is signed, so its map keeps msgpack-c's shortest header
 * (counted by hand below) rather than base/pack.h's map writer. */
static void kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    ol__pk_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void kv_bin(msgpack_packer *pk, const char *k, const void *p, size_t n)
{
    ol__pk_str(pk, k);
    msgpack_pack_bin_with_body(pk, p, n);
}

/* Encode and sign `st` into slot (OL_NSTATE_SLOT bytes). */
static int encode(const struct ol__nstate *st, const struct ol__key *key,
                  uint8_t slot[OL_NSTATE_SLOT])
{
    struct ol__buf b;
    msgpack_packer pk;
    int rv = 0;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 10);
    kv_u64(&pk, "node", st->node_id);
    kv_bin(&pk, "pk", st->pk, OL_PK_SIZE);
    kv_bin(&pk, "db", st->db_id, OL_DBID_SIZE);
    kv_u64(&pk, "commits", st->commits);
    kv_u64(&pk, "applied", st->applied);
    kv_u64(&pk, "max_epoch", st->max_epoch);
    kv_u64(&pk, "history", st->history);
    kv_u64(&pk, "run", (uint64_t)st->run);
    kv_u64(&pk, "time_ms", (uint64_t)st->time_ms);
    kv_u64(&pk, "serial", st->serial);
    if (b.base == NULL || b.len + HDR + SIG > OL_NSTATE_SLOT) {
        rv = OL_ENOMEM;
        goto out;
    }
    memset(slot, 0, OL_NSTATE_SLOT);
    memcpy(slot, "OLNS", 4);
    slot[4] = OL_NSTATE_FORMAT;
    slot[5] = (uint8_t)(b.len >> 8);
    slot[6] = (uint8_t)b.len;
    memcpy(slot + HDR, b.base, b.len);
    crypto_sign_detached(slot + HDR + b.len, NULL, slot, HDR + b.len,
                         key->sk);
out:
    ol__buf_close(&b);
    return rv;
}

int ol__nstate_decode(const uint8_t *slot, const uint8_t pk[OL_PK_SIZE],
                      struct ol__nstate *st)
{
    struct ol__mpr r;
    uint32_t n, len;

    if (memcmp(slot, "OLNS", 4) != 0 || slot[4] != OL_NSTATE_FORMAT)
        return OL_EMALFORMED;
    len = (uint32_t)slot[5] << 8 | slot[6];
    if (len + HDR + SIG > OL_NSTATE_SLOT)
        return OL_EMALFORMED;
    memset(st, 0, sizeof *st);
    ol__mpr_init(&r, slot + HDR, len);
    if (ol__mpr_map(&r, &n) != 0)
        return OL_EMALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        uint64_t v = 0;
        int rv;

        if (ol__mpr_str(&r, &k, &kl) != 0)
            return OL_EMALFORMED;
#define IS(name) (kl == sizeof name - 1 && memcmp(k, name, kl) == 0)
        if (IS("pk"))
            rv = ol__mpr_bin_fixed(&r, st->pk, OL_PK_SIZE);
        else if (IS("db"))
            rv = ol__mpr_bin_fixed(&r, st->db_id, OL_DBID_SIZE);
        else if (IS("node") || IS("commits") || IS("applied") ||
                 IS("max_epoch") || IS("history") || IS("run") ||
                 IS("time_ms") || IS("serial"))
            rv = ol__mpr_uint(&r, &v);
        else
            rv = ol__mpr_skip(&r);
        if (rv != 0)
            return OL_EMALFORMED;
        if (IS("node"))
            st->node_id = v;
        else if (IS("commits"))
            st->commits = v;
        else if (IS("applied"))
            st->applied = v;
        else if (IS("max_epoch"))
            st->max_epoch = v;
        else if (IS("history"))
            st->history = v;
        else if (IS("run"))
            st->run = (int)v;
        else if (IS("time_ms"))
            st->time_ms = (int64_t)v;
        else if (IS("serial"))
            st->serial = v;
#undef IS
    }
    if (!ol__mpr_done(&r))
        return OL_EMALFORMED;
    if (crypto_sign_verify_detached(slot + HDR + len, slot, HDR + len,
                                    st->pk) != 0)
        return OL_EMALFORMED;
    if (pk && sodium_memcmp(st->pk, pk, OL_PK_SIZE) != 0)
        return OL_EUNAUTH;
    return 0;
}

int ol__nstate_load(const char *path, const uint8_t pk[OL_PK_SIZE],
                    struct ol__nstate *out, char *errmsg)
{
    struct ol__nstate s[2];
    char *text = NULL, hex[OL_PK_HEX_SIZE];
    size_t len = 0;
    int rv, r0 = OL_EMALFORMED, r1 = OL_EMALFORMED;

    rv = ol__read_file(path, 2 * OL_NSTATE_SLOT, &text, &len, errmsg);
    if (rv == OL_ENOTFOUND)
        return rv;
    if (rv != 0) {
        ol__errwrap(errmsg, "node record");
        return rv == OL_ETOOBIG || rv == OL_EINVAL ? OL_EMALFORMED : rv;
    }
    if (len >= OL_NSTATE_SLOT)
        r0 = ol__nstate_decode((uint8_t *)text, pk, &s[0]);
    if (len >= 2 * OL_NSTATE_SLOT)
        r1 = ol__nstate_decode((uint8_t *)text + OL_NSTATE_SLOT, pk,
                               &s[1]);
    free(text);
    if (r0 == 0 && (r1 != 0 || s[0].serial >= s[1].serial)) {
        *out = s[0];
        return 0;
    }
    if (r1 == 0) {
        *out = s[1];
        return 0;
    }
    if (r0 == OL_EUNAUTH || r1 == OL_EUNAUTH) {
        ol__pk_hex(r0 == OL_EUNAUTH ? s[0].pk : s[1].pk, hex);
        ol__errf(errmsg,
                 "node record '%s' is signed by key %.16s..., not by this "
                 "node's key (node.key)",
                 path, hex);
        return OL_EUNAUTH;
    }
    ol__errf(errmsg,
             "node record '%s' is damaged: no valid signed record in its "
             "%zu bytes",
             path, len);
    return OL_EMALFORMED;
}

static int write_slot(int fd, const uint8_t *slot, uint64_t serial)
{
    off_t at = (off_t)(serial % 2) * OL_NSTATE_SLOT;
    size_t done = 0;

    while (done < OL_NSTATE_SLOT) {
        ssize_t n = pwrite(fd, slot + done, OL_NSTATE_SLOT - done,
                           at + (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return fdatasync(fd);
}

int ol__nstate_write(const char *path, const struct ol__key *key,
                     struct ol__nstate *st, char *errmsg)
{
    uint8_t slot[2 * OL_NSTATE_SLOT];
    struct stat sb;
    int fd, rv;

    st->serial++;
    st->time_ms = ol__wall_ms();
    memcpy(st->pk, key->pk, OL_PK_SIZE);
    if (encode(st, key, slot) != 0) {
        ol__errf(errmsg, "node record: cannot encode");
        return OL_EIO;
    }
    if (stat(path, &sb) != 0 || sb.st_size < 2 * OL_NSTATE_SLOT) {
        /* A new file: both slots, written whole. */
        memcpy(slot + OL_NSTATE_SLOT, slot, OL_NSTATE_SLOT);
        return ol__write_file_atomic(path, slot, sizeof slot, 0600, errmsg);
    }
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        ol__errf(errmsg, "node record '%s': %s", path, strerror(errno));
        return OL_EIO;
    }
    rv = write_slot(fd, slot, st->serial);
    if (rv != 0)
        ol__errf(errmsg, "node record '%s': write: %s", path,
                 strerror(errno));
    close(fd);
    return rv ? OL_EIO : 0;
}

/* ---- the start-up verdict ---- */

static const char *when(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || gmtime_r(&t, &tm) == NULL)
        snprintf(out, cap, "at an unknown time");
    else
        strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

static int refuse(char *errmsg, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(char *errmsg, const char *hint, const char *fmt, ...)
{
    size_t n;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errmsg, OL_NSTATE_ERR_SIZE, fmt, ap);
    va_end(ap);
    n = strlen(errmsg);
    if (hint && hint[0] && n + 3 < OL_NSTATE_ERR_SIZE)
        snprintf(errmsg + n, OL_NSTATE_ERR_SIZE - n, ". %s", hint);
    return OL_ESTATE;
}

int ol__nstate_check(const struct ol__nstate *rec,
                     const struct ol__nstate_db *db, uint64_t node_id,
                     const char *hint, int *create, char *errmsg)
{
    char t[40], have[2 * OL_DBID_SIZE + 1], want[2 * OL_DBID_SIZE + 1];

    *create = 0;
    if (rec == NULL) {
        if (!db->files.db) {
            *create = 1;
            return 0;
        }
        if (db->store_rv != 0)
            return refuse(errmsg, hint, "%s", db->store_err);
        /* A database this build created records itself before its first
         * commit; one that has commits but no record was copied here, or
         * its record was deleted. */
        if (db->schema >= 2 && db->commits > 0)
            return refuse(errmsg, hint,
                          "database '%s' holds %" PRIu64 " commits, but "
                          "there is no node record (node.state) beside it: "
                          "the record was deleted, or the database was "
                          "copied here from elsewhere",
                          db->path, db->commits);
        return 0;
    }
    when(rec->time_ms, t, sizeof t);
    if (rec->node_id != node_id)
        return refuse(errmsg, NULL,
                      "this data directory belongs to node %" PRIu64
                      " (node.state), but the configuration says node "
                      "%" PRIu64,
                      rec->node_id, node_id);
    if (!db->files.db)
        return refuse(errmsg, hint,
                      "database '%s' is missing, but this node had "
                      "committed %" PRIu64 " transactions to it (node.state, "
                      "written %s while %s)",
                      db->path, rec->commits, t,
                      ol__nstate_run_name(rec->run));
    if (db->files.db_size == 0)
        return refuse(errmsg, hint,
                      "database '%s' is empty (0 bytes), but this node had "
                      "committed %" PRIu64 " transactions to it (node.state, "
                      "written %s)",
                      db->path, rec->commits, t);
    if (db->store_rv != 0)
        return refuse(errmsg, hint,
                      "%s; this node had committed %" PRIu64
                      " transactions to its database (node.state, written "
                      "%s)",
                      db->store_err, rec->commits, t);
    if (db->schema >= 2 &&
        sodium_memcmp(db->db_id, rec->db_id, OL_DBID_SIZE) != 0) {
        ol__hex(db->db_id, OL_DBID_SIZE, have);
        ol__hex(rec->db_id, OL_DBID_SIZE, want);
        return refuse(errmsg, hint,
                      "database '%s' is not the one this node wrote: its "
                      "identity is %.12s..., node.state names %.12s... (the "
                      "file was replaced)",
                      db->path, have, want);
    }
    if (db->commits < rec->commits)
        return refuse(errmsg, hint,
                      "database '%s' is behind what this node committed: it "
                      "holds %" PRIu64 " commits, node.state (written %s) "
                      "says %" PRIu64 ": its newest checkpoints are missing "
                      "(a deleted or truncated outlast.db-wal, or an older "
                      "copy of the file)",
                      db->path, db->commits, t, rec->commits);
    if (rec->run == OL_NSTATE_RUNNING && !db->files.wal)
        return refuse(errmsg, hint,
                      "the node stopped without closing its database "
                      "(node.state, written %s while running), and "
                      "'%s-wal', which held its newest commits, is missing",
                      t, db->path);
    return 0;
}

/* ---- the writer ---- */

static void w_work(uv_work_t *req)
{
    struct ol__nstate_w *w = req->data;

    w->rv = ol__nstate_write(w->path, w->key, &w->cur, w->errmsg);
}

static void w_kick(struct ol__nstate_w *w);

static void w_after(uv_work_t *req, int status)
{
    struct ol__nstate_w *w = req->data;

    w->busy = 0;
    w->last_ms = (int64_t)uv_now(w->loop);
    if (status != 0 || w->rv != 0) {
        w->failures++;
        ol_log_rl(OL_LOG_ERROR, "%s",
                  status != 0 ? uv_strerror(status) : w->errmsg);
        w->dirty = 1; /* try again with the next note */
    } else {
        w->writes++;
    }
    if (w->quiesce) {
        if (w->quiesce_cb) {
            void (*cb)(void *) = w->quiesce_cb;

            w->quiesce_cb = NULL;
            cb(w->quiesce_data);
        }
        return;
    }
    if (w->dirty)
        w_kick(w);
}

static void w_timer(uv_timer_t *t)
{
    w_kick(t->data);
}

static void w_kick(struct ol__nstate_w *w)
{
    int64_t now = (int64_t)uv_now(w->loop), wait;

    if (w->busy || !w->dirty || w->quiesce)
        return;
    wait = w->last_ms + OL_NSTATE_INTERVAL_MS - now;
    if (wait > 0) {
        if (!uv_is_active((uv_handle_t *)&w->timer))
            uv_timer_start(&w->timer, w_timer, (uint64_t)wait, 0);
        return;
    }
    /* cur keeps its serial: the write increments it. */
    w->next.serial = w->cur.serial;
    w->cur = w->next;
    w->dirty = 0;
    w->busy = 1;
    w->work.data = w;
    if (uv_queue_work(w->loop, &w->work, w_work, w_after) != 0) {
        w->busy = 0;
        w->dirty = 1;
    }
}

int ol__nstate_start(struct ol__nstate_w *w, uv_loop_t *loop,
                     const char *path, const struct ol__key *key,
                     const struct ol__nstate *initial, int live,
                     char *errmsg)
{
    int rv;

    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->key = key;
    w->live = live;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->cur = *initial;
    w->cur.run = OL_NSTATE_RUNNING;
    rv = ol__nstate_write(path, key, &w->cur, errmsg);
    if (rv != 0)
        return rv;
    w->next = w->cur;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->timer_open = 1;
    return 0;
}

void ol__nstate_note(struct ol__nstate_w *w, uint64_t commits,
                     uint64_t applied, uint64_t max_epoch)
{
    if (w == NULL || !w->timer_open)
        return;
    if (commits > w->next.commits) {
        w->next.commits = commits;
        w->dirty = 1;
    }
    if (applied > w->next.applied) {
        w->next.applied = applied;
        w->dirty = 1;
    }
    if (max_epoch > w->next.max_epoch) {
        w->next.max_epoch = max_epoch;
        w->dirty = 1;
    }
    if (w->live)
        w_kick(w);
}

void ol__nstate_quiesce(struct ol__nstate_w *w, void (*cb)(void *data),
                        void *data)
{
    w->quiesce = 1;
    if (w->timer_open)
        uv_timer_stop(&w->timer);
    if (w->busy) {
        w->quiesce_cb = cb;
        w->quiesce_data = data;
        return;
    }
    cb(data);
}

int ol__nstate_put(struct ol__nstate_w *w, int run, char *errmsg)
{
    int rv;

    if (w->busy) {
        ol__errf(errmsg, "node record: a write is still in flight");
        return OL_EBUSY;
    }
    w->next.serial = w->cur.serial;
    w->cur = w->next;
    w->cur.run = run;
    rv = ol__nstate_write(w->path, w->key, &w->cur, errmsg);
    if (rv == 0) {
        w->writes++;
        w->next = w->cur;
        w->dirty = 0;
    }
    return rv;
}

void ol__nstate_close(struct ol__nstate_w *w)
{
    if (w == NULL || !w->timer_open)
        return;
    w->timer_open = 0;
    uv_close((uv_handle_t *)&w->timer, NULL);
}
