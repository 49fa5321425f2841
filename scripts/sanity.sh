#!/usr/bin/env bash
# ansible-test sanity on a copy of the tracked files laid out as
# ansible_collections/virtops/unified (what ansible-test requires), offline.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test bootstraps pip in its venvs with a script it downloads; our
# offline stand-in answers instead (the cache name carries the pip version).
pipver=$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" .venv/lib/python*/site-packages/ansible_test/_internal/python_requirements.py | head -1)
offline="$root/tests/get_pip_offline.py"
mkdir -p ~/.ansible/test/cache
if [ -n "$pipver" ]; then
  cp "$offline" ~/.ansible/test/cache/"get_pip_${pipver//./_}.py"
fi

work=.build/sanity/ansible_collections/virtops/unified
rm -rf "$work" && mkdir -p "$work"
git ls-files -z --cached | xargs -0 cp --parents -t "$work"  # what a commit would hold
cd "$work"
git init -q && git add -A  # ansible-test lists files through git when present
"$root/.venv/bin/ansible-test" sanity --venv --python "$py" --color no "$@"
