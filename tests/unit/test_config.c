/* Unit tests for the INI configuration: defaults, every section, and
 * errors that name FILE:LINE and the key at fault. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replication/lease.h"
#include "runtime/config.h"
#include "base/err.h"
#include "base/log.h"

static char path[64];

/* Writes the `len` bytes of text to a new file at `path`. */
static void write_ini_n(const char *text, size_t len)
{
    FILE *f;
    int fd;

    if (path[0])
        unlink(path); /* a test may write several */
    snprintf(path, sizeof path, "/tmp/ol-config-XXXXXX");
    fd = mkstemp(path);
    cr_assert(fd >= 0);
    f = fdopen(fd, "w");
    fwrite(text, 1, len, f);
    fclose(f);
}

static void write_ini(const char *text)
{
    write_ini_n(text, strlen(text));
}

static void teardown(void)
{
    unlink(path);
}

TestSuite(config, .fini = teardown);

static int load(struct ol__config *c, const char *text, char *err)
{
    write_ini(text);
    ol__config_defaults(c);
    return ol__config_load(c, path, err);
}

Test(config, defaults_are_the_embedded_single_node)
{
    struct ol__config c;

    ol__config_defaults(&c);
    cr_assert_str_eq(c.data_dir, "./outlast-data");
    cr_assert_eq(c.node_id, 1);
    cr_assert_eq(c.every_steps, 1);
    cr_assert_eq(c.retain, 1000);
    cr_assert_eq(c.cluster, 0);
    cr_assert_eq(c.default_agents, 1);
    cr_assert_eq(c.segment_mb, 32);
    cr_assert_eq(c.moves_in_flight, 16384);
    cr_assert_eq(c.snapshot_mb, 192);
    cr_assert_str_eq(c.node_name, "node-1");
}

Test(config, reads_every_section)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c,
                      "; a comment\n"
                      "[node]\nid = 7\ndata_dir = /var/lib/x\n"
                      "log_level = debug\nlabels = cloud=aws\n"
                      "[checkpoint]\nevery_steps = 10\nevery_ms = 250\n"
                      "retain = 50\n"
                      "[cluster]\nlisten = 127.0.0.1:7107\n"
                      "election_timeout_ms = 300\nheartbeat_timeout_ms = 50\n"
                      "segment_mb = 64\nmoves_in_flight = 64\n"
                      "[peer.2]\naddress = 127.0.0.1:7102\npubkey = "
                      "0000000000000000000000000000000000000000000000000000"
                      "000000000000\nlabels = cloud=gcp\n"
                      "[agent.t]\nkind = counter\nconfig = {\"interval_ms\": 5}\n",
                      err),
                 0, "%s", err);
    cr_assert_eq(c.node_id, 7);
    cr_assert_str_eq(c.node_name, "node-7");
    cr_assert_str_eq(c.data_dir, "/var/lib/x");
    cr_assert_eq(c.log_level, OL_LOG_DEBUG);
    cr_assert_eq(c.every_steps, 10);
    cr_assert_eq(c.every_ms, 250);
    cr_assert_eq(c.retain, 50);
    cr_assert_eq(c.cluster, 1);
    cr_assert_eq(c.election_timeout_ms, 300);
    cr_assert_eq(c.segment_mb, 64);
    cr_assert_eq(c.moves_in_flight, 64);
    cr_assert_eq(c.n_peers, 1);
    cr_assert_eq(c.peers[0].id, 2);
    cr_assert_str_eq(c.peers[0].labels, "cloud=gcp");
    cr_assert_eq(c.n_agents, 1);
    cr_assert_str_eq(c.agents[0].kind, "counter");
    cr_assert_str_eq(c.agents[0].config_json, "{\"interval_ms\": 5}");
    cr_assert_eq(c.default_agents, 0);
    ol__config_free(&c);
}

