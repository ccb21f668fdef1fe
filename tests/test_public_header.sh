#!/bin/sh
# test_public_header.sh - the front ends (src/, tui/) include no engine
# header but engine/engine.h, the engine's one public header (DESIGN rule
# 2): every other engine/*.h is the engine's own business.
srcdir="${TTYCHAT_SRCDIR:-$(dirname "$0")/..}"
fail=0
for h in "$srcdir"/engine/*.h "$srcdir"/engine/cuda/*.h; do
	name=$(basename "$h")
	[ "$name" = engine.h ] && continue
	hits=$(grep -l "^[[:space:]]*#[[:space:]]*include[[:space:]]*[\"<]\(.*/\)\{0,1\}$name[\">]" \
		"$srcdir"/src/*.[ch] "$srcdir"/tui/*.[ch] 2>/dev/null)
	for f in $hits; do
		echo "FAIL: ${f#"$srcdir"/} includes the engine-internal $name"
		fail=1
	done
done
[ $fail = 0 ] && echo "ok: src/ and tui/ include only engine.h of the engine's headers"
exit $fail
