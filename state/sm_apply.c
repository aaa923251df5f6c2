/*
 * The state machine's apply path: checkpoints (seal, hash, signer, epoch,
 * seq and chain checks, then the row, the mailbox and retention) and the
 * lifecycle commands.  Refusals are effects, not errors: a refused
 * checkpoint must not stop the rest of its batch from applying.
 */
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "record/seal.h"
#include "sm_int.h"

#define PRUNE_STEP 64

/* Find a live node by key. */
static const struct ol__sm_node *node_by_pk(const struct ol__sm *sm,
                                            const uint8_t *pk)
{
    for (size_t i = 0; i < sm->n_nodes; i++)
        if (!sm->nodes[i].removed &&
            memcmp(sm->nodes[i].pk, pk, OL_PK_SIZE) == 0)
            return &sm->nodes[i];
    return NULL;
}

/* ---- checkpoints ---- */

struct seal_ctx {
    const struct ol__cmd *cmd;
    int trusted; /* sealed by this process */
    struct ol__seal seal;
    int64_t id; /* 0 until the seal row exists */
    int64_t accepted;
};

static int seal_row(struct ol__sm *sm, struct seal_ctx *sc)
{
    sqlite3_stmt *st;
    uint8_t hash[OL_HASH_SIZE];
    int rc;

    if (sc->id)
        return 0;
    ol__seal_hash(sc->cmd->seal.p, sc->cmd->seal.len, hash);
    st = sm->stmt[ST_SEAL_INS];
    sqlite3_bind_blob(st, 1, hash, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, sc->cmd->seal.p, (int)sc->cmd->seal.len,
                      SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, sc->cmd->sig, OL_SIG_SIZE, SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    st = sm->stmt[ST_SEAL_ID];
    sqlite3_bind_blob(st, 1, hash, OL_HASH_SIZE, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        sc->id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return sc->id ? 0 : OL_EIO;
}

/* Adjust a seal's count of live checkpoints, dropping it at zero. */
int ol__sm_seal_live(struct ol__sm *sm, int64_t id, int64_t delta)
{
    sqlite3_stmt *st = sm->stmt[ST_SEAL_LIVE];

    sqlite3_bind_int64(st, 1, delta);
    sqlite3_bind_int64(st, 2, id);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    if (delta >= 0)
        return 0;
    st = sm->stmt[ST_SEAL_GC];
    sqlite3_bind_int64(st, 1, id);
    return ol__sm_done(sm, st);
}

/* Delete checkpoints that fell out of the retention window.  Seals lose
 * one reference per deleted row; runs of the same seal are batched. */
static int prune(struct ol__sm *sm, const char *agent, uint64_t seq)
{
    sqlite3_stmt *st = sm->stmt[ST_PRUNE];
    int64_t ids[PRUNE_STEP];
    int n = 0, rc, rv = 0;

    /* Prune in steps of PRUNE_STEP rows: one DELETE per step instead of
     * one per checkpoint, at the price of keeping up to PRUNE_STEP - 1
     * rows more than `retain`. */
    if (sm->cfg.retain == 0 || seq <= sm->cfg.retain || seq % PRUNE_STEP)
        return 0;
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(seq - sm->cfg.retain));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n < (int)(sizeof ids / sizeof ids[0]))
            ids[n++] = sqlite3_column_int64(st, 0);
        else
            rv = OL_EIO; /* more than 64 rows at once: see below */
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ol_log_rl(OL_LOG_ERROR, "store: prune '%s': %s", agent,
                  sqlite3_errmsg(sm->st->db));
        return OL_EIO;
    }
    /* A retention cut that drops more than PRUNE_STEP rows at once (the
     * setting was lowered) is finished by the sweep below. */
    if (rv != 0)
        return ol__sm_sweep_seals(sm);
    for (int i = 0; i < n && rv == 0; i++)
        rv = ol__sm_seal_live(sm, ids[i], -1);
    return rv;
}

