/*
 * The node-to-node transport's lifecycle: creating it, the roster that
 * decides who may connect, the one listener that serves both channels, and
 * the asynchronous close that waits for every handle.  Connections live in
 * transport_conn.c, the raft side in transport_raft.c and the message
 * channel in transport_msg.c.
 */
#include "transport_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

int ol__addr_split(const char *address, char host[OL_HOST_MAX],
                   char port[OL_PORT_MAX])
{
    const char *h = address, *hend, *p;
    char *end;
    unsigned long v;

    if (address[0] == '[') {
        h = address + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':')
            return OL_EINVAL;
        p = hend + 2;
    } else {
        hend = strchr(address, ':');
        /* A second colon means an IPv6 address without brackets, where the
         * port cannot be told apart from the address. */
        if (hend == NULL || strchr(hend + 1, ':') != NULL)
            return OL_EINVAL;
        p = hend + 1;
    }
    if (hend == h || (size_t)(hend - h) >= OL_HOST_MAX)
        return OL_EINVAL;
    if (*p < '0' || *p > '9' || strlen(p) >= OL_PORT_MAX)
        return OL_EINVAL;
    v = strtoul(p, &end, 10);
    if (*end != '\0' || v > 65535)
        return OL_EINVAL;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    snprintf(port, OL_PORT_MAX, "%lu", v);
    return 0;
}

const struct ol__peer *ol__tr_peer(const struct ol__transport *t,
                                   uint64_t id)
{
    for (size_t i = 0; i < t->n_roster; i++)
        if (t->roster[i].id == id)
            return &t->roster[i];
    return NULL;
}

int ol__transport_create(uv_loop_t *loop,
                         const struct ol__transport_config *cfg,
                         struct ol__transport **out, char *errmsg)
{
    struct ol__transport *t;

    if (cfg->self_id == 0 || cfg->key == NULL || cfg->key->sk == NULL ||
        cfg->cluster == NULL) {
        ol__errf(errmsg, "transport: need a node id, a key and a cluster");
        return OL_EINVAL;
    }
    if (cfg->listen != NULL && strlen(cfg->listen) >= OL_ADDR_MAX) {
        ol__errf(errmsg, "transport: listen address '%.32s...' too long",
                 cfg->listen);
        return OL_EINVAL;
    }
    if (sodium_init() < 0) {
        ol__errf(errmsg, "transport: libsodium failed to initialise");
        return OL_ENOMEM;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        ol__errf(errmsg, "transport: out of memory");
        return OL_ENOMEM;
    }
    t->loop = loop;
    t->self_id = cfg->self_id;
    if (cfg->listen != NULL)
        snprintf(t->listen_addr, sizeof t->listen_addr, "%s", cfg->listen);
    t->key = cfg->key;
    t->hs_self.id = cfg->self_id;
    t->hs_self.key = cfg->key;
    ol__hs_cluster_hash(cfg->cluster, t->hs_self.cluster_hash);
    t->hs_timeout_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms
                                                 : OL_HS_TIMEOUT_DEFAULT;
    t->pump_high = cfg->pump_high_water ? cfg->pump_high_water
                                        : OL_PUMP_HIGH_DEFAULT;
    t->pump_low = t->pump_high / 4;
    t->q_max = cfg->msg_queue_max ? cfg->msg_queue_max : OL_MSG_QUEUE_DEFAULT;
    t->q_bytes = cfg->msg_queue_bytes ? cfg->msg_queue_bytes
                                      : OL_MSG_QUEUE_BYTES_DEFAULT;
    t->recv_cb = cfg->recv_cb;
    t->recv_data = cfg->recv_data;
    t->refused_cb = cfg->refused_cb;
    t->raft_hooks = cfg->raft_hooks;
    if (cfg->cluster_id)
        memcpy(t->hs_self.cluster_id, cfg->cluster_id, OL_CLUSTER_ID_SIZE);
    t->cluster_id_cb = cfg->cluster_id_cb;
    t->cluster_id_data = cfg->cluster_id_data;
    ol__buf_init(&t->rw_scratch);
    ol__wf_init(&t->wf);
    t->legacy = cfg->legacy_handshake != 0;
    t->features = t->legacy ? 0
                            : OL_HS_FEAT_FRAMES |
                                  (cfg->compress_off ? 0 : OL_HS_FEAT_ZSTD);
    t->dial_only = cfg->dial_only != 0;
    /* As a server it offers the reachability bits too: it understands
     * them (handshake.h).  As a client it claims them per dial. */
    t->hs_self.features = t->legacy ? 0
                                    : t->features | OL_HS_FEAT_DIAL_ONLY |
                                          OL_HS_FEAT_REVERSE;
    uv_timer_init(loop, &t->ping_timer);
    t->ping_timer.data = t;
    ol__ping_start(t);
    uv_timer_init(loop, &t->retry_timer);
    uv_timer_init(loop, &t->defer_timer);
    uv_timer_init(loop, &t->rev_timer);
    t->rev_timer.data = t;
    t->retry_timer.data = t;
    t->defer_timer.data = t;
    ol__raft_setup(t);
    ol__rev_start(t);
    *out = t;
    return 0;
}

