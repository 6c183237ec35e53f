//! SMPP 3.4: PDU codec, framing, the session actor shared by both roles, the server
//! (USSD centres bind to chogate) and the client (chogate binds to operators' SMSCs).

pub mod client;
pub mod counters;
pub mod frame;
pub mod pdu;
pub mod server;
pub mod session;
pub mod status;
pub mod transport;

pub use pdu::{Address, Bind, BindKind, BindResp, Body, DataSm, MessageIdResp, Pdu, PduError, Sm, Tlv, Tlvs};
pub use session::{Inbound, InboundRequest, Responder, SessionError, SessionHandle, SessionState};
