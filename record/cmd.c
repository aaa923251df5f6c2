/*
 * The command codec.  Encoding packs with msgpack-c into the writer's
 * buffer; decoding reads through the bounded reader and checks each field
 * before anything else looks at it, because entries arrive from peers.
 */
#include "cmd.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mpr.h"
#include "seal.h"

void ol__entry_w_init(struct ol__entry_w *w)
{
    memset(w, 0, sizeof *w);
    ol__buf_init(&w->cmds);
}

void ol__entry_w_close(struct ol__entry_w *w)
{
    ol__buf_close(&w->cmds);
    w->n = 0;
    w->level = 0;
}

void ol__entry_w_reset(struct ol__entry_w *w)
{
    ol__buf_reset(&w->cmds);
    w->n = 0;
    w->level = 0;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pk_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

/* Start a command: the packer writes into w->cmds. */
static size_t begin(struct ol__entry_w *w, msgpack_packer *pk, uint32_t type,
                    uint32_t fields, uint64_t req)
{
    size_t start = w->cmds.len;

    msgpack_packer_init(pk, &w->cmds, ol__buf_write);
    msgpack_pack_array(pk, fields);
    msgpack_pack_uint32(pk, type);
    if (type != OL_CMD_CKPTS)
        msgpack_pack_uint64(pk, req);
    return start;
}

/* The type of the command that starts at `start` in w->cmds (it was just
 * packed or copied there from a decoded entry, so it is well formed). */
static uint32_t type_of(const struct ol__entry_w *w, size_t start)
{
    struct ol__mpr r;
    uint32_t n;
    uint64_t type = 0;

    ol__mpr_init(&r, (const uint8_t *)w->cmds.base + start,
                 w->cmds.len - start);
    if (ol__mpr_array(&r, &n) || ol__mpr_uint(&r, &type))
        return 0;
    return (uint32_t)type;
}

/* Finish a command that begins at `start`: count it and raise the entry's
 * feature level to the command's. */
static int end(struct ol__entry_w *w, size_t start)
{
    uint32_t need;

    if (w->cmds.base == NULL || w->cmds.len == start)
        return OL_ENOMEM;
    if (w->n >= OL_ENTRY_MAX_CMDS) {
        w->cmds.len = start;
        return OL_ETOOBIG;
    }
    need = ol__cmd_need(type_of(w, start));
    if (need > w->level)
        w->level = need;
    w->n++;
    return 0;
}

int ol__entry_add_ckpts(struct ol__entry_w *w, const struct ol__key *key,
                        int64_t time_ms, const struct ol__blob *bodies,
                        const uint8_t *hashes, uint32_t n)
{
    struct ol__buf seal;
    uint8_t sig[OL_SIG_SIZE];
    msgpack_packer pk;
    size_t start;
    int rv;

    ol__buf_init(&seal);
    rv = ol__seal_make(key, time_ms, hashes, n, &seal, sig);
    if (rv != 0)
        goto out;
    start = begin(w, &pk, OL_CMD_CKPTS, 4, 0);
    pk_bin(&pk, seal.base, seal.len);
    pk_bin(&pk, sig, OL_SIG_SIZE);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++)
        pk_bin(&pk, bodies[i].p, bodies[i].len);
    rv = end(w, start);
out:
    ol__buf_close(&seal);
    return rv;
}

int ol__entry_add_spawn(struct ol__entry_w *w, uint64_t req,
                        const char *name, const char *kind,
                        const void *config, size_t config_len,
                        uint64_t owner, uint64_t inc)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_SPAWN, 7, req);

    pk_str(&pk, name);
    pk_str(&pk, kind);
    pk_bin(&pk, config, config_len);
    msgpack_pack_uint64(&pk, owner);
    msgpack_pack_uint64(&pk, inc);
    return end(w, start);
}

static int add_name_only(struct ol__entry_w *w, uint32_t type, uint64_t req,
                         const char *name)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, type, 3, req);

    pk_str(&pk, name);
    return end(w, start);
}

int ol__entry_add_stop(struct ol__entry_w *w, uint64_t req, const char *name)
{
    return add_name_only(w, OL_CMD_STOP, req, name);
}

