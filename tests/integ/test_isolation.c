/*
 * A bad agent never takes down the node: real outlastd processes run
 * misbehaving plugins (tests/plugins/misbehave.c) beside well-behaved
 * agents.  For each way a plugin can go wrong, the bad agent's host dies
 * (or is killed at the step deadline), the agent is quarantined after
 * exactly the configured number of crashes, the node keeps running, the
 * other agents keep committing (their step rate before and during is
 * printed, not asserted), a sibling of the same kind resumes from its
 * committed checkpoints, and no committed checkpoint is lost.
 *
 * Plugins configured to run inside the node take the node down instead:
 * the restarted node finds the step mark and reports the crash, so they
 * are quarantined after as many node deaths.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tests/support/chain.h"
#include "tests/support/daemon.h"
#include "tests/support/wait.h"
#include "tests/support/http.h"

#define LIMIT 3
/* A hosted step's deadline.  A sanitizer's report of a crash (it
 * symbolizes the stack) can outlast a short one on a loaded machine, and
 * the crash would count as an overrun. */
#if defined(__SANITIZE_ADDRESS__)
#define DEADLINE "3000"
#else
#define DEADLINE "300"
#endif

static struct td d;
static struct td_seen *seen;

static const char hosted[] =
    "[http]\n"
    "listen = 127.0.0.1:0\n"
    "[agents]\n"
    "step_deadline_ms = " DEADLINE "\n"
    "crash_limit = 3\n"
    "mailbox_max = 400\n"
    "[plugin.misbehave]\n"
    "memory_mb = 128\n"
    "[checkpoint]\n"
    "retain = 0\n"
    "[agent.ticker]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 20}\n"
    "[agent.ledger]\n"
    "kind = ledger\n";

static const char inproc[] =
    "stop_timeout_ms = 3000\n"
    "[agents]\n"
    "step_deadline_ms = 300\n"
    "crash_limit = 3\n"
    "[plugin.misbehave]\n"
    "isolation = none\n"
    "[checkpoint]\n"
    "retain = 0\n"
    "[agent.ticker]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 20}\n";

static void start_with(const char *tag, const char *config)
{
    td_init(&d, tag, config);
    cr_assert_eq(td_start(&d, 10000), 0, "outlastd did not start; see %s",
                 d.log);
    seen = td_seen_new();
}

static void teardown(void)
{
    td_seen_free(seen);
    seen = NULL;
    td_cleanup(&d);
}

TestSuite(isolation, .fini = teardown, .timeout = 240);

/* ---- helpers ---- */

static void observe(void)
{
    sqlite3 *db = td_db(&d);

    td_seen_observe(seen, db);
    sqlite3_close(db);
}

static int64_t ticks(void)
{
    return td_state_int(&d, "ticker", "count", 0);
}

static int status_is(struct td *t, const char *name, const char *want)
{
    char status[32];

    td_agent_status(t, name, status, sizeof status, NULL, NULL, 0);
    return strcmp(status, want) == 0;
}

static int quarantined(struct td *t, void *name)
{
    observe();
    return status_is(t, name, "quarantined");
}

static int64_t crashes(const char *name)
{
    return td_crashes(&d, name);
}

static void spawn(const char *name, const char *config)
{
    char err[512];

    cr_assert_eq(td_spawn_agent(&d, "misbehave", name, config, err,
                                sizeof err),
                 0, "spawn %s: %s", name, err);
}

/* How many threads of the node and its agent hosts the kernel shows
 * asleep in nanosleep (/proc/PID/task/TID/wchan); -1 if this kernel hides
 * wait channels. */
static int threads_in_nanosleep(void)
{
    char *out = NULL;
    int n = -1;

    td_sh(&out,
          "w=$(for p in %ld $(pgrep -f -- '[o]utlast-agent-host .*--parent "
          "%ld '); do for t in /proc/$p/task/*/wchan; do cat $t 2>/dev/null; "
          "echo; done; done); "
          "if echo \"$w\" | grep -q '[a-z]'; then "
          "echo \"$w\" | grep -c nanosleep; else echo -1; fi",
          (long)d.pid, (long)d.pid);
    if (out)
        n = atoi(out);
    free(out);
    return n;
}

static int hanging(void *arg)
{
    (void)arg;
    return threads_in_nanosleep() != 0;
}

/* A misbehave agent in mode "sleep" with after = 1 commits its first tick
 * and hangs in sleep() in the second, due 20 ms later.  Wait for the first
 * tick's checkpoint, then until a thread of the node or a host sits in
 * nanosleep.  Other threads may sleep there too, and many kernels hide
 * wait channels ("0"), so that wait can pass at once; the hang itself is
 * invisible from outside, and a window of 500 ms past the first tick (25
 * times the 20 ms it needs to start) stands in for it. */
