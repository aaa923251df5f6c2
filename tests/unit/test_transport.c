/* Tests for the node-to-node transport over real loopback sockets:
 * messages between transports, queueing and reconnects, roster changes,
 * names and IPv6, and the raft channel driven the way raft_uv drives it,
 * backpressure included.  Hostile peers are in test_transport_hostile.c. */
#include <raft.h>
#include <raft/uv.h>

#include "test_transport_harness.h"

static void close_extras(void)
{
}

TestSuite(transport, .init = setup, .fini = teardown, .timeout = 60);

Test(transport, addresses_are_split)
{
    char h[OL_HOST_MAX], p[OL_PORT_MAX];

    cr_assert_eq(ol__addr_split("127.0.0.1:7000", h, p), 0);
    cr_assert_str_eq(h, "127.0.0.1");
    cr_assert_str_eq(p, "7000");
    cr_assert_eq(ol__addr_split("[::1]:9", h, p), 0);
    cr_assert_str_eq(h, "::1");
    cr_assert_eq(ol__addr_split("node-a.example:65535", h, p), 0);
    cr_assert_str_eq(h, "node-a.example");
    cr_assert_eq(ol__addr_split("::1:9", h, p), OL_EINVAL);
    cr_assert_eq(ol__addr_split("host", h, p), OL_EINVAL);
    cr_assert_eq(ol__addr_split("host:", h, p), OL_EINVAL);
    cr_assert_eq(ol__addr_split(":80", h, p), OL_EINVAL);
    cr_assert_eq(ol__addr_split("host:65536", h, p), OL_EINVAL);
    cr_assert_eq(ol__addr_split("host:80x", h, p), OL_EINVAL);
    cr_assert_eq(ol__addr_split("[::1]9", h, p), OL_EINVAL);
    cr_assert_eq(ol__addr_split("[::1:9", h, p), OL_EINVAL);
    END_TEST();
}

Test(transport, messages_flow_both_ways)
{
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    for (uint32_t i = 0; i < 200; i++) {
        cr_assert_eq(send_seq(a, 2, i, 16 + i), 0);
        cr_assert_eq(send_seq(b, 1, i, 16 + i), 0);
    }
    /* One large message each way, bigger than any single read. */
    cr_assert_eq(send_seq(a, 2, 200, 3u << 20), 0);
    cr_assert_eq(send_seq(b, 1, 200, 3u << 20), 0);
    RUN_UNTIL(a->n_msgs == 201 && b->n_msgs == 201, 20000);
    cr_assert_eq(b->n_msgs, 201);
    cr_assert_eq(a->n_msgs, 201);
    cr_assert_eq(a->bad + b->bad, 0, "out of order or corrupted");
    cr_assert_eq(b->from, 1);
    cr_assert_eq(a->from, 2);
    cr_assert_geq(stats(a).handshakes_ok, 2);
    cr_assert_eq(stats(a).msgs_sent, 201);
    cr_assert_eq(stats(b).msgs_received, 201);
    cr_assert_eq(stats(a).handshakes_failed + stats(b).handshakes_failed, 0);
    END_TEST();
}

Test(transport, send_reports_errors)
{
    struct node *a, *b;
    struct ol__peer gone;
    struct ol__peer r[3];
    char one = 1;

    pair(&a, &b, (struct opts){.queue_max = 4}, (struct opts){0});
    /* Node 3 is in the roster at a port where nothing listens. */
    gone = peer_of(b);
    gone.id = 3;
    snprintf(gone.address, sizeof gone.address, "127.0.0.1:1");
    r[0] = peer_of(a);
    r[1] = peer_of(b);
    r[2] = gone;
    cr_assert_eq(ol__transport_set_roster(a->t, r, 3), 0);
    cr_assert_eq(ol__transport_send(a->t, 9, &one, 1), OL_ENOTFOUND);
    cr_assert_eq(ol__transport_send(a->t, 2, &one, OL_TRANSPORT_MSG_MAX + 1),
                 OL_ETOOBIG);
    for (uint32_t i = 0; i < 4; i++)
        cr_assert_eq(send_seq(a, 3, i, 8), 0);
    cr_assert_eq(send_seq(a, 3, 4, 8), OL_EBUSY);
    /* Failed dials keep the queue and retry; node 2 is unaffected. */
    RUN_FOR(300);
    cr_assert_eq(send_seq(a, 3, 4, 8), OL_EBUSY);
    cr_assert_eq(send_seq(a, 2, 0, 8), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1);
    END_TEST();
}

/* A port nothing listens on right now. */
static int free_port(void)
{
    char a[OL_ADDR_MAX];

    loop_fx_dead_addr(a, sizeof a);
    return atoi(strchr(a, ':') + 1);
}

