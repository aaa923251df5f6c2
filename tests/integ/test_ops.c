/*
 * Operating a node, with real processes: a real outlastd serving HTTP on
 * loopback, scraped by curl, checked by promtool and by a real Prometheus
 * server; tokens; the JSON log format; per-agent log rings read with
 * `outlast logs`; `outlast top` in a pipe and on a terminal; and the
 * sd_notify protocol (READY, WATCHDOG, STOPPING) on a socket the test
 * listens on as systemd would.
 *
 * Tests that need a program Debian may lack here (promtool, prometheus)
 * skip, saying which package to install.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "ol_config.h"
#include "tests/support/daemon.h"
#include "tests/support/wait.h"
#include "tests/support/http.h"

static struct td d;
static pid_t prom_pid;

static void teardown(void)
{
    if (prom_pid > 0) {
        kill(prom_pid, SIGKILL);
        waitpid(prom_pid, NULL, 0);
        prom_pid = 0;
    }
    td_cleanup(&d);
}

TestSuite(ops, .fini = teardown, .timeout = 240);

#define HTTP_ON "[http]\nlisten = 127.0.0.1:0\n"
#define CHATTY "[agent.chatty]\nkind = chatty\nconfig = {\"interval_ms\": 20}\n"

static void start_node(const char *tag, const char *extra)
{
    td_init(&d, tag, extra);
    cr_assert_eq(td_start(&d, 15000), 0, "outlastd did not start; see %s",
                 d.log);
}

static void base_url(char *out, size_t cap)
{
    char addr[80];

    cr_assert_eq(th_node_http(&d, addr, sizeof addr), 0,
                 "status names no http address");
    snprintf(out, cap, "http://%s", addr);
}

/* The value of an unlabelled sample in a Prometheus text body. */
static double sample(const char *body, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = body; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return atof(p + n + 1);
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return -1;
}

static int64_t status_u(const char *section, const char *key)
{
    struct td_resp r;
    int64_t v = -1;

    if (td_call(&d, &r, "op", "status", NULL) == 0)
        v = td_int(td_get(&r.u.data, section), key, -1);
    td_resp_free(&r);
    return v;
}

static int committed_at_least(struct td *dd, void *arg)
{
    (void)dd;
    return status_u("commits", "checkpoints") >= *(int64_t *)arg;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    cr_assert(fd >= 0, "create %s", path);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, mode);
    close(fd);
}