static void wait_hanging(const char *name)
{
    td_wait_reached(&d, name, "ticks", 1, 10000);
    cr_assert(tw_until(hanging, NULL, 10000), "'%s' never hung", name);
    td_sleep_ms(500);
}

/* Start a node with `cfg`, hang a sleeper in its second tick, and SIGTERM
 * the node: it must exit within 15 s.  Returns its exit code. */
static int term_while_hanging(const char *tag, const char *cfg)
{
    uint64_t t0;
    int code;

    start_with(tag, cfg);
    spawn("sleeper", "{\"mode\": \"sleep\", \"after\": 1}");
    wait_hanging("sleeper");
    t0 = td_ms();
    code = td_term(&d, 15000);
    fprintf(stderr, "isolation/%s: exit %d after %" PRIu64 " ms\n", tag,
            code, td_ms() - t0);
    cr_expect_lt(td_ms() - t0, 15000);
    return code;
}

struct seq_arg {
    const char *name;
    int64_t above;
};

static int seq_above(struct td *t, void *arg)
{
    struct seq_arg *s = arg;
    sqlite3 *db = td_db(t);
    char sql[200];
    int64_t seq;

    snprintf(sql, sizeof sql,
             "SELECT max(seq) FROM checkpoints WHERE agent = '%s'", s->name);
    seq = td_q1(db, sql);
    sqlite3_close(db);
    return seq > s->above;
}

static int64_t head_seq(const char *name)
{
    sqlite3 *db = td_db(&d);
    char sql[200];
    int64_t seq;

    snprintf(sql, sizeof sql,
             "SELECT max(seq) FROM checkpoints WHERE agent = '%s'", name);
    seq = td_q1(db, sql);
    sqlite3_close(db);
    return seq;
}

/* Every chain intact and every head seen during the test still there. */
static void expect_history_intact(const char *const *names, int n)
{
    sqlite3 *db = td_db(&d);
    char *out = NULL;
    int rc;

    cr_expect_eq(td_seen_check(seen, db), 0, "committed checkpoints lost");
    for (int i = 0; i < n; i++) {
        struct td_chain c;

        if (td_chain_read(db, names[i], "ticks", &c) != 0)
            continue;
        cr_expect_eq(c.gaps, 0, "'%s': %d seq gaps", names[i], c.gaps);
        cr_expect_eq(c.broken, 0, "'%s': %d broken links", names[i],
                     c.broken);
        cr_expect_eq(c.went_back, 0, "'%s': its ticks went back %d times",
                     names[i], c.went_back);
    }
    sqlite3_close(db);
    rc = td_sh(&out, "%s --db %s/outlast.db verify", td_bin("outlast"),
               d.data);
    cr_expect_eq(rc, 0, "verify failed:\n%s", out ? out : "");
    free(out);
}

/* A figure from `status` ("hosts" section; "crashes" is a map in it). */
static int64_t hosts_u(const char *key, const char *crash_kind)
{
    struct td_resp r;
    int64_t v = -1;

    if (td_call(&d, &r, "op", "status", NULL) == 0) {
        const msgpack_object *h = td_get(&r.u.data, "hosts");

        v = crash_kind ? td_int(td_get(h, "crashes"), crash_kind, -1)
                       : td_int(h, key, -1);
    }
    td_resp_free(&r);
    return v;
}

/* The quarantine is in the database before the node has handled the
 * CRASH command's outcome: wait for its counter. */
static int crash_loop_counted(struct td *t, void *arg)
{
    (void)t;
    (void)arg;
    return hosts_u("crash_loop_quarantines", NULL) >= 1;
}

struct metric_arg {
    char url[128];
    const char *line; /* a whole sample line, "name{labels} value" */
    char *last;       /* the last /metrics body read */
};

static int metric_is(struct td *t, void *arg)
{
    struct metric_arg *m = arg;
    struct th_resp r;
    char want[256];

    (void)t;
    free(m->last);
    m->last = NULL;
    if (th_request("GET", m->url, NULL, &r) != 200) {
        th_resp_free(&r);
        return 0;
    }
    m->last = r.body;
    r.body = NULL;
    th_resp_free(&r);
    snprintf(want, sizeof want, "\n%s\n", m->line);
    return strstr(m->last, want) != NULL;
}

/* The node's counters say what happened: `LIMIT` crashes of `kind` (or of
 * `alt` for some of them, when not NULL), as many host restarts at least,
 * one crash-loop quarantine, in `status` and in /metrics alike. */
