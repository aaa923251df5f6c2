/*
 * The state machine's record of bad agents: how often each agent's code
 * has crashed (table crashes), and how full each mailbox is.
 *
 * Crashes are replicated state on purpose.  A node that counted them by
 * itself would forget them when it restarted, and the next node to run the
 * agent after a failover would start from zero: an agent that crashes its
 * host, or a whole node, could go round the cluster for ever.  Every CRASH
 * carries the reporter's clock and settings, so every node applies it the
 * same way; a report is counted once per req (retries are free), never for
 * an agent that is not running, and never for an epoch from before the
 * last START (which wipes the slate).
 *
 * Mailbox counts are kept in the cache only (rebuilt from the table on
 * load): they feed the hard cap, which is deterministic, and the soft-limit
 * reports, which are effects for this node's runtime and change no row.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "sm_int.h"

static int write_crashes(struct ol__sm *sm, const struct ol__sm_agent *a,
                         const char *reason)
{
    sqlite3_stmt *st = sm->stmt[ST_CRASH_PUT];

    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->crashes);
    sqlite3_bind_int64(st, 3, a->crash_since_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)a->crash_floor);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)a->crash_req);
    sqlite3_bind_text(st, 6, reason, -1, SQLITE_STATIC);
    return ol__sm_done(sm, st);
}

int ol__sm_apply_crash(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    char why[OL_REASON_MAX + 1];

    if (a == NULL) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND, "no such agent");
        return 0;
    }
    if (a->status != OL_AGENT_RUNNING && a->status != OL_AGENT_STOPPING) {
        ol__fx_cmd(fx, c, OL_ESTATE, "agent is not running");
        return 0;
    }
    if (c->epoch < a->crash_floor) {
        ol__fx_cmd(fx, c, OL_ESTALE, "crash from before the agent was "
                                     "started again");
        return 0;
    }
    if (c->req != 0 && c->req == a->crash_req) {
        /* A retry of the report last counted. */
        ol__fx_agent(fx, a);
        ol__fx_cmd(fx, c, 0, NULL);
        return 0;
    }
    if (a->crashes == 0 ||
        c->time_ms - a->crash_since_ms > (int64_t)c->window_ms) {
        a->crashes = 1;
        a->crash_since_ms = c->time_ms;
    } else {
        a->crashes++;
    }
    a->crash_req = c->req;
    if (a->crashes >= c->limit) {
        a->status = OL_AGENT_QUARANTINED;
        snprintf(why, sizeof why, "crashed %" PRIu32 " times in %" PRId64
                                  " s: %s",
                 a->crashes,
                 (c->time_ms - a->crash_since_ms) / 1000 + 1, c->reason);
        snprintf(a->reason, sizeof a->reason, "%s", why);
        ol_log(OL_LOG_ERROR, "agent '%s' quarantined: %s", a->name, why);
        if (ol__sm_write_agent(sm, a) != 0)
            return OL_EIO;
    }
    if (write_crashes(sm, a, c->reason) != 0)
        return OL_EIO;
    ol__fx_agent(fx, a);
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

int ol__sm_crash_write(struct ol__sm *sm, const struct ol__sm_agent *a)
{
    return write_crashes(sm, a, "");
}

static void load_crashes_row(struct ol__sm *sm, struct ol__sm_agent *a,
                             sqlite3_stmt *st)
{
    a->crashes = (uint32_t)sqlite3_column_int64(st, 1);
    a->crash_since_ms = sqlite3_column_int64(st, 2);
    a->crash_floor = (uint64_t)sqlite3_column_int64(st, 3);
    a->crash_req = (uint64_t)sqlite3_column_int64(st, 4);
}

static void load_mail_row(struct ol__sm *sm, struct ol__sm_agent *a,
                          sqlite3_stmt *st)
{
    a->mail_n = (uint32_t)sqlite3_column_int64(st, 1);
    a->mail_bytes = (uint64_t)sqlite3_column_int64(st, 2);
    a->mail_full =
        (sm->cfg.mail_soft_n && a->mail_n >= sm->cfg.mail_soft_n) ||
        (sm->cfg.mail_soft_bytes && a->mail_bytes >= sm->cfg.mail_soft_bytes);
}

/* Run `sql`, whose first column names an agent, and hand each row of a
 * known agent to `row`. */
static int each_agent_row(struct ol__sm *sm, const char *sql,
                          void (*row)(struct ol__sm *sm,
                                      struct ol__sm_agent *a,
                                      sqlite3_stmt *st))
{
    sqlite3_stmt *st;
    int rv = ol__store_prepare(sm->st, sql, &st);

    if (rv != 0)
        return rv;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ol__sm_agent *a =
            ol__map_get(&sm->agents, (const char *)sqlite3_column_text(st, 0));

        if (a != NULL)
            row(sm, a, st);
    }
    sqlite3_finalize(st);
    return 0;
}

int ol__sm_load_crashes(struct ol__sm *sm)
{
    int rv = each_agent_row(sm,
                            "SELECT name, n, since_ms, floor, last_req "
                            "FROM crashes",
                            load_crashes_row);

    if (rv != 0)
        return rv;
    return each_agent_row(sm,
                          "SELECT to_agent, count(*), sum(length(payload)) "
                          "FROM mailbox GROUP BY to_agent",
                          load_mail_row);
}

void ol__sm_mail_count(struct ol__sm *sm, struct ol__sm_agent *a, int delta,
                       uint64_t bytes, struct ol__effects *fx)
{
    int full;
    struct ol__effect *e;

    if (delta > 0) {
        a->mail_n++;
        a->mail_bytes += bytes;
    } else {
        a->mail_n = a->mail_n ? a->mail_n - 1 : 0;
        a->mail_bytes = a->mail_bytes >= bytes ? a->mail_bytes - bytes : 0;
    }
    if (sm->cfg.mail_soft_n == 0 && sm->cfg.mail_soft_bytes == 0)
        return;
    /* Full at the limit, open again below three quarters of it, so a
     * sender does not flap on every message. */
    if (a->mail_full)
        full = (sm->cfg.mail_soft_n &&
                a->mail_n >= sm->cfg.mail_soft_n / 4 * 3) ||
               (sm->cfg.mail_soft_bytes &&
                a->mail_bytes >= sm->cfg.mail_soft_bytes / 4 * 3);
    else
        full = (sm->cfg.mail_soft_n && a->mail_n >= sm->cfg.mail_soft_n) ||
               (sm->cfg.mail_soft_bytes &&
                a->mail_bytes >= sm->cfg.mail_soft_bytes);
    if (full == a->mail_full)
        return;
    a->mail_full = full;
    e = ol__fx_add(fx, OL_FX_MAILBOX);
    if (e) {
        snprintf(e->u.box.name, sizeof e->u.box.name, "%s", a->name);
        e->u.box.full = full;
    }
}

int ol__sm_mail_full(const struct ol__sm_agent *a, uint32_t len)
{
    return a->mail_n >= OL_MAILBOX_HARD_MSGS ||
           a->mail_bytes + len > OL_MAILBOX_HARD_BYTES;
}
