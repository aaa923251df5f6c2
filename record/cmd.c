/*
 * The command codec.  Encoding packs with msgpack-c into the writer's
 * buffer; decoding reads through the bounded reader and checks each field
 * before anything else looks at it, because entries arrive from peers.
 */
#include "cmd.h"

#include <msgpack.h>
#include <stddef.h>
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

/*
 * The command table.  Each command is [type, req, fields...] (NOOP has no
 * req), and a row lists its fields in wire order: how each travels, where
 * it lives in struct ol__cmd, and what the decoder accepts.  One encoder
 * and one decoder walk the rows; only CKPTS, whose bodies are a list, has
 * its own.
 */
enum field_kind {
    F_UINT,    /* uint64_t or uint32_t member, within [lo, hi] */
    F_INT,     /* int64_t member */
    F_NAME,    /* char[] member: an agent name or plugin kind */
    F_STR,     /* char[] member: any string that fits */
    F_BIN,     /* struct ol__blob member of at most `hi` bytes */
    F_MSGPACK, /* the same, holding one msgpack object */
    F_FIXED,   /* uint8_t[] member: a bin of exactly its size */
    F_BOOL,    /* int member, a msgpack bool on the wire */
};

struct field {
    uint8_t kind;      /* enum field_kind */
    uint16_t off;      /* of the member in struct ol__cmd */
    uint16_t size;     /* of the member */
    uint64_t lo, hi;
    const char *what;  /* names the field in errors: "move epoch" */
};

#define MEMBER(m) offsetof(struct ol__cmd, m), sizeof(((struct ol__cmd *)0)->m)
#define UINT_IN(m, lo, hi, what) {F_UINT, MEMBER(m), lo, hi, what}
#define UINT(m, what) UINT_IN(m, 0, UINT64_MAX, what)
#define NONZERO(m, what) UINT_IN(m, 1, UINT64_MAX, what)
#define INT(m, what) {F_INT, MEMBER(m), 0, 0, what}
#define NAME(m, what) {F_NAME, MEMBER(m), 0, 0, what}
#define STR(m, what) {F_STR, MEMBER(m), 0, 0, what}
#define BIN(m, max, what) {F_BIN, MEMBER(m), 0, max, what}
#define MSGPACK(m, max, what) {F_MSGPACK, MEMBER(m), 0, max, what}
#define FIXED(m, what) {F_FIXED, MEMBER(m), 0, 0, what}
#define BOOL(m, what) {F_BOOL, MEMBER(m), 0, 0, what}

static const struct field spawn_fields[] = {
    NAME(name, "spawn name"),
    NAME(kind, "spawn kind"),
    MSGPACK(config, OL_AGENT_MSG_MAX, "spawn config"),
    UINT(owner, "spawn owner"),
    UINT(inc, "spawn incarnation"),
};
/* STOP, START and RM. */
static const struct field name_fields[] = {NAME(name, "agent name")};
static const struct field place_fields[] = {
    NAME(name, "place name"),
    UINT(owner, "place owner"),
    NONZERO(epoch, "place epoch"),
    UINT(inc, "place incarnation"),
};
static const struct field send_fields[] = {
    NAME(name, "send recipient"),
    UINT(msg_seq, "send seq"),
    MSGPACK(payload, OL_AGENT_MSG_MAX, "send payload"),
};
static const struct field quarantine_fields[] = {
    NAME(name, "quarantine name"),
    UINT(epoch, "quarantine epoch"),
    STR(reason, "quarantine reason"),
};
static const struct field node_fields[] = {
    NONZERO(node_id, "node id"),
    STR(address, "node address"),
    FIXED(pk, "node key"),
    STR(labels, "node labels"),
};
static const struct field node_del_fields[] = {NONZERO(node_id, "node id")};
static const struct field crash_fields[] = {
    NAME(name, "crash name"),
    UINT(epoch, "crash epoch"),
    INT(time_ms, "crash time"),
    UINT_IN(limit, 1, 1000, "crash limit"),
    UINT(window_ms, "crash window"),
    STR(reason, "crash reason"),
};
static const struct field code_fields[] = {
    NONZERO(node_id, "code node"),
    NAME(kind, "code kind"),
    FIXED(hash, "code hash"),
    STR(version, "code version"),
    BOOL(wanted, "code wanted"),
};
static const struct field move_fields[] = {
    NAME(name, "move name"),
    UINT(owner, "move owner"),
    NONZERO(epoch, "move epoch"),
    UINT(inc, "move incarnation"),
    NONZERO(term, "move term"),
    UINT_IN(hold_ms, 0, OL_MOVE_HOLD_MAX_MS, "move hand-off wait"),
};
static const struct field config_fields[] = {
    NAME(name, "config name"),
    UINT(msg_seq, "config seq"),
    MSGPACK(config, OL_AGENT_MSG_MAX, "config body"),
};

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

