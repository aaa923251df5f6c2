/*
 * The database half of an observation, read off the loop thread through a
 * connection of the caller's own.  A read transaction in WAL mode never
 * blocks the writer; every query here is bounded: counts over the agents
 * and mailbox tables and at most rows_max agent rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "obs.h"
#include "state/store.h"

static int64_t file_size(const char *path, const char *suffix)
{
    char p[PATH_MAX + 8];
    struct stat st;

    snprintf(p, sizeof p, "%s%s", path, suffix);
    if (stat(p, &st) != 0)
        return -1;
    return (int64_t)st.st_size;
}

static int fail(sqlite3 *db, sqlite3_stmt *st, struct ol__obs_db *d,
                const char *what)
{
    snprintf(d->errmsg, sizeof d->errmsg, "read %s: %s", what,
             sqlite3_errmsg(db));
    sqlite3_finalize(st);
    d->ok = 0;
    return -1;
}

static int counts(sqlite3 *db, struct ol__obs_db *d)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT status, count(*) FROM agents GROUP BY "
                               "status",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, st, d, "agent counts");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int s = sqlite3_column_int(st, 0);
        uint64_t c = (uint64_t)sqlite3_column_int64(st, 1);

        if (s >= 1 && s <= OL_AGENT_STATUS_MAX)
            d->by_status[s] = c;
        if (s != OL_AGENT_REMOVED)
            d->total += c;
    }
    if (rc != SQLITE_DONE)
        return fail(db, st, d, "agent counts");
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM mailbox", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        return fail(db, st, d, "mailbox");
    d->mailbox_total = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db,
                           "SELECT coalesce(max(c), 0) FROM (SELECT count(*) "
                           "AS c FROM mailbox GROUP BY to_agent)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        return fail(db, st, d, "mailbox");
    d->mailbox_max = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* Quarantined agents first (?1 = 1), then the others (?1 = 0), each by
 * name: the primary key's order, so the second pass reads only as many
 * rows as it keeps.  Removed agents (status 5, tombstones) are counted,
 * not listed. */
static const char rows_sql[] =
    "SELECT a.name, a.kind, a.status, a.owner, a.epoch, a.reason,"
    "       c.seq, c.time_ms,"
    "       (SELECT count(*) FROM mailbox m WHERE m.to_agent = a.name)"
    "  FROM agents a"
    "  LEFT JOIN checkpoints c ON c.agent = a.name AND c.seq ="
    "       (SELECT max(seq) FROM checkpoints WHERE agent = a.name)"
    " WHERE (a.status = 4) = ?1 AND a.status != 5 ORDER BY a.name"
    " LIMIT ?2";

static int rows(sqlite3 *db, uint32_t max, struct ol__obs_db *d)
{
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_DONE;

    d->rows = calloc(max, sizeof *d->rows);
    if (d->rows == NULL) {
        snprintf(d->errmsg, sizeof d->errmsg, "read agents: out of memory");
        d->ok = 0;
        return -1;
    }
    if (sqlite3_prepare_v2(db, rows_sql, -1, &st, NULL) != SQLITE_OK)
        return fail(db, st, d, "agents");
    for (int quarantined = 1; quarantined >= 0 && d->n_rows < max;
         quarantined--) {
        sqlite3_reset(st);
        sqlite3_bind_int(st, 1, quarantined);
        sqlite3_bind_int64(st, 2, max - d->n_rows);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && d->n_rows < max) {
            struct ol__obs_row *r = &d->rows[d->n_rows++];
            const unsigned char *t;

            t = sqlite3_column_text(st, 0);
            snprintf(r->name, sizeof r->name, "%s", t ? (const char *)t : "");
            t = sqlite3_column_text(st, 1);
            snprintf(r->kind, sizeof r->kind, "%s", t ? (const char *)t : "");
            r->status = sqlite3_column_int(st, 2);
            r->owner = (uint64_t)sqlite3_column_int64(st, 3);
            r->epoch = (uint64_t)sqlite3_column_int64(st, 4);
            t = sqlite3_column_text(st, 5);
            snprintf(r->reason, sizeof r->reason, "%s",
                     t ? (const char *)t : "");
            r->seq = (uint64_t)sqlite3_column_int64(st, 6);
            r->time_ms = sqlite3_column_int64(st, 7);
            r->mailbox = (uint64_t)sqlite3_column_int64(st, 8);
        }
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return fail(db, st, d, "agents");
    }
    sqlite3_finalize(st);
    return 0;
}

void ol__obs_db_read(sqlite3 *db, const char *db_path, uint32_t rows_max,
                     struct ol__obs_db *d)
{
    memset(d, 0, sizeof *d);
    d->ok = 1;
    d->db_bytes = file_size(db_path, "");
    d->wal_bytes = file_size(db_path, "-wal");
    if (db == NULL) {
        snprintf(d->errmsg, sizeof d->errmsg, "no database connection");
        d->ok = 0;
        return;
    }
    /* One read transaction: the counts and the rows agree. */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (counts(db, d) == 0 && rows_max)
        rows(db, rows_max, d);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

void ol__obs_db_free(struct ol__obs_db *d)
{
    free(d->rows);
    d->rows = NULL;
    d->n_rows = 0;
}
