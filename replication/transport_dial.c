/*
 * Making connections: accepting from the listener (with a cap on how many
 * unauthenticated handshakes may be in progress) and dialling a peer,
 * numeric addresses directly and names through uv_getaddrinfo.  Once a
 * socket is connected the handshake in transport_conn.c takes over.
 */
#include "transport_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

static void peer_name(uv_tcp_t *tcp, char *out, size_t size)
{
    struct sockaddr_storage ss;
    char ip[64] = "?";
    int len = sizeof ss, port = 0;

    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            snprintf(out, size, "[%s]:%d", ip, port);
            return;
        }
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    snprintf(out, size, "%s:%d", ip, port);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Out of memory: take the connection off the listener's backlog anyway,
 * because libuv stops accepting until we do. */
static void reject(uv_stream_t *listener)
{
    uv_tcp_t *tmp = malloc(sizeof *tmp);

    if (tmp == NULL)
        return;
    uv_tcp_init(listener->loop, tmp);
    (void)uv_accept(listener, (uv_stream_t *)tmp);
    uv_close((uv_handle_t *)tmp, free_handle);
}

void ol__tr_know_ip(struct ol__transport *t, const char *ip)
{
    for (size_t i = 0; i < t->n_known; i++)
        if (strcmp(t->known_ips[i], ip) == 0)
            return;
    snprintf(t->known_ips[t->known_next], sizeof t->known_ips[0], "%s", ip);
    t->known_next = (t->known_next + 1) % OL_KNOWN_IPS;
    if (t->n_known < OL_KNOWN_IPS)
        t->n_known++;
}

static int known_ip(const struct ol__transport *t, const char *ip)
{
    for (size_t i = 0; i < t->n_known; i++)
        if (strcmp(t->known_ips[i], ip) == 0)
            return 1;
    return 0;
}

/* The numeric address of a connection's peer, without its port. */
static void peer_ip(uv_tcp_t *tcp, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;

    snprintf(out, size, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, out, size);
    else
        uv_ip4_name((struct sockaddr_in *)&ss, out, size);
}

/* Admission before any handshake work: a few slots for addresses not
 * known to be a roster node's, and a few per address, so that connections
 * held open from outside never fill the slots a roster node needs. */
static const char *admit(struct ol__transport *t, const struct ol__conn *c)
{
    size_t same = 0;

    if (t->n_hs_pending >= OL_HS_PENDING_MAX)
        return "too many handshakes in progress";
    if (c->outsider && t->n_hs_outsiders >= OL_HS_OUTSIDERS_MAX)
        return "too many handshakes from unknown addresses";
    for (const struct ol__conn *o = t->conns; o != NULL; o = o->next)
        if (o != c && o->hs_counted && strcmp(o->ip, c->ip) == 0)
            same++;
    if (same >= (c->outsider ? OL_HS_PER_OUTSIDER : OL_HS_PER_KNOWN))
        return "too many handshakes from one address";
    return NULL;
}

