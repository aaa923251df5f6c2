/*
 * An agent's log lines, from whichever node hosts it (logs.c), and the
 * runtime messages nodes send each other about their agents.
 */
#ifndef OL_LOGS_H
#define OL_LOGS_H

#include <stddef.h>
#include <stdint.h>

struct ol__node;
struct ol_agent;

struct ol__alog;
/* Append a line to the agent's ring (created on demand) and, unless
 * `ring_only`, to the daemon log. */
void ol__agent_note(struct ol_agent *a, int level, int ring_only,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A line a plugin logged through ol_host.log, in the node or in its host
 * process (`text` need not be NUL-terminated; at most 511 bytes are kept):
 * control characters become '?', the line goes to the agent's ring and,
 * rate-limited, to the daemon log. */
void ol__agent_plugin_log(struct ol_agent *a, int level, const char *text,
                          size_t len);
/* Fetch lines of `name` numbered above `after` (at most `limit`) from the
 * node hosting it.  `cb` gets 0 and a msgpack map
 *   {name, node, ring, first, next, lines: [{seq, time_ms, level, text}]}
 * (borrowed for the call), or an OL_E* code and a message.  It may run
 * before this returns, or later (the agent lives on another node). */
typedef void (*ol__logs_cb)(void *data, int status, const char *errmsg,
                            const void *map, size_t len);
void ol__logs_fetch(struct ol__node *n, const char *name, uint64_t after,
                    uint32_t limit, ol__logs_cb cb, void *data);
/* A runtime message from another node (cluster hooks.app). */
void ol__logs_app(void *data, uint64_t from, const void *p, size_t len);
/* Tell node `to` that this node let agent `name` go (its new owner holds
 * it under `epoch`): best effort. */
void ol__logs_send_handed_over(struct ol__node *n, uint64_t to,
                               const char *name, uint64_t epoch);
/* Answer every fetch still waiting with OL_ESHUTDOWN. */
void ol__logs_close(struct ol__node *n);

#endif