int ol__sm_sweep_seals(struct ol__sm *sm)
{
    return ol__store_exec(
        sm->st,
        "UPDATE seals SET live = (SELECT count(*) FROM checkpoints "
        "WHERE checkpoints.seal = seals.id);"
        "DELETE FROM seals WHERE live <= 0;");
}

static int store_evidence(struct ol__sm *sm, const char *agent, uint64_t seq,
                          const uint8_t *stored, const uint8_t *other,
                          const struct ol__blob *body, const char *note)
{
    sqlite3_stmt *st = sm->stmt[ST_EVIDENCE];

    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 3, sm->now_ms);
    sqlite3_bind_text(st, 4, "divergence", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, stored, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, other, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_blob(st, 7, body->p, (int)body->len, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, note, -1, SQLITE_STATIC);
    return ol__sm_done(sm, st);
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
    sqlite3_stmt *st = sm->stmt[ST_MAIL_INS];
    struct ol__buf b;
    msgpack_packer pk;
    int rv = 0;

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
    msgpack_pack_str_with_body(&pk, m->to, strlen(m->to));
    msgpack_pack_str_with_body(&pk, why, strlen(why));
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
    sqlite3_bind_text(st, 1, c->agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, OL_AGENT_BOUNCE_SENDER, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)c->seq);
    sqlite3_bind_int64(st, 4, i);
    sqlite3_bind_blob(st, 5, b.base, (int)b.len, SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0)
        rv = OL_EIO;
    else if (sqlite3_changes(sm->st->db) > 0) {
        sm->stats.mail_bounced++;
        ol__sm_mail_count(sm, from, 1, b.len, fx);
        ol__fx_mail(fx, c->agent, OL_AGENT_BOUNCE_SENDER, c->seq, i, b.base,
                    (uint32_t)b.len, sqlite3_last_insert_rowid(sm->st->db));
    }
    ol__buf_close(&b);
    return rv;
}

static int deliver_outbox(struct ol__sm *sm, const struct ol__ckpt *c,
                          struct ol__effects *fx)
{
    sqlite3_stmt *st = sm->stmt[ST_MAIL_INS];

    for (uint32_t i = 0; i < c->n_outbox; i++) {
        const struct ol__outmsg *m = &c->outbox[i];
        struct ol__sm_agent *to = ol__map_get(&sm->agents, m->to);

        if (to == NULL || to->status == OL_AGENT_REMOVED ||
            ol__sm_mail_full(to, m->len)) {
            if (bounce(sm, c, i,
                       to == NULL                       ? "no such agent"
                       : to->status == OL_AGENT_REMOVED ? "the agent was removed"
                                                        : "its mailbox is full",
                       fx) != 0)
                return OL_EIO;
            continue;
        }
        sqlite3_bind_text(st, 1, m->to, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->agent, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)c->seq);
        sqlite3_bind_int64(st, 4, i);
        sqlite3_bind_blob(st, 5, m->data, (int)m->len, SQLITE_STATIC);
        if (ol__sm_done(sm, st) != 0)
            return OL_EIO;
        if (sqlite3_changes(sm->st->db) > 0) {
            ol__sm_mail_count(sm, to, 1, m->len, fx);
            ol__fx_mail(fx, m->to, c->agent, c->seq, i, m->data, m->len,
                    sqlite3_last_insert_rowid(sm->st->db));
        }
    }
    st = sm->stmt[ST_MAIL_DEL];
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

/* Apply one checkpoint body of a CKPTS command.  Returns 0 (applied or
 * refused, reported as an effect) or OL_EIO. */
static int apply_body(struct ol__sm *sm, struct seal_ctx *sc, uint32_t i,
                      struct ol__effects *fx)
{
    const struct ol__blob *body = &sc->cmd->bodies[i];
    const struct ol__sm_node *signer;
    struct ol__sm_agent *a;
    struct ol__ckpt c;
    uint8_t hash[OL_HASH_SIZE], old[OL_HASH_SIZE];
    char why[160], err[OL_ERRMSG_SIZE];
    sqlite3_stmt *st;
    int rv, found;