static void expect_crash_counters(const char *kind, const char *alt)
{
    struct metric_arg m;
    char addr[64], line[128];
    int64_t n_kind, n_alt;

    cr_expect(td_until(crash_loop_counted, &d, NULL, 10000),
              "status: no crash-loop quarantine counted");
    n_kind = hosts_u(NULL, kind);
    n_alt = alt ? hosts_u(NULL, alt) : 0;
    cr_expect_eq(n_kind + n_alt, LIMIT,
                 "status: %" PRId64 " crashes of kind %s and %" PRId64
                 " of kind %s, not %d in all",
                 n_kind, kind, n_alt, alt ? alt : "-", LIMIT);
    cr_expect_geq(n_kind, 1, "status: no crash of kind %s", kind);
    cr_expect_geq(hosts_u("restarts", NULL), LIMIT,
                  "status: %" PRId64 " host restarts",
                  hosts_u("restarts", NULL));
    cr_expect_eq(hosts_u("crash_loop_quarantines", NULL), 1);
    cr_expect_geq(hosts_u("running", NULL), 1, "no host process running");

    cr_assert_eq(th_node_http(&d, addr, sizeof addr), 0);
    memset(&m, 0, sizeof m);
    snprintf(m.url, sizeof m.url, "http://%s/metrics", addr);
    /* The page's figures may be a second old. */
    m.line = "outlast_quarantines_total{reason=\"crash_loop\"} 1";
    cr_expect(td_until(metric_is, &d, &m, 10000), "no '%s' in:\n%s", m.line,
              m.last ? m.last : "(nothing)");
    snprintf(line, sizeof line,
             "outlast_agent_crashes_total{reason=\"%s\"} %" PRId64, kind,
             n_kind);
    m.line = line;
    cr_expect(metric_is(&d, &m), "no '%s' in:\n%s", line,
              m.last ? m.last : "(nothing)");
    cr_expect(m.last && strstr(m.last, "\noutlast_agent_host_restarts_total "),
              "no host restarts in /metrics");
    free(m.last);
}

/*
 * The common shape: measure the ticker, start a sibling and the bad agent
 * of the same kind, wait for the quarantine, and check what must hold.
 */
static void bad_agent(const char *mode, const char *needle,
                      const char *kind, const char *alt)
{
    char cfg[128], reason[512], status[32];
    int64_t t0, t1, t2, sib_seq;
    uint64_t m0, m1, m2;
    static const char *const all[] = {"ticker", "ledger", "sib", "bad"};
    struct seq_arg sa;

    start_with(mode, hosted);
    m0 = td_ms();
    t0 = ticks();
    /* Measurement window (not an assertion): a second of the ticker's
     * own pace, for the report below. */
    tw_window_ms(1000);
    m1 = td_ms();
    t1 = ticks();
    spawn("sib", "{\"mode\": \"none\"}");
    snprintf(cfg, sizeof cfg, "{\"mode\": \"%s\"}", mode);
    spawn("bad", cfg);
    cr_assert(td_until(quarantined, &d, "bad", 60000),
              "'%s' agent was not quarantined; see %s", mode, d.log);
    m2 = td_ms();
    t2 = ticks();
    fprintf(stderr,
            "isolation/%s: ticker %.0f steps/s before, %.0f steps/s while "
            "the bad agent crashed %d times\n",
            mode, (double)(t1 - t0) * 1000.0 / (double)(m1 - m0),
            (double)(t2 - t1) * 1000.0 / (double)(m2 - m1), LIMIT);

    td_agent_status(&d, "bad", status, sizeof status, NULL, reason,
                    sizeof reason);
    cr_expect(strstr(reason, needle) != NULL, "reason '%s' lacks '%s'",
              reason, needle);
    cr_expect_eq(crashes("bad"), LIMIT, "quarantined after %" PRId64
                 " crashes, not %d", crashes("bad"), LIMIT);
    cr_expect(t2 > t1, "the ticker stopped while the bad agent crashed");
    cr_expect_gt(d.pid, 0, "the node exited");
    /* The sibling was restarted with each crash and goes on. */
    sib_seq = head_seq("sib");
    sa.name = "sib";
    sa.above = sib_seq;
    cr_expect(td_until(seq_above, &d, &sa, 10000),
              "the sibling stopped committing");
    cr_expect(status_is(&d, "sib", "running"));
    sa.name = "ticker";
    sa.above = head_seq("ticker");
    cr_expect(td_until(seq_above, &d, &sa, 10000),
              "the ticker stopped committing");
    observe();
    expect_history_intact(all, 4);
    expect_crash_counters(kind, alt);
}

/* ---- a crash of each kind ---- */

Test(isolation, segfault)
{
    bad_agent("segv", "killed by SIGSEGV in handle() of a timer event",
              "signal", NULL);
}

Test(isolation, abort)
{
    bad_agent("abort", "killed by SIGABRT in handle() of a timer event",
              "signal", NULL);
}

