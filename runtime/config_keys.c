/*
 * The config's keys: one function per section checks and stores each
 * key inih hands over; the first problem is recorded, and inih reports
 * its line.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"
#include "base/log.h"
#include "record/ckpt.h"
#include "record/cmd.h"
#include "replication/cluster.h"
#include "replication/transport.h"

static int fail(struct parse *p, const char *fmt, const char *a,
                const char *b)
{
    if (p->err[0] == '\0')
        snprintf(p->err, sizeof p->err, fmt, a, b);
    return 0;
}

static int parse_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long long n;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno || end == v || *end != '\0' || v[0] == '-' || n < lo || n > hi)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

static int parse_u64(const char *v, uint64_t *out)
{
    char *end;
    unsigned long long n;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno || end == v || *end != '\0' || v[0] == '-' || n == 0)
        return -1;
    *out = n;
    return 0;
}

static int copy(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);

    if (n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

#define U32(key, lo, hi, field)                                            \
    if (strcmp(name, key) == 0) {                                          \
        if (parse_u32(value, lo, hi, &c->field) != 0)                      \
            return fail(p, "'%s' must be a whole number from " #lo         \
                           " to " #hi ", not '%s'",                        \
                        key, value);                                       \
        return 1;                                                          \
    }

#define STR(key, field)                                                    \
    if (strcmp(name, key) == 0) {                                          \
        if (copy(c->field, sizeof c->field, value) != 0)                   \
            return fail(p, "'%s' is too long ('%.40s...')", key, value);   \
        return 1;                                                          \
    }

static int address_ok(const char *v)
{
    char host[OL_HOST_MAX], port[OL_PORT_MAX];

    return ol__addr_split(v, host, port) == 0 && strcmp(port, "0") != 0;
}

static int node_key(struct parse *p, const char *name, const char *value)
{
    struct ol__config *c = p->c;

    if (strcmp(name, "id") == 0) {
        if (parse_u64(value, &c->node_id) != 0)
            return fail(p, "'%s' must be a positive whole number, not '%s'",
                        name, value);
        return 1;
    }
    if (strcmp(name, "log_level") == 0) {
        int l = ol_log_level_parse(value);

        if (l < 0)
            return fail(p, "'%s' must be error, warn, info, debug or trace, "
                           "not '%s'",
                        name, value);
        c->log_level = l;
        return 1;
    }
    if (strcmp(name, "log_format") == 0) {
        int f = ol_log_format_parse(value);

        if (f < 0)
            return fail(p, "'%s' must be text or json, not '%s'", name,
                        value);
        c->log_format = f;
        return 1;
    }
    U32("agent_log_lines", 0, 100000, agent_log_lines)
    U32("stop_timeout_ms", 1000, 3600000, stop_timeout_ms)
    if (strcmp(name, "name") == 0)
        p->named = 1;
    STR("name", node_name)
    STR("data_dir", data_dir)
    STR("plugin_dir", plugin_dir)
    STR("labels", labels)
    return fail(p, "unknown key '%s' in section [%s]", name, "node");
}

static int checkpoint_key(struct parse *p, const char *name,
                          const char *value)
{
    struct ol__config *c = p->c;

    U32("every_steps", 1, 1000000, every_steps)
    U32("every_ms", 0, 3600000, every_ms)
    U32("retain", 0, 100000000, retain)
    return fail(p, "unknown key '%s' in section [%s]", name, "checkpoint");
}

static int parse_bool(const char *v, int *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
        strcmp(v, "1") == 0)
        *out = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 ||
             strcmp(v, "0") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

/* [cluster] leader_preference: checked as the cluster will read it. */
static int leader_pref_key(struct parse *p, const char *value)
{
    struct ol__lead_pref lp;
    char why[OL_ERRMSG_SIZE];

    if (ol__lead_pref_parse(value, &lp, why) != 0)
        return fail(p, "'leader_preference' must be label matches in order "
                       "of preference, like 'cloud=aws,cloud=gcp', not "
                       "'%s': %s",
                    value, why);
    snprintf(p->c->leader_preference, sizeof p->c->leader_preference, "%s",
             value);
    return 1;
}

/* `timing`, and which of the times it sets were given explicitly.
 * Returns -1 for any other key, else what a key handler returns. */
