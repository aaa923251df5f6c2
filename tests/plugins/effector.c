/*
 * effector - a test agent that acts on the outside world through
 * ol_host.effect, for the effect tests.
 *
 * A message {"do": N} declares N effects of kind "note" (effect ids run on
 * from 1 over the agent's life).  Each payload is
 *
 *   {n: id, journal: PATH, retry: R, fail: bool, reconcile: bool,
 *    before: MS, after: MS}
 *
 * from the config, since perform() sees only the effect.  perform()
 * appends one line to the journal, the outside world of the tests:
 *
 *   key=<key> id=<id> epoch=<epoch> attempt=<a> doubt=<0|1> node=<node>
 *
 * with one write() on a file opened O_APPEND, and returns DONE with the
 * result {n: id} (RETRY for the first R attempts, FAILED when `fail`).
 * It sleeps `before` ms before it writes and `after` ms after, so a test
 * can kill the node while the world has, or has not yet, acted.
 * reconcile() (only when `reconcile` is set) looks for the key in the
 * journal: DONE if a line has it, else UNKNOWN.  So a test counts, per
 * key, how often the world was asked to act.
 *
 * The agent keeps what its EFFECT events said: effects declared, done,
 * failed, and the ids done, in order, so a test can see every outcome
 * was consumed once.
 *
 * Config: {journal: str, retry: uint (0), fail: bool (false),
 *          reconcile: bool (false), before: uint (0), after: uint (0)}.
 * State:  {next: uint, done: uint, failed: uint, ids: [uint]}.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#include "entry.h"

#define IDS_MAX 4096

static const struct ol_host *host;

struct effector {
    char journal[256];
    uint64_t retry, before, after;
    bool fail, reconcile;
    uint64_t next, done, failed;
    uint64_t ids[IDS_MAX];
    uint32_t n_ids;
};

static int eff_open(struct ol_agent *a, const void *config, size_t len,
                    void **self)
{
    msgpack_unpacked u;
    const msgpack_object *o;
    struct effector *s;
    bool ok = true;
    int rv = 0;

    s = tp_open_begin(config, len, sizeof *s, &u, &rv);
    if (s == NULL)
        return rv;
    s->next = 1;
    if ((o = ol_mp_get(&u.data, "journal")) != NULL)
        ok = ok && ol_mp_str(o, s->journal, sizeof s->journal);
    if ((o = ol_mp_get(&u.data, "retry")) != NULL)
        ok = ok && ol_mp_uint(o, &s->retry);
    if ((o = ol_mp_get(&u.data, "fail")) != NULL)
        ok = ok && ol_mp_bool(o, &s->fail);
    if ((o = ol_mp_get(&u.data, "reconcile")) != NULL)
        ok = ok && ol_mp_bool(o, &s->reconcile);
    if ((o = ol_mp_get(&u.data, "before")) != NULL)
        ok = ok && ol_mp_uint(o, &s->before);
    if ((o = ol_mp_get(&u.data, "after")) != NULL)
        ok = ok && ol_mp_uint(o, &s->after);
    return tp_open_end(host, a, &u, ok && s->journal[0], s, self,
                       "want {journal: str, retry: uint, fail: bool, "
                       "reconcile: bool, before: uint, after: uint}");
}

static int eff_restore(void *self, struct ol_agent *a, const void *state,
                       size_t len)
{
    struct effector *s = self;
    msgpack_unpacked u;
    const msgpack_object *o;
    bool ok;

    (void)a;
    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    ok = ol_mp_uint(ol_mp_get(&u.data, "next"), &s->next) &&
         ol_mp_uint(ol_mp_get(&u.data, "done"), &s->done) &&
         ol_mp_uint(ol_mp_get(&u.data, "failed"), &s->failed);
    o = ol_mp_get(&u.data, "ids");
    if (ok && o && o->type == MSGPACK_OBJECT_ARRAY &&
        o->via.array.size <= IDS_MAX) {
        s->n_ids = o->via.array.size;
        for (uint32_t i = 0; i < s->n_ids && ok; i++)
            ok = ol_mp_uint(&o->via.array.ptr[i], &s->ids[i]);
    } else {
        ok = false;
    }
    msgpack_unpacked_destroy(&u);
    return ok ? 0 : OL_AGENT_EMALFORMED;
}

static int declare(struct effector *s, struct ol_agent *a, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int rv;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 7);
        ol_mp_pack_str(&pk, "n");
        msgpack_pack_uint64(&pk, s->next);
        ol_mp_pack_str(&pk, "journal");
        ol_mp_pack_str(&pk, s->journal);
        ol_mp_pack_str(&pk, "retry");
        msgpack_pack_uint64(&pk, s->retry);
        ol_mp_pack_str(&pk, "fail");
        s->fail ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        ol_mp_pack_str(&pk, "reconcile");
        s->reconcile ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        ol_mp_pack_str(&pk, "before");
        msgpack_pack_uint64(&pk, s->before);
        ol_mp_pack_str(&pk, "after");
        msgpack_pack_uint64(&pk, s->after);
        rv = host->effect(a, s->next, "note", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        if (rv != 0) {
            host->log(a, OL_AGENT_LOG_ERROR, "effect %" PRIu64 ": %d",
                      s->next, rv);
            return rv;
        }
        s->next++;
    }
    return 0;
}

static int eff_handle(void *self, struct ol_agent *a,
                      const struct ol_event *ev)
{
    struct effector *s = self;
    msgpack_unpacked u;
    uint64_t n = 0;
    int rv = 0;

    if (ev->type == OL_EVENT_MESSAGE) {
        if (ol_mp_unpack(&u, ev->data, ev->len) != 0)
            return 0;
        if (ol_mp_uint(ol_mp_get(&u.data, "do"), &n))
            rv = declare(s, a, n);
        msgpack_unpacked_destroy(&u);
        return rv;
    }
    if (ev->type != OL_EVENT_EFFECT || !OL_EVENT_HAS(ev, effect_attempts))
        return 0;
    if (ev->effect_status == OL_EFFECT_DONE) {
        s->done++;
        if (s->n_ids < IDS_MAX)
            s->ids[s->n_ids++] = ev->effect_id;
    } else {
        s->failed++;
        host->log(a, OL_AGENT_LOG_INFO, "effect %" PRIu64 " failed: %s",
                  ev->effect_id, ev->reason ? ev->reason : "(perform)");
    }
    return 0;
}

static int eff_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    struct effector *s = self;
    msgpack_packer pk;

    (void)a;
    msgpack_packer_init(&pk, out->data, out->write);
    msgpack_pack_map(&pk, 4);
    ol_mp_pack_str(&pk, "next");
    msgpack_pack_uint64(&pk, s->next);
    ol_mp_pack_str(&pk, "done");
    msgpack_pack_uint64(&pk, s->done);
    ol_mp_pack_str(&pk, "failed");
    msgpack_pack_uint64(&pk, s->failed);
    ol_mp_pack_str(&pk, "ids");
    msgpack_pack_array(&pk, s->n_ids);
    for (uint32_t i = 0; i < s->n_ids; i++)
        msgpack_pack_uint64(&pk, s->ids[i]);
    return 0;
}

static void eff_close(void *self)
{
    free(self);
}

/* ---- the outside world: a journal file ---- */

