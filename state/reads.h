/*
 * Small reads the daemon makes of the state machine's tables while it
 * runs, on its reader connection: the SQL lives in the state layer beside
 * the schema (store.c), not in the daemon.  Each returns 0, OL_ENOTFOUND
 * where a row is asked for and there is none, or OL_EIO.
 */
#ifndef OL_READS_H
#define OL_READS_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/keys.h"

/* The id of the node whose public key is `pk`. */
int ol__read_node_id(sqlite3 *db, const uint8_t pk[OL_PK_SIZE],
                     int64_t *id);

/* An agent's status (OL_AGENT_* in agent.h). */
int ol__read_agent_status(sqlite3 *db, const char *name, int *status);

/* How many agents have `status`; with 0, all but the removed ones. */
int ol__read_count_agents(sqlite3 *db, int status, uint64_t *n);

/* One message of a mailbox row, handed to the caller's function. */
struct ol__mail_row {
    int64_t id;
    const char *from;
    uint64_t from_seq;
    uint32_t idx;
    const void *payload;
    uint32_t len;
};

/*
 * The mailbox rows of `agent` with id above `after`, oldest first: at most
 * `rows` of them, and no more once `bytes` payload bytes were read.  *more
 * says whether rows may remain (a limit was reached).
 */
int ol__read_mail(sqlite3 *db, const char *agent, int64_t after,
                  uint32_t rows, size_t bytes,
                  void (*fn)(void *arg, const struct ol__mail_row *m),
                  void *arg, int *more);
/* The same on a statement prepared from ol__read_mail_sql (reset after,
 * bindings replaced): a node loading thousands of mailboxes prepares it
 * once. */
extern const char ol__read_mail_sql[];
int ol__read_mail_st(sqlite3_stmt *st, const char *agent, int64_t after,
                     uint32_t rows, size_t bytes,
                     void (*fn)(void *arg, const struct ol__mail_row *m),
                     void *arg, int *more);

#endif
