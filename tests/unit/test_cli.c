/* Tests of the built `outlast` binary, run as a subprocess against a
 * database built in a temp dir (--db): output, JSON, exit codes, the
 * verify report of a flipped byte, export bundles, keygen, usage errors and
 * the message when no node is running. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_fixture.h"
#include "runtime/ctl.h"
#include "state/query.h"

static char dir[64], dbpath[128], bin[1024];
static char out[1 << 16], err[1 << 14];

static void setup(void)
{
    const char *root = getenv("OL_BUILD_ROOT");

    cr_assert_not_null(root, "OL_BUILD_ROOT is not set (run via meson test)");
    snprintf(bin, sizeof bin, "%s/runtime/bin/outlast", root);
    cr_assert_eq(access(bin, X_OK), 0, "no binary at %s", bin);
    snprintf(dir, sizeof dir, "/tmp/ol-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/outlast.db", dir);
    fx_build_db(dbpath);
}

static void teardown(void)
{
    char cmd[128];

    ol__key_close(&fx_key);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

/* Run `outlast ARGS` (a shell word list) from the temp dir with no
 * OUTLAST_DATA; stdout and stderr land in out/err.  Returns the exit
 * code. */
static int run(const char *fmt, ...)
{
    char args[2048], cmd[4096], o[160], e[160];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/stdout", dir);
    snprintf(e, sizeof e, "%s/stderr", dir);
    snprintf(cmd, sizeof cmd,
             "cd %s && env -u OUTLAST_DATA %s %s >%s 2>%s </dev/null", dir,
             bin, args, o, e);
    st = system(cmd);
    slurp(o, out, sizeof out);
    slurp(e, err, sizeof err);
    cr_assert(WIFEXITED(st), "outlast did not exit normally: %s", args);
    return WEXITSTATUS(st);
}

static json_t *out_json(void)
{
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);

    cr_assert_not_null(j, "stdout is not JSON (%s): %s", je.text, out);
    return j;
}

Test(cli, agents_table_from_a_database_file)
{
    cr_assert_eq(run("agents --db %s", dbpath), 0, "%s", err);
    cr_assert(strstr(out, "NAME") && strstr(out, "STATUS"), "%s", out);
    cr_assert(strstr(out, "ticker") && strstr(out, "sink"), "%s", out);
    cr_assert(strstr(out, "2023-11-14T22:13:20Z ("), "time missing: %s", out);
    cr_assert(strstr(out, " ago)"), "age missing: %s", out);
    /* Hashes are shortened in tables. */
    char h[65];

    ol__hex(fx_hash[3], 32, h);
    h[12] = '\0';
    cr_assert(strstr(out, h) != NULL, "%s", out);
    ol__hex(fx_hash[3], 32, h);
    cr_assert(strstr(out, h) == NULL, "full hash in a table: %s", out);
}

Test(cli, agents_json_and_options_anywhere)
{
    json_t *j, *a;

    cr_assert_eq(run("--json agents --db %s", dbpath), 0, "%s", err);
    j = out_json();
    a = json_object_get(j, "agents");
    cr_assert_eq(json_array_size(a), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1),
                                                       "name")),
                     "ticker");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(a, 1),
                                                    "seq")),
                 3);
    json_decref(j);
    cr_assert_eq(run("--db=%s agents --json", dbpath), 0, "%s", err);
    json_decref(out_json());
}

Test(cli, show_state_as_json)
{
    json_t *j, *a;
    char h[65];

    cr_assert_eq(run("show ticker --db %s --json", dbpath), 0, "%s", err);
    j = out_json();
    a = json_object_get(j, "agent");
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(a, "state"), "v")),
                 3);
    ol__hex(fx_hash[3], 32, h);
    cr_assert_str_eq(json_string_value(json_object_get(a, "hash")), h);
    json_decref(j);
    cr_assert_eq(run("--db %s show ticker", dbpath), 0, "%s", err);
    cr_assert(strstr(out, "state") && strstr(out, "\"v\":3"), "%s", out);
    cr_assert(strstr(out, h) != NULL, "show prints the full hash: %s", out);
}