static void expect_error(const char *text, const char *needle)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c, text, err), OL_ECONFIG, "accepted:\n%s", text);
    cr_expect(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err,
              needle);
    cr_expect(strstr(err, path) != NULL, "error '%s' lacks the file", err);
    ol__config_free(&c);
}

Test(config, errors_name_file_line_and_key)
{
    expect_error("[node]\nid = 1\nbogus = 3\n", ":3: unknown key 'bogus'");
    expect_error("[node]\n\n\nid = -4\n", ":4: 'id' must be a positive");
    expect_error("[nope]\nx = 1\n", ":1: unknown section [nope]");
    expect_error("[checkpoint]\nevery_steps = 0\n",
                 ":2: 'every_steps' must be a whole number from 1");
    expect_error("[checkpoint]\nretain = lots\n", ":2: 'retain'");
    expect_error("[node]\nlog_level = loud\n", ":2: 'log_level' must be");
    expect_error("[agent.bad name]\nkind = counter\n",
                 "not a valid agent name");
    expect_error("[agent.a]\nconfig = {}\n", "[agent.a] has no 'kind'");
    expect_error("[peer.2]\naddress = x:1\npubkey = zz\n",
                 ":3: 'pubkey' must be 64 hex digits");
    expect_error("[peer.x]\naddress = a:1\n", "peer id must be");
    expect_error("[node]\nid = 1\n[peer.1]\naddress = a:1\npubkey = "
                 "0000000000000000000000000000000000000000000000000000"
                 "000000000000\n",
                 "this node's own id");
    expect_error("[cluster]\nname = x\n", "needs 'listen'");
    expect_error("[cluster]\nlisten = a:1\nelection_timeout_ms = 100\n"
                 "heartbeat_timeout_ms = 80\n",
                 "at most half");
    expect_error("[cluster]\nlisten = a:1\nsegment_mb = 0\n",
                 ":3: 'segment_mb' must be a whole number from 1 to 1024");
    expect_error("[cluster]\nlisten = a:1\nmoves_in_flight = 8\n",
                 ":3: 'moves_in_flight' must be a whole number from 16 to "
                 "65536");
    expect_error("[cluster]\nlisten = a:1\nmoves_in_flight = 1e9\n",
                 ":3: 'moves_in_flight' must be a whole number");
    /* Above 200 MiB a lagging follower's catch-up would not fit one
     * message (replication/fsm.h). */
    expect_error("[cluster]\nlisten = a:1\nsnapshot_mb = 201\n",
                 ":3: 'snapshot_mb' must be a whole number from 1 to 200");
    expect_error("this is not ini\n", ":1: syntax error");
    expect_error("[agent.a]\nkind = counter\nconfig = {\"x\": 1,}\n",
                 ":3: [agent.a] config is not valid JSON");
    expect_error("[agent.a]\nkind = counter\nconfig = [1, 2]\n",
                 ":3: [agent.a] config must be a JSON object");
    expect_error("[agents]\nisolation = thread\n",
                 ":2: 'isolation' must be process or none");
    expect_error("[agents]\ncrash_limit = 0\n", ":2: 'crash_limit'");
    expect_error("[plugin.x]\nmemory_mb = 4\n", ":2: 'memory_mb'");
    expect_error("[plugin.x]\nwork_threads = 65\n", ":2: 'work_threads'");
    expect_error("[plugin.x]\nbogus = 1\n",
                 ":2: unknown key 'bogus' in section [plugin.x]");
    expect_error("[plugin.bad/kind]\nisolation = none\n",
                 "not a valid plugin kind");
    expect_error("[node]\nstop_timeout_ms = 10\n", ":2: 'stop_timeout_ms'");
}

