/* Unit tests for the node <-> agent-host wire (runtime/ipc.c): a STEP and
 * an R_STEP survive the trip, and every truncation or bit flip of one is
 * refused or decoded without a crash. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "runtime/ipc.h"

static void pack_step(struct ol__buf *b, const struct ol__ipc_step *s)
{
    msgpack_packer pk;
    struct ol__mpr r;
    uint32_t n;
    uint64_t type;

    ol__buf_init(b);
    msgpack_packer_init(&pk, b, ol__buf_write);
    ol__ipc_pack_step(&pk, s);
    cr_assert_not_null(b->base);
    ol__mpr_init(&r, b->base, b->len);
    cr_assert_eq(ol__mpr_array(&r, &n), 0);
    cr_assert_eq(n, 13);
    cr_assert_eq(ol__mpr_uint(&r, &type), 0);
    cr_assert_eq(type, OL_IPC_STEP);
}

Test(ipc, a_step_round_trips)
{
    struct ol__ipc_step s = {.slot = 7, .gen = 3, .type = 4,
                             .now_ms = 1700000000123, .epoch = 9,
                             .flags = OL_IPC_SAVE_AFTER | OL_IPC_FINAL,
                             .n_outbox = 12, .a1 = UINT64_MAX, .a2 = -42,
                             .run_by = 123456789, .s = "ledger", .b = "\x93\x01\x02\x03",
                             .b_len = 4};
    struct ol__ipc_step out;
    struct ol__buf b;
    struct ol__mpr r;

    pack_step(&b, &s);
    ol__mpr_init(&r, b.base, b.len);
    cr_assert_eq(ol__mpr_skip(&r) == 0 ? 0 : -1, 0);
    ol__mpr_init(&r, b.base + 2, b.len - 2); /* past [13-array, type] */
    cr_assert_eq(ol__ipc_read_step(&r, &out), 0);
    cr_expect_eq(out.slot, 7);
    cr_expect_eq(out.gen, 3);
    cr_expect_eq(out.type, 4);
    cr_expect_eq(out.now_ms, 1700000000123);
    cr_expect_eq(out.epoch, 9);
    cr_expect_eq(out.flags, OL_IPC_SAVE_AFTER | OL_IPC_FINAL);
    cr_expect_eq(out.n_outbox, 12);
    cr_expect_eq(out.a1, UINT64_MAX);
    cr_expect_eq(out.a2, -42);
    cr_expect_eq(out.run_by, 123456789);
    cr_expect_eq(out.s_len, 6);
    cr_expect_eq(memcmp(out.s, "ledger", 6), 0);
    cr_expect_eq(out.b_len, 4);
    cr_expect(ol__mpr_done(&r));
    for (size_t n = 2; n < b.len; n++) {
        ol__mpr_init(&r, b.base + 2, n - 2);
        cr_expect_eq(ol__ipc_read_step(&r, &out), OL_EMALFORMED,
                     "accepted a %zu-byte prefix", n);
    }
    ol__buf_close(&b);
}

/* An R_STEP as the host writes it: two timer ops, one send, a state,
 * one effect. */
static void pack_result(struct ol__buf *b)
{
    msgpack_packer pk;

    ol__buf_init(b);
    msgpack_packer_init(&pk, b, ol__buf_write);
    msgpack_pack_uint32(&pk, 5);  /* slot */
    msgpack_pack_uint32(&pk, 2);  /* gen */
    msgpack_pack_int(&pk, 0);     /* rv */
    msgpack_pack_uint32(&pk, OL_IPC_CKPT_REQ);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint32(&pk, OL_IPC_ARM);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_int64(&pk, 123456);
    msgpack_pack_uint32(&pk, OL_IPC_CANCEL);
    msgpack_pack_uint64(&pk, 2);
    msgpack_pack_int64(&pk, 0);
    msgpack_pack_array(&pk, 2);
    ol__ipc_str(&pk, "ledger");
    ol__ipc_bin(&pk, "\x01", 1);
    msgpack_pack_uint32(&pk, 1);  /* works */
    ol__ipc_bin(&pk, "\x81\xa1n\x05", 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, 9);
    ol__ipc_str(&pk, "order");
    ol__ipc_bin(&pk, "\xc0", 1);
}

