#!/usr/bin/env bash
# tiny on a GPU machine that has no cargo: the CUDA device tests, then tiny's training-step timings beside
# PyTorch's for the very same configurations, then one epoch end to end. `cargo xtask gpu-bundle` writes this
# file (from xtask/src/gpu_bundle/run.sh) into .device-bin/ with the binaries; run it from anywhere:
#
#     bash .device-bin/run.sh
#
# Every step runs under its own timeout, and no step runs past the whole run's budget. $OUT receives three
# files, as the device tool brings back at most eight: summary.json (every step's name, command, status, exit
# status, seconds and figures, the JSON lines it printed), logs.txt (every step's full output, one section per
# step) and summary.txt (the human summary that also ends the output). summary.json is rewritten after every
# change, and logs.txt grows after every step, so that both hold what was done however the run ends. The exit
# status is 0 only when every step passed or was skipped for want of an optional tool (nvidia-smi, PyTorch,
# sha256sum); a failure, a timeout, or a step left out for lack of time makes it 1.
#
# Environment, all optional:
#   OUT                where the three files go (default: out/ beside this script)
#   TINY_RUN_BUDGET    seconds for the whole run (default 480)
#   TINY_RUN_TIMEOUT   when set, every step's timeout in seconds (to try the script quickly)
#   TINY_TEST_JOBS     test binaries run at once (default 4); TINY_TEST_THREADS, --test-threads of each (default 4)
#   TINY_BENCH_CONFIGS the benchmark table, rows as in BENCH_CONFIGS below
#   TINY_RUN_PYTHON    the Python interpreter (default python3)
set -uo pipefail

bin=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || exit 2
root=$(cd "$bin/.." && pwd) || exit 2
cd "$root" || exit 2
rel=${bin#"$root"/}
OUT=${OUT:-$bin/out}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd) || exit 2
rm -f "$OUT/summary.json" "$OUT/summary.txt" "$OUT/logs.txt"
# Each step's log and record live here while the run lasts (one file each, which $OUT could not bring back).
work=$(mktemp -d "${TMPDIR:-/tmp}/tiny-run.XXXXXX") || exit 2
mkdir -p "$work/logs" "$work/steps" || exit 2

budget=${TINY_RUN_BUDGET:-480}
t0=$(date +%s)
# Steps end by this time; the rest of the budget is for a timed-out step's grace before its kill, and the summary.
reserve=$((budget > 60 ? 15 : 0))
deadline=$((t0 + budget - reserve))
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
PY=${TINY_RUN_PYTHON:-python3}
have_py=0
command -v "$PY" >/dev/null 2>&1 && have_py=1
test_jobs=${TINY_TEST_JOBS:-4}
test_threads=${TINY_TEST_THREADS:-4}