Test(config, plugin_sections_override_the_agent_defaults)
{
    struct ol__config c;
    struct ol__plugin_cfg p;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c,
                      "[plugin.trusted]\n"
                      "isolation = none\n"
                      "[agents]\n"
                      "step_deadline_ms = 250\n"
                      "memory_mb = 64\n"
                      "crash_limit = 5\n"
                      "crash_window_ms = 10000\n"
                      "mailbox_max = 100\n"
                      "host_user = daemon\n"
                      "[plugin.net]\n"
                      "allow_network = true\n"
                      "work_threads = 2\n",
                      err),
                 0, "%s", err);
    ol__config_plugin(&c, "trusted", &p);
    cr_expect_eq(p.isolation, OL_ISO_NODE);
    cr_expect_eq(p.step_deadline_ms, 250, "the default comes through");
    ol__config_plugin(&c, "net", &p);
    cr_expect_eq(p.isolation, OL_ISO_PROCESS);
    cr_expect_eq(p.allow_network, 1);
    cr_expect_eq(p.work_threads, 2);
    cr_expect_eq(p.memory_mb, 64);
    ol__config_plugin(&c, "other", &p);
    cr_expect_eq(p.work_threads, 4);
    cr_expect_eq(p.allow_network, 0);
    cr_expect(ol__config_any_inproc(&c));
    cr_expect_eq(c.crash_limit, 5);
    cr_expect_eq(c.crash_window_ms, 10000);
    cr_expect_eq(c.mailbox_max, 100);
    cr_expect_str_eq(c.host_user, "daemon");
    ol__config_free(&c);
}

Test(config, missing_file_is_named)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    ol__config_defaults(&c);
    cr_assert_eq(ol__config_load(&c, "/nonexistent/outlast.ini", err),
                 OL_ECONFIG);
    cr_assert(strstr(err, "/nonexistent/outlast.ini") != NULL, "%s", err);
}

Test(config, http_and_log_keys)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c,
                      "[node]\nlog_format = json\nagent_log_lines = 7\n"
                      "[http]\nlisten = [::1]:9464\n",
                      err),
                 0, "%s", err);
    cr_expect_eq(c.log_format, OL_LOG_JSON);
    cr_expect_eq(c.agent_log_lines, 7);
    cr_expect_str_eq(c.http_listen, "[::1]:9464");
    cr_expect(c.http_loopback);
    ol__config_free(&c);
    unlink(path);
    cr_assert_eq(load(&c, "[http]\nlisten = localhost:0\n", err), 0, "%s",
                 err);
    cr_expect(c.http_loopback);
    ol__config_free(&c);
    unlink(path);
    cr_assert_eq(load(&c,
                      "[http]\nlisten = 0.0.0.0:9464\n"
                      "token_file = /etc/outlast/http.token\n",
                      err),
                 0, "%s", err);
    cr_expect(!c.http_loopback);
    ol__config_free(&c);
    ol__config_defaults(&c);
    cr_expect_eq(c.http_listen[0], '\0', "HTTP is on by default");
    cr_expect_eq(c.log_format, OL_LOG_TEXT);
    cr_expect_eq(c.agent_log_lines, 200);
}

Test(config, http_and_log_errors_say_what_is_wrong)
{
    static const struct {
        const char *ini, *want;
    } cases[] = {
        {"[node]\nlog_format = xml\n", ":2: 'log_format' must be text or json"},
        {"[node]\nagent_log_lines = -1\n", ":2: 'agent_log_lines' must be"},
        {"[http]\nlisten = 10.0.0.1:9464\n", "not a loopback address"},
        {"[http]\nlisten = myhost.example:9464\n", "not a loopback address"},
        {"[http]\nlisten = 127.0.0.1\n", "listen must be host:port"},
        {"[http]\nlisten = 127.0.0.1:99999\n", "listen must be host:port"},
        {"[http]\nlisten = ::1:9464\n", "listen must be host:port"},
        {"[http]\ntoken_file = /x\n", "token_file is set but listen is not"},
        {"[http]\nport = 1\n", ":2: unknown key 'port' in section [http]"},
    };
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_expect_eq(load(&c, cases[i].ini, err), OL_ECONFIG, "accepted: %s",
                     cases[i].ini);
        cr_expect(strstr(err, cases[i].want), "'%s' gave '%s', want '%s'",
                  cases[i].ini, err, cases[i].want);
        ol__config_free(&c);
        unlink(path);
    }
}

