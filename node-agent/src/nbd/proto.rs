//! Wire constants and encodings of the NBD protocol (NetworkBlockDevice/nbd `doc/proto.md`),
//! limited to what a read-only, fixed-newstyle server with simple replies needs. All integers
//! are big-endian.

/// `NBDMAGIC`, first 8 bytes the server sends.
pub const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: second 8 bytes of the greeting and the prefix of every client option.
pub const OPTION_MAGIC: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Structured reply chunks.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Transmission flags.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const FLAG_READ_ONLY: u16 = 1 << 1;
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// What every export advertises: read-only, flush accepted (a no-op: nothing is ever
/// written), and several connections may be used at once since there is no write to order.
pub const EXPORT_FLAGS: u16 =
    FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH | FLAG_CAN_MULTI_CONN;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;

// Info types in NBD_REP_INFO.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Commands.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

// Errors in simple replies (errno values fixed by the protocol, not the host's).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;

/// Largest read or write payload served (advertised as the maximum block size); larger
/// requests are refused rather than buffered.
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Largest option payload accepted during the handshake (names are ≤ 4096 bytes).
pub const MAX_OPTION_LEN: u32 = 64 << 10;

/// The header of an option reply.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A simple reply header (followed by the data of a successful read).
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// The header of a structured reply chunk (20 bytes), followed by `length` payload bytes.
pub fn chunk_header(flags: u16, kind: u16, cookie: u64, length: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..].copy_from_slice(&length.to_be_bytes());
    out
}

/// The final reply to a request: a simple reply, or a structured NONE / ERROR chunk (the
/// error chunk carries `message`, which clients such as qemu show to the user).
pub fn final_reply(structured: bool, error: u32, cookie: u64, message: &str) -> Vec<u8> {
    if !structured {
        return simple_reply(error, cookie).to_vec();
    }
    if error == 0 {
        return chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0).to_vec();
    }
    // Messages are short; cut at a char boundary well under the u16 limit.
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message.as_bytes()[..end];
    let mut out = chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        cookie,
        6 + message.len() as u32,
    )
    .to_vec();
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// A transmission request (28 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub magic: u32,
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl Request {
    pub const LEN: usize = 28;

    pub fn parse(b: &[u8; Self::LEN]) -> Self {
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Self {
            magic: u32_at(0),
            flags: u16_at(4),
            kind: u16_at(6),
            cookie: u64_at(8),
            offset: u64_at(16),
            length: u32_at(24),
        }
    }
}

/// The payload of NBD_OPT_INFO / NBD_OPT_GO: an export name and the info types requested.
#[derive(Debug, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub requests: Vec<u16>,
}

impl InfoRequest {
    /// Parses the option data; `None` when its lengths are inconsistent or the name is not
    /// UTF-8 (answered with NBD_REP_ERR_INVALID).
    pub fn parse(data: &[u8]) -> Option<Self> {
        let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(data.get(4..4 + name_len)?).ok()?;
        let rest = data.get(4 + name_len..)?;
        let count = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let list = rest.get(2..)?;
        if list.len() != count * 2 {
            return None;
        }
        let requests = list
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Some(Self {
            name: name.to_owned(),
            requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_info_request_with_a_name_and_two_info_types_parses() {
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&2u16.to_be_bytes());
        data.extend_from_slice(&INFO_NAME.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        let req = InfoRequest::parse(&data).expect("valid");
        assert_eq!(req.name, "vol");
        assert_eq!(req.requests, vec![INFO_NAME, INFO_BLOCK_SIZE]);
    }

    #[test]
    fn an_info_request_whose_lengths_disagree_is_invalid() {
        let mut data = 9u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"vol\0\0");
        assert_eq!(InfoRequest::parse(&data), None);
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&2u16.to_be_bytes());
        data.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(InfoRequest::parse(&data), None, "one of two info types");
    }

    #[test]
    fn a_request_header_parses_big_endian_fields() {
        let mut b = [0u8; Request::LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[6..8].copy_from_slice(&CMD_READ.to_be_bytes());
        b[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        b[16..24].copy_from_slice(&(5u64 << 32 | 7).to_be_bytes());
        b[24..].copy_from_slice(&4096u32.to_be_bytes());
        let r = Request::parse(&b);
        assert_eq!(r.magic, REQUEST_MAGIC);
        assert_eq!(r.kind, CMD_READ);
        assert_eq!(r.cookie, 0x0102_0304_0506_0708);
        assert_eq!(r.offset, 5u64 << 32 | 7);
        assert_eq!(r.length, 4096);
    }
}
