/*
 * Applying checkpoints: a CKPTS command's seal, then each body's hash,
 * signer, epoch, seq and chain checks, the row, the mailbox (sm_mail.c) and
 * retention.  Refusals are effects, not errors: a refused checkpoint must
 * not stop the rest of its batch from applying.
 */
#include <inttypes.h>
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

/* The hash of body `i`.  A batch this process sealed lists the hashes it
 * computed over these very bytes; anything else is hashed and compared:
 * -1 when it is not the one the seal lists. */
static int body_hash(const struct seal_ctx *sc, uint32_t i,
                     uint8_t hash[OL_HASH_SIZE])
{
    const uint8_t *listed = sc->seal.hashes + (size_t)i * OL_HASH_SIZE;
    const struct ol__blob *body = &sc->cmd->bodies[i];

    if (sc->trusted) {
        memcpy(hash, listed, OL_HASH_SIZE);
        return 0;
    }
    ol__ckpt_hash(body->p, body->len, hash);
    return memcmp(hash, listed, OL_HASH_SIZE) != 0 ? -1 : 0;
}

#define BEHIND 1 /* the checkpoint is at or behind its agent's head */

/* Whether checkpoint `c` may follow agent `a`'s head: 0, BEHIND (for
 * behind_head() to decide), or an outcome code with `why` set. */
static int refusal(const struct ol__sm *sm, const struct seal_ctx *sc,
                   const struct ol__ckpt *c, const struct ol__sm_agent *a,
                   char *why, size_t cap)
{
    const struct ol__sm_node *signer = node_by_pk(sm, sc->seal.signer);

    if (memcmp(c->signer, sc->seal.signer, OL_PK_SIZE) != 0) {
        snprintf(why, cap, "signer differs from the seal's");
        return OL_EBADSIG;
    }
    if (a == NULL) {
        snprintf(why, cap, "no agent '%s'", c->agent);
        return OL_ENOTFOUND;
    }
    if (c->epoch != a->epoch) {
        snprintf(why, cap, "epoch %" PRIu64 " is stale (current %" PRIu64 ")",
                 c->epoch, a->epoch);
        return OL_ESTALE;
    }
    if (signer == NULL || signer->id != a->owner) {
        snprintf(why, cap, "signer is not the owner (node %" PRIu64 ")",
                 a->owner);
        return OL_ESTALE;
    }
    if (a->status != OL_AGENT_RUNNING && a->status != OL_AGENT_STOPPING) {
        snprintf(why, cap, "agent is %s", ol__status_name(a->status));
        return OL_ESTATE;
    }
    if (c->seq <= a->head_seq)
        return BEHIND;
    if (c->seq != a->head_seq + 1) {
        snprintf(why, cap, "seq %" PRIu64 " skips ahead of head %" PRIu64,
                 c->seq, a->head_seq);
        return OL_ESEQ;
    }
    if (memcmp(c->prev_hash, a->head_hash, OL_HASH_SIZE) != 0) {
        snprintf(why, cap, "prev_hash does not match seq %" PRIu64,
                 a->head_seq);
        return OL_EBADCHAIN;
    }
    return 0;
}

/* Checkpoint `c` is at or behind its agent's head: a retry of the stored
 * one (reported as applied; BEHIND is returned), another checkpoint for a
 * stored seq (a divergence: the agent is quarantined and the evidence
 * stored; OL_EDIVERGED) or one for a pruned seq (OL_ESEQ).  OL_EIO when
 * the store fails. */
static int behind_head(struct ol__sm *sm, struct ol__sm_agent *a,
                       const struct ol__ckpt *c, const uint8_t *hash,
                       const struct ol__blob *body, char *why, size_t cap,
                       struct ol__effects *fx)
{
    uint8_t old[OL_HASH_SIZE];
    int found = ol__sm_stored_hash(sm, c->agent, c->seq, old);

