#!/usr/bin/env bash
# Kotlin bindings on the JVM: builds sdk-core's cdylib (debug), generates the Kotlin binding
# from it (scripts/gen-kotlin.sh; never committed, so never stale), compiles the generated
# code + bindings/kotlin/src + bindings/kotlin/tests with kotlinc, and runs the tests with
# JNA against the real library, then compiles bindings/kotlin/tests-java with javac and
# runs it (the library as Java code sees it). Exits non-zero on any failure; the last
# lines are
#   kotlin: N passed, M failed
#   java: all passed
# Needs scripts/setup-kotlin.sh first. Extra arguments select tests by name substring.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
kotlin_home="$cache/kotlin-compiler-2.4.20"
jna=/usr/share/java/jna.jar
target="${CARGO_TARGET_DIR:-$repo/target}"
build="$target/kotlin-build"
cd "$repo"

[ -x "$kotlin_home/bin/kotlinc" ] || { echo "test-kotlin: no kotlinc in $kotlin_home; run scripts/setup-kotlin.sh" >&2; exit 1; }
[ -f "$jna" ] || { echo "test-kotlin: no $jna; run scripts/setup-kotlin.sh" >&2; exit 1; }

lib=$(scripts/gen-kotlin.sh "$build/generated" debug | tail -n 1)
mkdir -p "$build"

# kotlinc takes ~10 s: skip it when no source (generated or written) changed since the last run.
sources=("$build/generated" bindings/kotlin/src bindings/kotlin/tests)
stamp=$( (echo 2.4.20; find "${sources[@]}" -name '*.kt' -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1)
jar="$build/kotlin-tests.jar"
if [ ! -f "$jar" ] || [ "$(cat "$jar.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -f "$jar" "$jar.stamp"
  echo "kotlinc: compiling the generated binding, bindings/kotlin/src and tests"
  "$kotlin_home/bin/kotlinc" -nowarn -jvm-target 17 \
    -cp "$jna:$kotlin_home/lib/kotlin-test.jar" \
    "${sources[@]}" -d "$jar"
  echo "$stamp" >"$jar.stamp"
fi

runtime_cp="$jar:$jna:$kotlin_home/lib/kotlin-stdlib.jar:$kotlin_home/lib/kotlin-test.jar"
java -Djna.library.path="$(dirname "$lib")" -Djna.nosys=false \
  -cp "$runtime_cp" dev.tributary.tests.MainKt "$@"

# The Java API test: compiled with javac against the compiled library, then run.
if [ "$#" -eq 0 ]; then
  java_out="$build/java-tests"
  rm -rf "$java_out"
  mkdir -p "$java_out"
  echo "javac: bindings/kotlin/tests-java"
  javac -Werror -Xlint:all,-processing -d "$java_out" -cp "$runtime_cp" \
    $(find bindings/kotlin/tests-java -name '*.java' | LC_ALL=C sort)
  java -Djna.library.path="$(dirname "$lib")" -Djna.nosys=false \
    -cp "$java_out:$runtime_cp" dev.tributary.javatests.JavaApiTest
fi