    /* A batch this process sealed lists the hashes it computed over these
     * very bytes; anything else is hashed and compared. */
    if (sc->trusted)
        memcpy(hash, sc->seal.hashes + (size_t)i * OL_HASH_SIZE,
               OL_HASH_SIZE);
    else
        ol__ckpt_hash(body->p, body->len, hash);
    if (!sc->trusted &&
        memcmp(hash, sc->seal.hashes + (size_t)i * OL_HASH_SIZE,
               OL_HASH_SIZE) != 0) {
        sm->stats.ckpts_refused++;
        ol_log_rl(OL_LOG_WARN, "checkpoint %u of a seal: hash is not the "
                               "one the seal lists; refused", i);
        return 0;
    }
    if (ol__ckpt_decode_meta(body->p, body->len, &c, err) != 0) {
        sm->stats.ckpts_refused++;
        ol_log_rl(OL_LOG_WARN, "sealed checkpoint %u: %s; refused", i, err);
        return 0;
    }
    rv = 0;
    a = ol__map_get(&sm->agents, c.agent);
    signer = node_by_pk(sm, sc->seal.signer);
    if (memcmp(c.signer, sc->seal.signer, OL_PK_SIZE) != 0) {
        snprintf(why, sizeof why, "signer differs from the seal's");
        rv = OL_EBADSIG;
    } else if (a == NULL) {
        snprintf(why, sizeof why, "no agent '%s'", c.agent);
        rv = OL_ENOTFOUND;
    } else if (c.epoch != a->epoch) {
        snprintf(why, sizeof why, "epoch %" PRIu64 " is stale (current %" PRIu64 ")",
                 c.epoch, a->epoch);
        rv = OL_ESTALE;
    } else if (signer == NULL || signer->id != a->owner) {
        snprintf(why, sizeof why, "signer is not the owner (node %" PRIu64 ")",
                 a->owner);
        rv = OL_ESTALE;
    } else if (a->status != OL_AGENT_RUNNING &&
               a->status != OL_AGENT_STOPPING) {
        snprintf(why, sizeof why, "agent is %s", ol__status_name(a->status));
        rv = OL_ESTATE;
    } else if (c.seq <= a->head_seq) {
        found = ol__sm_stored_hash(sm, c.agent, c.seq, old);
        if (found < 0) {
            rv = OL_EIO;
            goto out;
        }
        if (found && memcmp(old, hash, OL_HASH_SIZE) == 0) {
            /* A retry of a committed checkpoint: idempotent. */
            ol__fx_ckpt(fx, c.agent, c.epoch, c.seq, hash, 0, 1, NULL);
            goto out;
        }
        if (found) {
            snprintf(why, sizeof why,
                     "a different checkpoint for seq %" PRIu64 " is stored",
                     c.seq);
            ol_log(OL_LOG_ERROR,
                   "agent '%s': divergence at seq %" PRIu64
                   ": quarantined, evidence stored",
                   c.agent, c.seq);
            a->status = OL_AGENT_QUARANTINED;
            snprintf(a->reason, sizeof a->reason,
                     "divergence at seq %" PRIu64, c.seq);
            if (store_evidence(sm, c.agent, c.seq, old, hash, body, why) ||
                ol__sm_write_agent(sm, a)) {
                rv = OL_EIO;
                goto out;
            }
            ol__fx_agent(fx, a);
            rv = OL_EDIVERGED;
        } else {
            snprintf(why, sizeof why, "seq %" PRIu64 " is behind head %" PRIu64,
                     c.seq, a->head_seq);
            rv = OL_ESEQ;
        }
    } else if (c.seq != a->head_seq + 1) {
        snprintf(why, sizeof why, "seq %" PRIu64 " skips ahead of head %" PRIu64,
                 c.seq, a->head_seq);
        rv = OL_ESEQ;
    } else if (memcmp(c.prev_hash, a->head_hash, OL_HASH_SIZE) != 0) {
        snprintf(why, sizeof why, "prev_hash does not match seq %" PRIu64,
                 a->head_seq);
        rv = OL_EBADCHAIN;
    }
    if (rv != 0) {
        sm->stats.ckpts_refused++;
        ol__fx_ckpt(fx, c.agent, c.epoch, c.seq, hash, rv, 0, why);
        ol_log(OL_LOG_DEBUG, "checkpoint '%s' seq %" PRIu64 " refused: %s",
               c.agent, c.seq, why);
        rv = 0;
        goto out;
    }