Test(transport, reconnects_with_backoff)
{
    struct node *a, *b;
    char listen[OL_ADDR_MAX], err[OL_ERRMSG_SIZE];

    /* B is in A's roster before it listens. */
    snprintf(listen, sizeof listen, "127.0.0.1:%d", free_port());
    a = node_new(0, 1, (struct opts){0});
    b = node_new(1, 2, (struct opts){.listen = listen, .no_listen = true});
    snprintf(b->addr, sizeof b->addr, "%s", listen);
    set_roster2(a, peer_of(a), peer_of(b));
    set_roster2(b, peer_of(a), peer_of(b));
    cr_assert_eq(send_seq(a, 2, 0, 32), 0);
    cr_assert_eq(send_seq(a, 2, 1, 32), 0);
    RUN_FOR(400); /* a few refused dials */
    cr_assert_eq(b->n_msgs, 0);
    cr_assert_eq(ol__transport_listen(b->t, err), 0, "%s", err);
    RUN_UNTIL(b->n_msgs == 2, 10000);
    cr_assert_eq(b->n_msgs, 2, "queued messages were not delivered");
    cr_assert_eq(b->bad, 0);
    END_TEST();
}

Test(transport, roster_changes_drop_connections)
{
    struct node *a, *b;
    struct ol__peer pa;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    cr_assert_eq(send_seq(a, 2, 0, 8), 0);
    cr_assert_eq(send_seq(b, 1, 0, 8), 0);
    RUN_UNTIL(a->n_msgs == 1 && b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1);

    /* A leaves B's roster: both connections go, and A is refused. */
    pa = peer_of(a);
    set_roster2(b, peer_of(b), peer_of(b));
    cr_assert_eq(ol__transport_send(b->t, 1, "x", 1), OL_ENOTFOUND);
    RUN_FOR(100);
    cr_assert_eq(send_seq(a, 2, 1, 8), 0);
    RUN_UNTIL(stats(b).handshakes_failed >= 1, 5000);
    cr_assert_geq(stats(b).handshakes_failed, 1);

    /* A's key changes in B's roster: still refused. */
    memcpy(pa.pk, b->key.pk, OL_PK_SIZE);
    set_roster2(b, pa, peer_of(b));
    RUN_UNTIL(stats(b).handshakes_failed >= 2, 5000);
    cr_assert_geq(stats(b).handshakes_failed, 2);
    cr_assert_eq(b->n_msgs, 1);

    /* Back in with the right key: the queued message arrives. */
    set_roster2(b, peer_of(a), peer_of(b));
    RUN_UNTIL(b->n_msgs == 2, 10000);
    cr_assert_eq(b->n_msgs, 2);
    cr_assert_eq(b->bad, 0);
    END_TEST();
}

Test(transport, hostnames_and_ipv6)
{
    struct node *a, *b, *c;
    struct ol__peer pb;

    a = node_new(0, 1, (struct opts){0});
    b = node_new(1, 2, (struct opts){.listen = "localhost:0"});
    set_roster2(b, peer_of(a), peer_of(b));
    pb = peer_of(b);
    snprintf(pb.address, sizeof pb.address, "localhost:%d",
             ol__transport_port(b->t));
    set_roster2(a, peer_of(a), pb);
    cr_assert_eq(send_seq(a, 2, 0, 8), 0);
    RUN_UNTIL(b->n_msgs == 1, 5000);
    cr_assert_eq(b->n_msgs, 1, "no delivery to a hostname");

    c = node_new(2, 3, (struct opts){.listen = "[::1]:0"});
    {
        struct ol__peer r[2] = {peer_of(a), peer_of(c)};

        cr_assert_eq(ol__transport_set_roster(c->t, r, 2), 0);
        cr_assert_eq(ol__transport_set_roster(a->t, r, 2), 0);
    }
    cr_assert_eq(send_seq(a, 3, 0, 8), 0);
    RUN_UNTIL(c->n_msgs == 1, 5000);
    cr_assert_eq(c->n_msgs, 1, "no delivery over IPv6");
    END_TEST();
}

/* --- the raft channel, driven the way raft_uv drives it */

static uv_stream_t *raft_a, *raft_b;
static struct raft_uv_connect creq;
static int connect_status = -1;
static raft_id accepted_id;
static unsigned raft_closed;

static void on_accept(struct raft_uv_transport *rt, raft_id id,
                      const char *address, uv_stream_t *s)
{
    (void)rt;
    (void)address;
    accepted_id = id;
    raft_b = s;
}

static void on_connect(struct raft_uv_connect *req, uv_stream_t *s,
                       int status)
{
    (void)req;
    connect_status = status;
    raft_a = s;
}

static void on_raft_closed(struct raft_uv_transport *rt)
{
    (void)rt;
    raft_closed++;
}

