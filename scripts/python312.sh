# Sourced by the set-up scripts: find_python312 prints a Python 3.12 interpreter (lerobot 0.6 needs it).
find_python312() {
  for candidate in python3.12 "$HOME/.pyenv/versions/3.12"*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}
