/*
 * test_hello - unit tests for hello.c, run without a daemon.
 *
 * hello.c is compiled into this program and driven through the SDK's fake
 * host (outlast/agent_test.h): `make check` builds and runs it.  Each check
 * prints what failed; the exit status is the number of failures.
 */
#include <stdio.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_test.h>
#include <outlast/agent_util.h>

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* The unsigned field `key` of the state hello saved last, or -1. */
static long long state_uint(const struct ol_test *t, const char *key)
{
    msgpack_unpacked u;
    uint64_t v;
    long long r = -1;

    if (ol_test_state(t, &u) != 0)
        return -1;
    if (ol_mp_uint(ol_mp_get(&u.data, key), &v))
        r = (long long)v;
    msgpack_unpacked_destroy(&u);
    return r;
}

/* {"interval_ms": 100} */
static const char config[] = "\x81\xab" "interval_ms\x64";

static void beats_and_survives_a_restart(void)
{
    struct ol_test t;

    CHECK(ol_test_init(&t, ol_agent_entry) == 0, "%s", t.errmsg);
    CHECK(ol_test_open(&t, "greeter", config, sizeof(config) - 1) == 0,
          "%s", t.errmsg);
    CHECK(ol_test_start(&t) == 0, "%s", t.errmsg);
    CHECK(ol_test_advance(&t, 1000) == 0, "%s", t.errmsg);
    CHECK(state_uint(&t, "beats") == 10, "beats %lld",
          state_uint(&t, "beats"));

    /* Kill it and bring it back: the count goes on from the state. */
    CHECK(ol_test_reopen(&t) == 0, "%s", t.errmsg);
    CHECK(ol_test_advance(&t, 100) == 0, "%s", t.errmsg);
    CHECK(state_uint(&t, "beats") == 11, "beats %lld after a restart",
          state_uint(&t, "beats"));
    ol_test_close(&t);
}

static void answers_agents_not_the_cli(void)
{
    const struct ol_test_send *s;
    struct ol_test t;
    msgpack_unpacked u;
    char greeting[16] = "";

    CHECK(ol_test_init(&t, ol_agent_entry) == 0, "%s", t.errmsg);
    CHECK(ol_test_open(&t, "greeter", NULL, 0) == 0, "%s", t.errmsg);
    CHECK(ol_test_start(&t) == 0, "%s", t.errmsg);
    CHECK(ol_test_message(&t, "@cli", "\xc0", 1) == 0, "%s", t.errmsg);
    CHECK(t.nsends == 0, "answered the CLI");
    CHECK(ol_test_message(&t, "friend", "\xc0", 1) == 0, "%s", t.errmsg);
    s = ol_test_last_send(&t, "friend");
    CHECK(s != NULL, "no answer to 'friend'");
    if (s != NULL && ol_mp_unpack(&u, s->data, s->len) == 0) {
        ol_mp_str(ol_mp_get(&u.data, "greeting"), greeting,
                  sizeof(greeting));
        msgpack_unpacked_destroy(&u);
    }
    CHECK(strcmp(greeting, "hello") == 0, "greeting '%s'", greeting);
    CHECK(state_uint(&t, "messages") == 2, "messages %lld",
          state_uint(&t, "messages"));
    ol_test_close(&t);
}

static void refuses_a_bad_config(void)
{
    struct ol_test t;

    CHECK(ol_test_init(&t, ol_agent_entry) == 0, "%s", t.errmsg);
    /* {"interval_ms": 0} */
    CHECK(ol_test_open(&t, "greeter", "\x81\xab" "interval_ms\x00", 14) ==
              OL_AGENT_EINVAL,
          "interval 0 accepted");
    CHECK(strstr(t.error, "interval_ms") != NULL, "error '%s'", t.error);
    ol_test_close(&t);
}

int main(void)
{
    beats_and_survives_a_restart();
    answers_agents_not_the_cli();
    refuses_a_bad_config();
    if (failures == 0)
        printf("test_hello: all passed\n");
    return failures;
}
