/*
 * What a cluster node checks before and as its raft starts, so that it
 * never silently starts a new history:
 *
 *  - a raft directory that is missing or empty while the database shows
 *    the node had applied entries (its votes and log were lost: starting
 *    anyway could let two leaders win one term or shrink a committed
 *    majority) is refused; so is a raft log that ends before what the
 *    database has applied (an older raft directory);
 *  - the cluster id: each formed cluster has one, bound into every
 *    handshake (handshake.h), so nodes bootstrapped with different
 *    rosters, or two nodes each given `cluster init`, never form one
 *    cluster.  It is kept in the raft directory as `cluster-id`.
 */
#ifndef OL_RSTART_H
#define OL_RSTART_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#include "handshake.h"
#include "transport.h"

/* Does `raft_dir` hold raft state (a metadata file)?  1, 0, or OL_EIO
 * with errmsg set when it cannot be read. */
int ol__raft_dir_state(const char *raft_dir, char *errmsg);

/* The newest index in a started raft's log or snapshot. */
uint64_t ol__raft_last_index(const struct raft *r);

/* Refuse a start whose raft state was lost or is older than the database
 * (see above).  `has_state` from ol__raft_dir_state(), `applied` the
 * database's applied index.  Returns 0 or OL_ESTATE with errmsg saying
 * what is wrong and how to recover. */
int ol__raft_start_check(const char *raft_dir, int has_state,
                         uint64_t applied, uint64_t node_id, char *errmsg);

/* Load the cluster id: 0, OL_ENOTFOUND, or OL_EMALFORMED / OL_EIO. */
int ol__cluster_id_load(const char *raft_dir,
                        uint8_t id[OL_CLUSTER_ID_SIZE], char *errmsg);
/* Store it (0600, written atomically).  0 or OL_EIO. */
int ol__cluster_id_save(const char *raft_dir,
                        const uint8_t id[OL_CLUSTER_ID_SIZE], char *errmsg);

/* The id of a cluster bootstrapped with every listed node as a voter:
 * the same on every node given the same name and roster (ids and keys;
 * addresses may differ between hosts). */
void ol__cluster_id_roster(const char *name, uint64_t self_id,
                           const uint8_t self_pk[OL_PK_SIZE],
                           const struct ol__peer *others, size_t n_others,
                           uint8_t out[OL_CLUSTER_ID_SIZE]);

/* A fresh random id, for a cluster one node bootstraps alone. */
void ol__cluster_id_random(uint8_t out[OL_CLUSTER_ID_SIZE]);

#endif
