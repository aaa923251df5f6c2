/* The CLI's command table (cli/help.c) against itself and the parser: every
 * option a row declares is in its help, an option name means the same
 * (flag or value) in every command that has it, and a value option is
 * recognised before the command as well as after it. */
#include <criterion/criterion.h>
#include <string.h>

#include "cli/cli.h"

Test(cli_table, every_declared_option_is_in_its_help)
{
    const struct ol__cli_cmd *cmd;
    size_t n = 0;

    for (size_t i = 0; (cmd = ol__cli_cmd_at(i)) != NULL; i++) {
        cr_assert_eq(ol__cli_find(cmd->name), cmd, "'%s' twice", cmd->name);
        for (const struct ol__cli_optdef *d = cmd->opts; d && d->name; d++) {
            cr_assert(strstr(cmd->synopsis, d->name) ||
                          (cmd->details && strstr(cmd->details, d->name)),
                      "%s: option '%s' is not in its help", cmd->name,
                      d->name);
            n++;
        }
    }
    cr_assert_gt(n, 20, "only %zu options declared", n);
    cr_assert_null(ol__cli_cmd_at(1000));
}

Test(cli_table, an_option_is_a_flag_or_takes_a_value_everywhere)
{
    const struct ol__cli_cmd *a, *b;
    const struct ol__cli_optdef *d, *e;

    for (size_t i = 0; (a = ol__cli_cmd_at(i)) != NULL; i++)
        for (d = a->opts; d && d->name; d++)
            for (size_t j = 0; (b = ol__cli_cmd_at(j)) != NULL; j++)
                if ((e = ol__cli_cmd_opt(b, d->name)) != NULL)
                    cr_assert_eq(e->takes_value, d->takes_value,
                                 "'%s' in %s and %s", d->name, a->name,
                                 b->name);
}

Test(cli_table, value_options_come_from_the_table)
{
    cr_assert(ol__cli_value_opt("--limit"));
    cr_assert(ol__cli_value_opt("--lines"));
    cr_assert(ol__cli_value_opt("-n"));
    cr_assert(ol__cli_value_opt("--interval"));
    cr_assert_not(ol__cli_value_opt("--all"));
    cr_assert_not(ol__cli_value_opt("--follow"));
    cr_assert_not(ol__cli_value_opt("--bogus"));
    cr_assert_not(ol__cli_value_opt("--lim"));
}

/* A value option before the command: its value is not the command. */
Test(cli_table, value_option_before_the_command)
{
    char a0[] = "outlast", a1[] = "--interval", a2[] = "250", a3[] = "top",
         a4[] = "--plain";
    char *argv[] = {a0, a1, a2, a3, a4, NULL};
    struct ol__cli c;

    cr_assert_eq(ol__cli_globals(&c, 5, argv), 0);
    cr_assert_str_eq(c.cmd, "top");
    cr_assert_eq(c.argc, 3);
    cr_assert_str_eq(c.argv[0], "--interval");
    cr_assert_str_eq(c.argv[1], "250");
    cr_assert_str_eq(c.argv[2], "--plain");
    free(c.argv);
}
