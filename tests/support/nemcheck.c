/*
 * The nemesis checker's invariants (b), (c) and (d); see nemesis.h.
 *
 * (b) One place at a time.  Every steplog line names the agent, the epoch
 * it ran under, the seq its checkpoint took, the node and the time on the
 * machine's CLOCK_MONOTONIC read by system call.  All nodes run on one
 * machine without time namespaces, so that clock is one clock for all of
 * them, and no LD_PRELOAD shim (the suspended clock) touches it.  For each
 * epoch E of an agent, the hand-off to E is taken to be done at the step
 * that produced E's first committed checkpoint (on E's owner, the node
 * that signed it): its placement had committed before that step could
 * run.  A step of the agent under an older epoch on another node after
 * that moment ran while the new owner ran it too: a violation.  Steps
 * between the placement's commit and the new owner's first step are not
 * flagged (the new owner was not running yet).
 *
 * (c) Exactly once.  The ledger's committed state (its head checkpoint)
 * holds the numbers it received and every repeat.  A repeat, or an
 * acknowledged number it never received, is a violation; a number the
 * client gave up on may be there or not.
 *
 * (d) No placement from an old term.  Placements are not yet tagged with
 * their term in the log (a follower's forwarded commands are merged into
 * the leader's entry, under the leader's term), so this reads the nodes'
 * own logs: "raft: X -> leader (term T, ...)" says when each node started
 * to lead which term, and "placement: 'A' -> node N epoch E (why)" what a
 * leader decided and when.  A placement decided by a node leading term T
 * after another node had started to lead a later term (by the log's wall
 * clock, one machine's clock for all) is stale.  It took effect if the
 * agent reached epoch E and no leader that was current logged a placement
 * of A to epoch E: every epoch after the first is created by a placement
 * and every placement is logged before it is proposed.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nemesis_int.h"
#include "record/seal.h"
#include "base/keys.h"

#define SHOW 3 /* evidence lines per violation */

/* ---- reporting ---- */

int nem_violation(struct nem *m, int inv, const char *key, const char *fmt,
                  ...)
{
    static const char names[] = "abcdr";
    char *msg = NULL;
    va_list ap;
    FILE *f;
    char path[300];

    for (size_t i = 0; i < m->n_seen; i++)
        if (strcmp(m->seen[i], key) == 0)
            return 0;
    if (m->n_seen == m->cap_seen) {
        m->cap_seen = m->cap_seen ? m->cap_seen * 2 : 64;
        m->seen = realloc(m->seen, m->cap_seen * sizeof *m->seen);
        cr_assert_not_null(m->seen);
    }
    m->seen[m->n_seen++] = strdup(key);
    m->res.violations++;
    m->res.by_inv[inv]++;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    cr_log_error("VIOLATION (%c) nemesis %s seed %" PRIu64 " round %d [%s]: "
                 "%s",
                 names[inv], m->o.name, m->seed, m->round, m->what,
                 msg ? msg : fmt);
    snprintf(path, sizeof path, "%s/violations.txt", m->dir);
    if ((f = fopen(path, "a")) != NULL) {
        fprintf(f, "VIOLATION (%c) round %d [%s]: %s\n", names[inv],
                m->round, m->what, msg ? msg : fmt);
        fclose(f);
    }
    free(msg);
    return 1;
}

/* ---- committed rows, from every running node ---- */

struct row {
    int agent;
    uint64_t seq, epoch;
    int signer; /* node index, -1 unknown */
};

struct rows {
    struct row *r;
    size_t n, cap;
};

static int agent_index(const struct nem *m, const char *name)
{
    for (int k = 0; k < m->n_agents; k++)
        if (strcmp(m->agents[k], name) == 0)
            return k;
    return -1;
}

static int signer_node(const struct nem *m, const void *seal, size_t len)
{
    struct ol__seal s;
    char hex[OL_PK_HEX_SIZE];

    if (seal == NULL || ol__seal_parse(seal, len, &s) != 0)
        return -1;
    ol__pk_hex(s.signer, hex);
    for (int i = 0; i < m->c.n; i++)
        if (strcmp(hex, m->c.nodes[i].pk) == 0)
            return i;
    return -1;
}

