//! The bindings of `skiff:service/platform`: every interface a component imports, generated
//! once here. Each component's own `generate!` maps these interfaces to this module with
//! `with`, so its exports use the same types as the kit's functions. wit-bindgen stubs the
//! imports out on native targets, so the kit still builds and tests natively.
// The generated canonical-ABI glue is the only unsafe code in the kit.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    world: "skiff:service/platform",
    path: "../../wit",
    generate_all,
});
