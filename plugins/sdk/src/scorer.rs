use crate::{FeatureBatch, PluginError, ScoreBatch, ScorerSpec};

/// A scorer plugin: computes named scores for batches of customers.
///
/// The host asks [`Scorer::describe`] which features to compute, computes them inside the store,
/// and calls [`Scorer::score`] with a batch of customers as columns. A scorer that must see the
/// whole organization first (a fitted model) sets `needs_fit` and implements [`Scorer::fit`].
pub trait Scorer {
    fn describe() -> Result<ScorerSpec, PluginError>;

    /// Fit a model on the whole organization; the bytes come back in every `score` call.
    fn fit(population: FeatureBatch) -> Result<Vec<u8>, PluginError> {
        let _ = population;
        Ok(Vec::new())
    }

    fn score(batch: FeatureBatch, model: Vec<u8>) -> Result<ScoreBatch, PluginError>;
}

/// Export a [`Scorer`] as this component's implementation of the `scorer` world.
#[macro_export]
macro_rules! export_scorer {
    ($ty:ty) => {
        const _: () = {
            struct RapportScorer;
            impl $crate::bindings::Guest for RapportScorer {
                fn describe() -> Result<$crate::ScorerSpec, $crate::PluginError> {
                    $crate::__init();
                    <$ty as $crate::Scorer>::describe()
                }
                fn fit(population: $crate::FeatureBatch) -> Result<Vec<u8>, $crate::PluginError> {
                    $crate::__init();
                    <$ty as $crate::Scorer>::fit(population)
                }
                fn score(
                    batch: $crate::FeatureBatch,
                    model: Vec<u8>,
                ) -> Result<$crate::ScoreBatch, $crate::PluginError> {
                    $crate::__init();
                    <$ty as $crate::Scorer>::score(batch, model)
                }
            }
    $crate::bindings::__export_world!(RapportScorer with_types_in $crate::bindings);
        };
    };
}