Test(isolation, exit)
{
    /* "exit(3) in handle() of a timer event"; a sanitizer build says
     * "exit() called in ...": its leak check aborts the exiting process. */
    bad_agent("exit", "exit(", "exit", NULL);
}

Test(isolation, stack_overflow)
{
#if defined(__SANITIZE_ADDRESS__)
    /* A sanitizer reporting an overflowed stack can take longer than the
     * deadline: then the node kills the host first. */
    bad_agent("stack", "killed by SIGSEGV in handle()", "signal",
              "deadline");
#else
    bad_agent("stack", "killed by SIGSEGV in handle()", "signal", NULL);
#endif
}

Test(isolation, infinite_loop_hits_the_deadline)
{
    bad_agent("loop",
              "step deadline (" DEADLINE
              " ms) exceeded in handle() of a timer event",
              "deadline", NULL);
}

Test(isolation, sleep_hits_the_deadline)
{
    bad_agent("sleep", "step deadline (" DEADLINE " ms) exceeded", "deadline",
              NULL);
}

Test(isolation, crash_in_a_work_thread)
{
    bad_agent("workcrash", "killed by SIGSEGV in a work function",
              "signal", NULL);
}

Test(isolation, memory_hog_meets_its_limit)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("host processes run without a memory limit under "
                 "AddressSanitizer");
#else
    /* 64 MiB a tick against a 128 MiB data limit: malloc fails, and the
     * plugin writes through the NULL it got. */
    bad_agent("hog", "killed by SIGSEGV in handle() of a timer event",
              "signal", NULL);
#endif
}

/* ---- floods and bad arguments ---- */

struct full_arg {
    int64_t max_rows;
};

static int flood_refused(struct td *t, void *arg)
{
    struct full_arg *f = arg;
    sqlite3 *db = td_db(t);
    int64_t rows = td_q1(db, "SELECT count(*) FROM mailbox WHERE "
                             "to_agent = 'flood'");

    sqlite3_close(db);
    if (rows > f->max_rows)
        f->max_rows = rows;
    return td_state_int(t, "flood", "full", 0) > 0;
}

struct queued_arg {
    int64_t max;
};

static int queued_sample(struct td *t, void *arg)
{
    struct queued_arg *q = arg;
    struct td_resp r;
    const msgpack_object *live, *fl;

    if (td_call(t, &r, "op", "show", "name", "flood", NULL) == 0) {
        live = td_get(&r.u.data, "live");
        fl = live;
        if (fl && td_int(fl, "queued", -1) > q->max)
            q->max = td_int(fl, "queued", -1);
    }
    td_resp_free(&r);
    return 0;
}

Test(isolation, message_flood_is_bounded_and_the_sender_is_told)
{
    struct full_arg f = {0};
    struct queued_arg q = {0};
    int64_t t0, rows;
    sqlite3 *db;

    start_with("flood", hosted);
    t0 = ticks();
    spawn("flood", "{\"mode\": \"flood\", \"after\": 1}");
    cr_assert(td_until(flood_refused, &d, &f, 30000),
              "the flooder never saw OL_AGENT_EFULL");
    /* Observation window (2 s, sampled): the mailbox never grows past
     * its bound while the flood goes on. */
    for (int i = 0; i < 20; i++) {
        (void)flood_refused(&d, &f);
        tw_window_ms(100);
    }
    fprintf(stderr, "isolation/flood: most mailbox rows seen %" PRId64
                    " (limit 400); %" PRId64 " sends refused\n",
            f.max_rows, td_state_int(&d, "flood", "full", 0));
    /* One step sends at most 1024 before the node hears the mailbox is
     * full, and one more may be on its way. */
    cr_expect_leq(f.max_rows, 400 + 2 * 1024, "mailbox grew to %" PRId64,
                  f.max_rows);
    cr_expect_gt(ticks(), t0, "the ticker stopped during the flood");
    cr_expect(status_is(&d, "flood", "running"),
              "a flood is back-pressure, not a crash");

    /* A restart loads a page of the mailbox, not all of it. */
    td_kill9(&d);
    db = td_db(&d);
    rows = td_q1(db, "SELECT count(*) FROM mailbox WHERE to_agent = "
                     "'flood'");
    sqlite3_close(db);
    cr_assert_eq(td_start(&d, 10000), 0);
    /* Observation window (sampled): what the restarted node queues in
     * memory stays bounded. */
    for (int i = 0; i < 20; i++) {
        (void)queued_sample(&d, &q);
        tw_window_ms(20);
    }
    fprintf(stderr, "isolation/flood: %" PRId64 " waiting at restart, at "
                    "most %" PRId64 " queued in memory\n",
            rows, q.max);
    cr_expect_leq(q.max, 300, "%" PRId64 " events queued after a restart",
                  q.max);
}