    if (seal_row(sm, sc) != 0) {
        rv = OL_EIO;
        goto out;
    }
    st = sm->stmt[ST_INS_CKPT];
    sqlite3_bind_text(st, 1, c.agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c.seq);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)c.epoch);
    sqlite3_bind_int64(st, 4, c.time_ms);
    sqlite3_bind_blob(st, 5, hash, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, sc->id);
    sqlite3_bind_int64(st, 7, i);
    sqlite3_bind_blob(st, 8, body->p, (int)body->len, SQLITE_STATIC);
    sqlite3_bind_int(st, 9, 0);
    if (ol__sm_done(sm, st) != 0 || deliver_outbox(sm, &c, fx) != 0 ||
        prune(sm, c.agent, c.seq) != 0) {
        rv = OL_EIO;
        goto out;
    }
    sc->accepted++;
    a->head_seq = c.seq;
    memcpy(a->head_hash, hash, OL_HASH_SIZE);
    a->head_time_ms = c.time_ms;
    sm->stats.ckpts_applied++;
    ol__fx_ckpt(fx, c.agent, c.epoch, c.seq, hash, 0, 0, NULL);
    if (c.flags & OL_CKPT_FINAL) {
        a->status = OL_AGENT_STOPPED;
        if (ol__sm_write_agent(sm, a) != 0) {
            rv = OL_EIO;
            goto out;
        }
        ol__fx_agent(fx, a);
    }
out:
    ol__ckpt_free(&c);
    return rv;
}

static int apply_ckpts(struct ol__sm *sm, const struct ol__cmd *cmd,
                       int trusted, struct ol__effects *fx)
{
    struct seal_ctx sc;
    int rv;

    memset(&sc, 0, sizeof sc);
    sc.cmd = cmd;
    sc.trusted = trusted;
    rv = trusted ? ol__seal_parse(cmd->seal.p, cmd->seal.len, &sc.seal)
                 : ol__seal_verify(cmd->seal.p, cmd->seal.len, cmd->sig,
                                   &sc.seal);
    if (rv != 0 || sc.seal.n != cmd->n_bodies ||
        node_by_pk(sm, sc.seal.signer) == NULL) {
        sm->stats.ckpts_refused += cmd->n_bodies;
        ol_log_rl(OL_LOG_WARN, "seal over %u checkpoints refused: %s",
                  cmd->n_bodies,
                  rv == OL_EBADSIG ? "signature does not verify"
                  : rv != 0        ? "malformed"
                  : sc.seal.n != cmd->n_bodies
                      ? "hash count differs from body count"
                      : "signer is not a node of this cluster");
        return 0;
    }
    for (uint32_t i = 0; i < cmd->n_bodies; i++) {
        rv = apply_body(sm, &sc, i, fx);
        if (rv != 0)
            return rv;
    }
    if (sc.accepted)
        return ol__sm_seal_live(sm, sc.id, sc.accepted);
    return 0;
}

int ol__sm_apply_sealed(struct ol__sm *sm, int64_t time_ms, const void *seal,
                        size_t seal_len, const uint8_t sig[OL_SIG_SIZE],
                        const struct ol__blob *bodies, uint32_t n,
                        struct ol__effects *fx)
{
    struct ol__cmd c;

    sm->now_ms = time_ms;
    memset(&c, 0, sizeof c);
    c.type = OL_CMD_CKPTS;
    c.seal.p = seal;
    c.seal.len = (uint32_t)seal_len;
    c.sig = sig;
    c.bodies = (struct ol__blob *)bodies;
    c.n_bodies = n;
    return apply_ckpts(sm, &c, 1, fx);
}

