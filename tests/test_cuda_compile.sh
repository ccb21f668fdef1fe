#!/bin/sh
# test_cuda_compile.sh - the compile-only check of the CUDA kernels (make
# check, no GPU needed).
#
# make compiles engine/cuda/*.cu with nvcc for every architecture of
# CUDA_ARCH_FLAGS before the tests run (objects in the build dir, rebuilt
# only when a source or header changes, see mk/cuda.am); a compile error
# therefore already stops make check.  This test checks what make alone
# would not notice:
#   - every engine/cuda/*.cu of the source tree is in CUDA_SRCS (a new file
#     that nobody added to mk/cuda.am would otherwise never be compiled);
#   - each object exists and is newer than its source and headers;
#   - nvcc said nothing while compiling it (X.o.log is empty: warning-free);
#   - the object's fat binary holds SASS for each code=sm_XX and PTX for
#     each code=compute_XX of CUDA_ARCH_FLAGS (read with objcopy and python3,
#     since the toolkit may come without cuobjdump);
#   - ttychat needs no CUDA library to start (none among its NEEDED
#     entries: the runtime is static and cuBLAS is loaded with dlopen()).
# Skips (77) in a build configured without nvcc.
set -u

builddir=${TTYCHAT_BUILDDIR:-.}
srcdir=${TTYCHAT_SRCDIR:-..}
env_file="$builddir/tests/cuda-check.env"

if [ ! -r "$env_file" ]; then
	echo "FAIL: $env_file missing (make check writes it)"
	exit 1
fi
NVCC='' CUDA_DIR='' CUDA_ARCH_FLAGS='' CUDA_SRCS='' CUDA_DEPS='' OBJEXT=o
. "$env_file"
if [ -z "$NVCC" ]; then
	echo "SKIP: configure found no nvcc, so this is a CPU-only build and the CUDA kernels are not compiled (configure --with-cuda=DIR to check them)"
	exit 77
fi

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# 1. every .cu in the tree is built
for f in "$srcdir"/engine/cuda/*.cu; do
	[ -e "$f" ] || continue
	rel="engine/cuda/$(basename "$f")"
	case " $CUDA_SRCS " in
	*" $rel "*) ok ;;
	*) bad "$rel is not compiled: add it to CUDA_SRCS in mk/cuda.am" ;;
	esac
done

# expected architectures from the flags: code=sm_80 -> SASS, code=compute_90 -> PTX
sass=$(printf '%s\n' "$CUDA_ARCH_FLAGS" | tr ' ,' '\n\n' | sed -n 's/^code=\(sm_[0-9a-z]*\)$/\1/p')
ptx=$(printf '%s\n' "$CUDA_ARCH_FLAGS" | tr ' ,' '\n\n' | sed -n 's/^code=compute_\([0-9a-z]*\)$/sm_\1/p')
if [ -z "$sass" ]; then
	bad "no code=sm_XX in CUDA_ARCH_FLAGS '$CUDA_ARCH_FLAGS'"
fi

# Lists "sass sm_80" / "ptx sm_90" for each image in an object's
# .nv_fatbin section (container: u32 magic 0xBA55ED50, u16 version, u16
# header size, u64 size; entry: u16 kind 1=PTX 2=ELF, u16, u32 header size,
# u64 payload size, ..., u32 arch at offset 28).
PYTHON=${PYTHON:-/usr/bin/python3}
fatbin_list() {
	tmp=$(mktemp) || return 1
	if ! objcopy -O binary --only-section=.nv_fatbin "$1" "$tmp" 2>/dev/null; then
		rm -f "$tmp"
		return 1
	fi
	"$PYTHON" - "$tmp" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
off = 0
while off + 16 <= len(d):
    magic, _, hs, size = struct.unpack_from('<IHHQ', d, off)
    if magic != 0xBA55ED50:
        break
    e, end = off + hs, off + hs + size
    while e + 32 <= end:
        kind, _, ehs, esz = struct.unpack_from('<HHIQ', d, e)
        arch = struct.unpack_from('<I', d, e + 28)[0]
        print({1: 'ptx', 2: 'sass'}.get(kind, 'kind%d' % kind), 'sm_%d' % arch)
        if ehs == 0:
            break
        e += ehs + esz
    off = end
PY
	rc=$?
	rm -f "$tmp"
	return $rc
}
can_list=yes
command -v objcopy >/dev/null 2>&1 && [ -x "$PYTHON" ] || can_list=no

for rel in $CUDA_SRCS; do
	obj="$builddir/${rel%.cu}.$OBJEXT"
	src="$srcdir/$rel"
	if [ ! -f "$obj" ]; then
		bad "$obj was not built"
		continue
	fi
	# 2. up to date
	stale=""
	for dep in "$rel" $CUDA_DEPS; do
		[ "$srcdir/$dep" -nt "$obj" ] && stale="$stale $dep"
	done
	if [ -n "$stale" ]; then bad "$obj is older than:$stale"; else ok; fi
	# 3. warning-free
	if [ ! -f "$obj.log" ]; then
		bad "$obj.log missing (the nvcc rule of mk/cuda.am writes it)"
	elif [ -s "$obj.log" ]; then
		bad "nvcc printed warnings for $src:"
		sed 's/^/    /' "$obj.log"
	else
		ok
	fi
	# 4. code for every architecture
	if [ "$can_list" = no ]; then
		echo "note: objcopy or $PYTHON missing, architectures of $obj not checked"
		continue
	fi
	if ! images=$(fatbin_list "$obj") || [ -z "$images" ]; then
		bad "$obj has no readable .nv_fatbin section"
		continue
	fi
	for a in $sass; do
		if printf '%s\n' "$images" | grep -qx "sass $a"; then ok; else bad "$obj has no $a code"; fi
	done
	for a in $ptx; do
		if printf '%s\n' "$images" | grep -qx "ptx $a"; then ok; else bad "$obj has no PTX for $a"; fi
	done
done

# 5. the binary starts without a GPU stack: no CUDA library among its
# dynamic dependencies (the runtime is static, cuBLAS is dlopen()ed)
bin="$builddir/ttychat"
if [ -x "$bin" ] && command -v readelf >/dev/null 2>&1; then
	needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
	if printf '%s\n' "$needed" | grep -Eq '^lib(cuda|cudart|cublas|cublasLt)\.'; then
		bad "$bin links a CUDA library dynamically:" $needed
	else
		ok
	fi
fi

echo "CUDA objects: $(echo $CUDA_SRCS | wc -w), SASS: $(echo $sass), PTX: $(echo $ptx)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
