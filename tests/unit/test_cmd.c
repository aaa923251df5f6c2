/* Unit tests for the log entry codec. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>

#include "record/cmd.h"
#include "record/seal.h"
#include "base/err.h"
#include "tests/support/sample.h"

static struct ol__key key;
static struct ol__buf entry;
static const uint8_t cfg[] = {0x81, 0xa1, 'x', 0x01}; /* {"x": 1} */

static void build(void)
{
    struct ol__entry_w w;
    struct ol__ckpt c;
    struct ol__buf body;
    struct ol__blob b;
    uint8_t h[OL_HASH_SIZE];

    cr_assert_eq(ol__key_generate(&key), 0);
    sample_ckpt_fill(&c, &key, "ticker", 1);
    ol__buf_init(&body);
    cr_assert_eq(ol__ckpt_encode(&c, &body), 0);
    ol__ckpt_hash(body.base, body.len, h);
    b.p = body.base;
    b.len = (uint32_t)body.len;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_ckpts(&w, &key, 5, &b, h, 1), 0);
    cr_assert_eq(ol__entry_add_spawn(&w, 11, "ticker", "counter", cfg,
                                     sizeof cfg, 1, 0), 0);
    cr_assert_eq(ol__entry_add_stop(&w, 12, "ticker"), 0);
    cr_assert_eq(ol__entry_add_place(&w, 13, "ticker", 2, 4, 0), 0);
    cr_assert_eq(ol__entry_add_send(&w, 14, "ticker", 77, cfg, sizeof cfg),
                 0);
    cr_assert_eq(ol__entry_add_quarantine(&w, 15, "ticker", 4, "boom"), 0);
    cr_assert_eq(ol__entry_add_node(&w, 16, 3, "127.0.0.1:7003", key.pk,
                                    "cloud=aws"), 0);
    cr_assert_eq(ol__entry_add_node_del(&w, 17, 3), 0);
    cr_assert_eq(ol__entry_add_start(&w, 18, "ticker"), 0);
    cr_assert_eq(ol__entry_add_crash(&w, 19, "ticker", 4, -5, 3, 60000,
                                     "killed by SIGSEGV in handle()"),
                 0);
    cr_assert_eq(ol__entry_add_code(&w, 20, 2, "counter", key.pk, "1.2.3",
                                    1),
                 0);
    cr_assert_eq(ol__entry_add_move(&w, 21, "ticker", 3, 5, 77, 9, 450), 0);
    cr_assert_eq(ol__entry_add_rm(&w, 22, "ticker"), 0);
    cr_assert_eq(ol__entry_add_config(&w, 23, "ticker", 88, cfg, sizeof cfg),
                 0);
    ol__buf_init(&entry);
    cr_assert_eq(ol__entry_w_finish(&w, &entry), 0);
    ol__entry_w_close(&w);
    ol__buf_close(&body);
    ol__ckpt_free(&c);
}

static void teardown(void)
{
    ol__buf_close(&entry);
    ol__key_close(&key);
}

TestSuite(cmd, .init = build, .fini = teardown);

