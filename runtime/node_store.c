/*
 * The node's storage integrity: the checks before it opens its database
 * (the node record against the files as found), the record while it runs
 * and at a clean stop (nodestate.h), and damage found while running,
 * which is logged, shown in status and stops the agents it touches.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "node.h"
#include "agent.h"

int ol__sqlite_damaged(sqlite3 *db)
{
    int code = db ? sqlite3_extended_errcode(db) & 0xff : 0;

    return code == SQLITE_CORRUPT || code == SQLITE_NOTADB;
}

void ol__node_storage_fault(struct ol__node *n, const char *agent,
                            const char *fmt, ...)
{
    char msg[OL_ERRMSG_SIZE];
    struct ol_agent *a;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n->storage.errors++ == 0) {
        n->storage.first_ms = ol__wall_ms();
        snprintf(n->storage.first, sizeof n->storage.first, "%s", msg);
        ol_log(OL_LOG_ERROR,
               "storage: %s (the database is damaged or failing: run "
               "`outlast verify`)",
               msg);
    } else {
        ol_log_rl(OL_LOG_ERROR, "storage: %s", msg);
    }
    snprintf(n->storage.last, sizeof n->storage.last, "%s", msg);
    if (agent && (a = ol__agent_get(n, agent)) != NULL)
        ol__agent_degrade(a, "%s", msg);
}

void ol__node_walck_fault(void *data, const char *msg)
{
    ol__node_storage_fault(data, NULL, "WAL checkpoint: %s", msg);
}

/* How to recover, for a refusal to start. */
static void recovery_hint(const struct ol__node *n, char *out, size_t cap)
{
    if (n->cfg.cluster)
        snprintf(out, cap,
                 "Nothing was changed. To recover, restore the file from a "
                 "backup, or rebuild this node from its peers: move the "
                 "data directory aside (keep node.key) and add the node to "
                 "the cluster again");
    else
        snprintf(out, cap,
                 "Nothing was changed. To recover, restore the file from a "
                 "backup; or run `outlast recover --data-dir %s --from FILE` "
                 "to continue every agent from FILE (an export bundle or a "
                 "copy of this database) under a new epoch; or `outlast "
                 "recover --data-dir %s --new-history` to start every agent "
                 "over under a new epoch",
                 n->cfg.data_dir, n->cfg.data_dir);
}

/*
 * Compare the node record with the database as found, before anything
 * opens it for writing (an open would create the -wal file whose absence
 * is part of the verdict).  Refusals say what is wrong and how to recover.
 */
int ol__node_check_start(struct ol__node *n, const char *db, const char *ns,
                         struct ol__nstate *rec, int *have_rec)
{
    struct ol__nstate_db v;
    struct ol__store s;
    char hint[768];
    int rv, create;

    recovery_hint(n, hint, sizeof hint);
    rv = ol__nstate_load(ns, n->key.pk, rec, n->errmsg);
    if (rv != 0 && rv != OL_ENOTFOUND) {
        size_t len = strlen(n->errmsg);

        snprintf(n->errmsg + len, sizeof n->errmsg - len, ". %s", hint);
        return OL_ESTATE;
    }
    *have_rec = rv == 0;
    memset(&v, 0, sizeof v);
    v.path = db;
    ol__store_files(db, &v.files);
    if (v.files.db) {
        v.store_rv = ol__store_open(&s, db, OL_STORE_READ);
        if (v.store_rv == 0) {
            v.schema = s.schema;
            memcpy(v.db_id, s.db_id, OL_DBID_SIZE);
            v.commits = s.commits;
            ol__store_close(&s);
        } else {
            snprintf(v.store_err, sizeof v.store_err, "%s", s.errmsg);
        }
    }
    rv = ol__nstate_check(*have_rec ? rec : NULL, &v, n->self_id, hint,
                          &create, n->errmsg);
    if (rv != 0)
        return rv;
    if (create && v.files.db == 0)
        ol_log(OL_LOG_INFO, "no database yet: creating '%s'", db);
    else if (!*have_rec)
        ol_log(OL_LOG_WARN,
               "no node record beside database '%s': recording it now",
               db);
    return 0;
}

/* The highest epoch of any agent in the state machine. */
static uint64_t sm_max_epoch(const struct ol__sm *sm)
{
    const struct ol__sm_agent *a;
    uint64_t m = 0;

    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);)
        if (a->epoch > m)
            m = a->epoch;
    return m;
}

/* Write node.state as the database is now, marked running. */
int ol__node_record_start(struct ol__node *n, const char *ns,
                          const struct ol__nstate *rec)
{
    struct ol__nstate st;

    memset(&st, 0, sizeof st);
    if (rec)
        st = *rec;
    st.node_id = n->self_id;
    memcpy(st.db_id, n->store.db_id, OL_DBID_SIZE);
    st.commits = n->store.commits;
    st.applied = ol__sm_applied(n->sm);
    n->max_epoch = sm_max_epoch(n->sm);
    if (n->store.epoch_floor > n->max_epoch)
        n->max_epoch = n->store.epoch_floor;
    if (n->max_epoch > st.max_epoch)
        st.max_epoch = n->max_epoch;
    n->max_epoch = st.max_epoch;
    st.history = n->store.history;
    if (rec && rec->history != st.history)
        ol_log(OL_LOG_INFO, "database history %" PRIu64 " (node.state "
               "said %" PRIu64 ")", st.history, rec->history);
    if (st.history > 0)
        ol_log(OL_LOG_WARN,
               "this database is history %" PRIu64 ", made by `outlast %s`: "
               "its agents run at epoch %" PRIu64 " or above, above every "
               "epoch this node used before",
               st.history,
               n->store.recovered[0] ? n->store.recovered : "recover",
               n->store.epoch_floor);
    return ol__nstate_start(&n->nst, n->loop, ns, &n->key, &st,
                            !n->cfg.cluster, n->errmsg);
}

/* The store's final figures into node.state, the database closed between
 * "closing" and "stopped" (closing the last connection merges and removes
 * the WAL). */
void ol__node_record_finish(struct ol__node *n)
{
    char err[OL_ERRMSG_SIZE];

    if (!n->nst.timer_open) {
        ol__node_close_store(n);
        return;
    }
    if (n->store.db)
        sqlite3_wal_checkpoint_v2(n->store.db, NULL, SQLITE_CHECKPOINT_FULL,
                                  NULL, NULL);
    ol__nstate_note(&n->nst, n->store.commits,
                    n->sm ? ol__sm_applied(n->sm) : 0, n->max_epoch);
    if (ol__nstate_put(&n->nst, OL_NSTATE_CLOSING, err) != 0)
        ol_log(OL_LOG_ERROR, "%s", err);
    ol__node_close_store(n);
    if (ol__nstate_put(&n->nst, OL_NSTATE_STOPPED, err) != 0)
        ol_log(OL_LOG_ERROR, "%s", err);
    ol__nstate_close(&n->nst);
}