int ol__sm_apply(struct ol__sm *sm, const void *entry, size_t len,
                 int trusted, struct ol__effects *fx)
{
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];
    int rv = 0;

    rv = ol__entry_decode(entry, len, &e, err);
    if (rv != 0) {
        sm->stats.entries_malformed++;
        snprintf(sm->errmsg, sizeof sm->errmsg, "%s", err);
        return rv == OL_ENOMEM ? OL_EIO : rv;
    }
    /* Every clock the apply path writes comes from the entry, so that all
     * nodes write the same rows. */
    sm->now_ms = e.time_ms;
    sm->entry_term = e.term;
    for (uint32_t i = 0; i < e.n && rv == 0; i++) {
        const struct ol__cmd *c = &e.cmds[i];

        /* Format 1 entries predate the table of applied request ids:
         * they are applied as they were then. */
        if (c->type == OL_CMD_CKPTS)
            rv = apply_ckpts(sm, c, trusted, fx);
        else if (e.format >= 2)
            rv = ol__sm_apply_once(sm, c, fx);
        else
            rv = ol__sm_apply_cmd(sm, c, fx);
    }
    ol__entry_free(&e);
    return rv;
}

/* ---- lifecycle commands ---- */

static int apply_spawn(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    sqlite3_stmt *st = sm->stmt[ST_AGENT_INS];
    int64_t now = sm->now_ms;

    if (a) {
        /* A retried spawn is not a conflict. */
        if (a->req == c->req && c->req != 0)
            ol__fx_cmd(fx, c, 0, NULL);
        else if (a->status == OL_AGENT_REMOVED)
            ol__fx_cmd(fx, c, OL_EEXISTS,
                       "an agent of that name was removed; its history is "
                       "kept under the name, so choose another");
        else
            ol__fx_cmd(fx, c, OL_EEXISTS, "an agent with that name exists");
        return 0;
    }
    if (c->owner != 0 && ol__sm_node(sm, c->owner) == NULL) {
        ol__fx_cmd(fx, c, OL_EINVAL, "owner is not a node of this cluster");
        return 0;
    }
    a = calloc(1, sizeof *a);
    if (a == NULL || (a->config = malloc(c->config.len ? c->config.len
                                                       : 1)) == NULL) {
        free(a);
        return OL_EIO;
    }
    snprintf(a->name, sizeof a->name, "%s", c->name);
    snprintf(a->kind, sizeof a->kind, "%s", c->kind);
    memcpy(a->config, c->config.p, c->config.len);
    a->config_len = c->config.len;
    /* An unplaced agent waits at epoch 0 for the leader's first PLACE.  A
     * database made by `outlast recover` starts agents at its epoch floor,
     * above every epoch the node used before. */
    a->owner = c->owner;
    a->inc = c->inc;
    a->epoch = c->owner ? (sm->st->epoch_floor ? sm->st->epoch_floor : 1)
                        : 0;
    a->status = OL_AGENT_RUNNING;
    a->req = c->req;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, a->config, (int)a->config_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)a->owner);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)a->epoch);
    sqlite3_bind_int(st, 6, a->status);
    sqlite3_bind_text(st, 7, "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)a->req);
    sqlite3_bind_int64(st, 9, now);
    sqlite3_bind_int64(st, 10, now);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)a->inc);
    if (ol__sm_done(sm, st) != 0 || ol__map_put(&sm->agents, a->name, a)) {
        ol__sm_agent_free(a);
        return OL_EIO;
    }
    ol__fx_agent(fx, a);
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