int ol__entry_add_start(struct ol__entry_w *w, uint64_t req,
                        const char *name)
{
    return add_name_only(w, OL_CMD_START, req, name);
}

int ol__entry_add_rm(struct ol__entry_w *w, uint64_t req, const char *name)
{
    return add_name_only(w, OL_CMD_RM, req, name);
}

int ol__entry_add_config(struct ol__entry_w *w, uint64_t req,
                         const char *name, uint64_t msg_seq,
                         const void *config, size_t config_len)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_CONFIG, 5, req);

    pk_str(&pk, name);
    msgpack_pack_uint64(&pk, msg_seq);
    pk_bin(&pk, config, config_len);
    return end(w, start);
}

int ol__entry_add_place(struct ol__entry_w *w, uint64_t req,
                        const char *name, uint64_t owner, uint64_t epoch,
                        uint64_t inc)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_PLACE, 6, req);

    pk_str(&pk, name);
    msgpack_pack_uint64(&pk, owner);
    msgpack_pack_uint64(&pk, epoch);
    msgpack_pack_uint64(&pk, inc);
    return end(w, start);
}

int ol__entry_add_send(struct ol__entry_w *w, uint64_t req, const char *to,
                       uint64_t msg_seq, const void *payload, size_t len)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_SEND, 5, req);

    pk_str(&pk, to);
    msgpack_pack_uint64(&pk, msg_seq);
    pk_bin(&pk, payload, len);
    return end(w, start);
}

int ol__entry_add_quarantine(struct ol__entry_w *w, uint64_t req,
                             const char *name, uint64_t epoch,
                             const char *reason)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_QUARANTINE, 5, req);
    char r[OL_REASON_MAX + 1];

    /* Reasons come from error messages; clip rather than fail. */
    snprintf(r, sizeof r, "%s", reason);
    pk_str(&pk, name);
    msgpack_pack_uint64(&pk, epoch);
    pk_str(&pk, r);
    return end(w, start);
}

int ol__entry_add_crash(struct ol__entry_w *w, uint64_t req,
                        const char *name, uint64_t epoch, int64_t time_ms,
                        uint32_t limit, uint32_t window_ms,
                        const char *reason)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_CRASH, 8, req);
    char r[OL_REASON_MAX + 1];

    snprintf(r, sizeof r, "%s", reason);
    pk_str(&pk, name);
    msgpack_pack_uint64(&pk, epoch);
    msgpack_pack_int64(&pk, time_ms);
    msgpack_pack_uint32(&pk, limit);
    msgpack_pack_uint32(&pk, window_ms);
    pk_str(&pk, r);
    return end(w, start);
}

int ol__entry_add_code(struct ol__entry_w *w, uint64_t req, uint64_t node,
                       const char *kind, const uint8_t hash[OL_HASH_SIZE],
                       const char *version, int wanted)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_CODE, 7, req);

    msgpack_pack_uint64(&pk, node);
    pk_str(&pk, kind);
    pk_bin(&pk, hash, OL_HASH_SIZE);
    pk_str(&pk, version);
    if (wanted)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    return end(w, start);
}

int ol__entry_add_node(struct ol__entry_w *w, uint64_t req, uint64_t id,
                       const char *address, const uint8_t pk_[OL_PK_SIZE],
                       const char *labels)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_NODE, 6, req);

    msgpack_pack_uint64(&pk, id);
    pk_str(&pk, address);
    pk_bin(&pk, pk_, OL_PK_SIZE);
    pk_str(&pk, labels);
    return end(w, start);
}

int ol__entry_add_node_del(struct ol__entry_w *w, uint64_t req, uint64_t id)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_NODE_DEL, 3, req);

    msgpack_pack_uint64(&pk, id);
    return end(w, start);
}

