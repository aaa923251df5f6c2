/*
 * The raft wire parser (raftwire.h).  The layouts are those libraft 0.15
 * writes (uv_encoding.c there), all little endian:
 *
 *   preamble            type u64 | header length u64
 *   AppendEntries (1)   term | prev_log_index | prev_log_term |
 *                       leader_commit | n u64 | n x (term u64, type u8,
 *                       3 unused, length u32) | 8 unused
 *                       payload: the entries, back to back
 *   AppendEntries
 *     result (2)        term | rejected | last_log_index [| flags]
 *   RequestVote (3)     term | candidate | last_index | last_term [| flags]
 *   RequestVote
 *     result (4)        term | granted [| flags]
 *   InstallSnapshot (5) term | last_index | last_term | conf_index |
 *                       conf_len u64 | conf | data_len u64 [| 8 unused]
 *                       payload: the snapshot data
 *   TimeoutNow (6)      term | last_log_index | last_log_term
 *
 * A configuration is: format u8 (1) | n u64 | n x (id u64, address NUL
 * terminated, role u8), zero padded to a multiple of 8.
 */
#include "raftwire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

enum { PH_PRE, PH_HDR, PH_PAYLOAD };

enum {
    T_APPEND = 1,
    T_APPEND_RESULT = 2,
    T_VOTE = 3,
    T_VOTE_RESULT = 4,
    T_SNAPSHOT = 5,
    T_TIMEOUT_NOW = 6,
};

enum { E_COMMAND = 1, E_BARRIER = 2, E_CHANGE = 3 };

#define APPEND_FIXED 48 /* five fields and the unused word */

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static int bad(struct ol__rwire *w, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct ol__rwire *w, int rv, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(w->errmsg, sizeof w->errmsg, fmt, ap);
    va_end(ap);
    return rv;
}

void ol__rwire_init(struct ol__rwire *w, int dir,
                    const struct ol__rw_hooks *hooks)
{
    memset(w, 0, sizeof *w);
    w->dir = dir;
    if (hooks)
        w->hooks = *hooks;
    w->phase = PH_PRE;
}

void ol__rwire_close(struct ol__rwire *w)
{
    if (w == NULL)
        return;
    free(w->hdr);
    free(w->conf);
    w->hdr = w->conf = NULL;
    w->hcap = 0;
}

uint64_t ol__rw_commit_cap(uint64_t leader_commit, uint64_t prev_log_index,
                           uint64_t n_entries)
{
    uint64_t last = prev_log_index + n_entries;

    return leader_commit < last ? leader_commit : last;
}

