//! StorageNode validation.

use super::{FieldErrors, ValidationErrors};
use crate::api::StorageNodeSpec;

/// Every problem of a StorageNode spec.
pub fn validate_storage_node(spec: &StorageNodeSpec) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();
    errors.object_name("spec.nodeName", &spec.node_name);
    errors.into_result()
}