int ol__entry_add_move(struct ol__entry_w *w, uint64_t req, const char *name,
                       uint64_t owner, uint64_t epoch, uint64_t inc,
                       uint64_t term, uint32_t hold_ms)
{
    msgpack_packer pk;
    size_t start = begin(w, &pk, OL_CMD_MOVE, 8, req);

    pk_str(&pk, name);
    msgpack_pack_uint64(&pk, owner);
    msgpack_pack_uint64(&pk, epoch);
    msgpack_pack_uint64(&pk, inc);
    msgpack_pack_uint64(&pk, term);
    msgpack_pack_uint32(&pk, hold_ms);
    return end(w, start);
}

int ol__entry_add_noop(struct ol__entry_w *w)
{
    msgpack_packer pk;
    size_t start = w->cmds.len;

    msgpack_packer_init(&pk, &w->cmds, ol__buf_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_uint32(&pk, OL_CMD_NOOP);
    return end(w, start);
}

int ol__entry_add_raw(struct ol__entry_w *w, const struct ol__blob *raw)
{
    size_t start = w->cmds.len;
    int rv = ol__buf_append(&w->cmds, raw->p, raw->len);

    if (rv != 0)
        return rv;
    return end(w, start);
}

int ol__entry_w_finish(const struct ol__entry_w *w, struct ol__buf *out)
{
    msgpack_packer pk;
    size_t start = out->len;

    msgpack_packer_init(&pk, out, ol__buf_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, OL_ENTRY_FORMAT);
    msgpack_pack_uint64(&pk, w->term);
    msgpack_pack_int64(&pk, w->time_ms);
    msgpack_pack_array(&pk, w->n);
    if (out->base == NULL || out->len == start)
        return OL_ENOMEM;
    return ol__buf_append(out, w->cmds.base, w->cmds.len);
}

void ol__entry_free(struct ol__entry *e)
{
    if (e == NULL || e->cmds == NULL)
        return;
    for (uint32_t i = 0; i < e->n; i++)
        free(e->cmds[i].bodies);
    free(e->cmds);
    e->cmds = NULL;
    e->n = 0;
}

static int get_blob(struct ol__mpr *r, struct ol__blob *b, uint32_t max,
                    int msgpack)
{
    const void *p;

    if (ol__mpr_bin(r, &p, &b->len) || b->len > max)
        return OL_EMALFORMED;
    b->p = p;
    if (msgpack && ol__mp_check(b->p, b->len, NULL) != 0)
        return OL_EMALFORMED;
    return 0;
}

static int get_name(struct ol__mpr *r, char *out)
{
    if (ol__mpr_strcpy(r, out, OL_NAME_MAX + 1) || !ol__name_valid(out))
        return OL_EMALFORMED;
    return 0;
}

static int get_kind(struct ol__mpr *r, char *out)
{
    /* A kind names a plugin file: the same rules as an agent name. */
    return get_name(r, out);
}

#define CHECK(what_, expr)                                                 \
    do {                                                                   \
        *whatp = (what_);                                                  \
        if ((expr) != 0)                                                   \
            return OL_EMALFORMED;                                          \
    } while (0)

/* Each decoder reads the fields after the type; `n` is the array length. */
typedef int (*decode_fn)(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                         const char **whatp);

static int decode_ckpts(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                        const char **whatp)
{
    const void *sig;
    uint32_t siglen, nb;

    CHECK("ckpts", n != 4);
    CHECK("seal", get_blob(r, &c->seal, 16u << 20, 0));
    CHECK("seal signature",
          ol__mpr_bin(r, &sig, &siglen) || siglen != OL_SIG_SIZE);
    c->sig = sig;
    CHECK("bodies",
          ol__mpr_array(r, &nb) || nb == 0 || nb > OL_SEAL_MAX_HASHES);
    c->bodies = calloc(nb, sizeof *c->bodies);
    CHECK("bodies", c->bodies == NULL);
    c->n_bodies = nb;
    for (uint32_t i = 0; i < nb; i++)
        CHECK("body", get_blob(r, &c->bodies[i], OL_CKPT_MAX, 0));
    return 0;
}

static int decode_spawn(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                        const char **whatp)
{
    CHECK("spawn", n != 7 || ol__mpr_uint(r, &c->req));
    CHECK("spawn name", get_name(r, c->name));
    CHECK("spawn kind", get_kind(r, c->kind));
    CHECK("spawn config", get_blob(r, &c->config, OL_AGENT_MSG_MAX, 1));
    CHECK("spawn owner", ol__mpr_uint(r, &c->owner));
    CHECK("spawn incarnation", ol__mpr_uint(r, &c->inc));
    return 0;
}

/* STOP, START and RM: [type, req, name]. */
static int decode_name_only(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                            const char **whatp)
{
    CHECK("stop/start/rm", n != 3 || ol__mpr_uint(r, &c->req));
    CHECK("agent name", get_name(r, c->name));
    return 0;
}

static int decode_place(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                        const char **whatp)
{
    CHECK("place", n != 6 || ol__mpr_uint(r, &c->req));
    CHECK("place name", get_name(r, c->name));
    CHECK("place owner", ol__mpr_uint(r, &c->owner));
    CHECK("place epoch", ol__mpr_uint(r, &c->epoch) || c->epoch == 0);
    CHECK("place incarnation", ol__mpr_uint(r, &c->inc));
    return 0;
}

static int decode_move(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                       const char **whatp)
{
    uint64_t hold;

    CHECK("move", n != 8 || ol__mpr_uint(r, &c->req));
    CHECK("move name", get_name(r, c->name));
    CHECK("move owner", ol__mpr_uint(r, &c->owner));
    CHECK("move epoch", ol__mpr_uint(r, &c->epoch) || c->epoch == 0);
    CHECK("move incarnation", ol__mpr_uint(r, &c->inc));
    CHECK("move term", ol__mpr_uint(r, &c->term) || c->term == 0);
    CHECK("move hand-off wait",
          ol__mpr_uint(r, &hold) || hold > OL_MOVE_HOLD_MAX_MS);
    c->hold_ms = (uint32_t)hold;
    return 0;
}

static int decode_send(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                       const char **whatp)
{
    CHECK("send", n != 5 || ol__mpr_uint(r, &c->req));
    CHECK("send recipient", get_name(r, c->name));
    CHECK("send seq", ol__mpr_uint(r, &c->msg_seq));
    CHECK("send payload", get_blob(r, &c->payload, OL_AGENT_MSG_MAX, 1));
    return 0;
}

static int decode_config(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                         const char **whatp)
{
    CHECK("config", n != 5 || ol__mpr_uint(r, &c->req));
    CHECK("config name", get_name(r, c->name));
    CHECK("config seq", ol__mpr_uint(r, &c->msg_seq));
    CHECK("config body", get_blob(r, &c->config, OL_AGENT_MSG_MAX, 1));
    return 0;
}

static int decode_quarantine(struct ol__mpr *r, uint32_t n,
                             struct ol__cmd *c, const char **whatp)
{
    CHECK("quarantine", n != 5 || ol__mpr_uint(r, &c->req));
    CHECK("quarantine name", get_name(r, c->name));
    CHECK("quarantine epoch", ol__mpr_uint(r, &c->epoch));
    CHECK("quarantine reason",
          ol__mpr_strcpy(r, c->reason, sizeof c->reason));
    return 0;
}

static int decode_node(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                       const char **whatp)
{
    CHECK("node", n != 6 || ol__mpr_uint(r, &c->req));
    CHECK("node id", ol__mpr_uint(r, &c->node_id) || c->node_id == 0);
    CHECK("node address", ol__mpr_strcpy(r, c->address, sizeof c->address));
    CHECK("node key", ol__mpr_bin_fixed(r, c->pk, OL_PK_SIZE));
    CHECK("node labels", ol__mpr_strcpy(r, c->labels, sizeof c->labels));
    return 0;
}

static int decode_node_del(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                           const char **whatp)
{
    CHECK("node_del", n != 3 || ol__mpr_uint(r, &c->req));
    CHECK("node id", ol__mpr_uint(r, &c->node_id) || c->node_id == 0);
    return 0;
}

static int decode_noop(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                       const char **whatp)
{
    (void)r;
    (void)c;
    CHECK("noop", n != 1);
    return 0;
}

static int decode_crash(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                        const char **whatp)
{
    uint64_t v;

    CHECK("crash", n != 8 || ol__mpr_uint(r, &c->req));
    CHECK("crash name", get_name(r, c->name));
    CHECK("crash epoch", ol__mpr_uint(r, &c->epoch));
    CHECK("crash time", ol__mpr_int(r, &c->time_ms));
    CHECK("crash limit", ol__mpr_uint(r, &v) || v == 0 || v > 1000);
    c->limit = (uint32_t)v;
    CHECK("crash window", ol__mpr_uint(r, &v) || v > UINT32_MAX);
    c->window_ms = (uint32_t)v;
    CHECK("crash reason", ol__mpr_strcpy(r, c->reason, sizeof c->reason));
    return 0;
}

static int decode_code(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                       const char **whatp)
{
    bool wanted;

    CHECK("code", n != 7 || ol__mpr_uint(r, &c->req));
    CHECK("code node", ol__mpr_uint(r, &c->node_id) || c->node_id == 0);
    CHECK("code kind", get_kind(r, c->kind));
    CHECK("code hash", ol__mpr_bin_fixed(r, c->hash, OL_HASH_SIZE));
    CHECK("code version", ol__mpr_strcpy(r, c->version, sizeof c->version));
    CHECK("code wanted", ol__mpr_bool(r, &wanted));
    c->wanted = wanted;
    return 0;
}

/*
 * The command table.  A new command type is a row here (with the feature
 * level that introduces it), its fields in struct ol__cmd, an encoder, and
 * its apply function in the state machine's table (sm_apply.c).
 */
static const struct {
    struct ol__cmd_info info;
    decode_fn decode;
} table[] = {
    {{OL_CMD_CKPTS, "ckpts", 1, OL_AUTH_ANY}, decode_ckpts},
    {{OL_CMD_SPAWN, "spawn", 1, OL_AUTH_ANY}, decode_spawn},
    {{OL_CMD_STOP, "stop", 1, OL_AUTH_ANY}, decode_name_only},
    {{OL_CMD_PLACE, "place", 1, OL_AUTH_LEADER}, decode_place},
    {{OL_CMD_SEND, "send", 1, OL_AUTH_ANY}, decode_send},
    {{OL_CMD_QUARANTINE, "quarantine", 1, OL_AUTH_OWNER}, decode_quarantine},
    {{OL_CMD_NODE, "node", 1, OL_AUTH_SELF}, decode_node},
    {{OL_CMD_NODE_DEL, "node_del", 1, OL_AUTH_LEADER}, decode_node_del},
    {{OL_CMD_START, "start", 1, OL_AUTH_ANY}, decode_name_only},
    {{OL_CMD_NOOP, "noop", 1, OL_AUTH_LEADER}, decode_noop},
    /* A crash report counts from any member: a node reports its own
     * agent's crash when it restarts, by which time the agent may run
     * elsewhere; the state machine counts a report once per req, only
     * for a running agent and never from before the last START. */
    {{OL_CMD_CRASH, "crash", 2, OL_AUTH_ANY}, decode_crash},
    {{OL_CMD_CODE, "code", 2, OL_AUTH_SELF}, decode_code},
    {{OL_CMD_MOVE, "move", 2, OL_AUTH_LEADER}, decode_move},
    {{OL_CMD_RM, "rm", 3, OL_AUTH_ANY}, decode_name_only},
    {{OL_CMD_CONFIG, "config", 3, OL_AUTH_ANY}, decode_config},
};

#define N_TYPES (sizeof table / sizeof table[0])

static uint32_t max_level = OL_FEATURE_LEVEL;

void ol__cmd_set_level(uint32_t level)
{
    max_level = level >= 1 && level <= OL_FEATURE_LEVEL ? level
                                                        : OL_FEATURE_LEVEL;
}

uint32_t ol__cmd_level(void)
{
    return max_level;
}

static int row_of(uint64_t type)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (table[i].info.type == type)
            return table[i].info.level <= max_level ? (int)i : -1;
    return -1;
}