static int timing_key(struct parse *p, const char *name, const char *value)
{
    static const char *const names[] = {"default", "lan", "wan"};
    struct ol__config *c = p->c;

    if (strcmp(name, "election_timeout_ms") == 0)
        c->timing_set |= OL_TIMING_SET_ELECTION;
    else if (strcmp(name, "heartbeat_timeout_ms") == 0)
        c->timing_set |= OL_TIMING_SET_HEARTBEAT;
    else if (strcmp(name, "failover_ms") == 0)
        c->timing_set |= OL_TIMING_SET_FAILOVER;
    if (strcmp(name, "timing") != 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(value, names[i]) == 0) {
            c->timing = i;
            return 1;
        }
    return fail(p, "'%s' must be lan, wan or default, not '%s'", name,
                value);
}

static int cluster_key(struct parse *p, const char *name, const char *value)
{
    struct ol__config *c = p->c;
    int rv;

    if (strcmp(name, "leader_preference") == 0)
        return leader_pref_key(p, value);
    STR("name", cluster_name)
    if (strcmp(name, "listen") == 0 && !address_ok(value))
        return fail(p, "'%s' must be host:port with a port from 1 to 65535 "
                       "([v6]:port for IPv6), not '%s'",
                    name, value);
    STR("listen", listen)
    if ((rv = timing_key(p, name, value)) >= 0)
        return rv;
    U32("election_timeout_ms", 50, 600000, election_timeout_ms)
    U32("heartbeat_timeout_ms", 10, 60000, heartbeat_timeout_ms)
    U32("failover_ms", 100, 3600000, failover_ms)
    U32("clock_drift_pct", 1, 20, clock_drift_pct)
    U32("snapshot_threshold", 16, 100000000, snapshot_threshold)
    U32("snapshot_trailing", 0, 100000000, snapshot_trailing)
    U32("snapshot_mb", 1, 200, snapshot_mb)
    U32("segment_mb", 1, 1024, segment_mb)
    U32("moves_in_flight", 16, 65536, moves_in_flight)
    U32("feature_level", 1, OL_FEATURE_LEVEL, feature_level)
    if (strcmp(name, "compress") == 0) {
        if (strcmp(value, "auto") != 0 && strcmp(value, "off") != 0)
            return fail(p, "'%s' must be auto or off, not '%s'", name,
                        value);
        c->compress_off = strcmp(value, "off") == 0;
        return 1;
    }
    if (strcmp(name, "role") == 0)
        return ol__config_role_key(p, &c->role, "[cluster]", value);
    if (strcmp(name, "bootstrap") == 0 || strcmp(name, "dial_only") == 0) {
        if (parse_bool(value, name[0] == 'b' ? &c->bootstrap : &c->dial_only))
            return fail(p, "'%s' must be true or false, not '%s'", name,
                        value);
        return 1;
    }
    return fail(p, "unknown key '%s' in section [%s]", name, "cluster");
}

static int http_key(struct parse *p, const char *name, const char *value)
{
    struct ol__config *c = p->c;

    STR("listen", http_listen)
    STR("token_file", http_token_file)
    return fail(p, "unknown key '%s' in section [%s]", name, "http");
}

static struct ol__config_agent *agent_for(struct parse *p, const char *aname)
{
    struct ol__config *c = p->c;
    struct ol__config_agent *a;
    uintptr_t at;
    uint32_t cap;

