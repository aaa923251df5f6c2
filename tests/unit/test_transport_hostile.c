/* Tests for the transport against hostile peers over real loopback
 * sockets: outsiders and impostors, garbage and silence from raw TCP
 * clients, and a proxy in the test that flips bits or rewrites a frame
 * length in transit.  Each must cost the attacker the connection and leave
 * the node working. */
#include <zstd.h>

#include "test_transport_harness.h"

/* --- a raw TCP client: sends some bytes and notices when it is dropped */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t out[512];
    size_t out_len;
    char in[4096];
    bool connected, dropped, handle_closed;
};

static struct raw raws[2];

static void raw_closed(uv_handle_t *h)
{
    struct raw *r = h->data;

    r->handle_closed = true;
}

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    struct raw *r = h->data;

    (void)s;
    buf->base = r->in;
    buf->len = sizeof r->in;
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct raw *r = s->data;

    (void)buf;
    if (n < 0) {
        r->dropped = true;
        uv_close((uv_handle_t *)&r->tcp, raw_closed);
    }
}

static void raw_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;

    cr_assert_eq(status, 0, "raw connect: %s", uv_strerror(status));
    r->connected = true;
    if (r->out_len > 0) {
        uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)r->out_len);

        cr_assert_eq(uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1,
                              raw_written), 0);
    }
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
}

static void raw_start(struct raw *r, const char *addr, const void *p,
                      size_t n)
{
    char host[OL_HOST_MAX], port[OL_PORT_MAX];
    struct sockaddr_in sa;

    memset(r, 0, sizeof *r);
    cr_assert_eq(ol__addr_split(addr, host, port), 0);
    cr_assert_eq(uv_ip4_addr(host, atoi(port), &sa), 0);
    if (n > 0)
        memcpy(r->out, p, n);
    r->out_len = n;
    uv_tcp_init(&loop, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    cr_assert_eq(uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&sa,
                                raw_connected), 0);
}

/* --- a TCP proxy that can change client-to-server bytes in transit */

enum { PASS, FLIP, OVERSIZE };

struct pconn {
    struct proxy *p;
    struct pconn *next, *prev;
    uv_tcp_t down, up;
    uv_connect_t creq;
    size_t c2s;
    int mode;
    size_t offset;
    int open;
    bool dead;
};

struct proxy {
    uv_tcp_t listener;
    struct sockaddr_in target;
    char addr[OL_ADDR_MAX];
    int mode;
    size_t offset;
    unsigned accepted, server_dropped;
    struct pconn *conns;
    bool used;
};

static struct proxy proxy;

struct pwrite {
    uv_write_t w;
    struct pconn *pc;
    char data[];
};

static void pconn_closed(uv_handle_t *h)
{
    struct pconn *pc = h->data;

    if (--pc->open > 0)
        return;
    if (pc->prev)
        pc->prev->next = pc->next;
    else
        pc->p->conns = pc->next;
    if (pc->next)
        pc->next->prev = pc->prev;
    free(pc);
}

static void pconn_kill(struct pconn *pc)
{
    if (pc->dead)
        return;
    pc->dead = true;
    uv_close((uv_handle_t *)&pc->down, pconn_closed);
    uv_close((uv_handle_t *)&pc->up, pconn_closed);
}

static void p_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(s);
    buf->len = s;
}

static void p_written(uv_write_t *w, int status)
{
    struct pwrite *pw = w->data;

    if (status < 0 && status != UV_ECANCELED)
        pconn_kill(pw->pc);
    free(pw);
}

static void forward(struct pconn *pc, uv_stream_t *to, const char *p,
                    size_t n)
{
    struct pwrite *pw = malloc(sizeof *pw + n);
    uv_buf_t b;

    memcpy(pw->data, p, n);
    pw->pc = pc;
    pw->w.data = pw;
    b = uv_buf_init(pw->data, (unsigned)n);
    if (uv_write(&pw->w, to, &b, 1, p_written) != 0) {
        free(pw);
        pconn_kill(pc);
    }
}

static void down_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct pconn *pc = s->data;

    if (n < 0)
        pconn_kill(pc);
    for (ssize_t i = 0; i < n; i++) {
        size_t at = pc->c2s + (size_t)i;

        if (pc->mode == FLIP && at == pc->offset)
            buf->base[i] ^= 0x10;
        if (pc->mode == OVERSIZE && at >= pc->offset && at < pc->offset + 4)
            buf->base[i] = at == pc->offset ? 0x7f : (char)0xff;
    }
    if (n > 0) {
        pc->c2s += (size_t)n;
        forward(pc, (uv_stream_t *)&pc->up, buf->base, (size_t)n);
    }
    free(buf->base);
}

