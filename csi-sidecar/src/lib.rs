//! CSI proxy in the Mayastor CSI controller pod: tier placement at CreateVolume, rehydration at ControllerPublishVolume, archive cleanup at DeleteVolume.
//!
//! This crate is a placeholder in the workspace; issue #5 builds it. It holds no code
//! yet, so nothing can mistake it for a working component.
