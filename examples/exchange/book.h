/*
 * book.h - the exchange's order book: executed orders by idempotency
 * key, the highest epoch seen per agent, and the files that keep them.
 *
 * Not thread-safe: the HTTP side holds one mutex around every call.
 */
#ifndef EXCHANGE_BOOK_H
#define EXCHANGE_BOOK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define BOOK_KEY_LEN 32   /* hex digits in an idempotency key */
#define BOOK_AGENT_MAX 64 /* bytes in an agent name */
#define BOOK_NUM_MAX ((uint64_t)1 << 53) /* epochs, quantities, prices */

struct order {
    uint64_t id; /* 0 until executed */
    char key[BOOK_KEY_LEN + 1];
    char agent[BOOK_AGENT_MAX + 1];
    uint64_t epoch;
    char side[5]; /* "buy" or "sell" */
    uint64_t qty;
    uint64_t price;
};

struct seen {
    char agent[BOOK_AGENT_MAX + 1];
    uint64_t epoch;
};

struct book {
    struct order *orders; /* in id order: orders[i].id == i + 1 */
    size_t n, cap;
    struct seen *seen;
    size_t nseen, seencap;
    int ledger_fd;  /* LEDGER: one order per line */
    int rejects_fd; /* LEDGER.rejects: stale-epoch requests */
    int epochs_fd;  /* LEDGER.epochs: epochs raised by duplicates */
    size_t nrejects;
};

/* Opens (creating) the ledger at `path` and its .rejects and .epochs
 * files, and loads them.  A damaged last line is reported on stderr and
 * cut off; a damaged line before it fails the open.  Returns 0, or -1
 * with err filled. */
int book_open(struct book *b, const char *path, char *err, size_t cap);
void book_close(struct book *b);

/* Fills o from a request or ledger object; with_id also reads "id".
 * Returns 0, or -1 with err naming the field that is wrong. */
int order_parse(const json_t *j, int with_id, struct order *o, char *err,
                size_t cap);
/* The order as a new JSON object (NULL when out of memory). */
json_t *order_json(const struct order *o);

/* The executed order with this key, or NULL. */
const struct order *book_find(const struct book *b, const char *key);
/* The highest epoch seen for `agent` (0 if none). */
uint64_t book_seen(const struct book *b, const char *agent);
/* Raises the agent's epoch to `epoch` if higher; with `durable`, writes
 * it to the .epochs file first.  Returns 0 or -1 (I/O, memory). */
int book_see(struct book *b, const char *agent, uint64_t epoch, int durable);
/* Assigns o->id, appends o to the ledger and fsyncs it.  Returns 0 or -1. */
int book_execute(struct book *b, struct order *o);
/* Appends a stale-epoch rejection to the .rejects file.  Returns 0 or -1. */
int book_reject(struct book *b, const struct order *o, uint64_t seen);

#endif /* EXCHANGE_BOOK_H */