#define CHECK(what_, expr)                                                 \
    do {                                                                   \
        *whatp = (what_);                                                  \
        if ((expr) != 0)                                                   \
            return OL_EMALFORMED;                                          \
    } while (0)

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

struct row {
    struct ol__cmd_info info;
    const struct field *fields;
    uint32_t n_fields;
    int bare; /* no request id: [type] alone */
    /* A command the field list cannot say (CKPTS): decodes what follows
     * the type; ol__entry_add() refuses it. */
    int (*decode)(struct ol__mpr *r, uint32_t n, struct ol__cmd *c,
                  const char **whatp);
};

#define FIELDS(f) .fields = f, .n_fields = sizeof f / sizeof f[0]

/*
 * A new command type is its enum value and any new members of struct
 * ol__cmd (cmd.h), a row here with the feature level that introduces it,
 * and its apply function with its row in the state machine's table
 * (state/sm_apply.c).  Proposers fill a struct ol__cmd and call
 * ol__entry_add().
 */
static const struct row table[] = {
    {{OL_CMD_CKPTS, "ckpts", 1, OL_AUTH_ANY}, .decode = decode_ckpts},
    {{OL_CMD_SPAWN, "spawn", 1, OL_AUTH_ANY}, FIELDS(spawn_fields)},
    {{OL_CMD_STOP, "stop", 1, OL_AUTH_ANY}, FIELDS(name_fields)},
    {{OL_CMD_PLACE, "place", 1, OL_AUTH_LEADER}, FIELDS(place_fields)},
    {{OL_CMD_SEND, "send", 1, OL_AUTH_ANY}, FIELDS(send_fields)},
    {{OL_CMD_QUARANTINE, "quarantine", 1, OL_AUTH_OWNER},
     FIELDS(quarantine_fields)},
    {{OL_CMD_NODE, "node", 1, OL_AUTH_SELF}, FIELDS(node_fields)},
    {{OL_CMD_NODE_DEL, "node_del", 1, OL_AUTH_LEADER},
     FIELDS(node_del_fields)},
    {{OL_CMD_START, "start", 1, OL_AUTH_ANY}, FIELDS(name_fields)},
    {{OL_CMD_NOOP, "noop", 1, OL_AUTH_LEADER}, .bare = 1},
    /* A crash report counts from any member: a node reports its own
     * agent's crash when it restarts, by which time the agent may run
     * elsewhere; the state machine counts a report once per req, only
     * for a running agent and never from before the last START. */
    {{OL_CMD_CRASH, "crash", 2, OL_AUTH_ANY}, FIELDS(crash_fields)},
    {{OL_CMD_CODE, "code", 2, OL_AUTH_SELF}, FIELDS(code_fields)},
    {{OL_CMD_MOVE, "move", 2, OL_AUTH_LEADER}, FIELDS(move_fields)},
    {{OL_CMD_RM, "rm", 3, OL_AUTH_ANY}, FIELDS(name_fields)},
    {{OL_CMD_CONFIG, "config", 3, OL_AUTH_ANY}, FIELDS(config_fields)},
};

#define N_TYPES (sizeof table / sizeof table[0])

static uint32_t max_level = OL_FEATURE_LEVEL;

