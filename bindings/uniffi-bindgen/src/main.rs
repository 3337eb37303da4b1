//! uniffi-bindgen: generates the Kotlin bindings from the sdk-core cdylib (library mode).

#![deny(missing_docs)]

fn main() {
    uniffi::uniffi_bindgen_main()
}
