#!/usr/bin/env bash
# The GPU suite, one command on a GPU host with the kit (`make device-kit`) beside the repository:
#
#   bash bench/gpu.sh [--kit DIR] [--out DIR] [--only STEPS] [--budget-s 540] [--work DIR]
#                                                                # on the GPU host (about 8 minutes)
#   bash bench/gpu.sh --cpu-dry-run                              # anywhere: every step's flags are accepted
#   bash bench/gpu.sh --cpu-smoke                                # anywhere: every step for real, toy sizes
#
# It unpacks the kit's slim Ray and wheels into a folder of their own (SRCORE_KIT_SITE, default
# /tmp/srcore-kit-site) and puts it and the repository on PYTHONPATH: the host's Python, torch included, is
# not touched. Then bench/gpu_suite.py runs the steps and writes summary.md (and YYYY-MM-DD-<gpu>.md, to
# commit under bench/results/) into --out (default: $OUT when set, else bench/out). See docs/gpu.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="${SRCORE_KIT:-$ROOT/.device-kit}"
OUT_DIR="${OUT:-$ROOT/bench/out}"
PYTHON="${PYTHON:-python3}"
MODE=gpu
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kit) KIT="$2"; shift 2 ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    --cpu-dry-run) MODE=cpu-dry-run; shift ;;
    --cpu-smoke) MODE=cpu-smoke; shift ;;
    --only|--budget-s|--work) PASS+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n "2,12p" "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
KIT="$(cd "$KIT" 2>/dev/null && pwd || echo "$KIT")"
mkdir -p "$OUT_DIR"

PYPATH="$ROOT"
if ls "$KIT"/ray-*-slim.tar.xz >/dev/null 2>&1 && [ "$MODE" != cpu-dry-run ]; then
  SITE="${SRCORE_KIT_SITE:-/tmp/srcore-kit-site}"
  STAMP="$SITE/.kit-$(sha256sum "$KIT/MANIFEST.json" | cut -c1-16)"
  if [ ! -f "$STAMP" ]; then
    echo "unpacking the kit ($KIT) into $SITE ..."
    rm -rf "$SITE" && mkdir -p "$SITE"
    # Python's own tar and lzma: the host may have no xz binary
    "$PYTHON" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
      "$(ls "$KIT"/ray-*-slim.tar.xz | head -1)" "$SITE"
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
      --target "$SITE" "$KIT"/wheels/*.whl
    touch "$STAMP"
  fi
  PYPATH="$SITE:$ROOT"
elif [ "$MODE" = gpu ]; then
  echo "bench/gpu.sh: no kit at $KIT (make device-kit, then carry it); using the Python environment as it is" >&2
fi
export PYTHONPATH="$PYPATH${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0

if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi || true; fi
"$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| cuda', torch.version.cuda, '| gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
if [ "$MODE" != cpu-dry-run ]; then
  "$PYTHON" -c "import ray, srcore; print('ray', ray.__version__, 'from', ray.__file__); print('srcore from', srcore.__file__)"
fi
exec "$PYTHON" "$ROOT/bench/gpu_suite.py" --mode "$MODE" --kit "$KIT" --out "$OUT_DIR" \
  --command "bash bench/gpu.sh$([ "$MODE" = gpu ] || echo " --$MODE")${PASS[*]:+ ${PASS[*]}}" ${PASS[@]+"${PASS[@]}"}
