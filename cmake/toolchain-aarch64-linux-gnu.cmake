# Cross-compiling slm for 64-bit ARM Linux with Debian's toolchain
# (gcc-aarch64-linux-gnu) and multiarch libraries (libpcre2-dev:arm64 etc.):
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake
# pkg-config is pointed at the arm64 .pc files only, and tests run under
# qemu-aarch64-static (user-mode emulation; QEMU_CPU picks the emulated CPU,
# e.g. max with the dot-product extension, or cortex-a57 without it).
# scripts/test-arm64.sh installs all of it and runs the tests.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(SLM_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${SLM_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${SLM_CROSS_TRIPLE}-g++)

# Headers and libraries: the cross toolchain's own tree, then Debian's
# multiarch directories (/usr/include/aarch64-linux-gnu and
# /usr/lib/aarch64-linux-gnu, which the Debian cross compiler searches).
set(CMAKE_FIND_ROOT_PATH /usr/${SLM_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_LIBRARY_ARCHITECTURE ${SLM_CROSS_TRIPLE})

# pkg-config: the target's .pc files, never the build machine's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${SLM_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest runs target binaries through the emulator. libc6:arm64 (pulled in by
# the :arm64 -dev packages) provides /lib/ld-linux-aarch64.so.1, so no -L
# prefix is needed and the loader matches the libraries it loads.
find_program(SLM_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(SLM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SLM_QEMU_AARCH64})
endif()

# Sanitizer builds (SLM_SANITIZE): the cross toolchain keeps libasan/libubsan
# under /usr/aarch64-linux-gnu/lib, where the emulated loader does not look,
# so link them statically (no effect on builds without -fsanitize).
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libasan -static-libubsan")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libasan -static-libubsan")
