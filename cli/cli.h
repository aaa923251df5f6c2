/*
 * Shared pieces of the `outlast` command-line tool: the parsed global
 * options, command-option parsing, talking to a node, reading a database
 * offline, and output helpers (tables, times, JSON).
 *
 * Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 the node
 * cannot be reached.
 */
#ifndef OL_CLI_H
#define OL_CLI_H

#include <limits.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/buf.h"
#include "base/pack.h"
#include "state/store.h"

#define OL_EXIT_OK 0
#define OL_EXIT_FAIL 1
#define OL_EXIT_USAGE 2
#define OL_EXIT_UNREACHABLE 3

#define OL_CLI_DEFAULT_DIR "./outlast-data"
#define OL_CLI_DB_NAME "outlast.db"
#define OL_CLI_KEY_NAME "node.key"
#define OL_CLI_TIMEOUT_MS 15000

struct ol__cli {
    char data_dir[PATH_MAX];
    char socket[PATH_MAX];
    int socket_set;        /* --socket was given */
    char db[PATH_MAX];     /* --db, or <data-dir>/outlast.db */
    int db_set;            /* --db was given: read the file offline */
    int json;
    int timeout_ms;
    int help;              /* --help given */
    int version;           /* --version given */
    const char *cmd;
    int argc;              /* the command's own arguments */
    char **argv;
};

/* One option a command accepts, as its table row declares it. */
struct ol__cli_optdef {
    const char *name;      /* "--limit", or a short "-n" */
    int takes_value;       /* "--limit N" rather than a flag */
};

/* One row of the command table.  Adding a command: write its run function
 * in a cmd_*.c file (binding its options with struct ol__cli_opt), declare
 * it below under "commands", and add its row, options included, to the
 * table in help.c.  Nothing else lists commands or options: the global
 * parser learns from the rows which options take a value. */
struct ol__cli_cmd {
    const char *name;
    int (*run)(struct ol__cli *c);
    const char *synopsis;  /* "show NAME" */
    const char *summary;   /* one line */
    const char *details;   /* options and notes, may be NULL */
    const struct ol__cli_optdef *opts; /* ends with a NULL name; may be NULL */
};

/* The command table with per-command help (help.c). */
const struct ol__cli_cmd *ol__cli_find(const char *name);
/* The i-th row, or NULL past the end. */
const struct ol__cli_cmd *ol__cli_cmd_at(size_t i);
void ol__cli_usage(FILE *f);
int ol__cli_help_cmd(const struct ol__cli_cmd *cmd, FILE *f);

/* ---- arguments (args.c) ---- */

/* Where a command's parse puts one option: a value option (declared with
 * takes_value in the command's table row) fills `value` or `list`, a flag
 * sets `flag`. */
struct ol__cli_opt {
    const char *name;      /* "--limit" */
    const char **value;    /* receives the (last) value */
    int *flag;             /* set to 1 when present */
    const char **list;     /* repeated values collect here */
    size_t *n_list;
    size_t max_list;
};

/* The row's declaration of option `arg` ("--x" or "--x=v"), or NULL. */
const struct ol__cli_optdef *ol__cli_cmd_opt(const struct ol__cli_cmd *cmd,
                                             const char *arg);
/* Whether some command's row declares `arg` as an option that takes a
 * value (so that, before the command, its value is not taken for the
 * command's name). */
int ol__cli_value_opt(const char *arg);

/* Split argv into global options (anywhere on the line) and the command
 * with its own arguments.  Returns 0 or an exit code (message printed). */
int ol__cli_globals(struct ol__cli *c, int argc, char **argv);

/* Parse the command's arguments against `opts` (terminated by a NULL
 * name); positionals go to pos[], between min and max of them.  Returns 0
 * or OL_EXIT_USAGE with the problem printed. */
int ol__cli_parse(const struct ol__cli *c, const struct ol__cli_opt *opts,
                  const char **pos, int min, int max, int *n_pos);

/* Print "outlast: CMD: message" to stderr plus a hint; returns
 * OL_EXIT_USAGE. */
