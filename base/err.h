/*
 * Error codes shared by every outlast module.  Functions return 0 or a
 * negative OL_E* code; context goes into an errmsg buffer on the object.
 */
#ifndef OL_ERR_H
#define OL_ERR_H

#include <stddef.h>

/* X(name, value, message): one table makes the enum, ol_strerror() and
 * ol_err_name(). */
#define OL_ERRNO_MAP(X)                                                    \
    X(NOMEM, -1, "out of memory")                                          \
    X(INVAL, -2, "invalid argument")                                       \
    X(IO, -3, "i/o error")                                                 \
    X(MALFORMED, -4, "malformed data")                                     \
    X(BADSIG, -5, "signature does not verify")                             \
    X(BADHASH, -6, "hash does not match")                                  \
    X(BADCHAIN, -7, "hash chain is broken")                                \
    X(NOTFOUND, -8, "not found")                                           \
    X(EXISTS, -9, "already exists")                                        \
    X(STALE, -10, "stale epoch")                                           \
    X(SEQ, -11, "sequence out of order")                                   \
    X(ABI, -12, "incompatible plugin abi")                                 \
    X(PLUGIN, -13, "plugin failure")                                       \
    X(CONFIG, -14, "invalid configuration")                                \
    X(NOTLEADER, -15, "not the leader")                                    \
    X(UNKNOWN, -16, "outcome unknown")                                     \
    X(SHUTDOWN, -17, "shutting down")                                      \
    X(TOOBIG, -18, "too big")                                              \
    X(BUSY, -19, "busy")                                                   \
    X(UNAUTH, -20, "not authorized")                                       \
    X(DIVERGED, -21, "divergent history")                                  \
    X(STATE, -22, "wrong state")                                           \
    X(TIMEOUT, -23, "timed out")                                           \
    X(CONN, -24, "connection failed")                                      \
    X(CANCELED, -25, "canceled")                                           \
    X(NOTSUP, -26, "not supported by this version")                        \
    X(FULL, -27, "mailbox full")

enum ol_err {
#define OL_ERR_ENUM(name, val, msg) OL_E##name = (val),
    OL_ERRNO_MAP(OL_ERR_ENUM)
#undef OL_ERR_ENUM
};

#define OL_ERRMSG_SIZE 512

/* Human-readable text for an OL_E* code; never NULL. */
const char *ol_strerror(int err);

/* The symbolic name ("OL_ESTALE") for an OL_E* code; never NULL. */
const char *ol_err_name(int err);

/* printf into an errmsg buffer of OL_ERRMSG_SIZE bytes. */
void ol__errf(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix an errmsg buffer in place: "prefix: old message". */
void ol__errwrap(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Translate an errno value (positive) into an OL_E* code. */
int ol__err_from_errno(int e);

#endif
