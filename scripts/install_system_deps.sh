#!/usr/bin/env bash
# Install the system programs pindai needs (Tesseract, poppler, Redis) on Debian or
# Ubuntu when they are missing, plus any packages named as arguments. Runs apt-get
# as root or through passwordless sudo; otherwise prints the command to run and
# exits 1.
set -euo pipefail

# The language packs: TESSERACT_LANGS, else the file tesseract-languages, which the
# worker image reads too.
root="$(cd "$(dirname "$0")/.." && pwd)"
languages="${TESSERACT_LANGS:-$(cat "$root/tesseract-languages")}"
# python3-venv: Debian's python3 cannot create the virtualenv without it.
packages=(tesseract-ocr poppler-utils redis-server python3-venv "$@")
for language in $languages; do
  packages+=("tesseract-ocr-${language}")
done

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

command="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sh -c "$command"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo sh -c "$command"
else
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Install them with:" >&2
  echo "  sudo sh -c '$command'" >&2
  exit 1
fi