static int apply_node(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    const struct ol__sm_node *cur = ol__sm_node(sm, c->node_id);
    struct ol__effect *e;
    struct ol__sm_node n;

    if (c->type == OL_CMD_NODE_DEL && cur == NULL) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND, "no such node");
        return 0;
    }
    if (c->type == OL_CMD_NODE) {
        for (size_t i = 0; i < sm->n_nodes; i++)
            if (sm->nodes[i].id != c->node_id && !sm->nodes[i].removed &&
                memcmp(sm->nodes[i].pk, c->pk, OL_PK_SIZE) == 0) {
                ol__fx_cmd(fx, c, OL_EEXISTS,
                           "that key is another node's already");
                return 0;
            }
    }
    memset(&n, 0, sizeof n);
    if (c->type == OL_CMD_NODE) {
        n.id = c->node_id;
        memcpy(n.pk, c->pk, OL_PK_SIZE);
        snprintf(n.address, sizeof n.address, "%s", c->address);
        snprintf(n.labels, sizeof n.labels, "%s", c->labels);
    } else {
        n = *cur;
        n.removed = 1;
    }
    if (ol__sm_write_node(sm, &n) != 0 || ol__sm_cache_node(sm, &n))
        return OL_EIO;
    e = ol__fx_add(fx, OL_FX_NODE);
    if (e)
        e->u.node = n;
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

static int apply_send(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    sqlite3_stmt *st = sm->stmt[ST_MAIL_INS];
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);

    if (a == NULL || a->status == OL_AGENT_REMOVED) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND,
                   a ? "the agent was removed" : "no such agent");
        return 0;
    }
    if (ol__sm_mail_full(a, c->payload.len)) {
        ol__fx_cmd(fx, c, OL_EFULL, "its mailbox is full");
        return 0;
    }
    sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "@cli", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)c->msg_seq);
    sqlite3_bind_int64(st, 4, 0);
    sqlite3_bind_blob(st, 5, c->payload.p, (int)c->payload.len,
                      SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    if (sqlite3_changes(sm->st->db) > 0) {
        ol__sm_mail_count(sm, a, 1, c->payload.len, fx);
        ol__fx_mail(fx, c->name, "@cli", c->msg_seq, 0, c->payload.p,
                    c->payload.len, sqlite3_last_insert_rowid(sm->st->db));
    }
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

static int apply_noop(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    (void)sm;
    (void)c;
    (void)fx;
    return 0;
}

/* The commands below change one agent's row: they return 0 with the row
 * changed in place, or an outcome code with `why` set (nothing changed). */
typedef int (*agent_fn)(struct ol__sm *sm, const struct ol__cmd *c,
                        struct ol__sm_agent *a, char *why, size_t cap);

static int agent_stop(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)sm;
    (void)c;
    (void)why;
    (void)cap;
    if (a->status == OL_AGENT_RUNNING)
        a->status = OL_AGENT_STOPPING;
    else if (a->status == OL_AGENT_QUARANTINED)
        a->status = OL_AGENT_STOPPED;
    return 0;
}

static int agent_start(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)sm;
    (void)c;
    if (a->status == OL_AGENT_RUNNING)
        return 1; /* already running: success, nothing to write */
    if (a->status != OL_AGENT_STOPPED && a->status != OL_AGENT_QUARANTINED) {
        snprintf(why, cap, "agent is stopping");
        return OL_ESTATE;
    }
    a->status = OL_AGENT_RUNNING;
    a->epoch++;
    a->reason[0] = '\0';
    /* A fresh start: crashes before it do not count (apply_start writes
     * the crashes row). */
    a->crashes = 0;
    a->crash_since_ms = 0;
    a->crash_floor = a->epoch;
    return 0;
}

/* Only a stopped (or quarantined) agent is removed: its final checkpoint
 * is its last record.  The row stays as the tombstone. */
static int agent_rm(struct ol__sm *sm, const struct ol__cmd *c,
                    struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)c;
    if (a->status != OL_AGENT_STOPPED && a->status != OL_AGENT_QUARANTINED) {
        snprintf(why, cap, "the agent is %s: stop it first (`outlast rm` "
                           "does)", ol__status_name(a->status));
        return OL_ESTATE;
    }
    /* Its undelivered messages go with it. */
    sqlite3_bind_text(sm->stmt[ST_MAIL_CLEAR], 1, a->name, -1,
                      SQLITE_STATIC);
    if (ol__sm_done(sm, sm->stmt[ST_MAIL_CLEAR]) != 0)
        return OL_EIO;
    a->mail_n = 0;
    a->mail_bytes = 0;
    a->status = OL_AGENT_REMOVED;
    snprintf(a->reason, sizeof a->reason, "removed");
    return 0;
}

