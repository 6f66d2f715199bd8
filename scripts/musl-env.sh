# Sourced by scripts/dist.sh and scripts/bench.sh: the static musl target's name, and a C
# compiler for it. ring (rustls's crypto) compiles C; without musl-gcc (the musl-tools
# package) the host gcc serves: ring's C needs no libc headers, and the musl target's
# self-contained linker does the static link.
musl=x86_64-unknown-linux-musl
musl_installed() { rustup target list --installed 2>/dev/null | grep -qx "$musl"; }
if ! command -v x86_64-linux-musl-gcc >/dev/null && ! command -v musl-gcc >/dev/null; then
  export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-gcc}"
fi