int ol__cli_usage_err(const struct ol__cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print "outlast: message" to stderr (and, with --json, an error object to
 * stdout); returns `code`. */
int ol__cli_fail(const struct ol__cli *c, int code, const char *err_name,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An agent name the node would take, or a usage error naming it. */
int ol__cli_check_name(const struct ol__cli *c, const char *name);

/* Parse a non-negative decimal integer no larger than max. */
int ol__cli_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* ---- responses (resp.c) ---- */

/* A response map, unpacked.  `root` is the map. */
struct ol__cli_resp {
    void *raw;
    size_t len;
    msgpack_unpacked u;
    const msgpack_object *root;
};

void ol__cli_resp_free(struct ol__cli_resp *r);

/* Check and unpack response bytes (taking ownership of `raw`, malloc'd).
 * Returns 0 or OL_EMALFORMED with errmsg set. */
int ol__cli_resp_take(struct ol__cli_resp *r, void *raw, size_t len,
                      char *errmsg);

/* Send a request map to the node and unpack its response.  On any failure
 * (unreachable, malformed, or {"ok": false}) the error is printed and the
 * exit code returned; 0 means `r` holds an ok response. */
int ol__cli_call(struct ol__cli *c, const struct ol__buf *req,
                 struct ol__cli_resp *r);

/* A request being written: ol__cli_req_open() starts {"op": op}, pairs
 * go in through q->m (ol__pk_kv_*), ol__cli_req_send() sends it. */
struct ol__cli_req {
    struct ol__buf b;
    msgpack_packer pk;
    struct ol__pk_map m;
};

void ol__cli_req_open(struct ol__cli_req *q, const char *op);
/* End the map, send it and release the request; as ol__cli_call. */
int ol__cli_req_send(struct ol__cli *c, struct ol__cli_req *q,
                     struct ol__cli_resp *r);

/* Send {"op": op} (or {"op": op, "name": name}) and unpack the response;
 * as ol__cli_call. */
int ol__cli_call_simple(struct ol__cli *c, const char *op, const char *name,
                        struct ol__cli_resp *r);

/* Commands that need a running node refuse --db with a usage error. */
int ol__cli_need_node(const struct ol__cli *c);

/* Open the database (--db, or the data dir's) read-only.  Returns 0 or an
 * exit code with the error printed. */
int ol__cli_open_db(struct ol__cli *c, struct ol__store *st);

/* Build {"ok": true, key: <value>} (or, with key NULL, the map `p` with
 * "ok": true added) and unpack it as a response. */
int ol__cli_resp_wrap(struct ol__cli_resp *r, const char *key, const void *p,
                      size_t len, char *errmsg);

/* Map lookups on unpacked objects; NULL / defaults when absent. */
const msgpack_object *ol__mp_get(const msgpack_object *map, const char *key);
/* The value as text for a table cell (strings verbatim, numbers in
 * decimal, bool, nil as "-"); writes into out. */
const char *ol__mp_text(const msgpack_object *o, char *out, size_t cap);
const char *ol__mp_gets(const msgpack_object *map, const char *key,
                        char *out, size_t cap);
uint64_t ol__mp_getu(const msgpack_object *map, const char *key);
int64_t ol__mp_geti(const msgpack_object *map, const char *key);
int ol__mp_getb(const msgpack_object *map, const char *key);

/* cmd_wire.c: the wire lines of `cluster status` from its answer. */
void ol__cli_print_wire(const msgpack_object *root);

/* ---- output (out.c) ---- */

/* "2024-05-01T12:00:03Z (3s ago)", or "-" for 0. */
const char *ol__cli_time(int64_t ms, char *out, size_t cap);
/* Just the ISO-8601 UTC part. */
const char *ol__cli_iso(int64_t ms, char *out, size_t cap);
/* "3s", "4m10s", "2h3m", "5d2h". */
const char *ol__cli_duration(uint64_t ms, char *out, size_t cap);
/* The first 12 hex digits of a hash ("-" when empty). */
const char *ol__cli_short(const char *hex, char *out, size_t cap);

/* Print an object as indented JSON on stdout.  Returns 0 or an exit code. */
int ol__cli_print_json(const msgpack_object *o);
/* Print a jansson value as indented JSON on stdout and release it
 * (NULL: nothing printed).  Returns 0, or OL_EXIT_FAIL for NULL. */
struct json_t;
int ol__cli_put_json(struct json_t *j);
/* Print any object for humans: maps as aligned "key  value" lines. */
void ol__cli_print_generic(const msgpack_object *o, int indent);
/* One value as compact JSON text (malloc'd; NULL on failure). */
char *ol__cli_compact_json(const msgpack_object *o);

/* ---- tables (table.c) ---- */

struct ol__table {
    size_t ncols;
    size_t nrows;          /* including the header row */
    size_t cap;
    char **cells;          /* nrows * ncols, owned */
};

int ol__table_init(struct ol__table *t, size_t ncols,
                   const char *const *headers);
/* Add a row of ncols strings (copied). */
int ol__table_add(struct ol__table *t, const char *const *cells);
/* Print with columns padded to their widest cell; the last column is not
 * padded. */
void ol__table_print(const struct ol__table *t, FILE *f);
void ol__table_free(struct ol__table *t);

/* ---- commands ---- */

int ol__cmd_status(struct ol__cli *c);
int ol__cmd_cluster(struct ol__cli *c);
int ol__cmd_agents(struct ol__cli *c);
int ol__cmd_show(struct ol__cli *c);
int ol__cmd_history(struct ol__cli *c);
int ol__cmd_effects(struct ol__cli *c);
int ol__cmd_spawn(struct ol__cli *c);
/* The bulk forms of spawn, stop and start (cmd_bulk.c). */
struct json_t;
struct ol__cli_bulk {
    const char *op;        /* "spawn", "stop" or "start" */
    const char *kind;      /* spawn */
    struct json_t *config; /* spawn; may be NULL; borrowed */
    const char **names;
    int n_names;
    const char *prefix;    /* spawn: with count; stop/start: match */
    const char *count;     /* spawn */
    int all;               /* stop/start: every agent */
    const char *rid;       /* --request-id, or NULL */
    int no_wait;           /* spawn --no-wait */
};
int ol__cli_bulk(struct ol__cli *c, const struct ol__cli_bulk *a);
int ol__cmd_stop(struct ol__cli *c);
int ol__cmd_start(struct ol__cli *c);
int ol__cmd_send(struct ol__cli *c);
int ol__cmd_rm(struct ol__cli *c);
int ol__cmd_restart(struct ol__cli *c);
int ol__cmd_config(struct ol__cli *c);
int ol__cmd_upgrade(struct ol__cli *c);
int ol__cmd_verify(struct ol__cli *c);
int ol__cmd_export(struct ol__cli *c);
int ol__cmd_keygen(struct ol__cli *c);
int ol__cmd_logs(struct ol__cli *c);
int ol__cmd_top(struct ol__cli *c);
int ol__cmd_recover(struct ol__cli *c);

#endif
