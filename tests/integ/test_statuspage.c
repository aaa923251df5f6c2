/*
 * A real 3-node cluster watched the way an operator would: the status page
 * open in headless Chromium while a node that hosts agents is killed with
 * SIGKILL, `outlast logs -f` following an agent across that failover, and
 * /metrics on the leader.
 *
 * The page is loaded once and never reloaded: what the test sees after the
 * kill is the page refreshing itself.  Screenshots before and after the
 * failover are kept in <build>/tests/artifacts/.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/wait.h"
#include "tests/support/cdp.h"
#include "tests/support/cluster.h"
#include "tests/support/http.h"

#define AGENTS 6
#define MOVE_MS 30000

static struct tc c;
static struct cdp browser;
static pid_t follower_pid;

static void teardown(void)
{
    if (follower_pid > 0) {
        kill(follower_pid, SIGKILL);
        waitpid(follower_pid, NULL, 0);
        follower_pid = 0;
    }
    cdp_close(&browser);
    tc_cleanup(&c);
}

TestSuite(statuspage, .fini = teardown, .timeout = 300);

/* A cluster whose nodes serve HTTP, with chatty agents spread over it.
 * Returns the leader's index. */
static int start_cluster(const char *tag)
{
    struct tc_opts o = {.n = 3, .tag = tag,
                        .extra = "[http]\nlisten = 127.0.0.1:0\n"};
    struct tc_agent a[64];
    char name[16], err[512];
    uint64_t end;
    int leader, ready = 0;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0, "no leader");
    for (int i = 0; i < AGENTS; i++) {
        snprintf(name, sizeof name, "c%d", i + 1);
        cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "chatty", name,
                                    "{\"interval_ms\": 100}", err,
                                    sizeof err),
                     0, "spawn %s: %s", name, err);
    }
    end = td_ms() + 30000;
    while (td_ms() < end) {
        int n = tc_agents(&c, leader, a, 64);

        ready = 0;
        for (int i = 0; i < n; i++)
            ready += a[i].owner && a[i].seq > 1 &&
                     strcmp(a[i].status, "running") == 0;
        if (ready == AGENTS)
            break;
        td_sleep_ms(100);
    }
    cr_assert_eq(ready, AGENTS, "only %d of %d agents started", ready,
                 AGENTS);
    return leader;
}

/* A follower that hosts agents (waiting for rebalancing if need be), and
 * the agents it hosts. */
static int pick_victim(int leader, struct tc_agent *moved, int *n_moved)
{
    uint64_t end = td_ms() + 20000;
    int v;

    while ((v = tc_pick_follower(&c, leader, 0)) < 0 && td_ms() < end)
        td_sleep_ms(200);
    cr_assert_geq(v, 0, "no follower hosts an agent");
    *n_moved = tc_agents_on(&c, leader, v, moved, 64);
    cr_assert_gt(*n_moved, 0);
    return v;
}

static const char page_state_js[] =
    "JSON.stringify({"
    " updated: document.body.dataset.updated || '',"
    " error: document.getElementById('error').hidden ? '' :"
    "        document.getElementById('error').textContent,"
    " nodes: [...document.querySelectorAll('#nodes tbody tr')].map(tr => ({"
    "   id: Number(tr.dataset.node), health: tr.dataset.health || ''})),"
    " agents: [...document.querySelectorAll('#agents tbody tr')].map(tr => ({"
    "   name: tr.dataset.agent, owner: Number(tr.dataset.owner),"
    "   epoch: Number(tr.dataset.epoch), status: tr.dataset.status})),"
    " events: [...document.querySelectorAll('#events tbody tr')].map(tr => ({"
    "   kind: tr.dataset.kind, agent: tr.dataset.agent,"
    "   from: Number(tr.dataset.from), to: Number(tr.dataset.to)}))"
    "})";

static json_t *page_state(void)
{
    char *s = cdp_eval(&browser, page_state_js, 10000);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;

    free(s);
    return j;
}

static json_t *find_by(json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(json_object_get(v, key));

        if (s && strcmp(s, value) == 0)
            return v;
    }
    return NULL;
}