struct order {
    uint64_t n, retry, before, after;
    bool fail, reconcile;
    char journal[256];
};

static bool read_order(const struct ol_effect *e, struct order *o)
{
    msgpack_unpacked u;
    bool ok;

    memset(o, 0, sizeof *o);
    if (ol_mp_unpack(&u, e->payload, e->len) != 0)
        return false;
    ok = ol_mp_uint(ol_mp_get(&u.data, "n"), &o->n) &&
         ol_mp_str(ol_mp_get(&u.data, "journal"), o->journal,
                   sizeof o->journal) &&
         ol_mp_uint(ol_mp_get(&u.data, "retry"), &o->retry) &&
         ol_mp_bool(ol_mp_get(&u.data, "fail"), &o->fail) &&
         ol_mp_bool(ol_mp_get(&u.data, "reconcile"), &o->reconcile) &&
         ol_mp_uint(ol_mp_get(&u.data, "before"), &o->before) &&
         ol_mp_uint(ol_mp_get(&u.data, "after"), &o->after);
    msgpack_unpacked_destroy(&u);
    return ok;
}

static int result(const struct ol_sink *out, uint64_t n)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    msgpack_pack_map(&pk, 1);
    ol_mp_pack_str(&pk, "n");
    return msgpack_pack_uint64(&pk, n);
}

static int eff_perform(const struct ol_effect *e, const struct ol_sink *out)
{
    struct order o;
    char line[512];
    int fd, len;
    bool wrote;

    if (!read_order(e, &o))
        return OL_EFFECT_FAILED;
    if (e->attempt <= o.retry)
        return OL_EFFECT_RETRY;
    if (o.fail)
        return OL_EFFECT_FAILED;
    usleep((useconds_t)(o.before * 1000));
    len = snprintf(line, sizeof line,
                   "key=%s id=%" PRIu64 " epoch=%" PRIu64
                   " attempt=%u doubt=%d node=%s\n",
                   e->key, e->effect_id, e->epoch, e->attempt, e->in_doubt,
                   e->node);
    fd = open(o.journal, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return OL_EFFECT_RETRY;
    wrote = write(fd, line, (size_t)len) == len;
    close(fd);
    if (!wrote)
        return OL_EFFECT_RETRY;
    usleep((useconds_t)(o.after * 1000));
    result(out, o.n);
    return OL_EFFECT_DONE;
}

static int eff_reconcile(const struct ol_effect *e, const struct ol_sink *out)
{
    struct order o;
    char line[512], want[64];
    FILE *f;
    bool found = false;

    if (!read_order(e, &o) || !o.reconcile)
        return OL_EFFECT_UNKNOWN;
    f = fopen(o.journal, "re");
    if (f == NULL)
        return OL_EFFECT_UNKNOWN;
    snprintf(want, sizeof want, "key=%s ", e->key);
    while (!found && fgets(line, sizeof line, f))
        found = strncmp(line, want, strlen(want)) == 0;
    fclose(f);
    if (!found)
        return OL_EFFECT_UNKNOWN;
    result(out, o.n);
    return OL_EFFECT_DONE;
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "effector",
    .version = "1.0.0",
    .open = eff_open,
    .restore = eff_restore,
    .handle = eff_handle,
    .save = eff_save,
    .close = eff_close,
    .perform = eff_perform,
    .reconcile = eff_reconcile,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, effect))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