static int row_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;

    if (x->agent != y->agent)
        return x->agent < y->agent ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The union of every running node's checkpoint rows of our agents, by
 * (agent, seq): a node that installed a snapshot lacks some, and tc_check
 * has checked that nodes agree on the rows they share. */
static void load_rows(struct nem *m, struct rows *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < m->c.n; i++) {
        sqlite3 *db;
        sqlite3_stmt *st;

        if (!m->c.nodes[i].up)
            continue;
        db = td_db(&m->c.nodes[i].d);
        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT k.agent, k.seq, k.epoch, "
                                        "s.body FROM checkpoints k LEFT "
                                        "JOIN seals s ON s.id = k.seal",
                                        -1, &st, NULL),
                     SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            int a = agent_index(m, (const char *)sqlite3_column_text(st, 0));
            struct row *r;

            if (a < 0)
                continue;
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 4096;
                out->r = realloc(out->r, out->cap * sizeof *out->r);
                cr_assert_not_null(out->r);
            }
            r = &out->r[out->n++];
            r->agent = a;
            r->seq = (uint64_t)sqlite3_column_int64(st, 1);
            r->epoch = (uint64_t)sqlite3_column_int64(st, 2);
            r->signer = signer_node(m, sqlite3_column_blob(st, 3),
                                    (size_t)sqlite3_column_bytes(st, 3));
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    qsort(out->r, out->n, sizeof *out->r, row_cmp);
    /* Drop duplicates of (agent, seq). */
    {
        size_t w = 0;

        for (size_t k = 0; k < out->n; k++)
            if (w == 0 || row_cmp(&out->r[w - 1], &out->r[k]) != 0)
                out->r[w++] = out->r[k];
        out->n = w;
    }
}

static const struct row *find_row(const struct rows *rs, int agent,
                                   uint64_t seq)
{
    struct row key = {.agent = agent, .seq = seq};

    return bsearch(&key, rs->r, rs->n, sizeof *rs->r, row_cmp);
}

/* ---- step logs ---- */

struct step {
    int agent, node;
    uint64_t epoch, seq, k, x;
    int64_t tmono, real;
    char ev[12];
    char *line;
};

struct steps {
    struct step *s;
    size_t n, cap;
};

static void steps_free(struct steps *ss)
{
    for (size_t i = 0; i < ss->n; i++)
        free(ss->s[i].line);
    free(ss->s);
    memset(ss, 0, sizeof *ss);
}

static void load_steps(struct nem *m, struct steps *out)
{
    DIR *d = opendir(m->steps);
    struct dirent *e;

    memset(out, 0, sizeof *out);
    cr_assert_not_null(d, "open %s", m->steps);
    while ((e = readdir(d)) != NULL) {
        char path[600], line[600];
        FILE *f;

        if (strstr(e->d_name, ".steplog") == NULL)
            continue;
        snprintf(path, sizeof path, "%s/%s", m->steps, e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof line, f)) {
            char agent[80], node[80];
            struct step s;
            unsigned long long node_id;
            int64_t mono, boot;

            memset(&s, 0, sizeof s);
            if (sscanf(line,
                       "A=%79s E=%" SCNu64 " S=%" SCNu64 " N=%79s ev=%11s "
                       "k=%" SCNu64 " x=%" SCNu64 " mono=%" SCNd64
                       " boot=%" SCNd64 " real=%" SCNd64 " tmono=%" SCNd64,
                       agent, &s.epoch, &s.seq, node, s.ev, &s.k, &s.x,
                       &mono, &boot, &s.real, &s.tmono) != 11)
                continue; /* a torn last line of a killed node */
            s.agent = agent_index(m, agent);
            if (s.agent < 0 || sscanf(node, "node-%llu", &node_id) != 1)
                continue;
            s.node = tc_index(&m->c, (uint64_t)node_id);
            if (s.node < 0)
                continue;
            line[strcspn(line, "\n")] = '\0';
            s.line = strdup(line);
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 8192;
                out->s = realloc(out->s, out->cap * sizeof *out->s);
                cr_assert_not_null(out->s);
            }
            out->s[out->n++] = s;
        }
        fclose(f);
    }
    closedir(d);
}