static const char *health_of(json_t *st, uint64_t id)
{
    size_t i;
    json_t *v;

    json_array_foreach(json_object_get(st, "nodes"), i, v)
    {
        if ((uint64_t)json_integer_value(json_object_get(v, "id")) == id)
            return json_string_value(json_object_get(v, "health"));
    }
    return "";
}

/* Does the page show every moved agent on a new owner under a newer epoch,
 * a "moved" event for it from the victim, and the victim down? */
static int shows_failover(json_t *st, const struct tc_agent *moved, int n,
                          uint64_t victim, char *why, size_t cap)
{
    size_t i;
    json_t *e;

    if (strcmp(health_of(st, victim), "down") != 0) {
        snprintf(why, cap, "node %" PRIu64 " is '%s', not down", victim,
                 health_of(st, victim));
        return 0;
    }
    for (int k = 0; k < n; k++) {
        json_t *a = find_by(json_object_get(st, "agents"), "name",
                            moved[k].name);
        int seen = 0;

        if (a == NULL) {
            snprintf(why, cap, "agent '%s' is not listed", moved[k].name);
            return 0;
        }
        if ((uint64_t)json_integer_value(json_object_get(a, "owner")) ==
                victim ||
            (uint64_t)json_integer_value(json_object_get(a, "epoch")) <=
                moved[k].epoch) {
            snprintf(why, cap, "agent '%s' still shows owner %" PRIu64
                               " epoch %" PRIu64,
                     moved[k].name,
                     (uint64_t)json_integer_value(json_object_get(a, "owner")),
                     (uint64_t)json_integer_value(json_object_get(a, "epoch")));
            return 0;
        }
        json_array_foreach(json_object_get(st, "events"), i, e)
        {
            const char *kind = json_string_value(json_object_get(e, "kind"));
            const char *ag = json_string_value(json_object_get(e, "agent"));

            seen |= kind && ag && strcmp(kind, "moved") == 0 &&
                    strcmp(ag, moved[k].name) == 0 &&
                    (uint64_t)json_integer_value(json_object_get(e, "from")) ==
                        victim;
        }
        if (!seen) {
            snprintf(why, cap, "no 'moved' event for '%s' from node %" PRIu64,
                     moved[k].name, victim);
            return 0;
        }
    }
    return 1;
}

static void artifact(const char *name, char *out, size_t cap)
{
    const char *root = getenv("OL_BUILD_ROOT");
    char dir[300];

    snprintf(dir, sizeof dir, "%s/tests/artifacts", root ? root : "build");
    mkdir(dir, 0755);
    snprintf(out, cap, "%s/%s", dir, name);
}

static void expect_png(const char *path)
{
    struct stat st;
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");

    cr_assert_not_null(f, "no screenshot at %s", path);
    cr_expect_eq(fread(sig, 1, 8, f), 8);
    fclose(f);
    cr_expect(memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0, "%s is not a PNG",
              path);
    cr_expect(stat(path, &st) == 0 && st.st_size > 10000,
              "%s is only %lld bytes", path, (long long)st.st_size);
}