Test(isolation, null_and_oversized_arguments_get_errors)
{
    char reason[512], status[32];

    start_with("badargs", hosted);
    spawn("args", "{\"mode\": \"badargs\", \"after\": 1}");
    spawn("savenull", "{\"mode\": \"savenull\", \"after\": 1}");
    cr_assert(td_until(quarantined, &d, "savenull", 20000));
    td_agent_status(&d, "savenull", status, sizeof status, NULL, reason,
                    sizeof reason);
    cr_expect(strstr(reason, "NULL") != NULL, "%s", reason);
    cr_expect_eq(crashes("savenull"), -1, "a refused save is not a crash");
    cr_expect_gt(td_state_int(&d, "args", "ticks", 0), 1);
    cr_expect(status_is(&d, "args", "running"));
    {
        /* The last state holds what each call returned. */
        static const struct {
            const char *key;
            int64_t want;
        } want[] = {
            {"send_null_to", -2}, {"send_null_msg", -2}, {"send_big", -18},
            {"send_bad_name", -2}, {"send_not_mp", -4}, {"timer_big", -2},
            {"cancel_none", -8},   {"work_null", -2},   {"checkpoint", -22},
        };
        struct td_resp r;
        char err[512];

        cr_assert_eq(td_call(&d, &r, "op", "show", "name", "args", NULL), 0,
                     "%s", td_errmsg(&r, err, sizeof err));
        {
            const msgpack_object *a = td_get(&r.u.data, "agent");
            const msgpack_object *st = a ? td_get(a, "state") : NULL;
            const msgpack_object *errs = st ? td_get(st, "errs") : NULL;

            cr_assert_not_null(errs, "no errs in the state");
            for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
                cr_expect_eq(td_int(errs, want[i].key, 99), want[i].want,
                             "%s returned %" PRId64 ", not %" PRId64,
                             want[i].key, td_int(errs, want[i].key, 99),
                             want[i].want);
        }
        td_resp_free(&r);
    }
}

/* ---- stopping ---- */

Test(isolation, sigterm_stops_the_node_while_a_host_hangs)
{
    int code;
    static const char cfg[] =
        "stop_timeout_ms = 4000\n"
        "[agents]\n"
        "step_deadline_ms = 600000\n"
        "[agent.ticker]\n"
        "kind = counter\n"
        "config = {\"interval_ms\": 20}\n";

    code = term_while_hanging("termhost", cfg);
    cr_expect_geq(code, 0, "outlastd did not exit on SIGTERM");
    cr_assert_eq(td_start(&d, 10000), 0, "restart");
    cr_expect(status_is(&d, "ticker", "running"));
}

Test(isolation, hosted_agents_get_their_stop_at_shutdown)
{
    start_with("stop", hosted);
    spawn("calm", "{\"mode\": \"none\"}");
    td_wait_reached(&d, "calm", "ticks", 1, 10000);
    cr_assert_eq(td_term(&d, 20000), 0, "outlastd did not drain");
    cr_expect_eq(td_state_int(&d, "calm", "stops", 0), 1,
                 "the STOP step's checkpoint is not the last one");
    cr_assert_eq(td_start(&d, 10000), 0, "restart");
    cr_expect(status_is(&d, "calm", "running"));
}

/* Host processes whose `--parent` is `pid`, from /proc. */
static int hosts_of(pid_t pid)
{
    char cmd[256], *out = NULL;
    int n;

    snprintf(cmd, sizeof cmd,
             "pgrep -f -- '[o]utlast-agent-host .*--parent %ld ' | wc -l",
             (long)pid);
    if (td_sh(&out, "%s", cmd) != 0) {
        free(out);
        return -1;
    }
    n = atoi(out);
    free(out);
    return n;
}

Test(isolation, host_processes_die_with_their_node)
{
    static const char cfg[] =
        "[agents]\n"
        "step_deadline_ms = 600000\n";
    pid_t pid;
    uint64_t end;

    start_with("orphan", cfg);
    spawn("calm", "{\"mode\": \"none\"}");
    /* A host stuck in plugin code never reads the socket's EOF. */
    spawn("sleeper", "{\"mode\": \"sleep\", \"after\": 1}");
    wait_hanging("sleeper");
    pid = d.pid;
    cr_assert_geq(hosts_of(pid), 1, "no host process found");
    td_kill9(&d);
    end = td_ms() + 10000;
    while (hosts_of(pid) > 0 && td_ms() < end)
        td_sleep_ms(50);
    cr_expect_eq(hosts_of(pid), 0, "host processes outlived their node");
}

/* ---- plugins inside the node ---- */

