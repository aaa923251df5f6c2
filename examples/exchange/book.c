/*
 * book.c - the exchange's order book and its files.
 *
 * Three append-only files of JSON lines, each line written whole and
 * fsynced before the request that caused it is answered:
 *   LEDGER          every executed order, {id, key, agent, epoch, side,
 *                   qty, price}, ids 1, 2, 3, ... in order;
 *   LEDGER.rejects  every stale-epoch request, {key, agent, epoch, seen};
 *   LEDGER.epochs   epochs raised by a duplicate request, {agent, epoch}
 *                   (an executed order already records its own).
 * Loading them rebuilds the dedup table and the highest epoch per agent.
 * A crash can leave the last line of a file half written: that line is
 * reported and cut off.  Any other damage stops the load, so nothing the
 * exchange once answered for is ever dropped.
 */
#include "book.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int (*line_fn)(struct book *b, const json_t *j, char *err,
                       size_t cap);

static int get_uint(const json_t *j, const char *name, uint64_t min,
                    uint64_t *out, char *err, size_t cap)
{
    const json_t *v = json_object_get(j, name);

    if (v == NULL) {
        snprintf(err, cap, "missing field '%s'", name);
        return -1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
        (uint64_t)json_integer_value(v) > BOOK_NUM_MAX) {
        snprintf(err, cap, "'%s' must be an integer in %" PRIu64 "..%" PRIu64,
                 name, min, BOOK_NUM_MAX);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* The str field `name`, or NULL with err filled. */
static const char *get_str(const json_t *j, const char *name, char *err,
                           size_t cap)
{
    const json_t *v = json_object_get(j, name);

    if (v == NULL)
        snprintf(err, cap, "missing field '%s'", name);
    else if (!json_is_string(v))
        snprintf(err, cap, "'%s' must be a string", name);
    else
        return json_string_value(v);
    return NULL;
}

static int valid_key(const char *s)
{
    if (strlen(s) != BOOK_KEY_LEN)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static int valid_agent(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > BOOK_AGENT_MAX)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
            return 0;
    return 1;
}

int order_parse(const json_t *j, int with_id, struct order *o, char *err,
                size_t cap)
{
    const char *key, *agent, *side;

    memset(o, 0, sizeof(*o));
    if (!json_is_object(j)) {
        snprintf(err, cap, "the body must be a JSON object");
        return -1;
    }
    if (with_id && get_uint(j, "id", 1, &o->id, err, cap) != 0)
        return -1;
    if ((key = get_str(j, "key", err, cap)) == NULL)
        return -1;
    if (!valid_key(key)) {
        snprintf(err, cap, "'key' must be %d lowercase hex digits",
                 BOOK_KEY_LEN);
        return -1;
    }
    if ((agent = get_str(j, "agent", err, cap)) == NULL)
        return -1;
    if (!valid_agent(agent)) {
        snprintf(err, cap, "'agent' must be 1..%d printable bytes, no spaces",
                 BOOK_AGENT_MAX);
        return -1;
    }
    if (get_uint(j, "epoch", 0, &o->epoch, err, cap) != 0)
        return -1;
    if ((side = get_str(j, "side", err, cap)) == NULL)
        return -1;
    if (strcmp(side, "buy") != 0 && strcmp(side, "sell") != 0) {
        snprintf(err, cap, "'side' must be \"buy\" or \"sell\"");
        return -1;
    }
    if (get_uint(j, "qty", 1, &o->qty, err, cap) != 0 ||
        get_uint(j, "price", 1, &o->price, err, cap) != 0)
        return -1;
    strcpy(o->key, key);
    strcpy(o->agent, agent);
    strcpy(o->side, side);
    return 0;
}

json_t *order_json(const struct order *o)
{
    return json_pack("{sI, ss, ss, sI, ss, sI, sI}", "id", (json_int_t)o->id,
                     "key", o->key, "agent", o->agent, "epoch",
                     (json_int_t)o->epoch, "side", o->side, "qty",
                     (json_int_t)o->qty, "price", (json_int_t)o->price);
}

const struct order *book_find(const struct book *b, const char *key)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->orders[i].key, key) == 0)
            return &b->orders[i];
    return NULL;
}

static struct seen *find_seen(const struct book *b, const char *agent)
{
    for (size_t i = 0; i < b->nseen; i++)
        if (strcmp(b->seen[i].agent, agent) == 0)
            return &b->seen[i];
    return NULL;
}

uint64_t book_seen(const struct book *b, const char *agent)
{
    const struct seen *s = find_seen(b, agent);

    return s != NULL ? s->epoch : 0;
}

/* Writes j as one line to fd and fsyncs it. */
static int append_line(int fd, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    size_t len, off = 0;
    int rv = -1;

    json_decref(j);
    if (s == NULL)
        return -1;
    len = strlen(s);
    s[len++] = '\n'; /* replaces the NUL; len counts the newline */
    while (off < len) {
        ssize_t w = write(fd, s + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out;
        off += (size_t)w;
    }
    rv = fsync(fd);
out:
    free(s);
    return rv;
}

int book_see(struct book *b, const char *agent, uint64_t epoch, int durable)
{
    struct seen *s = find_seen(b, agent);

    if (s != NULL && s->epoch >= epoch)
        return 0;
    if (durable && append_line(b->epochs_fd, json_pack("{ss, sI}", "agent",
                                                       agent, "epoch",
                                                       (json_int_t)epoch)) != 0)
        return -1;
    if (s == NULL) {
        if (b->nseen == b->seencap) {
            size_t cap = b->seencap ? 2 * b->seencap : 16;
            struct seen *p = realloc(b->seen, cap * sizeof(*p));
            if (p == NULL)
                return -1;
            b->seen = p;
            b->seencap = cap;
        }
        s = &b->seen[b->nseen++];
        snprintf(s->agent, sizeof(s->agent), "%s", agent);
    }
    s->epoch = epoch;
    return 0;
}

static int add_order(struct book *b, const struct order *o)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        struct order *p = realloc(b->orders, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        b->orders = p;
        b->cap = cap;
    }
    b->orders[b->n++] = *o;
    return book_see(b, o->agent, o->epoch, 0);
}

