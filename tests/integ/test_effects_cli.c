/*
 * `outlast effects`, `export --json` and `verify` against a real node
 * whose agent acts through effects (the `effector` test plugin,
 * tests/plugins/effector.c: its world is a journal file with one line,
 * and the key, each time it was asked to act).
 *
 * What is shown: every key the world saw is listed by `effects`, done,
 * with its outcome, and in the export with its outcome; the chain
 * verifies; an effect being performed is listed in flight, and after a
 * kill -9 and restart (a new epoch) the same effect, performed again with
 * the same key, is listed as in doubt until its outcome is checkpointed.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/daemon.h"
#include "tests/support/wait.h"

#define WAIT_MS 15000

static struct td d;
static char world[64], journal[96];

static void setup(void)
{
    snprintf(world, sizeof world, "/tmp/ol-fxcli-XXXXXX");
    cr_assert_not_null(mkdtemp(world));
    chmod(world, 0777); /* an agent host started by root runs as nobody */
    snprintf(journal, sizeof journal, "%s/journal", world);
}

static void teardown(void)
{
    char *out = NULL;

    td_cleanup(&d);
    td_sh(&out, "rm -rf %s", world);
    free(out);
}

TestSuite(effects_cli, .init = setup, .fini = teardown, .timeout = 240);

static const char *src(void)
{
    const char *s = getenv("OL_SOURCE_ROOT");

    return s && *s ? s : ".";
}

static void start(const char *cfg)
{
    char conf[1024];

    snprintf(conf, sizeof conf,
             "[agent.e1]\nkind = effector\n"
             "config = {\"journal\": \"%s\"%s%s}\n",
             journal, cfg[0] ? ", " : "", cfg);
    td_init(&d, "fxcli", conf);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "the node did not start");
    td_wait_reached(&d, "e1", NULL, 1, WAIT_MS);
}

static void send_do(int n)
{
    char json[32], err[256];

    snprintf(json, sizeof json, "{\"do\": %d}", n);
    cr_assert_eq(td_send_json(&d, "e1", json, err, sizeof err), 0,
                 "send: %s", err);
}

/* Run `outlast --data-dir DATA ARGS` into `file` (stdout); exit code. */
static int cli(const char *file, const char *args)
{
    char *out = NULL;
    int rc = td_sh(&out, "{ '%s' --data-dir '%s' %s > '%s'; }",
                   td_bin("outlast"), d.data, args, file);

    if (rc != 0)
        fprintf(stderr, "outlast %s: exit %d\n%s", args, rc, out ? out : "");
    free(out);
    return rc;
}

/* How many lines of `file` match the fixed string `s`. */
static int count(const char *file, const char *s)
{
    char *out = NULL;
    int n;

    td_sh(&out, "grep -c -F -e '%s' '%s'", s, file);
    n = out ? atoi(out) : 0;
    free(out);
    return n;
}

static int done_at_least(struct td *n, void *arg)
{
    return td_state_int(n, "e1", "done", 0) >= *(int64_t *)arg;
}

/* The keys the world saw, one per line, into `file`. */
static void journal_keys(const char *file)
{
    char *out = NULL;

    cr_assert_eq(td_sh(&out, "sed -n 's/^key=\\([0-9a-f]*\\) .*/\\1/p' "
                             "'%s' | sort -u > '%s'",
                       journal, file),
                 0, "%s", out);
    free(out);
}

static void check_schema(const char *schema, const char *file)
{
    char *out = NULL;
    int rc = td_sh(&out, "'%s/tests/schema/validate.py' "
                         "'%s/docs/schema/%s.json' '%s'",
                   src(), src(), schema, file);

    if (rc != 77)
        cr_expect_eq(rc, 0, "%s does not match %s.json:\n%s", file, schema,
                     out ? out : "");
    free(out);
}

