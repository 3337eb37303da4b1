//! uniffi-bindgen: generates the Kotlin bindings from the sdk-core cdylib (library mode).

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

fn main() {
    uniffi::uniffi_bindgen_main()
}