/* The node died (and is reaped), or the agent is quarantined. */
static int node_died_or(struct td *t, void *name)
{
    (void)td_wait_exit(t, 1);
    if (t->pid <= 0)
        return 1;
    return status_is(t, name, "quarantined");
}

/* Run the node until the agent is quarantined, restarting it each time
 * the plugin takes it down; returns the number of node deaths. */
static int deaths_until_quarantined(const char *name)
{
    int deaths = 0;

    for (int round = 0; round < 2 * LIMIT + 2; round++) {
        (void)td_until(node_died_or, &d, (void *)name, 20000);
        if (d.pid > 0 && status_is(&d, name, "quarantined"))
            return deaths;
        if (d.pid > 0)
            td_kill9(&d); /* neither: give up on this round */
        deaths++;
        cr_assert_eq(td_start(&d, 10000), 0, "restart %d; see %s", deaths,
                     d.log);
    }
    return deaths;
}

Test(isolation, in_process_crash_is_counted_across_node_restarts)
{
    char reason[512], status[32];
    int deaths;
    static const char *const all[] = {"ticker", "bad"};

    start_with("inproc", inproc);
    spawn("bad", "{\"mode\": \"segv\"}");
    deaths = deaths_until_quarantined("bad");
    fprintf(stderr, "isolation/inproc: %d node deaths\n", deaths);
    cr_expect_eq(deaths, LIMIT, "quarantined after %d node deaths", deaths);
    td_agent_status(&d, "bad", status, sizeof status, NULL, reason,
                    sizeof reason);
    cr_expect(strstr(reason, "the node died") != NULL, "%s", reason);
    cr_expect_eq(crashes("bad"), LIMIT);
    /* The node that found the last mark at its start counted that crash,
     * and its report was the one that reached the limit. */
    cr_expect(td_until(crash_loop_counted, &d, NULL, 10000),
              "status: no crash-loop quarantine counted");
    cr_expect_eq(hosts_u(NULL, "node"), 1);
    cr_expect_eq(hosts_u("crash_loop_quarantines", NULL), 1);
    observe();
    expect_history_intact(all, 2);
}

Test(isolation, in_process_hang_is_ended_by_the_watchdog)
{
    char reason[512], status[32];
    int deaths;

    start_with("inhang", inproc);
    spawn("bad", "{\"mode\": \"loop\"}");
    deaths = deaths_until_quarantined("bad");
    cr_expect_eq(deaths, LIMIT, "quarantined after %d node deaths", deaths);
    td_agent_status(&d, "bad", status, sizeof status, NULL, reason,
                    sizeof reason);
    cr_expect(strstr(reason, "step deadline") != NULL, "%s", reason);
}

Test(isolation, sigterm_stops_the_node_while_an_in_process_plugin_hangs)
{
    int code;
    static const char cfg[] =
        "stop_timeout_ms = 3000\n"
        "[agents]\n"
        "step_deadline_ms = 600000\n"
        "crash_limit = 1\n"
        "[plugin.misbehave]\n"
        "isolation = none\n"
        "[agent.ticker]\n"
        "kind = counter\n"
        "config = {\"interval_ms\": 20}\n";

    code = term_while_hanging("terminproc", cfg);
    cr_expect_eq(code, 1, "outlastd did not exit on its own");
    /* The hung step is on record once the node is back. */
    cr_assert_eq(td_start(&d, 10000), 0, "restart");
    {
        uint64_t end = td_ms() + 10000;

        while (crashes("sleeper") < 1 && td_ms() < end)
            td_sleep_ms(50);
    }
    cr_expect_eq(crashes("sleeper"), 1);
    cr_expect(status_is(&d, "sleeper", "quarantined"));
}

/* ---- an agent's own log lines, from either kind of host ---- */

struct ring_arg {
    const char *needle;
    char *out;        /* the last `outlast logs --json` output */
    const char *name; /* the agent; NULL: "talker" */
};

/* `outlast logs NAME` holds a line containing the needle. */
static int ring_has(struct td *t, void *arg)
{
    struct ring_arg *r = arg;

    free(r->out);
    r->out = NULL;
    if (td_sh(&r->out, "%s --data-dir '%s' --json logs %s -n 1000",
              td_bin("outlast"), t->data, r->name ? r->name : "talker") != 0)
        return 0;
    return strstr(r->out, r->needle) != NULL;
}

static uint64_t ring_first(const char *out)
{
    const char *p = strstr(out, "\"first\":");

    return p ? strtoull(p + 8, NULL, 10) : 0;
}