Test(cmd, round_trips_every_command)
{
    struct ol__entry e;
    struct ol__seal s;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__entry_decode(entry.base, entry.len, &e, err), 0, "%s",
                 err);
    cr_assert_eq(e.n, 14);
    cr_assert_eq(e.cmds[0].type, OL_CMD_CKPTS);
    cr_assert_eq(e.cmds[0].n_bodies, 1);
    cr_assert_eq(ol__seal_verify(e.cmds[0].seal.p, e.cmds[0].seal.len,
                                 e.cmds[0].sig, &s), 0);
    cr_assert_eq(e.cmds[1].type, OL_CMD_SPAWN);
    cr_assert_eq(e.cmds[1].req, 11);
    cr_assert_str_eq(e.cmds[1].name, "ticker");
    cr_assert_str_eq(e.cmds[1].kind, "counter");
    cr_assert_eq(e.cmds[1].config.len, sizeof cfg);
    cr_assert_eq(e.cmds[1].owner, 1);
    cr_assert_eq(e.cmds[2].type, OL_CMD_STOP);
    cr_assert_eq(e.cmds[3].type, OL_CMD_PLACE);
    cr_assert_eq(e.cmds[3].owner, 2);
    cr_assert_eq(e.cmds[3].epoch, 4);
    cr_assert_eq(e.cmds[3].inc, 0);
    cr_assert_eq(e.cmds[4].type, OL_CMD_SEND);
    cr_assert_eq(e.cmds[4].msg_seq, 77);
    cr_assert_eq(e.cmds[5].type, OL_CMD_QUARANTINE);
    cr_assert_str_eq(e.cmds[5].reason, "boom");
    cr_assert_eq(e.cmds[6].type, OL_CMD_NODE);
    cr_assert_str_eq(e.cmds[6].address, "127.0.0.1:7003");
    cr_assert_str_eq(e.cmds[6].labels, "cloud=aws");
    cr_assert_eq(memcmp(e.cmds[6].pk, key.pk, OL_PK_SIZE), 0);
    cr_assert_eq(e.cmds[7].type, OL_CMD_NODE_DEL);
    cr_assert_eq(e.cmds[7].node_id, 3);
    cr_assert_eq(e.cmds[8].type, OL_CMD_START);
    cr_assert_eq(e.cmds[9].type, OL_CMD_CRASH);
    cr_assert_eq(e.cmds[9].req, 19);
    cr_assert_str_eq(e.cmds[9].name, "ticker");
    cr_assert_eq(e.cmds[9].epoch, 4);
    cr_assert_eq(e.cmds[9].time_ms, -5);
    cr_assert_eq(e.cmds[9].limit, 3);
    cr_assert_eq(e.cmds[9].window_ms, 60000);
    cr_assert_str_eq(e.cmds[9].reason, "killed by SIGSEGV in handle()");
    cr_assert_eq(e.cmds[10].type, OL_CMD_CODE);
    cr_assert_eq(e.cmds[10].node_id, 2);
    cr_assert_str_eq(e.cmds[10].kind, "counter");
    cr_assert_eq(memcmp(e.cmds[10].hash, key.pk, OL_HASH_SIZE), 0);
    cr_assert_str_eq(e.cmds[10].version, "1.2.3");
    cr_assert_eq(e.cmds[10].wanted, 1);
    cr_assert_eq(e.cmds[11].type, OL_CMD_MOVE);
    cr_assert_eq(e.cmds[11].owner, 3);
    cr_assert_eq(e.cmds[11].epoch, 5);
    cr_assert_eq(e.cmds[11].inc, 77);
    cr_assert_eq(e.cmds[11].term, 9);
    cr_assert_eq(e.cmds[11].hold_ms, 450);
    cr_assert_eq(e.cmds[12].type, OL_CMD_RM);
    cr_assert_eq(e.cmds[12].req, 22);
    cr_assert_str_eq(e.cmds[12].name, "ticker");
    cr_assert_eq(e.cmds[13].type, OL_CMD_CONFIG);
    cr_assert_eq(e.cmds[13].req, 23);
    cr_assert_eq(e.cmds[13].msg_seq, 88);
    cr_assert_eq(e.cmds[13].config.len, sizeof cfg);
    cr_assert_eq(memcmp(e.cmds[13].config.p, cfg, sizeof cfg), 0);
    ol__entry_free(&e);
}

Test(cmd, raw_commands_rebatch_identically)
{
    struct ol__entry e, e2;
    struct ol__entry_w w;
    struct ol__buf out;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__entry_decode(entry.base, entry.len, &e, err), 0);
    ol__entry_w_init(&w);
    for (uint32_t i = 0; i < e.n; i++)
        cr_assert_eq(ol__entry_add_raw(&w, &e.cmds[i].raw), 0);
    ol__buf_init(&out);
    cr_assert_eq(ol__entry_w_finish(&w, &out), 0);
    cr_assert_eq(out.len, entry.len);
    cr_assert_eq(memcmp(out.base, entry.base, out.len), 0);
    cr_assert_eq(ol__entry_decode(out.base, out.len, &e2, err), 0);
    ol__entry_free(&e2);
    ol__entry_free(&e);
    ol__entry_w_close(&w);
    ol__buf_close(&out);
}

Test(cmd, every_truncation_is_rejected)
{
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];

    for (size_t n = 0; n < entry.len; n++)
        cr_expect_eq(ol__entry_decode(entry.base, n, &e, err), OL_EMALFORMED,
                     "accepted a %zu-byte prefix", n);
}

Test(cmd, bit_flips_never_crash)
{
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];

    for (size_t i = 0; i < entry.len; i++) {
        entry.base[i] ^= 0x40;
        if (ol__entry_decode(entry.base, entry.len, &e, err) == 0)
            ol__entry_free(&e);
        entry.base[i] ^= 0x40;
    }
}

Test(cmd, unknown_type_is_not_supported_and_named)
{
    /* [2, 7, 0, [[99, 0]]]: a well-formed entry from a newer version. */
    uint8_t bad[] = {0x94, 0x02, 0x07, 0x00, 0x91, 0x92, 0x63, 0x00};
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__entry_decode(bad, sizeof bad, &e, err), OL_ENOTSUP);
    cr_assert(strstr(err, "type 99") != NULL, "%s", err);
    cr_assert(strstr(err, "feature level") != NULL, "%s", err);
}

