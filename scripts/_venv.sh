# Sourced by scripts/demo and scripts/test: make sure .venv exists and has this checkout installed.
# Reinstalls only when pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:-}"
py=""
for cand in python3.11 python3.12 python3.13 python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
     "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py="$cand"; break
  fi
done
if [ -z "$py" ]; then
  echo "StreamRisk needs Python >= 3.11 (python3.11 or python3 on PATH)" >&2
  exit 1
fi
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "== creating $root/.venv with $($py --version)" >&2
  "$py" -m venv "$root/.venv"
fi
stamp="$root/.venv/.streamrisk-installed${extra:+-$extra}"
want="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== installing streamrisk${extra:+[$extra]} into .venv (first run takes a minute)" >&2
  "$root/.venv/bin/python" -m pip install -q --upgrade pip >&2
  # constraints.txt pins every dependency exactly: the worker relies on faust's and aiokafka's internals.
  "$root/.venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root${extra:+[$extra]}" >&2
  echo "$want" > "$stamp"
fi
