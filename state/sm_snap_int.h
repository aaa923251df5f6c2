/*
 * Snapshot internals shared by sm_snap.c (taking one, and the order in
 * which an install reads it) and sm_snap_rows.c (installing each table's
 * rows).
 */
#ifndef OL_SM_SNAP_INT_H
#define OL_SM_SNAP_INT_H

#include <sqlite3.h>
#include <stdint.h>

#include "base/mpr.h"
#include "record/seal.h"
#include "sm_int.h"

/* 3 added the crashes and code tables, 4 the table of applied request
 * ids (an older snapshot restores an empty one). */
#define SNAP_FORMAT 4

/* A seal installed from the snapshot: its id there and its row here. */
struct seal_map {
    int64_t snap_id;
    int64_t local_id;
    struct ol__seal seal; /* points into the snapshot */
};

/* One install.  Each part reads its table and returns 0, OL_EMALFORMED
 * with r.off at the bad byte and `what` naming the part, or OL_EIO.
 * Statements a part prepares are kept here for the whole install and
 * finalized by ol__snap_restore_close. */
struct restore {
    struct ol__sm *sm;
    struct ol__mpr r;
    uint64_t format;
    const char *what;
    struct seal_map *seals; /* sorted by snap_id */
    uint32_t n_seals;
    struct ol__effects *fx; /* diverged agents are reported here */
    uint32_t diverged;
    sqlite3_stmt *evidence, *del_ckpt, *mail, *mail_seq, *crash, *code;
};

#define BAD(rs_, what_)                                                    \
    do {                                                                   \
        (rs_)->what = (what_);                                             \
        return OL_EMALFORMED;                                              \
    } while (0)

/* Install every table after the header. */
int ol__snap_restore_rows(struct restore *rs);
/* Free what the parts allocated and prepared. */
void ol__snap_restore_close(struct restore *rs);

#endif