/* Each of these used to be accepted silently, reported at the wrong line
 * or with the wrong message. */
Test(config, repeated_sections_and_keys_name_both_lines)
{
    expect_error("[node]\nname = a\nname = b\n",
                 ":3: key 'name' in [node] is given twice (lines 2 and 3)");
    expect_error("[node]\nid = 2\n[checkpoint]\nretain = 3\n[node]\n",
                 ":5: section [node] is given twice (lines 1 and 5)");
    expect_error("[agent.a]\nkind = counter\n\n[agent.a]\nkind = ledger\n",
                 ":4: section [agent.a] is given twice (lines 1 and 4)");
    expect_error("[peer.2]\naddress = a:1\naddress = b:1\n",
                 ":3: key 'address' in [peer.2] is given twice");
}

Test(config, malformed_lines_are_named_at_their_line)
{
    expect_error("[node\nname = a\n", ":1: section header '[node' has no "
                                      "closing ']'");
    expect_error("[node]\n[]\n", ":2: empty section name");
    expect_error("[node] id = 3\n", ":1: text after the section header");
    expect_error("name = a\n", ":1: key 'name' is outside any [section]");
    expect_error("[node]\nid = 1\njust words\nid = 2\n", ":3: syntax error");
    expect_error("[node]\n= 3\n", ":2: syntax error");
}

Test(config, nul_byte_is_named)
{
    static const char text[] = "[node]\nid = 1\n[checkpoint]\nretain = 1\0\n";
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    write_ini_n(text, sizeof text - 1);
    ol__config_defaults(&c);
    cr_assert_eq(ol__config_load(&c, path, err), OL_ECONFIG);
    cr_expect(strstr(err, ":4: the line holds a NUL byte") != NULL, "%s",
              err);
    ol__config_free(&c);
}

Test(config, indented_keys_are_keys)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    /* inih alone reads an indented line as a continuation of the previous
     * value ("id" = "1\nname = x"). */
    cr_assert_eq(load(&c, "[node]\n  id = 4\n  name = x\n", err), 0, "%s",
                 err);
    cr_expect_eq(c.node_id, 4);
    cr_expect_str_eq(c.node_name, "x");
    ol__config_free(&c);
}

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);

    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

Test(config, long_lines_are_read_whole)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE], *text, *dir = repeat('d', 3000);
    char *val = repeat('v', 20000);
    size_t cap = 30000;

    text = malloc(cap + 200);
    snprintf(text, cap + 200,
             "[node]\ndata_dir = /tmp/%s ; a comment\n"
             "[agent.x]\nkind = counter\nconfig = {\"k\": \"%s\"}\n"
             "[checkpoint]\nretain = 7\n",
             dir, val);
    cr_assert_eq(load(&c, text, err), 0, "%s", err);
    cr_expect_eq(strlen(c.data_dir), 5 + 3000);
    cr_expect_eq(strncmp(c.data_dir + 5, dir, 3000), 0);
    cr_expect_eq(strlen(c.agents[0].config_json), 20000 + 9);
    cr_expect_eq(c.retain, 7, "the lines after a long one were misread");
    ol__config_free(&c);
    /* An error after a long line still names the right line. */
    snprintf(text, cap + 200,
             "[agent.x]\nkind = counter\nconfig = {\"k\": \"%s\"}\n"
             "[node]\nbogus = 1\n",
             val);
    expect_error(text, ":5: unknown key 'bogus'");
    free(text);
    free(dir);
    free(val);
}

