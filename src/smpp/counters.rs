//! Counts of the PDUs every session receives and sends, by command and `command_status`
//! (one relaxed `fetch_add` per PDU), rendered as `chogate_smpp_pdus_total`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::pdu::cmd;
use super::status;
use crate::metrics::header;

/// Command ids without the response bit, and their names.
const COMMANDS: [(u32, &str); 15] = [
    (cmd::GENERIC_NACK & !cmd::RESP, "generic_nack"),
    (cmd::BIND_RECEIVER, "bind_receiver"),
    (cmd::BIND_TRANSMITTER, "bind_transmitter"),
    (cmd::QUERY_SM, "query_sm"),
    (cmd::SUBMIT_SM, "submit_sm"),
    (cmd::DELIVER_SM, "deliver_sm"),
    (cmd::UNBIND, "unbind"),
    (cmd::REPLACE_SM, "replace_sm"),
    (cmd::CANCEL_SM, "cancel_sm"),
    (cmd::BIND_TRANSCEIVER, "bind_transceiver"),
    (cmd::OUTBIND, "outbind"),
    (cmd::ENQUIRE_LINK, "enquire_link"),
    (cmd::SUBMIT_MULTI, "submit_multi"),
    (cmd::ALERT_NOTIFICATION, "alert_notification"),
    (cmd::DATA_SM, "data_sm"),
];
/// Slots per direction: each command as request and response, plus "unknown".
const COMMAND_SLOTS: usize = COMMANDS.len() * 2 + 1;

const STATUSES: [u32; 17] = [
    status::ESME_ROK,
    status::ESME_RINVMSGLEN,
    status::ESME_RINVCMDLEN,
    status::ESME_RINVCMDID,
    status::ESME_RINVBNDSTS,
    status::ESME_RALYBND,
    status::ESME_RSYSERR,
    status::ESME_RINVSRCADR,
    status::ESME_RINVDSTADR,
    status::ESME_RBINDFAIL,
    status::ESME_RINVPASWD,
    status::ESME_RINVSYSID,
    status::ESME_RMSGQFUL,
    status::ESME_RTHROTTLED,
    status::ESME_RX_T_APPN,
    status::ESME_RX_P_APPN,
    status::ESME_RX_R_APPN,
];
/// Known statuses plus "other".
const STATUS_SLOTS: usize = STATUSES.len() + 1;

const PDU_SLOTS: usize = 2 * COMMAND_SLOTS * STATUS_SLOTS;
static PDUS: [AtomicU64; PDU_SLOTS] = [const { AtomicU64::new(0) }; PDU_SLOTS];

/// Which way a PDU went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

fn command_slot(command_id: u32) -> usize {
    let resp = usize::from(command_id & cmd::RESP != 0);
    let base = command_id & !cmd::RESP;
    match COMMANDS.iter().position(|(b, _)| *b == base) {
        // generic_nack is 0x80000000: base 0 with the response bit, one slot.
        Some(0) => 0,
        Some(i) => i * 2 + resp,
        None => COMMAND_SLOTS - 1,
    }
}

fn command_label(slot: usize) -> String {
    if slot == COMMAND_SLOTS - 1 {
        return "unknown".to_owned();
    }
    let (_, name) = COMMANDS[slot / 2];
    if slot % 2 == 1 { format!("{name}_resp") } else { name.to_owned() }
}

fn status_slot(st: u32) -> usize {
    STATUSES.iter().position(|s| *s == st).unwrap_or(STATUSES.len())
}

/// A PDU received or sent, by command and `command_status`.
pub fn pdu(direction: Direction, command_id: u32, command_status: u32) {
    let d = match direction {
        Direction::In => 0,
        Direction::Out => 1,
    };
    let i = (d * COMMAND_SLOTS + command_slot(command_id)) * STATUS_SLOTS + status_slot(command_status);
    PDUS[i].fetch_add(1, Relaxed);
}

/// The counts in the text exposition format (the PDUs seen so far).
pub fn render(out: &mut String) {
    header(out, "chogate_smpp_pdus_total", "counter", "SMPP PDUs received and sent, by command and status.");
    for (d, dir) in ["in", "out"].iter().enumerate() {
        for c in 0..COMMAND_SLOTS {
            for s in 0..STATUS_SLOTS {
                let n = PDUS[(d * COMMAND_SLOTS + c) * STATUS_SLOTS + s].load(Relaxed);
                if n == 0 {
                    continue;
                }
                let st = STATUSES.get(s).map_or_else(|| "other".into(), |v| status::name(*v));
                let _ = writeln!(
                    out,
                    "chogate_smpp_pdus_total{{direction=\"{dir}\",command=\"{}\",status=\"{st}\"}} {n}",
                    command_label(c)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_slots_should_name_requests_responses_and_unknowns() {
        assert_eq!(command_label(command_slot(cmd::SUBMIT_SM)), "submit_sm");
        assert_eq!(command_label(command_slot(cmd::SUBMIT_SM | cmd::RESP)), "submit_sm_resp");
        assert_eq!(command_label(command_slot(cmd::GENERIC_NACK)), "generic_nack");
        assert_eq!(command_label(command_slot(cmd::DATA_SM | cmd::RESP)), "data_sm_resp");
        assert_eq!(command_label(command_slot(0x1234)), "unknown");
        let slots: std::collections::HashSet<usize> =
            COMMANDS.iter().flat_map(|(c, _)| [command_slot(*c), command_slot(*c | cmd::RESP)]).collect();
        assert!(slots.iter().all(|s| *s < COMMAND_SLOTS));
    }

    #[test]
    fn rendering_should_show_counted_pdus() {
        pdu(Direction::In, cmd::DELIVER_SM, status::ESME_ROK);
        pdu(Direction::Out, cmd::DELIVER_SM | cmd::RESP, status::ESME_RTHROTTLED);
        let mut text = String::new();
        render(&mut text);
        assert!(
            text.contains(
                r#"chogate_smpp_pdus_total{direction="in",command="deliver_sm",status="ESME_ROK"}"#
            )
        );
        assert!(text.contains(
            r#"chogate_smpp_pdus_total{direction="out",command="deliver_sm_resp",status="ESME_RTHROTTLED"}"#
        ));
    }
}