/* More config, after what td_init wrote. */
static void append_conf(const char *text)
{
    FILE *f = fopen(d.conf, "a");

    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(ops, metrics_are_prometheus_text_and_count_commits)
{
    char url[200], ctype[128], path[300], *out = NULL;
    struct th_resp r1, r2;

    int64_t want = 20, before;
    double c1, c2;

    start_node("opsm", HTTP_ON CHATTY);
    cr_assert(td_until(committed_at_least, &d, &want, 20000),
              "no 20 commits in 20 s");
    base_url(url, sizeof url);
    strcat(url, "/metrics");
    before = status_u("commits", "checkpoints");
    cr_assert_eq(th_request("GET", url, NULL, &r1), 200, "GET /metrics: %d %s",
                 r1.code, r1.body);
    cr_assert_eq(th_header(&r1, "Content-Type", ctype, sizeof ctype), 0);
    cr_expect_str_eq(ctype, "text/plain; version=0.0.4; charset=utf-8");
    c1 = sample(r1.body, "outlast_checkpoints_committed_total");
    cr_expect_geq(c1, (double)before, "the counter (%g) is behind status "
                                      "(%" PRId64 ")",
                  c1, before);
    cr_expect(strstr(r1.body, "outlast_agents{status=\"running\"} 1\n"),
              "no running-agents gauge of 1:\n%.2000s", r1.body);
    cr_expect(strstr(r1.body, "outlast_commit_latency_seconds_bucket{le=\"+Inf\"}"),
              "no commit latency histogram");
    cr_expect(strstr(r1.body, "outlast_commit_batch_checkpoints_count"),
              "no batch size histogram");
    cr_expect_gt(sample(r1.body, "outlast_db_size_bytes"), 0);
    cr_expect_geq(sample(r1.body, "outlast_db_wal_size_bytes"), 0);
    cr_expect_gt(sample(r1.body, "process_resident_memory_bytes"), 0);
    cr_expect_eq(sample(r1.body, "outlast_lease_held"), 1);
    /* Counters only grow, and commits go on (an answer may be up to a
     * second old: poll). */
    want = before + 20;
    cr_assert(td_until(committed_at_least, &d, &want, 20000));
    memset(&r2, 0, sizeof r2);
    for (uint64_t end = td_ms() + 10000; td_ms() < end;) {
        th_resp_free(&r2);
        cr_assert_eq(th_request("GET", url, NULL, &r2), 200);
        c2 = sample(r2.body, "outlast_checkpoints_committed_total");
        if (c2 > c1)
            break;
        td_sleep_ms(100);
    }
    cr_expect_gt(c2, c1, "the commit counter did not grow: %g then %g", c1,
                 c2);
    cr_expect_geq(sample(r2.body, "outlast_commit_latency_seconds_count"),
                  sample(r1.body, "outlast_commit_latency_seconds_count"));

    /* Twelve clients at once cost the node's loop one observation (or
     * two, across a cache expiry), not twelve (below the per-address
     * connection limit). */
    {
        double req0 = sample(r2.body, "outlast_http_requests_total");
        double jobs0 = sample(r2.body, "outlast_http_loop_jobs_total");
        double req1 = 0, jobs1 = 0;

        /* Not an assertion: wait out the metrics page's one-second cache
         * so that the burst below starts a fresh one. */
        tw_window_ms(1100);
        free(out);
        out = NULL;
        cr_assert_eq(td_sh(&out, "for i in $(seq 12); do curl -s -o /dev/null "
                                 "'%s' & done; wait",
                           url),
                     0, "%s", out);
        free(out);
        out = NULL;
        th_resp_free(&r2);
        for (uint64_t end = td_ms() + 10000; td_ms() < end;) {
            th_resp_free(&r2);
            cr_assert_eq(th_request("GET", url, NULL, &r2), 200);
            req1 = sample(r2.body, "outlast_http_requests_total");
            jobs1 = sample(r2.body, "outlast_http_loop_jobs_total");
            if (req1 >= req0 + 12)
                break;
            td_sleep_ms(200);
        }
        cr_expect_geq(req1, req0 + 12, "requests %g -> %g", req0, req1);
        cr_expect_leq(jobs1 - jobs0, 6,
                      "%g requests made the loop work %g times", req1 - req0,
                      jobs1 - jobs0);
    }

    if (!th_have("promtool")) {
        th_resp_free(&r1);
        th_resp_free(&r2);
        cr_skip_test("promtool is not installed (Debian package prometheus)"
                     "; the text was only checked by hand");
    }
    snprintf(path, sizeof path, "%s/metrics.txt", d.root);
    write_file(path, r2.body, 0644);
    cr_expect_eq(td_sh(&out, "promtool check metrics < '%s'", path), 0,
                 "promtool check metrics:\n%s", out);
    free(out);
    th_resp_free(&r1);
    th_resp_free(&r2);
}

static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A real Prometheus server scrapes the node every second, with the bearer
 * token from a file, and answers a query over what it stored. */
Test(ops, a_prometheus_server_scrapes_it_with_a_token)
{
    char cfg[300], tsdb[300], tok[300], addr[80], *out = NULL, extra[600],
        listen[64];
    uint64_t end;
    int port, ok = 0;
    pid_t pid;

    if (!th_have("prometheus") || !th_have("promtool"))
        cr_skip_test("prometheus/promtool are not installed (Debian package "
                     "prometheus)");
    /* The node and Prometheus share the token file (mode 0600). */
    td_init(&d, "opsp", CHATTY);
    snprintf(tok, sizeof tok, "%s/http.token", d.root);
    write_file(tok, "s3cret-token-for-prometheus-0123\n", 0600);
    snprintf(extra, sizeof extra,
             "[http]\nlisten = 127.0.0.1:0\ntoken_file = %s\n", tok);
    append_conf(extra);
    cr_assert_eq(td_start(&d, 15000), 0, "outlastd did not start; see %s",
                 d.log);
    cr_assert_eq(th_node_http(&d, addr, sizeof addr), 0);
    port = free_port();
    cr_assert_gt(port, 0);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(cfg, sizeof cfg, "%s/prometheus.yml", d.root);
    snprintf(tsdb, sizeof tsdb, "%s/tsdb", d.root);
    {
        char yml[1200];

        snprintf(yml, sizeof yml,
                 "global:\n"
                 "  scrape_interval: 1s\n"
                 "  scrape_timeout: 1s\n"
                 "scrape_configs:\n"
                 "  - job_name: outlast\n"
                 "    authorization:\n"
                 "      type: Bearer\n"
                 "      credentials_file: %s\n"
                 "    static_configs:\n"
                 "      - targets: ['%s']\n",
                 tok, addr);
        write_file(cfg, yml, 0644);
    }
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        char logp[320];
        int fd;

        snprintf(logp, sizeof logp, "%s/prometheus.log", d.root);
        fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("prometheus", "prometheus", "--config.file", cfg,
               "--storage.tsdb.path", tsdb, "--web.listen-address", listen,
               "--log.level=warn", (char *)NULL);
        _exit(127);
    }
    prom_pid = pid;
    end = td_ms() + 90000;
    while (!ok && td_ms() < end) {
        td_sleep_ms(1000);
        free(out);
        out = NULL;
        if (td_sh(&out,
                  "promtool query instant http://%s "
                  "'outlast_checkpoints_committed_total > 0 and on() "
                  "up{job=\"outlast\"} == 1'",
                  listen) == 0 &&
            strstr(out, "outlast_checkpoints_committed_total"))
            ok = 1;
    }
    cr_expect(ok, "Prometheus never stored a scrape of the node in 90 s; "
                  "last answer: %s (logs in %s)",
              out ? out : "", d.root);
    free(out);
}