void ol__conn_accept(struct ol__transport *t, uv_stream_t *listener)
{
    struct ol__conn *c;
    const char *why;

    c = ol__conn_new(t, false, 0);
    if (c == NULL) {
        ol_log_rl(OL_LOG_WARN, "transport: accept: out of memory");
        reject(listener);
        return;
    }
    c->state = OL_CONN_HANDSHAKE;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        ol__conn_fail(c);
        return;
    }
    peer_ip(&c->tcp, c->ip, sizeof c->ip);
    c->outsider = !known_ip(t, c->ip);
    why = admit(t, c);
    if (why != NULL) {
        t->stats.admission_refused++;
        ol_log_rl(OL_LOG_WARN, "transport: connection from %s refused: %s",
                  c->ip, why);
        ol__conn_fail(c);
        return;
    }
    c->hs_counted = true;
    t->n_hs_pending++;
    if (c->outsider) {
        t->n_hs_outsiders++;
        /* An unknown address gets a short deadline too. */
        uv_timer_start(&c->timer, ol__conn_timeout_cb,
                       t->hs_timeout_ms < OL_HS_OUTSIDER_TIMEOUT_MS
                           ? t->hs_timeout_ms
                           : OL_HS_OUTSIDER_TIMEOUT_MS,
                       0);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(&c->tcp, c->address, sizeof c->address);
    if (ol__hs_server_start(&t->hs_self, &c->hs) != 0 ||
        ol__conn_read_start(c) != 0)
        ol__conn_fail(c);
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct ol__conn *c = req->data;
    struct ol__hs_self self = c->t->hs_self;
    uint8_t m1[OL_HS_M1_MAX];

    if (status == UV_ECANCELED || c->state == OL_CONN_DEAD)
        return;
    if (status < 0) {
        struct ol__transport *t = c->t;
        uint64_t peer = c->peer_id;

        ol_log_rl(OL_LOG_INFO, "transport: connect to node %" PRIu64
                  " at '%s': %s", c->peer_id, c->address,
                  uv_strerror(status));
        ol__conn_fail(c);
        if (status == UV_ECONNREFUSED && t->refused_cb)
            t->refused_cb(t->recv_data, peer);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = OL_CONN_HANDSHAKE;
    /* Features are offered unless this peer recently refused them. */
    self.features = c->t->features;
    if (c->t->dial_only && self.features != 0)
        self.features |= OL_HS_FEAT_DIAL_ONLY |
                         (c->reverse ? OL_HS_FEAT_REVERSE : 0);
    if (!ol__tpeer_dial_ext(c->t, c->peer_id))
        self.features = 0;
    c->ext = self.features != 0;
    if (ol__hs_client_start(&self, c->channel, c->peer_id, c->peer_pk,
                            &c->hs, m1) != 0 ||
        ol__conn_write_copy(c, m1, ol__hs_m1_len(&self)) != 0 ||
        ol__conn_read_start(c) != 0)
        ol__conn_fail(c);
}

static int start_connect(struct ol__conn *c, const struct sockaddr *sa)
{
    c->creq.data = c;
    c->state = OL_CONN_CONNECTING;
    return uv_tcp_connect(&c->creq, &c->tcp, sa, connect_cb);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct ol__conn *c = req->data;
    int rv;

    c->resolving = false;
    if (c->state == OL_CONN_DEAD) {
        uv_freeaddrinfo(res);
        ol__conn_maybe_free(c);
        return;
    }
    if (status < 0 || res == NULL) {
        ol_log_rl(OL_LOG_WARN, "transport: resolve '%s': %s", c->address,
                  uv_strerror(status ? status : UV_EAI_NONAME));
        uv_freeaddrinfo(res);
        ol__conn_fail(c);
        return;
    }
    rv = start_connect(c, res->ai_addr);
    uv_freeaddrinfo(res);
    if (rv != 0)
        ol__conn_fail(c);
}

struct ol__conn *ol__conn_dial(struct ol__transport *t, uint8_t channel,
                               uint64_t id, const uint8_t pk[OL_PK_SIZE],
                               const char *address)
{
    char host[OL_HOST_MAX], port[OL_PORT_MAX];
    struct sockaddr_storage ss;
    struct addrinfo hints;
    struct ol__conn *c;
    int rv;

    if (ol__addr_split(address, host, port) != 0) {
        ol_log_rl(OL_LOG_WARN, "transport: node %" PRIu64
                  " has a bad address '%s'", id, address);
        return NULL;
    }
    c = ol__conn_new(t, true, channel);
    if (c == NULL)
        return NULL;
    c->peer_id = id;
    memcpy(c->peer_pk, pk, OL_PK_SIZE);
    snprintf(c->address, sizeof c->address, "%s", address);
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&ss) == 0) {
        rv = start_connect(c, (struct sockaddr *)&ss);
    } else {
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        c->gai.data = c;
        c->state = OL_CONN_RESOLVING;
        rv = uv_getaddrinfo(t->loop, &c->gai, gai_cb, host, port, &hints);
        if (rv == 0)
            c->resolving = true;
    }
    if (rv != 0) {
        ol_log_rl(OL_LOG_WARN, "transport: connect to '%s': %s", address,
                  uv_strerror(rv));
        ol__conn_fail(c);
        return NULL;
    }
    return c;
}
