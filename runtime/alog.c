/*
 * The per-agent log ring: a circular array of malloc'd lines.  Appending
 * past either bound frees the oldest line, so a chatty agent costs at most
 * its ring, and an agent that never logs costs nothing (the node creates
 * its ring on the first line).
 */
#include "alog.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

struct line {
    uint64_t seq;
    int64_t time_ms;
    int level;
    size_t len;
    char *text;
};

struct ol__alog {
    uint64_t id;
    uint32_t cap;   /* slots */
    uint32_t head;  /* slot of the oldest line */
    uint32_t count;
    size_t bytes;
    uint64_t next_seq;
    struct line *lines;
};

struct ol__alog *ol__alog_create(uint32_t max_lines)
{
    struct ol__alog *l;

    if (max_lines == 0)
        max_lines = 1;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->lines = calloc(max_lines, sizeof *l->lines);
    if (l->lines == NULL) {
        free(l);
        return NULL;
    }
    l->cap = max_lines;
    l->next_seq = 1;
    while (l->id == 0)
        randombytes_buf(&l->id, sizeof l->id);
    /* JSON readers see ids as doubles: keep them below 2^53. */
    l->id &= (1ull << 53) - 1;
    if (l->id == 0)
        l->id = 1;
    return l;
}

void ol__alog_destroy(struct ol__alog *l)
{
    if (l == NULL)
        return;
    for (uint32_t i = 0; i < l->count; i++)
        free(l->lines[(l->head + i) % l->cap].text);
    free(l->lines);
    free(l);
}

static void drop_oldest(struct ol__alog *l)
{
    struct line *o = &l->lines[l->head];

    l->bytes -= o->len;
    free(o->text);
    o->text = NULL;
    l->head = (l->head + 1) % l->cap;
    l->count--;
}

void ol__alog_add(struct ol__alog *l, int64_t time_ms, int level,
                  const char *text)
{
    size_t n = strnlen(text, OL_ALOG_LINE_MAX);
    struct line *s;
    char *copy = malloc(n + 1);

    if (copy == NULL)
        return;
    /* Control characters would reach an operator's terminal as escape
     * sequences: keep them out. */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];

        copy[i] = (ch < 0x20 && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
    }
    copy[n] = '\0';
    while (l->count > 0 &&
           (l->count == l->cap || l->bytes + n > OL_ALOG_MAX_BYTES))
        drop_oldest(l);
    s = &l->lines[(l->head + l->count) % l->cap];
    s->seq = l->next_seq++;
    s->time_ms = time_ms;
    s->level = level;
    s->len = n;
    s->text = copy;
    l->count++;
    l->bytes += n;
}

uint64_t ol__alog_id(const struct ol__alog *l)
{
    return l ? l->id : 0;
}

uint64_t ol__alog_first(const struct ol__alog *l)
{
    if (l == NULL)
        return 1;
    return l->count ? l->lines[l->head].seq : l->next_seq;
}

uint64_t ol__alog_next(const struct ol__alog *l)
{
    return l ? l->next_seq : 1;
}

uint32_t ol__alog_pack(const struct ol__alog *l, uint64_t after,
                       uint32_t limit, msgpack_packer *pk)
{
    uint32_t skip = 0, n;

    if (l == NULL || l->count == 0) {
        msgpack_pack_array(pk, 0);
        return 0;
    }
    /* Seqs are consecutive inside the ring. */
    if (after >= l->lines[l->head].seq)
        skip = after - l->lines[l->head].seq + 1 > l->count
                   ? l->count
                   : (uint32_t)(after - l->lines[l->head].seq + 1);
    n = l->count - skip;
    if (n > limit)
        n = limit;
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        const struct line *s = &l->lines[(l->head + skip + i) % l->cap];
        const char *lv = ol_log_level_name(s->level);

        msgpack_pack_map(pk, 4);
        msgpack_pack_str_with_body(pk, "seq", 3);
        msgpack_pack_uint64(pk, s->seq);
        msgpack_pack_str_with_body(pk, "time_ms", 7);
        msgpack_pack_int64(pk, s->time_ms);
        msgpack_pack_str_with_body(pk, "level", 5);
        msgpack_pack_str_with_body(pk, lv, strlen(lv));
        msgpack_pack_str_with_body(pk, "text", 4);
        msgpack_pack_str_with_body(pk, s->text, s->len);
    }
    return n;
}
