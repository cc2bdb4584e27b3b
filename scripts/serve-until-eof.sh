#!/bin/sh
# Runs a test server (the arguments) until this script's stdin closes, then stops it, so that
# a server started by a test process never outlives that process (the test holds the pipe).
"$@" &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0