int book_execute(struct book *b, struct order *o)
{
    o->id = b->n + 1;
    if (append_line(b->ledger_fd, order_json(o)) != 0)
        return -1;
    return add_order(b, o);
}

int book_reject(struct book *b, const struct order *o, uint64_t seen)
{
    if (append_line(b->rejects_fd,
                    json_pack("{ss, ss, sI, sI}", "key", o->key, "agent",
                              o->agent, "epoch", (json_int_t)o->epoch, "seen",
                              (json_int_t)seen)) != 0)
        return -1;
    b->nrejects++;
    return 0;
}

static int load_order(struct book *b, const json_t *j, char *err, size_t cap)
{
    struct order o;

    if (order_parse(j, 1, &o, err, cap) != 0)
        return -1;
    if (o.id != b->n + 1) {
        snprintf(err, cap, "id %" PRIu64 " where %zu was next", o.id,
                 b->n + 1);
        return -1;
    }
    if (book_find(b, o.key) != NULL) {
        snprintf(err, cap, "key %s executed twice", o.key);
        return -1;
    }
    if (add_order(b, &o) != 0) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    return 0;
}

/* A .rejects or .epochs line: the agent and the epoch it raised to. */
static int load_seen(struct book *b, const json_t *j, const char *field,
                     char *err, size_t cap)
{
    const char *agent = get_str(j, "agent", err, cap);
    uint64_t epoch;

    if (agent == NULL || get_uint(j, field, 0, &epoch, err, cap) != 0)
        return -1;
    if (!valid_agent(agent)) {
        snprintf(err, cap, "bad 'agent'");
        return -1;
    }
    if (book_see(b, agent, epoch, 0) != 0) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    return 0;
}

static int load_reject(struct book *b, const json_t *j, char *err, size_t cap)
{
    if (load_seen(b, j, "seen", err, cap) != 0)
        return -1;
    b->nrejects++;
    return 0;
}

static int load_epoch(struct book *b, const json_t *j, char *err, size_t cap)
{
    return load_seen(b, j, "epoch", err, cap);
}

/* Reads the whole of fd into a NUL-terminated buffer. */
static char *slurp(int fd, size_t *len)
{
    struct stat st;
    char *buf;
    size_t off = 0;

    if (fstat(fd, &st) != 0 || (buf = malloc((size_t)st.st_size + 1)) == NULL)
        return NULL;
    while (off < (size_t)st.st_size) {
        ssize_t r = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    buf[off] = '\0';
    *len = off;
    return buf;
}

/* Loads every line of fd with fn; cuts off a damaged last line. */
static int load_lines(struct book *b, int fd, const char *path, line_fn fn,
                      char *err, size_t cap)
{
    size_t len, off = 0, lineno = 0;
    char *buf = slurp(fd, &len), why[160];
    int rv = -1;

    if (buf == NULL) {
        snprintf(err, cap, "read %s: %s", path, strerror(errno));
        return -1;
    }
    while (off < len) {
        char *nl = memchr(buf + off, '\n', len - off);
        size_t end = nl != NULL ? (size_t)(nl - buf) : len;
        json_t *j = json_loadb(buf + off, end - off, 0, NULL);
        int bad = j == NULL || fn(b, j, why, sizeof(why)) != 0;

        if (j == NULL)
            snprintf(why, sizeof(why), "not JSON");
        json_decref(j);
        lineno++;
        if (nl == NULL && !bad)
            snprintf(why, sizeof(why), "no newline");
        if ((bad || nl == NULL) && (nl == NULL || end + 1 == len)) {
            fprintf(stderr, "outlast-exchange: %s: line %zu is damaged (%s); "
                    "ignoring it\n", path, lineno, why);
            rv = ftruncate(fd, (off_t)off);
            goto out;
        }
        if (bad) {
            snprintf(err, cap, "%s: line %zu: %s", path, lineno, why);
            goto out;
        }
        off = end + 1;
    }
    rv = 0;
out:
    free(buf);
    return rv;
}

static int open_load(struct book *b, const char *path, const char *suffix,
                     int *fd, line_fn fn, char *err, size_t cap)
{
    char name[4096];

    snprintf(name, sizeof(name), "%s%s", path, suffix);
    *fd = open(name, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (*fd < 0) {
        snprintf(err, cap, "open %s: %s", name, strerror(errno));
        return -1;
    }
    return load_lines(b, *fd, name, fn, err, cap);
}

int book_open(struct book *b, const char *path, char *err, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->ledger_fd = b->rejects_fd = b->epochs_fd = -1;
    if (open_load(b, path, "", &b->ledger_fd, load_order, err, cap) != 0 ||
        open_load(b, path, ".rejects", &b->rejects_fd, load_reject, err,
                  cap) != 0 ||
        open_load(b, path, ".epochs", &b->epochs_fd, load_epoch, err,
                  cap) != 0) {
        book_close(b);
        return -1;
    }
    return 0;
}

void book_close(struct book *b)
{
    if (b->ledger_fd >= 0)
        close(b->ledger_fd);
    if (b->rejects_fd >= 0)
        close(b->rejects_fd);
    if (b->epochs_fd >= 0)
        close(b->epochs_fd);
    free(b->orders);
    free(b->seen);
    memset(b, 0, sizeof(*b));
    b->ledger_fd = b->rejects_fd = b->epochs_fd = -1;
}
