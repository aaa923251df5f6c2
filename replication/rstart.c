/*
 * Start checks and the cluster id (rstart.h).  libraft's directory holds
 * metadata1/metadata2 (term and vote), segment files and snapshots; a
 * directory with neither metadata file has never held raft state.
 */
#include "rstart.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/fsutil.h"

static const char label_id[] = "outlast/cluster-id/1";

int ol__raft_dir_state(const char *raft_dir, char *errmsg)
{
    static const char *const names[] = {"metadata1", "metadata2"};
    char path[4200];
    struct stat sb;

    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", raft_dir, names[i]);
        if (stat(path, &sb) == 0)
            return 1;
        if (errno != ENOENT) {
            ol__errf(errmsg, "raft directory '%s': %s", raft_dir,
                     strerror(errno));
            return OL_EIO;
        }
    }
    return 0;
}

uint64_t ol__raft_last_index(const struct raft *r)
{
    const struct raft_log *l = &r->log;
    size_t n = l->back >= l->front ? l->back - l->front
                                   : l->size - l->front + l->back;

    return n ? l->offset + n : l->snapshot.last_index;
}

int ol__raft_start_check(const char *raft_dir, int has_state,
                         uint64_t applied, uint64_t node_id, char *errmsg)
{
    if (has_state || applied == 0)
        return 0;
    ol__errf(errmsg,
             "raft directory '%s' is empty, but this node's database has "
             "applied up to index %" PRIu64 ": its raft votes and log were "
             "lost (starting anyway could elect two leaders in one term or "
             "lose committed entries). To rebuild it from the cluster: "
             "`outlast cluster remove %" PRIu64 "` on the leader, start "
             "this node with `outlastd --rejoin`, then `outlast cluster add "
             "%" PRIu64 " ADDRESS PUBKEY` on the leader",
             raft_dir, applied, node_id, node_id);
    return OL_ESTATE;
}

int ol__cluster_id_load(const char *raft_dir,
                        uint8_t id[OL_CLUSTER_ID_SIZE], char *errmsg)
{
    char path[4200], *text = NULL;
    size_t len = 0;
    int rv;

    snprintf(path, sizeof path, "%s/cluster-id", raft_dir);
    rv = ol__read_file(path, 256, &text, &len, errmsg);
    if (rv != 0)
        return rv;
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    if (len != 2 * OL_CLUSTER_ID_SIZE ||
        sodium_hex2bin(id, OL_CLUSTER_ID_SIZE, text, len, NULL, NULL,
                       NULL) != 0) {
        ol__errf(errmsg, "cluster id file '%s' is not %d hex digits", path,
                 2 * OL_CLUSTER_ID_SIZE);
        rv = OL_EMALFORMED;
    }
    free(text);
    return rv;
}

int ol__cluster_id_save(const char *raft_dir,
                        const uint8_t id[OL_CLUSTER_ID_SIZE], char *errmsg)
{
    char path[4200], hex[2 * OL_CLUSTER_ID_SIZE + 2];

    snprintf(path, sizeof path, "%s/cluster-id", raft_dir);
    sodium_bin2hex(hex, sizeof hex - 1, id, OL_CLUSTER_ID_SIZE);
    strcat(hex, "\n");
    return ol__write_file_atomic(path, hex, strlen(hex), 0600, errmsg);
}

struct member {
    uint64_t id;
    const uint8_t *pk;
};

static int cmp_member(const void *a, const void *b)
{
    uint64_t x = ((const struct member *)a)->id;
    uint64_t y = ((const struct member *)b)->id;

    return x < y ? -1 : x > y;
}

void ol__cluster_id_roster(const char *name, uint64_t self_id,
                           const uint8_t self_pk[OL_PK_SIZE],
                           const struct ol__peer *others, size_t n_others,
                           uint8_t out[OL_CLUSTER_ID_SIZE])
{
    crypto_generichash_state st;
    struct member *m = calloc(n_others + 1, sizeof *m);
    size_t n = 0;

    if (m == NULL) {
        ol__cluster_id_random(out); /* unique, so still safe */
        return;
    }
    m[n].id = self_id;
    m[n++].pk = self_pk;
    for (size_t i = 0; i < n_others; i++) {
        m[n].id = others[i].id;
        m[n++].pk = others[i].pk;
    }
    qsort(m, n, sizeof *m, cmp_member);
    crypto_generichash_init(&st, NULL, 0, OL_CLUSTER_ID_SIZE);
    crypto_generichash_update(&st, (const uint8_t *)label_id,
                              sizeof label_id);
    crypto_generichash_update(&st, (const uint8_t *)name, strlen(name) + 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t id[8];

        for (int b = 0; b < 8; b++)
            id[b] = (uint8_t)(m[i].id >> (56 - 8 * b));
        crypto_generichash_update(&st, id, sizeof id);
        crypto_generichash_update(&st, m[i].pk, OL_PK_SIZE);
    }
    crypto_generichash_final(&st, out, OL_CLUSTER_ID_SIZE);
    free(m);
}

void ol__cluster_id_random(uint8_t out[OL_CLUSTER_ID_SIZE])
{
    randombytes_buf(out, OL_CLUSTER_ID_SIZE);
}