Test(config, listen_and_peer_addresses_need_a_port)
{
    expect_error("[cluster]\nlisten = 127.0.0.1\n",
                 ":2: 'listen' must be host:port");
    expect_error("[cluster]\nlisten = 127.0.0.1:0\n",
                 ":2: 'listen' must be host:port");
    expect_error("[cluster]\nlisten = 127.0.0.1:70000\n",
                 ":2: 'listen' must be host:port");
    expect_error("[peer.2]\naddress = host\n", ":2: 'address' must be");
}

static void expect_file_error(const char *file, const char *needle)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    ol__config_defaults(&c);
    cr_assert_eq(ol__config_load(&c, file, err), OL_ECONFIG, "accepted %s",
                 file);
    cr_expect(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err,
              needle);
    ol__config_free(&c);
}

Test(config, only_regular_files_are_read, .timeout = 10)
{
    char fifo[64] = "/tmp/ol-config-fifo-XXXXXX";

    expect_file_error("/tmp", "is a directory");
    expect_file_error("/dev/zero", "not a regular file");
    cr_assert_not_null(mkdtemp(fifo));
    strcat(fifo, "/f");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    /* Opening a FIFO with no writer must not block. */
    expect_file_error(fifo, "not a regular file");
    unlink(fifo);
    *strrchr(fifo, '/') = '\0';
    rmdir(fifo);
}

Test(config, oversized_file_is_refused)
{
    char *big = repeat(';', OL_CONFIG_FILE_MAX + 1);

    expect_error(big, "is larger than");
    free(big);
}

/* The lease (replication/lease.h) must span two heartbeats. */
Test(config, failover_too_short_for_the_lease_is_refused)
{
    expect_error("[cluster]\nlisten = 127.0.0.1:7100\n"
                 "election_timeout_ms = 300\nheartbeat_timeout_ms = 100\n"
                 "failover_ms = 400\n",
                 "failover_ms (400) is too short for heartbeat_timeout_ms "
                 "(100): a node's lease (163 ms");
    /* A tighter clock bound gives a longer lease from the same time. */
    expect_error("[cluster]\nlisten = 127.0.0.1:7100\n"
                 "election_timeout_ms = 300\nheartbeat_timeout_ms = 100\n"
                 "failover_ms = 400\nclock_drift_pct = 1\n",
                 "lease (196 ms");
    expect_error("[cluster]\nlisten = 127.0.0.1:7100\nclock_drift_pct = 0\n",
                 "'clock_drift_pct' must be a whole number from 1 to 20");
    expect_error("[cluster]\nlisten = 127.0.0.1:7100\nclock_drift_pct = 25\n",
                 "'clock_drift_pct' must be a whole number from 1 to 20");
}

Test(config, lease_follows_the_failover_time_and_the_clock_bound)
{
    cr_assert_eq(ol__cluster_lease_ms(3000, 10), 1227);
    cr_assert_eq(ol__cluster_lease_ms(1000, 1), 490);
    /* Two leases, each measured on a clock up to d% fast, fit in the
     * failover time measured on a clock up to d% slow. */
    for (unsigned d = 1; d <= 20; d++)
        for (unsigned f = 100; f <= 10000; f += 37) {
            unsigned l = ol__cluster_lease_ms(f, d);

            cr_assert_leq(2ull * l * (100 + d), (unsigned long long)f *
                                                    (100 - d),
                          "f %u d %u lease %u", f, d, l);
            /* the live move's wait covers a lease on a slow clock */
            cr_assert_geq((unsigned long long)
                              ol__cluster_lease_stretch_ms(l, d) *
                              (100 - d),
                          (unsigned long long)l * (100 + d));
        }
}