/* Check one encoded configuration. */
static int check_conf(struct ol__rwire *w, const uint8_t *p, uint64_t len)
{
    uint64_t n, off = 9;

    if (len < 9 || len > OL_RW_CONF_MAX)
        return bad(w, OL_EMALFORMED, "configuration of %llu bytes",
                   (unsigned long long)len);
    if (p[0] != 1)
        return bad(w, OL_EMALFORMED, "configuration format %u", p[0]);
    n = get64(p + 1);
    if (n == 0 || n > OL_RW_CONF_SERVERS)
        return bad(w, OL_EMALFORMED, "configuration of %llu servers",
                   (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *nul;

        if (len - off < 8 + 1 + 1)
            return bad(w, OL_EMALFORMED, "configuration server %llu is cut "
                                         "short",
                       (unsigned long long)i);
        if (get64(p + off) == 0)
            return bad(w, OL_EMALFORMED, "configuration server id 0");
        off += 8;
        nul = memchr(p + off, 0, len - off);
        if (nul == NULL || (uint64_t)(nul - p) + 1 >= len)
            return bad(w, OL_EMALFORMED, "configuration address is not "
                                         "terminated");
        off = (uint64_t)(nul - p) + 1;
        if (p[off] > 2)
            return bad(w, OL_EMALFORMED, "configuration role %u", p[off]);
        off++;
    }
    return 0;
}

/* The header layouts a type may have, checked before it is buffered. */
static int check_preamble(struct ol__rwire *w)
{
    uint64_t t = w->type, h = w->hlen;

    switch (t) {
    case T_APPEND:
        if (h < APPEND_FIXED ||
            h > APPEND_FIXED + 16ull * OL_RW_MAX_ENTRIES ||
            (h - APPEND_FIXED) % 16 != 0)
            break;
        return 0;
    case T_APPEND_RESULT:
        if (h == 24 || h == 32)
            return 0;
        break;
    case T_VOTE:
        if (h == 32 || h == 40)
            return 0;
        break;
    case T_VOTE_RESULT:
        if (h == 16 || h == 24)
            return 0;
        break;
    case T_SNAPSHOT:
        if (h >= 48 + 9 && h <= 56 + OL_RW_CONF_MAX)
            return 0;
        break;
    case T_TIMEOUT_NOW:
        if (h == 24)
            return 0;
        break;
    default:
        return bad(w, OL_EMALFORMED, "raft message type %llu",
                   (unsigned long long)t);
    }
    return bad(w, OL_EMALFORMED, "raft message type %llu with a %llu-byte "
                                 "header",
               (unsigned long long)t, (unsigned long long)h);
}

/*
 * Trim an AppendEntries whose entries start at or before this node's
 * snapshot (index `si`, term `st`) so that it starts right after it.  What
 * the snapshot holds was committed, so the leader's entry at `si` has term
 * `st`; a request that says otherwise is refused.  Returns 0 or
 * OL_EMALFORMED.
 */
static int trim_below_snapshot(struct ol__rwire *w, uint64_t si, uint64_t st)
{
    uint8_t *h = w->hdr;
    uint64_t prev = get64(h + 8), n = get64(h + 32), k;

    if (si == 0 || prev >= si)
        return 0;
    k = si - prev; /* entries at or before the snapshot */
    if (k > n)
        k = n;
    if (k && prev + k == si && get64(h + 40 + 16 * (k - 1)) != st)
        return bad(w, OL_EMALFORMED, "append entries holds term %llu at "
                                     "index %llu, which this node's "
                                     "snapshot has committed with term "
                                     "%llu",
                   (unsigned long long)get64(h + 40 + 16 * (k - 1)),
                   (unsigned long long)si, (unsigned long long)st);
    for (uint64_t i = 0; i < k; i++)
        w->skip += get32(h + 40 + 16 * i + 12);
    memmove(h + 40, h + 40 + 16 * k, (size_t)(16 * (n - k) + 8));
    /* It now starts right after the snapshot; with nothing left past it,
     * it is a heartbeat that the snapshot matches. */
    put64(h + 8, si);
    put64(h + 16, st);
    put64(h + 32, n - k);
    w->hlen -= 16 * k;
    put64(w->pre + 8, w->hlen);
    w->n.trimmed++;
    return 0;
}

static int entry_type_ok(uint8_t t)
{
    return t == E_COMMAND || t == E_BARRIER || t == E_CHANGE;
}

/* Append entries: every entry descriptor is sane, the batch is within
 * bounds; incoming, entries the snapshot covers are trimmed and the
 * commit index capped. */
static int check_append(struct ol__rwire *w)
{
    uint8_t *h = w->hdr;
    uint64_t n = get64(h + 32), total = 0;

    if (n != (w->hlen - APPEND_FIXED) / 16)
        return bad(w, OL_EMALFORMED, "append entries claims %llu "
                                     "entries in a %llu-byte header",
                   (unsigned long long)n, (unsigned long long)w->hlen);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = h + 40 + 16 * i;
        uint32_t len = get32(e + 12);

        if (!entry_type_ok(e[8]))
            return bad(w, OL_EMALFORMED, "entry %llu has type %u",
                       (unsigned long long)i, e[8]);
        if (len == 0 || len % 8 != 0 || len > OL_RW_ENTRY_MAX ||
            (e[8] == E_CHANGE && len > OL_RW_CONF_MAX))
            return bad(w, len > OL_RW_ENTRY_MAX ? OL_ETOOBIG
                                                : OL_EMALFORMED,
                       "entry %llu is %u bytes", (unsigned long long)i,
                       len);
        total += len;
    }
    if (total > OL_RW_BATCH_MAX)
        return bad(w, OL_ETOOBIG, "append entries of %llu bytes",
                   (unsigned long long)total);
    w->left = total;
    w->skip = 0;
    if (w->dir == OL_RW_IN && w->hooks.snapshot_of) {
        uint64_t si = 0, st = 0;
        int rv;

        w->hooks.snapshot_of(w->hooks.data, &si, &st);
        rv = trim_below_snapshot(w, si, st);
        if (rv != 0)
            return rv;
        h = w->hdr;
        n = get64(h + 32);
    }
    w->n_entries = (uint32_t)n;
    w->entry = 0;
    w->entry_left = n ? get32(h + 40 + 12) : 0;
    if (w->dir == OL_RW_IN) {
        uint64_t commit = get64(h + 24);
        uint64_t cap = ol__rw_commit_cap(commit, get64(h + 8), n);

        if (cap < commit) {
            put64(h + 24, cap);
            w->n.commit_capped++;
        }
        if (w->hooks.append_seen)
            w->hooks.append_seen(w->hooks.data, get64(h), get64(h + 8),
                                 get64(h + 16));
    }
    return 0;
}