static void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct pconn *pc = s->data;

    if (n < 0) {
        pc->p->server_dropped++;
        pconn_kill(pc);
    } else if (n > 0) {
        forward(pc, (uv_stream_t *)&pc->down, buf->base, (size_t)n);
    }
    free(buf->base);
}

static void up_connected(uv_connect_t *req, int status)
{
    struct pconn *pc = req->data;

    if (status < 0 || pc->dead) {
        pconn_kill(pc);
        return;
    }
    uv_read_start((uv_stream_t *)&pc->down, p_alloc, down_read);
    uv_read_start((uv_stream_t *)&pc->up, p_alloc, up_read);
}

static void proxy_accept(uv_stream_t *server, int status)
{
    struct proxy *p = server->data;
    struct pconn *pc = calloc(1, sizeof *pc);

    cr_assert_eq(status, 0);
    pc->p = p;
    pc->mode = p->mode;
    pc->offset = p->offset;
    uv_tcp_init(&loop, &pc->down);
    uv_tcp_init(&loop, &pc->up);
    pc->down.data = pc->up.data = pc->creq.data = pc;
    pc->open = 2;
    pc->next = p->conns;
    if (p->conns)
        p->conns->prev = pc;
    p->conns = pc;
    p->accepted++;
    cr_assert_eq(uv_accept(server, (uv_stream_t *)&pc->down), 0);
    if (uv_tcp_connect(&pc->creq, &pc->up, (struct sockaddr *)&p->target,
                       up_connected) != 0)
        pconn_kill(pc);
}

static void proxy_start(const struct node *target)
{
    char host[OL_HOST_MAX], port[OL_PORT_MAX];
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;

    memset(&proxy, 0, sizeof proxy);
    proxy.used = true;
    cr_assert_eq(ol__addr_split(target->addr, host, port), 0);
    uv_ip4_addr(host, atoi(port), &proxy.target);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &proxy.listener);
    proxy.listener.data = &proxy;
    cr_assert_eq(uv_tcp_bind(&proxy.listener, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&proxy.listener, 16, proxy_accept),
                 0);
    uv_tcp_getsockname(&proxy.listener, (struct sockaddr *)&ss, &len);
    snprintf(proxy.addr, sizeof proxy.addr, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
}

static void close_extras(void)
{
    if (proxy.used) {
        uv_close((uv_handle_t *)&proxy.listener, NULL);
        for (struct pconn *pc = proxy.conns; pc; pc = pc->next)
            pconn_kill(pc);
    }
    for (int i = 0; i < 2; i++)
        if (raws[i].connected && !uv_is_closing((uv_handle_t *)&raws[i].tcp))
            uv_close((uv_handle_t *)&raws[i].tcp, raw_closed);
}

TestSuite(transport_hostile, .init = setup, .fini = teardown, .timeout = 60);

Test(transport_hostile, node_not_in_roster_is_refused)
{
    struct node *a, *b, *c, *d;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    /* C is unknown to B; D claims to be node 1 with its own key. */
    c = node_new(2, 3, (struct opts){0});
    d = node_new(3, 1, (struct opts){0});
    set_roster2(c, peer_of(b), peer_of(c));
    set_roster2(d, peer_of(b), peer_of(d));
    cr_assert_eq(send_seq(c, 2, 0, 8), 0);
    RUN_UNTIL(stats(b).handshakes_failed >= 1, 5000);
    cr_assert_geq(stats(b).handshakes_failed, 1);
    cr_assert_eq(send_seq(d, 2, 0, 8), 0);
    RUN_UNTIL(stats(b).handshakes_failed >= 2, 5000);
    cr_assert_geq(stats(b).handshakes_failed, 2);
    RUN_FOR(100);
    cr_assert_eq(b->n_msgs, 0, "accepted a message from an outsider");
    cr_assert_eq(stats(b).handshakes_ok, 0);

    /* The real node 1 still gets through. */
    cr_assert_eq(send_seq(a, 2, 0, 8), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1);
    cr_assert_eq(b->from, 1);
    END_TEST();
}

