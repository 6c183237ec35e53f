//! SMPP 3.4 PDUs: the types chogate speaks, decoding from one frame and encoding into a
//! buffer.
//!
//! Decoding never reads past the frame it is given (framing cuts by `command_length`
//! first, see [`super::frame`]), keeps unknown TLVs, and reports what is wrong with a
//! malformed PDU together with its header, so the session can answer `generic_nack` with
//! the right sequence number and carry on.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::status;

/// Length of the PDU header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Command ids (SMPP 3.4 section 5.1.2.1).
pub mod cmd {
    /// generic_nack.
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    /// bind_receiver.
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    /// bind_transmitter.
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    /// query_sm (recognised, not served).
    pub const QUERY_SM: u32 = 0x0000_0003;
    /// submit_sm.
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    /// deliver_sm.
    pub const DELIVER_SM: u32 = 0x0000_0005;
    /// unbind.
    pub const UNBIND: u32 = 0x0000_0006;
    /// replace_sm (recognised, not served).
    pub const REPLACE_SM: u32 = 0x0000_0007;
    /// cancel_sm (recognised, not served).
    pub const CANCEL_SM: u32 = 0x0000_0008;
    /// bind_transceiver.
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    /// outbind.
    pub const OUTBIND: u32 = 0x0000_000B;
    /// enquire_link.
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    /// submit_multi (recognised, not served).
    pub const SUBMIT_MULTI: u32 = 0x0000_0021;
    /// alert_notification (recognised, not served; it has no response).
    pub const ALERT_NOTIFICATION: u32 = 0x0000_0102;
    /// data_sm.
    pub const DATA_SM: u32 = 0x0000_0103;
    /// The bit that marks a response.
    pub const RESP: u32 = 0x8000_0000;
}

/// TLV tags chogate reads or writes.
pub mod tag {
    /// user_message_reference (2 octets).
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    /// sc_interface_version (1 octet), in bind responses.
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    /// receipted_message_id (C-string).
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    /// message_state (1 octet).
    pub const MESSAGE_STATE: u16 = 0x0427;
    /// message_payload (long text instead of short_message).
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    /// ussd_service_op (1 octet).
    pub const USSD_SERVICE_OP: u16 = 0x0501;
    /// its_session_info (2 octets: session number, end-of-dialogue bit).
    pub const ITS_SESSION_INFO: u16 = 0x1383;
    /// network_error_code (3 octets).
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
}

/// Maximum lengths of C-Octet strings, terminating NUL included (SMPP 3.4 section 4).
mod max {
    pub const SYSTEM_ID: usize = 16;
    pub const PASSWORD: usize = 9;
    pub const SYSTEM_TYPE: usize = 13;
    pub const ADDRESS_RANGE: usize = 41;
    pub const SERVICE_TYPE: usize = 6;
    /// 21 in 3.4 for submit_sm, 65 for data_sm; accepted up to 65 everywhere when decoding.
    pub const ADDR: usize = 65;
    pub const TIME: usize = 17;
    pub const MESSAGE_ID: usize = 65;
    pub const SHORT_MESSAGE: usize = 254;
}

/// What is wrong with a PDU that could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// command_length below the 16-octet header.
    #[error("command_length {0} is shorter than the header")]
    TooShort(u32),
    /// command_length disagrees with the frame given.
    #[error("command_length {declared} but the frame has {actual} octets")]
    LengthMismatch {
        /// command_length in the header.
        declared: u32,
        /// octets in the frame.
        actual: usize,
    },
    /// A command id that is not SMPP 3.4, or one chogate does not serve.
    #[error("unknown or unsupported command_id 0x{0:08X}")]
    UnknownCommand(u32),
    /// The body ends inside a mandatory field.
    #[error("body ends inside field {0}")]
    Truncated(&'static str),
    /// A C-Octet string has no NUL within its maximum length.
    #[error("field {0} is not NUL-terminated within its maximum length")]
    Unterminated(&'static str),
    /// A field's value is outside what SMPP allows (a C-Octet string that is not text,
    /// sm_length above 254).
    #[error("field {0} has a value SMPP does not allow")]
    BadValue(&'static str),
    /// A TLV's length runs past the end of the body.
    #[error("TLV 0x{tag:04X} declares {len} octets, {left} left")]
    BadTlv {
        /// the TLV tag.
        tag: u16,
        /// its declared length.
        len: u16,
        /// octets left in the body.
        left: usize,
    },
    /// Octets after the mandatory fields of a PDU that takes no TLVs.
    #[error("{0} trailing octets after the body")]
    Trailing(usize),
    /// A field too long to encode (checked before anything is sent).
    #[error("field {field} is {len} octets, at most {max}")]
    FieldTooLong {
        /// field name.
        field: &'static str,
        /// its length.
        len: usize,
        /// the limit.
        max: usize,
    },
}

impl PduError {
    /// The `command_status` of the `generic_nack` that answers this error.
    pub fn nack_status(&self) -> u32 {
        match self {
            PduError::UnknownCommand(_) => status::ESME_RINVCMDID,
            _ => status::ESME_RINVCMDLEN,
        }
    }
}

/// The first 16 octets of a PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total length including the header.
    pub command_length: u32,
    /// Command id.
    pub command_id: u32,
    /// Command status.
    pub command_status: u32,
    /// Sequence number.
    pub sequence: u32,
}

impl Header {
    /// Reads a header from the first 16 octets; `None` when fewer are given.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let word = |i: usize| -> Option<u32> {
            let b = buf.get(i..i + 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        Some(Header {
            command_length: word(0)?,
            command_id: word(4)?,
            command_status: word(8)?,
            sequence: word(12)?,
        })
    }

    /// Whether the command id marks a response.
    pub fn is_response(&self) -> bool {
        self.command_id & cmd::RESP != 0
    }
}

/// A TLV (optional parameter), kept as raw octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// Tag.
    pub tag: u16,
    /// Value octets.
    pub value: Bytes,
}

