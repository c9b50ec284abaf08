//! Generates the GnuTLS bindings from the system headers found through pkg-config.

use std::env;
use std::path::PathBuf;

use bindgen::callbacks::{MacroParsingBehavior, ParseCallbacks};

/// Headers of the `gnutls` pkg-config package that the bindings cover.
const HEADERS: &[&str] = &[
    "gnutls/gnutls.h",
    "gnutls/abstract.h",
    "gnutls/x509.h",
    "gnutls/dtls.h",
    "gnutls/pkcs11.h",
    "gnutls/crypto.h",
    "gnutls/urls.h",
    "gnutls/socket.h",
];

/// Macros whose names are also enum constants in the GnuTLS 3.7 headers, so bindgen would define
/// them twice (E0428). The enum constant is kept and the macro is skipped.
const DUPLICATE_MACROS: &[&str] = &[
    "GNUTLS_ALLOW_ID_CHANGE",
    "GNUTLS_CLIENT",
    "GNUTLS_DATAGRAM",
    "GNUTLS_ENABLE_FALSE_START",
    "GNUTLS_FORCE_CLIENT_CERT",
    "GNUTLS_NONBLOCK",
    "GNUTLS_NO_EXTENSIONS",
    "GNUTLS_NO_REPLAY_PROTECTION",
    "GNUTLS_NO_SIGNAL",
    "GNUTLS_NO_TICKETS",
    "GNUTLS_SERVER",
    "GNUTLS_TL_FAIL_ON_INVALID_CRL",
    "GNUTLS_TL_GET_COPY",
    "GNUTLS_TL_NO_DUPLICATES",
    "GNUTLS_TL_NO_DUPLICATE_KEY",
    "GNUTLS_TL_USE_IN_TLS",
    "GNUTLS_TL_VERIFY_CRL",
];

/// Tells bindgen to ignore the macros listed in [`DUPLICATE_MACROS`].
#[derive(Debug)]
struct SkipDuplicateMacros;

impl ParseCallbacks for SkipDuplicateMacros {
    fn will_parse_macro(&self, name: &str) -> MacroParsingBehavior {
        if DUPLICATE_MACROS.contains(&name) {
            MacroParsingBehavior::Ignore
        } else {
            MacroParsingBehavior::Default
        }
    }
}

fn main() {
    let gnutls = pkg_config::Config::new()
        .atleast_version("3.7")
        .probe("gnutls")
        .expect("pkg-config could not find gnutls >= 3.7; install libgnutls28-dev");

    // DANE is a separate library; bind it only where its pkg-config file is installed.
    let dane = pkg_config::Config::new().probe("gnutls-dane").ok();

    let mut wrapper = String::new();
    for header in HEADERS {
        wrapper.push_str(&format!("#include <{header}>\n"));
    }
    if dane.is_some() {
        wrapper.push_str("#include <gnutls/dane.h>\n");
        println!("cargo:rustc-cfg=gnutls_dane");
    }
    println!("cargo::rustc-check-cfg=cfg(gnutls_dane)");

    let mut builder = bindgen::Builder::default()
        .header_contents("tlspool_gnutls_wrapper.h", &wrapper)
        .allowlist_function("(gnutls|dane)_.*")
        .allowlist_type("(gnutls|dane)_.*")
        .allowlist_var("(GNUTLS|DANE|gnutls)_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(SkipDuplicateMacros))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in gnutls
        .include_paths
        .iter()
        .chain(dane.iter().flat_map(|d| d.include_paths.iter()))
    {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }

    let bindings = builder
        .generate()
        .expect("bindgen failed on the GnuTLS headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs to OUT_DIR failed");
}
