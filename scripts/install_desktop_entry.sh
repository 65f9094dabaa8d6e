#!/usr/bin/env bash
# Add DisCoM-KD Studio to the Linux desktop menu of the current user (no root needed).
#
#   scripts/install_desktop_entry.sh [EXECUTABLE]      install (default: the built app in dist/)
#   scripts/install_desktop_entry.sh --uninstall       remove the menu entry and icons
#
# Copies resources/discomkd-studio.desktop to ~/.local/share/applications with Exec/TryExec pointing
# at EXECUTABLE, and the hicolor icons to ~/.local/share/icons/hicolor/<size>/apps. Honours
# XDG_DATA_HOME. EXECUTABLE may also be a command on PATH (e.g. discomkd-gui from a pip install).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS_DIR="$DATA_HOME/applications"
ICONS_DIR="$DATA_HOME/icons/hicolor"
DESKTOP_NAME="discomkd-studio.desktop"
ICON_NAME="discomkd-studio"

refresh_caches() {
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS_DIR" 2>/dev/null || true
    command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$DATA_HOME/icons/hicolor" 2>/dev/null || true
}

if [[ "${1:-}" == "--uninstall" ]]; then
    rm -f "$APPS_DIR/$DESKTOP_NAME"
    find "$ICONS_DIR" -path "*/apps/$ICON_NAME.png" -delete 2>/dev/null || true
    refresh_caches
    echo "Removed DisCoM-KD Studio from the desktop menu."
    exit 0
fi

APP="${1:-$ROOT/dist/DisCoM-KD Studio/discomkd-studio}"
if [[ "$APP" != */* ]]; then
    APP="$(command -v "$APP" || true)"
    [[ -n "$APP" ]] || { echo "error: '${1}' is not a command on PATH." >&2; exit 1; }
fi
[[ -x "$APP" && ! -d "$APP" ]] || {
    echo "error: '$APP' is not an executable. Build the app first (scripts/build_app.sh) or pass its path." >&2
    exit 1
}
APP="$(cd "$(dirname "$APP")" && pwd)/$(basename "$APP")"

# The shipped resources: beside the frozen executable (_internal/resources), else the source tree.
RES="$(dirname "$APP")/_internal/resources"
[[ -f "$RES/$DESKTOP_NAME" ]] || RES="$ROOT/resources"
[[ -f "$RES/$DESKTOP_NAME" ]] || { echo "error: cannot find $DESKTOP_NAME in $RES." >&2; exit 1; }

# Desktop Entry Exec quoting: inside double quotes escape \ " ` $ with a backslash, then double
# every backslash once more because the value itself is an escaped string.
quoted="$APP"
quoted="${quoted//\\/\\\\}"
quoted="${quoted//\"/\\\"}"
quoted="${quoted//\`/\\\`}"
quoted="${quoted//\$/\\\$}"
quoted="\"${quoted//\\/\\\\}\""
tryexec="${APP//\\/\\\\}"

tmpdir="$(mktemp -d)"
trap 'rm -rf "$tmpdir"' EXIT
tmp="$tmpdir/$DESKTOP_NAME"
# Values go through the environment: awk -v would undo the backslash escaping.
# The shipped Exec's first word (the program) is replaced; its arguments (field codes) are kept.
EXEC_PROGRAM="$quoted" TRYEXEC_LINE="TryExec=$tryexec" awk '
    /^TryExec=/ { next }
    /^Exec=/ {
        args = substr($0, 6); sub(/^[^ ]+/, "", args)
        print ENVIRON["TRYEXEC_LINE"]; print "Exec=" ENVIRON["EXEC_PROGRAM"] args; next
    }
    { print }
' "$RES/$DESKTOP_NAME" > "$tmp"
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$tmp" || echo "warning: desktop-file-validate reported the problems above." >&2
fi
install -D -m 644 "$tmp" "$APPS_DIR/$DESKTOP_NAME"

count=0
for icon in "$RES"/icons/hicolor/*/apps/"$ICON_NAME".png; do
    [[ -f "$icon" ]] || continue
    size="$(basename "$(dirname "$(dirname "$icon")")")"
    install -D -m 644 "$icon" "$ICONS_DIR/$size/apps/$ICON_NAME.png"
    count=$((count + 1))
done
refresh_caches

echo "Installed $APPS_DIR/$DESKTOP_NAME ($count icon sizes in $ICONS_DIR)."
echo "It starts: $APP"