/* The row of `type` whatever the level this node is held at. */
static const struct row *row_any(uint64_t type)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (table[i].info.type == type)
            return &table[i];
    return NULL;
}

/* The row of `type` if this node decodes it. */
static const struct row *row_of(uint64_t type)
{
    const struct row *t = row_any(type);

    return t && t->info.level <= max_level ? t : NULL;
}

void ol__cmd_set_level(uint32_t level)
{
    max_level = level >= 1 && level <= OL_FEATURE_LEVEL ? level
                                                        : OL_FEATURE_LEVEL;
}

uint32_t ol__cmd_level(void)
{
    return max_level;
}

const struct ol__cmd_info *ol__cmd_info(uint32_t type)
{
    const struct row *t = row_of(type);

    return t ? &t->info : NULL;
}

uint32_t ol__cmd_need(uint32_t type)
{
    const struct row *t = row_any(type);

    return t ? t->info.level : 0;
}

const struct ol__cmd_info *ol__cmd_info_at(size_t i)
{
    return i < N_TYPES ? &table[i].info : NULL;
}

/* ---- encoding ---- */

/* Finish a command of `type` that begins at `start`: count it and raise
 * the entry's feature level to the command's. */
static int end(struct ol__entry_w *w, size_t start, uint32_t type)
{
    uint32_t need;

    if (w->cmds.base == NULL || w->cmds.len == start)
        return OL_ENOMEM;
    if (w->n >= OL_ENTRY_MAX_CMDS) {
        w->cmds.len = start;
        return OL_ETOOBIG;
    }
    need = ol__cmd_need(type);
    if (need > w->level)
        w->level = need;
    w->n++;
    return 0;
}

static void put_field(msgpack_packer *pk, const struct field *f,
                      const struct ol__cmd *c)
{
    const void *m = (const char *)c + f->off;
    const struct ol__blob *b = m;

    switch (f->kind) {
    case F_UINT:
        if (f->size == sizeof(uint32_t))
            msgpack_pack_uint32(pk, *(const uint32_t *)m);
        else
            msgpack_pack_uint64(pk, *(const uint64_t *)m);
        break;
    case F_INT:
        msgpack_pack_int64(pk, *(const int64_t *)m);
        break;
    case F_NAME:
    case F_STR:
        msgpack_pack_str_with_body(pk, m, strnlen(m, f->size));
        break;
    case F_BIN:
    case F_MSGPACK:
        msgpack_pack_bin_with_body(pk, b->p, b->len);
        break;
    case F_FIXED:
        msgpack_pack_bin_with_body(pk, m, f->size);
        break;
    case F_BOOL:
        if (*(const int *)m)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    }
}

int ol__entry_add(struct ol__entry_w *w, const struct ol__cmd *c)
{
    const struct row *t = row_any(c->type);
    msgpack_packer pk;
    size_t start = w->cmds.len;

    if (t == NULL || t->decode != NULL)
        return OL_EINVAL;
    msgpack_packer_init(&pk, &w->cmds, ol__buf_write);
    msgpack_pack_array(&pk, 1 + !t->bare + t->n_fields);
    msgpack_pack_uint32(&pk, c->type);
    if (!t->bare)
        msgpack_pack_uint64(&pk, c->req);
    for (uint32_t i = 0; i < t->n_fields; i++)
        put_field(&pk, &t->fields[i], c);
    return end(w, start, c->type);
}

int ol__entry_add_ckpts(struct ol__entry_w *w, const struct ol__key *key,
                        int64_t time_ms, const struct ol__blob *bodies,
                        const uint8_t *hashes, uint32_t n)
{
    struct ol__buf seal;
    uint8_t sig[OL_SIG_SIZE];
    msgpack_packer pk;
    size_t start = w->cmds.len;
    int rv;

    ol__buf_init(&seal);
    rv = ol__seal_make(key, time_ms, hashes, n, &seal, sig);
    if (rv != 0)
        goto out;
    msgpack_packer_init(&pk, &w->cmds, ol__buf_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, OL_CMD_CKPTS);
    msgpack_pack_bin_with_body(&pk, seal.base, seal.len);
    msgpack_pack_bin_with_body(&pk, sig, OL_SIG_SIZE);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++)
        msgpack_pack_bin_with_body(&pk, bodies[i].p, bodies[i].len);
    rv = end(w, start, OL_CMD_CKPTS);