static void raft_stream_free(uv_handle_t *h)
{
    raft_free(h);
}

/* Byte o of the stream. */
#define CHUNK 65536

/*
 * The raft channel carries libraft's messages and nothing else (the pump
 * checks them, raftwire.h): the stream is CHUNK-sized AppendEntries, each
 * with one entry that fills the rest of the chunk with a pattern that
 * depends on the offset, so that a lost, repeated or reordered byte shows.
 * A 16-byte preamble and a 64-byte header (48 fixed + one 16-byte entry
 * header) precede each entry.
 */
#define MSG_HDR (16 + 64)

static uint8_t header_byte(size_t p)
{
    uint8_t h[MSG_HDR];
    uint64_t v[] = {1, 64, /* preamble: type, header length */
                    2, 1, 1, 0, 1, /* term, prev index, prev term,
                                      commit, entries */
                    2};            /* the entry's term */

    memset(h, 0, sizeof h);
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
        for (int b = 0; b < 8; b++)
            h[8 * k + (size_t)b] = (uint8_t)(v[k] >> (8 * b));
    h[64] = 1; /* RAFT_COMMAND */
    h[68] = (uint8_t)((CHUNK - MSG_HDR) & 0xff);
    h[69] = (uint8_t)((CHUNK - MSG_HDR) >> 8);
    return h[p];
}

static uint8_t pattern(uint64_t o)
{
    size_t p = (size_t)(o % CHUNK);

    if (p < MSG_HDR)
        return header_byte(p);
    return (uint8_t)((o * 131) ^ (o >> 13));
}
static uint64_t w_off, r_off, r_bad;
static unsigned w_pending;
static bool writing;

struct chunk {
    uv_write_t w;
    uint8_t data[CHUNK];
};

static void top_up(void);

static void chunk_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    w_pending--;
    top_up();
}

/* Keep about 1 MiB queued on raft's side of node A's connection. */
static void top_up(void)
{
    while (writing &&
           uv_stream_get_write_queue_size(raft_a) < (1u << 20) &&
           w_off < ((uint64_t)512 << 20)) {
        struct chunk *c = malloc(sizeof *c);
        uv_buf_t b = uv_buf_init((char *)c->data, CHUNK);

        for (size_t i = 0; i < CHUNK; i++)
            c->data[i] = pattern(w_off + i);
        c->w.data = c;
        cr_assert_eq(uv_write(&c->w, raft_a, &b, 1, chunk_written), 0);
        w_pending++;
        w_off += CHUNK;
    }
}

static char rbuf[CHUNK];

static void b_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    (void)h;
    (void)s;
    buf->base = rbuf;
    buf->len = sizeof rbuf;
}

static void b_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    for (ssize_t i = 0; i < n; i++)
        if ((uint8_t)buf->base[i] != pattern(r_off + (uint64_t)i))
            r_bad++;
    if (n > 0)
        r_off += (uint64_t)n;
}

Test(transport, raft_channel_applies_backpressure)
{
    const size_t high = 256u << 10;
    struct raft_uv_transport *ra, *rb;
    struct node *a, *b;
    uint64_t total;

    pair(&a, &b, (struct opts){.pump_high = high},
         (struct opts){.pump_high = high});
    ra = ol__transport_raft(a->t);
    rb = ol__transport_raft(b->t);
    cr_assert_eq(ra->init(ra, 1, a->addr), 0);
    cr_assert_eq(rb->init(rb, 2, b->addr), 0);
    cr_assert_eq(ra->init(ra, 7, a->addr), RAFT_INVALID);
    cr_assert_eq(rb->listen(rb, on_accept), 0);
    cr_assert_eq(ra->connect(ra, &creq, 9, "127.0.0.1:1", on_connect),
                 RAFT_NOCONNECTION, "dialled a node outside the roster");
    cr_assert_eq(ra->connect(ra, &creq, 2, b->addr, on_connect), 0);
    RUN_UNTIL(raft_a != NULL && raft_b != NULL, 5000);
    cr_assert_eq(connect_status, 0);
    cr_assert_not_null(raft_b);
    cr_assert_eq(accepted_id, 1, "raft was given an unproven id");

    /* Raft on B reads nothing: both pumps must stop reading instead of
     * buffering what A's raft keeps writing. */
    writing = true;
    top_up();
    RUN_UNTIL(stats(a).pump_pauses >= 1 && stats(b).pump_pauses >= 1,
              30000);
    writing = false;
    cr_assert_geq(stats(b).pump_pauses, 1, "B's pump never paused");
    cr_assert_geq(stats(a).pump_pauses, 1, "A's pump never paused");
    cr_assert_leq(stats(a).pump_queue_peak, high + (256u << 10));
    cr_assert_leq(stats(b).pump_queue_peak, high + (256u << 10));

    /* B's raft starts reading: everything arrives, in order. */
    total = w_off;
    cr_log_info("paused after %llu bytes; peaks %llu/%llu",
                (unsigned long long)total,
                (unsigned long long)stats(a).pump_queue_peak,
                (unsigned long long)stats(b).pump_queue_peak);
    uv_read_start(raft_b, b_alloc, b_read);
    RUN_UNTIL(r_off == total && w_pending == 0, 60000);
    cr_assert_eq(r_off, total, "got %llu of %llu bytes",
                 (unsigned long long)r_off, (unsigned long long)total);
    cr_assert_eq(r_bad, 0);
    cr_assert_eq(stats(a).frames_rejected + stats(b).frames_rejected, 0);

    /* Shut down the way raft_uv does: streams, then the transport. */
    uv_close((uv_handle_t *)raft_a, raft_stream_free);
    uv_close((uv_handle_t *)raft_b, raft_stream_free);
    ra->close(ra, on_raft_closed);
    rb->close(rb, on_raft_closed);
    RUN_UNTIL(raft_closed == 2, 5000);
    cr_assert_eq(raft_closed, 2);
    END_TEST();
}

