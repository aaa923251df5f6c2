/*
 * HTTP for the integration tests, through the curl program (a real client
 * that parses HTTP; the tests never parse it by hand): one request, its
 * status, headers and body, with a deadline.  Also where a node serves:
 * the address its `status` reports.
 */
#ifndef OL_TEST_HTTP_H
#define OL_TEST_HTTP_H

#include "daemon.h"

struct th_resp {
    int code;      /* HTTP status; 0 when no answer came */
    char *headers; /* raw header block, malloc'd */
    char *body;    /* NUL-terminated, malloc'd */
    size_t len;
};

/* `method` "GET", "HEAD", "POST"...; `token` adds "Authorization: Bearer
 * token" (NULL: none).  Returns the status code (0 on no answer). */
int th_request(const char *method, const char *url, const char *token,
               struct th_resp *r);
void th_resp_free(struct th_resp *r);

/* A header's value (case-insensitive name) into out; 0 or -1. */
int th_header(const struct th_resp *r, const char *name, char *out,
              size_t cap);

/* The node's HTTP address ("127.0.0.1:PORT") from its status; 0 or -1. */
int th_node_http(struct td *d, char *out, size_t cap);

/* Is `prog` on PATH? */
int th_have(const char *prog);

#endif