out:
    ol__buf_close(&seal);
    return rv;
}

/* The type of a command from a decoded entry (so well formed). */
static uint32_t type_of(const struct ol__blob *raw)
{
    struct ol__mpr r;
    uint32_t n;
    uint64_t type = 0;

    ol__mpr_init(&r, raw->p, raw->len);
    if (ol__mpr_array(&r, &n) || ol__mpr_uint(&r, &type))
        return 0;
    return (uint32_t)type;
}

int ol__entry_add_raw(struct ol__entry_w *w, const struct ol__blob *raw)
{
    size_t start = w->cmds.len;
    int rv = ol__buf_append(&w->cmds, raw->p, raw->len);

    if (rv != 0)
        return rv;
    return end(w, start, type_of(raw));
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

static int get_uint(struct ol__mpr *r, const struct field *f, void *m)
{
    uint64_t v;
    uint32_t v32;

    if (ol__mpr_uint(r, &v) || v < f->lo || v > f->hi)
        return OL_EMALFORMED;
    if (f->size == sizeof(uint64_t)) {
        memcpy(m, &v, sizeof v);
        return 0;
    }
    if (v > UINT32_MAX)
        return OL_EMALFORMED;
    v32 = (uint32_t)v;
    memcpy(m, &v32, sizeof v32);
    return 0;
}

/* Read one field into its member, checked. */
static int get_field(struct ol__mpr *r, const struct field *f,
                     struct ol__cmd *c)
{
    void *m = (char *)c + f->off;
    bool b;

    switch (f->kind) {
    case F_UINT:
        return get_uint(r, f, m);
    case F_INT:
        return ol__mpr_int(r, m);
    case F_NAME:
        /* A kind names a plugin file: the same rules as an agent name. */
        return ol__mpr_strcpy(r, m, f->size) || !ol__name_valid(m);
    case F_STR:
        return ol__mpr_strcpy(r, m, f->size);
    case F_BIN:
    case F_MSGPACK:
        return get_blob(r, m, (uint32_t)f->hi, f->kind == F_MSGPACK);
    case F_FIXED:
        return ol__mpr_bin_fixed(r, m, f->size);
    case F_BOOL:
        if (ol__mpr_bool(r, &b))
            return OL_EMALFORMED;
        *(int *)m = b;
        return 0;
    }
    return OL_EMALFORMED;
}

/* The elements after the type of a command of row `t`, `n` in all. */
static int decode_fields(struct ol__mpr *r, uint32_t n, const struct row *t,
                         struct ol__cmd *c, const char **whatp)
{
    CHECK(t->info.name, n != 1 + !t->bare + t->n_fields);
    if (!t->bare)
        CHECK(t->info.name, ol__mpr_uint(r, &c->req));
    for (uint32_t i = 0; i < t->n_fields; i++)
        CHECK(t->fields[i].what, get_field(r, &t->fields[i], c));
    return 0;
}

static int decode_cmd(struct ol__mpr *r, struct ol__cmd *c,
                      const char **whatp, uint64_t *unknown)
{
    const struct row *t;
    uint32_t n;
    uint64_t type;
    size_t start = r->off;
    int rv;

    *whatp = "command";
    rv = ol__mpr_array(r, &n) || n < 1 || ol__mpr_uint(r, &type);
    if (rv)
        return OL_EMALFORMED;
    t = row_of(type);
    if (t == NULL) {
        *whatp = "command type";
        *unknown = type;
        return OL_ENOTSUP;
    }
    c->type = (uint32_t)type;
    rv = t->decode ? t->decode(r, n, c, whatp)
                   : decode_fields(r, n, t, c, whatp);
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