/// The TLVs of a PDU in wire order; unknown tags are kept and re-encoded as they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs(pub Vec<Tlv>);

impl Tlvs {
    /// The value of the first TLV with this tag.
    pub fn get(&self, tag: u16) -> Option<&Bytes> {
        self.0.iter().find(|t| t.tag == tag).map(|t| &t.value)
    }

    /// A one-octet TLV value (first octet of a longer one).
    pub fn get_u8(&self, tag: u16) -> Option<u8> {
        self.get(tag).and_then(|v| v.first().copied())
    }

    /// A two-octet big-endian TLV value.
    pub fn get_u16(&self, tag: u16) -> Option<u16> {
        let v = self.get(tag)?;
        Some(u16::from_be_bytes([*v.first()?, *v.get(1)?]))
    }

    /// A C-string TLV value, without its NUL (lossy UTF-8).
    pub fn get_cstr(&self, tag: u16) -> Option<String> {
        let v = self.get(tag)?;
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        Some(String::from_utf8_lossy(&v[..end]).into_owned())
    }

    /// Sets a TLV, replacing an existing one with the same tag.
    pub fn set(&mut self, tag: u16, value: impl Into<Bytes>) {
        let value = value.into();
        match self.0.iter_mut().find(|t| t.tag == tag) {
            Some(t) => t.value = value,
            None => self.0.push(Tlv { tag, value }),
        }
    }

    /// Removes every TLV with this tag.
    pub fn remove(&mut self, tag: u16) {
        self.0.retain(|t| t.tag != tag);
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn encoded_len(&self) -> usize {
        self.0.iter().map(|t| 4 + t.value.len()).sum()
    }
}

/// Which kind of bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindKind {
    /// bind_receiver: the ESME only receives.
    Receiver,
    /// bind_transmitter: the ESME only sends.
    Transmitter,
    /// bind_transceiver: both.
    Transceiver,
}

impl BindKind {
    /// Whether the ESME bound this way may send messages (submit_sm, data_sm).
    pub fn esme_transmits(self) -> bool {
        matches!(self, BindKind::Transmitter | BindKind::Transceiver)
    }

    /// Whether the ESME bound this way may receive messages (deliver_sm, data_sm).
    pub fn esme_receives(self) -> bool {
        matches!(self, BindKind::Receiver | BindKind::Transceiver)
    }

    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BindKind::Receiver => "receiver",
            BindKind::Transmitter => "transmitter",
            BindKind::Transceiver => "transceiver",
        }
    }
}

/// An SME address: type of number, numbering plan, digits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// Type of number (1 = international).
    pub ton: u8,
    /// Numbering plan indicator (1 = E.164).
    pub npi: u8,
    /// The address itself.
    pub addr: String,
}

impl Address {
    /// An international E.164 number (TON 1, NPI 1).
    pub fn international(addr: impl Into<String>) -> Self {
        Address { ton: 1, npi: 1, addr: addr.into() }
    }
}

/// bind_transmitter / bind_receiver / bind_transceiver body. Its `Debug` never shows the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Bind {
    /// Which bind.
    pub kind: BindKind,
    /// Account name.
    pub system_id: String,
    /// Password (never logged).
    pub password: String,
    /// System type.
    pub system_type: String,
    /// interface_version, 0x34 for SMPP 3.4.
    pub interface_version: u8,
    /// addr_ton.
    pub addr_ton: u8,
    /// addr_npi.
    pub addr_npi: u8,
    /// address_range.
    pub address_range: String,
}

impl fmt::Debug for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bind")
            .field("kind", &self.kind)
            .field("system_id", &self.system_id)
            .field("password", &"***")
            .field("system_type", &self.system_type)
            .field("interface_version", &self.interface_version)
            .field("addr_ton", &self.addr_ton)
            .field("addr_npi", &self.addr_npi)
            .field("address_range", &self.address_range)
            .finish()
    }
}

impl fmt::Debug for Outbind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbind").field("system_id", &self.system_id).field("password", &"***").finish()
    }
}

impl Bind {
    /// A 3.4 bind with empty type and range.
    pub fn new(kind: BindKind, system_id: impl Into<String>, password: impl Into<String>) -> Self {
        Bind {
            kind,
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            interface_version: 0x34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        }
    }
}

