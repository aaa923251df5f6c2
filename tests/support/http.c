/*
 * HTTP test support: see http.h.
 */
#include "http.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    *len = 0;
    if (f == NULL)
        return strdup("");
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    if (buf)
        buf[n > 0 ? n : 0] = '\0';
    fclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return buf;
}

int th_request(const char *method, const char *url, const char *token,
               struct th_resp *r)
{
    char hdr[] = "/tmp/ol-th-h-XXXXXX", body[] = "/tmp/ol-th-b-XXXXXX";
    char auth[600] = "", *out = NULL;
    int fh = mkstemp(hdr), fb = mkstemp(body);

    memset(r, 0, sizeof *r);
    cr_assert(fh >= 0 && fb >= 0, "mkstemp");
    close(fh);
    close(fb);
    if (token)
        snprintf(auth, sizeof auth, "-H 'Authorization: Bearer %s'", token);
    td_sh(&out,
          "curl -s -g --max-time 20 %s -X %s %s -D %s -o %s "
          "-w '%%{http_code}' '%s'",
          strcmp(method, "HEAD") == 0 ? "--head" : "",
          strcmp(method, "HEAD") == 0 ? "HEAD" : method, auth, hdr, body,
          url);
    r->code = out ? atoi(out) : 0;
    free(out);
    r->headers = slurp(hdr, &r->len);
    free(r->body);
    r->body = slurp(body, &r->len);
    unlink(hdr);
    unlink(body);
    return r->code;
}

void th_resp_free(struct th_resp *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int th_header(const struct th_resp *r, const char *name, char *out,
              size_t cap)
{
    size_t n = strlen(name);

    for (const char *p = r->headers; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);

        if (len > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;

            while (*v == ' ')
                v++;
            len -= (size_t)(v - p);
            while (len && (v[len - 1] == '\r' || v[len - 1] == ' '))
                len--;
            snprintf(out, cap, "%.*s", (int)len, v);
            return 0;
        }
        p = e ? e + 1 : NULL;
    }
    return -1;
}

int th_node_http(struct td *d, char *out, size_t cap)
{
    struct td_resp r;
    const msgpack_object *node, *h;
    int rv = -1;

    if (td_call(d, &r, "op", "status", NULL) == 0) {
        node = td_get(&r.u.data, "node");
        h = node ? td_get(node, "http") : NULL;
        if (h && h->type == MSGPACK_OBJECT_STR && h->via.str.size > 0) {
            snprintf(out, cap, "%.*s", (int)h->via.str.size, h->via.str.ptr);
            rv = 0;
        }
    }
    td_resp_free(&r);
    return rv;
}

int th_have(const char *prog)
{
    char cmd[300];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}
