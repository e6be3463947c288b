# Sourced by scripts/test: the real OpenHands agent server for the tests that
# drive it (tests/api/agent_server.rs), in a cached virtualenv.
#
#   source scripts/lib/openhands-agent-server.sh
#   ensure_openhands_agent_server   # exports HOOKWISE_TEST_AGENT_SERVER_PYTHON
#
# It finds Python >= 3.12 (python3.13, python3.12, python3, the newest
# /usr/bin/python3.1x, pyenv's installed versions; on a machine with none, as a
# fresh Debian 12 is, it builds CPython 3.13 from Debian's source package into
# target/python3.13, once), creates the virtualenv
# target/openhands-venv with it (as root on Debian it installs python3-venv
# when the venv module is missing), installs openhands-agent-server
# $OPENHANDS_AGENT_SERVER_VERSION into it unless that version is already
# there, and installs Debian's tmux (the agent's terminal needs it) and git
# when they are missing. The install time is printed. The caller defines `say`
# and `die`. Set HOOKWISE_SKIP_AGENT_SERVER=1 to skip all of it (outside CI the
# tests that need the server then skip; under CI=true they fail).

OPENHANDS_AGENT_SERVER_VERSION=${OPENHANDS_AGENT_SERVER_VERSION:-1.58.2}
OPENHANDS_VENV=${OPENHANDS_VENV:-target/openhands-venv}
# Where a Python built from Debian's source package goes when the machine has
# none >= 3.12 (a fresh Debian 12 has 3.11): cached like the virtualenv.
OPENHANDS_PYTHON_PREFIX=${OPENHANDS_PYTHON_PREFIX:-target/python3.13}

# Prints a Python interpreter of version >= 3.12, or fails.
find_python_312() {
    local candidates=(python3.13 python3.12 python3)
    local p
    for p in /usr/bin/python3.1[2-9] /usr/local/bin/python3.1[2-9]; do
        [[ -x "$p" ]] && candidates+=("$p")
    done
    if command -v pyenv >/dev/null; then
        local root
        root=$(pyenv root 2>/dev/null || true)
        for p in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
            [[ -x "$p/bin/python3" ]] && candidates+=("$p/bin/python3")
        done
    fi
    for p in "${candidates[@]}"; do
        # pyenv shims exist for versions that are not selected: run each one.
        if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
            "$p" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    return 1
}

# Builds CPython 3.13 from Debian 13's source package (the upstream tarball,
# fetched with apt-get source from Debian's archive, the registry this machine
# reaches) into $OPENHANDS_PYTHON_PREFIX and prints its interpreter. A few
# minutes on two cores, once: later runs find it. HOOKWISE_BUILD_PYTHON=1
# forces this path (to test it on a machine that has a Python >= 3.12).
build_python_from_debian_source() {
    local prefix
    prefix=$(mkdir -p "$OPENHANDS_PYTHON_PREFIX" && cd "$OPENHANDS_PYTHON_PREFIX" && pwd)
    if [[ -x "$prefix/bin/python3.13" ]]; then
        echo "$prefix/bin/python3.13"
        return 0
    fi
    [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || return 1
    local work
    work=$(mktemp -d -t hookwise-python.XXXXXX)
    chmod 755 "$work" # apt's downloads run as _apt
    say "no Python >= 3.12 here: building CPython 3.13 from Debian's source package into $prefix"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential dpkg-dev libssl-dev zlib1g-dev \
        libffi-dev libsqlite3-dev libbz2-dev liblzma-dev uuid-dev libreadline-dev >/dev/null || return 1
    mkdir -p "$work/lists/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$work/sources.list"
    local apt_options=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "APT::Get::List-Cleanup=0")
    apt-get "${apt_options[@]}" update -qq >/dev/null || return 1
    (cd "$work" && apt-get "${apt_options[@]}" source --download-only -qq python3.13 >/dev/null) || return 1
    local tarball
    tarball=$(ls "$work"/python3.13_*.orig.tar.xz 2>/dev/null | head -1)
    [[ -n "$tarball" ]] || return 1
    tar -xJf "$tarball" -C "$work" || return 1
    local source
    source=$(find "$work" -maxdepth 1 -type d -name 'Python-3.13*' | head -1)
    [[ -n "$source" ]] || return 1
    (cd "$source" && ./configure --quiet --prefix="$prefix" >/dev/null \
        && make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null 2>&1) || return 1
    rm -rf "$work"
    [[ -x "$prefix/bin/python3.13" ]] || return 1
    echo "$prefix/bin/python3.13"
}

apt_install() {
    [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || return 1
    say "apt-get install -y $*"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_openhands_agent_server() {
    if [[ "${HOOKWISE_SKIP_AGENT_SERVER:-}" == 1 ]]; then
        say "HOOKWISE_SKIP_AGENT_SERVER=1: not preparing the agent server"
        return 0
    fi
    local started=$SECONDS
    local missing=()
    command -v tmux >/dev/null || missing+=(tmux)
    command -v git >/dev/null || missing+=(git)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}" || die "missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]})"
    fi

    local venv_python="$OPENHANDS_VENV/bin/python"
    if [[ ! -x "$venv_python" ]] || ! "$venv_python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
        local python=
        if [[ "${HOOKWISE_BUILD_PYTHON:-}" != 1 ]]; then
            python=$(find_python_312) || python=
        fi
        if [[ -z "$python" ]]; then
            python=$(build_python_from_debian_source) \
                || die "no Python >= 3.12 (the agent server needs it), and building one from Debian's source failed: install python3.12 or newer"
        fi
        say "creating $OPENHANDS_VENV with $python"
        rm -rf "$OPENHANDS_VENV"
        if ! "$python" -m venv "$OPENHANDS_VENV" 2>/dev/null; then
            rm -rf "$OPENHANDS_VENV"
            local minor
            minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            apt_install "python$minor-venv" || apt_install python3-venv || die "$python cannot create a virtualenv: install python3-venv"
            "$python" -m venv "$OPENHANDS_VENV" || die "$python -m venv $OPENHANDS_VENV failed"
        fi
    fi

    local installed
    installed=$("$venv_python" -c 'import importlib.metadata as m; print(m.version("openhands-agent-server"))' 2>/dev/null || true)
    if [[ "$installed" != "$OPENHANDS_AGENT_SERVER_VERSION" ]]; then
        say "pip install openhands-agent-server==$OPENHANDS_AGENT_SERVER_VERSION into $OPENHANDS_VENV (a few minutes, ~750 MB)"
        "$venv_python" -m pip install --quiet --disable-pip-version-check \
            "openhands-agent-server==$OPENHANDS_AGENT_SERVER_VERSION" \
            || die "pip install openhands-agent-server==$OPENHANDS_AGENT_SERVER_VERSION failed"
    fi
    HOOKWISE_TEST_AGENT_SERVER_PYTHON="$(cd "$(dirname "$venv_python")" && pwd)/$(basename "$venv_python")"
    export HOOKWISE_TEST_AGENT_SERVER_PYTHON
    say "agent server ready in $((SECONDS - started))s: HOOKWISE_TEST_AGENT_SERVER_PYTHON=$HOOKWISE_TEST_AGENT_SERVER_PYTHON"
}