static int agent_place(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__sm_agent *a, char *why, size_t cap)
{
    if (c->epoch != a->epoch + 1) {
        snprintf(why, cap,
                 "placement for epoch %" PRIu64 " but the agent is at %" PRIu64,
                 c->epoch, a->epoch);
        return OL_ESTALE;
    }
    if (ol__sm_node(sm, c->owner) == NULL) {
        snprintf(why, cap, "owner is not a node of this cluster");
        return OL_EINVAL;
    }
    a->owner = c->owner;
    a->inc = c->inc;
    a->epoch = c->epoch;
    return 0;
}

/* A placement decided by the leader of an older term than the entry it
 * lands in came from a deposed leader (a forward, or a leader back from a
 * pause): what it saw is stale, so it is refused. */
static int agent_move(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__sm_agent *a, char *why, size_t cap)
{
    if (sm->entry_term && c->term < sm->entry_term) {
        snprintf(why, cap,
                 "placement decided in term %" PRIu64 ", applied in term "
                 "%" PRIu64 ": a deposed leader's",
                 c->term, sm->entry_term);
        return OL_ESTALE;
    }
    return agent_place(sm, c, a, why, cap);
}

static int agent_quarantine(struct ol__sm *sm, const struct ol__cmd *c,
                            struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)sm;
    if (c->epoch != a->epoch || (a->status != OL_AGENT_RUNNING &&
                                 a->status != OL_AGENT_STOPPING)) {
        snprintf(why, cap, "quarantine for another epoch");
        return OL_ESTALE;
    }
    a->status = OL_AGENT_QUARANTINED;
    snprintf(a->reason, sizeof a->reason, "%s", c->reason);
    return 0;
}

static int apply_agent(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx, agent_fn fn)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    char why[160];
    int old, rv;

    if (a == NULL) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND, "no such agent");
        return 0;
    }
    if (a->status == OL_AGENT_REMOVED) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND, "the agent was removed");
        return 0;
    }
    old = a->status;
    why[0] = '\0';
    rv = fn(sm, c, a, why, sizeof why);
    if (rv != 0) {
        ol__fx_cmd(fx, c, rv > 0 ? 0 : rv, rv > 0 ? NULL : why);
        return 0;
    }
    if (ol__sm_write_agent(sm, a) != 0)
        return OL_EIO;
    if (a->status != old || c->type == OL_CMD_PLACE ||
        c->type == OL_CMD_MOVE || c->type == OL_CMD_START)
        ol__fx_agent(fx, a);
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

static int apply_stop(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    return apply_agent(sm, c, fx, agent_stop);
}

static int apply_start(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx)
{
    const struct ol__sm_agent *a = ol__sm_agent(sm, c->name);
    uint64_t epoch = a ? a->epoch : 0;
    int rv = apply_agent(sm, c, fx, agent_start);

    a = ol__sm_agent(sm, c->name);
    if (rv == 0 && a && a->epoch != epoch)
        rv = ol__sm_crash_write(sm, a);
    return rv;
}

static int apply_rm(struct ol__sm *sm, const struct ol__cmd *c,
                    struct ol__effects *fx)
{
    return apply_agent(sm, c, fx, agent_rm);
}

/* A new config: the row (what open() sees from now on) and a message from
 * "@config" that the agent sees as OL_EVENT_CONFIG, in its checkpointed
 * mailbox like any other. */
