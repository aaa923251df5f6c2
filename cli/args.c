/*
 * Argument parsing for the CLI.  Global options may appear anywhere on the
 * line, before or after the command, and so may a command's own options;
 * parsing is two passes over argv in order (no getopt permutation), and
 * "--" ends option parsing so a message such as "-1" or "--x" can still be
 * passed as a positional argument.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "record/ckpt.h"
#include "base/fsutil.h"
#include "base/json.h"
#include "cli.h"

/* Match "--name" or "--name=value"; *inline_value gets the part after '='. */
static int match(const char *arg, const char *name, const char **inline_value)
{
    size_t n = strlen(name);

    *inline_value = NULL;
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '\0')
        return 1;
    if (arg[n] == '=') {
        *inline_value = arg + n + 1;
        return 1;
    }
    return 0;
}

const struct ol__cli_optdef *ol__cli_cmd_opt(const struct ol__cli_cmd *cmd,
                                             const char *arg)
{
    const char *iv;

    for (const struct ol__cli_optdef *d = cmd->opts; d && d->name; d++)
        if (match(arg, d->name, &iv))
            return d;
    return NULL;
}

int ol__cli_value_opt(const char *arg)
{
    const struct ol__cli_cmd *cmd;
    const struct ol__cli_optdef *d;

    for (size_t i = 0; (cmd = ol__cli_cmd_at(i)) != NULL; i++)
        if ((d = ol__cli_cmd_opt(cmd, arg)) != NULL && d->takes_value)
            return 1;
    return 0;
}

int ol__cli_check_name(const struct ol__cli *c, const char *name)
{
    if (!ol__name_valid(name))
        return ol__cli_usage_err(c,
                                 "'%s' is not a valid agent name (1-64 of "
                                 "A-Z a-z 0-9 . _ -, not starting with . "
                                 "or -)",
                                 name);
    return 0;
}

int ol__cli_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s[0] < '0' || s[0] > '9')
        return OL_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return OL_EINVAL;
    *out = v;
    return 0;
}

int ol__cli_usage_err(const struct ol__cli *c, const char *fmt, ...)
{
    va_list ap;

    fputs("outlast: ", stderr);
    if (c && c->cmd)
        fprintf(stderr, "%s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (c && c->cmd)
        fprintf(stderr, "\ntry 'outlast help %s'\n", c->cmd);
    else
        fputs("\ntry 'outlast --help'\n", stderr);
    return OL_EXIT_USAGE;
}

int ol__cli_fail(const struct ol__cli *c, int code, const char *err_name,
                 const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "outlast: %s\n", msg);
    if (c && c->json) {
        json_t *j = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg,
                              "code", err_name ? err_name : "OL_EIO");

        (void)ol__cli_put_json(j);
    }
    return code;
}

/* Take an option's value: inline, or the next argument. */
static int take_value(const struct ol__cli *c, const char *name,
                      const char *inline_value, int argc, char **argv,
                      int *i, const char **out)
{
    if (inline_value) {
        *out = inline_value;
        return 0;
    }
    if (*i + 1 >= argc)
        return ol__cli_usage_err(c, "option '%s' needs a value", name);
    *out = argv[++*i];
    return 0;
}

static int set_path(const struct ol__cli *c, char *dst, const char *v,
                    const char *opt)
{
    if (v[0] == '\0')
        return ol__cli_usage_err(c, "option '%s' needs a non-empty value",
                                 opt);
    if (strlen(v) >= PATH_MAX)
        return ol__cli_usage_err(c, "option '%s': path is too long", opt);
    snprintf(dst, PATH_MAX, "%s", v);
    return 0;
}

/* The global options' raw values, as given. */
struct raw_globals {
    const char *data_dir, *sock, *db, *timeout;
    int version;
};

/* The slot of a global option that takes a value, or NULL. */
static const char **global_slot(struct raw_globals *g, const char *a,
                                const char **iv)
{
    if (match(a, "--data-dir", iv))
        return &g->data_dir;
    if (match(a, "--socket", iv))
        return &g->sock;
    if (match(a, "--db", iv))
        return &g->db;
    if (match(a, "--timeout", iv))
        return &g->timeout;
    return NULL;
}

/* Take the global options out of argv into g; the rest (the command, its
 * arguments and options) into c->argv, the command then moved to c->cmd. */
static int scan(struct ol__cli *c, int argc, char **argv,
                struct raw_globals *g)
{
    char **rest = c->argv;
    int n = 0, dashdash = 0, cmd_at = -1, rv;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *iv;
        const char **slot;

        if (dashdash || a[0] != '-' || a[1] == '\0') {
            if (cmd_at < 0 && !dashdash)
                cmd_at = n;
            rest[n++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = 1;
            rest[n++] = argv[i];
            continue;
        }
        if ((slot = global_slot(g, a, &iv)) != NULL) {
            c->cmd = cmd_at >= 0 ? rest[cmd_at] : NULL;
            rv = take_value(c, a, iv, argc, argv, &i, slot);
            if (rv != 0)
                return rv;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            c->json = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            c->help = 1;
        } else if (strcmp(a, "--version") == 0) {
            g->version = 1;
        } else {
            /* A command option: keep it, and its value if it takes one. */
            rest[n++] = argv[i];
            if (ol__cli_value_opt(a) && i + 1 < argc)
                rest[n++] = argv[++i];
        }
    }
    if (cmd_at >= 0) {
        c->cmd = rest[cmd_at];
        memmove(&rest[cmd_at], &rest[cmd_at + 1],
                (size_t)(n - cmd_at - 1) * sizeof *rest);
        n--;
    }
    c->argc = n;
    return 0;
}

