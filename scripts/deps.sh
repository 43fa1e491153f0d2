# deps.sh - sourced by scripts/test and scripts/demo: make sure the Debian
# packages mergescope builds with are installed. As root it installs what is
# missing; otherwise it prints the exact apt-get line and exits 2.
ms_need_packages() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "mergescope: missing packages; run: sudo apt-get install -y$missing" >&2
        exit 2
    fi
    echo "installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2 || {
        echo "mergescope: apt-get install$missing failed" >&2
        exit 2
    }
}

MS_BUILD_PACKAGES="build-essential cmake pkg-config libyaml-dev libcjson-dev libopenblas-dev"
