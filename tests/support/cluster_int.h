/*
 * What the two halves of the cluster test support share (cluster.c runs
 * and asks the nodes, cluster_db.c reads their database files): the table
 * of checkpoints seen during a test, keyed by (agent, number).
 */
#ifndef OL_TEST_CLUSTER_INT_H
#define OL_TEST_CLUSTER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cluster.h"

struct mrow {
    char agent[65];
    int64_t k;
    uint8_t v[32];
    int node;
    int used;
};

struct tc_seen {
    struct mrow *t;
    size_t cap, n;
};

/* Free the table's rows (not the struct itself). */
void tc__seen_free(struct tc_seen *m);

#endif
