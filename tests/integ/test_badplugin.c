/*
 * Plugins that are broken or misbehave, against a real outlastd: each is
 * refused or quarantined with a message that says what was wrong, a step
 * whose checkpoint did not commit releases no message, and the node keeps
 * running its other agents throughout.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>

#include "tests/support/daemon.h"
#include "tests/support/wait.h"

static struct td d;

static const char base[] =
    "[agent.ledger]\n"
    "kind = ledger\n"
    "[agent.ticker]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 20}\n";

static void setup(void)
{
    td_init(&d, "badplugin", base);
    cr_assert_eq(td_start(&d, 10000), 0, "outlastd did not start; see %s",
                 d.log);
}

static void teardown(void)
{
    td_cleanup(&d);
}

TestSuite(badplugin, .init = setup, .fini = teardown, .timeout = 120);

static void expect_refused(const char *kind, const char *needle)
{
    char err[512];
    char status[32];

    cr_assert_neq(td_spawn_agent(&d, kind, "x", NULL, err, sizeof err), 0,
                  "spawning '%s' was accepted", kind);
    cr_expect(strstr(err, needle) != NULL, "'%s': error '%s' lacks '%s'",
              kind, err, needle);
    td_agent_status(&d, "x", status, sizeof status, NULL, NULL, 0);
    cr_expect_str_empty(status, "a refused plugin left an agent behind");
}

static int quarantined(struct td *t, void *name)
{
    char status[32];

    td_agent_status(t, name, status, sizeof status, NULL, NULL, 0);
    return strcmp(status, "quarantined") == 0;
}

static int ledger_has(struct td *t, void *arg)
{
    return td_state_int(t, "ledger", "entries", 0) >= *(int64_t *)arg;
}

static int ticking(struct td *t, void *arg)
{
    return td_state_int(t, "ticker", "count", 0) > *(int64_t *)arg;
}

/* The node still runs its other agents. */
static void expect_alive(void)
{
    int64_t before = td_state_int(&d, "ticker", "count", 0);

    cr_expect(td_until(ticking, &d, &before, 5000),
              "the counter stopped counting");
}

/* Spawn `name` of `kind` with `cfg`; it must end quarantined with a
 * reason that contains `why`. */
static void quarantine(const char *kind, const char *name, const char *cfg,
                       const char *why)
{
    char err[512], status[32], reason[512];

    cr_assert_eq(td_spawn_agent(&d, kind, name, cfg, err, sizeof err), 0,
                 "%s", err);
    cr_assert(td_until(quarantined, &d, (void *)name, 10000),
              "'%s' not quarantined", name);
    td_agent_status(&d, name, status, sizeof status, NULL, reason,
                    sizeof reason);
    cr_expect(strstr(reason, why) != NULL, "%s", reason);
}

Test(badplugin, wrong_abi_is_refused_with_the_abi_named)
{
    expect_refused("bad_abi", "ABI 99");
    expect_alive();
}

Test(badplugin, missing_entry_symbol_is_refused)
{
    expect_refused("no_entry", "missing symbol 'ol_agent_entry'");
    expect_refused("entry_fails", "refused the host");
    expect_refused("null_vtable", "returned no vtable");
    expect_refused("missing_fn", "no valid 'handle'");
    expect_refused("no_such_plugin", "no plugin 'no_such_plugin.so'");
    expect_alive();
}

Test(badplugin, invalid_state_quarantines_and_releases_nothing)
{
    int64_t two = 2;

    /* Two good steps (each sends {n}), then save() writes garbage. */
    quarantine("bad_state", "bs",
               "{\"after\": 2, \"notify\": \"ledger\", "
               "\"interval_ms\": 10}",
               "not one msgpack object");
    expect_alive();
    /* Steps 1 and 2 committed and released their messages; step 3 did
     * not commit, so its message must not exist anywhere. */
    cr_expect(td_until(ledger_has, &d, &two, 5000), "released messages lost");
    /* Observation window: no third message turns up later. */
    tw_window_ms(200);
    cr_expect_eq(td_state_int(&d, "ledger", "entries", -1), 2);
    cr_expect_eq(td_state_int(&d, "ledger", "gaps", -1), 0);
    {
        sqlite3 *db = td_db(&d);

        cr_expect_eq(td_q1(db, "SELECT count(*) FROM checkpoints WHERE "
                               "agent = 'bs'"),
                     2);
        cr_expect_eq(td_q1(db, "SELECT count(*) FROM mailbox WHERE "
                               "from_agent = 'bs'"),
                     0);
        sqlite3_close(db);
    }
}