Test(ops, data_needs_the_token_and_the_page_does_not)
{
    char tok[300], extra[600], url[200], path[260], v[300];
    struct th_resp r;

    td_init(&d, "opst", NULL);
    snprintf(tok, sizeof tok, "%s/http.token", d.root);
    snprintf(extra, sizeof extra,
             "[http]\nlisten = 127.0.0.1:0\ntoken_file = %s\n", tok);
    append_conf(extra);
    write_file(tok, "  correct-horse-battery-staple-42 \n", 0600);
    cr_assert_eq(td_start(&d, 15000), 0, "see %s", d.log);
    base_url(url, sizeof url);

    snprintf(path, sizeof path, "%s/metrics", url);
    cr_expect_eq(th_request("GET", path, NULL, &r), 401, "no token: %d",
                 r.code);
    cr_expect_eq(th_header(&r, "WWW-Authenticate", v, sizeof v), 0);
    th_resp_free(&r);
    cr_expect_eq(th_request("GET", path, "wrong-token-wrong-token", &r), 401);
    th_resp_free(&r);
    cr_expect_eq(th_request("GET", path, "correct-horse-battery-staple-4",
                            &r),
                 401, "a prefix of the token was accepted");
    th_resp_free(&r);
    cr_expect_eq(th_request("GET", path, "correct-horse-battery-staple-42",
                            &r),
                 200);
    th_resp_free(&r);
    snprintf(path, sizeof path, "%s/api/status", url);
    cr_expect_eq(th_request("GET", path, NULL, &r), 401);
    th_resp_free(&r);
    cr_expect_eq(th_request("GET", path, "correct-horse-battery-staple-42",
                            &r),
                 200);
    th_resp_free(&r);

    /* The page holds no data: it loads without the token. */
    cr_expect_eq(th_request("GET", url, NULL, &r), 200);
    cr_expect(strstr(r.body, "<title>outlast</title>"));
    cr_expect_eq(th_header(&r, "Content-Security-Policy", v, sizeof v), 0,
                 "the page has no CSP");
    cr_expect(strstr(v, "default-src 'none'"), "CSP: %s", v);
    th_resp_free(&r);
    snprintf(path, sizeof path, "%s/healthz", url);
    cr_expect_eq(th_request("GET", path, NULL, &r), 200);
    cr_expect_str_eq(r.body, "ok\n");
    th_resp_free(&r);
}

/* Start a node that must refuse to start; returns its log. */
static char *refused(const char *tag, const char *extra, int want_code)
{
    char *log = NULL;
    int code;

    td_init(&d, tag, extra);
    td_spawn(&d);
    code = td_wait_exit(&d, 15000);
    cr_expect_eq(code, want_code, "exit code %d, not %d", code, want_code);
    td_sh(&log, "cat '%s'", d.log);
    return log;
}

