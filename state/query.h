/*
 * Read-only queries over a node's database, shared by the daemon (answering
 * the CLI) and the CLI itself (reading a database file offline with --db).
 * Each writes exactly one msgpack value with the given packer.
 */
#ifndef OL_QUERY_H
#define OL_QUERY_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stdint.h>

/* Which agents a listing shows; zero (or NULL) fields do not filter.
 * Removed agents (tombstones) only with `all`, or when `status` asks for
 * them.  Paging: names after `after`, at most `limit` (0: all). */
struct ol__agent_filter {
    int all;
    int status;          /* enum ol__agent_status */
    const char *kind;
    uint64_t owner;
    const char *prefix;  /* names that start with it */
    const char *after;
    uint32_t limit;
};

/*
 * An array of maps, one per agent the filter keeps (NULL: every agent but
 * the removed), ordered by name:
 *   {name, kind, status (str), owner (uint), epoch, seq (head, 0 if none),
 *    time_ms (head checkpoint time, 0 if none), hash (hex, "" if none),
 *    reason (str), mailbox (uint: messages waiting)}
 */
int ol__query_agents(sqlite3 *db, msgpack_packer *pk,
                     const struct ol__agent_filter *f, char *errmsg);

/*
 * One map for the agent `name`:
 *   {name, kind, status, owner, epoch, seq, time_ms, hash, reason,
 *    config: <msgpack object>, state: <msgpack object or nil>,
 *    timers: [[id, due_ms]...], mailbox: uint,
 *    plugin: {kind, version, so_hash (hex)}, signer (hex)}
 * The head checkpoint is verified (seal signature, hash) before its state is
 * shown; a bad one gives OL_EBADSIG/OL_EBADHASH with errmsg naming the seq.
 * Returns OL_ENOTFOUND for an unknown agent.
 */
int ol__query_show(sqlite3 *db, const char *name, msgpack_packer *pk,
                   char *errmsg);

/*
 * A map {agent, checkpoints: [...]} with the newest `limit` checkpoints (0:
 * all), newest first:
 *   {seq, epoch, hash (hex), prev_hash (hex), signer (hex), size (bytes of
 *    the body), time_ms, outbox (count), acks (count), final (bool)}
 * Rows are listed as stored; `outlast verify` is what checks them.
 */
int ol__query_history(sqlite3 *db, const char *name, uint32_t limit,
                      msgpack_packer *pk, char *errmsg);

#endif
