#!/usr/bin/env bash
# Create benchmarks/.venv-compare, the capture_compare benchmark's own environment with TorchLens
# and nnsight (never project dependencies). A plain venv (no --system-site-packages).
#
# Default: the project venv's site-packages are appended to the new venv's sys.path by a .pth
# file (site.addsitedir, after its own site-packages), so every method runs on the very same torch
# build and the editable `hooks`/`probe`; pip installs only what torchlens/nnsight add or need in
# other versions into .venv-compare, never into .venv.
# COMPARE_OWN_TORCH=1: install torch (the project venv's version), numpy, zarr and the project
# (editable, with its dependencies) into .venv-compare instead: fully isolated, a multi-GB download.
#
# Usage: bash benchmarks/compare_env.sh      (re-running it updates the venv in place)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
venv=${COMPARE_VENV:-$here/.venv-compare}
main_py=${MAIN_PY:-$root/.venv/bin/python}
base_py=${PYTHON:-python3}

test -x "$main_py" || { echo "no project venv at $main_py: run 'make venv' first" >&2; exit 1; }
"$base_py" -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip

if [ "${COMPARE_OWN_TORCH:-0}" = 1 ]; then
    torch_version=$("$main_py" -c 'import torch; print(torch.__version__.split("+")[0])')
    "$py" -m pip install --quiet "torch==$torch_version" numpy zarr
    "$py" -m pip install --quiet -e "$root"
else
    main_site=$("$main_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    own_site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "import site; site.addsitedir('$main_site')" >"$own_site/zz_probe_main_venv.pth"
fi

# Each tool separately, so one that fails to install leaves the other usable; the benchmark
# reports a missing tool in its JSON.
status=0
for pkg in torchlens nnsight; do
    "$py" -m pip install --quiet "$pkg" || { echo "pip install $pkg failed" >&2; status=1; }
done
"$py" - <<'EOF'
import importlib
for name in ("torch", "hooks", "probe", "torchlens", "nnsight"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:10s} {getattr(mod, '__version__', '?')}  {getattr(mod, '__file__', '')}")
    except Exception as err:  # report and continue: the benchmark says why a tool is missing
        print(f"{name:10s} NOT importable: {type(err).__name__}: {err}")
EOF
exit $status