Test(config, timing_profiles_set_what_is_not_given)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c, "[cluster]\nlisten = 127.0.0.1:7100\n", err), 0,
                 "%s", err);
    cr_assert_eq(c.election_timeout_ms, 1000);
    cr_assert_eq(c.heartbeat_timeout_ms, 100);
    cr_assert_eq(c.failover_ms, 3000);
    cr_assert_eq(c.clock_drift_pct, 10);
    cr_assert_eq(load(&c, "[cluster]\nlisten = 127.0.0.1:7100\n"
                          "timing = lan\n", err), 0, "%s", err);
    cr_assert_eq(c.election_timeout_ms, 300);
    cr_assert_eq(c.heartbeat_timeout_ms, 50);
    cr_assert_eq(c.failover_ms, 600);
    /* An explicit key wins, before or after the profile. */
    cr_assert_eq(load(&c, "[cluster]\nlisten = 127.0.0.1:7100\n"
                          "failover_ms = 900\ntiming = wan\n", err), 0,
                 "%s", err);
    cr_assert_eq(c.election_timeout_ms, 400);
    cr_assert_eq(c.heartbeat_timeout_ms, 100);
    cr_assert_eq(c.failover_ms, 900);
    expect_error("[cluster]\nlisten = 127.0.0.1:7100\ntiming = fast\n",
                 "'timing' must be lan, wan or default, not 'fast'");
}

Test(config, effects_sections_set_the_retry_policy_per_kind)
{
    struct ol__config c;
    struct ol__fx_policy p;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c,
                      "[effects]\n"
                      "attempts = 3\n"
                      "backoff_ms = 50\n"
                      "[effects.order]\n"
                      "attempts = 30\n"
                      "deadline_ms = 60000\n",
                      err),
                 0, "%s", err);
    ol__config_fx(&c, "order", &p);
    cr_expect_eq(p.attempts, 30);
    cr_expect_eq(p.deadline_ms, 60000);
    cr_expect_eq(p.backoff_ms, 50, "the [effects] value comes through");
    cr_expect_eq(p.backoff_max_ms, 10000, "the built-in default");
    ol__config_fx(&c, "note", &p);
    cr_expect_eq(p.attempts, 3);
    cr_expect_eq(p.deadline_ms, 0);
    ol__config_free(&c);
}

Test(config, effects_sections_refuse_bad_values_by_name)
{
    expect_error("[effects]\nattempts = 0\n",
                 ":2: 'attempts' must be a whole number from 1 to 1000");
    expect_error("[effects]\nbackoff_ms = soon\n", ":2: 'backoff_ms'");
    expect_error("[effects.order]\nretries = 3\n",
                 ":2: unknown key 'retries' in an effects section");
    expect_error("[effects.Bad Kind]\nattempts = 3\n",
                 "not a valid effect kind");
    expect_error("[effects.x]\ntimeout_ms = 1\n", ":2: 'timeout_ms'");
}

/* [agent.NAME] sections have no count limit: 50,000 read (in well under
 * the test's timeout: lookups are hashed), each with its own keys, and a
 * repeat among them is still named with both lines. */
Test(config, many_thousands_of_agents_are_read)
{
    enum { N = 50000 };
    size_t cap = (size_t)N * 80 + 64, len = 0;
    char *text = malloc(cap), err[OL_ERRMSG_SIZE];
    struct ol__config c;

    cr_assert_not_null(text);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "[agent.a%d]\nkind = k%d\nconfig = {}\n", i,
                                i % 7);
    cr_assert_eq(load(&c, text, err), 0, "%s", err);
    cr_assert_eq(c.n_agents, N);
    cr_assert_str_eq(c.agents[12345].name, "a12345");
    cr_assert_str_eq(c.agents[12345].kind, "k4");
    cr_assert_str_eq(c.agents[N - 1].name, "a49999");
    ol__config_free(&c);

    /* Line 3 * 40000 + 1 repeats [agent.a7] (line 22). */
    len = 0;
    for (int i = 0; i < 40000; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "[agent.a%d]\nkind = k\nconfig = {}\n", i);
    snprintf(text + len, cap - len, "[agent.a7]\nkind = k\n");
    expect_error(text, "section [agent.a7] is given twice (lines 22 and "
                       "120001)");
    free(text);
}

#define PK64 "0000000000000000000000000000000000000000000000000000000000000001"