/* Install snapshot: a sane configuration and data size. */
static int check_snapshot(struct ol__rwire *w)
{
    const uint8_t *h = w->hdr;
    uint64_t conf_len = get64(h + 32), data;
    int rv;

    if (conf_len > OL_RW_CONF_MAX || w->hlen < 48 + conf_len ||
        w->hlen > 56 + conf_len)
        return bad(w, OL_EMALFORMED, "install snapshot with a %llu-byte "
                                     "configuration in a %llu-byte "
                                     "header",
                   (unsigned long long)conf_len,
                   (unsigned long long)w->hlen);
    rv = check_conf(w, h + 40, conf_len);
    if (rv != 0)
        return rv;
    data = get64(h + 40 + conf_len);
    if (data == 0 || data > OL_RW_SNAPSHOT_MAX)
        return bad(w, data ? OL_ETOOBIG : OL_EMALFORMED,
                   "install snapshot of %llu bytes",
                   (unsigned long long)data);
    w->left = data;
    if (w->dir == OL_RW_IN && w->hooks.snapshot_seen)
        w->hooks.snapshot_seen(w->hooks.data, get64(h), get64(h + 8));
    return 0;
}

/* The whole header is buffered: check it, rewrite it, and work out the
 * payload. */
static int check_header(struct ol__rwire *w)
{
    uint8_t *h = w->hdr;

    w->left = 0;
    w->n_entries = 0;
    if (w->type == T_APPEND)
        return check_append(w);
    if (w->type == T_SNAPSHOT)
        return check_snapshot(w);
    if (w->type == T_APPEND_RESULT && w->dir == OL_RW_IN &&
        w->hooks.result_seen && w->peer && get64(h + 8) == 0)
        w->hooks.result_seen(w->hooks.data, w->peer, get64(h),
                             get64(h + 16));
    if (w->type == T_APPEND_RESULT && w->dir == OL_RW_OUT &&
        w->hooks.result_cap && get64(h + 8) == 0) {
        uint64_t last = get64(h + 16);
        uint64_t cap = w->hooks.result_cap(w->hooks.data, get64(h), last);

        if (cap < last) {
            put64(h + 16, cap);
            w->n.match_capped++;
        }
    }
    return 0;
}

/* Pass payload bytes: snapshot data and entries go through as they come,
 * except configuration entries, which are held until they are whole and
 * checked. */
