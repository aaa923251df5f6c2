/*
 * The daemon's configuration: an INI file read with inih, or the embedded
 * defaults when no file is given.  Every key, its default and its meaning
 * is listed in examples/single-node.ini.
 */
#ifndef OL_CONFIG_H
#define OL_CONFIG_H

#include <limits.h>
#include <stdint.h>

#include "base/keys.h"
#include "base/sizes.h"
#include "outlast/agent.h"

/* [agent.NAME] sections have no limit of their own: the file's size
 * bounds them (about 400,000 short ones fit). */
#define OL_CONFIG_MAX_PLUGINS 1024 /* [plugin.KIND] sections */
#define OL_CONFIG_MAX_PEERS 16
#define OL_CONFIG_FILE_MAX (16u << 20) /* bytes */
#define OL_CONFIG_NAME_MAX 160        /* a section, or section and key */

struct ol__config_agent {
    char name[OL_NAME_MAX + 1];
    char kind[OL_KIND_MAX + 1];
    char *config_json; /* malloc'd; NULL: {} */
    /* Placement affinity: label lists, "" for none; folded into the config
     * as its "prefer" and "avoid" keys once the file is read. */
    char prefer[OL_LABELS_MAX + 1];
    char avoid[OL_LABELS_MAX + 1];
};

/* How a plugin kind runs ([agents] holds the defaults, [plugin.KIND] the
 * overrides for one kind). */
enum ol__isolation {
    OL_ISO_PROCESS = 0, /* in an agent-host process (the default) */
    OL_ISO_NODE = 1,    /* inside the node: trusted code only */
};

struct ol__plugin_cfg {
    char kind[OL_KIND_MAX + 1];             /* "" for the defaults */
    int isolation;             /* enum ol__isolation */
    uint32_t step_deadline_ms; /* a step running longer is a crash */
    uint32_t memory_mb;        /* host process data limit; 0: none */
    uint32_t work_threads;     /* threads for ol_host.work() */
    int allow_network;         /* host may open network sockets */
    unsigned set;              /* which keys this section set (bits) */
};

/* The retry policy of an effect kind ([effects] holds the defaults,
 * [effects.KIND] the overrides for one kind). */
struct ol__fx_policy {
    char kind[OL_AGENT_KIND_MAX + 1]; /* "" for the defaults */
    uint32_t attempts;       /* perform()/reconcile() calls before the
                              * effect fails */
    uint32_t backoff_ms;     /* the wait before the first retry; it
                              * doubles after each one ... */
    uint32_t backoff_max_ms; /* ... up to this */
    uint32_t timeout_ms;     /* one attempt: its deadline_ms */
    uint32_t deadline_ms;    /* all attempts on one node: past it the
                              * effect fails; 0: no limit */
    unsigned set;            /* which keys this section set (bits) */
};

struct ol__config_peer {
    uint64_t id;
    char address[OL_ADDR_MAX];
    char pubkey[OL_PK_HEX_SIZE]; /* hex */
    char labels[OL_LABELS_MAX + 1];
    int role;                    /* enum ol__node_role: voter, witness,
                                    standby; folded into labels as role= */
};

/* [cluster] timing: a named set of election, heartbeat and failover
 * times (keys set explicitly win). */
enum ol_timing {
    OL_TIMING_DEFAULT = 0, /* 1000 / 100 / 3000 ms */
    OL_TIMING_LAN,         /* one site: 300 / 50 / 600 ms */
    OL_TIMING_WAN,         /* sites up to ~100 ms apart: 400 / 100 / 750 ms */
};
#define OL_TIMING_SET_ELECTION 1u
#define OL_TIMING_SET_HEARTBEAT 2u
#define OL_TIMING_SET_FAILOVER 4u

struct ol__config {
    /* [node] */
    uint64_t node_id;
    char node_name[OL_NODE_NAME_MAX + 1];
    char data_dir[PATH_MAX];
    char plugin_dir[PATH_MAX]; /* "" : search the defaults */
    int log_level;
    int log_format;            /* OL_LOG_TEXT or OL_LOG_JSON */
    uint32_t agent_log_lines;  /* lines kept per agent; 0: none */
    char labels[OL_LABELS_MAX + 1];
    uint32_t stop_timeout_ms;  /* a stop signal ends the node within it */
    /* [checkpoint] */
    uint32_t every_steps;
    uint32_t every_ms;
    uint32_t retain;
    /* [cluster] */
    int cluster;               /* a [cluster] section is present */
    char cluster_name[OL_CLUSTER_NAME_MAX + 1];
    char listen[OL_ADDR_MAX];
    uint32_t election_timeout_ms;
    uint32_t heartbeat_timeout_ms;
    uint32_t failover_ms;
    uint32_t clock_drift_pct;  /* clock rates differ by less than this */
    int timing;                /* enum ol_timing: a named profile */
    unsigned timing_set;       /* OL_TIMING_SET_*: keys given explicitly */
    uint32_t snapshot_threshold;
    uint32_t snapshot_trailing;
    uint32_t snapshot_mb;      /* raft log bytes between snapshots, MiB */
    uint32_t segment_mb;       /* raft log segment size, MiB */
    uint32_t moves_in_flight;  /* placements the leader has uncommitted */
    uint32_t feature_level;    /* stay at this level (rolling upgrade);
                                  0: this build's */
    int bootstrap;             /* bootstrap every listed node as a voter */
    int compress_off;          /* compress = off: never offer compression */
    int dial_only;             /* dial_only = true: peers cannot dial it */
    int role;                  /* enum ol__node_role (replication/
                                  placement.h); folded into labels as
                                  role= once the file is read */
    char leader_preference[OL_LABELS_MAX + 1]; /* "k=v,k=v": the labels
                                  a leader should have, best first */
    /* [http] */
    char http_listen[OL_ADDR_MAX];    /* "" : no HTTP endpoint */
    char http_token_file[PATH_MAX];   /* "" : no token (loopback only) */
    int http_loopback;                /* listen is a loopback address */
    /* [agents] */
    struct ol__plugin_cfg agent_defaults;
    uint32_t crash_limit;      /* crashes that quarantine an agent */
    uint32_t crash_window_ms;  /* ... when they fall in this window */
    uint32_t mailbox_max;      /* messages waiting per agent */
    uint32_t mailbox_max_kb;   /* bytes waiting per agent, KiB */
    char host_exe[PATH_MAX];   /* outlast-agent-host; "" : next to outlastd */
    char host_user[64];        /* hosts started as root switch to it */
    /* [plugin.KIND] */
    struct ol__plugin_cfg *plugins;
    uint32_t n_plugins;
    /* [effects], [effects.KIND] */
    struct ol__fx_policy fx_defaults;
    struct ol__fx_policy *fx_kinds;
    uint32_t n_fx_kinds;
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

/* The settings for plugin `kind`: the [agents] defaults with that kind's
 * [plugin.KIND] keys over them. */
void ol__config_plugin(const struct ol__config *c, const char *kind,
                       struct ol__plugin_cfg *out);

/* The retry policy of effect kind `kind`: the [effects] defaults with
 * that kind's [effects.KIND] keys over them. */
void ol__config_fx(const struct ol__config *c, const char *kind,
                   struct ol__fx_policy *out);

/* Does any kind run inside the node? */
int ol__config_any_inproc(const struct ol__config *c);

#endif