Test(cli, show_unknown_agent_fails_with_1)
{
    cr_assert_eq(run("show nobody --db %s", dbpath), 1);
    cr_assert(strstr(err, "no agent 'nobody'"), "%s", err);
}

Test(cli, history_with_limit)
{
    json_t *j, *rows;

    cr_assert_eq(run("history ticker --limit 2 --db %s --json", dbpath), 0,
                 "%s", err);
    j = out_json();
    /* {ok, history: {agent, checkpoints}}, as the node answers. */
    rows = json_object_get(json_object_get(j, "history"), "checkpoints");
    cr_assert_eq(json_array_size(rows), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(rows, 0),
                                                    "seq")),
                 3);
    json_decref(j);
    cr_assert_eq(run("--limit 1 history ticker --db %s", dbpath), 0, "%s",
                 err);
    cr_assert(strstr(out, "SEQ") && strstr(out, "PREV"), "%s", out);
}

Test(cli, verify_a_good_database)
{
    char p[160];

    cr_assert_eq(run("verify --db %s", dbpath), 0, "%s%s", out, err);
    cr_assert(strstr(out, "3 checkpoints") && strstr(out, "all verify"),
              "%s", out);
    /* Read only: nothing is created beside a closed database. */
    snprintf(p, sizeof p, "%s-wal", dbpath);
    cr_expect_neq(access(p, F_OK), 0, "verify created %s", p);
    snprintf(p, sizeof p, "%s-shm", dbpath);
    cr_expect_neq(access(p, F_OK), 0, "verify created %s", p);
}

Test(cli, verify_reports_a_flipped_body_byte_by_agent_and_seq)
{
    json_t *j, *p;

    fx_flip_body_byte(dbpath, "ticker", 2, 3);
    cr_assert_eq(run("verify --db %s", dbpath), 1, "%s", out);
    cr_assert(strstr(out, "agent 'ticker' seq 2:") != NULL, "%s", out);
    cr_assert(strstr(out, "1 problem"), "%s", out);
    cr_assert_eq(run("verify --db %s --json", dbpath), 1);
    j = out_json();
    p = json_array_get(json_object_get(j, "problems"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(p, "agent")),
                     "ticker");
    cr_assert_eq(json_integer_value(json_object_get(p, "seq")), 2);
    cr_assert_eq(json_integer_value(json_object_get(j, "bad")), 1);
    json_decref(j);
    /* Limited to another agent, nothing is bad. */
    cr_assert_eq(run("verify --db %s --agent sink", dbpath), 0, "%s", out);
}

Test(cli, show_refuses_a_tampered_head)
{
    fx_flip_body_byte(dbpath, "ticker", 3, 2);
    cr_assert_eq(run("show ticker --db %s", dbpath), 1);
    cr_assert(strstr(err, "seq 3"), "%s", err);
}

Test(cli, verify_trust_keys_are_checked)
{
    char pk[65];

    cr_assert_eq(run("verify --db %s --trust abc", dbpath), 2);
    cr_assert(strstr(err, "64 hex digits"), "%s", err);
    ol__pk_hex(fx_key.pk, pk);
    cr_assert_eq(run("verify --db %s --trust %s --trust %s", dbpath, pk, pk),
                 0, "%s", err);
}

