/*
 * The error table: names and messages for OL_E* codes, and the helpers that
 * write context into errmsg buffers.
 */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ol_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define OL_ERR_MSG(name, val, msg)                                         \
    case OL_E##name:                                                       \
        return msg;
        OL_ERRNO_MAP(OL_ERR_MSG)
#undef OL_ERR_MSG
    }
    return "unknown error";
}

const char *ol_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define OL_ERR_NAME(name, val, msg)                                        \
    case OL_E##name:                                                       \
        return "OL_E" #name;
        OL_ERRNO_MAP(OL_ERR_NAME)
#undef OL_ERR_NAME
    }
    return "OL_E?";
}

void ol__errf(char *errmsg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errmsg, OL_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

void ol__errwrap(char *errmsg, const char *fmt, ...)
{
    char prefix[OL_ERRMSG_SIZE];
    char old[OL_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    old[sizeof old - 1] = '\0';
    snprintf(errmsg, OL_ERRMSG_SIZE, "%s: %s", prefix, old);
}

int ol__err_from_errno(int e)
{
    switch (e) {
    case 0:
        return 0;
    case ENOMEM:
        return OL_ENOMEM;
    case ENOENT:
        return OL_ENOTFOUND;
    case EEXIST:
        return OL_EEXISTS;
    case EINVAL:
        return OL_EINVAL;
    case ETIMEDOUT:
        return OL_ETIMEOUT;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
        return OL_ECONN;
    case EACCES:
    case EPERM:
        return OL_EUNAUTH;
    }
    return OL_EIO;
}
