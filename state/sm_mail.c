/*
 * Delivering messages: a checkpoint's outbox into its recipients'
 * mailboxes, a message that cannot be delivered back to its sender as a
 * bounce, and the acknowledged messages out.  SEND and CONFIG store their
 * messages through ol__sm_mail_put() as well.
 */
#include <inttypes.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "sm_int.h"

struct ol__sm_agent *ol__sm_mail_target(struct ol__sm *sm,
                                        const struct ol__cmd *c,
                                        uint32_t len, struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);

    if (a == NULL || a->status == OL_AGENT_REMOVED) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND,
                   a ? "the agent was removed" : "no such agent");
        return NULL;
    }
    if (ol__sm_mail_full(a, len)) {
        ol__fx_cmd(fx, c, OL_EFULL, "its mailbox is full");
        return NULL;
    }
    return a;
}

int ol__sm_mail_put(struct ol__sm *sm, struct ol__sm_agent *to,
                    const char *from, uint64_t seq, uint32_t idx,
                    const void *p, uint32_t len, struct ol__effects *fx)
{
    sqlite3_stmt *st = sm->stmt[ST_MAIL_INS];

    sqlite3_bind_text(st, 1, to->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 4, idx);
    sqlite3_bind_blob(st, 5, p, (int)len, SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    if (sqlite3_changes(sm->st->db) == 0)
        return 0;
    ol__sm_mail_count(sm, to, 1, len, fx);
    ol__fx_mail(fx, to->name, from, seq, idx, p, len,
                sqlite3_last_insert_rowid(sm->st->db));
    return 1;
}

/* Message `i` of checkpoint `c` could not be delivered: it comes back to
 * its sender, from "@bounce", as [to, reason, message] (OL_EVENT_BOUNCE),
 * keyed by the checkpoint's seq and the index like any message.  Only for
 * a checkpoint that asks for it (OL_CKPT_BOUNCE, set by nodes of feature
 * level 3): what every node applies follows from the signed body alone.
 * A bounce that finds its sender gone or full is dropped and logged. */
static int bounce(struct ol__sm *sm, const struct ol__ckpt *c, uint32_t i,
                  const char *why, struct ol__effects *fx)
{
    const struct ol__outmsg *m = &c->outbox[i];
    struct ol__sm_agent *from = ol__map_get(&sm->agents, c->agent);
    struct ol__buf b;
    msgpack_packer pk;
    int rv;

    if (!(c->flags & OL_CKPT_BOUNCE) || from == NULL ||
        from->status == OL_AGENT_REMOVED) {
        sm->stats.mail_dropped++;
        ol_log_rl(OL_LOG_WARN,
                  "agent '%s' seq %" PRIu64 ": message %u to '%s' dropped: "
                  "%s",
                  c->agent, c->seq, i, m->to, why);
        return 0;
    }
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_array(&pk, 3);
    ol__pk_str(&pk, m->to);
    ol__pk_str(&pk, why);
    if (b.base)
        (void)ol__buf_append(&b, m->data, m->len);
    if (b.base == NULL) {
        ol__buf_close(&b);
        return OL_EIO;
    }
    if (ol__sm_mail_full(from, (uint32_t)b.len)) {
        ol_log_rl(OL_LOG_WARN,
                  "agent '%s' seq %" PRIu64 ": message %u to '%s' (%s) "
                  "dropped: the bounce finds the sender's mailbox full",
                  c->agent, c->seq, i, m->to, why);
        sm->stats.mail_dropped++;
        ol__buf_close(&b);
        return 0;
    }
    rv = ol__sm_mail_put(sm, from, OL_AGENT_BOUNCE_SENDER, c->seq, i, b.base,
                         (uint32_t)b.len, fx);
    if (rv > 0)
        sm->stats.mail_bounced++;
    ol__buf_close(&b);
    return rv < 0 ? rv : 0;
}

static int deliver_outbox(struct ol__sm *sm, const struct ol__ckpt *c,
                          struct ol__effects *fx)
{
    for (uint32_t i = 0; i < c->n_outbox; i++) {
        const struct ol__outmsg *m = &c->outbox[i];
        struct ol__sm_agent *to = ol__map_get(&sm->agents, m->to);
        const char *why = NULL;

        if (to == NULL)
            why = "no such agent";
        else if (to->status == OL_AGENT_REMOVED)
            why = "the agent was removed";
        else if (ol__sm_mail_full(to, m->len))
            why = "its mailbox is full";
        if (why ? bounce(sm, c, i, why, fx) != 0
                : ol__sm_mail_put(sm, to, c->agent, c->seq, i, m->data,
                                  m->len, fx) < 0)
            return OL_EIO;
    }
    return 0;
}

/* The messages checkpoint `c` acknowledges leave its agent's mailbox. */
static int remove_acked(struct ol__sm *sm, const struct ol__ckpt *c,
                        struct ol__effects *fx)
{
    sqlite3_stmt *st = sm->stmt[ST_MAIL_DEL];

    for (uint32_t i = 0; i < c->n_acks; i++) {
        const struct ol__msgid *a = &c->acks[i];
        int rc;

        sqlite3_bind_text(st, 1, c->agent, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, a->from, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)a->seq);
        sqlite3_bind_int64(st, 4, a->idx);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            struct ol__sm_agent *me = ol__map_get(&sm->agents, c->agent);

            if (me)
                ol__sm_mail_count(sm, me, -1,
                                  (uint64_t)sqlite3_column_int64(st, 0), fx);
            rc = sqlite3_step(st);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            ol_log_rl(OL_LOG_ERROR, "store: %s", sqlite3_errmsg(sm->st->db));
            return OL_EIO;
        }
    }
    return 0;
}

int ol__sm_deliver(struct ol__sm *sm, const struct ol__ckpt *c,
                   struct ol__effects *fx)
{
    if (deliver_outbox(sm, c, fx) != 0)
        return OL_EIO;
    return remove_acked(sm, c, fx);
}