int ol__transport_set_roster(struct ol__transport *t,
                             const struct ol__peer *peers, size_t n)
{
    struct ol__peer *copy = NULL;

    if (n > 0) {
        copy = calloc(n, sizeof *copy);
        if (copy == NULL)
            return OL_ENOMEM;
        memcpy(copy, peers, n * sizeof *copy);
        for (size_t i = 0; i < n; i++)
            copy[i].address[OL_ADDR_MAX - 1] = '\0';
    }
    free(t->roster);
    t->roster = copy;
    t->n_roster = n;
    for (size_t i = 0; i < n; i++) {
        char host[OL_HOST_MAX], port[OL_PORT_MAX];
        struct sockaddr_in6 a6;
        struct sockaddr_in a4;

        if (ol__addr_split(copy[i].address, host, port) == 0 &&
            (uv_ip4_addr(host, 0, &a4) == 0 || uv_ip6_addr(host, 0, &a6) == 0))
            ol__tr_know_ip(t, host);
    }

    /* A connection is only as good as the roster entry it was
     * authenticated against. */
    for (struct ol__conn *c = t->conns; c != NULL; c = c->next) {
        const struct ol__peer *p;

        if (c->state == OL_CONN_DEAD || c->peer_id == 0)
            continue;
        p = ol__tr_peer(t, c->peer_id);
        if (p == NULL || sodium_memcmp(p->pk, c->peer_pk, OL_PK_SIZE) != 0) {
            ol_log(OL_LOG_INFO,
                   "transport: dropping connection with node %" PRIu64
                   ": %s",
                   c->peer_id, p ? "its key changed" : "left the roster");
            ol__conn_fail(c);
        }
    }
    ol__msg_roster_changed(t);
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ol__transport *t = server->data;

    if (status < 0) {
        ol_log_rl(OL_LOG_WARN, "transport: accept on '%s': %s",
                  t->listen_addr, uv_strerror(status));
        return;
    }
    ol__conn_accept(t, server);
}

static void listener_closed(uv_handle_t *h)
{
    struct ol__transport *t = h->data;

    free(h);
    t->pending_handles--;
    ol__tr_maybe_closed(t);
}

static int resolve_bind(uv_loop_t *loop, const char *address,
                        struct sockaddr_storage *ss, char *errmsg)
{
    char host[OL_HOST_MAX], port[OL_PORT_MAX];
    struct addrinfo hints, *res = NULL;
    uv_getaddrinfo_t req;
    int rv;

    if (ol__addr_split(address, host, port) != 0) {
        ol__errf(errmsg, "listen '%s': not host:port or [v6]:port", address);
        return OL_EIO;
    }
    if (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)ss) == 0 ||
        uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)ss) == 0)
        return 0;
    /* A name: resolving it synchronously is fine, once at startup. */
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rv = uv_getaddrinfo(loop, &req, NULL, host, port, &hints);
    if (rv != 0 || req.addrinfo == NULL) {
        ol__errf(errmsg, "listen '%s': resolve '%s': %s", address, host,
                 uv_strerror(rv ? rv : UV_EAI_NONAME));
        if (rv == 0)
            uv_freeaddrinfo(req.addrinfo);
        return OL_EIO;
    }
    res = req.addrinfo;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    return 0;
}

