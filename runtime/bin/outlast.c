/*
 * outlast: the command-line tool.  It talks to a node over the node's
 * control socket, or reads a database file offline (--db).  Commands live
 * in cli/, one file per group; this file only dispatches.
 */
#include <stdlib.h>
#include <string.h>

#include "ol_config.h"
#include "cli/cli.h"

int main(int argc, char **argv)
{
    const struct ol__cli_cmd *cmd;
    struct ol__cli c;
    int rv;

    rv = ol__cli_globals(&c, argc, argv);
    if (rv != 0)
        goto out;
    if (c.version) {
        printf("outlast %s\n", OL_VERSION);
        goto out;
    }
    if (c.cmd == NULL) {
        if (c.help) {
            ol__cli_usage(stdout);
            goto out;
        }
        ol__cli_usage(stderr);
        rv = OL_EXIT_USAGE;
        goto out;
    }
    if (strcmp(c.cmd, "help") == 0) {
        if (c.argc == 0) {
            ol__cli_usage(stdout);
            goto out;
        }
        cmd = ol__cli_find(c.argv[0]);
        if (cmd == NULL || c.argc > 1) {
            c.cmd = NULL;
            rv = ol__cli_usage_err(&c, "help: no command '%s'", c.argv[0]);
            goto out;
        }
        rv = ol__cli_help_cmd(cmd, stdout);
        goto out;
    }
    cmd = ol__cli_find(c.cmd);
    if (cmd == NULL) {
        const char *name = c.cmd;

        c.cmd = NULL;
        rv = ol__cli_usage_err(&c, "unknown command '%s'", name);
        goto out;
    }
    if (c.help) {
        rv = ol__cli_help_cmd(cmd, stdout);
        goto out;
    }
    rv = cmd->run(&c);
out:
    free(c.argv);
    fflush(stdout);
    return rv;
}
