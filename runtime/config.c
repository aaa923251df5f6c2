/*
 * Configuration parsing.  inih calls back once per key; the first problem is
 * recorded and inih reports its line, so every error reads
 * "FILE:LINE: message" and names the key or section at fault.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record/ckpt.h"
#include "record/cmd.h"
#include "replication/transport.h"
#include "base/err.h"
#include "base/json.h"
#include "base/fsutil.h"
#include "base/log.h"

void ol__config_defaults(struct ol__config *c)
{
    memset(c, 0, sizeof *c);
    c->node_id = 1;
    snprintf(c->node_name, sizeof c->node_name, "node-1");
    snprintf(c->data_dir, sizeof c->data_dir, "./outlast-data");
    c->log_level = OL_LOG_INFO;
    c->log_format = OL_LOG_TEXT;
    c->agent_log_lines = 200;
    c->stop_timeout_ms = 20000;
    c->every_steps = 1;
    c->every_ms = 0;
    c->retain = 1000;
    snprintf(c->cluster_name, sizeof c->cluster_name, "outlast");
    c->election_timeout_ms = 1000;
    c->heartbeat_timeout_ms = 100;
    c->failover_ms = 3000;
    c->snapshot_threshold = 8192;
    c->snapshot_trailing = 2048;
    c->segment_mb = 32;
    c->default_agents = 1;
    c->agent_defaults.isolation = OL_ISO_PROCESS;
    c->agent_defaults.step_deadline_ms = 5000;
    c->agent_defaults.memory_mb = 1024;
    c->agent_defaults.work_threads = 4;
    c->crash_limit = 3;
    c->crash_window_ms = 600000;
    c->mailbox_max = 10000;
    c->mailbox_max_kb = 16384;
    snprintf(c->host_user, sizeof c->host_user, "nobody");
}

void ol__config_plugin(const struct ol__config *c, const char *kind,
                       struct ol__plugin_cfg *out)
{
    *out = c->agent_defaults;
    snprintf(out->kind, sizeof out->kind, "%s", kind);
    out->set = 0;
    for (uint32_t i = 0; i < c->n_plugins; i++) {
        const struct ol__plugin_cfg *p = &c->plugins[i];

        if (strcmp(p->kind, kind) != 0)
            continue;
        if (p->set & 1)
            out->isolation = p->isolation;
        if (p->set & 2)
            out->step_deadline_ms = p->step_deadline_ms;
        if (p->set & 4)
            out->memory_mb = p->memory_mb;
        if (p->set & 8)
            out->work_threads = p->work_threads;
        if (p->set & 16)
            out->allow_network = p->allow_network;
    }
}

int ol__config_any_inproc(const struct ol__config *c)
{
    if (c->agent_defaults.isolation == OL_ISO_NODE)
        return 1;
    for (uint32_t i = 0; i < c->n_plugins; i++)
        if ((c->plugins[i].set & 1) && c->plugins[i].isolation == OL_ISO_NODE)
            return 1;
    return 0;
}

void ol__config_free(struct ol__config *c)
{
    for (uint32_t i = 0; i < c->n_agents; i++)
        free(c->agents[i].config_json);
    free(c->agents);
    c->agents = NULL;
    c->n_agents = 0;
    free(c->plugins);
    c->plugins = NULL;
    c->n_plugins = 0;
}

/* A key or section seen so far, to report repeats with both lines. */
struct seen {
    char name[OL_CONFIG_NAME_MAX + 1]; /* "section" or "section\nkey" */
    int line;
};

struct parse {
    struct ol__config *c;
    int named; /* [node] name was given */
    char err[200]; /* first problem; inih supplies the line */
    int err_line;  /* a problem found by the reader, at this line */
    /* The file, fed to inih one line per call (feed()). */
    const char *pos, *end;
    int line;
    char section[OL_CONFIG_NAME_MAX + 1];
    struct seen *seen;
    size_t n_seen, cap_seen;
    /* Values of lines too long for inih's line buffer, by slot. */
    char **longv;
    size_t n_longv;
};

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