Test(cli, export_bundle_verifies)
{
    char bundle[160];
    struct stat st;

    snprintf(bundle, sizeof bundle, "%s/ticker.bundle", dir);
    cr_assert_eq(run("export ticker --out %s --db %s", bundle, dbpath), 0,
                 "%s", err);
    cr_assert(strstr(out, "3 checkpoints"), "%s", out);
    cr_assert_eq(stat(bundle, &st), 0);
    cr_assert_eq(st.st_mode & 077, 0, "bundle readable by others");
    cr_assert_eq(run("verify --db %s", bundle), 0, "%s%s", out, err);
    cr_assert(strstr(out, "3 checkpoints of 1 agent"), "%s", out);
    cr_assert_eq(run("agents --db %s --json", bundle), 0);
    json_t *j = out_json();

    cr_assert_eq(json_array_size(json_object_get(j, "agents")), 1);
    json_decref(j);
    /* The node key in meta is never exported. */
    cr_assert_eq(run("export ticker --out %s --db %s", bundle, dbpath), 1);
    cr_assert(strstr(err, "exists"), "%s", err);
    snprintf(bundle, sizeof bundle, "%s/all.bundle", dir);
    cr_assert_eq(run("export --all --out %s --db %s", bundle, dbpath), 0,
                 "%s", err);
    cr_assert_eq(run("verify --db %s", bundle), 0, "%s", out);
    cr_assert_eq(run("export nobody --out %s/x --db %s", dir, dbpath), 1);
}

Test(cli, export_json_decodes_states)
{
    json_t *j, *rows;

    cr_assert_eq(run("export ticker --json --db %s", dbpath), 0, "%s", err);
    j = out_json();
    rows = json_object_get(j, "checkpoints");
    cr_assert_eq(json_array_size(rows), 3);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_array_get(rows, 0), "state"), "v")),
                 1);
    cr_assert_str_eq(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_array_get(rows, 0), "outbox"),
                           0),
            "to")),
        "sink");
    json_decref(j);
}

