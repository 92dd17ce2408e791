#!/usr/bin/env bash
# Runs a command that must fail cleanly: exit status 2 (not an abort, 134,
# or a crash) and a message on stderr matching a pattern.
#   expect_error.sh [--setup 'SHELL COMMANDS'] PATTERN COMMAND [ARGS...]
# Runs in an emptied scratch folder ($EXPECT_ERROR_DIR or a temporary one),
# after the setup commands, so that relative paths stay inside it.
set -u
setup=
if [ "$1" = --setup ]; then
  setup=$2
  shift 2
fi
pattern=$1
shift
dir=${EXPECT_ERROR_DIR:-$(mktemp -d)}
rm -rf "$dir" && mkdir -p "$dir"
cd "$dir" || exit 1
eval "$setup"
stderr=$("$@" 2>&1 >/dev/null)
status=$?
if [ "$status" -ne 2 ]; then
  echo "expected exit status 2, got $status; output:" >&2
  echo "$stderr" >&2
  exit 1
fi
if ! grep -qE -- "$pattern" <<<"$stderr"; then
  echo "exit status 2, but the message does not match '$pattern':" >&2
  echo "$stderr" >&2
  exit 1
fi
echo "ok: $stderr"
