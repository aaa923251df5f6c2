/*
 * Offline commands that need no node: `verify` walks a database file (a
 * node's, or an export bundle) with the verifier and reports every bad
 * record by agent and seq; `keygen` writes a fresh node key file.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/verify.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/keys.h"
#include "state/nodestate.h"
#include "cli.h"

#define TRUST_MAX 16

struct verify_ctx {
    json_t *problems; /* --json: collected here */
};

static void on_problem(void *data, const char *agent, uint64_t seq,
                       const char *problem)
{
    struct verify_ctx *v = data;

    /* Problems of the file rather than of one agent's record come with an
     * empty agent name. */
    if (v->problems) {
        json_array_append_new(v->problems,
                              agent[0] ? json_pack("{s:s, s:I, s:s}", "agent",
                                                   agent, "seq",
                                                   (json_int_t)seq, "problem",
                                                   problem)
                                       : json_pack("{s:n, s:s}", "agent",
                                                   "problem", problem));
        return;
    }
    if (agent[0] == '\0')
        printf("database: %s\n", problem);
    else if (seq == 0)
        printf("agent '%s': %s\n", agent, problem);
    else
        printf("agent '%s' seq %" PRIu64 ": %s\n", agent, seq, problem);
}

static int report(struct ol__cli *c, const char *agent,
                  const struct ol__verify_report *r, json_t *problems)
{
    if (c->json) {
        json_t *j = json_pack("{s:b, s:s, s:s?, s:I, s:I, s:I, s:I, s:I, "
                              "s:o}",
                              "ok", r->bad == 0, "db", c->db, "agent", agent,
                              "agents", (json_int_t)r->agents, "checkpoints",
                              (json_int_t)r->checkpoints, "seals",
                              (json_int_t)r->seals, "bad",
                              (json_int_t)r->bad, "gaps",
                              (json_int_t)r->gaps, "problems", problems);

        if (ol__cli_put_json(j) != 0)
            return OL_EXIT_FAIL;
    } else {
        printf("checked %" PRIu64 " checkpoint%s of %" PRIu64 " agent%s "
               "(%" PRIu64 " seal%s) in '%s': ",
               r->checkpoints, r->checkpoints == 1 ? "" : "s", r->agents,
               r->agents == 1 ? "" : "s", r->seals, r->seals == 1 ? "" : "s",
               c->db);
        if (r->bad)
            printf("%" PRIu64 " problem%s", r->bad,
                   r->bad == 1 ? "" : "s");
        else
            printf("all verify");
        if (r->gaps)
            printf(", %" PRIu64 " gap%s from snapshot installs", r->gaps,
                   r->gaps == 1 ? "" : "s");
        printf("\n");
    }
    return r->bad ? OL_EXIT_FAIL : 0;
}

#define CLUSTER_MAX 16

/* `verify --cluster DB DB...`: each store on its own, then across them. */
static int verify_cluster(struct ol__cli *c, const char **files, int n,
                          const uint8_t (*keys)[OL_PK_SIZE], size_t n_trust)
{
    struct ol__store st[CLUSTER_MAX];
    sqlite3 *dbs[CLUSTER_MAX];
    struct ol__verify_report r, total;
    struct verify_ctx v = {0};
    int opened = 0, rv = 0;

    memset(&total, 0, sizeof total);
    if (c->json && (v.problems = json_array()) == NULL)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory");
    for (int i = 0; i < n; i++) {
        rv = ol__store_open(&st[i], files[i], OL_STORE_READ);
        if (rv != 0) {
            rv = ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv), "verify: %s",
                              st[i].errmsg);
            goto out;
        }
        opened++;
        dbs[i] = st[i].db;
        if (!c->json)
            printf("== %s\n", files[i]);
        rv = ol__verify_store(dbs[i], NULL, keys, n_trust, on_problem, &v,
                              &r);
        if (rv != 0) {
            rv = ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv),
                              "verify: could not read '%s' to the end",
                              files[i]);
            goto out;
        }
        total.checkpoints += r.checkpoints;
        total.bad += r.bad;
        total.gaps += r.gaps;
        if (r.agents > total.agents)
            total.agents = r.agents;
    }
    if (!c->json)
        printf("== across %d nodes\n", n);
    rv = ol__verify_cluster(dbs, files, (size_t)n, on_problem, &v, &r);
    if (rv != 0) {
        rv = ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv),
                          "verify: cross-node comparison failed");
        goto out;
    }
    total.bad += r.bad;
    if (c->json) {
        json_t *j = json_pack("{s:b, s:i, s:I, s:I, s:I, s:o}", "ok",
                              total.bad == 0, "nodes", n, "checkpoints",
                              (json_int_t)total.checkpoints, "bad",
                              (json_int_t)total.bad, "gaps",
                              (json_int_t)total.gaps, "problems", v.problems);

        v.problems = NULL;
        (void)ol__cli_put_json(j);
    } else {
        printf("checked %" PRIu64 " checkpoints on %d nodes: %s\n",
               total.checkpoints, n,
               total.bad ? "problems found" : "all verify and agree");
    }
    rv = total.bad ? OL_EXIT_FAIL : 0;
