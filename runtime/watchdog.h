/*
 * The node's watchdog: a thread that needs nothing from the loop, so it
 * acts when the loop cannot.
 *  - A plugin running inside the node whose step has run past its
 *    deadline cannot be interrupted: the watchdog records the overrun in
 *    the step-mark file (the restarted node reports it as a crash of that
 *    agent) and ends the node.
 *  - Once SIGTERM or SIGINT has arrived, the node exits within `stop_ms`
 *    whatever its agents are doing.
 */
#ifndef OL_WATCHDOG_H
#define OL_WATCHDOG_H

#include <stdint.h>

#include "mark.h"

struct ol__watchdog;

/* Start the thread; `mark` (the in-process marks) may be NULL.  Returns 0
 * or OL_EIO. */
int ol__watchdog_start(struct ol__mark *mark, uint32_t stop_ms,
                       struct ol__watchdog **out);

/* A stop was asked for (async-signal-safe). */
void ol__watchdog_stopping(struct ol__watchdog *w);

/* Stop and join the thread.  NULL is a no-op. */
void ol__watchdog_destroy(struct ol__watchdog *w);

/* Exit code of a node the watchdog ended. */
#define OL_WATCHDOG_EXIT 70

#endif