Test(effects_cli, done_effects_are_listed_exported_and_verify)
{
    char fx[128], tab[128], exp[128], keys[128], args[256], *out = NULL;
    int64_t three = 3;

    start("");
    snprintf(fx, sizeof fx, "%s/fx.json", d.root);
    snprintf(tab, sizeof tab, "%s/fx.txt", d.root);
    snprintf(exp, sizeof exp, "%s/export.json", d.root);
    snprintf(keys, sizeof keys, "%s/keys", d.root);
    send_do(3);
    cr_assert(td_until(done_at_least, &d, &three, WAIT_MS),
              "e1 did not get 3 effects done");
    /* The outcome of the last one is checkpointed by the step that took
     * it: wait until the store says so too. */
    for (int i = 0;; i++) {
        cr_assert_eq(cli(fx, "--json effects e1 --state done"), 0);
        if (count(fx, "\"state\": \"done\"") == 3)
            break;
        cr_assert_lt(i, 200, "the store never listed 3 effects done");
        td_sleep_ms(50);
    }
    check_schema("effects", fx);
    cr_expect_eq(count(fx, "\"kind\": \"note\""), 3);
    cr_expect_eq(count(fx, "\"result\": {"), 3, "no outcome shown");
    /* Every key the world saw is listed, and in the export. */
    journal_keys(keys);
    cr_assert_eq(td_sh(&out, "wc -l < '%s'", keys), 0);
    cr_assert_eq(atoi(out), 3, "the world saw %s keys", out);
    free(out);
    cr_assert_eq(cli(exp, "export e1 --json"), 0);
    check_schema("export", exp);
    td_sh(&out, "for k in $(cat '%s'); do "
                "grep -q -F \"$k\" '%s' || echo \"effects: $k\"; "
                "grep -q -F \"$k\" '%s' || echo \"export: $k\"; done",
          keys, fx, exp);
    cr_expect(out == NULL || out[0] == '\0', "keys missing:\n%s", out);
    free(out);
    cr_expect_eq(count(exp, "\"status\": \"done\""), 3,
                 "the export lacks the outcomes");
    /* The table. */
    cr_assert_eq(cli(tab, "effects e1"), 0);
    cr_expect_eq(count(tab, " done "), 3, "the table lacks done rows");
    cr_expect_eq(count(tab, "KEY"), 1);
    /* The chain, effects included, verifies. */
    cr_assert_eq(td_term(&d, WAIT_MS), 0);
    cr_expect_eq(cli(tab, "verify"), 0, "verify failed");
    cr_expect_eq(count(tab, "all verify"), 1);
    /* --db reads the same from the file. */
    snprintf(args, sizeof args, "--json effects e1 --db '%s/outlast.db'",
             d.data);
    cr_assert_eq(cli(fx, args), 0);
    check_schema("effects", fx);
    cr_expect_eq(count(fx, "\"state\": \"done\""), 3);
    cr_expect_eq(count(fx, "\"hosted\""), 0, "--db knows no host");
}

static int listed_as(struct td *n, void *arg)
{
    char file[128];
    const char *want = arg;

    snprintf(file, sizeof file, "%s/poll.json", n->root);
    return cli(file, "--json effects e1") == 0 && count(file, want) > 0;
}

Test(effects_cli, in_flight_then_in_doubt_after_a_restart)
{
    char fx[128];
    int64_t one = 1;

    /* perform() waits 2 s before acting: long enough to see it. */
    start("\"before\": 2000");
    snprintf(fx, sizeof fx, "%s/fx.json", d.root);
    send_do(1);
    cr_assert(td_until(listed_as, &d, "\"state\": \"in flight\"", WAIT_MS),
              "the effect was never listed in flight");
    cr_assert_eq(cli(fx, "--json effects e1"), 0);
    cr_expect_eq(count(fx, "\"in_doubt\": false"), 1);
    cr_expect_eq(count(fx, "\"hosted\": true"), 1);
    /* Killed while it runs: the new epoch finds it open, in doubt. */
    td_kill9(&d);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "the node did not restart");
    cr_assert(td_until(listed_as, &d, "\"in_doubt\": true", WAIT_MS),
              "the effect was never listed in doubt after the restart");
    cr_assert(td_until(done_at_least, &d, &one, WAIT_MS),
              "the effect never finished");
    cr_assert(td_until(listed_as, &d, "\"state\": \"done\"", WAIT_MS),
              "the effect was never listed done");
}
