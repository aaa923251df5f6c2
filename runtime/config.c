/*
 * Configuration: the defaults, loading a file (read by config_read.c,
 * its keys taken by config_keys.c) and the checks across keys once the
 * whole file is read, so every error reads "FILE:LINE: message" or
 * "FILE: message" and names the key or section at fault.
 */
#include "config.h"
#include "config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "replication/lease.h"

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
    c->clock_drift_pct = 10;
    c->snapshot_threshold = 8192;
    c->snapshot_trailing = 2048;
    c->snapshot_mb = 192;
    c->segment_mb = 32;
    c->moves_in_flight = 16384;
    c->default_agents = 1;
    c->agent_defaults.isolation = OL_ISO_PROCESS;
    c->agent_defaults.step_deadline_ms = 5000;
    c->agent_defaults.memory_mb = 1024;
    c->agent_defaults.work_threads = 4;
    c->crash_limit = 3;
    c->fx_defaults.attempts = 10;
    c->fx_defaults.backoff_ms = 200;
    c->fx_defaults.backoff_max_ms = 10000;
    c->fx_defaults.timeout_ms = 10000;
    c->fx_defaults.deadline_ms = 0;
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

void ol__config_fx(const struct ol__config *c, const char *kind,
                   struct ol__fx_policy *out)
{
    *out = c->fx_defaults;
    snprintf(out->kind, sizeof out->kind, "%s", kind);
    out->set = 0;
    for (uint32_t i = 0; i < c->n_fx_kinds; i++) {
        const struct ol__fx_policy *p = &c->fx_kinds[i];

        if (strcmp(p->kind, kind) != 0)
            continue;
        if (p->set & 1)
            out->attempts = p->attempts;
        if (p->set & 2)
            out->backoff_ms = p->backoff_ms;
        if (p->set & 4)
            out->backoff_max_ms = p->backoff_max_ms;
        if (p->set & 8)
            out->timeout_ms = p->timeout_ms;
        if (p->set & 16)
            out->deadline_ms = p->deadline_ms;
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
    free(c->fx_kinds);
    c->fx_kinds = NULL;
    c->n_fx_kinds = 0;
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

/* A named timing profile sets the times not given explicitly.  The
 * figures behind each are in bench/RESULTS.md ("Over a WAN"). */
static void apply_timing(struct ol__config *c)
{
    static const uint32_t t[3][3] = {
        {1000, 100, 3000}, /* default */
        {300, 50, 600},    /* lan */
        {400, 100, 750},   /* wan */
    };
    const uint32_t *v = t[c->timing];

    if (!(c->timing_set & OL_TIMING_SET_ELECTION))
        c->election_timeout_ms = v[0];
    if (!(c->timing_set & OL_TIMING_SET_HEARTBEAT))
        c->heartbeat_timeout_ms = v[1];
    if (!(c->timing_set & OL_TIMING_SET_FAILOVER))
        c->failover_ms = v[2];
}

static int check(struct ol__config *c, int named, char *err, size_t cap)
{
    if (ol__config_fold_placement(c, err, cap) != 0)
        return -1;
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
    apply_timing(c);
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
    /* A lease is renewed once a heartbeat: it must outlast two of them, or
     * a node loses it between two answers. */
    if (c->cluster && ol__cluster_lease_ms(c->failover_ms, c->clock_drift_pct) <
                          2 * c->heartbeat_timeout_ms) {
        snprintf(err, cap,
                 "[cluster] failover_ms (%u) is too short for "
                 "heartbeat_timeout_ms (%u): a node's lease (%u ms: "
                 "failover_ms x (100 - clock_drift_pct) / (2 x (100 + "
                 "clock_drift_pct))) must span two heartbeats",
                 c->failover_ms, c->heartbeat_timeout_ms,
                 ol__cluster_lease_ms(c->failover_ms, c->clock_drift_pct));
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
    ol__map_close(&p->seen_by_name);
    ol__map_close(&p->agent_by_name);
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
    ol__map_init(&p.seen_by_name);
    ol__map_init(&p.agent_by_name);
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
    line = ini_parse_stream(ol__config_feed, &p, ol__config_key, &p);
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
