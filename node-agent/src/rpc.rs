//! The node-agent gRPC API (`proto/couchestor/agent/v1/agent.proto`): the server over a
//! [`ShardStore`](crate::store::ShardStore) and a typed client. See `docs/node-agent-api.md`.

mod client;
mod orders;
mod server;

use tonic::{Code, Status};

use crate::store;

pub use client::{AgentClient, ClientError, PutAck, ShardRead, StripeRead, chunks};
pub use couchestor_proto::agent::v1 as pb;
pub use orders::{Orders, WorkStream, report_from_pb};
pub use server::{AgentIdentity, AgentService};

/// Shard bytes per message. Shards larger than this are split; with the other fields a
/// message stays well under [`MAX_MESSAGE_BYTES`].
pub const CHUNK_BYTES: usize = 2 << 20;
/// Largest message the agent decodes (tonic's default, set explicitly because the chunking
/// above depends on it). A bigger message is refused with `OUT_OF_RANGE`.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Most stripes one `GetShards` call may ask for.
pub const MAX_STRIPES_PER_GET: u64 = 65_536;

/// The one mapping from store errors to gRPC statuses.
impl From<store::Error> for Status {
    fn from(e: store::Error) -> Self {
        use store::Error as E;
        let code = match &e {
            E::UnknownVolume { .. } | E::NotFound { .. } => Code::NotFound,
            E::Corrupt { .. } | E::NeedsRepair { .. } => Code::DataLoss,
            E::Id(_)
            | E::InvalidLayout { .. }
            | E::ColumnOutOfRange { .. }
            | E::StripeOutOfRange { .. }
            | E::PayloadTooLarge { .. } => Code::InvalidArgument,
            E::LayoutConflict { .. } | E::DiskMissing { .. } => Code::FailedPrecondition,
            E::NoDisks | E::Io { .. } | E::Index { .. } | E::Schema { .. } | E::Metadata { .. } => {
                Code::Internal
            }
        };
        match code {
            Code::Internal | Code::DataLoss => tracing::error!(error = %e, "shard store failed"),
            _ => tracing::warn!(error = %e, "request refused"),
        }
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_the_grpc_codes_a_caller_can_act_on() {
        let cases = [
            (
                store::Error::UnknownVolume { volume: "v".into() },
                Code::NotFound,
            ),
            (
                store::Error::Corrupt {
                    volume: "v".into(),
                    column: 1,
                    stripe: 2,
                    path: "/x".into(),
                    reason: "crc".into(),
                },
                Code::DataLoss,
            ),
            (
                store::Error::ColumnOutOfRange {
                    volume: "v".into(),
                    column: 9,
                    columns: 3,
                },
                Code::InvalidArgument,
            ),
            (
                store::Error::DiskMissing {
                    volume: "v".into(),
                    column: 0,
                    disk: "/d".into(),
                },
                Code::FailedPrecondition,
            ),
            (store::Error::NoDisks, Code::Internal),
        ];
        for (error, code) in cases {
            let text = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }
}
