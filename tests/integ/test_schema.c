/*
 * The JSON contract: every command's `--json` output, and the HTTP API's
 * JSON, checked against the JSON Schemas in docs/schema/ with real nodes
 * (one single node, one 3-node cluster).  tests/schema/validate.py does
 * the checking with Debian's python3-jsonschema under /usr/bin/python3
 * (scripts/deps.sh installs it); the tests skip only when that package is
 * missing.
 *
 * `schemas` below names every schema file and the test that exercises
 * it; the coverage test fails when a command in `outlast --help` has no
 * schema, or when docs/schema/ holds a file no test uses.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/cluster.h"
#include "tests/support/daemon.h"
#include "tests/support/http.h"

static const char *const schemas[] = {
    /* single node */
    "status", "agents", "show", "history", "effects", "spawn", "logs",
    "logs-follow",
    "stop", "start", "bulk",
    "restart", "rm", "config", "send", "upgrade", "verify", "export",
    "keygen", "recover", "cluster-init", "error", "http-status",
    /* cluster */
    "cluster-status", "cluster-add", "cluster-remove", "cluster-demote",
    "cluster-promote", "cluster-transfer", NULL};

/* Commands whose --json is refused with a usage error: top is a live
 * view; its data is in status, cluster status and agents. */
static const char *const no_json[] = {"top", "help", NULL};

static struct td d;
static struct tc c;

static void teardown(void)
{
    td_cleanup(&d);
    tc_cleanup(&c);
}

TestSuite(schema, .fini = teardown, .timeout = 300);

static const char *src(void)
{
    const char *s = getenv("OL_SOURCE_ROOT");

    return s && *s ? s : ".";
}

/* Validate the JSON file `file` against docs/schema/<schema>.json (with
 * `lines`, each line of the file). */
static void check_doc(const char *schema, const char *file, const char *what,
                      int lines)
{
    char *out = NULL;
    int rc = td_sh(&out, "'%s/tests/schema/validate.py' %s"
                         "'%s/docs/schema/%s.json' '%s'",
                   src(), lines ? "--lines " : "", src(), schema, file);

    if (rc == 77) {
        free(out);
        cr_skip_test("python3-jsonschema is not installed "
                     "(scripts/deps.sh installs it)");
    }
    cr_assert_eq(rc, 0, "%s: output does not match %s.json:\n%s", what,
                 schema, out ? out : "");
    free(out);
}

static void check_file(const char *schema, const char *file, const char *what)
{
    check_doc(schema, file, what, 0);
}

/* `outlast --json ARGS` on `node`, retried (bounded) while it fails: a
 * membership change still in progress.  Each failure prints the error
 * object; the success must match `schema`. */
static void check_retried(struct td *node, const char *schema, const char *args)
{
    char file[256], *out = NULL;

    snprintf(file, sizeof file, "%s/%s.json", node->root, schema);
    for (int i = 0;; i++) {
        if (td_sh(&out, "{ '%s' --data-dir '%s' --json %s > '%s'; }",
                  td_bin("outlast"), node->data, args, file) == 0) {
            free(out);
            check_file(schema, file, args);
            return;
        }
        free(out);
        check_file("error", file, args);
        cr_assert_lt(i, 100, "%s kept failing", args);
        td_sleep_ms(100);
    }
}

/* Run `outlast --json ARGS` against node `n`, expecting exit code
 * `want`, and check its stdout against `schema`. */