/* ---- (b) one place at a time ---- */

static int step_cmp(const void *a, const void *b)
{
    const struct step *x = a, *y = b;

    if (x->agent != y->agent)
        return x->agent < y->agent ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->tmono < y->tmono ? -1 : x->tmono > y->tmono;
}

/* Index of the first step >= (agent, seq) in steps sorted by step_cmp. */
static size_t step_lower(const struct steps *ss, int agent, uint64_t seq)
{
    size_t lo = 0, hi = ss->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct step *s = &ss->s[mid];

        if (s->agent < agent || (s->agent == agent && s->seq < seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The earliest step of (agent, epoch, seq) on node `node`, or NULL. */
static const struct step *step_of(const struct steps *ss, const struct row *r)
{
    for (size_t i = step_lower(ss, r->agent, r->seq);
         i < ss->n && ss->s[i].agent == r->agent && ss->s[i].seq == r->seq;
         i++)
        if (ss->s[i].epoch == r->epoch && ss->s[i].node == r->signer)
            return &ss->s[i];
    return NULL;
}

int nem_check_steps(struct nem *m, int via)
{
    struct rows rs;
    struct steps ss;
    int found = 0;
    size_t unmatched = 0;

    (void)via;
    load_rows(m, &rs);
    load_steps(m, &ss);
    qsort(ss.s, ss.n, sizeof *ss.s, step_cmp);
    m->res.steps = ss.n;
    /* Each committed row should match a step its signer logged: the
     * step log's seqs are what the checker leans on. */
    for (size_t k = 0; k < rs.n; k++) {
        const struct row *r = &rs.r[k];

        if (step_of(&ss, r) == NULL && unmatched++ < SHOW)
            cr_log_info("step log: no step of '%s' epoch %" PRIu64
                        " seq %" PRIu64 " on node %d, which signed it",
                        m->agents[r->agent], r->epoch, r->seq,
                        r->signer + 1);
    }
    if (unmatched)
        cr_log_info("step log: %zu of %zu committed checkpoints have no "
                    "matching step line",
                    unmatched, rs.n);

    for (size_t k = 0; k < rs.n; k++) {
        const struct row *r = &rs.r[k];
        const struct step *first;
        char ev[SHOW * 700] = "", key[128];
        size_t o = 0;
        int late = 0;

        /* Only the first committed row of each epoch. */
        if (k > 0 && rs.r[k - 1].agent == r->agent &&
            rs.r[k - 1].epoch == r->epoch)
            continue;
        if ((first = step_of(&ss, r)) == NULL)
            continue;
        for (size_t i = step_lower(&ss, r->agent, 0);
             i < ss.n && ss.s[i].agent == r->agent; i++) {
            const struct step *s = &ss.s[i];

            if (s->epoch >= r->epoch || s->node == first->node ||
                s->tmono <= first->tmono)
                continue;
            if (late++ < SHOW && o < sizeof ev) {
                int w = snprintf(ev + o, sizeof ev - o,
                                 "\n    old owner, %.3f ms after: %s",
                                 (double)(s->tmono - first->tmono) / 1e6,
                                 s->line);

                if (w > 0)
                    o += (size_t)w;
            }
        }
        if (late == 0)
            continue;
        snprintf(key, sizeof key, "b-%s-%" PRIu64, m->agents[r->agent],
                 r->epoch);
        found += nem_violation(
            m, NEM_INV_B, key,
            "'%s' ran on two nodes at once: %d step(s) under an older epoch "
            "on other nodes after node %d's first committed step under "
            "epoch %" PRIu64 "\n    new owner: %s%s",
            m->agents[r->agent], late, first->node + 1, r->epoch,
            first->line, ev);
    }
    steps_free(&ss);
    free(rs.r);
    return found;
}

/* ---- (c) exactly once ---- */

struct ledger {
    uint8_t *got;
    size_t got_len;
    uint64_t dups[256];
    size_t n_dups;
    uint64_t ndups;
};

/* The ledger's head committed state in node via's database; 0 or -1. */
static int read_ledger(struct nem *m, int via, struct ledger *out)
{
    msgpack_unpacked s;
    void *state;
    size_t len, off = 0;
    int rv = -1;

    memset(out, 0, sizeof *out);
    if (td_head_state(&m->c.nodes[via].d, NEM_LEDGER, &state, &len) != 0)
        return -1;
    msgpack_unpacked_init(&s);
    if (msgpack_unpack_next(&s, state, len, &off) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *got = td_get(&s.data, "got");
        const msgpack_object *dups = td_get(&s.data, "dups");

        out->ndups = (uint64_t)td_int(&s.data, "ndups", 0);
        if (got && got->type == MSGPACK_OBJECT_BIN) {
            out->got_len = got->via.bin.size;
            out->got = malloc(out->got_len ? out->got_len : 1);
            cr_assert_not_null(out->got);
            memcpy(out->got, got->via.bin.ptr, out->got_len);
            rv = 0;
        }
        for (uint32_t i = 0; dups && dups->type == MSGPACK_OBJECT_ARRAY &&
                             i < dups->via.array.size && i < 256;
             i++)
            if (dups->via.array.ptr[i].type ==
                MSGPACK_OBJECT_POSITIVE_INTEGER)
                out->dups[out->n_dups++] = dups->via.array.ptr[i].via.u64;
    }
    msgpack_unpacked_destroy(&s);
    free(state);
    return rv;
}

static int has(const struct ledger *l, uint64_t k)
{
    size_t byte = (size_t)((k - 1) / 8);

    return byte < l->got_len && (l->got[byte] >> ((k - 1) % 8)) & 1;
}

int nem_wait_ledger(struct nem *m, int via, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    do {
        struct ledger l;
        int all = read_ledger(m, via, &l) == 0;

        for (uint64_t k = 1; all && k < m->cl.next && k <= m->cl.cap; k++)
            if (m->cl.msgs[k - 1].acked && !has(&l, k))
                all = 0;
        free(l.got);
        if (all)
            return 1;
        td_sleep_ms(100);
    } while (td_ms() < end);
    return 0;
}

/* The step-log lines of message k reaching the ledger, each marked with
 * whether its step committed. */
static void deliveries(struct nem *m, const struct steps *ss,
                       const struct rows *rs, uint64_t k, char *out,
                       size_t cap)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < ss->n && o + 1 < cap; i++) {
        const struct step *s = &ss->s[i];
        const struct row *r;
        int w;

        if (s->agent != 0 || s->x != k || strcmp(s->ev, "message") != 0)
            continue;
        r = find_row(rs, 0, s->seq);
        w = snprintf(out + o, cap - o, "    %s: %s\n",
                     r && r->epoch == s->epoch && r->signer == s->node
                         ? "committed"
                         : "not committed",
                     s->line);
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
    }
    (void)m;
}

int nem_check_sends(struct nem *m, int via)
{
    struct ledger l;
    struct rows rs;
    struct steps ss;
    char key[64], tries[4096], seen[4096];
    int found = 0;

    if (read_ledger(m, via, &l) != 0) {
        nem_violation(m, NEM_INV_C, "c-no-ledger",
                      "the ledger has no readable committed state on node %d",
                      via + 1);
        return 1;
    }
    load_rows(m, &rs);
    load_steps(m, &ss);
    for (size_t i = 0; i < l.n_dups; i++) {
        uint64_t k = l.dups[i];

        snprintf(key, sizeof key, "c-dup-%" PRIu64, k);
        nem_client_attempts(m, k, tries, sizeof tries);
        deliveries(m, &ss, &rs, k, seen, sizeof seen);
        found += nem_violation(m, NEM_INV_C, key,
                               "message %" PRIu64 " was delivered to the "
                               "ledger more than once (its committed state "
                               "lists it as a repeat)\n%s%s",
                               k, tries, seen);
    }
    if (l.ndups > l.n_dups) {
        snprintf(key, sizeof key, "c-dups-%" PRIu64, l.ndups);
        found += nem_violation(m, NEM_INV_C, key,
                               "%" PRIu64 " repeats in all, more than the "
                               "%zu listed",
                               l.ndups, l.n_dups);
    }
    for (uint64_t k = 1; k < m->cl.next && k <= m->cl.cap; k++) {
        if (!m->cl.msgs[k - 1].acked || has(&l, k))
            continue;
        snprintf(key, sizeof key, "c-lost-%" PRIu64, k);
        nem_client_attempts(m, k, tries, sizeof tries);
        found += nem_violation(m, NEM_INV_C, key,
                               "message %" PRIu64 " was acknowledged to the "
                               "client but the ledger never received it\n%s",
                               k, tries);
    }
    for (uint64_t k = m->cl.next; k <= (uint64_t)l.got_len * 8; k++)
        if (has(&l, k)) {
            snprintf(key, sizeof key, "c-unsent-%" PRIu64, k);
            found += nem_violation(m, NEM_INV_C, key,
                                   "the ledger received message %" PRIu64
                                   ", which was never sent",
                                   k);
        }
    free(l.got);
    steps_free(&ss);
    free(rs.r);
    return found;
}

/* ---- (d) placements from an old term ---- */

struct lead {
    int node;
    uint64_t term;
    int64_t ms;
    char line[300];
};

struct place {
    int node, agent;
    uint64_t term, owner, epoch;
    int64_t ms;
    int stale;
    char line[300];
};

/* "2026-01-02T03:04:05.678Z" at the start of a log line, in ms. */
static int64_t log_ms(const char *line)
{
    struct tm tm;
    int ms;

    memset(&tm, 0, sizeof tm);
    if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void read_logs(struct nem *m, struct lead **leads, size_t *n_leads,
                      struct place **places, size_t *n_places)
{
    size_t cap_l = 0, cap_p = 0;

    *leads = NULL;
    *places = NULL;
    *n_leads = *n_places = 0;
    for (int i = 0; i < m->c.n; i++) {
        FILE *f = fopen(m->c.nodes[i].d.log, "r");
        char line[2048];
        uint64_t term = 0;

        if (f == NULL)
            continue;
        while (fgets(line, sizeof line, f)) {
            const char *p;
            int64_t ms = log_ms(line);
            unsigned long long t, owner, epoch;
            char agent[80];

            line[strcspn(line, "\n")] = '\0';
            if (ms < 0)
                continue;
            if ((p = strstr(line, "-> leader (term ")) != NULL &&
                sscanf(p, "-> leader (term %llu", &t) == 1) {
                term = t;
                if (*n_leads == cap_l) {
                    cap_l = cap_l ? cap_l * 2 : 64;
                    *leads = realloc(*leads, cap_l * sizeof **leads);
                    cr_assert_not_null(*leads);
                }
                (*leads)[*n_leads].node = i;
                (*leads)[*n_leads].term = t;
                (*leads)[*n_leads].ms = ms;
                snprintf((*leads)[*n_leads].line, 300, "%s", line);
                (*n_leads)++;
            } else if ((p = strstr(line, "placement: '")) != NULL &&
                       sscanf(p, "placement: '%79[^']' -> node %llu epoch "
                                 "%llu",
                              agent, &owner, &epoch) == 3) {
                struct place *pl;

                if (agent_index(m, agent) < 0)
                    continue;
                if (*n_places == cap_p) {
                    cap_p = cap_p ? cap_p * 2 : 256;
                    *places = realloc(*places, cap_p * sizeof **places);
                    cr_assert_not_null(*places);
                }
                pl = &(*places)[(*n_places)++];
                memset(pl, 0, sizeof *pl);
                pl->node = i;
                pl->agent = agent_index(m, agent);
                pl->term = term;
                pl->owner = owner;
                pl->epoch = epoch;
                pl->ms = ms;
                snprintf(pl->line, sizeof pl->line, "%s", line);
            }
        }
        fclose(f);
    }
}

/* What committed under (agent, epoch): how many checkpoints, which seqs
 * and who signed them. */
static void under_epoch(const struct rows *rs, int agent, uint64_t epoch,
                        char *out, size_t cap)
{
    uint64_t n = 0, lo = 0, hi = 0;
    int signer = -1;

    for (size_t k = 0; k < rs->n; k++)
        if (rs->r[k].agent == agent && rs->r[k].epoch == epoch) {
            if (n++ == 0)
                lo = rs->r[k].seq;
            hi = rs->r[k].seq;
            signer = rs->r[k].signer;
        }
    if (n == 0)
        snprintf(out, cap, "no checkpoint committed under it: the epoch was "
                           "skipped");
    else
        snprintf(out, cap, "%" PRIu64 " checkpoint(s), seqs %" PRIu64
                           "..%" PRIu64 ", committed under it by node %d",
                 n, lo, hi, signer + 1);
}

int nem_check_placements(struct nem *m, int via)
{
    struct lead *leads;
    struct place *pl;
    size_t n_leads, n_pl, stale = 0;
    struct tc_agent a[NEM_AGENTS_MAX + 2];
    int n_a = tc_agents(&m->c, via, a, NEM_AGENTS_MAX + 2), found = 0;
    struct rows rs;
    char what[200];

    load_rows(m, &rs);
    read_logs(m, &leads, &n_leads, &pl, &n_pl);
    for (size_t i = 0; i < n_pl; i++) {
        const struct lead *newer = NULL;

        for (size_t j = 0; j < n_leads && newer == NULL; j++)
            if (leads[j].term > pl[i].term && leads[j].ms < pl[i].ms)
                newer = &leads[j];
        if (newer == NULL)
            continue;
        pl[i].stale = 1;
        stale++;
    }
    for (size_t i = 0; i < n_pl; i++) {
        const struct lead *newer = NULL;
        uint64_t now_epoch = 0;
        int current = 0;
        char key[128];

        if (!pl[i].stale)
            continue;
        for (size_t j = 0; j < n_pl && !current; j++)
            current = !pl[j].stale && pl[j].agent == pl[i].agent &&
                      pl[j].epoch == pl[i].epoch;
        for (int k = 0; k < n_a; k++)
            if (strcmp(a[k].name, m->agents[pl[i].agent]) == 0)
                now_epoch = a[k].epoch;
        if (current || now_epoch < pl[i].epoch)
            continue; /* superseded or refused */
        for (size_t j = 0; j < n_leads && newer == NULL; j++)
            if (leads[j].term > pl[i].term && leads[j].ms < pl[i].ms)
                newer = &leads[j];
        snprintf(key, sizeof key, "d-%s-%" PRIu64, m->agents[pl[i].agent],
                 pl[i].epoch);
        under_epoch(&rs, pl[i].agent, pl[i].epoch, what, sizeof what);
        found += nem_violation(
            m, NEM_INV_D, key,
            "node %d, leader of term %" PRIu64 ", placed '%s' on node %" PRIu64
            " under epoch %" PRIu64 " after node %d led term %" PRIu64
            ", and that epoch took effect (the agent is at epoch %" PRIu64
            " now; no current leader placed it so; %s)\n    node %d: %s\n"
            "    node %d: %s",
            pl[i].node + 1, pl[i].term, m->agents[pl[i].agent], pl[i].owner,
            pl[i].epoch, newer->node + 1, newer->term, now_epoch, what,
            newer->node + 1, newer->line, pl[i].node + 1, pl[i].line);
    }
    if (stale)
        cr_log_info("placements: %zu of %zu were decided by a leader whose "
                    "term had passed",
                    stale, n_pl);
    free(leads);
    free(pl);
    free(rs.r);
    return found;
}
