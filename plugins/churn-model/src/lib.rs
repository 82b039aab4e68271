//! Churn risk for Rapport, free of the plugin SDK so that its tests run natively
//! (`cargo test -p churn-model --target x86_64-unknown-linux-gnu`): the factors of one customer
//! and the logistic model that weighs them (`logic`), and the model's fit to an organization's own
//! history (`fit`). Shared by the `churn-risk` scorer and the `churn-fit` reporter, which must
//! compute the same factors and the same fit; with the `sdk` feature (the plugins' builds only)
//! also the timeline they both read (`sdk`).

mod logic;

pub mod fit;
#[cfg(feature = "sdk")]
pub mod sdk;

pub use logic::*;
