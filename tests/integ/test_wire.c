/*
 * The node-to-node wire in a real 3-node cluster on loopback: every node's
 * `cluster status --json` shows a round trip for each peer and byte
 * counters that grow while agents commit, and compression shrinks what
 * goes out for states that compress (ledgers filling with messages).  A
 * node with `compress = off` works with nodes that compress: its links
 * carry plain frames both ways and its agents' checkpoints replicate.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"

#define START_MS 15000
#define LEADER_MS 15000
#define WAIT_MS 20000

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(wire, .fini = teardown, .timeout = 300);

/* `outlast cluster status --json` of node i. */
static json_t *status_json(int i)
{
    char *out = NULL;
    json_t *j;
    int rv = td_sh(&out, "%s --socket %s --json cluster status 2>&1",
                   td_bin("outlast"), c.nodes[i].d.sock);

    cr_assert_eq(rv, 0, "cluster status on node %d: exit %d: %s", i + 1, rv,
                 out ? out : "");
    j = json_loads(out ? out : "", 0, NULL);
    cr_assert_not_null(j, "cluster status on node %d: not JSON: %s", i + 1,
                       out);
    free(out);
    return j;
}

static json_t *wire_of(json_t *st, int i)
{
    json_t *w = json_object_get(st, "wire");

    cr_assert(json_is_object(w), "node %d: no wire entry", i + 1);
    return w;
}

static json_t *peer_of(json_t *w, uint64_t id)
{
    json_t *peers = json_object_get(w, "peers"), *p;
    size_t k;

    json_array_foreach(peers, k, p)
        if ((uint64_t)json_integer_value(json_object_get(p, "id")) == id)
            return p;
    return NULL;
}

static int64_t num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    cr_assert(json_is_integer(v), "no integer '%s'", key);
    return json_integer_value(v);
}

/* Every node has an RTT sample for each of its peers. */
static int all_rtts(void)
{
    int ok = 1;

    for (int i = 0; i < c.n && ok; i++) {
        json_t *st = status_json(i), *w = wire_of(st, i);

        for (int j = 0; j < c.n && ok; j++) {
            json_t *p;

            if (j == i)
                continue;
            p = peer_of(w, c.nodes[j].id);
            ok = p != NULL && num(p, "rtt_samples") > 0 &&
                 json_number_value(json_object_get(p, "rtt_ms")) > 0;
        }
        json_decref(st);
    }
    return ok;
}

/* Ledgers whose states grow with every message: they compress well. */
static void spawn_ledgers(int via)
{
    struct td *d = &c.nodes[via].d;
    char err[512];

    cr_assert_eq(td_spawn_agent(d, "ledger", "ledger", NULL, err, sizeof err),
                 0, "spawn the ledger: %s", err);
    cr_assert_eq(td_spawn_agent(d, "sender", "sender", "{\"batch\": 4}", err,
                                sizeof err),
                 0, "spawn the sender: %s", err);
    cr_assert_eq(td_send_json(d, "sender",
                              "{\"to\": \"ledger\", \"n\": 1000000}", err,
                              sizeof err),
                 0, "send to the sender: %s", err);
}

static void wait_rtts(void)
{
    int ok = 0;

    for (int t = 0; t < WAIT_MS / 250 && !(ok = all_rtts()); t++)
        td_sleep_ms(250);
    if (!ok) {
        for (int i = 0; i < c.n; i++) {
            json_t *st = status_json(i);
            char *txt = json_dumps(json_object_get(st, "wire"), JSON_COMPACT);

            cr_log_error("node %d: %s", i + 1, txt);
            free(txt);
            json_decref(st);
        }
        cr_assert_fail("not every node measured a round trip to every "
                       "peer");
    }
}

/* Sum of wire bytes out over all nodes, and of payload bytes. */
static void totals(int64_t *wire, int64_t *data)
{
    *wire = *data = 0;
    for (int i = 0; i < c.n; i++) {
        json_t *st = status_json(i), *w = wire_of(st, i);

        *wire += num(w, "bytes_out");
        *data += num(w, "data_out");
        json_decref(st);
    }
}

/* The text of `cluster status` on node i has the wire line and a row per
 * peer with its round trip and compression. */
static void text_lists_peers(int i)
{
    char *out = NULL, *table, row[32];
    int rv = td_sh(&out, "%s --socket %s cluster status 2>&1",
                   td_bin("outlast"), c.nodes[i].d.sock);

    cr_assert_eq(rv, 0, "cluster status: %s", out ? out : "");
    cr_assert(strstr(out, "\nwire ") != NULL, "no wire line:\n%s", out);
    cr_assert(strstr(out, "out per checkpoint committed") != NULL, "%s", out);
    table = strstr(out, "\nPEER");
    cr_assert_not_null(table, "no peer table:\n%s", out);
    for (int j = 0; j < c.n; j++) {
        char *p;

        if (j == i)
            continue;
        snprintf(row, sizeof row, "\n%" PRIu64 " ", c.nodes[j].id);
        p = strstr(table, row);
        cr_assert_not_null(p, "no row for peer %d:\n%s", j + 1, out);
        cr_assert(strstr(p, " ms ") != NULL && strstr(p, "zstd") != NULL,
                  "peer %d's row lacks its RTT or compression:\n%s", j + 1,
                  out);
    }
    free(out);
}