# One row per configuration: label, model, batch size, image side, timed steps, warm-up steps, tiny's extra
# bench_step flags (comma-separated, - for none), and PyTorch's tf32 argument of bench_gpu.py's bench()
# (- where PyTorch has no counterpart). Both sides run each row with the same numbers.
BENCH_CONFIGS=${TINY_BENCH_CONFIGS:-'
simple_cnn-bs128-64px-fp32   simple_cnn 128 64  50 10 -      False
simple_cnn-bs128-64px-tf32   simple_cnn 128 64  50 10 --tf32 True
resnet18-bs128-128px-fp32    resnet18   128 128 30 10 -      False
resnet18-bs128-128px-tf32    resnet18   128 128 30 10 --tf32 True
simple_cnn-bs128-64px-fp32-graph  simple_cnn 128 64  50 10 --cuda-graph        -
simple_cnn-bs128-64px-tf32-graph  simple_cnn 128 64  50 10 --cuda-graph,--tf32 -
resnet18-bs128-128px-fp32-graph   resnet18   128 128 30 10 --cuda-graph        -
resnet18-bs128-128px-tf32-graph   resnet18   128 128 30 10 --cuda-graph,--tf32 -
'}

# ---------------------------------------------------------------------------------------------- helpers

now() { if [ -n "${EPOCHREALTIME:-}" ]; then printf '%s' "${EPOCHREALTIME/,/.}"; else date +%s; fi; }

# A JSON string holding $1 (control characters other than tab, CR and newline are dropped).
json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  s=${s//$'\n'/\\n}
  if [[ $s == *[[:cntrl:]]* ]]; then s=$(printf '%s' "$s" | LC_ALL=C tr -d '\000-\037'); fi
  printf '"%s"' "$s"
}

# $1 as a JSON string, or null when it is empty.
json_or_null() { if [ -n "$1" ]; then json_str "$1"; else printf 'null'; fi; }

# The lines of log $1 that are JSON objects, as a JSON array: parsed objects when Python can read them (lines
# it cannot parse, or that hold NaN, stay strings), else every such line as a string.
figures_json() {
  local log=$1 line first=1
  if [ "$have_py" = 1 ]; then
    "$PY" - "$log" 2>/dev/null <<'PY' && return 0
import json, sys
out = []
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        s = line.strip()
        if not (s.startswith("{") and s.endswith("}")):
            continue
        try:
            obj = json.loads(s)
            json.dumps(obj, allow_nan=False)
            out.append(obj)
        except ValueError:
            out.append(s)
print(json.dumps(out))
PY
  fi
  printf '['
  while IFS= read -r line; do
    [ "$first" = 1 ] || printf ','
    first=0
    json_str "$line"
  done < <(grep -a -E '^[[:space:]]*\{.*\}[[:space:]]*$' "$log" 2>/dev/null | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
  printf ']'
}

# The value of "key" in the JSON line $2 (a number or a bare word), or nothing.
jget() { printf '%s' "$2" | sed -n "s/.*\"$1\": *\"\{0,1\}\([^,\"}]*\).*/\1/p" | head -n 1; }

# The last JSON line of log $1.
last_json() { grep -a -E '^[[:space:]]*\{.*\}[[:space:]]*$' "$1" 2>/dev/null | tail -n 1; }

# The Rust test harness's "test result:" lines of log $1, summed into a JSON object.
test_counts() {
  local log=$1 line suites=0 passed=0 failed=0 ignored=0 skips
  local re_p='([0-9]+) passed' re_f='([0-9]+) failed' re_i='([0-9]+) ignored'
  while IFS= read -r line; do
    suites=$((suites + 1))
    if [[ $line =~ $re_p ]]; then passed=$((passed + BASH_REMATCH[1])); fi
    if [[ $line =~ $re_f ]]; then failed=$((failed + BASH_REMATCH[1])); fi
    if [[ $line =~ $re_i ]]; then ignored=$((ignored + BASH_REMATCH[1])); fi
  done < <(grep -a '^test result:' "$log" 2>/dev/null)
  skips=$(grep -a -c 'skipped, no usable CUDA GPU' "$log" 2>/dev/null)
  printf '{"suites":%d,"passed":%d,"failed":%d,"ignored":%d,"cuda_skips":%d}' \
    "$suites" "$passed" "$failed" "$ignored" "${skips:-0}"
}

# The log of step $1.
log_of() { printf '%s/logs/%s.log' "$work" "$1"; }

# Writes the record of step $1 (a number that orders the steps): name, group, status, exit, timed_out, seconds,
# timeout_s, command, log (whether it has one: 1 or empty), reason, figures (JSON), extra (JSON members, or
# empty), note (for the human summary).
record() {
  local f="$work/steps/$1" log=null
  [ -z "${10}" ] || log='"logs.txt"'
  {
    printf '{"step":%d,"name":%s,"group":%s,"status":%s,' "$((10#$1))" "$(json_str "$2")" "$(json_str "$3")" "$(json_str "$4")"
    printf '"exit":%s,"timed_out":%s,"seconds":%s,"timeout_s":%s,' "${5:-null}" "$6" "${7:-null}" "${8:-null}"
    printf '"command":%s,"log":%s,"reason":%s,' "$(json_or_null "$9")" "$log" "$(json_or_null "${11}")"
    printf '"figures":%s%s}\n' "${12:-[]}" "${13:+,${13}}"
  } >"$f.json.tmp$BASHPID" && mv -f "$f.json.tmp$BASHPID" "$f.json"
  printf '%s\t%s\t%s\t%s\n' "$4" "${7:--}" "$2" "${14:-${11}}" >"$f.txt.tmp$BASHPID" && mv -f "$f.txt.tmp$BASHPID" "$f.txt"
}

# Logs longer than this many bytes keep only their head and tail in logs.txt, which must stay under 16 MiB.
log_cap=$((2 * 1024 * 1024))

# Appends the log of step $1 to $OUT/logs.txt as one section.
append_log() {
  local log size
  log=$(log_of "$1")
  [ -f "$log" ] || return 0
  size=$(wc -c <"$log")
  {
    printf '\n===== step %s: %s =====\n' "$1" "$(cut -f3 "$work/steps/$1.txt" 2>/dev/null)"
    if [ "$size" -le "$log_cap" ]; then
      cat "$log"
    else
      head -c $((log_cap / 4)) "$log"
      printf '\n[... %d bytes left out ...]\n' $((size - log_cap))
      tail -c $((log_cap * 3 / 4)) "$log"
    fi
  } >>"$OUT/logs.txt"
}

next_id=0
# Sets `id` to the next step number.
new_id() {
  next_id=$((next_id + 1))
  printf -v id '%03d' "$next_id"
}

# The statuses of the steps so far, one per line.
statuses() { cat "$work"/steps/*.txt 2>/dev/null | cut -f1; }

# The names of the steps that failed, timed out, did not run or are still running, one per line.
bad_steps() { cat "$work"/steps/*.txt 2>/dev/null | awk -F'\t' '$1 != "passed" && $1 != "skipped" {print $3}'; }

bundle_json=null
if [ -f "$bin/bundle.json" ]; then
  bundle_json=$(tr -d '\n' <"$bin/bundle.json")
  if [ "$have_py" = 1 ] && ! "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$bin/bundle.json" 2>/dev/null; then
    bundle_json=$(json_str "$bundle_json")
  fi
fi

# Rewrites summary.json from the step records; $1 is true once the run is over, $2 the exit status then.
write_summary() {
  local over=$1 code=${2:-null} tmp="$OUT/.summary.json.tmp$BASHPID" first=1 f verdict bad
  bad=$(bad_steps)
  if [ "$over" != true ] || [ "${complete:-0}" != 1 ]; then verdict=incomplete; elif [ -n "$bad" ]; then verdict=failed; else verdict=passed; fi
  [ "$over" = true ] || code=null
  {
    printf '{"format":"tiny-gpu-run/1","verdict":"%s","complete":%s,"exit_status":%s,' \
      "$verdict" "$([ "$over" = true ] && [ "${complete:-0}" = 1 ] && echo true || echo false)" "$code"
    printf '"not_passed":['
    local name n=0
    while IFS= read -r name; do
      [ -n "$name" ] || continue
      [ "$n" = 0 ] || printf ','
      n=1
      json_str "$name"
    done <<<"$bad"
    printf '],"started":"%s","updated":"%s","seconds":%s,"budget_s":%s,' \
      "$started" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(($(date +%s) - t0))" "$budget"
    printf '"host":%s,"root":%s,"out":%s,"python":%s,"bundle":%s,"steps":[' \
      "$(json_str "$(hostname 2>/dev/null || echo unknown)")" "$(json_str "$root")" "$(json_str "$OUT")" \
      "$([ "$have_py" = 1 ] && json_str "$(command -v "$PY")" || echo null)" "$bundle_json"
    for f in "$work"/steps/*.json; do
      [ -e "$f" ] || continue
      [ "$first" = 1 ] || printf ','
      first=0
      printf '\n'
      tr -d '\n' <"$f"
    done
    printf '\n]}\n'
  } >"$tmp" && mv -f "$tmp" "$OUT/summary.json"
}

deadline_left() { echo $((deadline - $(date +%s))); }

# Runs step `name` (group, timeout in seconds, a bash command line, optional, extra, hint) under `timeout` with
# its output in its log, and records it. With optional=1 a non-zero exit is recorded as skipped (an unavailable
# tool), with the last line of its output as the reason. `extra` holds more JSON members for the record, and
# `hint` says what a failure means.
run_step() {
  local id=$1 name=$2 group=$3 limit=$4 cmd=$5 optional=${6:-0} extra=${7:-} hint=${8:-}
  local log left t_start secs rc status timed_out=false reason="" figures note="" counts="" child
  log=$(log_of "$id")
  [ -n "${TINY_RUN_TIMEOUT:-}" ] && limit=$TINY_RUN_TIMEOUT
  left=$(deadline_left)
  if [ "$left" -lt 2 ]; then
    reason="not run: the run's budget of ${budget}s was spent"
    record "$id" "$name" "$group" not_run "" false "" "$limit" "$cmd" "" "$reason" '[]' "$extra"
    echo "!! $name: $reason"
    [ "$in_bg" = 1 ] || append_log "$id"
    write_summary false
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  record "$id" "$name" "$group" running "" false "" "$limit" "$cmd" 1 "" '[]' "$extra"
  write_summary false
  printf '# step: %s\n# command: %s\n# timeout: %ss\n' "$name" "$cmd" "$limit" >"$log"
  echo ">> $name (timeout ${limit}s): $cmd"
  t_start=$(now)
  timeout -k 10 "$limit" bash -c "$cmd" >>"$log" 2>&1 </dev/null &
  child=$!
  echo "$child" >"$work/steps/$id.pid"
  wait "$child"
  rc=$?
  rm -f "$work/steps/$id.pid"
  secs=$(awk -v a="$t_start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s >= l) }'; }; then
    status=timeout timed_out=true reason="timed out after ${limit}s"
  elif [ "$rc" = 0 ]; then
    status=passed
  elif [ "$optional" = 1 ]; then
    status=skipped reason="unavailable: $(grep -a -v '^#' "$log" | grep -a . | tail -n 1)"
  else
    status=failed reason="${hint:+$hint: }exit status $rc"
  fi
  figures=$(figures_json "$log")
  if [ "$group" = test ]; then
    counts=$(test_counts "$log")
    local p f i s
    p=$(jget passed "$counts") f=$(jget failed "$counts") i=$(jget ignored "$counts") s=$(jget cuda_skips "$counts")
    note="$p passed, $f failed, $i ignored"
    if [ "$status" = passed ] && [ "${s:-0}" != 0 ]; then
      status=failed reason="$s CUDA tests skipped although TINY_REQUIRE_CUDA=1"
    fi
    extra="${extra:+$extra,}\"tests\":$counts"
  fi
  local last
  last=$(last_json "$log")
  if [ -n "$last" ]; then
    local ms ips acc gpu
    ms=$(jget ms_per_step "$last") ips=$(jget img_per_s "$last") acc=$(jget valid_acc "$last") gpu=$(jget gpu "$last")
    if [ -n "$gpu" ]; then
      note=$gpu
      [ -z "$(jget torch "$last")" ] || note="$note, torch $(jget torch "$last")"
      [ -z "$(jget driver "$last")" ] || note="$note, driver $(jget driver "$last")"
    fi
    [ -n "$ms" ] && note="$ms ms/step, $ips img/s"
    [ -n "$acc" ] && note="valid_acc $acc, $(jget train_img_per_s "$last") train img/s, $(jget seconds "$last") s"
  fi
  [ -n "$reason" ] && note="$reason${note:+; $note}"
  if [ "$status" = failed ] || [ "$status" = timeout ]; then
    extra="${extra:+$extra,}\"log_tail\":$(json_str "$(grep -a -v '^# ' "$log" | tail -n 25 | cut -c1-400)")"
  fi
  record "$id" "$name" "$group" "$status" "$rc" "$timed_out" "$secs" "$limit" "$cmd" 1 "$reason" "$figures" "$extra" "$note"
  write_summary false
  [ "$in_bg" = 1 ] || append_log "$id"
  echo "<< $name: $status in ${secs}s${note:+ ($note)}"
  if [ "$status" = failed ] || [ "$status" = timeout ]; then
    grep -a -v '^# ' "$log" | tail -n 12 | cut -c1-300 | sed 's/^/   | /'
  fi
}

# Records step `name` as skipped for `reason` without running anything.
skip_step() {
  record "$1" "$2" "$3" skipped "" false "" "" "${5:-}" "" "$4" '[]' "${6:-}"
  write_summary false
  append_log "$1"
  echo "-- $2: skipped, $4"
}

# Records step `name` as failed for `reason` without running anything.
fail_step() {
  record "$1" "$2" "$3" failed "" false "" "" "" "" "$4" '[]' "${5:-}"
  write_summary false
  append_log "$1"
  echo "!! $2: failed, $4"
}

complete=0
interrupted=0
in_bg=0
bg_pids=()

# The end of every run, however it ends: stops what still runs, writes the summary and prints it.
finish() {
  local code
  trap - EXIT INT TERM
  if [ "$complete" != 1 ]; then
    local p f
    local kids
    for p in ${bg_pids[@]+"${bg_pids[@]}"}; do
      # The step's shell first, so that it records nothing more, then the timeout it had started.
      kids=$(pgrep -P "$p" 2>/dev/null)
      kill -TERM "$p" 2>/dev/null
      [ -z "$kids" ] || kill -TERM $kids 2>/dev/null
    done
    for f in "$work"/steps/*.pid; do [ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done
    sleep 1
  fi
  # logs.txt again from the start, in step order, now that every step has stopped.
  rm -f "$OUT/logs.txt"
  for f in "$work"/steps/*.txt; do
    [ -e "$f" ] && append_log "$(basename "$f" .txt)"
  done
  if [ "$complete" = 1 ] && [ -z "$(bad_steps)" ]; then code=0; else code=1; fi
  [ "$interrupted" = 0 ] || code=$interrupted
  write_summary true "$code"
  {
    echo
    echo "== summary: $(statuses | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}') in $(($(date +%s) - t0))s"
    echo "   (every step's output in $OUT/logs.txt, its figures in $OUT/summary.json)"
    cat "$work"/steps/*.txt 2>/dev/null | awk -F'\t' '{ printf "   %-8s %8s  %-42s %s\n", $1, $2, $3, $4 }'
    if [ "${#bench_labels[@]}" -gt 0 ]; then
      echo "== ms per training step, same GPU and configuration (bench_step vs bench_gpu.py's bench):"
      local l
      for l in "${bench_labels[@]}"; do
        awk -v l="$l" -v t="${tiny_ms[$l]:-}" -v p="${torch_ms[$l]:-}" 'BEGIN {
          r = (t != "" && p != "" && p + 0 > 0) ? sprintf("tiny/torch %.2f", t / p) : "";
          printf "   %-30s tiny %9s   torch %9s   %s\n", l, (t == "" ? "-" : t), (p == "" ? "-" : p), r }'
      done
      if [[ "${tiny_ms[*]} ${torch_ms[*]}" == *'*'* ]]; then
        echo "   (* printed by a step that then failed or timed out: see its status above)"
      fi
    fi
    if [ "$complete" != 1 ]; then
      echo "== verdict: INCOMPLETE (interrupted); every step not listed as passed is unverified"
    elif [ "$code" = 0 ]; then
      echo "== verdict: PASSED (no step failed, timed out or was left out)"
    else
      echo "== verdict: FAILED: $(bad_steps | paste -s -d, - | sed 's/,/, /g')"
    fi
  } | tee "$OUT/summary.txt"
  rm -rf "$work"
  exit "$code"
}
declare -a bench_labels=()
declare -A tiny_ms=() torch_ms=()
trap finish EXIT
trap 'interrupted=130; exit 130' INT
trap 'interrupted=143; exit 143' TERM

echo "== tiny GPU run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname 2>/dev/null), budget ${budget}s, output in $OUT"
[ "$bundle_json" = null ] || echo "   bundle: $bundle_json" | cut -c1-400
echo "   $(uname -srm 2>/dev/null); $(ldd --version 2>/dev/null | head -n 1); python: $([ "$have_py" = 1 ] && command -v "$PY" || echo none)"
# A copy that lost the executable bits still runs.
chmod u+x "$bin"/tests/* "$bin/bench_step" "$bin/train" 2>/dev/null
export PYTHONUNBUFFERED=1

# ---------------------------------------------------------------------------------------------- setup

# The binaries must have been built from the sources that are here.
new_id
if [ ! -f "$bin/sources.sha256" ]; then
  skip_step "$id" sources setup "the bundle has no sources.sha256"
elif ! command -v sha256sum >/dev/null 2>&1; then
  skip_step "$id" sources setup "no sha256sum on this machine"
else
  run_step "$id" sources setup 60 "sha256sum --quiet -c $(printf '%q' "$rel/sources.sha256")" 0 "" \
    "the binaries were built from other sources than these (the log names the files)"
fi

new_id
if command -v nvidia-smi >/dev/null 2>&1; then
  smi_json='{ printf "{\"gpu\":\"%s\",\"driver\":\"%s\",\"memory\":\"%s\",\"compute_cap\":\"%s\"}\n", $1, $2, $3, $4 }'
  run_step "$id" nvidia-smi setup 30 "nvidia-smi && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap \
--format=csv,noheader | awk -F', ' $(printf '%q' "$smi_json")"
  grep -a -v '^# ' "$(log_of "$id")" | sed 's/^/   /'
else
  skip_step "$id" nvidia-smi setup "no nvidia-smi on this machine"
fi

# The file names cudarc 0.19 (built for CUDA 13.0) tries for library $1, in its order.
cudarc_names() {
  local l=$1 s
  printf '%s\n' "lib$l.so" "lib${l}64.so" "lib${l}64_13.so" "lib${l}64_130.so" "lib${l}64_130_0.so" \
    "lib${l}64_10.so" "lib${l}64_11.so" "lib${l}64_12.so" "lib${l}64_9.so"
  for s in 13 12 11 10 9 1; do printf '%s\n' "lib$l.so.$s"; done
}

ldcache=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null)

# Where dlopen would find library $1 under one of cudarc's names now (LD_LIBRARY_PATH, then the loader's
# cache, then the default folders): prints the path, or fails.
resolve_lib() {
  local name d p dirs=()
  IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"
  while IFS= read -r name; do
    for d in ${dirs[@]+"${dirs[@]}"}; do
      if [ -n "$d" ] && [ -e "$d/$name" ]; then printf '%s\n' "$d/$name"; return 0; fi
    done
    p=$(printf '%s\n' "$ldcache" | awk -v n="$name" '$1 == n && $2 ~ /64/ { print $NF; exit }')
    if [ -n "$p" ]; then printf '%s\n' "$p"; return 0; fi
    for d in /lib64 /usr/lib64 /lib /usr/lib; do
      if [ -e "$d/$name" ]; then printf '%s\n' "$d/$name"; return 0; fi
    done
  done < <(cudarc_names "$1")
  return 1
}

# The site-packages folders of this machine's Python, one per line.
python_sites() {
  {
    if [ "$have_py" = 1 ]; then
      timeout 20 "$PY" -c 'import site, sys
dirs = list(getattr(site, "getsitepackages", lambda: [])()) + [site.getusersitepackages()]
print("\n".join(dirs + [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]))' 2>/dev/null
    fi
    ls -d /usr/lib/python3*/dist-packages /usr/local/lib/python3*/dist-packages /usr/local/lib/python3*/site-packages \
      /opt/*/.venv/lib/python3*/site-packages /opt/*/lib/python3*/site-packages /opt/conda/lib/python3*/site-packages \
      "${HOME:-/root}"/.local/lib/python3*/site-packages 2>/dev/null
  } | awk 'NF && !seen[$0]++'
}

# Lists the CUDA libraries of this machine, and puts on LD_LIBRARY_PATH the folder of each of libcuda, libnvrtc
# and libcublas that cudarc's names would not find otherwise (pip's wheels ship only libnvrtc.so.13 and
# libcublas.so.13, in site-packages/nvidia/*/lib). Prints a JSON line with where each library is found.
libraries() {
  local pat='^(libcuda|libnvrtc|libnvrtc-builtins|libcublas|libcublasLt|libcudart|libcudnn)\.so' d l f n added=()
  local dirs=() site missing=0 driver_dirs=()
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib; do
    [ -d "$d" ] && driver_dirs+=("$d")
  done
  echo "== in the loader's cache (ldconfig -p)"
  printf '%s\n' "$ldcache" | awk -v pat="$pat" '{ if ($1 ~ pat) print "   " $0 }'
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/*/lib \
    $(ls -d /usr/local/cuda-*/lib64 /usr/local/cuda-*/targets/*/lib 2>/dev/null | sort -r -V); do
    [ -d "$d" ] && dirs+=("$d")
  done
  while IFS= read -r site; do
    for d in "$site"/nvidia/*/lib; do [ -d "$d" ] && dirs+=("$d"); done
  done < <(python_sites)
  echo "== in the driver's, the CUDA toolkits' and the Python packages' folders"
  for d in ${driver_dirs[@]+"${driver_dirs[@]}"} ${dirs[@]+"${dirs[@]}"}; do
    ls -1 "$d" 2>/dev/null | grep -E "$pat" | sed "s|^|   $d/|"
  done
  for l in cuda nvrtc cublas; do
    if f=$(resolve_lib "$l"); then
      echo "lib$l: cudarc's names find $f"
      continue
    fi
    # The folder to add: the first with the name CUDA 13 ships, then the first with any of cudarc's names. The
    # driver's libcuda comes with the machine, never from a toolkit or a wheel (whose stubs would not run).
    local where=(${dirs[@]+"${dirs[@]}"})
    [ "$l" = cuda ] && where=(${driver_dirs[@]+"${driver_dirs[@]}"})
    for n in "lib$l.so.13" $(cudarc_names "$l"); do
      for d in ${where[@]+"${where[@]}"}; do
        if [ -e "$d/$n" ]; then
          export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
          added+=("$d")
          echo "lib$l: cudarc's names miss it; added $d (which has $n) to LD_LIBRARY_PATH"
          break 2
        fi
      done
    done
  done
  local found=""
  for l in cuda nvrtc cublas; do
    if f=$(resolve_lib "$l"); then
      found+="\"lib$l\":$(json_str "$f"),"
    else
      missing=1
      found+="\"lib$l\":null,"
      echo "lib$l: NOT FOUND under any of cudarc's names"
    fi
  done
  printf '{%s"added":[' "$found"
  n=0
  for d in ${added[@]+"${added[@]}"}; do
    [ "$n" = 0 ] || printf ','
    n=1
    json_str "$d"
  done
  printf '],"LD_LIBRARY_PATH":%s}\n' "$(json_str "${LD_LIBRARY_PATH:-}")"
  return "$missing"
}

new_id
lib_log=$(log_of "$id")
lib_t=$(now)
printf '# step: libraries\n# command: libraries (a function of run.sh)\n' >"$lib_log"
libraries >>"$lib_log" 2>&1
lib_rc=$?
lib_secs=$(awk -v a="$lib_t" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
grep -a -v '^# ' "$lib_log" | sed 's/^/   /' | cut -c1-300
if [ "$lib_rc" = 0 ]; then
  record "$id" libraries setup passed 0 false "$lib_secs" "" "libraries (a function of run.sh)" 1 "" "$(figures_json "$lib_log")"
else
  record "$id" libraries setup failed "$lib_rc" false "$lib_secs" "" "libraries (a function of run.sh)" 1 \
    "libcuda, libnvrtc or libcublas not found under cudarc's names" "$(figures_json "$lib_log")"
fi
write_summary false
append_log "$id"
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"

# A device test that cannot open the GPU fails, naming why, instead of passing as a skip.
export TINY_REQUIRE_CUDA=1
# The test binaries were built elsewhere: they find the crates' fixture files here.
export TINY_CRATES_DIR="$root/crates"
export RUST_BACKTRACE=1

# ---------------------------------------------------------------------------------------------- tests

tests=()
test_ids=()
for t in "$bin"/tests/*; do [ -f "$t" ] && tests+=("$t"); done
if [ "${#tests[@]}" = 0 ]; then
  new_id
  fail_step "$id" tests test "the bundle holds no test binaries ($rel/tests is empty)"
fi
for t in ${tests[@]+"${tests[@]}"}; do
  while :; do
    alive=0
    for p in ${bg_pids[@]+"${bg_pids[@]}"}; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    [ "$alive" -lt "$test_jobs" ] && break
    sleep 0.2
  done
  new_id
  in_bg=1 run_step "$id" "test $(basename "$t")" test 150 "$(printf '%q' "$rel/tests/$(basename "$t")") --test-threads=$test_threads" &
  bg_pids+=($!)
  test_ids+=("$id")
done
wait
bg_pids=()
for t in ${test_ids[@]+"${test_ids[@]}"}; do append_log "$t"; done

# ---------------------------------------------------------------------------------------------- benchmarks

# The ms_per_step that step $1 printed, marked with * when the step did not pass (it timed out after printing).
bench_ms() {
  local ms
  ms=$(jget ms_per_step "$(last_json "$(log_of "$1")")")
  [ -z "$ms" ] || [ "$(cut -f1 "$work/steps/$1.txt")" = passed ] || ms="$ms*"
  printf '%s' "$ms"
}

# PyTorch's side: bench_gpu.py's bench() for each configuration, once PyTorch is found to see the GPU.
new_id
if [ "$have_py" != 1 ]; then
  skip_step "$id" "torch check" setup "no $PY on this machine"
elif [ ! -f "$bin/reference/bench_gpu.py" ]; then
  skip_step "$id" "torch check" setup "the bundle has no reference/bench_gpu.py"
else
  check='import json, torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(json.dumps(dict(torch=torch.__version__, cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(0))))'
  run_step "$id" "torch check" setup 90 "$(printf '%q' "$PY") -c $(printf '%q' "$check")" 1
fi
# passed, skipped (with the reason why) or not_run, and then the PyTorch runs are left out in the same way.
torch_status=$(cut -f1 "$work/steps/$id.txt")
torch_reason=$(cut -f4 "$work/steps/$id.txt")

bench_code='import sys
sys.path.insert(0, sys.argv[1])
import torch
torch.backends.cudnn.benchmark = True  # as bench_gpu.py does when it runs its own list
from bench_gpu import bench
m, bs, size, tf32, steps, warmup = sys.argv[2:8]
bench(m, int(bs), int(size), tf32 == "True", steps=int(steps), warmup=int(warmup))'

while read -r label model bs size steps warmup flags tf32 rest; do
  [ -n "$label" ] && [ "${label:0:1}" != "#" ] || continue
  bench_labels+=("$label")
  cfg="\"config\":$(json_str "$label")"
  new_id
  if [ -x "$bin/bench_step" ]; then
    extra_flags=""
    [ "$flags" = - ] || extra_flags=" ${flags//,/ }"
    run_step "$id" "bench tiny $label" bench-tiny 90 \
      "$rel/bench_step --device cuda --model $model --bs $bs --size $size --steps $steps --warmup $warmup$extra_flags" 0 "$cfg"
    tiny_ms[$label]=$(bench_ms "$id")
  else
    fail_step "$id" "bench tiny $label" bench-tiny "$rel/bench_step is missing from the bundle"
  fi
  new_id
  if [ "$tf32" = - ]; then
    skip_step "$id" "bench torch $label" bench-torch "PyTorch has no counterpart of this configuration" "" "$cfg"
  elif [ "$torch_status" = skipped ]; then
    skip_step "$id" "bench torch $label" bench-torch "$torch_reason" "" "$cfg"
  elif [ "$torch_status" != passed ]; then
    fail_step "$id" "bench torch $label" bench-torch "not run: $torch_reason" "$cfg"
  else
    run_step "$id" "bench torch $label" bench-torch 120 \
      "$(printf '%q' "$PY") -c $(printf '%q' "$bench_code") $(printf '%q' "$rel/reference") $model $bs $size $tf32 $steps $warmup" 0 "$cfg"
    torch_ms[$label]=$(bench_ms "$id")
  fi
done <<<"$BENCH_CONFIGS"

# ---------------------------------------------------------------------------------------------- one epoch

# On the synthetic Imagenette-shaped set, which train generates into data/synth-imagenette when no data is here
# (13,394 small JPEGs, seconds on many cores): the step's time includes that.
new_id
if [ -x "$bin/train" ]; then
  run_step "$id" "train" train 240 "$rel/train --device cuda --epochs 1 --workers 14"
else
  fail_step "$id" train train "$rel/train is missing from the bundle"
fi

complete=1
