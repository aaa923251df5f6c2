/*
 * The command table and every help text of the CLI: `outlast --help`,
 * `outlast help CMD` and `outlast CMD --help` all print from here.
 */
#include <string.h>

#include "cli.h"

/* A row's options: name and whether it takes a value. */
#define OPTS(...) ((const struct ol__cli_optdef[]){__VA_ARGS__})

static const struct ol__cli_cmd cmds[] = {
    {"status", ol__cmd_status, "status",
     "show the node: identity, role, agent counts, commit counters", NULL,
     NULL},
    {"agents", ol__cmd_agents,
     "agents [--status S] [--kind K] [--owner ID] [--prefix P] [--after NAME]"
     " [--limit N] [--all]",
     "list agents with status, owner, epoch and last checkpoint",
     "  --status S     only agents in status S (running, stopping, stopped,\n"
     "                 quarantined, removed)\n"
     "  --kind K       only agents of plugin K\n"
     "  --owner ID     only agents placed on node ID\n"
     "  --prefix P     only names that start with P\n"
     "  --after NAME   names after NAME (the next page)\n"
     "  --limit N      at most N; says how to ask for the next page\n"
     "  --all          removed agents too\n"
     "  The node filters and pages in SQL, so a page of a large cluster\n"
     "  costs it what the page holds.  With --db FILE the database is read\n"
     "  directly (no node needed).  STATUS says 'degraded' when the node\n"
     "  reports the agent degraded.\n",
     OPTS({"--all", 0}, {"--status", 1}, {"--kind", 1}, {"--owner", 1},
          {"--prefix", 1}, {"--after", 1}, {"--limit", 1}, {NULL, 0})},
    {"show", ol__cmd_show, "show NAME",
     "show one agent, with its state as JSON",
     "  The head checkpoint is verified (seal signature, hash, chain link)\n"
     "  before its state is shown; a bad head is reported, not shown.\n"
     "  With --db FILE the database is read directly.\n", NULL},
    {"history", ol__cmd_history, "history NAME [--limit N]",
     "list an agent's checkpoints, newest first",
     "  --limit N   only the newest N checkpoints (default: all)\n"
     "  Rows are listed as stored; 'outlast verify' checks them.\n"
     "  With --db FILE the database is read directly.\n",
     OPTS({"--limit", 1}, {NULL, 0})},
    {"effects", ol__cmd_effects, "effects NAME [--state S] [--limit N]",
     "list an agent's effects: key, kind, state, attempts and outcome",
     "  --state S   only effects in state S: pending, in-flight, retrying,\n"
     "              done, failed, in-doubt, or open (all but done and\n"
     "              failed)\n"
     "  --limit N   only the newest N (default: all)\n"
     "  States: pending (committed, not yet performed), in flight (being\n"
     "  performed on the node that hosts the agent), retrying (failed,\n"
     "  to be tried again), done and failed (the outcome is checkpointed),\n"
     "  in doubt (declared under an older epoch: an earlier owner may have\n"
     "  performed it).  KEY is the idempotency key perform() passes on;\n"
     "  EPOCH that of the checkpoint that declared it.  Read from the\n"
     "  agent's stored checkpoints, each verified first: a node keeps the\n"
     "  newest [node] retain of them (default 1000), so effects that\n"
     "  closed before the oldest kept are not listed; open ones always\n"
     "  are.  In flight and retrying come from the node that hosts the\n"
     "  agent: ask that one.  With --db FILE the database is read\n"
     "  directly (stored states only).\n",
     OPTS({"--state", 1}, {"--limit", 1}, {NULL, 0})},
    {"spawn", ol__cmd_spawn,
     "spawn KIND NAME [NAME...] [--prefix P --count N] [--config JSON] "
     "[--prefer k=v,...] [--avoid k=v,...] [--request-id ID] [--no-wait]",
     "create an agent (or many) of plugin KIND named NAME",
     "  --config JSON     the agent's configuration, a JSON object\n"
     "  --prefer k=v,...  in a cluster, place it on a node with one of these\n"
     "                    labels when one is up (its config's \"prefer\")\n"
     "  --avoid k=v,...   never on a node with one of these labels unless\n"
     "                    no other is up (its config's \"avoid\")\n"
     "  --request-id ID   name this request (1-128 printable characters):\n"
     "                    run again with the same ID, on any node, it is\n"
     "                    applied once and answers as the first time\n"
     "  --no-wait         answer once the spawn is committed, before the\n"
     "                    agent's first checkpoint\n"
     "  --prefix P        with --count N: spawn P0, P1 .. P<N-1> (no zero\n"
     "  --count N         padding; N at most 100000)\n"
     "  Without --no-wait, spawn answers after the agent's first step has\n"
     "  committed, and fails with the plugin's reason (ol_host.error) if\n"
     "  open() refused the config; the refused agent is kept, quarantined.\n"
     "  With several names (or --prefix/--count) it is one bulk request,\n"
     "  committed in few log entries; each name is checked and waited for\n"
     "  as a single spawn would be, and the answer is a line per agent and\n"
     "  a summary.  Exit status 1 if any agent failed.  Without --timeout\n"
     "  it waits 15 s plus 20 ms per agent.\n",
     OPTS({"--config", 1}, {"--request-id", 1}, {"--no-wait", 0},
          {"--prefix", 1}, {"--count", 1}, {"--prefer", 1}, {"--avoid", 1},
          {NULL, 0})},
    {"logs", ol__cmd_logs,
     "logs NAME [-f] [--lines N] [--interval MS] [--duration MS]",
     "show an agent's own log lines, from whichever node hosts it",
     "  -f, --follow      keep printing new lines (Ctrl-C to stop); notes\n"
     "                    when the agent moves to another node or lines\n"
     "                    were dropped before they were read\n"
     "  -n, --lines N     start with the last N lines (default 50)\n"
     "  --interval MS     how often to ask when following (default 500)\n"
     "  --duration MS     stop following after MS milliseconds\n"
     "  Each node keeps the last [node] agent_log_lines lines (default\n"
     "  200, at most 64 KiB) of each agent it hosts; every line is also in\n"
     "  the daemon log.  With --json: the lines as JSON (one object per\n"
     "  line with --follow).\n",
     OPTS({"--follow", 0}, {"-f", 0}, {"--lines", 1}, {"-n", 1},
          {"--interval", 1}, {"--duration", 1}, {NULL, 0})},
    {"top", ol__cmd_top, "top [--interval MS] [--count N] [--plain]",
     "a live view of the node, its cluster and its agents",
     "  --interval MS   redraw every MS milliseconds (default 1000)\n"
     "  --count N       stop after N frames\n"
     "  --plain         no escape codes: print frames one after another\n"
     "                  (the default when stdout is not a terminal)\n"
     "  Rates come from the difference between two frames: CKPT/S for\n"
     "  every agent, STEPS/S, COMMIT (its last commit latency) and QUEUED\n"
     "  for the agents hosted on the node asked.  Press q to quit.\n",
     OPTS({"--interval", 1}, {"--count", 1}, {"--plain", 0}, {NULL, 0})},
    {"stop", ol__cmd_stop,
     "stop NAME [NAME...] [--prefix P] [--all] [--request-id ID]",
     "stop an agent (or many) after a final checkpoint",
     "  --request-id ID   name this request (1-128 printable characters):\n"
     "                    run again with the same ID, on any node, it is\n"
     "                    applied once and answers as the first time\n"
     "  --prefix P        every agent whose name starts with P (an empty\n"
     "                    P only with --all)\n"
     "  --all             every agent\n"
     "  With several names, --prefix or --all it is one bulk request: a\n"
     "  line per agent (after its final checkpoint) and a summary.\n",
     OPTS({"--request-id", 1}, {"--prefix", 1}, {"--all", 0}, {NULL, 0})},
    {"start", ol__cmd_start,
     "start NAME [NAME...] [--prefix P] [--all] [--request-id ID]",
     "start a stopped or quarantined agent (or many) again (new epoch)",
     "  --request-id ID   name this request (1-128 printable characters):\n"
     "                    run again with the same ID, on any node, it is\n"
     "                    applied once and answers as the first time\n"
     "  --prefix P        every agent whose name starts with P (an empty\n"
     "                    P only with --all)\n"
     "  --all             every agent\n"
     "  The agent runs the plugin file as it is now: a build installed\n"
     "  since it was quarantined is loaded.  Its crash count starts over.\n"
     "  With several names, --prefix or --all it is one bulk request, as\n"
     "  for stop.\n",
     OPTS({"--request-id", 1}, {"--prefix", 1}, {"--all", 0}, {NULL, 0})},
    {"restart", ol__cmd_restart, "restart NAME",
     "stop an agent (final checkpoint) and start it again",
     "  The agent is opened again under a new epoch, with its current\n"
     "  config and the plugin build installed now, and resumes from its\n"
     "  final checkpoint.\n", NULL},
    {"rm", ol__cmd_rm, "rm NAME [--request-id ID]",
     "remove an agent for good: final stop, then a tombstone",
     "  --request-id ID   name this request (1-128 printable characters):\n"
     "                    run again with the same ID, on any node, it is\n"
     "                    applied once and answers as the first time\n"
     "  A running agent is stopped first (its final checkpoint commits).\n"
     "  Its checkpoints stay, so history, export and verify still work;\n"
     "  its mailbox is dropped; 'agents' lists it only with --all.  The\n"
     "  name cannot be used again, and a config file that still declares\n"
     "  it does not bring it back (the node logs that it skips it).\n",
     OPTS({"--request-id", 1}, {NULL, 0})},
    {"config", ol__cmd_config, "config NAME JSON [--request-id ID]",
     "replace an agent's config; the agent sees it as an event",
     "  --request-id ID   name this request (1-128 printable characters):\n"
     "                    run again with the same ID, on any node, it is\n"
     "                    applied once and answers as the first time\n"
     "  The new config (a JSON object) is committed and delivered to the\n"
     "  agent once, as an OL_EVENT_CONFIG event, in order with its\n"
     "  messages; open() sees it from then on (after a restart or a\n"
     "  failover too).\n",
     OPTS({"--request-id", 1}, {NULL, 0})},
    {"send", ol__cmd_send, "send NAME JSON [--request-id ID]",
     "send a message (any JSON value) to an agent",
     "  --request-id ID   name this request (1-128 printable characters):\n"
     "                    run again with the same ID, on any node, it is\n"
     "                    applied once and answers as the first time\n"
     "  Use '--' before a message that starts with '-', e.g.\n"
     "  outlast send ticker -- -1\n",
     OPTS({"--request-id", 1}, {NULL, 0})},
    {"upgrade", ol__cmd_upgrade, "upgrade KIND [FILE]",
     "roll this node's agents of KIND onto new plugin code",
     "  FILE   the new build (default: KIND.so in the plugin directories)\n"
     "  The build is loaded first and refused if it does not load (another\n"
     "  ABI, no entry, another kind); a FILE is installed as\n"
     "  <data-dir>/plugins/KIND.so so a restart runs it too.  Each agent\n"
     "  moves to it at its next checkpoint, which records the new code's\n"
     "  hash.  In a cluster, run it on every node in turn: once asked for,\n"
     "  the build is the only one agents of KIND are placed with.\n", NULL},
    {"verify", ol__cmd_verify,
     "verify [--db FILE] [--agent NAME] [--trust PUBKEYHEX]... | "
     "verify --cluster FILE FILE...",
     "check every stored checkpoint offline: hash, seal signature, chain",
     "  --db FILE         the database or export bundle to check\n"
     "                    (default: <data-dir>/outlast.db)\n"
     "  --agent NAME      check only this agent\n"
     "  --trust PUBKEY    also accept this signer (64 hex digits);\n"
     "                    may be repeated\n"
     "  --cluster FILE... compare the databases of a cluster's nodes: each\n"
     "                    is checked, then no (agent, seq) may differ\n"
     "                    between nodes and no (agent, epoch) may have two\n"
     "                    signers; divergence evidence is reported\n"
     "  Each problem is printed as \"agent 'NAME' seq N: problem\".\n"
     "  Exit status 1 if any record is bad.\n",
     OPTS({"--agent", 1}, {"--trust", 1}, {"--cluster", 0}, {NULL, 0})},
    {"export", ol__cmd_export, "export NAME|--all --out FILE | "
                               "export NAME|--all --json",
     "write an agent's history to a verifiable SQLite bundle, or as JSON",
     "  --out FILE   create FILE (must not exist) holding the checkpoints,\n"
     "               their seals, the agents row(s) and the nodes table;\n"
     "               'outlast verify --db FILE' checks it\n"
     "  --json       without --out: print the history oldest first with\n"
     "               every state, outbox message and timer decoded\n"
     "  --all        every agent instead of NAME\n"
     "  Reads --db FILE or <data-dir>/outlast.db.\n",
     OPTS({"--out", 1}, {"--all", 0}, {NULL, 0})},
    {"keygen", ol__cmd_keygen, "keygen [--out FILE] [--force]",
     "create a node key file (mode 0600) and print its public key",
     "  --out FILE   where to write (default: <data-dir>/node.key)\n"
     "  --force      replace an existing file (its key is lost)\n",
     OPTS({"--out", 1}, {"--force", 0}, {NULL, 0})},
    {"recover", ol__cmd_recover,
     "recover --from FILE | recover --new-history",
     "give a stopped single node that refuses to start a new database",
     "  A node refuses to start when its database is missing, empty, not\n"
     "  outlast's, replaced, or behind its node record (node.state).  With\n"
     "  the node stopped:\n"
     "  --from FILE      every agent continues from its newest checkpoint\n"
     "                   in FILE (an export bundle, or a copy of a database,\n"
     "                   the refused one included); FILE must verify\n"
     "  --new-history    every agent starts over from seq 1\n"
     "  Either way agents run under a new epoch, above every epoch the node\n"
     "  record says was used, and their first checkpoint under it is flagged\n"
     "  (recovered, new-history).  The old database is kept as\n"
     "  outlast.db.replaced-TIME.  Works on --data-dir DIR.\n"
     "  --epoch-floor N  when node.state is lost: N is above every epoch the\n"
     "                   node's agents have had\n"
     "  --node-id N      when node.state is lost: this node's id\n",
     OPTS({"--from", 1}, {"--new-history", 0}, {"--epoch-floor", 1},
          {"--node-id", 1}, {NULL, 0})},
    {"cluster", ol__cmd_cluster,
     "cluster status | init --config FILE [--all] | add ID ADDRESS PUBKEY "
     "[--labels k=v,...] | remove ID | transfer [ID] | promote ID | "
     "demote ID",
     "show or change the cluster roster, its roles and its leader",
     "  status                     the node's view of the cluster: nodes,\n"
     "                             leader, term, log indexes, health\n"
     "  init --config FILE         before a node's first start, write the\n"
     "                             first raft configuration into its data\n"
     "                             dir: this node alone is a voter and, once\n"
     "                             leader, adds the config's peers\n"
     "    --all                    make every listed peer a voter at once\n"
     "                             (run it with the same roster everywhere)\n"
     "  add ID ADDRESS PUBKEY      add node ID at host:port with its public\n"
     "                             key (from 'outlast keygen')\n"
     "    --labels k=v,...         placement labels for the node\n"
     "  remove ID                  remove node ID from the roster\n"
     "  transfer [ID]              on the leader: hand leadership to voter\n"
     "                             ID (none: the most up-to-date voter);\n"
     "                             answers once it leads\n"
     "  promote ID                 make node ID a voter (from standby or\n"
     "                             witness)\n"
     "  demote ID                  make node ID a standby: a non-voting\n"
     "                             replica; its agents move elsewhere\n",
     OPTS({"--labels", 1}, {"--config", 1}, {"--all", 0}, {NULL, 0})},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

static const char globals[] =
    "Global options (anywhere on the line):\n"
    "  --data-dir DIR   the node's data directory (default: $OUTLAST_DATA,\n"
    "                   else ./outlast-data)\n"
    "  --socket PATH    control socket (default: <data-dir>/control.sock)\n"
    "  --db FILE        read a database file directly instead of asking\n"
    "                   the node (agents, show, history, effects, verify,\n"
    "                   export)\n"
    "  --json           print the result as JSON\n"
    "  --timeout MS     how long to wait for the node (default 15000)\n"
    "  --help           help (also: outlast help CMD, outlast CMD --help)\n"
    "  --version        print the version\n"
    "\n"
    "Exit status: 0 ok, 1 the operation failed, 2 usage error,\n"
    "3 the node cannot be reached (not running, busy, or no answer in time).\n";

const struct ol__cli_cmd *ol__cli_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (const struct ol__cli_cmd *c = cmds; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

const struct ol__cli_cmd *ol__cli_cmd_at(size_t i)
{
    return i < sizeof cmds / sizeof cmds[0] - 1 ? &cmds[i] : NULL;
}

void ol__cli_usage(FILE *f)
{
    fprintf(f, "usage: outlast [options] COMMAND [args]\n\nCommands:\n");
    for (const struct ol__cli_cmd *c = cmds; c->name; c++)
        fprintf(f, "  %-9s %s\n", c->name, c->summary);
    fprintf(f, "  %-9s %s\n\n%s", "help", "help for one command", globals);
}

int ol__cli_help_cmd(const struct ol__cli_cmd *cmd, FILE *f)
{
    fprintf(f, "usage: outlast %s\n\n%s.\n", cmd->synopsis, cmd->summary);
    if (cmd->details)
        fprintf(f, "\n%s", cmd->details);
    fprintf(f, "\n%s", globals);
    return 0;
}
