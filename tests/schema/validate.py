#!/usr/bin/python3
"""Check JSON documents against the schemas in docs/schema.

  validate.py SCHEMA INSTANCE   exit 0 if INSTANCE (a file holding one
                                JSON document) matches SCHEMA, 1 if not
  validate.py --lines SCHEMA INSTANCE
                                every line of INSTANCE is one JSON
                                document matching SCHEMA (at least one)
  validate.py --check-schemas DIR
                                every *.json in DIR is a valid schema

Exit 77 (skip) when python3-jsonschema is not installed.
"""
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    print("validate.py: python3-jsonschema is not installed", file=sys.stderr)
    sys.exit(77)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv):
    if len(argv) == 3 and argv[1] == "--check-schemas":
        bad = 0
        for name in sorted(os.listdir(argv[2])):
            if name.endswith(".json"):
                try:
                    jsonschema.Draft202012Validator.check_schema(
                        load(os.path.join(argv[2], name)))
                except (ValueError, jsonschema.SchemaError) as e:
                    print("%s: %s" % (name, e), file=sys.stderr)
                    bad = 1
        return bad
    lines = len(argv) == 4 and argv[1] == "--lines"
    if lines:
        argv = argv[1:]
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    v = jsonschema.Draft202012Validator(load(argv[1]))
    if not lines:
        try:
            return check(v, argv[1], argv[2], load(argv[2]))
        except ValueError as e:
            print("%s: not JSON: %s" % (argv[2], e), file=sys.stderr)
            return 1
    bad = n = 0
    with open(argv[2], encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            where = "%s:%d" % (argv[2], i)
            try:
                doc = json.loads(line)
            except ValueError as e:
                print("%s: not JSON: %s" % (where, e), file=sys.stderr)
                bad = 1
                continue
            bad |= check(v, argv[1], where, doc)
            n += 1
    if n == 0:
        print("%s: no lines" % argv[2], file=sys.stderr)
        return 1
    return bad


def check(v, schema, where, doc):
    errs = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
    for e in errs:
        print("%s: %s: at /%s: %s" % (where, os.path.basename(schema),
              "/".join(str(p) for p in e.path), e.message), file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