static void check_cmd(struct td *n, const char *schema, int want,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void check_cmd(struct td *n, const char *schema, int want,
                      const char *fmt, ...)
{
    char args[1024], file[256], *out = NULL;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(file, sizeof file, "%s/out.json", n->root);
    /* stdout alone goes to the file; stderr is shown on failure. */
    rc = td_sh(&out, "{ '%s' --data-dir '%s' --json %s > '%s'; }",
               td_bin("outlast"), n->data, args, file);
    cr_assert_eq(rc, want, "outlast %s --json: exit %d, wanted %d\n%s", args,
                 rc, want, out ? out : "");
    free(out);
    check_file(schema, file, args);
}

/* GET `path` from node `n`'s HTTP server, expecting status `want`, and
 * check the body against `schema`. */
static void check_http(struct td *n, const char *schema, int want,
                       const char *path)
{
    char addr[128], url[256], file[256];
    struct th_resp r;
    FILE *f;

    cr_assert_eq(th_node_http(n, addr, sizeof addr), 0, "no HTTP address");
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    cr_assert_eq(th_request("GET", url, NULL, &r), want, "GET %s: %d %s",
                 url, r.code, r.body ? r.body : "");
    snprintf(file, sizeof file, "%s/http.json", n->root);
    f = fopen(file, "w");
    cr_assert_not_null(f);
    fwrite(r.body, 1, r.len, f);
    fclose(f);
    th_resp_free(&r);
    check_file(schema, file, path);
}

static int listed(const char *const *list, const char *s, size_t n)
{
    for (size_t i = 0; list[i]; i++)
        if (strlen(list[i]) >= n && strncmp(list[i], s, n) == 0 &&
            (list[i][n] == '\0' || list[i][n] == '-'))
            return 1;
    return 0;
}

Test(schema, every_command_and_file_is_covered)
{
    char *out = NULL, *p, *line, path[512], name[128];
    int commands = 0, rc;
    DIR *dir;
    struct dirent *e;

    rc = td_sh(&out, "'%s/tests/schema/validate.py' --check-schemas "
                     "'%s/docs/schema'",
               src(), src());
    if (rc == 77)
        cr_skip_test("python3-jsonschema is not installed");
    cr_assert_eq(rc, 0, "docs/schema holds an invalid schema:\n%s", out);
    free(out);

    /* Every command in `outlast --help` has a schema (or refuses
     * --json). */
    cr_assert_eq(td_sh(&out, "'%s' --help", td_bin("outlast")), 0);
    p = strstr(out, "Commands:\n");
    cr_assert_not_null(p, "no command list in outlast --help:\n%s", out);
    p += strlen("Commands:\n");
    for (line = p; line && line[0] == ' ' && line[1] == ' ';) {
        size_t n = strspn(line + 2, "abcdefghijklmnopqrstuvwxyz-");

        cr_assert(n > 0 && n < sizeof name);
        memcpy(name, line + 2, n);
        name[n] = '\0';
        if (!listed(no_json, name, n)) {
            cr_expect(listed(schemas, name, n),
                      "command '%s' has no schema in docs/schema/", name);
            commands++;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    free(out);
    cr_assert_geq(commands, 15, "read only %d commands from --help",
                  commands);

    /* Every file in docs/schema/ is one the tests here check. */
    snprintf(path, sizeof path, "%s/docs/schema", src());
    dir = opendir(path);
    cr_assert_not_null(dir, "%s", path);
    while ((e = readdir(dir)) != NULL) {
        size_t n = strlen(e->d_name);
        int found = 0;

        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        for (size_t i = 0; schemas[i]; i++)
            if (strlen(schemas[i]) == n - 5 &&
                strncmp(schemas[i], e->d_name, n - 5) == 0)
                found = 1;
        cr_expect(found, "docs/schema/%s is checked by no test", e->d_name);
    }
    closedir(dir);
    /* And every schema named here exists. */
    for (size_t i = 0; schemas[i]; i++) {
        snprintf(path, sizeof path, "%s/docs/schema/%s.json", src(),
                 schemas[i]);
        cr_expect(access(path, R_OK) == 0, "missing %s", path);
    }
}

Test(schema, single_node)
{
    char *out = NULL, conf[512];

    td_init(&d, "schema", "[http]\nlisten = 127.0.0.1:0\n");
    cr_assert_eq(td_start(&d, 15000), 0, "outlastd did not start");

    check_cmd(&d, "spawn", 0, "spawn counter c1 --config '{\"interval_ms\": 200}'");
    check_cmd(&d, "spawn", 0, "spawn counter c2 --no-wait");
    check_cmd(&d, "status", 0, "status");
    check_cmd(&d, "agents", 0, "agents");
    check_cmd(&d, "agents", 0, "agents --all --limit 1");
    check_cmd(&d, "show", 0, "show c1");
    check_cmd(&d, "history", 0, "history c1");
    check_cmd(&d, "history", 0, "history c1 --limit 1");
    check_cmd(&d, "effects", 0, "effects c1");
    check_cmd(&d, "effects", 0, "effects c1 --state open --limit 5");
    check_cmd(&d, "logs", 0, "logs c1 --lines 5");
    snprintf(conf, sizeof conf, "%s/follow.json", d.root);
    cr_assert_eq(td_sh(&out, "{ '%s' --data-dir '%s' --json logs c1 -f "
                             "--interval 100 --duration 500 > '%s'; }",
                       td_bin("outlast"), d.data, conf),
                 0, "%s", out);
    free(out);
    check_doc("logs-follow", conf, "logs -f", 1);
    check_cmd(&d, "send", 0, "send c1 '{\"add\": 1}'");
    check_cmd(&d, "config", 0, "config c1 '{\"interval_ms\": 300}'");
    check_cmd(&d, "bulk", 0, "spawn counter --prefix b- --count 3");
    check_cmd(&d, "bulk", 1, "spawn counter b-0 .bad b-3");
    check_cmd(&d, "bulk", 0, "stop --prefix b-");
    check_cmd(&d, "stop", 0, "stop c2");
    check_cmd(&d, "start", 0, "start c2");
    check_cmd(&d, "restart", 0, "restart c2");
    check_cmd(&d, "rm", 0, "rm c2");
    check_cmd(&d, "agents", 0, "agents --all");
    check_cmd(&d, "upgrade", 0, "upgrade counter");
    check_cmd(&d, "verify", 0, "verify");
    check_cmd(&d, "export", 0, "export c1");
    /* Messages between agents: outbox entries and acks in the export. */
    check_cmd(&d, "spawn", 0, "spawn sender s1");
    check_cmd(&d, "send", 0, "send s1 '{\"to\": \"c1\", \"n\": 2}'");
    for (int i = 0;; i++) {
        int rc = td_sh(&out, "'%s' --data-dir '%s' export --all --json | "
                             "grep -c -e '\"to\": \"c1\"' "
                             "-e '\"from\": \"s1\"'",
                       td_bin("outlast"), d.data);

        rc = rc == 0 && atoi(out) >= 2;
        free(out);
        if (rc)
            break;
        cr_assert_lt(i, 100, "no message from s1 reached c1's checkpoints");
        td_sleep_ms(50);
    }
    check_cmd(&d, "export", 0, "export --all");
    check_cmd(&d, "export", 0, "export c1 --out '%s/bundle.db'", d.root);
    /* --db reads the database file directly. */
    check_cmd(&d, "agents", 0, "agents --db '%s/bundle.db'", d.root);
    check_cmd(&d, "show", 0, "show c1 --db '%s/bundle.db'", d.root);
    check_cmd(&d, "history", 0, "history c1 --db '%s/bundle.db'", d.root);
    check_cmd(&d, "effects", 0, "effects c1 --db '%s/bundle.db'", d.root);
    check_cmd(&d, "export", 0, "export --all --db '%s/bundle.db'", d.root);
    check_cmd(&d, "keygen", 0, "keygen --out '%s/k.key'", d.root);
    /* verify of a damaged copy: ok false, the problems listed, exit 1. */
    cr_assert_eq(td_sh(&out, "cp '%s/bundle.db' '%s/bad.db' && sqlite3 "
                             "'%s/bad.db' 'UPDATE checkpoints SET time_ms = "
                             "time_ms + 1 WHERE seq = 1'",
                       d.root, d.root, d.root),
                 0, "%s", out);
    free(out);
    check_cmd(&d, "verify", 1, "verify --db '%s/bad.db'", d.root);
    cr_assert_eq(td_sh(&out, "grep -c '\"problem\"' '%s/out.json'", d.root),
                 0, "no problem listed for a damaged copy");
    free(out);
    check_http(&d, "http-status", 200, "/api/status");
    check_http(&d, "logs", 200, "/api/logs?agent=c1&limit=3");
    check_http(&d, "error", 400, "/api/logs?agent=c1&limit=0");

    /* Failures print the error object. */
    check_cmd(&d, "error", 1, "show nosuch");
    check_cmd(&d, "error", 1, "cluster status");
    check_cmd(&d, "error", 1, "spawn counter c1");

    /* cluster init writes a fresh data dir from a cluster config. */
    snprintf(conf, sizeof conf, "%s/cluster.ini", d.root);
    cr_assert_eq(td_sh(&out,
                       "printf '[node]\\nid = 1\\ndata_dir = %s/fresh\\n"
                       "[cluster]\\nname = s\\nlisten = 127.0.0.1:1\\n"
                       "[peer.2]\\naddress = 127.0.0.1:2\\npubkey = %064d\\n'"
                       " > '%s'",
                       d.root, 1, conf),
                 0, "%s", out);
    free(out);
    check_cmd(&d, "cluster-init", 0, "cluster init --config '%s'", conf);

    /* A stopped node: unreachable (exit 3) prints the error object;
     * recover works. */
    cr_assert_eq(td_term(&d, 15000), 0);
    check_cmd(&d, "error", 3, "status");
    check_cmd(&d, "recover", 0, "recover --new-history");
}

Test(schema, cluster, .timeout = 400)
{
    struct tc_opts o = {.n = 3, .tag = "schema",
                        .extra = "[http]\nlisten = 127.0.0.1:0\n"};
    char err[512], *out = NULL, key[256], pk[80], args[160];
    int leader, follower;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0, "no leader");
    cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "counter", "k1", NULL,
                                err, sizeof err),
                 0, "%s", err);
    follower = (leader + 1) % c.n;

    for (int i = 0; i < c.n; i++) {
        check_cmd(&c.nodes[i].d, "cluster-status", 0, "cluster status");
        check_cmd(&c.nodes[i].d, "status", 0, "status");
        check_cmd(&c.nodes[i].d, "agents", 0, "agents");
        check_cmd(&c.nodes[i].d, "show", 0, "show k1");
        check_cmd(&c.nodes[i].d, "history", 0, "history k1");
        check_http(&c.nodes[i].d, "http-status", 200, "/api/status");
        check_http(&c.nodes[i].d, "logs", 200, "/api/logs?agent=k1");
    }
    check_cmd(&c.nodes[follower].d, "logs", 0, "logs k1");
    check_cmd(&c.nodes[follower].d, "verify", 0,
              "verify --cluster '%s/outlast.db' '%s/outlast.db' "
              "'%s/outlast.db'",
              c.nodes[0].d.data, c.nodes[1].d.data, c.nodes[2].d.data);
    check_cmd(&c.nodes[follower].d, "error", 1,
              "cluster remove %llu", (unsigned long long)c.nodes[leader].id);

    /* Demote the follower, promote it back once that landed. */
    check_cmd(&c.nodes[leader].d, "cluster-demote", 0, "cluster demote %llu",
              (unsigned long long)c.nodes[follower].id);
    snprintf(args, sizeof args, "cluster promote %llu",
             (unsigned long long)c.nodes[follower].id);
    check_retried(&c.nodes[leader].d, "cluster-promote", args);

    /* Remove the follower, then add a new member in its place. */
    check_cmd(&c.nodes[leader].d, "cluster-remove", 0, "cluster remove %llu",
              (unsigned long long)c.nodes[follower].id);
    snprintf(key, sizeof key, "%s/new.key", c.nodes[leader].d.root);
    cr_assert_eq(td_sh(&out, "'%s' keygen --out '%s' --json | "
                             "sed -n 's/.*\"pk\": \"\\([0-9a-f]*\\)\".*/\\1/p'",
                       td_bin("outlast"), key),
                 0);
    snprintf(pk, sizeof pk, "%.64s", out);
    free(out);
    cr_assert_eq(strlen(pk), 64, "no key from keygen");
    /* The removal is still in progress for a while: retry (bounded). */
    snprintf(args, sizeof args, "cluster add 9 127.0.0.1:1 %s", pk);
    check_retried(&c.nodes[leader].d, "cluster-add", args);
    /* Leadership handed to the third node; the old leader then refuses. */
    follower = (leader + 2) % c.n;
    check_cmd(&c.nodes[leader].d, "cluster-transfer", 0,
              "cluster transfer %llu",
              (unsigned long long)c.nodes[follower].id);
    check_cmd(&c.nodes[leader].d, "error", 1, "cluster transfer");
}
