/*
 * lifecycle - a test agent for the lifecycle commands (spawn, config,
 * restart, rm).
 *
 * open() refuses a config with a "fail" string, giving that string as its
 * reason through ol_host.error.  Every CONFIG event is counted and its
 * config kept; the state also records the config the instance was opened
 * with, so a test can tell that a new config reached open() after a
 * restart, and that the event was delivered exactly once.
 *
 * A message {"to": NAME} makes it send {"n": 1} to NAME; a message that
 * comes back (OL_EVENT_BOUNCE) is counted, with its recipient and reason.
 *
 * Config: {fail: str, tag: str, ...} (other keys are kept, not read).
 * State:  {configs: uint, starts: uint, resumes: uint, tag: str (the tag
 *          of the config open() saw), last: str (the tag of the last
 *          CONFIG event's config), bounces: uint, bto: str, bwhy: str}.
 *
 * Built twice: as "lifecycle", and as "late" (LC_KIND) into a directory
 * no node searches, for the test of a plugin installed after its agents
 * were quarantined for want of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>

#ifndef LC_KIND
#define LC_KIND "lifecycle"
#endif
#define TAG_MAX 64

static const struct ol_host *host;

struct self {
    uint64_t configs, starts, resumes;
    char tag[TAG_MAX + 1];  /* from the config open() saw */
    char last[TAG_MAX + 1]; /* from the last CONFIG event */
    uint64_t bounces;
    char bto[TAG_MAX + 1], bwhy[160];
};

/* Copy the string under `key` of the msgpack map at p into out (empty if
 * absent); -1 if the bytes are not a map. */
static int get_str(const void *p, size_t len, const char *key, char *out,
                   size_t cap)
{
    msgpack_unpacked u;
    size_t off = 0, klen = strlen(key);
    int rv = -1;

    out[0] = '\0';
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, p, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    rv = 0;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object *k = &u.data.via.map.ptr[i].key;
        const msgpack_object *v = &u.data.via.map.ptr[i].val;

        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0 &&
            v->type == MSGPACK_OBJECT_STR)
            snprintf(out, cap, "%.*s", (int)v->via.str.size,
                     v->via.str.ptr);
    }
out:
    msgpack_unpacked_destroy(&u);
    return rv;
}

static int lc_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    char fail[160];
    struct self *s;

    if (get_str(config, len, "fail", fail, sizeof fail) != 0) {
        host->error(a, "config is not a map");
        return OL_AGENT_EINVAL;
    }
    if (fail[0]) {
        host->error(a, "%s", fail);
        return OL_AGENT_EINVAL;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return OL_AGENT_ENOMEM;
    get_str(config, len, "tag", s->tag, sizeof s->tag);
    *self = s;
    return 0;
}

static int lc_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    struct self *s = self;
    msgpack_unpacked u;
    size_t off = 0;
    int rv = 0;

    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, state, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&u);
        host->error(a, "state is not a map");
        return OL_AGENT_EMALFORMED;
    }
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object *k = &u.data.via.map.ptr[i].key;
        const msgpack_object *v = &u.data.via.map.ptr[i].val;

        if (k->type != MSGPACK_OBJECT_STR)
            continue;
        if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (k->via.str.size == 7 && !memcmp(k->via.str.ptr, "configs", 7))
                s->configs = v->via.u64;
            else if (k->via.str.size == 6 &&
                     !memcmp(k->via.str.ptr, "starts", 6))
                s->starts = v->via.u64;
            else if (k->via.str.size == 7 &&
                     !memcmp(k->via.str.ptr, "resumes", 7))
                s->resumes = v->via.u64;
            else if (k->via.str.size == 7 &&
                     !memcmp(k->via.str.ptr, "bounces", 7))
                s->bounces = v->via.u64;
        } else if (v->type == MSGPACK_OBJECT_STR && k->via.str.size == 4 &&
                   !memcmp(k->via.str.ptr, "last", 4)) {
            snprintf(s->last, sizeof s->last, "%.*s",
                     (int)v->via.str.size, v->via.str.ptr);
        }
    }
    msgpack_unpacked_destroy(&u);
    return rv;
}

static int lc_handle(void *self, struct ol_agent *a,
                     const struct ol_event *ev)
{
    struct self *s = self;

    switch (ev->type) {
    case OL_EVENT_START:
        s->starts++;
        break;
    case OL_EVENT_RESUME:
        s->resumes++;
        break;
    case OL_EVENT_CONFIG:
        s->configs++;
        get_str(ev->data, ev->len, "tag", s->last, sizeof s->last);
        break;
    case OL_EVENT_MESSAGE: {
        static const char one[] = "\x81\xa1n\x01"; /* {"n": 1} */
        char to[TAG_MAX + 1];

        if (get_str(ev->data, ev->len, "to", to, sizeof to) != 0 || !to[0])
            return 0;
        return host->send(a, to, one, sizeof one - 1);
    }
    case OL_EVENT_BOUNCE:
        s->bounces++;
        snprintf(s->bto, sizeof s->bto, "%s", ev->to ? ev->to : "");
        snprintf(s->bwhy, sizeof s->bwhy, "%s",
                 ev->reason ? ev->reason : "");
        break;
    default:
        return 0;
    }
    return host->checkpoint(a);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int lc_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct self *s = self;
    msgpack_packer pk;

    (void)a;
    msgpack_packer_init(&pk, out->data, out->write);
    msgpack_pack_map(&pk, 8);
    pk_str(&pk, "configs");
    msgpack_pack_uint64(&pk, s->configs);
    pk_str(&pk, "starts");
    msgpack_pack_uint64(&pk, s->starts);
    pk_str(&pk, "resumes");
    msgpack_pack_uint64(&pk, s->resumes);
    pk_str(&pk, "tag");
    pk_str(&pk, s->tag);
    pk_str(&pk, "last");
    pk_str(&pk, s->last);
    pk_str(&pk, "bounces");
    msgpack_pack_uint64(&pk, s->bounces);
    pk_str(&pk, "bto");
    pk_str(&pk, s->bto);
    pk_str(&pk, "bwhy");
    pk_str(&pk, s->bwhy);
    return 0;
}

static void lc_close(void *self)
{
    free(self);
}

static const struct ol_agent_vtable vt = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = LC_KIND,
    .version = "1.0.0",
    .open = lc_open,
    .restore = lc_restore,
    .handle = lc_handle,
    .save = lc_save,
    .close = lc_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, error))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vt;
    return 0;
}
