/*
 * The nemesis client: a thread that sends numbered messages {"n": K} to
 * the ledger agent through the nodes' control sockets, one at a time, as
 * an application using outlast would.  It talks to one node until a call
 * fails or times out, then retries the same message on the next node, and
 * moves on to K + 1 only once K is acknowledged.  Every attempt is written
 * to a log (the evidence for the exactly-once check) and what became of
 * each number is kept for the checker.
 *
 * The thread never touches Criterion (its assertions are not thread
 * safe); the driver reads the results after joining it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nemesis_int.h"
#include "base/buf.h"
#include "runtime/ctl.h"
#include "base/err.h"

int64_t nem_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static struct nem_msg *msg(struct nem_client *cl, uint64_t k)
{
    if (k > cl->cap) {
        size_t cap = cl->cap ? cl->cap : 1024;
        struct nem_msg *p;

        while (cap < k)
            cap *= 2;
        p = realloc(cl->msgs, cap * sizeof *p);
        if (p == NULL)
            return NULL;
        memset(p + cl->cap, 0, (cap - cl->cap) * sizeof *p);
        cl->msgs = p;
        cl->cap = cap;
    }
    return &cl->msgs[k - 1];
}

/* One attempt at sending k through node i; 0 when acknowledged. */
static int attempt(struct nem_client *cl, uint64_t k, int i, char *err,
                   size_t cap)
{
    struct nem *m = cl->m;
    char rid[64], e[OL_ERRMSG_SIZE] = "";
    struct ol__buf b;
    msgpack_packer pk;
    msgpack_unpacked u;
    void *raw = NULL;
    size_t rlen = 0, off = 0;
    int rv, ok = 0;

    snprintf(rid, sizeof rid, "nem-%" PRIu64 "-%" PRIu64, m->seed, k);
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "op");
    pack_str(&pk, "send");
    pack_str(&pk, "name");
    pack_str(&pk, NEM_LEDGER);
    pack_str(&pk, "message");
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "n");
    msgpack_pack_uint64(&pk, k);
    pack_str(&pk, NEM_REQUEST_ID_KEY);
    pack_str(&pk, rid);
    rv = ol__ctl_call(m->c.nodes[i].d.sock, b.base, b.len, &raw, &rlen,
                      cl->timeout_ms, e);
    ol__buf_close(&b);
    if (rv != 0) {
        snprintf(err, cap, "%s", e[0] ? e : ol_strerror(rv));
        return -1;
    }
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, raw, rlen, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t j = 0; j < u.data.via.map.size; j++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[j];

            if (kv->key.type != MSGPACK_OBJECT_STR)
                continue;
            if (kv->key.via.str.size == 2 &&
                memcmp(kv->key.via.str.ptr, "ok", 2) == 0)
                ok = kv->val.type == MSGPACK_OBJECT_BOOLEAN &&
                     kv->val.via.boolean;
            if (kv->key.via.str.size == 5 &&
                memcmp(kv->key.via.str.ptr, "error", 5) == 0 &&
                kv->val.type == MSGPACK_OBJECT_STR)
                snprintf(err, cap, "%.*s", (int)kv->val.via.str.size,
                         kv->val.via.str.ptr);
        }
    }
    msgpack_unpacked_destroy(&u);
    free(raw);
    return ok ? 0 : -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *client_main(void *arg)
{
    struct nem_client *cl = arg;
    struct nem *m = cl->m;
    FILE *log = fopen(cl->log_path, "a");
    int64_t stop_at = 0;

    for (;;) {
        uint64_t k = cl->next;
        struct nem_msg *mm;
        int done = 0;

        if (__atomic_load_n(&cl->stop, __ATOMIC_ACQUIRE))
            break;
        mm = msg(cl, k);
        if (mm == NULL)
            break;
        mm->first_ms = nem_wall_ms();
        while (!done) {
            char err[OL_ERRMSG_SIZE] = "";
            int64_t t0 = nem_wall_ms();
            int i = cl->node, rv;

            mm->attempts++;
            rv = attempt(cl, k, i, err, sizeof err);
            if (log)
                fprintf(log,
                        "k=%" PRIu64 " try=%d node=%d start=%" PRId64
                        " took=%" PRId64 " %s%s%s\n",
                        k, mm->attempts, i + 1, t0, nem_wall_ms() - t0,
                        rv == 0 ? "acked" : "failed", rv == 0 ? "" : ": ",
                        rv == 0 ? "" : err);
            if (rv == 0) {
                mm->acked = 1;
                mm->ack_ms = nem_wall_ms();
                mm->ack_node = i;
                done = 1;
                break;
            }
            /* The outcome is unknown: retry the same number elsewhere. */
            cl->node = (cl->node + 1) % m->c.n;
            if (__atomic_load_n(&cl->stop, __ATOMIC_ACQUIRE)) {
                if (stop_at == 0)
                    stop_at = nem_wall_ms();
                if (nem_wall_ms() - stop_at > cl->giveup_ms)
                    break; /* given up: k stays unacknowledged */
            }
            sleep_ms(cl->pace_ms);
        }
        cl->next = k + 1;
        if (log)
            fflush(log);
        if (!done)
            break;
        sleep_ms(cl->pace_ms);
    }
    if (log)
        fclose(log);
    return NULL;
}

void nem_client_start(struct nem *m)
{
    struct nem_client *cl = &m->cl;

    cl->m = m;
    if (cl->next == 0)
        cl->next = 1;
    cl->first = cl->next;
    cl->timeout_ms = m->failover_ms;
    cl->pace_ms = 20;
    cl->giveup_ms = 20000;
    snprintf(cl->log_path, sizeof cl->log_path, "%s/client.log", m->dir);
    __atomic_store_n(&cl->stop, 0, __ATOMIC_RELEASE);
    cr_assert_eq(pthread_create(&cl->th, NULL, client_main, cl), 0,
                 "start the client thread");
    cl->started = 1;
}

void nem_client_stop(struct nem *m)
{
    struct nem_client *cl = &m->cl;

    if (!cl->started)
        return;
    __atomic_store_n(&cl->stop, 1, __ATOMIC_RELEASE);
    pthread_join(cl->th, NULL);
    cl->started = 0;
}

void nem_client_free(struct nem *m)
{
    nem_client_stop(m);
    free(m->cl.msgs);
    m->cl.msgs = NULL;
    m->cl.cap = 0;
}

void nem_client_attempts(struct nem *m, uint64_t k, char *out, size_t cap)
{
    FILE *f = fopen(m->cl.log_path, "r");
    char line[512], want[40];
    size_t o = 0;

    out[0] = '\0';
    if (f == NULL)
        return;
    snprintf(want, sizeof want, "k=%" PRIu64 " ", k);
    while (fgets(line, sizeof line, f) && o + 1 < cap)
        if (strncmp(line, want, strlen(want)) == 0) {
            int w = snprintf(out + o, cap - o, "    client: %s", line);

            if (w < 0 || (size_t)w >= cap - o)
                break;
            o += (size_t)w;
        }
    fclose(f);
}
