#!/usr/bin/env bash
# Compiles android-sample's Kotlin sources, with bindings/kotlin/src and the generated
# UniFFI binding, against the Android API 23 classes (android.jar from Debian bullseye,
# see scripts/setup-android.sh) and JNA. Nothing Android can run here (no SDK, no NDK),
# so this proves the sample and the binding layer compile for minSdk 23:
#   1. the generated binding (dev.tributary.ffi) is compiled against the JDK: it names
#      java.lang.ref.Cleaner, which it only loads when present (API 33+);
#   2. bindings/kotlin/src, the Android-only bindings/kotlin/android (connectivity,
#      lifecycle, JobScheduler, context) and the sample are compiled with -no-jdk against android.jar
#      alone, so any JDK or Android API newer than 23 fails the command;
#   3. the classes the manifest names must exist, and the manifest must be well-formed XML.
# Needs scripts/setup-kotlin.sh and scripts/setup-android.sh first.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
kotlin_home="$cache/kotlin-compiler-2.4.20"
kotlinc="$kotlin_home/bin/kotlinc"
android_jar="$cache/android-23/android.jar"
jna=/usr/share/java/jna.jar
target="${CARGO_TARGET_DIR:-$repo/target}"
build="$target/android-sample-build"
sample="android-sample/app/src/main"
cd "$repo"

[ -x "$kotlinc" ] || { echo "test-android-sample: no kotlinc; run scripts/setup-kotlin.sh" >&2; exit 1; }
[ -f "$android_jar" ] || { echo "test-android-sample: no $android_jar; run scripts/setup-android.sh" >&2; exit 1; }
[ -f "$jna" ] || { echo "test-android-sample: no $jna; run scripts/setup-kotlin.sh" >&2; exit 1; }

scripts/gen-kotlin.sh "$build/generated" debug >/dev/null
mkdir -p "$build"

hash_of() { (echo 2.4.20; find "$@" -type f \( -name '*.kt' -o -name '*.xml' \) | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1; }

ffi_jar="$build/tributary-ffi.jar"
ffi_stamp=$(hash_of "$build/generated")
if [ ! -f "$ffi_jar" ] || [ "$(cat "$ffi_jar.stamp" 2>/dev/null)" != "$ffi_stamp" ]; then
  rm -f "$ffi_jar" "$ffi_jar.stamp"
  echo "kotlinc: generated binding"
  "$kotlinc" -nowarn -jvm-target 1.8 -cp "$jna" "$build/generated" -d "$ffi_jar"
  echo "$ffi_stamp" >"$ffi_jar.stamp"
fi

sample_jar="$build/android-sample.jar"
sample_stamp=$( (echo "$ffi_stamp"; hash_of bindings/kotlin/src bindings/kotlin/android "$sample") | sha256sum | cut -d' ' -f1)
if [ ! -f "$sample_jar" ] || [ "$(cat "$sample_jar.stamp" 2>/dev/null)" != "$sample_stamp" ]; then
  rm -f "$sample_jar" "$sample_jar.stamp"
  echo "kotlinc -no-jdk against android.jar (API 23): bindings/kotlin/src + bindings/kotlin/android + $sample/kotlin"
  "$kotlinc" -no-jdk -jvm-target 1.8 -Werror \
    -cp "$android_jar:$ffi_jar:$jna" \
    bindings/kotlin/src bindings/kotlin/android "$sample/kotlin" -d "$sample_jar"
  echo "$sample_stamp" >"$sample_jar.stamp"
fi

python3 - "$sample/AndroidManifest.xml" "$sample_jar" <<'PY'
import sys, zipfile, xml.etree.ElementTree as ET
manifest, jar = sys.argv[1], sys.argv[2]
ns = "{http://schemas.android.com/apk/res/android}"
root = ET.parse(manifest).getroot()
package = "dev.tributary.sample"  # the namespace in app/build.gradle.kts
classes = set(zipfile.ZipFile(jar).namelist())
app = root.find("application")
named = [app.get(ns + "name")] + [a.get(ns + "name") for a in app.findall("activity") + app.findall("service")]
missing = []
for name in named:
    full = package + name if name.startswith(".") else name
    if full.replace(".", "/") + ".class" not in classes:
        missing.append(full)
if missing:
    sys.exit(f"test-android-sample: the manifest names classes that were not compiled: {missing}")
print(f"manifest ok: {', '.join(named)} compiled")
PY
echo "android-sample: compiled against android.jar API 23 ($(unzip -l "$sample_jar" | tail -n 1 | awk '{print $2}') files in $sample_jar)"
