//! Salesforce at the edge of the flows: [`reads`] gathers what a plan needs, [`writes`] applies
//! a plan. Both speak only `mapping`'s types and the Salesforce client; no flow logic.

pub(crate) mod reads;
pub(crate) mod writes;

pub use writes::STATUS_MISSING;