out:
    json_decref(v.problems);
    for (int i = 0; i < opened; i++)
        ol__store_close(&st[i]);
    return rv;
}

static void record_problem(struct verify_ctx *v, struct ol__verify_report *r,
                           const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void record_problem(struct verify_ctx *v, struct ol__verify_report *r,
                           const char *fmt, ...)
{
    char msg[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->bad++;
    on_problem(v, "", 0, msg);
}

/*
 * A node's database beside its node record (node.state): the database must
 * be the one the record names and hold at least what the record says was
 * committed.  The truncations a database cannot show by itself (a lost
 * WAL, an older copy) show here.
 */
static void check_record(struct ol__cli *c, struct ol__store *st,
                         struct verify_ctx *v, struct ol__verify_report *r)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], err[OL_ERRMSG_SIZE];
    struct ol__store_files f;
    struct ol__nstate rec;
    uint64_t commits = st->commits;
    int64_t now;
    char *slash;
    int rv;

    if (st->bundle)
        return;
    snprintf(dir, sizeof dir, "%s", c->db);
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (ol__path_join(path, sizeof path, dir, OL_NSTATE_FILE) != 0)
        return;
    rv = ol__nstate_load(path, NULL, &rec, err);
    if (rv == OL_ENOTFOUND)
        return;
    if (rv != 0) {
        record_problem(v, r, "%s", err);
        return;
    }
    if (st->schema >= 2 &&
        memcmp(st->db_id, rec.db_id, OL_DBID_SIZE) != 0) {
        record_problem(v, r,
                       "it is not the database its node record ('%s') "
                       "names: the file was replaced, or the record is "
                       "another database's",
                       path);
        return;
    }
    /* The count as of now, read after the record: a node that is running
     * writes its record after the commits it counts, so a count read
     * before the record (when the database was opened) can be behind a
     * record that is not. */
    if (ol__store_meta_get_int(st, "commits", &now) == 0 && now >= 0)
        commits = (uint64_t)now;
    if (commits < rec.commits)
        record_problem(v, r,
                       "it holds %" PRIu64 " commits, but its node record "
                       "('%s') says the node committed %" PRIu64 ": its "
                       "newest checkpoints are missing",
                       commits, path, rec.commits);
    ol__store_files(c->db, &f);
    if (rec.run == OL_NSTATE_RUNNING && !f.wal && commits <= rec.commits)
        record_problem(v, r,
                       "its node stopped without closing it, and '%s-wal', "
                       "which held the newest commits, is missing",
                       c->db);
}