Test(ops, bad_http_settings_are_refused_with_a_reason)
{
    char tok[300], extra[600], *log;
    int fd, one = 1, port;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;

    /* Not loopback, no token: a config error (nothing is bound). */
    log = refused("opsb1", "[http]\nlisten = 192.0.2.1:9464\n", 2);
    cr_expect(strstr(log, "not a loopback address") &&
                  strstr(log, "token_file"),
              "%s", log);
    free(log);
    td_cleanup(&d);
    log = refused("opsb2", "[http]\nlisten = 127.0.0.1\n", 2);
    cr_expect(strstr(log, "[http] listen must be host:port"), "%s", log);
    free(log);
    td_cleanup(&d);
    log = refused("opsb3", "[http]\ntoken_file = /x\n", 2);
    cr_expect(strstr(log, "token_file is set but listen is not"), "%s", log);
    free(log);
    td_cleanup(&d);

    /* A token file others can read. */
    td_init(&d, "opsb4", NULL);
    snprintf(tok, sizeof tok, "%s/http.token", d.root);
    snprintf(extra, sizeof extra,
             "[http]\nlisten = 127.0.0.1:0\ntoken_file = %s\n", tok);
    append_conf(extra);
    write_file(tok, "readable-by-everyone-token-0123\n", 0644);
    td_spawn(&d);
    cr_expect_eq(td_wait_exit(&d, 15000), 1);
    td_sh(&log, "cat '%s'", d.log);
    cr_expect(strstr(log, "has mode 0644") && strstr(log, "chmod 600"), "%s",
              log);
    free(log);
    /* A short one. */
    write_file(tok, "short\n", 0600);
    td_spawn(&d);
    cr_expect_eq(td_wait_exit(&d, 15000), 1);
    td_sh(&log, "cat '%s'", d.log);
    cr_expect(strstr(log, "at least 16 characters"), "%s", log);
    free(log);
    td_cleanup(&d);

    /* A port someone else holds. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(fd, 1), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    port = ntohs(sa.sin_port);
    snprintf(extra, sizeof extra, "[http]\nlisten = 127.0.0.1:%d\n", port);
    log = refused("opsb5", extra, 1);
    cr_expect(strstr(log, "Address already in use"), "%s", log);
    free(log);
    close(fd);
}

Test(ops, the_endpoint_is_read_only_and_says_what_is_wrong)
{
    char url[200], path[300], allow[64];
    struct th_resp r;
    json_t *j;

    start_node("opsr", HTTP_ON CHATTY);
    base_url(url, sizeof url);
    snprintf(path, sizeof path, "%s/metrics", url);
    cr_expect_eq(th_request("POST", path, NULL, &r), 405);
    cr_expect_eq(th_header(&r, "Allow", allow, sizeof allow), 0);
    cr_expect_str_eq(allow, "GET, HEAD");
    th_resp_free(&r);
    cr_expect_eq(th_request("DELETE", url, NULL, &r), 405);
    th_resp_free(&r);
    snprintf(path, sizeof path, "%s/nope", url);
    cr_expect_eq(th_request("GET", path, NULL, &r), 404);
    th_resp_free(&r);
    cr_expect_eq(th_request("HEAD", url, NULL, &r), 200);
    th_resp_free(&r);
    snprintf(path, sizeof path, "%s/api/logs?agent=a/b", url);
    cr_expect_eq(th_request("GET", path, NULL, &r), 400);
    j = json_loads(r.body, 0, NULL);
    cr_expect(j && json_is_false(json_object_get(j, "ok")), "%s", r.body);
    json_decref(j);
    th_resp_free(&r);
    snprintf(path, sizeof path, "%s/api/logs?agent=chatty&limit=0", url);
    cr_expect_eq(th_request("GET", path, NULL, &r), 400);
    th_resp_free(&r);
    snprintf(path, sizeof path, "%s/api/logs?agent=nosuch", url);
    cr_expect_eq(th_request("GET", path, NULL, &r), 404, "%s", r.body);
    th_resp_free(&r);

    /* The status JSON names the node and its agent. */
    snprintf(path, sizeof path, "%s/api/status", url);
    cr_assert_eq(th_request("GET", path, NULL, &r), 200);
    j = json_loads(r.body, 0, NULL);
    cr_assert_not_null(j, "not JSON: %.300s", r.body);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "node"), "mode")),
                     "single");
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(j, "agents"), "total")),
                 1);
    cr_expect_str_eq(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(j, "agents"),
                                           "list"),
                           0),
            "name")),
        "chatty");
    json_decref(j);
    th_resp_free(&r);

    /* Serving leaves nothing behind: a clean drain exits 0 (and under
     * ASan, without a leak). */
    cr_expect_eq(td_term(&d, 20000), 0, "see %s", d.log);
}

/* Lines of the daemon log that parse as JSON objects, and how many name
 * the agent. */