static int apply_config(struct ol__sm *sm, const struct ol__cmd *c,
                        struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    sqlite3_stmt *st;
    uint8_t *cfg;

    if (a == NULL || a->status == OL_AGENT_REMOVED) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND,
                   a ? "the agent was removed" : "no such agent");
        return 0;
    }
    if (ol__sm_mail_full(a, c->config.len)) {
        ol__fx_cmd(fx, c, OL_EFULL, "its mailbox is full");
        return 0;
    }
    cfg = malloc(c->config.len ? c->config.len : 1);
    if (cfg == NULL)
        return OL_EIO;
    memcpy(cfg, c->config.p, c->config.len);
    st = sm->stmt[ST_AGENT_CFG];
    sqlite3_bind_blob(st, 1, cfg, (int)c->config.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sm->now_ms);
    sqlite3_bind_text(st, 3, a->name, -1, SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0) {
        free(cfg);
        return OL_EIO;
    }
    free(a->config);
    a->config = cfg;
    a->config_len = c->config.len;
    st = sm->stmt[ST_MAIL_INS];
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "@config", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)c->msg_seq);
    sqlite3_bind_int64(st, 4, 0);
    sqlite3_bind_blob(st, 5, c->config.p, (int)c->config.len,
                      SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    if (sqlite3_changes(sm->st->db) > 0) {
        ol__sm_mail_count(sm, a, 1, c->config.len, fx);
        ol__fx_mail(fx, a->name, "@config", c->msg_seq, 0, c->config.p,
                    c->config.len, sqlite3_last_insert_rowid(sm->st->db));
    }
    ol__fx_agent(fx, a);
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

static int apply_place(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx)
{
    return apply_agent(sm, c, fx, agent_place);
}

static int apply_move(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    uint64_t from = a ? a->owner : 0;
    int rv;

    /* The hand-off rides on this one effect; the stored row never keeps
     * it, so no later change of the agent waits again. */
    if (a && c->hold_ms && from && from != c->owner) {
        a->handoff_from = from;
        a->handoff_ms = c->hold_ms;
    }
    rv = apply_agent(sm, c, fx, agent_move);
    if (a) {
        a->handoff_from = 0;
        a->handoff_ms = 0;
    }
    return rv;
}

static int apply_quarantine(struct ol__sm *sm, const struct ol__cmd *c,
                            struct ol__effects *fx)
{
    return apply_agent(sm, c, fx, agent_quarantine);
}

/* How each command type applies; the codec's table (cmd.c) has the same
 * types, which a unit test checks. */
static const struct {
    uint32_t type;
    int (*apply)(struct ol__sm *sm, const struct ol__cmd *c,
                 struct ol__effects *fx);
} appliers[] = {
    {OL_CMD_SPAWN, apply_spawn},
    {OL_CMD_STOP, apply_stop},
    {OL_CMD_PLACE, apply_place},
    {OL_CMD_SEND, apply_send},
    {OL_CMD_QUARANTINE, apply_quarantine},
    {OL_CMD_NODE, apply_node},
    {OL_CMD_NODE_DEL, apply_node},
    {OL_CMD_START, apply_start},
    {OL_CMD_NOOP, apply_noop},
    {OL_CMD_CRASH, ol__sm_apply_crash},
    {OL_CMD_CODE, ol__sm_apply_code},
    {OL_CMD_MOVE, apply_move},
    {OL_CMD_RM, apply_rm},
    {OL_CMD_CONFIG, apply_config},
};

int ol__sm_knows(uint32_t type)
{
    if (type == OL_CMD_CKPTS)
        return 1;
    for (size_t i = 0; i < sizeof appliers / sizeof appliers[0]; i++)
        if (appliers[i].type == type)
            return 1;
    return 0;
}

int ol__sm_apply_cmd(struct ol__sm *sm, const struct ol__cmd *c,
                     struct ol__effects *fx)
{
    for (size_t i = 0; i < sizeof appliers / sizeof appliers[0]; i++)
        if (appliers[i].type == c->type)
            return appliers[i].apply(sm, c, fx);
    /* The codec decoded it, so the tables disagree: a bug, and stopping is
     * safer than skipping a committed command. */
    snprintf(sm->errmsg, sizeof sm->errmsg,
             "command type %u has no apply function", c->type);
    return OL_ENOTSUP;
}
