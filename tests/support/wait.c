/* Condition waits for integration tests (wait.h). */
#include "wait.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <sqlite3.h>

int tw_until(int (*cond)(void *arg), void *arg, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    /* At most one poll per 20 ms, so the count is bounded by the time. */
    while (td_ms() < end) {
        if (cond(arg))
            return 1;
        td_sleep_ms(20);
    }
    return cond(arg);
}

void tw_window_ms(int ms)
{
    td_sleep_ms(ms);
}

int64_t td_head_seq(struct td *d, const char *agent)
{
    sqlite3 *db = td_db(d);
    sqlite3_stmt *q;
    int64_t v = -1;

    if (db == NULL)
        return -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT coalesce(max(seq), 0) FROM checkpoints "
                           "WHERE agent = ?",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, agent, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW)
            v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return v;
}

static int64_t reached(struct td *d, const struct td_want *w)
{
    return w->key ? td_state_int(d, w->agent, w->key, -1)
                  : td_head_seq(d, w->agent);
}

int td_reached(struct td *d, void *want)
{
    const struct td_want *w = want;

    return reached(d, w) >= w->min;
}

void td_wait_reached(struct td *d, const char *agent, const char *key,
                     int64_t min, int timeout_ms)
{
    struct td_want w = {agent, key, min};

    cr_assert(td_until(td_reached, d, &w, timeout_ms),
              "'%s' reached %s %" PRId64 ", not %" PRId64 " within %d ms; "
              "see %s",
              agent, key ? key : "seq", reached(d, &w), min, timeout_ms,
              d->log);
}
