#!/usr/bin/env bash
# Motus chunk latency on one GPU (issue 18), written as ONE JSON file: OUTDIR/gpu_bench.json.
#
#   scripts/gpu_bench.sh OUTDIR [--preset paper] [--device cuda] [--backends LIST] [--modes vla,joint]
#                               [--repeats 20] [--warmup 2] [--budget-s 330] [--profile] [-- BENCH OPTIONS]
#   scripts/gpu_bench.sh OUTDIR --preset tiny --device cpu      # the CPU rehearsal (what the test runs)
#
# Runs `motus-ros bench policy` (motus_ros/bench/policy.py) with random weights, batch 1, 3 cameras:
# VLA and Joint chunk latency (median, p90) per backend, cheap ones first (torch, torch_compile with CUDA
# graphs, onnxruntime, tensorrt), the recompute-every-step baseline, peak memory per mode, time to first
# chunk per backend, versions and the GPU. Also writes OUTDIR/gpu_bench.log and, with --profile,
# OUTDIR/profile_vla.txt (torch profiler table of one VLA chunk, with the host syncs counted).
#
# Made for a bare GPU machine with python3, torch, triton, onnx and onnxruntime but no network: the
# wheels in wheels/gpu (`make gpu-wheels`: diffusers, transformers, ... at the pins of requirements.txt)
# are installed into a scratch folder where the machine lacks that version; the project itself is
# imported from this checkout (PYTHONPATH), and nothing imports ROS. Everything else it writes (ONNX
# export, compiler caches) goes to a scratch folder under /tmp, removed at the end.
#
# Time: --budget-s (default 330 s) bounds the whole script, installs included. The bench skips what no
# longer fits and lists it under "skipped"; a hard limit of budget + 45 s kills it if a step overruns
# (the JSON then holds what was measured, "finished": false). Environment: PYTHON (default python3,
# else this checkout's .venv), GPU_BENCH_WHEELS (default wheels/gpu), GPU_BENCH_WORK (scratch folder,
# kept when given).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARD_LIMIT_GRACE_S=45      # beyond --budget-s before the bench is killed outright
BENCH_RESERVE_S=5          # kept back from the bench's budget for the summary

usage() { echo "usage:"; sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^#//'; }

if [ $# -lt 1 ] || [ "${1:0:1}" = "-" ]; then
    usage >&2
    exit 2
fi
OUTDIR=$1
shift
PRESET=paper DEVICE=cuda BACKENDS=torch,torch_compile,onnxruntime,tensorrt MODES=vla,joint
REPEATS=20 WARMUP=2 BUDGET_S=330 PROFILE=0 PRECISION="" THREADS=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --preset) PRESET=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --backends|--backend) BACKENDS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --budget-s) BUDGET_S=$2; shift 2 ;;
        --precision) PRECISION=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --profile) PROFILE=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_bench.sh: unknown option '$1' (bench options go after --)" >&2; usage >&2; exit 2 ;;
    esac
done
case "$BUDGET_S" in ''|*[!0-9]*) echo "gpu_bench.sh: --budget-s '$BUDGET_S', expected whole seconds" >&2; exit 2 ;; esac
if [[ $DEVICE == cuda* ]]; then
    PRECISION=${PRECISION:-bf16}; THREADS=${THREADS:-0}
else
    PRECISION=${PRECISION:-auto}; THREADS=${THREADS:-1}   # CPU rehearsal on shared cores: one thread
fi

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
JSON=$OUTDIR/gpu_bench.json
LOG=$OUTDIR/gpu_bench.log
rm -f "$JSON" "$LOG" "$OUTDIR/profile_vla.txt"   # a failed run must not leave an older run's numbers behind
COMMAND="scripts/gpu_bench.sh $OUTDIR --preset $PRESET --device $DEVICE --backends $BACKENDS --modes $MODES \
--repeats $REPEATS --warmup $WARMUP --budget-s $BUDGET_S --precision $PRECISION --threads $THREADS\
$([ "$PROFILE" = 1 ] && echo ' --profile')${EXTRA[*]:+ -- ${EXTRA[*]}}"

if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if ! python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2>/dev/null \
        && [ -x "$REPO/.venv/bin/python" ]; then
        PYTHON=$REPO/.venv/bin/python
    fi
fi
WHEELS=${GPU_BENCH_WHEELS:-$REPO/wheels/gpu}
if [ -n "${GPU_BENCH_WORK:-}" ]; then
    WORK=$GPU_BENCH_WORK; mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/motus_gpu_bench.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi

say() { printf '[gpu_bench %3ds] %s\n' "$SECONDS" "$*"; }

# Leaves a JSON that says what went wrong when the bench could not even start (or annotates its JSON).
write_error() {
    "$PYTHON" - "$JSON" "$1" "$COMMAND" <<'EOF' 2>/dev/null || printf '{"finished": false, "error": "see gpu_bench.log"}\n' > "$JSON"
import json, os, sys
path, error, command = sys.argv[1:4]
data = json.load(open(path)) if os.path.isfile(path) else {"benchmark": "policy", "command": command}
data.update(finished=False, error=error)
json.dump(data, open(path, "w"), indent=2)
EOF
}