Test(statuspage, shows_a_failover_in_a_real_browser)
{
    struct tc_agent moved[64];
    char addr[80], url[200], why[512] = "", shot[400], blog[300];
    int leader, v, n_moved, ok = 0;
    json_t *st = NULL;
    uint64_t end, victim;

    if (cdp_browser() == NULL)
        cr_skip_test("chromium is not installed (Debian package chromium); "
                     "the status page was not tested in a browser");
    leader = start_cluster("sp");
    cr_assert_eq(th_node_http(&c.nodes[leader].d, addr, sizeof addr), 0);
    snprintf(url, sizeof url, "http://%s/", addr);
    snprintf(blog, sizeof blog, "%s/chromium.log", c.nodes[leader].d.root);
    cr_assert_eq(cdp_start(&browser, blog, why, sizeof why), 0, "%s", why);
    cr_assert_eq(cdp_open(&browser, url, 1400, 1100), 0,
                 "the browser did not open %s; see %s", url, blog);

    /* The page fills in: three nodes, all alive, every agent listed. */
    end = td_ms() + 30000;
    while (td_ms() < end) {
        json_decref(st);
        st = page_state();
        if (st && json_array_size(json_object_get(st, "nodes")) == 3 &&
            json_array_size(json_object_get(st, "agents")) == AGENTS &&
            strcmp(health_of(st, c.nodes[(leader + 1) % 3].id), "alive") ==
                0 &&
            strcmp(health_of(st, c.nodes[(leader + 2) % 3].id), "alive") == 0)
            break;
        td_sleep_ms(250);
    }
    cr_assert_not_null(st, "the page never answered");
    cr_assert_eq(json_array_size(json_object_get(st, "nodes")), 3,
                 "page: %s", json_dumps(st, 0));
    cr_assert_eq(json_array_size(json_object_get(st, "agents")), AGENTS);
    artifact("statuspage-before.png", shot, sizeof shot);
    cr_expect_eq(cdp_screenshot(&browser, shot), 0);
    expect_png(shot);

    v = pick_victim(leader, moved, &n_moved);
    victim = c.nodes[v].id;
    tc_kill(&c, v);
    cr_log_info("killed node %" PRIu64 ", which hosted %d agent(s)", victim,
                n_moved);

    end = td_ms() + MOVE_MS;
    while (td_ms() < end && !ok) {
        td_sleep_ms(250);
        json_decref(st);
        st = page_state();
        ok = st && shows_failover(st, moved, n_moved, victim, why,
                                  sizeof why);
    }
    artifact("statuspage-after.png", shot, sizeof shot);
    cr_expect_eq(cdp_screenshot(&browser, shot), 0);
    expect_png(shot);
    cr_assert(ok, "the page did not show the failover within %d ms: %s\n%s",
              MOVE_MS, why, st ? json_dumps(st, JSON_INDENT(1)) : "");
    cr_expect_str_eq(json_string_value(json_object_get(st, "error")), "",
                     "the page shows an error");
    json_decref(st);
}

static int count_in(const char *path, const char *needle)
{
    char *out = NULL;
    int n = 0;

    td_sh(&out, "grep -c -- '%s' '%s'", needle, path);
    n = out ? atoi(out) : 0;
    free(out);
    return n;
}

/* Has anything been written to the file at `path`? */
static int file_filled(void *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 && sb.st_size > 0;
}

/* `outlast logs` asked of a node that does not host the agent reads it
 * from the host; following it survives the host's death; and the leader's
 * metrics show the failover. */