Test(transport_hostile, garbage_client_is_dropped)
{
    struct node *a, *b;
    uint8_t junk[300];

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    randombytes_buf(junk, sizeof junk);
    raw_start(&raws[0], b->addr, junk, sizeof junk);
    /* Right magic and size, nonsense after it. */
    memcpy(junk, OL_HS_MAGIC, 4);
    raw_start(&raws[1], b->addr, junk, OL_HS_M1_SIZE);
    RUN_UNTIL(raws[0].dropped && raws[1].dropped, 5000);
    cr_assert(raws[0].dropped);
    cr_assert(raws[1].dropped);
    cr_assert_geq(stats(b).handshakes_failed, 2);
    cr_assert_eq(send_seq(a, 2, 0, 8), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1);
    END_TEST();
}

Test(transport_hostile, silent_client_times_out)
{
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){.hs_timeout_ms = 300});
    raw_start(&raws[0], b->addr, NULL, 0);
    /* Half an M1, then nothing. */
    raw_start(&raws[1], b->addr, OL_HS_MAGIC "\x02", 5);
    RUN_UNTIL(raws[0].dropped && raws[1].dropped, 5000);
    cr_assert(raws[0].dropped);
    cr_assert(raws[1].dropped);
    cr_assert_eq(stats(b).handshakes_failed, 2);
    END_TEST();
}

/* A's roster sends node 2's traffic through the proxy. */
static void via_proxy(struct node *a, struct node *b, int mode,
                      size_t offset)
{
    struct ol__peer pb = peer_of(b);

    proxy_start(b);
    proxy.mode = mode;
    proxy.offset = offset;
    snprintf(pb.address, sizeof pb.address, "%s", proxy.addr);
    set_roster2(a, peer_of(a), pb);
}

/* The first byte a client sends after its handshake. */
#define FIRST_FRAME (OL_HS_M1X_SIZE + OL_HS_M3_SIZE)

Test(transport_hostile, proxy_passes_clean_traffic)
{
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    via_proxy(a, b, PASS, 0);
    cr_assert_eq(send_seq(a, 2, 0, 100), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1);
    cr_assert_eq(proxy.accepted, 1);
    END_TEST();
}

Test(transport_hostile, flipped_bit_in_a_frame_drops_the_connection)
{
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    via_proxy(a, b, FLIP, FIRST_FRAME + OL_FRAME_HDR + 9);
    cr_assert_eq(send_seq(a, 2, 0, 100), 0);
    RUN_UNTIL(stats(b).frames_rejected >= 1 && proxy.server_dropped >= 1,
              5000);
    cr_assert_eq(stats(b).frames_rejected, 1);
    cr_assert_geq(proxy.server_dropped, 1, "connection was not dropped");
    cr_assert_eq(b->n_msgs, 0);

    /* Clean connections work again afterwards. */
    proxy.mode = PASS;
    RUN_FOR(50);
    cr_assert_eq(send_seq(a, 2, 1, 100), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1);
    END_TEST();
}

Test(transport_hostile, flipped_bit_in_the_handshake_fails_it)
{
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    /* Inside the client's ephemeral key in M1. */
    via_proxy(a, b, FLIP, 60);
    cr_assert_eq(send_seq(a, 2, 0, 100), 0);
    RUN_UNTIL(stats(a).handshakes_failed >= 1, 5000);
    cr_assert_geq(stats(a).handshakes_failed, 1);
    RUN_FOR(50);
    cr_assert_eq(b->n_msgs, 0);
    cr_assert_eq(stats(a).handshakes_ok, 0);
    END_TEST();
}

Test(transport_hostile, oversized_frame_header_drops_the_connection)
{
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    via_proxy(a, b, OVERSIZE, FIRST_FRAME);
    cr_assert_eq(send_seq(a, 2, 0, 100), 0);
    RUN_UNTIL(stats(b).frames_rejected >= 1 && proxy.server_dropped >= 1,
              5000);
    cr_assert_eq(stats(b).frames_rejected, 1);
    cr_assert_geq(proxy.server_dropped, 1);
    cr_assert_eq(b->n_msgs, 0);
    END_TEST();
}


/* --- a flood of silent connections from an address outside the roster */

#define FLOOD 300

static uv_tcp_t flood[FLOOD];
static uv_connect_t flood_req[FLOOD];
static int flood_connected, flood_closed;

static void flood_conn_cb(uv_connect_t *req, int status)
{
    (void)req;
    if (status == 0)
        flood_connected++;
}

static void flood_close_cb(uv_handle_t *h)
{
    (void)h;
    flood_closed++;
}

/* Hundreds of connections held open from 127.0.0.9 (another address on
 * loopback), each sending nothing, re-opened as they are dropped: the node
 * refuses most of them before any handshake work and still admits the
 * roster node, whose address is known. */
