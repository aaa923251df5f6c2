/*
 * Integration test support: real outlastd processes in temp directories,
 * driven over their control sockets and inspected through their SQLite
 * files.  Every wait is bounded by a deadline.
 */
#ifndef OL_TEST_DAEMON_H
#define OL_TEST_DAEMON_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>

struct td {
    char root[128];  /* temp dir */
    char data[192];  /* data dir */
    char conf[192];  /* config file */
    char log[192];   /* daemon stderr */
    char sock[224];
    pid_t pid;
    int exited;      /* waitpid status once reaped */
    int status;
};

/* Paths to built things. */
const char *td_bin(const char *name); /* runtime/bin/<name> */
const char *td_plugin_dirs(void);     /* agents:tests/plugins */

/* Create a temp dir and write a config whose [node] section points at it;
 * `extra` is appended verbatim (more sections). */
void td_init(struct td *d, const char *tag, const char *extra);

/* Start outlastd and wait (with d->conf set to "", it runs the embedded
 * default: no config file, the example agents, data in d->data) (up to timeout_ms) until it answers status.
 * Returns 0, or -1 if it exited or never answered. */
int td_start(struct td *d, int timeout_ms);

/* Start without waiting for the control socket. */
void td_spawn(struct td *d);

void td_kill9(struct td *d);

/* SIGTERM and wait; returns the exit code, or -1 on timeout/signal. */
int td_term(struct td *d, int timeout_ms);

/* Wait for the process to exit by itself; exit code or -1. */
int td_wait_exit(struct td *d, int timeout_ms);

/* Kill if running, then delete the temp dir. */
void td_cleanup(struct td *d);

/* One control request built from a format of key/value pairs:
 * td_call(d, &resp, "op", "spawn", "kind", "counter", "name", "c1", NULL)
 * Values are strings; returns 0 when the response has ok=true.  On return
 * *resp (if not NULL) holds an unpacked object in *zone-owned memory that
 * the caller releases with td_resp_free(). */
struct td_resp {
    msgpack_unpacked u;
    void *raw;
};
int td_call(struct td *d, struct td_resp *resp, ...);
/* Same, with a pre-packed request map. */
int td_call_raw(struct td *d, const void *req, size_t len,
                struct td_resp *resp);
void td_resp_free(struct td_resp *r);
/* Lookup helpers on a response map. */
const msgpack_object *td_get(const msgpack_object *map, const char *key);
int64_t td_int(const msgpack_object *map, const char *key, int64_t dflt);
const char *td_errmsg(struct td_resp *r, char *buf, size_t cap);

/* Run a command line (via /bin/sh), capture stdout+stderr into *out
 * (malloc'd); returns the exit code. */
int td_sh(char **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Open the node's database read-only (fails the test if it cannot). */
sqlite3 *td_db(struct td *d);
int64_t td_q1(sqlite3 *db, const char *sql);
/* The crash count d's store holds for agent `name`, or -1 for none. */
int64_t td_crashes(struct td *d, const char *name);

/* The head state of `agent` (the msgpack bytes its last checkpoint holds)
 * in the node's database, copied into *out (malloc'd; the caller frees
 * it).  Returns 0, or -1 if the agent has no readable checkpoint. */
int td_head_state(struct td *d, const char *agent, void **out, size_t *len);

/* Decode the head state of `agent` (msgpack map) and return integer field
 * `key` (dflt if absent).  Reads the DB directly. */
int64_t td_state_int(struct td *d, const char *agent, const char *key,
                     int64_t dflt);

/* The page number of the `nth` page (from 0) of type `type` ("leaf",
 * "internal", "overflow") of table or index `name` in the database at
 * `path`, found with SQLite's dbstat; fails the test if there is none. */
int64_t td_page(const char *path, const char *name, const char *type,
                int nth);
/* Overwrite page `pg` (4 KiB pages) of the file with junk. */
void td_smash_page(const char *path, int64_t pg);

/* Poll `cond(d, arg)` every 20 ms until true or timeout; returns 1/0. */
int td_until(int (*cond)(struct td *d, void *arg), struct td *d, void *arg,
             int timeout_ms);

uint64_t td_ms(void);
void td_sleep_ms(int ms);


/* Control requests with a JSON argument packed as msgpack. */
int td_spawn_agent(struct td *d, const char *kind, const char *name,
                   const char *config_json, char *err, size_t errcap);
int td_send_json(struct td *d, const char *name, const char *json,
                 char *err, size_t errcap);
/* The agent's status string from the `agents` op ("" if unknown) and its
 * live entry's `degraded` flag. */
void td_agent_status(struct td *d, const char *name, char *status,
                     size_t cap, int *degraded, char *reason,
                     size_t reason_cap);

#endif