Test(wire, status_shows_rtt_per_peer_and_growing_compressed_bytes)
{
    struct tc_opts o = {.n = 3, .tag = "wire-"};
    int64_t w0, d0, w1, d1;
    int leader;
    json_t *st;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    spawn_ledgers(leader);
    wait_rtts();

    totals(&w0, &d0);
    td_sleep_ms(3000);
    totals(&w1, &d1);
    cr_assert_gt(w1, w0, "wire bytes did not grow");
    cr_assert_gt(d1, d0, "payload bytes did not grow");
    cr_assert_lt(w1 - w0, d1 - d0,
                 "compression did not shrink the traffic: %" PRId64
                 " bytes on the wire for %" PRId64 " of payload",
                 w1 - w0, d1 - d0);

    st = status_json(leader);
    for (int j = 0; j < c.n; j++) {
        json_t *p;

        if (j == leader)
            continue;
        p = peer_of(wire_of(st, leader), c.nodes[j].id);
        cr_assert_not_null(p);
        cr_assert_str_eq(json_string_value(json_object_get(p, "compression")),
                         "zstd");
        cr_assert_gt(num(p, "bytes_out"), 0);
        cr_assert_gt(num(p, "bytes_in"), 0);
    }
    cr_assert_str_eq(
        json_string_value(json_object_get(wire_of(st, leader), "compress")),
        "auto");
    json_decref(st);
    text_lists_peers(leader);
    cr_assert_eq(tc_check(&c, 30000), 0);
}

/* Node i's config with `line` added to its [cluster] section. */
static void add_cluster_key(int i, const char *line)
{
    char *text = NULL, *at, *out;
    size_t len = 0;
    FILE *f = fopen(c.nodes[i].d.conf, "r");

    cr_assert_not_null(f);
    cr_assert_gt(getdelim(&text, &len, '\0', f), 0);
    fclose(f);
    at = strstr(text, "[cluster]\n");
    cr_assert_not_null(at);
    at += strlen("[cluster]\n");
    out = malloc(strlen(text) + strlen(line) + 2);
    sprintf(out, "%.*s%s\n%s", (int)(at - text), text, line, at);
    f = fopen(c.nodes[i].d.conf, "w");
    cr_assert_not_null(f);
    fputs(out, f);
    fclose(f);
    free(out);
    free(text);
}

Test(wire, a_node_with_compression_off_works_with_the_others)
{
    struct tc_opts o = {.n = 3, .tag = "wireoff-"};
    int leader, off = 2;
    int64_t before;
    json_t *st;

    tc_init(&c, &o);
    for (int i = 0; i < c.n; i++)
        tc_write_config(&c, i);
    add_cluster_key(off, "compress = off");
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, START_MS), 0,
                     "node %d did not start; see %s", i + 1,
                     c.nodes[i].d.log);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    spawn_ledgers(leader);
    wait_rtts();

    /* Its links are plain both ways; the other link compresses. */
    for (int i = 0; i < c.n; i++) {
        st = status_json(i);
        for (int j = 0; j < c.n; j++) {
            json_t *p;
            const char *want = (i == off || j == off) ? "off" : "zstd";

            if (j == i)
                continue;
            p = peer_of(wire_of(st, i), c.nodes[j].id);
            cr_assert_not_null(p);
            cr_assert_str_eq(
                json_string_value(json_object_get(p, "compression")), want,
                "node %d's link to node %d", i + 1, j + 1);
        }
        json_decref(st);
    }
    st = status_json(off);
    cr_assert_str_eq(
        json_string_value(json_object_get(wire_of(st, off), "compress")),
        "off");
    /* Plain frames: what it sends costs more on the wire than the payload
     * (lengths and tags), where the compressing nodes' cost less. */
    cr_assert_geq(num(wire_of(st, off), "bytes_out"),
                  num(wire_of(st, off), "data_out"));
    json_decref(st);

    /* Checkpoints keep reaching it. */
    before = tc_ckpt_count(&c, off);
    for (int t = 0; t < WAIT_MS / 250 && tc_ckpt_count(&c, off) <= before + 10;
         t++)
        td_sleep_ms(250);
    cr_assert_gt(tc_ckpt_count(&c, off), before + 10,
                 "the node with compression off stopped getting commits");
    cr_assert_eq(tc_check(&c, 30000), 0);
}