Test(ops, json_log_format_writes_one_object_per_line)
{
    char *log = NULL, *save = NULL;
    int64_t want = 10;
    int lines = 0, objects = 0, agent_lines = 0;

    start_node("opsj", "log_format = json\n" CHATTY);
    cr_assert(td_until(committed_at_least, &d, &want, 20000));
    td_sh(&log, "cat '%s'", d.log);
    for (char *l = strtok_r(log, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(l, 0, NULL);

        lines++;
        if (j && json_is_object(j) &&
            json_string_value(json_object_get(j, "ts")) &&
            json_string_value(json_object_get(j, "level")) &&
            json_string_value(json_object_get(j, "msg"))) {
            objects++;
            if (json_string_value(json_object_get(j, "agent")) &&
                strcmp(json_string_value(json_object_get(j, "agent")),
                       "chatty") == 0)
                agent_lines++;
        } else {
            cr_expect_fail("not a log object: %s", l);
        }
        json_decref(j);
    }
    cr_expect_gt(lines, 3);
    cr_expect_eq(objects, lines);
    cr_expect_gt(agent_lines, 0, "no line carries \"agent\": \"chatty\"");
    free(log);
}

Test(ops, agent_logs_are_a_bounded_ring_that_logs_reads_and_follows)
{
    char *out = NULL, *save = NULL;
    json_t *j, *lines;
    int64_t want = 30;
    uint64_t prev = 0, first, next;
    int n = 0;

    start_node("opsl",
               "agent_log_lines = 8\n" CHATTY
               "[agent.quiet]\nkind = chatty\nconfig = {\"interval_ms\": "
               "60000}\n");
    cr_assert(td_until(committed_at_least, &d, &want, 20000));

    /* The ring holds the last 8 lines, numbered without gaps. */
    cr_assert_eq(td_sh(&out, "%s --data-dir '%s' --json logs chatty -n 100",
                       td_bin("outlast"), d.data),
                 0, "%s", out);
    j = json_loads(out, 0, NULL);
    cr_assert_not_null(j, "%s", out);
    lines = json_object_get(j, "lines");
    cr_expect_eq(json_array_size(lines), 8, "%s", out);
    first = (uint64_t)json_integer_value(json_object_get(j, "first"));
    next = (uint64_t)json_integer_value(json_object_get(j, "next"));
    cr_expect_eq(next - first, 8);
    cr_expect_gt(first, 1, "nothing was dropped from a full ring");
    for (size_t i = 0; i < json_array_size(lines); i++) {
        uint64_t seq = (uint64_t)json_integer_value(
            json_object_get(json_array_get(lines, i), "seq"));

        if (i)
            cr_expect_eq(seq, prev + 1);
        prev = seq;
    }
    cr_expect(strstr(json_string_value(json_object_get(
                         json_array_get(lines, json_array_size(lines) - 1),
                         "text")),
                     "tick "));
    json_decref(j);
    free(out);

    /* An escape sequence and a newline from a plugin reach neither the
     * ring nor the daemon log as such. */
    cr_assert_eq(td_sh(&out, "%s --data-dir '%s' logs quiet",
                       td_bin("outlast"), d.data),
                 0, "%s", out);
    cr_expect(strstr(out, "hello ?[31mred?[0m?second"), "%s", out);
    cr_expect(strchr(out, '\033') == NULL, "an escape got through: %s", out);
    free(out);
    td_sh(&out, "cat '%s'", d.log);
    cr_expect(strchr(out, '\033') == NULL, "the daemon log has an escape");
    cr_expect(strstr(out, "\nsecond") == NULL,
              "a plugin's newline split a daemon log line");
    free(out);

    /* Following prints the lines that come after. */
    cr_assert_eq(td_sh(&out, "%s --data-dir '%s' logs chatty -f -n 1 "
                             "--interval 100 --duration 1500",
                       td_bin("outlast"), d.data),
                 0, "%s", out);
    for (char *l = strtok_r(out, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save))
        n += strstr(l, " info  tick ") != NULL;
    cr_expect_gt(n, 10, "following for 1.5 s showed %d ticks", n);
    free(out);

    /* Agents that do not exist or do not run are named as such. */
    cr_expect_eq(td_sh(&out, "%s --data-dir '%s' logs nosuch",
                       td_bin("outlast"), d.data),
                 1);
    cr_expect(strstr(out, "no agent 'nosuch'"), "%s", out);
    free(out);
    cr_expect_eq(td_sh(&out, "%s --data-dir '%s' logs 'bad/name'",
                       td_bin("outlast"), d.data),
                 2);
    free(out);
}

Test(ops, top_shows_rates_in_a_pipe_and_redraws_on_a_terminal)
{
    char *out = NULL, *second;
    int64_t want = 10;

    start_node("opstop", CHATTY);
    cr_assert(td_until(committed_at_least, &d, &want, 20000));
    cr_assert_eq(td_sh(&out, "%s --data-dir '%s' top --count 2 "
                             "--interval 500",
                       td_bin("outlast"), d.data),
                 0, "%s", out);
    cr_expect(strstr(out, "outlast top - node 1"), "%s", out);
    cr_expect(strchr(out, '\033') == NULL, "escapes in a pipe: %s", out);
    second = strstr(out + 1, "outlast top - node 1");
    cr_assert_not_null(second, "one frame only: %s", out);
    /* The second frame has rates: chatty ticks every 20 ms. */
    {
        const char *row = strstr(second, "\nchatty ");
        double ckpt = 0, steps = 0;
        char kind[32], status[32];
        unsigned long long owner, epoch, seq;

        cr_assert_not_null(row, "%s", second);
        cr_expect_eq(sscanf(row + 1, "chatty %31s %31s %llu %llu %llu %lf "
                                     "%lf",
                            kind, status, &owner, &epoch, &seq, &ckpt,
                            &steps),
                     7, "%s", row);
        cr_expect_gt(ckpt, 5, "ckpt/s %g in: %s", ckpt, row);
        cr_expect_gt(steps, 5, "steps/s %g in: %s", steps, row);
    }
    free(out);

    /* On a terminal (script(1) gives it one) it redraws in place. */
    if (!th_have("script"))
        cr_skip_test("script(1) is not installed (Debian package bsdutils)");
    cr_assert_eq(td_sh(&out, "script -qec \"%s --data-dir '%s' top --count 2 "
                             "--interval 200\" /dev/null",
                       td_bin("outlast"), d.data),
                 0, "%s", out);
    cr_expect(strstr(out, "\033[H\033[2J"), "no clear-and-home on a tty");
    cr_expect(strstr(out, "\033[?25h"), "the cursor was not shown again");
    cr_expect(strstr(out, "chatty"), "%s", out);
    free(out);
}

#ifdef OL_HAVE_SYSTEMD
/* Wait up to 200 ms for one datagram on fd, into buf (cap bytes, ends in
 * NUL); 1 if one came. */
static int next_notice(int fd, char *buf, size_t cap)
{
    struct pollfd p = {fd, POLLIN, 0};
    ssize_t n;

    if (poll(&p, 1, 200) <= 0)
        return 0;
    n = recv(fd, buf, cap - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return 1;
}

/* Listen where systemd would, start the node with NOTIFY_SOCKET and
 * WATCHDOG_USEC, and read what it says. */
Test(ops, sd_notify_ready_watchdog_and_stopping)
{
    char path[200], buf[512];
    struct sockaddr_un sa;
    int fd, ready = 0, watchdog = 0, stopping = 0, answered = 0;
    uint64_t end;

    td_init(&d, "opsn", CHATTY);
    snprintf(path, sizeof path, "%s/notify.sock", d.root);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "300000", 1);
    td_spawn(&d);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");

    end = td_ms() + 20000;
    while (td_ms() < end && (!ready || watchdog < 3)) {
        if (!next_notice(fd, buf, sizeof buf))
            continue;
        if (strstr(buf, "READY=1")) {
            struct td_resp r;

            ready++;
            /* Ready means ready: the control socket answers now. */
            answered = td_call(&d, &r, "op", "status", NULL) == 0;
            td_resp_free(&r);
            cr_expect(strstr(buf, "STATUS=node 1 up"), "%s", buf);
        }
        if (strstr(buf, "WATCHDOG=1"))
            watchdog++;
    }
    cr_expect_eq(ready, 1, "READY=1 came %d times", ready);
    cr_expect(answered, "READY=1 came before the control socket answered");
    cr_expect_geq(watchdog, 3, "only %d watchdog pings in 20 s at 300 ms",
                  watchdog);

    kill(d.pid, SIGTERM);
    end = td_ms() + 20000;
    while (td_ms() < end && !stopping) {
        if (!next_notice(fd, buf, sizeof buf))
            continue;
        stopping += strstr(buf, "STOPPING=1") != NULL;
    }
    cr_expect(stopping, "no STOPPING=1 after SIGTERM");
    cr_expect_eq(td_wait_exit(&d, 20000), 0);
    close(fd);
}
#endif