Test(badplugin, handle_error_quarantines_after_committed_steps)
{
    int64_t two = 2;

    quarantine("handle_fails", "hf",
               "{\"fail_on\": 3, \"notify\": \"ledger\", "
               "\"interval_ms\": 10}",
               "handle() returned");
    cr_expect(td_until(ledger_has, &d, &two, 5000), "released messages lost");
    /* Observation window: no third message turns up later. */
    tw_window_ms(200);
    cr_expect_eq(td_state_int(&d, "ledger", "entries", -1), 2);
    expect_alive();
}

Test(badplugin, oversized_state_quarantines)
{
    char err[512], reason[512], status[32];

    /* Its first save fails, so the spawn fails with the reason, and the
     * agent is kept, quarantined. */
    cr_assert_neq(td_spawn_agent(&d, "huge_state", "hs", NULL, err,
                                 sizeof err),
                  0, "a spawn whose first checkpoint failed succeeded");
    cr_expect(strstr(err, "more than") != NULL, "%s", err);
    cr_assert(td_until(quarantined, &d, "hs", 10000), "not quarantined");
    td_agent_status(&d, "hs", status, sizeof status, NULL, reason,
                    sizeof reason);
    cr_expect(strstr(reason, "more than") != NULL, "%s", reason);
    expect_alive();
}

Test(badplugin, restore_failure_on_resume_quarantines)
{
    char err[512], reason[512], status[32];
    int64_t seq;

    cr_assert_eq(td_spawn_agent(&d, "restore_fails", "rf", NULL, err,
                                sizeof err),
                 0, "%s", err);
    td_wait_reached(&d, "rf", NULL, 1, 10000);
    cr_assert_eq(td_term(&d, 10000), 0);
    {
        sqlite3 *db = td_db(&d);

        seq = td_q1(db, "SELECT max(seq) FROM checkpoints WHERE "
                        "agent = 'rf'");
        sqlite3_close(db);
    }
    cr_assert_gt(seq, 0);
    cr_assert_eq(td_start(&d, 10000), 0);
    cr_assert(td_until(quarantined, &d, "rf", 10000), "not quarantined");
    td_agent_status(&d, "rf", status, sizeof status, NULL, reason,
                    sizeof reason);
    cr_expect(strstr(reason, "restore() refused") != NULL, "%s", reason);
    expect_alive();
    /* Its history is kept. */
    {
        sqlite3 *db = td_db(&d);

        cr_expect_eq(td_q1(db, "SELECT max(seq) FROM checkpoints WHERE "
                               "agent = 'rf'"),
                     seq);
        sqlite3_close(db);
    }
}

Test(badplugin, quarantined_agent_can_be_stopped_and_restarted)
{
    char err[512], status[32];

    cr_assert_eq(td_spawn_agent(&d, "handle_fails", "hf2",
                                "{\"fail_on\": 2, \"interval_ms\": 10}", err,
                                sizeof err),
                 0, "%s", err);
    cr_assert(td_until(quarantined, &d, "hf2", 10000));
    {
        struct td_resp r;

        cr_assert_eq(td_call(&d, &r, "op", "start", "name", "hf2", NULL), 0,
                     "%s", td_errmsg(&r, err, sizeof err));
        td_resp_free(&r);
    }
    /* It runs again under a new epoch, and fails again on its 2nd event. */
    cr_assert(td_until(quarantined, &d, "hf2", 10000));
    {
        struct td_resp r;

        cr_assert_eq(td_call(&d, &r, "op", "stop", "name", "hf2", NULL), 0,
                     "%s", td_errmsg(&r, err, sizeof err));
        td_resp_free(&r);
    }
    td_agent_status(&d, "hf2", status, sizeof status, NULL, NULL, 0);
    cr_expect_str_eq(status, "stopped");
}