int ol__cmd_verify(struct ol__cli *c)
{
    const char *agent = NULL, *trust[TRUST_MAX], *pos[CLUSTER_MAX];
    size_t n_trust = 0;
    int cluster = 0;
    const struct ol__cli_opt opts[] = {
        {.name = "--agent", .value = &agent},
        {.name = "--trust", .list = trust,
         .n_list = &n_trust, .max_list = TRUST_MAX},
        {.name = "--cluster", .flag = &cluster},
        {0},
    };
    uint8_t keys[TRUST_MAX][OL_PK_SIZE];
    struct ol__verify_report r;
    struct verify_ctx v = {0};
    struct ol__store st;
    int n, rv;

    if ((rv = ol__cli_parse(c, opts, pos, 0, CLUSTER_MAX, &n)) != 0)
        return rv;
    if (!cluster && n > 0)
        return ol__cli_usage_err(c, "unexpected argument '%s' (a database "
                                    "is given with --db FILE)",
                                 pos[0]);
    for (size_t i = 0; i < n_trust; i++)
        if (ol__pk_parse(trust[i], keys[i]) != 0)
            return ol__cli_usage_err(c, "--trust needs a public key of 64 "
                                        "hex digits, not '%s'",
                                     trust[i]);
    if (cluster) {
        if (n < 2 || agent)
            return ol__cli_usage_err(c, "verify --cluster takes two or more "
                                        "database files (one per node), and "
                                        "no --agent");
        return verify_cluster(c, pos, n,
                              (const uint8_t(*)[OL_PK_SIZE])keys, n_trust);
    }
    if (agent && !ol__name_valid(agent))
        return ol__cli_usage_err(c, "'%s' is not a valid agent name", agent);
    if ((rv = ol__cli_open_db(c, &st)) != 0)
        return rv;
    if (c->json && (v.problems = json_array()) == NULL) {
        ol__store_close(&st);
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory");
    }
    rv = ol__verify_store(st.db, agent, (const uint8_t(*)[OL_PK_SIZE])keys,
                          n_trust, on_problem, &v, &r);
    if (rv == 0 && agent == NULL)
        check_record(c, &st, &v, &r);
    ol__store_close(&st);
    if (rv != 0) {
        json_decref(v.problems);
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv),
                            "verify: could not read '%s' to the end: %s",
                            c->db, ol_strerror(rv));
    }
    return report(c, agent, &r, v.problems); /* takes v.problems */
}

/* ---- keygen ---- */

int ol__cmd_keygen(struct ol__cli *c)
{
    const char *out = NULL, *pos[1];
    int force = 0;
    const struct ol__cli_opt opts[] = {
        {.name = "--out", .value = &out},
        {.name = "--force", .flag = &force},
        {0},
    };
    char path[PATH_MAX], err[OL_ERRMSG_SIZE], hex[OL_PK_HEX_SIZE];
    struct ol__key k;
    struct stat sb;
    int n, rv;

    if ((rv = ol__cli_parse(c, opts, pos, 0, 0, &n)) != 0)
        return rv;
    if (out && out[0] == '\0')
        return ol__cli_usage_err(c, "--out needs a file name");
    if (out) {
        snprintf(path, sizeof path, "%s", out);
    } else {
        if (ol__path_join(path, sizeof path, c->data_dir, OL_CLI_KEY_NAME))
            return ol__cli_usage_err(c, "data dir path is too long");
        if (ol__mkdirs(c->data_dir, 0700, err) != 0)
            return ol__cli_fail(c, OL_EXIT_FAIL, "OL_EIO", "keygen: %s", err);
    }
    if (stat(path, &sb) == 0 && !force)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_EEXISTS",
                            "keygen: '%s' already exists; pass --force to "
                            "replace it (the old key is lost)",
                            path);
    if (ol__key_generate(&k) != 0)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM",
                            "keygen: could not generate a key");
    rv = ol__key_save(&k, path, err);
    ol__pk_hex(k.pk, hex);
    ol__key_close(&k);
    if (rv != 0)
        return ol__cli_fail(c, OL_EXIT_FAIL, ol_err_name(rv), "keygen: %s",
                            err);
    if (c->json) {
        json_t *j = json_pack("{s:b, s:s, s:s}", "ok", 1, "path", path, "pk",
                              hex);

        (void)ol__cli_put_json(j);
    } else {
        printf("%s\n", hex);
        fprintf(stderr, "wrote node key '%s' (mode 0600)\n", path);
    }
    return 0;
}
