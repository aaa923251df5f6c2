/* Unit tests for [cluster] leader_preference (replication/cluster.h):
 * parsing, with an error for each malformed list, and ranking: the first
 * entry a node's labels hold wins, and a node matching none ranks last.
 * The config parser refuses a bad value naming the key and the value. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "replication/cluster.h"
#include "runtime/config.h"

static struct ol__lead_pref parse_ok(const char *s)
{
    struct ol__lead_pref p;
    char err[OL_ERRMSG_SIZE] = "";

    cr_assert_eq(ol__lead_pref_parse(s, &p, err), 0, "'%s': %s", s, err);
    return p;
}

Test(leadpref, parses_an_ordered_list)
{
    struct ol__lead_pref p = parse_ok("cloud=aws,cloud=gcp, zone=eu-1 ");

    cr_assert_eq(p.n, 3);
    cr_expect_str_eq(p.text + p.at[0], "cloud=aws");
    cr_expect_str_eq(p.text + p.at[1], "cloud=gcp");
    cr_expect_str_eq(p.text + p.at[2], "zone=eu-1");
    cr_expect_eq(parse_ok("").n, 0, "empty: no preference");
    cr_expect_eq(parse_ok("   ").n, 0);
}

Test(leadpref, refuses_what_is_not_a_list_of_label_matches)
{
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"cloud", "entry 1 'cloud' is not key=value"},
        {"cloud=aws,,cloud=gcp", "entry 2 '' is not key=value"},
        {"cloud=aws,", "entry 2 ''"},
        {"=aws", "entry 1 '=aws'"},
        {"cloud=", "entry 1 'cloud='"},
        {"cloud=a=b", "entry 1 'cloud=a=b'"},
        {"cloud=aws;zone=a", "entry 1 'cloud=aws;zone=a'"},
        {"cloud=a ws", "entry 1 'cloud=a ws'"},
        {"a=1,a=2,a=3,a=4,a=5,a=6,a=7,a=8,a=9,b=1,b=2,b=3,b=4,b=5,b=6,"
         "b=7,b=8",
         "more than 16 entries"},
    };
    char err[OL_ERRMSG_SIZE];
    struct ol__lead_pref p;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_expect_eq(ol__lead_pref_parse(bad[i].in, &p, err), OL_EINVAL,
                     "'%s' was accepted", bad[i].in);
        cr_expect(strstr(err, bad[i].why), "'%s': got '%s', wanted '%s'",
                  bad[i].in, err, bad[i].why);
    }
}

Test(leadpref, the_first_matching_entry_wins_and_no_match_ranks_last)
{
    struct ol__lead_pref p = parse_ok("cloud=aws,cloud=gcp,zone=home");

    cr_expect_eq(ol__lead_pref_rank(&p, "cloud=aws"), 0);
    cr_expect_eq(ol__lead_pref_rank(&p, "zone=home,cloud=aws"), 0,
                 "the order of the node's labels does not matter");
    cr_expect_eq(ol__lead_pref_rank(&p, "region=x,cloud=gcp"), 1);
    cr_expect_eq(ol__lead_pref_rank(&p, "zone=home,cloud=azure"), 2);
    cr_expect_eq(ol__lead_pref_rank(&p, "cloud=azure"), 3, "no match: last");
    cr_expect_eq(ol__lead_pref_rank(&p, ""), 3);
    cr_expect_eq(ol__lead_pref_rank(&p, NULL), 3);
    /* Whole pairs only: neither a prefix nor a longer value matches. */
    cr_expect_eq(ol__lead_pref_rank(&p, "cloud=awsx"), 3);
    cr_expect_eq(ol__lead_pref_rank(&p, "xcloud=aws"), 3);
    cr_expect_eq(ol__lead_pref_rank(&p, "cloud=aw"), 3);
    cr_expect_eq(ol__lead_pref_rank(&p, "cloud=gcp, cloud=aws"), 0,
                 "spaces around a node's labels are ignored");
}

Test(leadpref, no_preference_ranks_every_node_alike)
{
    struct ol__lead_pref p = parse_ok("");

    cr_expect_eq(ol__lead_pref_rank(&p, "cloud=aws"), 0);
    cr_expect_eq(ol__lead_pref_rank(&p, ""), 0);
}

/* Load `text` as a config file; 0 or the error in err. */
static int load(const char *text, struct ol__config *c, char *err)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    int fd, rv;

    snprintf(path, sizeof path, "%s/ol-leadpref-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    fd = mkstemp(path);

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ol__config_defaults(c);
    rv = ol__config_load(c, path, err);
    unlink(path);
    return rv;
}

Test(leadpref, the_config_key_is_checked)
{
    struct ol__config c;
    char err[OL_ERRMSG_SIZE] = "";

    cr_assert_eq(load("[cluster]\nlisten = 127.0.0.1:7000\n"
                      "leader_preference = cloud=aws, cloud=gcp\n",
                      &c, err),
                 0, "%s", err);
    cr_expect_str_eq(c.leader_preference, "cloud=aws, cloud=gcp");
    ol__config_free(&c);
    cr_assert_neq(load("[cluster]\nlisten = 127.0.0.1:7000\n"
                       "leader_preference = cloud:aws\n",
                       &c, err),
                  0);
    cr_expect(strstr(err, ":3: 'leader_preference' must be"), "%s", err);
    cr_expect(strstr(err, "not 'cloud:aws'"), "%s", err);
    ol__config_free(&c);
}