Test(statuspage, logs_and_metrics_follow_a_failover)
{
    struct tc_agent moved[64];
    char *out = NULL, addr[80], url[200], path[300], follow_log[300],
         needle[64];
    int leader, v, n_moved;
    struct th_resp r;
    uint64_t victim, new_owner = 0, end;
    json_t *j;
    pid_t pid;

    leader = start_cluster("spl");
    v = pick_victim(leader, moved, &n_moved);
    victim = c.nodes[v].id;

    /* Asked of the leader, answered by the host. */
    cr_assert_eq(td_sh(&out, "%s --socket '%s' --json logs %s -n 5",
                       td_bin("outlast"), c.nodes[leader].d.sock,
                       moved[0].name),
                 0, "%s", out);
    j = json_loads(out, 0, NULL);
    cr_assert_not_null(j, "%s", out);
    cr_expect_eq((uint64_t)json_integer_value(json_object_get(j, "node")),
                 victim, "the lines came from node %" PRIu64 ", not the "
                         "host %" PRIu64,
                 (uint64_t)json_integer_value(json_object_get(j, "node")),
                 victim);
    cr_expect_gt(json_array_size(json_object_get(j, "lines")), 0);
    json_decref(j);
    free(out);
    cr_assert_eq(th_node_http(&c.nodes[leader].d, addr, sizeof addr), 0);
    snprintf(url, sizeof url, "http://%s/api/logs?agent=%s&limit=3", addr,
             moved[0].name);
    cr_expect_eq(th_request("GET", url, NULL, &r), 200, "%s", r.body);
    j = json_loads(r.body, 0, NULL);
    cr_expect_eq((uint64_t)json_integer_value(json_object_get(j, "node")),
                 victim);
    cr_expect_eq(json_array_size(json_object_get(j, "lines")), 3);
    json_decref(j);
    th_resp_free(&r);

    /* Follow it through the leader while its host dies. */
    snprintf(follow_log, sizeof follow_log, "%s/follow.log",
             c.nodes[leader].d.root);
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(follow_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        dup2(fd, 1);
        dup2(fd, 2);
        execl(td_bin("outlast"), "outlast", "--socket",
              c.nodes[leader].d.sock, "logs", moved[0].name, "-f",
              "--interval", "200", "--duration", "60000", (char *)NULL);
        _exit(127);
    }
    follower_pid = pid;
    /* The follower runs once it has printed the agent's lines. */
    cr_assert(tw_until(file_filled, follow_log, 10000),
              "`outlast logs -f` printed nothing; see %s", follow_log);
    tc_kill(&c, v);

    /* The follower notices the agent on its new node, and goes on. */
    end = td_ms() + MOVE_MS;
    while (td_ms() < end && count_in(follow_log, "-- now on node") == 0)
        td_sleep_ms(200);
    td_sh(&out, "cat '%s'", follow_log);
    cr_assert(strstr(out, "-- now on node"), "no move noticed:\n%s", out);
    sscanf(strstr(out, "-- now on node") + 15, "%" SCNu64, &new_owner);
    cr_expect(new_owner != 0 && new_owner != victim,
              "now on node %" PRIu64, new_owner);
    free(out);
    end = td_ms() + 10000;
    snprintf(needle, sizeof needle, "resumed at tick");
    while (td_ms() < end && count_in(follow_log, needle) == 0)
        td_sleep_ms(200);
    cr_expect_gt(count_in(follow_log, needle), 0,
                 "the agent's lines on its new node were not shown");
    kill(follower_pid, SIGTERM);
    waitpid(follower_pid, NULL, 0);
    follower_pid = 0;

    /* The leader's metrics: the victim is down, failovers counted. */
    snprintf(url, sizeof url, "http://%s/metrics", addr);
    cr_assert_eq(th_request("GET", url, NULL, &r), 200);
    snprintf(path, sizeof path, "outlast_peer_up{peer=\"%" PRIu64 "\"} 0\n",
             victim);
    cr_expect(strstr(r.body, path), "no '%s' in:\n%s", path, r.body);
    {
        const char *p = strstr(r.body,
                               "outlast_placements_total{reason=\"failover\"} ");

        cr_assert_not_null(p);
        cr_expect_geq(atoi(p + strlen("outlast_placements_total{reason="
                                      "\"failover\"} ")),
                      n_moved);
    }
    cr_expect(strstr(r.body, "outlast_raft_leader 1\n"));
    cr_expect(strstr(r.body, "outlast_transport_handshakes_total{result=\"ok\"}"));
    if (th_have("promtool")) {
        snprintf(path, sizeof path, "%s/metrics.txt", c.nodes[leader].d.root);
        {
            FILE *f = fopen(path, "w");

            cr_assert_not_null(f);
            fputs(r.body, f);
            fclose(f);
        }
        cr_expect_eq(td_sh(&out, "promtool check metrics < '%s'", path), 0,
                     "promtool check metrics:\n%s", out);
        free(out);
    }
    th_resp_free(&r);

    /* A leader that forwarded log requests and served HTTP drains
     * cleanly. */
    v = td_term(&c.nodes[leader].d, 20000);
    out = NULL;
    if (v != 0)
        td_sh(&out, "tail -n 40 '%s'", c.nodes[leader].d.log);
    cr_expect_eq(v, 0, "the leader's stop ended %d; its log ends:\n%s", v,
                 out ? out : "");
    free(out);
    c.nodes[leader].up = 0;
}
