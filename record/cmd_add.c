/*
 * The typed adders: one function per command type, for the proposers that
 * have the values at hand.  Each fills a struct ol__cmd and hands it to
 * ol__entry_add() (cmd.c), which owns the bytes; a new command type needs
 * none of these.
 */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "cmd.h"

/* A string that does not fit its member is refused rather than cut: the
 * decoder of every node would refuse the command.  Reasons, which come
 * from error messages, are clipped instead (snprintf below). */
static int set_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);

    if (n >= cap)
        return OL_EINVAL;
    memcpy(dst, s, n + 1);
    return 0;
}

#define SET_STR(c, m, s) set_str((c)->m, sizeof (c)->m, s)

static int set_blob(struct ol__blob *b, const void *p, size_t len)
{
    if (len > UINT32_MAX)
        return OL_EINVAL;
    b->p = p;
    b->len = (uint32_t)len;
    return 0;
}

/* Add `c`, a command about agent `name`. */
static int add_named(struct ol__entry_w *w, struct ol__cmd *c,
                     const char *name)
{
    if (SET_STR(c, name, name))
        return OL_EINVAL;
    return ol__entry_add(w, c);
}

int ol__entry_add_spawn(struct ol__entry_w *w, uint64_t req,
                        const char *name, const char *kind,
                        const void *config, size_t config_len,
                        uint64_t owner, uint64_t inc)
{
    struct ol__cmd c = {.type = OL_CMD_SPAWN, .req = req, .owner = owner,
                        .inc = inc};

    if (SET_STR(&c, kind, kind) || set_blob(&c.config, config, config_len))
        return OL_EINVAL;
    return add_named(w, &c, name);
}

static int add_name_only(struct ol__entry_w *w, uint32_t type, uint64_t req,
                         const char *name)
{
    struct ol__cmd c = {.type = type, .req = req};

    return add_named(w, &c, name);
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
    struct ol__cmd c = {.type = OL_CMD_CONFIG, .req = req,
                        .msg_seq = msg_seq};

    if (set_blob(&c.config, config, config_len))
        return OL_EINVAL;
    return add_named(w, &c, name);
}

int ol__entry_add_send(struct ol__entry_w *w, uint64_t req, const char *to,
                       uint64_t msg_seq, const void *payload, size_t len)
{
    struct ol__cmd c = {.type = OL_CMD_SEND, .req = req, .msg_seq = msg_seq};

    if (set_blob(&c.payload, payload, len))
        return OL_EINVAL;
    return add_named(w, &c, to);
}

int ol__entry_add_place(struct ol__entry_w *w, uint64_t req,
                        const char *name, uint64_t owner, uint64_t epoch,
                        uint64_t inc)
{
    struct ol__cmd c = {.type = OL_CMD_PLACE, .req = req, .owner = owner,
                        .epoch = epoch, .inc = inc};

    return add_named(w, &c, name);
}

int ol__entry_add_move(struct ol__entry_w *w, uint64_t req, const char *name,
                       uint64_t owner, uint64_t epoch, uint64_t inc,
                       uint64_t term, uint32_t hold_ms)
{
    struct ol__cmd c = {.type = OL_CMD_MOVE, .req = req, .owner = owner,
                        .epoch = epoch, .inc = inc, .term = term,
                        .hold_ms = hold_ms};

    return add_named(w, &c, name);
}

int ol__entry_add_quarantine(struct ol__entry_w *w, uint64_t req,
                             const char *name, uint64_t epoch,
                             const char *reason)
{
    struct ol__cmd c = {.type = OL_CMD_QUARANTINE, .req = req,
                        .epoch = epoch};

    snprintf(c.reason, sizeof c.reason, "%s", reason);
    return add_named(w, &c, name);
}

int ol__entry_add_crash(struct ol__entry_w *w, uint64_t req,
                        const char *name, uint64_t epoch, int64_t time_ms,
                        uint32_t limit, uint32_t window_ms,
                        const char *reason)
{
    struct ol__cmd c = {.type = OL_CMD_CRASH, .req = req, .epoch = epoch,
                        .time_ms = time_ms, .limit = limit,
                        .window_ms = window_ms};

    snprintf(c.reason, sizeof c.reason, "%s", reason);
    return add_named(w, &c, name);
}

int ol__entry_add_code(struct ol__entry_w *w, uint64_t req, uint64_t node,
                       const char *kind, const uint8_t hash[OL_HASH_SIZE],
                       const char *version, int wanted)
{
    struct ol__cmd c = {.type = OL_CMD_CODE, .req = req, .node_id = node,
                        .wanted = wanted};

    memcpy(c.hash, hash, OL_HASH_SIZE);
    if (SET_STR(&c, kind, kind) || SET_STR(&c, version, version))
        return OL_EINVAL;
    return ol__entry_add(w, &c);
}

int ol__entry_add_node(struct ol__entry_w *w, uint64_t req, uint64_t id,
                       const char *address, const uint8_t pk[OL_PK_SIZE],
                       const char *labels)
{
    struct ol__cmd c = {.type = OL_CMD_NODE, .req = req, .node_id = id};

    memcpy(c.pk, pk, OL_PK_SIZE);
    if (SET_STR(&c, address, address) || SET_STR(&c, labels, labels))
        return OL_EINVAL;
    return ol__entry_add(w, &c);
}

int ol__entry_add_node_del(struct ol__entry_w *w, uint64_t req, uint64_t id)
{
    struct ol__cmd c = {.type = OL_CMD_NODE_DEL, .req = req, .node_id = id};

    return ol__entry_add(w, &c);
}

int ol__entry_add_noop(struct ol__entry_w *w)
{
    struct ol__cmd c = {.type = OL_CMD_NOOP};

    return ol__entry_add(w, &c);
}