    if (p->cap_agents < c->n_agents) { /* agents from before this file */
        p->cap_agents = c->n_agents;
        if (ol__config_index(&p->agent_by_name, c->agents, sizeof *a,
                             c->n_agents) != 0)
            return NULL;
    }
    at = (uintptr_t)ol__map_get(&p->agent_by_name, aname);
    if (at)
        return &c->agents[at - 1];
    if (c->n_agents == p->cap_agents) {
        cap = p->cap_agents ? p->cap_agents * 2 : 64;
        a = realloc(c->agents, cap * sizeof *a);
        if (a == NULL)
            return NULL;
        c->agents = a;
        p->cap_agents = cap;
        if (ol__config_index(&p->agent_by_name, c->agents, sizeof *a,
                             c->n_agents) != 0)
            return NULL;
    }
    a = &c->agents[c->n_agents++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", aname);
    if (ol__map_put(&p->agent_by_name, a->name,
                    (void *)(uintptr_t)c->n_agents) != 0)
        return NULL;
    return a;
}

static int agent_key(struct parse *p, const char *aname, const char *name,
                     const char *value)
{
    struct ol__config_agent *a;
    int handled;

    if (!ol__name_valid(aname))
        return fail(p, "section [agent.%s]: '%s' is not a valid agent name "
                       "(1-64 of A-Z a-z 0-9 . _ -)",
                    aname, aname);
    a = agent_for(p, aname);
    if (a == NULL)
        return fail(p, "out of memory reading [agent.%s]%s", aname, "");
    if (strcmp(name, "kind") == 0) {
        if (!ol__name_valid(value))
            return fail(p, "'kind' must name a plugin, not '%s'%s", value,
                        "");
        snprintf(a->kind, sizeof a->kind, "%s", value);
        return 1;
    }
    if (strcmp(name, "config") == 0) {
        struct ol__buf mp;
        char err[OL_ERRMSG_SIZE];
        int rv, object;

        /* Checked here, so a bad value is a config error with its line
         * rather than a failure once the node is running. */
        ol__buf_init(&mp);
        rv = ol__json_to_msgpack(value, strlen(value), &mp, err);
        object = rv == 0 && mp.len &&
                 ((mp.base[0] & 0xf0) == 0x80 || mp.base[0] == 0xde ||
                  mp.base[0] == 0xdf);
        ol__buf_close(&mp);
        if (rv != 0)
            return fail(p, "[agent.%s] config is not valid JSON: %.150s",
                        aname, err);
        if (!object)
            return fail(p, "[agent.%s] config must be a JSON object ({...}), "
                           "not '%.40s'",
                        aname, value);
        free(a->config_json);
        a->config_json = strdup(value);
        return a->config_json ? 1 : fail(p, "out of memory%s%s", "", "");
    }
    if ((handled = ol__config_affinity_key(p, a, name, value)) >= 0)
        return handled;
    return fail(p, "unknown key '%s' in section [agent.%s]", name, aname);
}

/* A whole-number key of a plugin's settings, `bit` in pc->set. */
static int plugin_u32(struct parse *p, struct ol__plugin_cfg *pc,
                      const char *name, const char *value, uint32_t lo,
                      uint32_t hi, uint32_t *field, int bit)
{
    char fmt[96];

    if (parse_u32(value, lo, hi, field) != 0) {
        snprintf(fmt, sizeof fmt,
                 "'%%s' must be a whole number from %u to %u, not '%%s'", lo,
                 hi);
        return fail(p, fmt, name, value);
    }
    pc->set |= bit;
    return 1;
}

/* Keys [agents] and [plugin.KIND] share; 1 handled, 0 error, -1 not
 * one of them. */
static int plugin_cfg_key(struct parse *p, struct ol__plugin_cfg *pc,
                          const char *section, const char *name,
                          const char *value)
{
    uint32_t v;

    if (strcmp(name, "isolation") == 0) {
        if (strcmp(value, "process") == 0)
            pc->isolation = OL_ISO_PROCESS;
        else if (strcmp(value, "none") == 0)
            pc->isolation = OL_ISO_NODE;
        else
            return fail(p, "'isolation' must be process or none, not '%s'%s",
                        value, "");
        pc->set |= 1;
        return 1;
    }
    if (strcmp(name, "step_deadline_ms") == 0)
        return plugin_u32(p, pc, name, value, 10, 3600000,
                          &pc->step_deadline_ms, 2);
    if (strcmp(name, "memory_mb") == 0) {
        if (parse_u32(value, 0, 1048576, &v) != 0 || (v && v < 16))
            return fail(p, "'%s' must be 0 (no limit) or a whole number "
                           "from 16 to 1048576, not '%s'",
                        name, value);
        pc->memory_mb = v;
        pc->set |= 4;
        return 1;
    }
    if (strcmp(name, "work_threads") == 0)
        return plugin_u32(p, pc, name, value, 1, 64, &pc->work_threads, 8);
    if (strcmp(name, "allow_network") == 0) {
        if (parse_bool(value, &pc->allow_network) != 0)
            return fail(p, "'%s' must be true or false, not '%s'", name,
                        value);
        pc->set |= 16;
        return 1;
    }
    (void)section;
    return -1;
}

static int agents_key(struct parse *p, const char *name, const char *value)
{
    struct ol__config *c = p->c;
    int rv = plugin_cfg_key(p, &c->agent_defaults, "agents", name, value);

    if (rv >= 0)
        return rv;
    U32("crash_limit", 1, 1000, crash_limit)
    U32("crash_window_ms", 1000, 604800000, crash_window_ms)
    U32("mailbox_max", 16, 10000000, mailbox_max)
    U32("mailbox_max_kb", 64, 16777216, mailbox_max_kb)
    STR("host", host_exe)
    STR("host_user", host_user)
    return fail(p, "unknown key '%s' in section [%s]", name, "agents");
}

static int plugin_key(struct parse *p, const char *kind, const char *name,
                      const char *value)
{
    struct ol__config *c = p->c;
    struct ol__plugin_cfg *pc = NULL;
    int rv;

    if (!ol__name_valid(kind))
        return fail(p, "section [plugin.%s]: '%s' is not a valid plugin kind",
                    kind, kind);
    for (uint32_t i = 0; i < c->n_plugins; i++)
        if (strcmp(c->plugins[i].kind, kind) == 0)
            pc = &c->plugins[i];
    if (pc == NULL) {
        if (c->n_plugins == OL_CONFIG_MAX_PLUGINS)
            return fail(p, "too many [plugin.*] sections (limit %s)%s",
                        "1024", "");
        pc = realloc(c->plugins, (c->n_plugins + 1) * sizeof *pc);
        if (pc == NULL)
            return fail(p, "out of memory%s%s", "", "");
        c->plugins = pc;
        pc = &c->plugins[c->n_plugins++];
        memset(pc, 0, sizeof *pc);
        snprintf(pc->kind, sizeof pc->kind, "%s", kind);
    }
    rv = plugin_cfg_key(p, pc, kind, name, value);
    if (rv >= 0)
        return rv;
    return fail(p, "unknown key '%s' in section [plugin.%s]", name, kind);
}

/* A key of [effects] or [effects.KIND]. */
static int fx_policy_key(struct parse *p, struct ol__fx_policy *fp,
                         const char *name, const char *value)
{
    static const struct {
        const char *name;
        uint32_t lo, hi;
        size_t off;
    } keys[] = {
        {"attempts", 1, 1000, offsetof(struct ol__fx_policy, attempts)},
        {"backoff_ms", 1, 3600000, offsetof(struct ol__fx_policy, backoff_ms)},
        {"backoff_max_ms", 1, 3600000,
         offsetof(struct ol__fx_policy, backoff_max_ms)},
        {"timeout_ms", 10, 3600000, offsetof(struct ol__fx_policy, timeout_ms)},
        {"deadline_ms", 0, 604800000,
         offsetof(struct ol__fx_policy, deadline_ms)},
    };
    char fmt[96];

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(name, keys[i].name) != 0)
            continue;
        if (parse_u32(value, keys[i].lo, keys[i].hi,
                      (uint32_t *)((char *)fp + keys[i].off)) != 0) {
            snprintf(fmt, sizeof fmt,
                     "'%%s' must be a whole number from %u to %u, not '%%s'",
                     keys[i].lo, keys[i].hi);
            return fail(p, fmt, name, value);
        }
        fp->set |= 1u << i;
        return 1;
    }
    return fail(p, "unknown key '%s' in an effects section (expected "
                   "attempts, backoff_ms, backoff_max_ms, timeout_ms or "
                   "deadline_ms)%s",
                name, "");
}