/* A path option, or the data dir's file `name` when it was not given. */
static int path_or_default(const struct ol__cli *c, char *dst,
                           const char *v, const char *opt, const char *name,
                           int *set)
{
    if (v) {
        *set = 1;
        return set_path(c, dst, v, opt);
    }
    if (ol__path_join(dst, PATH_MAX, c->data_dir, name) != 0)
        return ol__cli_usage_err(c, "data dir path is too long");
    return 0;
}

int ol__cli_globals(struct ol__cli *c, int argc, char **argv)
{
    const char *env = getenv("OUTLAST_DATA");
    struct raw_globals g = {0};
    int rv;

    memset(c, 0, sizeof *c);
    c->timeout_ms = OL_CLI_TIMEOUT_MS;
    c->argv = calloc((size_t)argc + 1, sizeof *c->argv);
    if (c->argv == NULL)
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_ENOMEM", "out of memory");
    if ((rv = scan(c, argc, argv, &g)) != 0)
        return rv;
    if (g.version) {
        c->version = 1;
        return 0;
    }
    if (g.data_dir == NULL)
        g.data_dir = env && env[0] ? env : OL_CLI_DEFAULT_DIR;
    if ((rv = set_path(c, c->data_dir, g.data_dir, "--data-dir")) != 0 ||
        (rv = path_or_default(c, c->socket, g.sock, "--socket",
                              "control.sock", &c->socket_set)) != 0 ||
        (rv = path_or_default(c, c->db, g.db, "--db", OL_CLI_DB_NAME,
                              &c->db_set)) != 0)
        return rv;
    if (g.timeout) {
        uint64_t v;

        if (ol__cli_parse_u64(g.timeout, 86400000, &v) != 0 || v == 0)
            return ol__cli_usage_err(c,
                                     "--timeout must be a positive number "
                                     "of milliseconds, not '%s'",
                                     g.timeout);
        c->timeout_ms = (int)v;
    }
    return 0;
}

static const struct ol__cli_opt *find_opt(const struct ol__cli_opt *opts,
                                          const char *a,
                                          const char **inline_value)
{
    for (; opts && opts->name; opts++)
        if (match(a, opts->name, inline_value))
            return opts;
    return NULL;
}

int ol__cli_parse(const struct ol__cli *c, const struct ol__cli_opt *opts,
                  const char **pos, int min, int max, int *n_pos)
{
    const struct ol__cli_cmd *cmd = ol__cli_find(c->cmd);
    int n = 0, dashdash = 0;

    for (int i = 0; i < c->argc; i++) {
        const char *a = c->argv[i], *iv, *v;
        const struct ol__cli_opt *o;

        if (!dashdash && strcmp(a, "--") == 0) {
            dashdash = 1;
            continue;
        }
        /* A single-dash word is an argument ("send ticker -1") unless the
         * command names it as a short option ("logs NAME -f"). */
        if (dashdash || a[0] != '-' ||
            (a[1] != '-' && find_opt(opts, a, &iv) == NULL)) {
            if (n >= max)
                return ol__cli_usage_err(c, "unexpected argument '%s'", a);
            pos[n++] = a;
            continue;
        }
        o = find_opt(opts, a, &iv);
        if (o == NULL) {
            const char *eq = strchr(a, '=');

            return ol__cli_usage_err(c, "unknown option '%.*s'",
                                     eq ? (int)(eq - a) : (int)strlen(a), a);
        }
        /* What the command binds agrees with its table row (cli.h). */
        assert(cmd == NULL || (ol__cli_cmd_opt(cmd, o->name) != NULL &&
                               ol__cli_cmd_opt(cmd, o->name)->takes_value ==
                                   (o->value != NULL || o->list != NULL)));
        if (o->value == NULL && o->list == NULL) {
            if (iv)
                return ol__cli_usage_err(c, "option '%s' takes no value",
                                         o->name);
            if (o->flag)
                *o->flag = 1;
            continue;
        }
        if (iv == NULL && i + 1 >= c->argc)
            return ol__cli_usage_err(c, "option '%s' needs a value",
                                     o->name);
        v = iv ? iv : c->argv[++i];
        if (o->list) {
            if (*o->n_list >= o->max_list)
                return ol__cli_usage_err(c, "option '%s' given more than "
                                            "%zu times",
                                         o->name, o->max_list);
            o->list[(*o->n_list)++] = v;
        }
        if (o->value)
            *o->value = v;
    }
    if (n < min)
        return ol__cli_usage_err(c, "missing argument (usage: outlast %s)",
                                 cmd ? cmd->synopsis : c->cmd);
    *n_pos = n;
    return 0;
}