/// bind_*_resp body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindResp {
    /// Which bind this answers.
    pub kind: BindKind,
    /// The SMSC's system id.
    pub system_id: String,
    /// TLVs (sc_interface_version).
    pub tlvs: Tlvs,
}

/// submit_sm / deliver_sm body (same layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sm {
    /// service_type ("USSD" for USSD dialogues).
    pub service_type: String,
    /// Source address.
    pub source: Address,
    /// Destination address.
    pub dest: Address,
    /// esm_class (always set explicitly: 0 default, 0x04 receipt, 0x40 UDHI).
    pub esm_class: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time.
    pub schedule_delivery_time: String,
    /// validity_period.
    pub validity_period: String,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// data_coding (0 default alphabet, 8 UCS2).
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// short_message (at most 254 octets).
    pub short_message: Bytes,
    /// TLVs.
    pub tlvs: Tlvs,
}

impl Sm {
    /// The message text octets: `message_payload` when present, else `short_message`.
    pub fn payload(&self) -> &Bytes {
        self.tlvs.get(tag::MESSAGE_PAYLOAD).unwrap_or(&self.short_message)
    }
}

/// data_sm body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSm {
    /// service_type.
    pub service_type: String,
    /// Source address.
    pub source: Address,
    /// Destination address.
    pub dest: Address,
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// data_coding.
    pub data_coding: u8,
    /// TLVs (the text is in message_payload).
    pub tlvs: Tlvs,
}

/// submit_sm_resp / deliver_sm_resp / data_sm_resp body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageIdResp {
    /// The message id given by the receiver (empty in deliver_sm_resp).
    pub message_id: String,
    /// TLVs (data_sm_resp may carry some).
    pub tlvs: Tlvs,
}

/// outbind body. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Outbind {
    /// The SMSC's system id.
    pub system_id: String,
    /// Password.
    pub password: String,
}

/// The body of a PDU; it determines the command id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// bind_receiver / bind_transmitter / bind_transceiver.
    Bind(Bind),
    /// bind_*_resp.
    BindResp(BindResp),
    /// outbind.
    Outbind(Outbind),
    /// unbind.
    Unbind,
    /// unbind_resp.
    UnbindResp,
    /// enquire_link.
    EnquireLink,
    /// enquire_link_resp.
    EnquireLinkResp,
    /// generic_nack.
    GenericNack,
    /// submit_sm.
    SubmitSm(Box<Sm>),
    /// submit_sm_resp.
    SubmitSmResp(MessageIdResp),
    /// deliver_sm.
    DeliverSm(Box<Sm>),
    /// deliver_sm_resp.
    DeliverSmResp(MessageIdResp),
    /// data_sm.
    DataSm(Box<DataSm>),
    /// data_sm_resp.
    DataSmResp(MessageIdResp),
}

impl Body {
    /// The command id this body is sent with.
    pub fn command_id(&self) -> u32 {
        let bind_id = |kind: BindKind| match kind {
            BindKind::Receiver => cmd::BIND_RECEIVER,
            BindKind::Transmitter => cmd::BIND_TRANSMITTER,
            BindKind::Transceiver => cmd::BIND_TRANSCEIVER,
        };
        match self {
            Body::Bind(b) => bind_id(b.kind),
            Body::BindResp(r) => bind_id(r.kind) | cmd::RESP,
            Body::Outbind(_) => cmd::OUTBIND,
            Body::Unbind => cmd::UNBIND,
            Body::UnbindResp => cmd::UNBIND | cmd::RESP,
            Body::EnquireLink => cmd::ENQUIRE_LINK,
            Body::EnquireLinkResp => cmd::ENQUIRE_LINK | cmd::RESP,
            Body::GenericNack => cmd::GENERIC_NACK,
            Body::SubmitSm(_) => cmd::SUBMIT_SM,
            Body::SubmitSmResp(_) => cmd::SUBMIT_SM | cmd::RESP,
            Body::DeliverSm(_) => cmd::DELIVER_SM,
            Body::DeliverSmResp(_) => cmd::DELIVER_SM | cmd::RESP,
            Body::DataSm(_) => cmd::DATA_SM,
            Body::DataSmResp(_) => cmd::DATA_SM | cmd::RESP,
        }
    }
}

/// One PDU: header fields plus a typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// command_status (0 in requests).
    pub status: u32,
    /// sequence_number.
    pub sequence: u32,
    /// The body; it determines command_id.
    pub body: Body,
}

/// A PDU that could not be decoded, with what is known of its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeFailure {
    /// The header, when 16 octets were there.
    pub header: Option<Header>,
    /// What is wrong.
    pub error: PduError,
}

impl Pdu {
    /// A request or response with status 0.
    pub fn new(sequence: u32, body: Body) -> Self {
        Pdu { status: status::ESME_ROK, sequence, body }
    }

    /// The command id.
    pub fn command_id(&self) -> u32 {
        self.body.command_id()
    }

    /// Whether this PDU is a response (generic_nack included).
    pub fn is_response(&self) -> bool {
        self.command_id() & cmd::RESP != 0
    }

