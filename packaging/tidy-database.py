#!/usr/bin/env python3
"""Writes a compilation database for clang-tidy with one entry per source file.

A target built as one unit (CMake's UNITY_BUILD: the CLI, see CMakeLists.txt) appears in
BUILD/compile_commands.json as its generated unity_*.cxx file, which #includes the real
sources. clang-tidy checks files, so each included source gets the unity file's command
with its own path in the unity file's place. Other entries are copied as they are.

Usage: tidy-database.py BUILD OUTDIR   (writes OUTDIR/compile_commands.json)
"""

import json
import os
import re
import sys

INCLUDE = re.compile(r'^#include "([^"]+)"\s*$')


def expand(entry):
    unity = entry["file"]
    if not re.search(r"/Unity/unity_[^/]*\.cxx$", unity):
        return [entry]
    path = unity if os.path.isabs(unity) else os.path.join(entry["directory"], unity)
    sources = []
    with open(path) as text:
        for line in text:
            match = INCLUDE.match(line)
            if match:
                sources.append(match.group(1))
    if not sources:
        sys.exit(f"tidy-database: {path} includes no source")
    expanded = []
    for source in sources:
        one = dict(entry)
        one["file"] = source
        key = "command" if "command" in entry else "arguments"
        if key == "command":
            one["command"] = entry["command"].replace(unity, source)
        else:
            one["arguments"] = [source if a == unity else a for a in entry["arguments"]]
        expanded.append(one)
    return expanded


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: tidy-database.py BUILD OUTDIR")
    build, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(build, "compile_commands.json")) as db:
        entries = json.load(db)
    result = [one for entry in entries for one in expand(entry)]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "compile_commands.json"), "w") as db:
        json.dump(result, db, indent=1)
    print(f"tidy-database: {len(entries)} entries, {len(result)} after expanding unity files")


if __name__ == "__main__":
    main()