    if (found < 0)
        return OL_EIO;
    if (found && memcmp(old, hash, OL_HASH_SIZE) == 0) {
        /* A retry of a committed checkpoint: idempotent. */
        ol__fx_ckpt(fx, c->agent, c->epoch, c->seq, hash, 0, 1, NULL);
        return BEHIND;
    }
    if (!found) {
        snprintf(why, cap, "seq %" PRIu64 " is behind head %" PRIu64,
                 c->seq, a->head_seq);
        return OL_ESEQ;
    }
    snprintf(why, cap, "a different checkpoint for seq %" PRIu64 " is stored",
             c->seq);
    ol_log(OL_LOG_ERROR,
           "agent '%s': divergence at seq %" PRIu64
           ": quarantined, evidence stored",
           c->agent, c->seq);
    a->status = OL_AGENT_QUARANTINED;
    snprintf(a->reason, sizeof a->reason, "divergence at seq %" PRIu64,
             c->seq);
    if (store_evidence(sm, c->agent, c->seq, old, hash, body, why) ||
        ol__sm_write_agent(sm, a))
        return OL_EIO;
    ol__fx_agent(fx, a);
    return OL_EDIVERGED;
}

/* Store checkpoint `c`, body `i` of the seal, as agent `a`'s new head:
 * the row, its messages, retention, and a final checkpoint's stop. */
static int store_body(struct ol__sm *sm, struct seal_ctx *sc, uint32_t i,
                      const struct ol__ckpt *c, struct ol__sm_agent *a,
                      const uint8_t *hash, struct ol__effects *fx)
{
    const struct ol__blob *body = &sc->cmd->bodies[i];
    sqlite3_stmt *st = sm->stmt[ST_INS_CKPT];

    if (seal_row(sm, sc) != 0)
        return OL_EIO;
    sqlite3_bind_text(st, 1, c->agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c->seq);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)c->epoch);
    sqlite3_bind_int64(st, 4, c->time_ms);
    sqlite3_bind_blob(st, 5, hash, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, sc->id);
    sqlite3_bind_int64(st, 7, i);
    sqlite3_bind_blob(st, 8, body->p, (int)body->len, SQLITE_STATIC);
    sqlite3_bind_int(st, 9, 0);
    if (ol__sm_done(sm, st) != 0 || ol__sm_deliver(sm, c, fx) != 0 ||
        prune(sm, c->agent, c->seq) != 0)
        return OL_EIO;
    sc->accepted++;
    a->head_seq = c->seq;
    memcpy(a->head_hash, hash, OL_HASH_SIZE);
    a->head_time_ms = c->time_ms;
    sm->stats.ckpts_applied++;
    ol__fx_ckpt(fx, c->agent, c->epoch, c->seq, hash, 0, 0, NULL);
    if (c->flags & OL_CKPT_FINAL) {
        a->status = OL_AGENT_STOPPED;
        if (ol__sm_write_agent(sm, a) != 0)
            return OL_EIO;
        ol__fx_agent(fx, a);
    }
    return 0;
}

/* Apply one checkpoint body of a CKPTS command.  Returns 0 (applied or
 * refused, reported as an effect) or OL_EIO. */
static int apply_body(struct ol__sm *sm, struct seal_ctx *sc, uint32_t i,
                      struct ol__effects *fx)
{
    const struct ol__blob *body = &sc->cmd->bodies[i];
    struct ol__sm_agent *a;
    struct ol__ckpt c;
    uint8_t hash[OL_HASH_SIZE];
    char why[160], err[OL_ERRMSG_SIZE];
    int rv;

    if (body_hash(sc, i, hash) != 0) {
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
    a = ol__map_get(&sm->agents, c.agent);
    rv = refusal(sm, sc, &c, a, why, sizeof why);
    if (rv == BEHIND)
        rv = behind_head(sm, a, &c, hash, body, why, sizeof why, fx);
    if (rv == 0) {
        rv = store_body(sm, sc, i, &c, a, hash, fx);
    } else if (rv == BEHIND) {
        rv = 0; /* a retry, reported as applied */
    } else if (rv != OL_EIO) {
        sm->stats.ckpts_refused++;
        ol__fx_ckpt(fx, c.agent, c.epoch, c.seq, hash, rv, 0, why);
        ol_log(OL_LOG_DEBUG, "checkpoint '%s' seq %" PRIu64 " refused: %s",
               c.agent, c.seq, why);
        rv = 0;
    }
    ol__ckpt_free(&c);
    return rv;
}

int ol__sm_apply_ckpts(struct ol__sm *sm, const struct ol__cmd *cmd,
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
    return ol__sm_apply_ckpts(sm, &c, 1, fx);
}