    /// Decodes one whole frame (exactly `command_length` octets, header included).
    /// Slices of the frame are shared, not copied.
    pub fn decode(frame: &Bytes) -> Result<Pdu, DecodeFailure> {
        let header = Header::parse(frame)
            .ok_or(DecodeFailure { header: None, error: PduError::Truncated("header") })?;
        let fail = |error| DecodeFailure { header: Some(header), error };
        if header.command_length < HEADER_LEN as u32 {
            return Err(fail(PduError::TooShort(header.command_length)));
        }
        if header.command_length as usize != frame.len() {
            return Err(fail(PduError::LengthMismatch {
                declared: header.command_length,
                actual: frame.len(),
            }));
        }
        let mut r = Reader { buf: frame.slice(HEADER_LEN..), pos: 0 };
        let body = decode_body(header.command_id, header.command_status, &mut r).map_err(fail)?;
        Ok(Pdu { status: header.command_status, sequence: header.sequence, body })
    }

    /// Appends the encoded PDU to `out`; on error `out` is left as it was.
    pub fn encode_into(&self, out: &mut BytesMut) -> Result<(), PduError> {
        let start = out.len();
        out.reserve(HEADER_LEN + 64);
        out.put_u32(0);
        out.put_u32(self.command_id());
        out.put_u32(self.status);
        out.put_u32(self.sequence);
        if let Err(e) = encode_body(&self.body, self.status, out) {
            out.truncate(start);
            return Err(e);
        }
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// The encoded PDU as one buffer.
    pub fn to_bytes(&self) -> Result<Bytes, PduError> {
        let mut out = BytesMut::new();
        self.encode_into(&mut out)?;
        Ok(out.freeze())
    }
}

/// A cursor over a body that never reads past its end.
struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, PduError> {
        let b = *self.buf.get(self.pos).ok_or(PduError::Truncated(field))?;
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, PduError> {
        let hi = self.u8(field)?;
        let lo = self.u8(field)?;
        Ok(u16::from_be_bytes([hi, lo]))
    }

    fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, PduError> {
        if self.left() < n {
            return Err(PduError::Truncated(field));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// A C-Octet string of at most `max` octets including the NUL.
    fn cstr(&mut self, max: usize, field: &'static str) -> Result<String, PduError> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(max)];
        match window.iter().position(|&b| b == 0) {
            Some(n) => {
                // C-Octet strings are ASCII text; anything that is not UTF-8 is refused rather
                // than replaced, which would make the string longer than its field.
                let s = std::str::from_utf8(&window[..n]).map_err(|_| PduError::BadValue(field))?.to_owned();
                self.pos += n + 1;
                Ok(s)
            }
            None if rest.len() < max => Err(PduError::Truncated(field)),
            None => Err(PduError::Unterminated(field)),
        }
    }

    fn address(&mut self, field: &'static str) -> Result<Address, PduError> {
        Ok(Address { ton: self.u8(field)?, npi: self.u8(field)?, addr: self.cstr(max::ADDR, field)? })
    }

    fn tlvs(&mut self) -> Result<Tlvs, PduError> {
        let mut tlvs = Vec::new();
        while self.left() > 0 {
            if self.left() < 4 {
                return Err(PduError::BadTlv { tag: 0, len: 0, left: self.left() });
            }
            let tag = self.u16("tlv")?;
            let len = self.u16("tlv")?;
            if usize::from(len) > self.left() {
                return Err(PduError::BadTlv { tag, len, left: self.left() });
            }
            let value = self.bytes(usize::from(len), "tlv")?;
            tlvs.push(Tlv { tag, value });
        }
        Ok(Tlvs(tlvs))
    }

    fn end(&self) -> Result<(), PduError> {
        match self.left() {
            0 => Ok(()),
            n => Err(PduError::Trailing(n)),
        }
    }
}

fn decode_bind(kind: BindKind, r: &mut Reader) -> Result<Body, PduError> {
    let bind = Bind {
        kind,
        system_id: r.cstr(max::SYSTEM_ID, "system_id")?,
        password: r.cstr(max::PASSWORD, "password")?,
        system_type: r.cstr(max::SYSTEM_TYPE, "system_type")?,
        interface_version: r.u8("interface_version")?,
        addr_ton: r.u8("addr_ton")?,
        addr_npi: r.u8("addr_npi")?,
        address_range: r.cstr(max::ADDRESS_RANGE, "address_range")?,
    };
    r.end()?;
    Ok(Body::Bind(bind))
}

fn decode_sm(r: &mut Reader) -> Result<Sm, PduError> {
    let mut sm = Sm {
        service_type: r.cstr(max::SERVICE_TYPE, "service_type")?,
        source: r.address("source_addr")?,
        dest: r.address("destination_addr")?,
        esm_class: r.u8("esm_class")?,
        protocol_id: r.u8("protocol_id")?,
        priority_flag: r.u8("priority_flag")?,
        schedule_delivery_time: r.cstr(max::TIME, "schedule_delivery_time")?,
        validity_period: r.cstr(max::TIME, "validity_period")?,
        registered_delivery: r.u8("registered_delivery")?,
        replace_if_present_flag: r.u8("replace_if_present_flag")?,
        data_coding: r.u8("data_coding")?,
        sm_default_msg_id: r.u8("sm_default_msg_id")?,
        ..Sm::default()
    };
    let sm_length = r.u8("sm_length")?;
    if usize::from(sm_length) > max::SHORT_MESSAGE {
        return Err(PduError::BadValue("sm_length"));
    }
    sm.short_message = r.bytes(usize::from(sm_length), "short_message")?;
    sm.tlvs = r.tlvs()?;
    Ok(sm)
}

/// A response body that may be absent when the status is not 0 (SMPP 3.4 leaves it out).
fn decode_message_id_resp(status: u32, r: &mut Reader) -> Result<MessageIdResp, PduError> {
    if r.left() == 0 && status != status::ESME_ROK {
        return Ok(MessageIdResp::default());
    }
    let message_id = r.cstr(max::MESSAGE_ID, "message_id")?;
    Ok(MessageIdResp { message_id, tlvs: r.tlvs()? })
}

fn decode_body(command_id: u32, status: u32, r: &mut Reader) -> Result<Body, PduError> {
    let empty = |r: &mut Reader, body: Body| r.end().map(|()| body);
    let bind_resp = |kind, r: &mut Reader| -> Result<Body, PduError> {
        if r.left() == 0 && status != status::ESME_ROK {
            return Ok(Body::BindResp(BindResp { kind, system_id: String::new(), tlvs: Tlvs::default() }));
        }
        let system_id = r.cstr(max::SYSTEM_ID, "system_id")?;
        Ok(Body::BindResp(BindResp { kind, system_id, tlvs: r.tlvs()? }))
    };
    match command_id {
        cmd::BIND_RECEIVER => decode_bind(BindKind::Receiver, r),
        cmd::BIND_TRANSMITTER => decode_bind(BindKind::Transmitter, r),
        cmd::BIND_TRANSCEIVER => decode_bind(BindKind::Transceiver, r),
        x if x == cmd::BIND_RECEIVER | cmd::RESP => bind_resp(BindKind::Receiver, r),
        x if x == cmd::BIND_TRANSMITTER | cmd::RESP => bind_resp(BindKind::Transmitter, r),
        x if x == cmd::BIND_TRANSCEIVER | cmd::RESP => bind_resp(BindKind::Transceiver, r),
        cmd::OUTBIND => {
            let system_id = r.cstr(max::SYSTEM_ID, "system_id")?;
            let password = r.cstr(max::PASSWORD, "password")?;
            empty(r, Body::Outbind(Outbind { system_id, password }))
        }
        cmd::UNBIND => empty(r, Body::Unbind),
        x if x == cmd::UNBIND | cmd::RESP => empty(r, Body::UnbindResp),
        cmd::ENQUIRE_LINK => empty(r, Body::EnquireLink),
        x if x == cmd::ENQUIRE_LINK | cmd::RESP => empty(r, Body::EnquireLinkResp),
        // A generic_nack is answered by nothing; tolerate a stray body rather than loop.
        cmd::GENERIC_NACK => Ok(Body::GenericNack),
        cmd::SUBMIT_SM => Ok(Body::SubmitSm(Box::new(decode_sm(r)?))),
        cmd::DELIVER_SM => Ok(Body::DeliverSm(Box::new(decode_sm(r)?))),
        x if x == cmd::SUBMIT_SM | cmd::RESP => Ok(Body::SubmitSmResp(decode_message_id_resp(status, r)?)),
        x if x == cmd::DELIVER_SM | cmd::RESP => Ok(Body::DeliverSmResp(decode_message_id_resp(status, r)?)),
        x if x == cmd::DATA_SM | cmd::RESP => Ok(Body::DataSmResp(decode_message_id_resp(status, r)?)),
        cmd::DATA_SM => {
            let d = DataSm {
                service_type: r.cstr(max::SERVICE_TYPE, "service_type")?,
                source: r.address("source_addr")?,
                dest: r.address("destination_addr")?,
                esm_class: r.u8("esm_class")?,
                registered_delivery: r.u8("registered_delivery")?,
                data_coding: r.u8("data_coding")?,
                tlvs: r.tlvs()?,
            };
            Ok(Body::DataSm(Box::new(d)))
        }
        other => Err(PduError::UnknownCommand(other)),
    }
}

fn put_cstr(out: &mut BytesMut, s: &str, max: usize, field: &'static str) -> Result<(), PduError> {
    if s.len() + 1 > max || s.as_bytes().contains(&0) {
        return Err(PduError::FieldTooLong { field, len: s.len() + 1, max });
    }
    out.put_slice(s.as_bytes());
    out.put_u8(0);
    Ok(())
}

fn put_address(out: &mut BytesMut, a: &Address, field: &'static str) -> Result<(), PduError> {
    out.put_u8(a.ton);
    out.put_u8(a.npi);
    put_cstr(out, &a.addr, max::ADDR, field)
}

fn put_tlvs(out: &mut BytesMut, tlvs: &Tlvs) -> Result<(), PduError> {
    out.reserve(tlvs.encoded_len());
    for t in &tlvs.0 {
        let len = u16::try_from(t.value.len()).map_err(|_| PduError::FieldTooLong {
            field: "tlv",
            len: t.value.len(),
            max: usize::from(u16::MAX),
        })?;
        out.put_u16(t.tag);
        out.put_u16(len);
        out.put_slice(&t.value);
    }
    Ok(())
}

fn encode_body(body: &Body, status: u32, out: &mut BytesMut) -> Result<(), PduError> {
    match body {
        Body::Bind(b) => {
            put_cstr(out, &b.system_id, max::SYSTEM_ID, "system_id")?;
            put_cstr(out, &b.password, max::PASSWORD, "password")?;
            put_cstr(out, &b.system_type, max::SYSTEM_TYPE, "system_type")?;
            out.put_u8(b.interface_version);
            out.put_u8(b.addr_ton);
            out.put_u8(b.addr_npi);
            put_cstr(out, &b.address_range, max::ADDRESS_RANGE, "address_range")?;
        }
        Body::BindResp(r) => {
            if status == status::ESME_ROK || !r.system_id.is_empty() || !r.tlvs.is_empty() {
                put_cstr(out, &r.system_id, max::SYSTEM_ID, "system_id")?;
                put_tlvs(out, &r.tlvs)?;
            }
        }
        Body::Outbind(o) => {
            put_cstr(out, &o.system_id, max::SYSTEM_ID, "system_id")?;
            put_cstr(out, &o.password, max::PASSWORD, "password")?;
        }
        Body::Unbind | Body::UnbindResp | Body::EnquireLink | Body::EnquireLinkResp | Body::GenericNack => {}
        Body::SubmitSm(sm) | Body::DeliverSm(sm) => {
            if sm.short_message.len() > max::SHORT_MESSAGE {
                return Err(PduError::FieldTooLong {
                    field: "short_message",
                    len: sm.short_message.len(),
                    max: max::SHORT_MESSAGE,
                });
            }
            out.reserve(48 + sm.short_message.len());
            put_cstr(out, &sm.service_type, max::SERVICE_TYPE, "service_type")?;
            put_address(out, &sm.source, "source_addr")?;
            put_address(out, &sm.dest, "destination_addr")?;
            out.put_u8(sm.esm_class);
            out.put_u8(sm.protocol_id);
            out.put_u8(sm.priority_flag);
            put_cstr(out, &sm.schedule_delivery_time, max::TIME, "schedule_delivery_time")?;
            put_cstr(out, &sm.validity_period, max::TIME, "validity_period")?;
            out.put_u8(sm.registered_delivery);
            out.put_u8(sm.replace_if_present_flag);
            out.put_u8(sm.data_coding);
            out.put_u8(sm.sm_default_msg_id);
            out.put_u8(sm.short_message.len() as u8);
            out.put_slice(&sm.short_message);
            put_tlvs(out, &sm.tlvs)?;
        }
        Body::DataSm(d) => {
            put_cstr(out, &d.service_type, max::SERVICE_TYPE, "service_type")?;
            put_address(out, &d.source, "source_addr")?;
            put_address(out, &d.dest, "destination_addr")?;
            out.put_u8(d.esm_class);
            out.put_u8(d.registered_delivery);
            out.put_u8(d.data_coding);
            put_tlvs(out, &d.tlvs)?;
        }
        Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => {
            if status == status::ESME_ROK || !r.message_id.is_empty() || !r.tlvs.is_empty() {
                put_cstr(out, &r.message_id, max::MESSAGE_ID, "message_id")?;
                put_tlvs(out, &r.tlvs)?;
            }
        }
    }
    Ok(())
}

/// A response body matching a request's command id, for answering with an error status or
/// a generic acknowledgement. `None` for commands that have no typed response here.
pub fn empty_response(request_command_id: u32) -> Option<Body> {
    Some(match request_command_id {
        cmd::BIND_RECEIVER => Body::BindResp(BindResp {
            kind: BindKind::Receiver,
            system_id: String::new(),
            tlvs: Tlvs::default(),
        }),
        cmd::BIND_TRANSMITTER => Body::BindResp(BindResp {
            kind: BindKind::Transmitter,
            system_id: String::new(),
            tlvs: Tlvs::default(),
        }),
        cmd::BIND_TRANSCEIVER => Body::BindResp(BindResp {
            kind: BindKind::Transceiver,
            system_id: String::new(),
            tlvs: Tlvs::default(),
        }),
        cmd::UNBIND => Body::UnbindResp,
        cmd::ENQUIRE_LINK => Body::EnquireLinkResp,
        cmd::SUBMIT_SM => Body::SubmitSmResp(MessageIdResp::default()),
        cmd::DELIVER_SM => Body::DeliverSmResp(MessageIdResp::default()),
        cmd::DATA_SM => Body::DataSmResp(MessageIdResp::default()),
        _ => return None,
    })
}

/// Human-readable command name for logs and metrics.
pub fn command_name(command_id: u32) -> &'static str {
    match command_id {
        cmd::GENERIC_NACK => "generic_nack",
        cmd::BIND_RECEIVER => "bind_receiver",
        cmd::BIND_TRANSMITTER => "bind_transmitter",
        cmd::BIND_TRANSCEIVER => "bind_transceiver",
        cmd::QUERY_SM => "query_sm",
        cmd::SUBMIT_SM => "submit_sm",
        cmd::DELIVER_SM => "deliver_sm",
        cmd::UNBIND => "unbind",
        cmd::REPLACE_SM => "replace_sm",
        cmd::CANCEL_SM => "cancel_sm",
        cmd::OUTBIND => "outbind",
        cmd::ENQUIRE_LINK => "enquire_link",
        cmd::SUBMIT_MULTI => "submit_multi",
        cmd::ALERT_NOTIFICATION => "alert_notification",
        cmd::DATA_SM => "data_sm",
        x if x == cmd::BIND_RECEIVER | cmd::RESP => "bind_receiver_resp",
        x if x == cmd::BIND_TRANSMITTER | cmd::RESP => "bind_transmitter_resp",
        x if x == cmd::BIND_TRANSCEIVER | cmd::RESP => "bind_transceiver_resp",
        x if x == cmd::SUBMIT_SM | cmd::RESP => "submit_sm_resp",
        x if x == cmd::DELIVER_SM | cmd::RESP => "deliver_sm_resp",
        x if x == cmd::UNBIND | cmd::RESP => "unbind_resp",
        x if x == cmd::ENQUIRE_LINK | cmd::RESP => "enquire_link_resp",
        x if x == cmd::DATA_SM | cmd::RESP => "data_sm_resp",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(pdu: &Pdu) -> Pdu {
        let bytes = pdu.to_bytes().unwrap();
        assert_eq!(Header::parse(&bytes).unwrap().command_length as usize, bytes.len());
        Pdu::decode(&bytes).unwrap()
    }

    #[test]
    fn bind_and_outbind_debug_should_not_show_the_password() {
        let bind = Pdu {
            status: 0,
            sequence: 1,
            body: Body::Bind(Bind::new(BindKind::Transceiver, "gw", "hunter42")),
        };
        let outbind = Outbind { system_id: "smsc".into(), password: "hunter42".into() };
        for debug in [format!("{bind:?}"), format!("{outbind:?}")] {
            assert!(!debug.contains("hunter42") && debug.contains("***"), "{debug}");
        }
    }

    fn ussd_sm() -> Sm {
        let mut tlvs = Tlvs::default();
        tlvs.set(tag::USSD_SERVICE_OP, vec![1u8]);
        tlvs.set(tag::ITS_SESSION_INFO, vec![7u8, 0]);
        tlvs.set(0x1400, vec![0xde, 0xad]); // vendor TLV, unknown to us
        Sm {
            service_type: "USSD".into(),
            source: Address::international("84912345678"),
            dest: Address { ton: 0, npi: 1, addr: "*384#".into() },
            data_coding: 0,
            short_message: Bytes::from_static(b"*384#"),
            tlvs: Tlvs(tlvs.0),
            ..Sm::default()
        }
    }

    #[test]
    fn bind_should_encode_as_the_spec_example_and_decode_back() {
        let pdu = Pdu::new(1, Body::Bind(Bind::new(BindKind::Transceiver, "gw", "pw")));
        let bytes = pdu.to_bytes().unwrap();
        let expected: &[u8] = &[
            0, 0, 0, 0x1B, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, b'g', b'w', 0, b'p', b'w', 0, 0, 0x34, 0, 0, 0,
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(roundtrip(&pdu), pdu);
    }

    #[test]
    fn submit_sm_with_unknown_tlv_should_roundtrip() {
        let pdu = Pdu::new(42, Body::SubmitSm(Box::new(ussd_sm())));
        let back = roundtrip(&pdu);
        assert_eq!(back, pdu);
        let Body::SubmitSm(sm) = back.body else { panic!() };
        assert_eq!(sm.tlvs.get_u8(tag::USSD_SERVICE_OP), Some(1));
        assert_eq!(sm.tlvs.get_u16(tag::ITS_SESSION_INFO), Some(0x0700));
        assert_eq!(sm.tlvs.get(0x1400).map(|v| v.to_vec()), Some(vec![0xde, 0xad]));
    }

    #[test]
    fn error_responses_should_decode_without_body() {
        let frame = Bytes::from_static(&[0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 9]);
        let pdu = Pdu::decode(&frame).unwrap();
        assert_eq!(pdu.status, status::ESME_RTHROTTLED);
        assert_eq!(pdu.body, Body::SubmitSmResp(MessageIdResp::default()));
        // and an error response encodes back without a body
        assert_eq!(pdu.to_bytes().unwrap(), frame);
    }

    #[test]
    fn truncated_body_should_report_header_and_field() {
        let mut bytes = BytesMut::new();
        Pdu::new(5, Body::DeliverSm(Box::new(ussd_sm()))).encode_into(&mut bytes).unwrap();
        let cut = 30;
        let mut frame = bytes[..cut].to_vec();
        frame[..4].copy_from_slice(&(cut as u32).to_be_bytes());
        let err = Pdu::decode(&Bytes::from(frame)).unwrap_err();
        assert_eq!(err.header.unwrap().sequence, 5);
        assert!(matches!(err.error, PduError::Truncated(_)), "{err:?}");
        assert_eq!(err.error.nack_status(), status::ESME_RINVCMDLEN);
    }

    #[test]
    fn bad_tlv_length_should_be_rejected() {
        let mut bytes = BytesMut::new();
        Pdu::new(6, Body::DataSm(Box::default())).encode_into(&mut bytes).unwrap();
        bytes.extend_from_slice(&[0x04, 0x24, 0x00, 0x10, b'x']);
        let len = bytes.len() as u32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        let err = Pdu::decode(&bytes.freeze()).unwrap_err();
        assert!(matches!(err.error, PduError::BadTlv { tag: 0x0424, len: 16, left: 1 }), "{err:?}");
    }

    #[test]
    fn unknown_command_should_nack_with_invalid_command_id() {
        let frame = Bytes::from_static(&[0, 0, 0, 16, 0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 3]);
        let err = Pdu::decode(&frame).unwrap_err();
        assert_eq!(err.error, PduError::UnknownCommand(0x7777));
        assert_eq!(err.error.nack_status(), status::ESME_RINVCMDID);
    }

    #[test]
    fn unterminated_system_id_should_be_rejected() {
        let mut frame = vec![0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1];
        frame.extend_from_slice(&[b'a'; 40]);
        let len = frame.len() as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        let err = Pdu::decode(&Bytes::from(frame)).unwrap_err();
        assert_eq!(err.error, PduError::Unterminated("system_id"));
    }

    #[test]
    fn enquire_link_with_trailing_octets_should_be_rejected() {
        let frame = Bytes::from_static(&[0, 0, 0, 17, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 3, 0]);
        assert_eq!(Pdu::decode(&frame).unwrap_err().error, PduError::Trailing(1));
    }

    #[test]
    fn too_long_fields_should_not_encode() {
        let pdu = Pdu::new(1, Body::Bind(Bind::new(BindKind::Transmitter, "a-very-long-system-id", "pw")));
        assert!(matches!(pdu.to_bytes(), Err(PduError::FieldTooLong { field: "system_id", .. })));
        let sm = Sm { short_message: Bytes::from(vec![b'x'; 255]), ..Sm::default() };
        assert!(Pdu::new(1, Body::SubmitSm(Box::new(sm))).to_bytes().is_err());
    }

    fn arb_cstr(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[ -~]{{0,{}}}", max - 1)).unwrap()
    }

    fn arb_tlvs() -> impl Strategy<Value = Tlvs> {
        proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..4)
            .prop_map(|v| Tlvs(v.into_iter().map(|(tag, value)| Tlv { tag, value: value.into() }).collect()))
    }

    fn arb_sm() -> impl Strategy<Value = Sm> {
        (
            arb_cstr(6),
            arb_cstr(21),
            arb_cstr(21),
            any::<(u8, u8, u8, u8)>(),
            proptest::collection::vec(any::<u8>(), 0..=254),
            arb_tlvs(),
        )
            .prop_map(|(service_type, src, dst, (esm_class, dc, rd, ton), sm, tlvs)| Sm {
                service_type,
                source: Address { ton, npi: 1, addr: src },
                dest: Address { ton: 0, npi: 0, addr: dst },
                esm_class,
                data_coding: dc,
                registered_delivery: rd,
                short_message: sm.into(),
                tlvs,
                ..Sm::default()
            })
    }

    /// Inputs the fuzzer found (fuzz/regressions): each either fails to decode, or decodes,
    /// encodes and decodes to the same PDU.
    #[test]
    fn fuzz_regressions_should_decode_and_reencode_consistently() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = Bytes::from(std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
            if let Ok(first) = Pdu::decode(&bytes) {
                let again = Pdu::decode(&first.to_bytes().unwrap()).unwrap();
                assert_eq!(again, first);
            }
        }
        assert!(n >= 4);
    }

    proptest! {
        #[test]
        fn any_submit_or_deliver_should_roundtrip(sm in arb_sm(), seq in any::<u32>(), deliver in any::<bool>()) {
            let body = if deliver { Body::DeliverSm(Box::new(sm)) } else { Body::SubmitSm(Box::new(sm)) };
            let pdu = Pdu::new(seq, body);
            prop_assert_eq!(roundtrip(&pdu), pdu);
        }

        #[test]
        fn decode_should_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Pdu::decode(&Bytes::from(bytes));
        }

        #[test]
        fn decode_should_never_panic_on_valid_header_with_garbage_body(
            id in prop_oneof![Just(1u32), Just(2), Just(4), Just(5), Just(9), Just(0x103), Just(0x8000_0004), Just(0x8000_0009)],
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut frame = BytesMut::new();
            frame.put_u32((HEADER_LEN + body.len()) as u32);
            frame.put_u32(id);
            frame.put_u32(0);
            frame.put_u32(1);
            frame.put_slice(&body);
            let _ = Pdu::decode(&frame.freeze());
        }
    }
}
