/*
 * Reading an agent's chain back out of a node's database for tests: every
 * row in seq order, decoded, with the checks the isolation and upgrade
 * tests make (no seq gap, every prev_hash the hash of the row before, a
 * counter in the state that never goes back, the plugin builds in the
 * order they wrote), and a record of committed heads seen during a test so
 * the end of the test can check none of them was lost.
 */
#ifndef OL_TEST_CHAIN_H
#define OL_TEST_CHAIN_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define TD_CHAIN_BUILDS 8

struct td_chain {
    int64_t rows;
    uint64_t first_seq, last_seq;
    int gaps;          /* seq not head + 1 (outside snapshot rows) */
    int broken;        /* prev_hash is not the previous row's hash */
    int undecodable;   /* a body that does not decode */
    int went_back;     /* `counter` in the state decreased */
    int64_t counter;   /* its last value */
    /* Plugin builds, in the order they first wrote. */
    char versions[TD_CHAIN_BUILDS][72];
    uint8_t hashes[TD_CHAIN_BUILDS][32];
    int n_builds;
    int build_went_back; /* a build wrote again after a newer one */
};

/* Read `agent`'s chain from `db`; `counter` names an integer in the state
 * (NULL: none).  Returns 0, or -1 if the agent has no rows. */
int td_chain_read(sqlite3 *db, const char *agent, const char *counter,
                  struct td_chain *out);

/* One stored checkpoint row, as a test compares them across a crash. */
struct td_row {
    char agent[72];
    int64_t seq, epoch;
    uint8_t hash[32];
};

/* Every checkpoint row in d's database (in no particular order), in a
 * malloc'd array at *out; returns how many. */
struct td;
size_t td_rows(struct td *d, struct td_row **out);

/* Committed heads seen while a test runs. */
struct td_seen;
struct td_seen *td_seen_new(void);
void td_seen_free(struct td_seen *s);
/* Record the head (seq, hash) of every agent in `db`. */
void td_seen_observe(struct td_seen *s, sqlite3 *db);
/* How many recorded (agent, seq) rows `db` lacks or holds with another
 * hash; each is reported with cr_expect. */
int td_seen_check(const struct td_seen *s, sqlite3 *db);

#endif
