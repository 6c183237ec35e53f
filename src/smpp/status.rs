//! SMPP 3.4 `command_status` values used by chogate.

/// No error.
pub const ESME_ROK: u32 = 0x0000_0000;
/// Message length is invalid.
pub const ESME_RINVMSGLEN: u32 = 0x0000_0001;
/// Command length is invalid (also used for bodies that do not parse).
pub const ESME_RINVCMDLEN: u32 = 0x0000_0002;
/// Invalid command ID.
pub const ESME_RINVCMDID: u32 = 0x0000_0003;
/// Incorrect bind status for the given command.
pub const ESME_RINVBNDSTS: u32 = 0x0000_0004;
/// ESME already in bound state.
pub const ESME_RALYBND: u32 = 0x0000_0005;
/// System error.
pub const ESME_RSYSERR: u32 = 0x0000_0008;
/// Invalid source address.
pub const ESME_RINVSRCADR: u32 = 0x0000_000A;
/// Invalid destination address.
pub const ESME_RINVDSTADR: u32 = 0x0000_000B;
/// Bind failed.
pub const ESME_RBINDFAIL: u32 = 0x0000_000D;
/// Invalid password.
pub const ESME_RINVPASWD: u32 = 0x0000_000E;
/// Invalid system ID.
pub const ESME_RINVSYSID: u32 = 0x0000_000F;
/// Message queue full.
pub const ESME_RMSGQFUL: u32 = 0x0000_0014;
/// Invalid esm_class field data (a delivery receipt where none can be expected).
pub const ESME_RINVESMCLASS: u32 = 0x0000_0043;
/// Throttling error (the peer exceeded allowed message limits).
pub const ESME_RTHROTTLED: u32 = 0x0000_0058;
/// Invalid optional parameter value (a TLV such as `ussd_service_op` with a value the
/// receiver does not take).
pub const ESME_RINVOPTPARAMVAL: u32 = 0x0000_00C4;
/// ESME receiver temporary application error.
pub const ESME_RX_T_APPN: u32 = 0x0000_0064;
/// ESME receiver permanent application error.
pub const ESME_RX_P_APPN: u32 = 0x0000_0065;
/// ESME receiver reject message error.
pub const ESME_RX_R_APPN: u32 = 0x0000_0066;

/// A short name for logs and metrics ("ESME_RTHROTTLED"), or "0x…" for others.
pub fn name(status: u32) -> std::borrow::Cow<'static, str> {
    let known = match status {
        ESME_ROK => "ESME_ROK",
        ESME_RINVMSGLEN => "ESME_RINVMSGLEN",
        ESME_RINVCMDLEN => "ESME_RINVCMDLEN",
        ESME_RINVCMDID => "ESME_RINVCMDID",
        ESME_RINVBNDSTS => "ESME_RINVBNDSTS",
        ESME_RALYBND => "ESME_RALYBND",
        ESME_RSYSERR => "ESME_RSYSERR",
        ESME_RINVSRCADR => "ESME_RINVSRCADR",
        ESME_RINVDSTADR => "ESME_RINVDSTADR",
        ESME_RBINDFAIL => "ESME_RBINDFAIL",
        ESME_RINVPASWD => "ESME_RINVPASWD",
        ESME_RINVSYSID => "ESME_RINVSYSID",
        ESME_RMSGQFUL => "ESME_RMSGQFUL",
        ESME_RTHROTTLED => "ESME_RTHROTTLED",
        ESME_RINVESMCLASS => "ESME_RINVESMCLASS",
        ESME_RINVOPTPARAMVAL => "ESME_RINVOPTPARAMVAL",
        ESME_RX_T_APPN => "ESME_RX_T_APPN",
        ESME_RX_P_APPN => "ESME_RX_P_APPN",
        ESME_RX_R_APPN => "ESME_RX_R_APPN",
        other => return format!("0x{other:08X}").into(),
    };
    known.into()
}
