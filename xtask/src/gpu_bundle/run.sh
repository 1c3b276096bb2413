#!/usr/bin/env bash
# tiny on a GPU machine that has no cargo: `bash .device-bin/run.sh [--only NAMES] [--budget SECONDS] [--list]`,
# from anywhere. It starts gpu-run, the runner that `cargo xtask gpu-bundle` built beside this file (from
# crates/tiny-gpu-run, whose main.rs says what it runs, in which order, under which caps, and what it writes
# under $OUT); `bash .device-bin/run.sh --help` lists its flags.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || exit 2
# A copy that lost the executable bits still runs.
chmod u+x "$here/gpu-run" 2>/dev/null
exec "$here/gpu-run" "$@"