Test(cmd, newer_format_is_not_supported)
{
    /* [3, 7, 0, []] */
    uint8_t newer[] = {0x94, 0x03, 0x07, 0x00, 0x90};
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__entry_decode(newer, sizeof newer, &e, err), OL_ENOTSUP);
    cr_assert(strstr(err, "newer") != NULL, "%s", err);
    cr_assert_eq(ol__entry_peek(newer, sizeof newer, &e), OL_ENOTSUP);
}

Test(cmd, header_carries_term_and_time)
{
    struct ol__entry_w w;
    struct ol__buf out;
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_noop(&w), 0);
    w.term = 42;
    w.time_ms = 1700000000123;
    ol__buf_init(&out);
    cr_assert_eq(ol__entry_w_finish(&w, &out), 0);
    cr_assert_eq(ol__entry_decode(out.base, out.len, &e, err), 0, "%s", err);
    cr_assert_eq(e.format, OL_ENTRY_FORMAT);
    cr_assert_eq(e.term, 42);
    cr_assert_eq(e.time_ms, 1700000000123);
    cr_assert_eq(e.n, 1);
    cr_assert_eq(e.cmds[0].type, OL_CMD_NOOP);
    ol__entry_free(&e);
    memset(&e, 0, sizeof e);
    cr_assert_eq(ol__entry_peek(out.base, out.len, &e), 0);
    cr_assert_eq(e.term, 42);
    ol__entry_w_close(&w);
    ol__buf_close(&out);
}

Test(cmd, format_1_entries_still_decode)
{
    /* [1, [[3, 5, "a"]]]: a STOP from before the term was carried. */
    uint8_t old[] = {0x92, 0x01, 0x91, 0x93, 0x03, 0x05, 0xa1, 'a'};
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__entry_decode(old, sizeof old, &e, err), 0, "%s", err);
    cr_assert_eq(e.format, 1);
    cr_assert_eq(e.term, 0);
    cr_assert_eq(e.n, 1);
    cr_assert_eq(e.cmds[0].type, OL_CMD_STOP);
    cr_assert_str_eq(e.cmds[0].name, "a");
    ol__entry_free(&e);
}

Test(cmd, table_knows_every_type_once)
{
    const struct ol__cmd_info *ci;

    for (size_t i = 0; (ci = ol__cmd_info_at(i)) != NULL; i++) {
        cr_assert_eq(ol__cmd_info(ci->type), ci, "type %u twice", ci->type);
        cr_assert(ci->level >= 1 && ci->level <= OL_FEATURE_LEVEL,
                  "%s: level %u", ci->name, ci->level);
    }
    cr_assert_null(ol__cmd_info(0));
    cr_assert_null(ol__cmd_info(9999));
}

Test(cmd, writer_tracks_the_highest_level)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(w.level, 0);
    cr_assert_eq(ol__entry_add_stop(&w, 1, "a"), 0);
    cr_assert_eq(w.level, ol__cmd_info(OL_CMD_STOP)->level);
    ol__entry_w_close(&w);
}

Test(cmd, spawn_config_must_be_msgpack)
{
    struct ol__entry_w w;
    struct ol__buf out;
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];
    uint8_t junk = 0xc1;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, 1, "a", "counter", &junk, 1, 1, 0), 0);
    ol__buf_init(&out);
    cr_assert_eq(ol__entry_w_finish(&w, &out), 0);
    cr_assert_eq(ol__entry_decode(out.base, out.len, &e, err), OL_EMALFORMED);
    cr_assert(strstr(err, "spawn config") != NULL, "%s", err);
    ol__entry_w_close(&w);
    ol__buf_close(&out);
}

/* A hand-off wait past the limit is refused with a message naming it, so
 * no node holds an agent for an absurd time on a peer's word. */
Test(cmd, move_hand_off_wait_is_bounded)
{
    struct ol__entry_w w;
    struct ol__buf out;
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_move(&w, 1, "a", 2, 3, 0, 4,
                                    OL_MOVE_HOLD_MAX_MS + 1), 0);
    ol__buf_init(&out);
    cr_assert_eq(ol__entry_w_finish(&w, &out), 0);
    cr_assert_eq(ol__entry_decode(out.base, out.len, &e, err), OL_EMALFORMED);
    cr_assert(strstr(err, "move hand-off wait") != NULL, "%s", err);
    ol__entry_w_reset(&w);
    ol__buf_close(&out);
    cr_assert_eq(ol__entry_add_move(&w, 1, "a", 2, 3, 0, 4,
                                    OL_MOVE_HOLD_MAX_MS), 0);
    ol__buf_init(&out);
    cr_assert_eq(ol__entry_w_finish(&w, &out), 0);
    cr_assert_eq(ol__entry_decode(out.base, out.len, &e, err), 0, "%s", err);
    cr_expect_eq(e.cmds[0].hold_ms, OL_MOVE_HOLD_MAX_MS);
    ol__entry_free(&e);
    ol__entry_w_close(&w);
    ol__buf_close(&out);
}
