//! Counting an AWS client's requests by operation: what the tests assert and the benchmarks
//! report (a deterministic figure, unlike a duration).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// An interceptor counting every HTTP attempt by operation (`x-amz-target` without its
/// version prefix: `PutItem`, `PutEvents`, …). One serves any SDK client (the trait is
/// Smithy's); clones share their counts.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl RequestCounter {
    /// Every request so far.
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).values().sum()
    }

    /// The counts so far, counting again from zero.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or("?");
        let operation = target.rsplit('.').next().unwrap_or(target);
        // Which operations a run makes, and how large (to see what to batch).
        let bytes = request.body().bytes().map_or(0, <[u8]>::len);
        tracing::trace!(operation, bytes, "AWS request");
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation.to_owned())
            .or_default() += 1;
        Ok(())
    }
}