static void logs_reach_the_ring(const char *isolation)
{
    char cfg[512], cmd[256], *out = NULL;
    struct ring_arg r = {NULL, NULL, NULL};
    uint64_t first;

    snprintf(cfg, sizeof cfg,
             "[plugin.chatty]\n"
             "isolation = %s\n"
             "[agent.talker]\n"
             "kind = chatty\n"
             "config = {\"interval_ms\": 200}\n",
             isolation);
    start_with(isolation, cfg);
    /* The plugin's lines and the node's note, with the plugin's escape
     * sequence and newline made harmless on the way. */
    r.needle = "tick 2\"";
    cr_assert(td_until(ring_has, &d, &r, 20000), "no tick in the ring: %s",
              r.out ? r.out : "");
    cr_expect(strstr(r.out, "hello ?[31mred?[0m?second"), "%s", r.out);
    cr_expect(strstr(r.out, "started on node 1"), "%s", r.out);
    cr_expect(strchr(r.out, '\033') == NULL, "an escape got through");
    first = ring_first(r.out);
    cr_expect_eq(first, 1, "%s", r.out);
    if (strcmp(isolation, "none") == 0) {
        cr_expect_eq(hosts_of(d.pid), 0, "an in-node plugin has a host");
        cr_expect_eq(hosts_u("running", NULL), 0);
        free(r.out);
        return;
    }
    cr_assert_geq(hosts_of(d.pid), 1, "no host process");
    /* A host that dies under the agent: the new instance keeps the ring
     * and adds to it. */
    snprintf(cmd, sizeof cmd,
             "pkill -KILL -f -- '[o]utlast-agent-host .*--kind chatty .*"
             "--parent %ld '",
             (long)d.pid);
    cr_assert_eq(td_sh(&out, "%s", cmd), 0, "pkill: %s", out ? out : "");
    free(out);
    r.needle = "resumed at tick";
    cr_expect(td_until(ring_has, &d, &r, 20000),
              "the agent did not log after its host died: %s",
              r.out ? r.out : "");
    cr_expect(r.out && strstr(r.out, "hello ?[31mred?[0m?second"),
              "the ring lost the lines from before the host died: %s",
              r.out ? r.out : "");
    cr_expect_eq(ring_first(r.out ? r.out : ""), 1);
    cr_expect_geq(hosts_u("restarts", NULL), 1);
    free(r.out);
}

Test(isolation, plugin_logs_reach_the_ring_from_a_host_process)
{
    logs_reach_the_ring("process");
}

Test(isolation, plugin_logs_reach_the_ring_from_inside_the_node)
{
    logs_reach_the_ring("none");
}

/* ---- work that outlives its agent ---- */

/* The daemon's log holds the needle. */
static int log_has(struct td *t, void *needle)
{
    char buf[1 << 16];
    FILE *f = fopen(t->log, "r");
    size_t n;
    int found = 0;

    if (f == NULL)
        return 0;
    /* The log is small here; read it in overlapping windows. */
    while ((n = fread(buf, 1, sizeof buf - 1, f)) > 0 && !found) {
        buf[n] = '\0';
        found = strstr(buf, needle) != NULL;
        if (n == sizeof buf - 1)
            fseek(f, -256, SEEK_CUR);
    }
    fclose(f);
    return found;
}

/* Work still running when its agent stops here comes back to the plugin
 * marked fenced, with the epoch it was started under, and the step records
 * nothing; work that finishes while the agent runs is not fenced. */
static void work_comes_back_fenced(const char *isolation)
{
    char cfg[512], *out = NULL;

    snprintf(cfg, sizeof cfg,
             "[plugin.slow_work]\n"
             "isolation = %s\n"
             "[agent.quick]\n"
             "kind = slow_work\n"
             "config = {\"jobs\": 1, \"sleep_ms\": 20, \"max\": 1}\n"
             "[agent.held]\n"
             "kind = slow_work\n"
             "config = {\"jobs\": 1, \"sleep_ms\": 4000, \"max\": 1}\n",
             isolation);
    start_with(isolation, cfg);
    cr_assert(td_until(log_has, &d, "work 1 (20 ms): epoch 1 fenced 0",
                       20000),
              "quick's work never came back unfenced; see %s", d.log);
    cr_assert_eq(td_sh(&out, "%s --data-dir '%s' stop held", td_bin("outlast"),
                       d.data),
                 0, "stop: %s", out ? out : "");
    free(out);
    cr_expect(td_until(log_has, &d, "work 1 (4000 ms): epoch 1 fenced 1",
                       20000),
              "held's work did not come back fenced after the stop; see %s",
              d.log);
    cr_expect(!log_has(&d, "work 1 (4000 ms): epoch 1 fenced 0"),
              "held's work came back unfenced; see %s", d.log);
}

Test(isolation, work_after_a_stop_comes_back_fenced_from_a_host_process)
{
    work_comes_back_fenced("process");
}

