#!/usr/bin/env python3
"""Check that every #include in the product's sources points down the
layers of ARCHITECTURE.md (or across, within one layer), never up.

The link checks in meson.build catch a call into a higher layer; this
catches what a link cannot see: a struct, a macro or an inline function
reached through a header.  Usage: layers.py SOURCE_ROOT"""
import os
import re
import sys

RANK = {'base': 1, 'record': 2, 'state': 3, 'replication': 4,
        'hosting': 5, 'daemon': 6, 'agenthost': 6, 'cli': 7, 'bin': 8}
HOSTING = {'hostapi', 'ipc', 'mark', 'plugin', 'wpool'}
# What each layer may include besides its own files and lower layers.
ALLOWED = {'hosting': {'hosting'}, 'agenthost': {'hosting', 'agenthost'},
           'daemon': {'hosting', 'daemon'}}


def layer(path):
    parts = path.split('/')
    top = parts[0]
    if top in ('base', 'record', 'state', 'replication', 'cli'):
        return top
    if top == 'runtime':
        if len(parts) > 2:
            return {'agenthost': 'agenthost', 'bin': 'bin'}.get(parts[1])
        stem = os.path.splitext(parts[1])[0]
        return 'hosting' if stem in HOSTING else 'daemon'
    return None


def main():
    root = sys.argv[1]
    bad = []
    seen = 0
    for top in ('base', 'record', 'state', 'replication', 'runtime', 'cli'):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in names:
                if not name.endswith(('.c', '.h')):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                me = layer(path)
                if me is None:
                    continue
                seen += 1
                with open(os.path.join(root, path)) as f:
                    for no, line in enumerate(f, 1):
                        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                        if not m:
                            continue
                        inc = m.group(1)
                        if '/' not in inc:
                            inc = os.path.join(os.path.dirname(path), inc)
                        them = layer(os.path.normpath(inc))
                        if them is None or them == me or \
                           them in ALLOWED.get(me, ()) or \
                           RANK[them] < RANK[me] and them != 'agenthost':
                            continue
                        bad.append(f'{path}:{no}: {me} includes {inc} ({them})')
    for b in bad:
        print(b)
    print(f'{seen} files checked, {len(bad)} includes point up the layers')
    return 1 if bad or seen == 0 else 0


sys.exit(main())