const struct ol__cmd_info *ol__cmd_info(uint32_t type)
{
    int i = row_of(type);

    return i < 0 ? NULL : &table[i].info;
}

uint32_t ol__cmd_need(uint32_t type)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (table[i].info.type == type)
            return table[i].info.level;
    return 0;
}

const struct ol__cmd_info *ol__cmd_info_at(size_t i)
{
    return i < N_TYPES ? &table[i].info : NULL;
}

static int decode_cmd(struct ol__mpr *r, struct ol__cmd *c,
                      const char **whatp, uint64_t *unknown)
{
    uint32_t n;
    uint64_t type;
    size_t start = r->off;
    int row, rv;

    *whatp = "command";
    rv = ol__mpr_array(r, &n) || n < 1 || ol__mpr_uint(r, &type);
    if (rv)
        return OL_EMALFORMED;
    row = row_of(type);
    if (row < 0) {
        *whatp = "command type";
        *unknown = type;
        return OL_ENOTSUP;
    }
    c->type = (uint32_t)type;
    rv = table[row].decode(r, n, c, whatp);
    if (rv != 0)
        return rv;
    c->raw.p = r->base + start;
    c->raw.len = (uint32_t)(r->off - start);
    return 0;
}

/* The header: format, and for format 2 the term and time.  Leaves the
 * reader at the command array's element count in *n. */