Test(ipc, a_result_round_trips_and_truncations_are_refused)
{
    struct ol__ipc_result res;
    struct ol__buf b;
    struct ol__mpr r;
    uint32_t n;
    uint64_t op;

    pack_result(&b);
    ol__mpr_init(&r, b.base, b.len);
    cr_assert_eq(ol__ipc_read_result(&r, &res), 0);
    cr_expect(ol__mpr_done(&r));
    cr_expect_eq(res.slot, 5);
    cr_expect_eq(res.gen, 2);
    cr_expect_eq(res.flags, OL_IPC_CKPT_REQ);
    cr_expect_eq(res.n_ops, 6);
    cr_expect_eq(res.n_sends, 2);
    cr_expect_eq(res.works, 1);
    cr_expect_eq(res.state_len, 4);
    cr_expect_eq(res.n_effects, 3);
    cr_assert_eq(ol__mpr_array(&res.ops, &n), 0);
    cr_assert_eq(n, 6);
    cr_assert_eq(ol__mpr_uint(&res.ops, &op), 0);
    cr_expect_eq(op, OL_IPC_ARM);
    for (size_t len = 0; len < b.len; len++) {
        ol__mpr_init(&r, b.base, len);
        cr_expect_eq(ol__ipc_read_result(&r, &res), OL_EMALFORMED,
                     "accepted a %zu-byte prefix", len);
    }
    /* Flipped bits never crash the reader (what they decode to is the
     * node's to check, field by field). */
    for (size_t i = 0; i < b.len * 8; i++) {
        b.base[i / 8] ^= (uint8_t)(1u << (i % 8));
        ol__mpr_init(&r, b.base, b.len);
        if (ol__ipc_read_result(&r, &res) == 0)
            cr_expect_leq(res.state_len, b.len);
        b.base[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    ol__buf_close(&b);
}

Test(ipc, odd_op_and_send_counts_are_refused)
{
    struct ol__ipc_result res;
    struct ol__buf b;
    msgpack_packer pk;
    struct ol__mpr r;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, 0);
    msgpack_pack_array(&pk, 2); /* not a multiple of 3 */
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_uint32(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 0);
    ol__mpr_init(&r, b.base, b.len);
    cr_expect_eq(ol__ipc_read_result(&r, &res), OL_EMALFORMED);
    ol__buf_close(&b);
}

Test(ipc, frame_headers)
{
    uint8_t h[OL_IPC_HDR];

    ol__ipc_hdr(h, 0x01020304u);
    cr_expect_eq(h[0], 4);
    cr_expect_eq(h[3], 1);
    cr_expect_eq(ol__ipc_hdr_len(h), 0x01020304u);
}

Test(ipc, a_perform_round_trips_and_truncations_are_refused)
{
    struct ol__ipc_perform p, out;
    struct ol__buf b;
    struct ol__mpr r;
    msgpack_packer pk;
    uint32_t n;
    uint64_t type;

    memset(&p, 0, sizeof p);
    p.slot = 3;
    p.gen = 4;
    p.token = 77;
    p.run_by = 123456;
    p.e.epoch = 5;
    p.e.deadline_ms = 1700000000000;
    p.e.attempt = 2;
    p.e.in_doubt = 1;
    p.e.effect_id = 11;
    p.e.node = "node-1";
    p.e.key = "00112233445566778899aabbccddeeff";
    p.e.kind = "order";
    p.e.payload = "\x81\xa1n\x05";
    p.e.len = 4;
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    ol__ipc_pack_perform(&pk, &p);
    ol__mpr_init(&r, b.base, b.len);
    cr_assert_eq(ol__mpr_array(&r, &n), 0);
    cr_assert_eq(n, 14);
    cr_assert_eq(ol__mpr_uint(&r, &type), 0);
    cr_assert_eq(type, OL_IPC_PERFORM);
    cr_assert_eq(ol__ipc_read_perform(&r, &out), 0);
    cr_expect(ol__mpr_done(&r));
    cr_expect_eq(out.slot, 3);
    cr_expect_eq(out.token, 77);
    cr_expect_eq(out.run_by, 123456);
    cr_expect_eq(out.e.epoch, 5);
    cr_expect_eq(out.e.attempt, 2);
    cr_expect_eq(out.e.in_doubt, 1);
    cr_expect_eq(out.e.effect_id, 11);
    cr_expect_str_eq(out.e.key, p.e.key);
    cr_expect_str_eq(out.e.kind, "order");
    cr_expect_str_eq(out.e.node, "node-1");
    cr_expect_eq(out.e.len, 4);
    for (size_t len = 2; len < b.len; len++) {
        ol__mpr_init(&r, b.base + 2, len - 2);
        cr_expect_eq(ol__ipc_read_perform(&r, &out), OL_EMALFORMED,
                     "accepted a %zu-byte prefix", len);
    }
    ol__buf_close(&b);
}
