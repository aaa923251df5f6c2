/*
 * An agent's own log: the lines its plugin wrote with host->log (and the
 * node's notes about it: started, resumed, quarantined), kept in a bounded
 * ring on the node that hosts it, so `outlast logs NAME` can show them
 * without searching the daemon log.  The ring holds at most `max_lines`
 * lines and OL_ALOG_MAX_BYTES bytes of text; the oldest go first.  Control
 * characters in a line are stored as '?'.
 *
 * Every line gets a sequence number that rises by one per line for the
 * life of the ring, so a reader that remembers the last number it saw can
 * ask for what came after, and learn how many lines it missed.  A ring has
 * a random id: a reader that meets another id (the agent moved, or the
 * node restarted) starts over.  Loop thread only.
 */
#ifndef OL_ALOG_H
#define OL_ALOG_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define OL_ALOG_LINE_MAX 512           /* longer lines are cut */
#define OL_ALOG_MAX_BYTES (64u << 10)  /* text per ring */

struct ol__alog;

/* A ring for at most max_lines lines (>= 1).  NULL when out of memory. */
struct ol__alog *ol__alog_create(uint32_t max_lines);
void ol__alog_destroy(struct ol__alog *l); /* NULL-safe */

/* Append a line (copied; cut at OL_ALOG_LINE_MAX bytes). */
void ol__alog_add(struct ol__alog *l, int64_t time_ms, int level,
                  const char *text);

uint64_t ol__alog_id(const struct ol__alog *l);
/* The oldest line still held (next when empty), and the number the next
 * line will get (the first line is 1). */
uint64_t ol__alog_first(const struct ol__alog *l);
uint64_t ol__alog_next(const struct ol__alog *l);

/*
 * Pack the lines numbered above `after`, oldest first, at most `limit` of
 * them, as an array of maps {seq, time_ms, level (str), text}.  A NULL
 * ring packs an empty array.  Returns the number packed.
 */
uint32_t ol__alog_pack(const struct ol__alog *l, uint64_t after,
                       uint32_t limit, msgpack_packer *pk);

#endif
