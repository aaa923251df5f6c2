/*
 * `outlast effects NAME`: an agent's effects (ol_host.effect) with their
 * keys, states, attempts and outcomes.  The node answers from the agent's
 * stored checkpoints and, when it hosts the agent, what it knows of the
 * open ones (runtime/handlers_effects.c); with --db the database file is
 * read directly, and the states are the store's alone.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "state/effects.h"
#include "state/store.h"
#include "cli.h"

#define OUTCOME_WIDTH 48

/* Read the database file and wrap the list as the node's answer. */
static int offline(struct ol__cli *c, const char *name, int state,
                   uint32_t limit, struct ol__cli_resp *r)
{
    char err[OL_ERRMSG_SIZE] = "";
    struct ol__fxlist l;
    struct ol__store st;
    struct ol__buf b;
    msgpack_packer pk;
    int rv;

    if ((rv = ol__cli_open_db(c, &st)) != 0)
        return rv;
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    rv = ol__fxlist_load(st.db, name, &l, err);
    if (rv == 0)
        rv = ol__fxlist_pack(&l, state, limit, &pk, err);
    ol__fxlist_free(&l);
    ol__store_close(&st);
    if (rv == 0)
        rv = ol__cli_resp_wrap(r, "effects", b.base, b.len, err);
    ol__buf_close(&b);
    if (rv != 0)
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv),
                            "effects: %s (%s)", err, ol_err_name(rv));
    return 0;
}

/* Bytes as text when they are printable ASCII, else as hex. */
static void text_or_hex(const char *hex, char *out, size_t cap)
{
    size_t n = strlen(hex) / 2, k = 0;
    int printable = n > 0;
    char *text = malloc(n + 1);

    if (text == NULL) {
        snprintf(out, cap, "%s", hex);
        return;
    }
    for (size_t i = 0; i < n && printable; i++) {
        unsigned v;

        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || v < 0x20 || v > 0x7e)
            printable = 0;
        else
            text[k++] = (char)v;
    }
    text[k] = '\0';
    if (printable)
        snprintf(out, cap, "\"%s\"", text);
    else
        snprintf(out, cap, "0x%s", hex);
    free(text);
}

/* The outcome cell: the result (JSON when it is msgpack), or for an open
 * effect the node's last failure, cut to OUTCOME_WIDTH. */
static void outcome_cell(const msgpack_object *row, char *out, size_t cap)
{
    const msgpack_object *res = ol__mp_get(row, "result");
    char hex[2 * OUTCOME_WIDTH + 3], *json = NULL;

    out[0] = '\0';
    if (ol__mp_getu(row, "closed_seq") == 0) {
        ol__mp_gets(row, "note", out, cap);
    } else if (res && res->type != MSGPACK_OBJECT_NIL) {
        json = ol__cli_compact_json(res);
        snprintf(out, cap, "%s", json ? json : "?");
    } else if (ol__mp_gets(row, "result_hex", hex, sizeof hex)[0] &&
               strcmp(hex, "-") != 0) {
        text_or_hex(hex, out, cap);
    }
    free(json);
    if (out[0] == '\0')
        snprintf(out, cap, "-");
    if (strlen(out) > OUTCOME_WIDTH && cap > OUTCOME_WIDTH)
        strcpy(out + OUTCOME_WIDTH - 3, "...");
}

static void add_row(struct ol__table *t, const msgpack_object *k)
{
    char key[40], id[24], kind[40], seq[48], epoch[24], state[24];
    char attempts[16], outcome[4 * OUTCOME_WIDTH];
    const msgpack_object *ep = ol__mp_get(k, "epoch");
    const char *cells[8];

    snprintf(seq, sizeof seq, "%" PRIu64 "/%" PRIu64, ol__mp_getu(k, "seq"),
             ol__mp_getu(k, "idx"));
    if (ep && ep->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(epoch, sizeof epoch, "%" PRIu64, ep->via.u64);
    else
        snprintf(epoch, sizeof epoch, "-");
    ol__mp_gets(k, "state", state, sizeof state);
    outcome_cell(k, outcome, sizeof outcome);
    cells[0] = ol__mp_gets(k, "key", key, sizeof key);
    cells[1] = ol__mp_gets(k, "id", id, sizeof id);
    cells[2] = ol__mp_gets(k, "kind", kind, sizeof kind);
    cells[3] = seq;
    cells[4] = epoch;
    cells[5] = state;
    cells[6] = ol__mp_gets(k, "attempts", attempts, sizeof attempts);
    cells[7] = outcome;
    ol__table_add(t, cells);
}

static int print_effects(const struct ol__cli_resp *r)
{
    static const char *const head[] = {
        "KEY", "ID", "KIND", "SEQ/IDX", "EPOCH", "STATE", "ATTEMPTS",
        "OUTCOME",
    };
    const msgpack_object *fx = ol__mp_get(r->root, "effects");
    const msgpack_object *rows = ol__mp_get(fx, "effects");
    uint64_t total = ol__mp_getu(fx, "total"), first;
    struct ol__table t;

    if (rows == NULL || rows->type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "outlast: effects: the response has no effects\n");
        return OL_EXIT_FAIL;
    }
    if (rows->via.array.size == 0) {
        printf("no effects\n");
    } else {
        if (ol__table_init(&t, 8, head) != 0)
            return OL_EXIT_FAIL;
        for (uint32_t i = 0; i < rows->via.array.size; i++)
            add_row(&t, &rows->via.array.ptr[i]);
        ol__table_print(&t, stdout);
        ol__table_free(&t);
    }
    if (total > rows->via.array.size)
        printf("%u of %" PRIu64 " effects shown (newest first)\n",
               rows->via.array.size, total);
    first = ol__mp_getu(fx, "first_seq");
    if (first > 1)
        printf("checkpoints from seq %" PRIu64 " on are stored: effects "
               "closed before that are not listed\n",
               first);
    return 0;
}

int ol__cmd_effects(struct ol__cli *c)
{
    const char *limit_s = NULL, *state_s = NULL, *pos[1];
    const struct ol__cli_opt opts[] = {
        {.name = "--limit", .value = &limit_s},
        {.name = "--state", .value = &state_s},
        {0},
    };
    struct ol__cli_resp r;
    struct ol__cli_req q;
    uint64_t limit = 0;
    int n, rv, state = 0;

    if ((rv = ol__cli_parse(c, opts, pos, 1, 1, &n)) != 0 ||
        (rv = ol__cli_check_name(c, pos[0])) != 0)
        return rv;
    if (limit_s && ol__cli_parse_u64(limit_s, UINT32_MAX, &limit) != 0)
        return ol__cli_usage_err(c, "--limit must be a whole number, not "
                                    "'%s'", limit_s);
    if (state_s && (state = ol__fxrow_state_parse(state_s)) == 0)
        return ol__cli_usage_err(c, "--state must be pending, in-flight, "
                                    "retrying, done, failed, in-doubt or "
                                    "open, not '%s'", state_s);
    if (c->db_set) {
        rv = offline(c, pos[0], state, (uint32_t)limit, &r);
    } else {
        ol__cli_req_open(&q, "effects");
        ol__pk_kv_str(&q.m, "name", pos[0]);
        if (state_s)
            ol__pk_kv_str(&q.m, "state", state_s);
        if (limit_s)
            ol__pk_kv_uint(&q.m, "limit", (uint32_t)limit);
        rv = ol__cli_req_send(c, &q, &r);
    }
    if (rv != 0)
        return rv;
    rv = c->json ? ol__cli_print_json(r.root) : print_effects(&r);
    ol__cli_resp_free(&r);
    return rv;
}