Test(cli, keygen_writes_0600_and_refuses_to_overwrite)
{
    char key[160], first[80];
    struct stat st;
    struct ol__key k;
    char e[OL_ERRMSG_SIZE], hex[65];

    snprintf(key, sizeof key, "%s/node.key", dir);
    cr_assert_eq(run("keygen --out %s", key), 0, "%s", err);
    cr_assert_eq(strlen(out), 65, "prints the public key: %s", out);
    snprintf(first, sizeof first, "%s", out);
    cr_assert_eq(stat(key, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(ol__key_load(&k, key, e), 0, "%s", e);
    ol__pk_hex(k.pk, hex);
    ol__key_close(&k);
    cr_assert_eq(strncmp(first, hex, 64), 0);
    cr_assert_eq(run("keygen --out %s", key), 1);
    cr_assert(strstr(err, "--force"), "%s", err);
    cr_assert_eq(run("keygen --out %s --force", key), 0);
    cr_assert(strcmp(out, first) != 0, "--force kept the old key");
    /* The default path is in the data dir. */
    cr_assert_eq(run("--data-dir %s/d keygen --json", dir), 0, "%s", err);
    json_t *j = out_json();

    cr_assert(strstr(json_string_value(json_object_get(j, "path")),
                     "/d/node.key"));
    json_decref(j);
}

Test(cli, usage_errors_exit_2)
{
    cr_assert_eq(run("frobnicate"), 2);
    cr_assert(strstr(err, "unknown command 'frobnicate'"), "%s", err);
    cr_assert_eq(run(""), 2);
    cr_assert_eq(run("show"), 2);
    cr_assert(strstr(err, "missing argument"), "%s", err);
    cr_assert_eq(run("agents --bogus"), 2);
    cr_assert(strstr(err, "unknown option '--bogus'"), "%s", err);
    cr_assert_eq(run("history ticker --limit ten --db %s", dbpath), 2);
    cr_assert_eq(run("send ticker '{\"a\":'"), 2);
    cr_assert(strstr(err, "send: message is not valid JSON: line 1 column"),
              "%s", err);
    cr_assert_eq(run("spawn counter c1 --config '[1]'"), 2);
    /* 17 levels: one more than a node accepts.  Refused here, with the
     * limit, before any node is asked. */
    cr_assert_eq(run("send ticker '[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]'"), 2);
    cr_assert(strstr(err, "message nests deeper than 16 levels"), "%s", err);
    cr_assert_eq(run("spawn counter c1 --config "
                     "'{\"a\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}'"),
                 2);
    cr_assert(strstr(err, "--config nests deeper than 16 levels"), "%s",
              err);
    cr_assert_eq(run("show 'bad name'"), 2);
    cr_assert_eq(run("status --db %s", dbpath), 2);
    cr_assert_eq(run("--timeout x status"), 2);
    cr_assert_eq(run("cluster add 1 host:1 nothex"), 2);
    cr_assert_eq(run("cluster frob"), 2);
    cr_assert_eq(run("export ticker"), 2);
    cr_assert_eq(run("--data-dir"), 2);
}

Test(cli, help_and_version)
{
    cr_assert_eq(run("--help"), 0);
    cr_assert(strstr(out, "usage: outlast"), "%s", out);
    cr_assert_eq(run("help verify"), 0);
    cr_assert(strstr(out, "--trust"), "%s", out);
    cr_assert_eq(run("history --help"), 0);
    cr_assert(strstr(out, "--limit"), "%s", out);
    cr_assert_eq(run("--version"), 0);
    cr_assert(strncmp(out, "outlast ", 8) == 0, "%s", out);
    cr_assert_eq(run("help nope"), 2);
}

Test(cli, no_running_node_exits_3_with_the_reason)
{
    cr_assert_eq(run("status"), 3);
    cr_assert(strstr(err, "no node is running with data dir "
                          "'./outlast-data'"),
              "%s", err);
    cr_assert(strstr(err, "start outlastd or pass --data-dir / --db"), "%s",
              err);
    cr_assert_eq(run("--data-dir %s agents", dir), 3);
    cr_assert(strstr(err, "control.sock"), "%s", err);
    cr_assert_eq(run("send ticker '{\"n\":1}' --json"), 3);
    json_t *j = out_json();

    cr_assert(json_is_false(json_object_get(j, "ok")));
    json_decref(j);
}

/* ---- against a node: a control server in a thread of this process that
 * answers like a daemon, using the queries on the fixture database ---- */

static uv_loop_t node_loop;
static uv_async_t node_stop;
static struct ol__ctl *node_ctl;
static pthread_t node_thread;
static struct ol__store node_db;
static char node_sock[160];

static void pack_s(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static const msgpack_object *arg(const msgpack_object *m, const char *k)
{
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (m->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR &&
            m->via.map.ptr[i].key.via.str.size == strlen(k) &&
            memcmp(m->via.map.ptr[i].key.via.str.ptr, k, strlen(k)) == 0)
            return &m->via.map.ptr[i].val;
    return NULL;
}

/* {"ok": true, key: <query>, "live": {...}} */
static void reply_query(struct ol__ctl_req *req, const msgpack_object *args,
                        int which)
{
    char e[OL_ERRMSG_SIZE], name[80] = "";
    struct ol__buf b;
    msgpack_packer pk;
    const msgpack_object *n = arg(args, "name"), *lim = arg(args, "limit");
    int rv;

    if (n && n->type == MSGPACK_OBJECT_STR)
        snprintf(name, sizeof name, "%.*s", (int)n->via.str.size,
                 n->via.str.ptr);
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    if (which == 2) { /* history: the query's map plus ok */
        msgpack_pack_map(&pk, 3);
        pack_s(&pk, "ok");
        msgpack_pack_true(&pk);
        pack_s(&pk, "agent");
        pack_s(&pk, name);
        pack_s(&pk, "checkpoints");
        struct ol__buf h;
        msgpack_packer hp;

        ol__buf_init(&h);
        msgpack_packer_init(&hp, &h, ol__buf_write);
        rv = ol__query_history(node_db.db, name,
                               lim ? (uint32_t)lim->via.u64 : 0, &hp, e);
        /* Take the array out of {agent, checkpoints: [...]}. */
        if (rv == 0) {
            msgpack_unpacked u;
            size_t off = 0;

            msgpack_unpacked_init(&u);
            msgpack_unpack_next(&u, (const char *)h.base, h.len, &off);
            msgpack_pack_object(&pk, *arg(&u.data, "checkpoints"));
            msgpack_unpacked_destroy(&u);
        }
        ol__buf_close(&h);
    } else {
        msgpack_pack_map(&pk, 3);
        pack_s(&pk, "ok");
        msgpack_pack_true(&pk);
        pack_s(&pk, which == 0 ? "agents" : "agent");
        rv = which == 0 ? ol__query_agents(node_db.db, &pk, NULL, e)
                        : ol__query_show(node_db.db, name, &pk, e);
        pack_s(&pk, "live");
        if (which == 0) {
            msgpack_pack_map(&pk, 1);
            pack_s(&pk, "ticker");
        }
        msgpack_pack_map(&pk, 4);
        pack_s(&pk, "local");
        msgpack_pack_true(&pk);
        pack_s(&pk, "degraded");
        msgpack_pack_true(&pk);
        pack_s(&pk, "phase");
        pack_s(&pk, "idle");
        pack_s(&pk, "queued");
        msgpack_pack_uint32(&pk, 2);
    }
    if (rv != 0)
        ol__ctl_reply_error(req, rv, "%s", e);
    else
        ol__ctl_reply(req, b.base, b.len);
    ol__buf_close(&b);
}

static void node_handler(void *data, struct ol__ctl_req *req, const char *op,
                         const msgpack_object *args)
{
    struct ol__buf b;
    msgpack_packer pk;
    const msgpack_object *m;

    (void)data;
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    if (strcmp(op, "agents") == 0 || strcmp(op, "show") == 0 ||
        strcmp(op, "history") == 0) {
        reply_query(req, args, op[0] == 'a' ? 0 : op[0] == 's' ? 1 : 2);
    } else if (strcmp(op, "status") == 0) {
        msgpack_pack_map(&pk, 3);
        pack_s(&pk, "ok");
        msgpack_pack_true(&pk);
        pack_s(&pk, "node");
        msgpack_pack_map(&pk, 3);
        pack_s(&pk, "id");
        msgpack_pack_uint32(&pk, 1);
        pack_s(&pk, "role");
        pack_s(&pk, "leader");
        pack_s(&pk, "uptime_ms");
        msgpack_pack_uint32(&pk, 125000);
        pack_s(&pk, "cluster");
        msgpack_pack_map(&pk, 1);
        pack_s(&pk, "voters");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, 1);
        msgpack_pack_uint32(&pk, 2);
        ol__ctl_reply(req, b.base, b.len);
    } else if (strcmp(op, "spawn") == 0) {
        m = arg(args, "config");
        if (m == NULL || m->type != MSGPACK_OBJECT_MAP ||
            !arg(args, "kind") || !arg(args, "name")) {
            ol__ctl_reply_error(req, OL_EINVAL, "bad spawn request");
        } else {
            msgpack_pack_map(&pk, 4);
            pack_s(&pk, "ok");
            msgpack_pack_true(&pk);
            pack_s(&pk, "name");
            msgpack_pack_object(&pk, *arg(args, "name"));
            pack_s(&pk, "owner");
            msgpack_pack_uint32(&pk, 1);
            pack_s(&pk, "epoch");
            msgpack_pack_uint32(&pk, 1);
            ol__ctl_reply(req, b.base, b.len);
        }
    } else if (strcmp(op, "send") == 0) {
        m = arg(args, "message");
        msgpack_pack_map(&pk, 3);
        pack_s(&pk, "ok");
        msgpack_pack_true(&pk);
        pack_s(&pk, "name");
        msgpack_pack_object(&pk, *arg(args, "name"));
        pack_s(&pk, "msg_seq"); /* echo the message's size back */
        msgpack_pack_uint32(&pk, m && m->type == MSGPACK_OBJECT_ARRAY
                                     ? m->via.array.size
                                     : 0);
        ol__ctl_reply(req, b.base, b.len);
    } else if (strcmp(op, "stop") == 0) {
        ol__ctl_reply_error(req, OL_ESTATE, "agent 'ticker' is already "
                                            "stopped");
    } else {
        ol__ctl_reply_error(req, OL_EINVAL, "unknown op '%s'", op);
    }
    ol__buf_close(&b);
}

static void node_stop_cb(uv_async_t *a)
{
    ol__ctl_close(node_ctl, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *node_run(void *p)
{
    (void)p;
    uv_run(&node_loop, UV_RUN_DEFAULT);
    return NULL;
}

static void node_setup(void)
{
    char e[OL_ERRMSG_SIZE];

    setup();
    snprintf(node_sock, sizeof node_sock, "%s/control.sock", dir);
    cr_assert_eq(ol__store_open(&node_db, dbpath, OL_STORE_READ), 0);
    cr_assert_eq(uv_loop_init(&node_loop), 0);
    cr_assert_eq(uv_async_init(&node_loop, &node_stop, node_stop_cb), 0);
    cr_assert_eq(ol__ctl_start(&node_loop, node_sock, node_handler, NULL,
                               &node_ctl, e),
                 0, "%s", e);
    cr_assert_eq(pthread_create(&node_thread, NULL, node_run, NULL), 0);
}

static void node_teardown(void)
{
    uv_async_send(&node_stop);
    pthread_join(node_thread, NULL);
    uv_loop_close(&node_loop);
    ol__store_close(&node_db);
    teardown();
}

TestSuite(cli_node, .init = node_setup, .fini = node_teardown,
          .timeout = 60);

Test(cli_node, status_and_cluster_sections)
{
    cr_assert_eq(run("--data-dir %s status", dir), 0, "%s", err);
    cr_assert(strstr(out, "uptime    2m5s"), "%s", out);
    cr_assert(strstr(out, "leader"), "%s", out);
    cr_assert(strstr(out, "voters"), "%s", out);
    cr_assert_eq(run("status --socket %s --json", node_sock), 0, "%s", err);
    json_t *j = out_json();

    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(j, "node"), "uptime_ms")),
                 125000);
    json_decref(j);
}

Test(cli_node, agents_merge_the_live_map)
{
    cr_assert_eq(run("--data-dir %s agents", dir), 0, "%s", err);
    cr_assert(strstr(out, "QUEUED"), "%s", out);
    cr_assert(strstr(out, "running, degraded"), "%s", out);
    cr_assert_eq(run("--data-dir %s show ticker", dir), 0, "%s", err);
    cr_assert(strstr(out, "running, degraded"), "%s", out);
    cr_assert(strstr(out, "runs here, phase idle, 2 queued"), "%s", out);
    cr_assert_eq(run("--data-dir %s history ticker --limit 1 --json", dir),
                 0, "%s", err);
    json_t *j = out_json();

    cr_assert_eq(json_array_size(json_object_get(j, "checkpoints")), 1);
    json_decref(j);
    cr_assert_eq(run("--data-dir %s show nobody", dir), 1);
    cr_assert(strstr(err, "no agent 'nobody'") && strstr(err, "OL_ENOTFOUND"),
              "%s", err);
}

Test(cli_node, spawn_send_and_a_failing_stop)
{
    cr_assert_eq(run("--data-dir %s spawn counter c1 --config '{\"a\":1}'",
                     dir),
                 0, "%s", err);
    cr_assert(strstr(out, "spawned 'c1' (kind counter) on node 1, epoch 1"),
              "%s", out);
    cr_assert_eq(run("--data-dir %s send ticker '[1, {\"b\": 2}]'", dir), 0,
                 "%s", err);
    cr_assert(strstr(out, "msg_seq 2"), "%s", out);
    cr_assert_eq(run("--data-dir %s send ticker -- -1", dir), 0, "%s", err);
    cr_assert_eq(run("--data-dir %s stop ticker", dir), 1);
    cr_assert(strstr(err, "already stopped") && strstr(err, "OL_ESTATE"),
              "%s", err);
    cr_assert_eq(run("--data-dir %s stop ticker --json", dir), 1);
    json_t *j = out_json();

    cr_assert_str_eq(json_string_value(json_object_get(j, "code")),
                     "OL_ESTATE");
    json_decref(j);
    cr_assert_eq(run("--data-dir %s cluster status", dir), 1);
    cr_assert(strstr(err, "unknown op 'cluster.status'"), "%s", err);
}