static uv_tcp_t blackhole;

static void blackhole_cb(uv_stream_t *server, int status)
{
    (void)server;
    (void)status; /* never accepted, never answered */
}

/* A listener whose connections complete in the kernel and then hear
 * nothing. */
static const char *blackhole_addr(void)
{
    static char addr[OL_ADDR_MAX];
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;

    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &blackhole);
    cr_assert_eq(uv_tcp_bind(&blackhole, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&blackhole, 4, blackhole_cb), 0);
    uv_tcp_getsockname(&blackhole, (struct sockaddr *)&ss, &len);
    snprintf(addr, sizeof addr, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    return addr;
}

Test(transport, raft_connect_is_canceled_by_close)
{
    struct raft_uv_transport *ra;
    struct node *a, *b;

    /* B never answers: the connect is still pending at close. */
    pair(&a, &b, (struct opts){0}, (struct opts){.no_listen = true});
    ra = ol__transport_raft(a->t);
    cr_assert_eq(ra->init(ra, 1, a->addr), 0);
    cr_assert_eq(ra->connect(ra, &creq, 2, blackhole_addr(), on_connect),
                 0);
    ra->close(ra, on_raft_closed);
    cr_assert_eq(connect_status, -1, "callback ran inside close");
    RUN_UNTIL(raft_closed == 1, 5000);
    cr_assert_eq(connect_status, RAFT_CANCELED);
    cr_assert_eq(raft_closed, 1);
    uv_close((uv_handle_t *)&blackhole, NULL);
    END_TEST();
}


static void hostile_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

/* An authenticated peer's raft message that libraft 0.15 would read past
 * or allocate from as claimed (an entry of 2 GiB, not a multiple of 8) is
 * refused by the pump: libraft on the other side never sees a byte of it,
 * and the connection closes. */
Test(transport, hostile_raft_message_never_reaches_raft)
{
    struct raft_uv_transport *ra, *rb;
    struct node *a, *b;
    uint8_t m[MSG_HDR];
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t buf;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    ra = ol__transport_raft(a->t);
    rb = ol__transport_raft(b->t);
    cr_assert_eq(ra->init(ra, 1, a->addr), 0);
    cr_assert_eq(rb->init(rb, 2, b->addr), 0);
    cr_assert_eq(rb->listen(rb, on_accept), 0);
    cr_assert_eq(ra->connect(ra, &creq, 2, b->addr, on_connect), 0);
    RUN_UNTIL(raft_a != NULL && raft_b != NULL, 5000);
    cr_assert_not_null(raft_b);
    uv_read_start(raft_b, b_alloc, b_read);
    for (size_t i = 0; i < MSG_HDR; i++)
        m[i] = header_byte(i);
    m[68] = 0x01; /* entry length 0x80000001: 2 GiB and odd */
    m[69] = 0x00;
    m[70] = 0x00;
    m[71] = 0x80;
    buf = uv_buf_init((char *)m, sizeof m);
    cr_assert_eq(uv_write(w, raft_a, &buf, 1, hostile_written), 0);
    RUN_UNTIL(stats(b).raft_refused >= 1, 5000);
    cr_assert_eq(stats(b).raft_refused, 1);
    cr_assert_eq(r_off, 0, "raft on B received %llu bytes of it",
                 (unsigned long long)r_off);
    uv_close((uv_handle_t *)raft_a, raft_stream_free);
    uv_close((uv_handle_t *)raft_b, raft_stream_free);
    ra->close(ra, on_raft_closed);
    rb->close(rb, on_raft_closed);
    RUN_UNTIL(raft_closed == 2, 5000);
    END_TEST();
}
