# Sourced (not run) by the scripts that build the shipped mobile library:
# scripts/bench-sdk-size.sh, scripts/build-android.sh, scripts/build-xcframework.sh.
#
# What the mobile library leaves out, and why it is safe:
# - cargo: `--no-default-features` drops the `ureq-transport` feature (ureq, rustls,
#   ring, webpki roots). The Kotlin and Swift layers send through the `Transport`
#   trait with the platform's HTTP stack, so Client::new is never called there.
# - SQLite (rusqlite's bundled amalgamation, configured by libsqlite3-sys from
#   LIBSQLITE3_FLAGS): the SDK's queue uses plain tables, indexes and WAL, so the
#   extensions libsqlite3-sys turns on (FTS3/4/5, R*Tree, dbstat, STAT4, soundex),
#   the JSON SQL functions, loadable extensions, shared cache and deprecated APIs
#   are compiled out. `-U` after libsqlite3-sys's own `-D` undoes it (flags apply
#   in order). Memory statistics are off (SQLite's recommended option: faster).
MOBILE_CARGO_FEATURES=(--no-default-features)
export LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_STAT4 -USQLITE_SOUNDEX -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_JSON -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_OMIT_DEPRECATED -DSQLITE_DEFAULT_MEMSTATUS=0"