Test(config, roles_fold_into_the_labels)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c,
                      "[node]\nid = 1\nlabels = cloud=aws\n"
                      "[cluster]\nlisten = 127.0.0.1:7100\nrole = witness\n"
                      "[peer.2]\naddress = 127.0.0.1:7101\npubkey = " PK64
                      "\nrole = standby\n"
                      "[peer.3]\naddress = 127.0.0.1:7102\npubkey = " PK64
                      "\nlabels = cloud=gcp\nrole = voter\n",
                      err),
                 0, "%s", err);
    cr_expect_str_eq(c.labels, "cloud=aws,role=witness");
    cr_expect_str_eq(c.peers[0].labels, "role=standby");
    cr_expect_str_eq(c.peers[1].labels, "cloud=gcp");
    ol__config_free(&c);
}

Test(config, bad_roles_and_affinity_are_named)
{
    expect_error("[cluster]\nlisten = a:1\nrole = boss\n",
                 ":3: [cluster] role must be voter, witness or standby, not "
                 "'boss'");
    expect_error("[peer.2]\nrole = leader\n",
                 ":2: [peer] role must be voter, witness or standby, not "
                 "'leader'");
    expect_error("[node]\nlabels = role=witness\n",
                 "[node] labels hold 'role=witness': set the role with the "
                 "'role' key");
    expect_error("[agent.a]\nkind = counter\nprefer = cloud\n",
                 ":3: [agent.a] prefer must be labels k=v,k=v");
    expect_error("[agent.a]\nkind = counter\navoid = cloud=aws,\n",
                 ":3: [agent.a] avoid must be labels k=v,k=v");
}

Test(config, agent_affinity_goes_into_its_config)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c,
                      "[agent.a]\nkind = counter\nprefer = cloud=aws\n"
                      "avoid = cloud=home,zone=x\n"
                      "[agent.b]\nkind = counter\n"
                      "config = {\"interval_ms\": 5}\nprefer = cloud=gcp\n",
                      err),
                 0, "%s", err);
    cr_assert_eq(c.n_agents, 2);
    cr_expect_str_eq(c.agents[0].config_json,
                     "{\"prefer\":\"cloud=aws\",\"avoid\":\"cloud=home,"
                     "zone=x\"}");
    cr_expect_str_eq(c.agents[1].config_json,
                     "{\"interval_ms\":5,\"prefer\":\"cloud=gcp\"}");
    ol__config_free(&c);
}

Test(config, cluster_compress_is_auto_or_off)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c, "[cluster]\nlisten = a:1\n", err), 0, "%s", err);
    cr_assert_eq(c.compress_off, 0, "compression is on by default");
    ol__config_free(&c);
    cr_assert_eq(load(&c, "[cluster]\nlisten = a:1\ncompress = off\n", err),
                 0, "%s", err);
    cr_assert_eq(c.compress_off, 1);
    ol__config_free(&c);
    cr_assert_eq(load(&c, "[cluster]\nlisten = a:1\ncompress = auto\n", err),
                 0, "%s", err);
    cr_assert_eq(c.compress_off, 0);
    ol__config_free(&c);
    expect_error("[cluster]\nlisten = a:1\ncompress = zstd\n",
                 ":3: 'compress' must be auto or off, not 'zstd'");
}

Test(config, cluster_dial_only_is_a_boolean)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(load(&c, "[cluster]\nlisten = a:1\n", err), 0, "%s", err);
    cr_assert_eq(c.dial_only, 0, "nodes can be dialled by default");
    ol__config_free(&c);
    cr_assert_eq(load(&c, "[cluster]\nlisten = a:1\ndial_only = true\n", err),
                 0, "%s", err);
    cr_assert_eq(c.dial_only, 1);
    ol__config_free(&c);
    expect_error("[cluster]\nlisten = a:1\ndial_only = maybe\n",
                 ":3: 'dial_only' must be true or false, not 'maybe'");
}