int ol__transport_listen(struct ol__transport *t, char *errmsg)
{
    struct sockaddr_storage ss;
    int rv;

    if (t->listener != NULL)
        return 0;
    if (t->closing) {
        ol__errf(errmsg, "listen: transport is closing");
        return OL_EIO;
    }
    if (t->dial_only) {
        /* Peers use the reverse connections this node dials.  Both the
         * cluster and raft's transport ask to listen: say it once. */
        if (!t->said_dial_only)
            ol_log(OL_LOG_INFO, "transport: node %" PRIu64 " is dial-only: "
                   "listening on nothing", t->self_id);
        t->said_dial_only = true;
        return 0;
    }
    if (t->listen_addr[0] == '\0') {
        ol__errf(errmsg, "listen: no address configured");
        return OL_EIO;
    }
    memset(&ss, 0, sizeof ss);
    if (resolve_bind(t->loop, t->listen_addr, &ss, errmsg) != 0)
        return OL_EIO;
    t->listener = malloc(sizeof *t->listener);
    if (t->listener == NULL) {
        ol__errf(errmsg, "listen '%s': out of memory", t->listen_addr);
        return OL_EIO;
    }
    uv_tcp_init(t->loop, t->listener);
    t->listener->data = t;
    rv = uv_tcp_bind(t->listener, (struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)t->listener, 128, on_connection);
    if (rv != 0) {
        ol__errf(errmsg, "listen '%s': %s", t->listen_addr, uv_strerror(rv));
        t->pending_handles++;
        uv_close((uv_handle_t *)t->listener, listener_closed);
        t->listener = NULL;
        return OL_EIO;
    }
    ol_log(OL_LOG_INFO, "transport: node %" PRIu64 " listening on '%s'",
           t->self_id, t->listen_addr);
    return 0;
}

int ol__transport_port(const struct ol__transport *t)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;

    if (t->listener == NULL)
        return OL_ESTATE;
    if (uv_tcp_getsockname(t->listener, (struct sockaddr *)&ss, &len) != 0)
        return OL_EIO;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void ol__transport_stats(const struct ol__transport *t,
                         struct ol__transport_stats *out)
{
    *out = t->stats;
    out->conns_open = t->n_conns;
    out->conns_handshaking = t->n_hs_pending;
    out->n_peers = ol__transport_peer_stats(t, out->peers,
                                            OL_TRANSPORT_PEERS_MAX);
}

static void timer_closed(uv_handle_t *h)
{
    struct ol__transport *t = h->data;

    t->pending_handles--;
    ol__tr_maybe_closed(t);
}

static void defer_cb(uv_timer_t *h)
{
    struct ol__transport *t = h->data;
    raft_uv_transport_close_cb rcb = t->raft_close_cb;

    if (rcb != NULL && t->n_raft_conns == 0) {
        t->raft_close_cb = NULL;
        rcb(&t->raft);
    }
}

void ol__tr_maybe_closed(struct ol__transport *t)
{
    void (*cb)(struct ol__transport *, void *);

    /* raft_uv waits for its transport close callback; it fires once no
     * connection raft knows about is left, from a timer so that it never
     * runs inside raft's own call to close. */
    if (t->raft_close_cb != NULL && t->n_raft_conns == 0 && !t->closing)
        uv_timer_start(&t->defer_timer, defer_cb, 0, 0);
    if (!t->closing || t->n_conns > 0 || t->pending_handles > 0)
        return;
    if (t->raft_close_cb != NULL) {
        raft_uv_transport_close_cb rcb = t->raft_close_cb;

        t->raft_close_cb = NULL;
        rcb(&t->raft);
    }
    cb = t->close_cb;
    t->close_cb = NULL;
    if (cb != NULL)
        cb(t, t->close_data);
    free(t->roster);
    ol__buf_close(&t->rw_scratch);
    ol__wf_close(&t->wf);
    ol__tpeer_free_all(t);
    free(t);
}

void ol__transport_close(struct ol__transport *t,
                         void (*cb)(struct ol__transport *t, void *data),
                         void *data)
{
    if (t == NULL || t->closing)
        return;
    t->closing = true;
    t->close_cb = cb;
    t->close_data = data;
    t->raft_accept_cb = NULL;
    for (struct ol__conn *c = t->conns; c != NULL; c = c->next) {
        c->req_status = RAFT_CANCELED;
        ol__conn_fail(c);
    }
    ol__msg_close(t);
    if (t->listener != NULL) {
        t->pending_handles++;
        uv_close((uv_handle_t *)t->listener, listener_closed);
        t->listener = NULL;
    }
    t->pending_handles += 4;
    uv_close((uv_handle_t *)&t->rev_timer, timer_closed);
    uv_close((uv_handle_t *)&t->ping_timer, timer_closed);
    uv_close((uv_handle_t *)&t->retry_timer, timer_closed);
    uv_close((uv_handle_t *)&t->defer_timer, timer_closed);
}
