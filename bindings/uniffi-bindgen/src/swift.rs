//! uniffi-bindgen-swift: generates the Swift bindings, headers and module map from the sdk-core cdylib.

#![deny(missing_docs)]

fn main() {
    uniffi::uniffi_bindgen_swift()
}