install_wheels() {
    if ! compgen -G "$WHEELS/*.whl" > /dev/null; then
        say "no wheels in $WHEELS: using the installed packages"
        return 0
    fi
    local plan
    # One line per wheel: "install FILE" when this Python lacks that exact version, else "have ...".
    plan=$("$PYTHON" - "$WHEELS" <<'EOF'
import importlib.metadata as md, pathlib, sys
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version = whl.name.split("-")[:2]
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have == version:
        print(f"have {name} {version}")
    else:
        print(f"install {whl} {name} {version} (installed: {have or 'none'})")
EOF
    ) || { say "error: could not read $WHEELS with $PYTHON"; return 1; }
    local files=()
    while read -r verb rest; do
        if [ "$verb" = install ]; then
            set -- $rest
            files+=("$1")
            say "wheel: $2 $3 ${*:4}"
        else
            say "wheel: $rest already installed"
        fi
    done <<< "$plan"
    [ ${#files[@]} -eq 0 ] && return 0
    say "installing ${#files[@]} wheels into $WORK/site"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        --target "$WORK/site" "${files[@]}"
}

summary() {
    "$PYTHON" - "$JSON" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
env = r.get("environment", {})
gpu = env.get("gpu", {}).get("name", r.get("device"))
print(f"\n{r.get('preset')} preset on {gpu}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
      f"{r.get('steps')} steps, precision {r.get('precision')}, model build {r.get('model_build_s', 0):.1f} s")
print(f"{'backend':14} {'mode':6} {'median s':>9} {'p90 s':>9} {'n':>3} {'peak MiB':>9} {'1st chunk s':>11}")
for name, entry in r.get("results", {}).items():
    for mode, m in entry.get("modes", {}).items():
        print(f"{name:14} {mode:6} {m['latency_median_s']:9.4f} {m['latency_p90_s']:9.4f} {m['repeats_done']:3d} "
              f"{m['peak_memory_mb']:9.0f} {m['first_chunk_s']:11.3f}")
    if "time_to_first_chunk_s" in entry:
        print(f"{name:14} time to first chunk {entry['time_to_first_chunk_s']:.1f} s "
              f"(set-up {entry['setup']['setup_s']:.1f} s)")
c = r.get("conditioning_cache")
if c:
    print(f"recompute every step ({c['backend']}, {c['mode']}): {c['recompute_every_step_median_s']:.4f} s vs "
          f"cached {c['cached_median_s']:.4f} s: {c['speedup']:.2f}x")
p = r.get("profile")
if p:
    print(f"profile: host syncs in step network {p['in_step_network'] or 'none'}, "
          f"in denoising loop {p['in_denoise_loop'] or 'none'} ({p['file']})")
for key in ("unavailable", "skipped"):
    for name, why in r.get(key, {}).items():
        print(f"{key}: {name}: {why[:160]}")
print(f"finished: {r.get('finished')}{'; error: ' + r['error'] if r.get('error') else ''}")
EOF
}

main() {
    say "command: $COMMAND"
    say "python: $PYTHON; scratch: $WORK; budget: $BUDGET_S s"
    if ! install_wheels; then
        write_error "installing the wheels from $WHEELS failed (see gpu_bench.log)"
        return 1
    fi
    export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
    export MOTUS_ROS_CACHE=$WORK/cache TORCHINDUCTOR_CACHE_DIR=$WORK/inductor TRITON_CACHE_DIR=$WORK/triton
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
    # The bench path needs diffusers and transformers (the encoders) but never rclpy: no ROS on GPU machines.
    if ! "$PYTHON" - "$DEVICE" <<'EOF'
import sys
import diffusers, torch, transformers
import motus_ros.bench.policy, motus_ros.cli, motus_ros.policy.runtime  # noqa: F401
device = sys.argv[1]
print(f"[gpu_bench] torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"diffusers {diffusers.__version__}; rclpy imported: {'rclpy' in sys.modules}")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"device '{device}' asked for, but torch.cuda.is_available() is False")
EOF
    then
        write_error "the imports failed or the device is missing (see gpu_bench.log)"
        return 1
    fi
    local left=$((BUDGET_S - SECONDS))
    local bench_budget=$((left - BENCH_RESERVE_S))
    if [ "$bench_budget" -lt 10 ]; then
        write_error "only ${left} s of the ${BUDGET_S} s budget left after the installs"
        return 1
    fi
    local profile_args=()
    [ "$PROFILE" = 1 ] && profile_args=(--profile "$OUTDIR/profile_vla.txt")
    say "bench: ${bench_budget} s budget, killed after $((left + HARD_LIMIT_GRACE_S)) s"
    timeout --signal=TERM --kill-after=10 $((left + HARD_LIMIT_GRACE_S)) \
        "$PYTHON" -m motus_ros.cli bench policy --preset "$PRESET" --device "$DEVICE" --backend "$BACKENDS" \
        --modes "$MODES" --repeats "$REPEATS" --warmup "$WARMUP" --precision "$PRECISION" --threads "$THREADS" \
        --budget-s "$bench_budget" --output "$JSON" --command "$COMMAND" "${profile_args[@]}" "${EXTRA[@]}" \
        > "$WORK/bench_stdout.json"
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        write_error "killed by the hard limit ($((left + HARD_LIMIT_GRACE_S)) s after the installs); the JSON holds what was measured before"
    elif [ $rc -ne 0 ] && [ ! -s "$JSON" ]; then
        write_error "motus-ros bench policy exited with status $rc (see gpu_bench.log)"
    fi
    [ -s "$JSON" ] && summary
    say "done in ${SECONDS} s: $JSON"
    return $rc
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