Test(transport_hostile, a_flood_from_outside_never_keeps_a_roster_node_out)
{
    struct node *a, *b;
    struct sockaddr_in src, dst;
    char host[OL_HOST_MAX], port[OL_PORT_MAX];

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    cr_assert_eq(ol__addr_split(b->addr, host, port), 0);
    cr_assert_eq(uv_ip4_addr(host, atoi(port), &dst), 0);
    cr_assert_eq(uv_ip4_addr("127.0.0.9", 0, &src), 0);
    for (int i = 0; i < FLOOD; i++) {
        uv_tcp_init(&loop, &flood[i]);
        cr_assert_eq(uv_tcp_bind(&flood[i], (struct sockaddr *)&src, 0), 0);
        cr_assert_eq(uv_tcp_connect(&flood_req[i], &flood[i],
                                    (struct sockaddr *)&dst, flood_conn_cb),
                     0);
    }
    RUN_UNTIL(flood_connected == FLOOD, 5000);
    RUN_FOR(200);
    cr_assert_gt(stats(b).admission_refused, FLOOD / 2,
                 "only %llu of %d refused",
                 (unsigned long long)stats(b).admission_refused, FLOOD);
    /* The roster node gets through while the flood holds on. */
    cr_assert_eq(send_seq(a, 2, 0, 8), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1, "the roster node was kept out");
    for (int i = 0; i < FLOOD; i++)
        uv_close((uv_handle_t *)&flood[i], flood_close_cb);
    RUN_UNTIL(flood_closed == FLOOD, 5000);
    END_TEST();
}


/* --- an authenticated peer that sends frames the codec must refuse */

/* a's open message connection to b. */
static struct ol__conn *msg_conn(struct node *a)
{
    for (struct ol__conn *c = a->t->conns; c != NULL; c = c->next)
        if (c->client && c->state == OL_CONN_OPEN &&
            c->channel == OL_CHAN_MSG)
            return c;
    return NULL;
}

/* a sends b the plaintext p (n bytes) in a properly sealed frame; b must
 * drop the connection with one undecodable frame counted, deliver
 * nothing, and take a clean message afterwards. */
static void refused_after_auth(const uint8_t *p, size_t n)
{
    struct node *a, *b;
    struct ol__conn *c;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    cr_assert_eq(send_seq(a, 2, 0, 100), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1);
    c = msg_conn(a);
    cr_assert_not_null(c);
    cr_assert_eq(c->feat, OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD);
    cr_assert_eq(ol__conn_send_plain(c, p, n), 0);
    RUN_UNTIL(stats(b).frames_undecodable >= 1 && msg_conn(a) == NULL,
              5000);
    cr_assert_eq(stats(b).frames_undecodable, 1);
    cr_assert_eq(stats(b).frames_rejected, 0, "it did authenticate");
    cr_assert_null(msg_conn(a), "the connection was not dropped");
    cr_assert_eq(b->n_msgs, 1);

    RUN_FOR(200); /* past the reconnect backoff */
    cr_assert_eq(send_seq(a, 2, 1, 100), 0);
    RUN_UNTIL(b->n_msgs == 2, 5000);
    cr_assert_eq(b->n_msgs, 2, "b stopped working");
    cr_assert_eq(b->bad, 0);
    END_TEST();
}

Test(transport_hostile, compressed_frame_claiming_4_gib_is_refused)
{
    uint8_t f[64] = {OL_WF_ZSTD, 0xff, 0xff, 0xff, 0xff};

    /* zstd's magic and then rubbish: the claim is refused first. */
    memcpy(f + 5, "\x28\xb5\x2f\xfd", 4);
    refused_after_auth(f, sizeof f);
}

Test(transport_hostile, corrupt_compressed_frame_is_refused)
{
    uint8_t f[64] = {OL_WF_ZSTD, 0, 0, 0x10, 0};

    for (size_t i = 5; i < sizeof f; i++)
        f[i] = (uint8_t)(i * 37);
    refused_after_auth(f, sizeof f);
}

Test(transport_hostile, truncated_compressed_frame_is_refused)
{
    static uint8_t raw[4096], f[4096 + 64];
    size_t n;

    memset(raw, 'x', sizeof raw);
    n = ZSTD_compress(f + 5, sizeof f - 5, raw, sizeof raw, 1);
    cr_assert(!ZSTD_isError(n));
    f[0] = OL_WF_ZSTD;
    f[3] = 0x10; /* 4096 */
    refused_after_auth(f, 5 + n - 3);
}

Test(transport_hostile, frame_of_unknown_type_is_refused)
{
    static const uint8_t f[] = {0x7f, 1, 2, 3};

    refused_after_auth(f, sizeof f);
}