static int cluster_key(struct parse *p, const char *name, const char *value)
{
    struct ol__config *c = p->c;

    STR("name", cluster_name)
    if (strcmp(name, "listen") == 0 && !address_ok(value))
        return fail(p, "'%s' must be host:port with a port from 1 to 65535 "
                       "([v6]:port for IPv6), not '%s'",
                    name, value);
    STR("listen", listen)
    U32("election_timeout_ms", 50, 600000, election_timeout_ms)
    U32("heartbeat_timeout_ms", 10, 60000, heartbeat_timeout_ms)
    U32("failover_ms", 100, 3600000, failover_ms)
    U32("snapshot_threshold", 16, 100000000, snapshot_threshold)
    U32("snapshot_trailing", 0, 100000000, snapshot_trailing)
    U32("segment_mb", 1, 1024, segment_mb)
    U32("feature_level", 1, OL_FEATURE_LEVEL, feature_level)
    if (strcmp(name, "bootstrap") == 0) {
        if (parse_bool(value, &c->bootstrap) != 0)
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

/* Is the host part of "host:port" a loopback address?  Names other than
 * "localhost" count as not loopback: what they resolve to can change. */
static int loopback_host(const char *listen, int *ok_syntax)
{
    char host[OL_ADDR_MAX];
    const char *colon = strrchr(listen, ':');
    struct in6_addr a6;
    struct in_addr a4;
    size_t n;
    char *end;
    long port;

    *ok_syntax = 0;
    if (colon == NULL || colon == listen)
        return 0;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
        return 0;
    n = (size_t)(colon - listen);
    if (listen[0] == '[') {
        if (n < 3 || listen[n - 1] != ']')
            return 0;
        memcpy(host, listen + 1, n - 2);
        host[n - 2] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return 0;
        *ok_syntax = 1;
        return IN6_IS_ADDR_LOOPBACK(&a6);
    }
    memcpy(host, listen, n);
    host[n] = '\0';
    if (strchr(host, ':'))
        return 0; /* an IPv6 address needs brackets */
    *ok_syntax = 1;
    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return 0;
}

static struct ol__config_agent *agent_for(struct parse *p, const char *aname)
{
    struct ol__config *c = p->c;
    struct ol__config_agent *a;

    for (uint32_t i = 0; i < c->n_agents; i++)
        if (strcmp(c->agents[i].name, aname) == 0)
            return &c->agents[i];
    if (c->n_agents == OL_CONFIG_MAX_AGENTS)
        return NULL;
    a = realloc(c->agents, (c->n_agents + 1) * sizeof *a);
    if (a == NULL)
        return NULL;
    c->agents = a;
    a = &c->agents[c->n_agents++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", aname);
    return a;
}

static int agent_key(struct parse *p, const char *aname, const char *name,
                     const char *value)
{
    struct ol__config_agent *a;

    if (!ol__name_valid(aname))
        return fail(p, "section [agent.%s]: '%s' is not a valid agent name "
                       "(1-64 of A-Z a-z 0-9 . _ -)",
                    aname, aname);
    a = agent_for(p, aname);
    if (a == NULL)
        return fail(p, "too many agents (limit %s)%s", "1024", "");
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
    return fail(p, "unknown key '%s' in section [agent.%s]", name, aname);
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
    if (strcmp(name, "step_deadline_ms") == 0) {
        if (parse_u32(value, 10, 3600000, &v) != 0)
            return fail(p, "'%s' must be a whole number from 10 to 3600000, "
                           "not '%s'",
                        name, value);
        pc->step_deadline_ms = v;
        pc->set |= 2;
        return 1;
    }
    if (strcmp(name, "memory_mb") == 0) {
        if (parse_u32(value, 0, 1048576, &v) != 0 || (v && v < 16))
            return fail(p, "'%s' must be 0 (no limit) or a whole number "
                           "from 16 to 1048576, not '%s'",
                        name, value);
        pc->memory_mb = v;
        pc->set |= 4;
        return 1;
    }
    if (strcmp(name, "work_threads") == 0) {
        if (parse_u32(value, 1, 64, &v) != 0)
            return fail(p, "'%s' must be a whole number from 1 to 64, not "
                           "'%s'",
                        name, value);
        pc->work_threads = v;
        pc->set |= 8;
        return 1;
    }
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
        if (c->n_plugins == OL_CONFIG_MAX_AGENTS)
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
    return fail(p, "unknown key '%s' in section [peer.%s]", name, idstr);
}

/* Record `name` (a section, or "section\nkey"); a repeat is an error. */
static int note_seen(struct parse *p, const char *name, const char *what)
{
    struct seen *v;

    for (size_t i = 0; i < p->n_seen; i++) {
        if (strcmp(p->seen[i].name, name) != 0)
            continue;
        snprintf(p->err, sizeof p->err, "%s is given twice (lines %d and %d)",
                 what, p->seen[i].line, p->line);
        return -1;
    }
    if (p->n_seen == p->cap_seen) {
        size_t cap = p->cap_seen ? p->cap_seen * 2 : 32;

        v = realloc(p->seen, cap * sizeof *v);
        if (v == NULL) {
            snprintf(p->err, sizeof p->err, "out of memory");
            return -1;
        }
        p->seen = v;
        p->cap_seen = cap;
    }
    v = &p->seen[p->n_seen++];
    snprintf(v->name, sizeof v->name, "%s", name);
    v->line = p->line;
    return 0;
}

static int section_known(const char *s)
{
    return strcmp(s, "node") == 0 || strcmp(s, "checkpoint") == 0 ||
           strcmp(s, "cluster") == 0 || strcmp(s, "http") == 0 ||
           strcmp(s, "agents") == 0 || strncmp(s, "agent.", 6) == 0 ||
           strncmp(s, "plugin.", 7) == 0 || strncmp(s, "peer.", 5) == 0;
}

/* A value as inih would have it: leading blanks, an inline comment (';'
 * after a blank) and trailing blanks removed. */
static char *value_trim(char *v)
{
    char *e;

    while (*v == ' ' || *v == '\t')
        v++;
    for (e = v; *e; e++)
        if (*e == ';' && e > v && (e[-1] == ' ' || e[-1] == '\t')) {
            *e = '\0';
            break;
        }
    e = v + strlen(v);
    while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return v;
}

#define LONG_MARK '\x01' /* "<mark><slot>" stands for a long value */

static int handler(void *user, const char *section, const char *name,
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
        value = value_trim(p->longv[slot]);
    }
    if (section[0] == '\0')
        return fail(p, "key '%s' is outside any [section]%s", name, "");
    snprintf(key, sizeof key, "%s\n%s", section, name);
    snprintf(what, sizeof what, "key '%s' in [%s]", name, section);
    if (note_seen(p, key, what) != 0)
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
    return fail(p, "unknown section [%s]%s", section, "");
}

/* A problem the reader found on the current line: parsing stops there. */
static char *feed_fail(struct parse *p, const char *fmt, const char *a)
{
    snprintf(p->err, sizeof p->err, fmt, a);
    p->err_line = p->line;
    return NULL;
}

/* A section header line (without its leading blanks): check it, note it,
 * and hand inih the bare "[name]". */
static char *feed_section(struct parse *p, const char *s, size_t n,
                          char *out, int cap)
{
    const char *close = memchr(s, ']', n), *rest;
    char name[OL_CONFIG_NAME_MAX + 1], what[OL_CONFIG_NAME_MAX + 16];
    char text[64];
    size_t len;

    /* The line as it may be quoted in a message. */
    snprintf(text, sizeof text, "%.*s%s", n > 48 ? 48 : (int)n, s,
             n > 48 ? "..." : "");
    if (close == NULL)
        return feed_fail(p, "section header '%s' has no closing ']'", text);
    len = (size_t)(close - s - 1);
    if (len == 0)
        return feed_fail(p, "empty section name '[]'%s", "");
    if (len > OL_CONFIG_NAME_MAX / 2)
        return feed_fail(p, "section name in '%s' is too long", text);
    for (rest = close + 1; rest < s + n; rest++) {
        if (*rest == ';' || *rest == '#')
            break;
        if (*rest != ' ' && *rest != '\t' && *rest != '\r')
            return feed_fail(p, "text after the section header '%s'",
                             text);
    }
    memcpy(name, s + 1, len);
    name[len] = '\0';
    if (memchr(name, '\n', len) || memchr(name, '[', len))
        return feed_fail(p, "malformed section header '%s'", text);
    if (!section_known(name)) {
        snprintf(p->err, sizeof p->err,
                 "unknown section [%s] (expected node, checkpoint, cluster, "
                 "http, agents, agent.NAME, plugin.KIND or peer.ID)",
                 name);
        p->err_line = p->line;
        return NULL;
    }
    snprintf(what, sizeof what, "section [%s]", name);
    if (note_seen(p, name, what) != 0) {
        p->err_line = p->line;
        return NULL;
    }
    snprintf(p->section, sizeof p->section, "%s", name);
    snprintf(out, (size_t)cap, "[%s]\n", name);
    return out;
}

/* Keep the value of a line too long for inih's buffer; inih gets
 * "key = <mark><slot>" and the handler swaps the value back in. */
static char *feed_long(struct parse *p, const char *s, size_t n, char *out,
                       int cap)
{
    const char *eq = s;
    char **v;
    size_t klen;

    while (eq < s + n && *eq != '=' && *eq != ':')
        eq++;
    klen = (size_t)(eq - s);
    while (klen > 0 && (s[klen - 1] == ' ' || s[klen - 1] == '\t'))
        klen--;
    if (eq == s + n || klen == 0)
        return feed_fail(p, "syntax error (expected [section] or key = "
                            "value)%s", "");
    if (klen > 64) {
        char key[48];

        snprintf(key, sizeof key, "%.40s...", s);
        return feed_fail(p, "key '%s' is too long (at most 64 bytes)", key);
    }
    v = realloc(p->longv, (p->n_longv + 1) * sizeof *v);
    if (v == NULL)
        return feed_fail(p, "out of memory%s", "");
    p->longv = v;
    v[p->n_longv] = strndup(eq + 1, (size_t)(s + n - eq - 1));
    if (v[p->n_longv] == NULL)
        return feed_fail(p, "out of memory%s", "");
    snprintf(out, (size_t)cap, "%.*s = %c%zu\n", (int)klen, s, LONG_MARK,
             p->n_longv);
    p->n_longv++;
    return out;
}

/* Does the line hold "key = ..." or "key: ..." with a key? */
static int key_line(const char *s, size_t n)
{
    size_t k = 0;

    while (k < n && s[k] != '=' && s[k] != ':')
        k++;
    if (k == n)
        return 0;
    while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
        k--;
    return k > 0;
}

/* inih's reader: one whole line of the file per call, however long.  Lines
 * lose their leading blanks (so an indented key is a key, never inih's
 * continuation of the previous value). */
static char *feed(char *out, int cap, void *stream)
{
    struct parse *p = stream;
    const char *s, *nl;
    size_t n;

    if (p->err_line || p->err[0] || p->pos >= p->end)
        return NULL;
    nl = memchr(p->pos, '\n', (size_t)(p->end - p->pos));
    s = p->pos;
    n = nl ? (size_t)(nl - s) : (size_t)(p->end - s);
    p->pos = nl ? nl + 1 : p->end;
    p->line++;
    if (memchr(s, '\0', n))
        return feed_fail(p, "the line holds a NUL byte%s", "");
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && s[n - 1] == '\r')
        n--;
    if (n == 0 || *s == ';' || *s == '#') {
        snprintf(out, (size_t)cap, "\n");
        return out;
    }
    if (*s == '[')
        return feed_section(p, s, n, out, cap);
    if (!key_line(s, n))
        return feed_fail(p, "syntax error (expected [section] or key = "
                            "value)%s", "");
    if (n + 2 > (size_t)cap)
        return feed_long(p, s, n, out, cap);
    memcpy(out, s, n);
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

static int check(struct ol__config *c, int named, char *err, size_t cap)
{
    for (uint32_t i = 0; i < c->n_agents; i++)
        if (c->agents[i].kind[0] == '\0') {
            snprintf(err, cap, "[agent.%s] has no 'kind'", c->agents[i].name);
            return -1;
        }
    for (uint32_t i = 0; i < c->n_peers; i++) {
        if (c->peers[i].address[0] == '\0' || c->peers[i].pubkey[0] == '\0') {
            snprintf(err, cap, "[peer.%llu] needs both 'address' and 'pubkey'",
                     (unsigned long long)c->peers[i].id);
            return -1;
        }
        if (c->peers[i].id == c->node_id) {
            snprintf(err, cap,
                     "[peer.%llu] has this node's own id; list only the "
                     "other nodes",
                     (unsigned long long)c->peers[i].id);
            return -1;
        }
    }
    if (c->cluster && c->listen[0] == '\0') {
        snprintf(err, cap, "[cluster] needs 'listen' (host:port)");
        return -1;
    }
    if (c->cluster && c->heartbeat_timeout_ms * 2 > c->election_timeout_ms) {
        snprintf(err, cap,
                 "[cluster] heartbeat_timeout_ms must be at most half of "
                 "election_timeout_ms");
        return -1;
    }
    /* A lease lasts 2/5 of failover_ms and is renewed once a heartbeat: it
     * must outlast two of them, or a node loses it between two answers. */
    if (c->cluster && c->failover_ms < 5 * c->heartbeat_timeout_ms) {
        snprintf(err, cap,
                 "[cluster] failover_ms (%u) must be at least 5 x "
                 "heartbeat_timeout_ms (%u): a node's lease, 2/5 of "
                 "failover_ms, must span two heartbeats",
                 c->failover_ms, c->heartbeat_timeout_ms);
        return -1;
    }
    if (c->http_listen[0]) {
        int syntax;

        c->http_loopback = loopback_host(c->http_listen, &syntax);
        if (!syntax) {
            snprintf(err, cap,
                     "[http] listen must be host:port (an IPv6 address in "
                     "brackets, port 0-65535), not '%.60s'",
                     c->http_listen);
            return -1;
        }
        if (!c->http_loopback && c->http_token_file[0] == '\0') {
            snprintf(err, cap,
                     "[http] listen '%.60s' is not a loopback address: set "
                     "token_file (a file of mode 0600 holding the access "
                     "token) or listen on 127.0.0.1",
                     c->http_listen);
            return -1;
        }
    } else if (c->http_token_file[0]) {
        snprintf(err, cap, "[http] token_file is set but listen is not");
        return -1;
    }
    if (!named)
        snprintf(c->node_name, sizeof c->node_name, "node-%llu",
                 (unsigned long long)c->node_id);
    return 0;
}

static void parse_free(struct parse *p)
{
    for (size_t i = 0; i < p->n_longv; i++)
        free(p->longv[i]);
    free(p->longv);
    free(p->seen);
}

int ol__config_load(struct ol__config *c, const char *path, char *errmsg)
{
    struct parse p;
    char err[200], rerr[OL_ERRMSG_SIZE];
    char *text;
    size_t len;
    int line, rv;

    c->default_agents = 0;
    memset(&p, 0, sizeof p);
    p.c = c;
    rv = ol__read_file(path, OL_CONFIG_FILE_MAX, &text, &len, rerr);
    if (rv != 0) {
        if (rv == OL_ETOOBIG)
            ol__errf(errmsg, "config '%s' is larger than %u bytes", path,
                     OL_CONFIG_FILE_MAX);
        else
            ol__errf(errmsg, "config %s", rerr);
        return OL_ECONFIG;
    }
    p.pos = text;
    p.end = text + len;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        p.pos += 3; /* a UTF-8 byte order mark */
    line = ini_parse_stream(feed, &p, handler, &p);
    free(text);
    if (p.err_line) {
        ol__errf(errmsg, "%s:%d: %s", path, p.err_line, p.err);
        parse_free(&p);
        return OL_ECONFIG;
    }
    parse_free(&p);
    if (line != 0) {
        if (line < 0)
            ol__errf(errmsg, "config '%s': cannot be read", path);
        else if (p.err[0])
            ol__errf(errmsg, "%s:%d: %s", path, line, p.err);
        else
            ol__errf(errmsg, "%s:%d: syntax error (expected [section] or "
                             "key = value)", path, line);
        return OL_ECONFIG;
    }
    if (check(c, p.named, err, sizeof err) != 0) {
        ol__errf(errmsg, "%s: %s", path, err);
        return OL_ECONFIG;
    }
    return 0;
}
