/*
 * The daemon's configuration: an INI file read with inih, or the embedded
 * defaults when no file is given.  Every key, its default and its meaning
 * is listed in examples/single-node.ini.
 */
#ifndef OL_CONFIG_H
#define OL_CONFIG_H

#include <limits.h>
#include <stdint.h>

#include "../replication/transport.h"

#define OL_CONFIG_MAX_AGENTS 1024
#define OL_CONFIG_MAX_PEERS 16
#define OL_CONFIG_FILE_MAX (1u << 20) /* bytes */
#define OL_CONFIG_NAME_MAX 160        /* a section, or section and key */

struct ol__config_agent {
    char name[65];
    char kind[65];
    char *config_json; /* malloc'd; NULL: {} */
};

struct ol__config_peer {
    uint64_t id;
    char address[OL_ADDR_MAX];
    char pubkey[65]; /* hex */
    char labels[201];
};

struct ol__config {
    /* [node] */
    uint64_t node_id;
    char node_name[65];
    char data_dir[PATH_MAX];
    char plugin_dir[PATH_MAX]; /* "" : search the defaults */
    int log_level;
    int log_format;            /* OL_LOG_TEXT or OL_LOG_JSON */
    uint32_t agent_log_lines;  /* lines kept per agent; 0: none */
    char labels[201];
    /* [checkpoint] */
    uint32_t every_steps;
    uint32_t every_ms;
    uint32_t retain;
    /* [cluster] */
    int cluster;               /* a [cluster] section is present */
    char cluster_name[65];
    char listen[OL_ADDR_MAX];
    uint32_t election_timeout_ms;
    uint32_t heartbeat_timeout_ms;
    uint32_t failover_ms;
    uint32_t snapshot_threshold;
    uint32_t snapshot_trailing;
    uint32_t segment_mb;       /* raft log segment size, MiB */
    uint32_t feature_level;    /* stay at this level (rolling upgrade);
                                  0: this build's */
    int bootstrap;             /* bootstrap every listed node as a voter */
    /* [http] */
    char http_listen[OL_ADDR_MAX];    /* "" : no HTTP endpoint */
    char http_token_file[PATH_MAX];   /* "" : no token (loopback only) */
    int http_loopback;                /* listen is a loopback address */
    /* [peer.ID] */
    struct ol__config_peer peers[OL_CONFIG_MAX_PEERS];
    uint32_t n_peers;
    /* [agent.NAME] */
    struct ol__config_agent *agents;
    uint32_t n_agents;
    int default_agents; /* no file: run the example agents */
};

/* Fill in the embedded single-node defaults (with the example agents). */
void ol__config_defaults(struct ol__config *c);

/*
 * Read `path` over the defaults (without the example agents).  Returns 0 or
 * OL_ECONFIG with errmsg "FILE:LINE: what was wrong".  The file must be a
 * regular file of at most OL_CONFIG_FILE_MAX bytes (a directory, FIFO or
 * device is refused before anything is read); lines may be of any length;
 * a section or a key given twice is an error that names both lines.
 */
int ol__config_load(struct ol__config *c, const char *path, char *errmsg);

void ol__config_free(struct ol__config *c);

#endif
