/*
 * What every small test plugin ends with: the vtable naming its five
 * functions and the entry point that checks the ABI and keeps the host's
 * table in the plugin's static `host`.  TP_PLUGIN(kind, version, p) wants
 * p_open, p_restore, p_handle, p_save and p_close; TP_VTABLE() takes the
 * five functions by name.
 *
 * tp_restore() unpacks a saved state and hands the object to the plugin's
 * own reader, logging when that refuses it.
 */
#ifndef OL_TEST_PLUGIN_ENTRY_H
#define OL_TEST_PLUGIN_ENTRY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#define TP_VTABLE(kind_, version_, open_, restore_, handle_, save_, close_) \
    TP_VTABLE_ABI(OL_AGENT_ABI, kind_, version_, open_, restore_, handle_,  \
                  save_, close_)

/* TP_VTABLE() with the ABI the vtable claims given, for a plugin that
 * tests a wrong one. */
#define TP_VTABLE_ABI(abi_, kind_, version_, open_, restore_, handle_,      \
                      save_, close_)                                        \
    static const struct ol_agent_vtable vtable = {                          \
        .abi = abi_,                                                        \
        .size = sizeof(struct ol_agent_vtable),                             \
        .kind = kind_,                                                      \
        .version = version_,                                                \
        .open = open_,                                                      \
        .restore = restore_,                                                \
        .handle = handle_,                                                  \
        .save = save_,                                                      \
        .close = close_,                                                    \
    };                                                                      \
    OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,            \
                                       const struct ol_agent_vtable **out)  \
    {                                                                       \
        if (h->abi != OL_AGENT_ABI)                                         \
            return OL_AGENT_EINVAL;                                         \
        host = h;                                                           \
        *out = &vtable;                                                     \
        return 0;                                                           \
    }

#define TP_PLUGIN(kind_, version_, p)                                       \
    TP_VTABLE(kind_, version_, p##_open, p##_restore, p##_handle, p##_save, \
              p##_close)

/* The start of an open(): unpacks `config` into u and returns a zeroed
 * `size`-byte self, or NULL with the error in *rv and nothing to free. */
static inline void *tp_open_begin(const void *config, size_t len,
                                  size_t size, msgpack_unpacked *u, int *rv)
{
    void *s;

    if (ol_mp_unpack(u, config, len) != 0) {
        *rv = OL_AGENT_EINVAL;
        return NULL;
    }
    s = calloc(1, size);
    if (s == NULL) {
        msgpack_unpacked_destroy(u);
        *rv = OL_AGENT_ENOMEM;
    }
    return s;
}

/* The end of an open(): with the config's unpacked object `u` read and
 * `ok` saying whether it was right, frees u and either hands `s` out in
 * *self or logs "config: " and the `fmt` message, frees s and refuses. */
static inline int tp_open_end(const struct ol_host *h, struct ol_agent *a,
                              msgpack_unpacked *u, bool ok, void *s,
                              void **self, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    msgpack_unpacked_destroy(u);
    if (!ok) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        h->log(a, OL_AGENT_LOG_ERROR, "config: %s", msg);
        free(s);
        return OL_AGENT_EINVAL;
    }
    *self = s;
    return 0;
}

/* Unpack `state` and restore `self` from it with `from`; 0 or the error
 * (OL_AGENT_EMALFORMED if it does not unpack). */
static inline int tp_restore(const struct ol_host *h, struct ol_agent *a,
                             void *self, const void *state, size_t len,
                             int (*from)(void *self, const msgpack_object *o))
{
    msgpack_unpacked u;
    int rv;

    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    rv = from(self, &u.data);
    msgpack_unpacked_destroy(&u);
    if (rv != 0)
        h->log(a, OL_AGENT_LOG_ERROR, "restore: state is malformed");
    return rv;
}

#endif
