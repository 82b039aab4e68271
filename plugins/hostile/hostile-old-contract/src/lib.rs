//! A policy for a contract version the host does not run (`rapport:plugin@0.0.9`, from a WIT
//! copy in this crate, without the SDK). It looks like a policy (it exports `before` and
//! `after`), so only the version tells the host it cannot run it: installing it must fail with
//! that version in the error, and nothing may be registered.

wit_bindgen::generate!({ path: "wit", world: "policy" });

// The world `use`s `Change` and `Decision`, so the bindings bring them into this module.

struct Old;

impl Guest for Old {
    fn before(_change: Change) -> Decision {
        Decision::Allow
    }

    fn after(_change: Change) -> Vec<String> {
        Vec::new()
    }
}

export!(Old);
