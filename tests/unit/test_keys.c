/* Unit tests for node key files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/keys.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ol-keys-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/node.key", dir);
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(keys, .init = setup, .fini = teardown);

Test(keys, created_with_mode_0600_and_reloads)
{
    struct ol__key a, b;
    struct stat st;
    char err[OL_ERRMSG_SIZE];
    int created;

    cr_assert_eq(ol__key_load_or_create(&a, path, &created, err), 0, "%s",
                 err);
    cr_assert_eq(created, 1);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(ol__key_load_or_create(&b, path, &created, err), 0, "%s",
                 err);
    cr_assert_eq(created, 0);
    cr_assert_eq(memcmp(a.pk, b.pk, OL_PK_SIZE), 0);
    cr_assert_eq(memcmp(a.sk, b.sk, OL_SK_SIZE), 0);
    ol__key_close(&a);
    ol__key_close(&b);
}

Test(keys, refuses_a_world_readable_file)
{
    struct ol__key a, b;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__key_load_or_create(&a, path, NULL, err), 0);
    chmod(path, 0644);
    cr_assert_eq(ol__key_load(&b, path, err), OL_EUNAUTH);
    cr_assert(strstr(err, "chmod 600") != NULL, "%s", err);
    ol__key_close(&a);
}

Test(keys, refuses_a_mismatched_public_key)
{
    struct ol__key a, b;
    char err[OL_ERRMSG_SIZE];
    FILE *f;

    cr_assert_eq(ol__key_load_or_create(&a, path, NULL, err), 0);
    f = fopen(path, "w");
    fprintf(f, "seed = %064d\npublic = %064d\n", 1, 2);
    fclose(f);
    chmod(path, 0600);
    cr_assert_eq(ol__key_load(&b, path, err), OL_EMALFORMED);
    cr_assert(strstr(err, "does not match") != NULL, "%s", err);
    ol__key_close(&a);
}

Test(keys, refuses_garbage)
{
    struct ol__key b;
    char err[OL_ERRMSG_SIZE];
    FILE *f = fopen(path, "w");

    fprintf(f, "hello\n");
    fclose(f);
    chmod(path, 0600);
    cr_assert_eq(ol__key_load(&b, path, err), OL_EMALFORMED);
    cr_assert(strstr(err, "seed") != NULL, "%s", err);
}

Test(keys, missing_file_is_notfound)
{
    struct ol__key b;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__key_load(&b, "/nonexistent/x.key", err), OL_ENOTFOUND);
}

Test(keys, pk_hex_round_trips)
{
    struct ol__key a;
    char hex[OL_PK_HEX_SIZE];
    uint8_t pk[OL_PK_SIZE];

    cr_assert_eq(ol__key_generate(&a), 0);
    ol__pk_hex(a.pk, hex);
    cr_assert_eq(ol__pk_parse(hex, pk), 0);
    cr_assert_eq(memcmp(pk, a.pk, OL_PK_SIZE), 0);
    hex[5] = 'z';
    cr_assert_eq(ol__pk_parse(hex, pk), OL_EMALFORMED);
    cr_assert_eq(ol__pk_parse("abcd", pk), OL_EMALFORMED);
    ol__key_close(&a);
}