static int payload(struct ol__rwire *w, const uint8_t *p, size_t n,
                   size_t *used, ol__rw_emit_fn emit, void *ctx)
{
    size_t k;
    int rv;

    *used = 0;
    if (w->skip) {
        /* Entries trimmed off the front: dropped, not passed. */
        k = n < w->skip ? n : (size_t)w->skip;
        w->skip -= k;
        w->left -= k;
        *used = k;
        return 0;
    }
    if (w->type == T_SNAPSHOT) {
        k = n < w->left ? n : (size_t)w->left;
        w->left -= k;
        *used = k;
        return emit(ctx, p, k);
    }
    while (*used < n && w->left) {
        const uint8_t *e = w->hdr + 40 + 16 * (size_t)w->entry;
        size_t avail = n - *used;

        if (w->entry_left == 0) {
            w->entry++;
            w->entry_left = get32(w->hdr + 40 + 16 * (size_t)w->entry + 12);
            continue;
        }
        k = avail < w->entry_left ? avail : (size_t)w->entry_left;
        if (e[8] == E_CHANGE) {
            size_t len = get32(e + 12);

            if (w->conf == NULL) {
                w->conf = malloc(len);
                if (w->conf == NULL)
                    return OL_ENOMEM;
                w->conf_len = len;
                w->conf_have = 0;
            }
            memcpy(w->conf + w->conf_have, p + *used, k);
            w->conf_have += k;
            if (w->conf_have == w->conf_len) {
                rv = check_conf(w, w->conf, w->conf_len);
                if (rv == 0)
                    rv = emit(ctx, w->conf, w->conf_len);
                free(w->conf);
                w->conf = NULL;
                if (rv != 0)
                    return rv;
            }
        } else {
            rv = emit(ctx, p + *used, k);
            if (rv != 0)
                return rv;
        }
        *used += k;
        w->entry_left -= k;
        w->left -= k;
    }
    return 0;
}

int ol__rwire_feed(struct ol__rwire *w, const uint8_t *p, size_t n,
                   ol__rw_emit_fn emit, void *ctx)
{
    size_t off = 0, k;
    int rv;

    while (off < n) {
        switch (w->phase) {
        case PH_PRE:
            k = sizeof w->pre - w->have;
            if (k > n - off)
                k = n - off;
            memcpy(w->pre + w->have, p + off, k);
            w->have += k;
            off += k;
            if (w->have < sizeof w->pre)
                break;
            w->type = get64(w->pre);
            w->hlen = get64(w->pre + 8);
            rv = check_preamble(w);
            if (rv != 0)
                return rv;
            if (w->hcap < w->hlen) {
                uint8_t *h = realloc(w->hdr, (size_t)w->hlen);

                if (h == NULL)
                    return OL_ENOMEM;
                w->hdr = h;
                w->hcap = (size_t)w->hlen;
            }
            w->have = 0;
            w->phase = PH_HDR;
            break;
        case PH_HDR:
            k = (size_t)w->hlen - w->have;
            if (k > n - off)
                k = n - off;
            memcpy(w->hdr + w->have, p + off, k);
            w->have += k;
            off += k;
            if (w->have < w->hlen)
                break;
            rv = check_header(w);
            if (rv == 0)
                rv = emit(ctx, w->pre, sizeof w->pre);
            if (rv == 0)
                rv = emit(ctx, w->hdr, (size_t)w->hlen);
            if (rv != 0)
                return rv;
            w->n.messages++;
            w->have = 0;
            w->phase = w->left ? PH_PAYLOAD : PH_PRE;
            break;
        case PH_PAYLOAD:
            rv = payload(w, p + off, n - off, &k, emit, ctx);
            if (rv != 0)
                return rv;
            off += k;
            if (w->left == 0)
                w->phase = PH_PRE;
            break;
        }
    }
    return 0;
}
