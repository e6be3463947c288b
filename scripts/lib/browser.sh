# Sourced by scripts/test: a real headless browser for the dashboard test
# (tests/api/dashboard.rs drives tests/browser/dashboard.py), cached.
#
#   source scripts/lib/openhands-agent-server.sh   # for find_python_312, apt_install
#   source scripts/lib/browser.sh
#   ensure_browser   # exports HOOKWISE_TEST_BROWSER_PYTHON and HOOKWISE_TEST_CHROMIUM
#
# Debian's chromium (as root it installs the `chromium` package when it is
# missing) and a virtualenv target/browser-venv with Playwright for Python
# $PLAYWRIGHT_VERSION from PyPI, driving that chromium through
# `executable_path`: never `playwright install`, which downloads a browser
# build of its own. The caller defines `say` and `die`. Set
# HOOKWISE_SKIP_BROWSER=1 to skip it (outside CI the dashboard test then
# skips; under CI=true it fails).

PLAYWRIGHT_VERSION=${PLAYWRIGHT_VERSION:-1.65.2}
BROWSER_VENV=${BROWSER_VENV:-target/browser-venv}

find_chromium() {
    local c
    for c in chromium chromium-browser; do
        command -v "$c" >/dev/null && { command -v "$c"; return 0; }
    done
    return 1
}

ensure_browser() {
    if [[ "${HOOKWISE_SKIP_BROWSER:-}" == 1 ]]; then
        say "HOOKWISE_SKIP_BROWSER=1: not preparing the browser"
        return 0
    fi
    local started=$SECONDS
    local chromium
    if ! chromium=$(find_chromium); then
        apt_install chromium || die "no chromium: install it (Debian: apt-get install chromium)"
        chromium=$(find_chromium) || die "chromium is still missing after apt-get install chromium"
    fi
    # fonts-liberation comes with chromium; emoji and CJK are not needed by the dashboard.

    local venv_python="$BROWSER_VENV/bin/python"
    if [[ ! -x "$venv_python" ]] || ! "$venv_python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
        local python=
        python=$(find_python_312) || python=
        if [[ -z "$python" ]]; then
            python=$(build_python_from_debian_source) || die "no Python >= 3.12 for Playwright, and building one from Debian's source failed"
        fi
        say "creating $BROWSER_VENV with $python"
        rm -rf "$BROWSER_VENV"
        if ! "$python" -m venv "$BROWSER_VENV" 2>/dev/null; then
            rm -rf "$BROWSER_VENV"
            apt_install python3-venv || die "$python cannot create a virtualenv: install python3-venv"
            "$python" -m venv "$BROWSER_VENV" || die "$python -m venv $BROWSER_VENV failed"
        fi
    fi
    local installed
    installed=$("$venv_python" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true)
    if [[ "$installed" != "$PLAYWRIGHT_VERSION" ]]; then
        say "pip install playwright==$PLAYWRIGHT_VERSION into $BROWSER_VENV"
        "$venv_python" -m pip install --quiet --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION" \
            || die "pip install playwright==$PLAYWRIGHT_VERSION failed"
    fi
    HOOKWISE_TEST_BROWSER_PYTHON="$(cd "$(dirname "$venv_python")" && pwd)/$(basename "$venv_python")"
    HOOKWISE_TEST_CHROMIUM=$chromium
    export HOOKWISE_TEST_BROWSER_PYTHON HOOKWISE_TEST_CHROMIUM
    say "browser ready in $((SECONDS - started))s: HOOKWISE_TEST_CHROMIUM=$HOOKWISE_TEST_CHROMIUM HOOKWISE_TEST_BROWSER_PYTHON=$HOOKWISE_TEST_BROWSER_PYTHON"
}