Test(isolation, work_after_a_stop_comes_back_fenced_inside_the_node)
{
    work_comes_back_fenced("none");
}

/* ---- the node's files ---- */

/* A host whose user could read the node's key (root, as host_user here,
 * or the node's own user under systemd) still cannot open it, while a
 * file beside the data directory stays open to it. */
Test(isolation, a_host_cannot_open_the_data_directory)
{
    static const char cfg[] = "[agents]\nhost_user = root\n";
    struct ring_arg r = {NULL, NULL, NULL};
    char c[600];

#ifdef __NR_landlock_create_ruleset
    if (syscall(__NR_landlock_create_ruleset, NULL, 0, 1) < 1)
        cr_skip_test("Landlock is not available on this kernel");
#else
    cr_skip_test("built without Landlock's system call numbers");
#endif
    start_with("hide", cfg);
    snprintf(c, sizeof c,
             "{\"mode\": \"peek\", \"after\": 0, \"interval_ms\": 100, "
             "\"path\": \"%s/node.key\"}",
             d.data);
    spawn("peekkey", c);
    snprintf(c, sizeof c,
             "{\"mode\": \"peek\", \"after\": 0, \"interval_ms\": 100, "
             "\"path\": \"%s\"}",
             d.conf);
    spawn("peekok", c);
    /* Nor the node's memory, which holds the key (Landlock keeps a
     * sandboxed process from tracing one outside its domain). */
    snprintf(c, sizeof c,
             "{\"mode\": \"peek\", \"after\": 0, \"interval_ms\": 100, "
             "\"path\": \"/proc/%ld/mem\"}",
             (long)d.pid);
    spawn("peekmem", c);
    r.name = "peekkey";
    r.needle = "peek: ";
    cr_assert(td_until(ring_has, &d, &r, 20000), "peekkey never peeked: %s",
              r.out ? r.out : "");
    cr_expect(strstr(r.out, "peek: errno 13") != NULL,
              "a host opened the node key (or failed otherwise): %s", r.out);
    cr_expect(strstr(r.out, "peek: ok") == NULL, "%s", r.out);
    r.name = "peekok";
    cr_assert(td_until(ring_has, &d, &r, 20000), "peekok never peeked: %s",
              r.out ? r.out : "");
    cr_expect(strstr(r.out, "peek: ok") != NULL,
              "a file outside the data directory was refused: %s", r.out);
    r.name = "peekmem";
    cr_assert(td_until(ring_has, &d, &r, 20000), "peekmem never peeked: %s",
              r.out ? r.out : "");
    cr_expect(strstr(r.out, "peek: ok") == NULL,
              "a host opened the node's memory: %s", r.out);
    free(r.out);
}

/* ---- what a host prints ---- */

struct printed {
    int lines, objects, stdout_seen, stderr_seen;
    char bad[300];
};

static void read_log(struct printed *p)
{
    char *log = NULL, *save = NULL;

    memset(p, 0, sizeof *p);
    td_sh(&log, "cat '%s'", d.log);
    for (char *l = log ? strtok_r(log, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(l, 0, NULL);
        const char *msg = j ? json_string_value(json_object_get(j, "msg"))
                            : NULL;

        p->lines++;
        if (msg) {
            p->objects++;
            p->stdout_seen |= strstr(msg, "agent host for 'misbehave'") &&
                              strstr(msg, "stdout line") != NULL;
            p->stderr_seen |= strstr(msg, "agent host for 'misbehave'") &&
                              strstr(msg, "stderr ?[31mline") != NULL;
        } else if (!p->bad[0]) {
            snprintf(p->bad, sizeof p->bad, "%s", l);
        }
        json_decref(j);
    }
    free(log);
}

static int printed_both(struct td *t, void *arg)
{
    (void)t;
    read_log(arg);
    return ((struct printed *)arg)->stdout_seen &&
           ((struct printed *)arg)->stderr_seen;
}

/* A plugin's printf and fprintf(stderr) in a host process come out as
 * daemon log lines: JSON objects in a JSON log, tagged with the plugin,
 * without the plugin's escape sequences. */
Test(isolation, host_output_joins_the_daemon_log_in_its_format)
{
    struct printed p;

    start_with("print", "log_format = json\n");
    spawn("printer", "{\"mode\": \"print\", \"after\": 0, "
                     "\"interval_ms\": 100}");
    cr_expect(td_until(printed_both, &d, &p, 20000),
              "the plugin's output is not in the log as JSON (stdout %d, "
              "stderr %d)",
              p.stdout_seen, p.stderr_seen);
    cr_expect_eq(p.objects, p.lines, "not a JSON log line: %s", p.bad);
    cr_expect_gt(p.lines, 3);
}
