# Sourced by scripts/test.sh and scripts/tsan.sh: one OpenMP runtime per process for a clang build.
#   omp_shim BUILD_DIR   exports LD_LIBRARY_PATH so that libgomp.so.1 resolves to the LLVM libomp
#                        that BUILD_DIR's code is linked against; sets OMP_SHIM_LIBOMP to its path
#   omp_shim_check BIN   fails if BIN, run from its directory, would still load libgomp next to libomp
#
# clang's -fopenmp links LLVM's libomp, but Debian's libdnnl needs GCC's libgomp.so.1: loaded
# as-is the process has two OpenMP runtimes, two thread pools competing for the cores, and the
# oneDNN GEMMs on threads a sanitizer's runtime hooks (Archer) know nothing of. libomp implements
# libgomp's GOMP_* ABI, so a directory with libgomp.so.1 -> libomp.so.5 goes first on
# LD_LIBRARY_PATH; the loader then sees the file of the libomp already loaded and maps it once.

omp_shim() {
  local build libomp
  # Absolute: ctest runs each test from the build directory, where a relative entry on
  # LD_LIBRARY_PATH would point nowhere (and libgomp would load beside libomp again).
  build="$(cd "$1" && pwd)"
  libomp="$(sed -n 's/^OpenMP_omp_LIBRARY:FILEPATH=//p' "$build/CMakeCache.txt")"
  libomp="$(readlink -f "$libomp" || true)"
  if [ ! -f "$libomp" ]; then
    echo "omp-shim: $build is not linked against LLVM's libomp (apt install libomp-14-dev); got '$libomp'" >&2
    return 1
  fi
  mkdir -p "$build/omp-shim"
  ln -sfn "$libomp" "$build/omp-shim/libgomp.so.1"
  export LD_LIBRARY_PATH="$build/omp-shim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  OMP_SHIM_LIBOMP="$libomp"
}

omp_shim_check() {
  # From the binary's own directory, as ctest runs it.
  local deps
  deps="$(cd "$(dirname "$1")" && ldd "./$(basename "$1")")"
  if grep -q 'libgomp' <<<"$deps"; then
    echo "$deps" >&2
    echo "omp-shim: $1 still loads libgomp next to libomp (two OpenMP runtimes)" >&2
    return 1
  fi
}