static int fx_key(struct parse *p, const char *kind, const char *name,
                  const char *value)
{
    struct ol__config *c = p->c;
    struct ol__fx_policy *fp = NULL;

    if (kind == NULL)
        return fx_policy_key(p, &c->fx_defaults, name, value);
    if (!ol__kind_valid(kind))
        return fail(p, "section [effects.%s]: '%s' is not a valid effect "
                       "kind (1 to 32 of a-z, 0-9, '.', '_', '-')",
                    kind, kind);
    for (uint32_t i = 0; i < c->n_fx_kinds; i++)
        if (strcmp(c->fx_kinds[i].kind, kind) == 0)
            fp = &c->fx_kinds[i];
    if (fp == NULL) {
        if (c->n_fx_kinds == 256)
            return fail(p, "too many [effects.*] sections (limit %s)%s",
                        "256", "");
        fp = realloc(c->fx_kinds, (c->n_fx_kinds + 1) * sizeof *fp);
        if (fp == NULL)
            return fail(p, "out of memory%s%s", "", "");
        c->fx_kinds = fp;
        fp = &c->fx_kinds[c->n_fx_kinds++];
        memset(fp, 0, sizeof *fp);
        snprintf(fp->kind, sizeof fp->kind, "%s", kind);
    }
    return fx_policy_key(p, fp, name, value);
}