static int decode_header(struct ol__mpr *r, struct ol__entry *e, uint32_t *n)
{
    uint32_t fields;
    uint64_t format;

    if (ol__mpr_array(r, &fields) || ol__mpr_uint(r, &format))
        return OL_EMALFORMED;
    if (format != 1 && format != OL_ENTRY_FORMAT)
        return format > OL_ENTRY_FORMAT && fields >= 2 ? OL_ENOTSUP
                                                       : OL_EMALFORMED;
    e->format = (uint32_t)format;
    if (format == 1) {
        if (fields != 2)
            return OL_EMALFORMED;
    } else if (fields != 4 || ol__mpr_uint(r, &e->term) ||
               ol__mpr_int(r, &e->time_ms)) {
        return OL_EMALFORMED;
    }
    if (ol__mpr_array(r, n) || *n > OL_ENTRY_MAX_CMDS)
        return OL_EMALFORMED;
    return 0;
}

int ol__entry_peek(const void *p, size_t len, struct ol__entry *e)
{
    struct ol__mpr r;
    uint32_t n;

    memset(e, 0, sizeof *e);
    ol__mpr_init(&r, p, len);
    return decode_header(&r, e, &n);
}

int ol__entry_decode(const void *p, size_t len, struct ol__entry *e,
                     char *errmsg)
{
    struct ol__mpr r;
    uint32_t n;
    uint64_t unknown = 0;
    const char *what = "entry";
    int rv;

    memset(e, 0, sizeof *e);
    ol__mpr_init(&r, p, len);
    rv = decode_header(&r, e, &n);
    if (rv == OL_ENOTSUP) {
        if (errmsg)
            ol__errf(errmsg, "log entry: format is newer than this "
                             "version reads (it reads format %d)",
                     OL_ENTRY_FORMAT);
        return rv;
    }
    if (rv != 0)
        goto bad;
    e->cmds = calloc(n ? n : 1, sizeof *e->cmds);
    if (e->cmds == NULL)
        return OL_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        e->n = i + 1;
        rv = decode_cmd(&r, &e->cmds[i], &what, &unknown);
        if (rv == OL_ENOTSUP) {
            if (errmsg)
                ol__errf(errmsg,
                         "log entry: command %u has type %llu, which this "
                         "version does not know (it runs feature level %u)",
                         i, (unsigned long long)unknown, max_level);
            ol__entry_free(e);
            return rv;
        }
        if (rv != 0)
            goto bad;
    }
    if (!ol__mpr_done(&r)) {
        what = "trailing bytes";
        goto bad;
    }
    return 0;
bad:
    if (errmsg)
        ol__errf(errmsg, "log entry: %s is malformed (byte %zu)", what,
                 r.off);
    ol__entry_free(e);
    return OL_EMALFORMED;
}
