/*
 * Waiting in integration tests: on a condition with a deadline, never a
 * fixed sleep followed by an assertion.  A test that must show something
 * does NOT happen over a period uses tw_window_ms(), which names that
 * intent; every other wait polls a condition.
 */
#ifndef OL_TEST_WAIT_H
#define OL_TEST_WAIT_H

#include <stdint.h>

#include "daemon.h"

/* Poll `cond(arg)` every 20 ms until it holds or `timeout_ms` passes;
 * returns 1 if it held (checked once more at the deadline), else 0. */
int tw_until(int (*cond)(void *arg), void *arg, int timeout_ms);

/* A bounded observation window: the caller then checks that something
 * did not happen during it (an agent did not run twice, a deleted row did
 * not come back).  Nothing to poll for, so this one sleeps. */
void tw_window_ms(int ms);

/* A condition for td_until(): agent `agent`'s committed head has
 * `key` >= `min` in its state, or (key NULL) a checkpoint seq >= `min`. */
struct td_want {
    const char *agent;
    const char *key;
    int64_t min;
};
int td_reached(struct td *d, void *want);

/* Wait (up to timeout_ms) for td_reached(); fails the test naming the
 * agent and what it reached otherwise. */
void td_wait_reached(struct td *d, const char *agent, const char *key,
                     int64_t min, int timeout_ms);

/* agent's newest committed seq, 0 if none (-1 if the database cannot be
 * read). */
int64_t td_head_seq(struct td *d, const char *agent);

#endif