static int peer_key(struct parse *p, const char *idstr, const char *name,
                    const char *value)
{
    struct ol__config *c = p->c;
    struct ol__config_peer *peer = NULL;
    uint64_t id;

    if (parse_u64(idstr, &id) != 0)
        return fail(p, "section [peer.%s]: the peer id must be a positive "
                       "whole number%s",
                    idstr, "");
    for (uint32_t i = 0; i < c->n_peers; i++)
        if (c->peers[i].id == id)
            peer = &c->peers[i];
    if (peer == NULL) {
        if (c->n_peers == OL_CONFIG_MAX_PEERS)
            return fail(p, "too many peers (limit %s)%s", "16", "");
        peer = &c->peers[c->n_peers++];
        memset(peer, 0, sizeof *peer);
        peer->id = id;
    }
    if (strcmp(name, "address") == 0) {
        if (!address_ok(value))
            return fail(p, "'address' must be host:port with a port from 1 "
                           "to 65535, not '%s'%s",
                        value, "");
        if (copy(peer->address, sizeof peer->address, value) != 0)
            return fail(p, "'%s' is too long%s", name, "");
        return 1;
    }
    if (strcmp(name, "pubkey") == 0) {
        uint8_t pk[OL_PK_SIZE];

        if (ol__pk_parse(value, pk) != 0)
            return fail(p, "'pubkey' must be 64 hex digits (from outlast "
                           "keygen), not '%.20s%s'",
                        value, strlen(value) > 20 ? "...'" : "'");
        snprintf(peer->pubkey, sizeof peer->pubkey, "%s", value);
        return 1;
    }
    if (strcmp(name, "labels") == 0) {
        if (copy(peer->labels, sizeof peer->labels, value) != 0)
            return fail(p, "'%s' is too long%s", name, "");
        return 1;
    }
    if (strcmp(name, "role") == 0)
        return ol__config_role_key(p, &peer->role, "[peer]", value);
    return fail(p, "unknown key '%s' in section [peer.%s]", name, idstr);
}

int ol__config_key(void *user, const char *section, const char *name,
                   const char *value)
{
    struct parse *p = user;
    char key[OL_CONFIG_NAME_MAX + 1], what[OL_CONFIG_NAME_MAX + 32];

    if (p->err[0])
        return 0;
    if (value[0] == LONG_MARK) {
        size_t slot = strtoul(value + 1, NULL, 10);

        if (slot >= p->n_longv)
            return fail(p, "internal error reading a long line%s%s", "", "");
        value = ol__config_value_trim(p->longv[slot]);
    }
    if (section[0] == '\0')
        return fail(p, "key '%s' is outside any [section]%s", name, "");
    snprintf(key, sizeof key, "%s\n%s", section, name);
    snprintf(what, sizeof what, "key '%s' in [%s]", name, section);
    if (ol__config_seen(p, key, what) != 0)
        return 0;
    if (strcmp(section, "node") == 0)
        return node_key(p, name, value);
    if (strcmp(section, "checkpoint") == 0)
        return checkpoint_key(p, name, value);
    if (strcmp(section, "cluster") == 0) {
        p->c->cluster = 1;
        return cluster_key(p, name, value);
    }
    if (strcmp(section, "http") == 0)
        return http_key(p, name, value);
    if (strncmp(section, "agent.", 6) == 0)
        return agent_key(p, section + 6, name, value);
    if (strncmp(section, "peer.", 5) == 0)
        return peer_key(p, section + 5, name, value);
    if (strcmp(section, "agents") == 0)
        return agents_key(p, name, value);
    if (strncmp(section, "plugin.", 7) == 0)
        return plugin_key(p, section + 7, name, value);
    if (strcmp(section, "effects") == 0)
        return fx_key(p, NULL, name, value);
    if (strncmp(section, "effects.", 8) == 0)
        return fx_key(p, section + 8, name, value);
    return fail(p, "unknown section [%s]%s", section, "");
}
